/// How a model caches a repeated prompt prefix, from its provider's documentation (`"caching"` in the tables). The
/// prices of a cached read and of a cache write are in each mode's prices (`cached_input`, `cache_write_5m`,
/// `cache_write_1h`); this says when they apply. A model with no rule is planned and charged as if nothing were cached.
public struct CachingRule: Sendable, Hashable {
    /// Automatic: the provider caches every long enough prefix by itself (OpenAI, Gemini, DeepSeek). Explicit: only up
    /// to a breakpoint the request marks (Anthropic's `cache_control`).
    public enum Mode: String, Sendable, CaseIterable {
        case automatic, explicit
    }

    /// What caching does in a discounted mode (batch, flex): its reads at the mode's discount too, at the full
    /// cached price, not at all, or at the mode's discount but only when the provider manages (best effort).
    public enum InMode: String, Sendable, CaseIterable {
        case halved, full, none
        case bestEffort = "best_effort"
    }

    public var mode: Mode
    /// The shortest prefix the provider caches; a shorter one is processed uncached, with no error.
    public var minimumPrefixTokens: Int
    /// Hits come in whole steps of this many tokens (OpenAI: 128); 1 where a hit is the whole marked prefix.
    public var stepTokens: Int
    public var batch: InMode
    public var flex: InMode
    /// The public page the rule was read from.
    public var source: String

    /// Whether calls in `mode` are cached at all (the discounted modes as their rule says).
    public func keepsCache(in mode: DispatchMode) -> Bool {
        switch mode {
        case .sync, .offpeak: true
        case .flex: flex != .none
        case .batch: batch != .none
        }
    }

    /// The most tokens a minimum or a step may be.
    public static let maximumTokens = 1_000_000

    public init(mode: Mode, minimumPrefixTokens: Int, stepTokens: Int = 1, batch: InMode, flex: InMode = .none, source: String) {
        self.mode = mode
        self.minimumPrefixTokens = minimumPrefixTokens
        self.stepTokens = stepTokens
        self.batch = batch
        self.flex = flex
        self.source = source
    }
}
