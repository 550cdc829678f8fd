import Synchronization

/// The simulator's prompt cache, per provider and model, kept as each provider documents its own
/// (`CachingRule`): a prefix matches only up to a content-block boundary whose bytes are the same, not below the
/// model's minimum, in the model's steps; an explicit-caching model (Anthropic) caches only at the request's
/// breakpoints and bills the writes; an entry can be read only once the answer that wrote it has begun, and lives
/// for its lifetime after its last use. Nothing is cached by chance.
public final class SimulatedCache: Sendable {
    struct Entry {
        var tokens: Int
        var availableAt: Int64
        var expiresAt: Int64
        var lifetime: Int64
    }

    /// How long an automatic cache keeps a prefix after its last use, in the providers' words: OpenAI keeps prompts
    /// in memory "5 to 10 minutes" (the longer here), Gemini "a few minutes", DeepSeek on disk for hours; Anthropic's
    /// breakpoints last 5 minutes unless they ask for an hour.
    static func automaticLifetime(provider: String) -> Int64 {
        switch provider {
        case "deepseek": 3_600_000
        case "google": 300_000
        default: 600_000
        }
    }

    static let defaultExplicitLifetime: Int64 = 300_000
    /// Bounded, whatever a run sends: past this many entries the expired go, then the oldest half.
    static let maximumEntries = 200_000

    private let entries = Mutex<[String: Entry]>([:])

    public init() {}

    /// What one call read from the cache and wrote to it, in the tokens of Purser's estimate of its body.
    public struct Use: Sendable {
        public var read = 0
        public var written = 0
        /// The body's whole input, as the cache counted it.
        public var estimate = 0

        public static let none = Use()

        /// The same counts in a provider's own count of the body's input (`input` tokens), reads in whole `step`s, as
        /// the provider reports them.
        public func reported(input: Int, step: Int) -> (read: Int, written: Int) {
            guard estimate > 0 else { return (0, 0) }
            let cached = min(input * read / estimate, input) / max(step, 1) * max(step, 1)
            return (cached, min(input * written / estimate, input - cached))
        }
    }

    /// What each call of one batch reads from the cache and writes to it, in order, when the provider works through the
    /// batch `parallel` calls at a time, each wave a second after the last with its answers begun half a second in: the
    /// calls of the first wave all miss (an entry is readable only once the answer that wrote it has begun) and later
    /// calls read what earlier ones left, where the model's rule caches in batches. This is the best effort providers
    /// describe for their batches, made exact: the same batch always caches the same way, on a cache of its own (a
    /// batch read twice answers twice alike), so a small batch reads little and a large one nearly everything.
    public static func batch(_ calls: [(model: Model, provider: String, prefix: PromptPrefix)], parallel: Int = 32) -> [Use] {
        let cache = SimulatedCache()
        return calls.enumerated().map { index, call in
            guard call.model.caching?.keepsCache(in: .batch) ?? false else { return .none }
            let start = Int64(index / max(parallel, 1)) * 1_000
            return cache.use(model: call.model, provider: call.provider, prefix: call.prefix, now: start, answerBegins: start + 500, speedup: 1)
        }
    }

    /// What a call of `model` with this body reads from the cache and writes to it at `now`, and keeps the prefixes it
    /// leaves for later calls, readable from `answerBegins`. Lifetimes are divided by `speedup`, as the simulator's latency is.
    public func use(
        model: Model, provider: String, prefix: PromptPrefix, now: Int64, answerBegins: Int64, speedup: Double
    ) -> Use {
        guard let rule = model.caching else { return .none }
        let scope = provider + "|" + model.id + "|"
        func key(_ boundary: PromptPrefix.Boundary) -> String { scope + String(boundary.hash, radix: 16) }
        func scaled(_ milliseconds: Int64) -> Int64 { max(Int64(Double(milliseconds) / max(speedup, 0.001)), 1) }
        let eligible = prefix.boundaries.filter { $0.tokens >= rule.minimumPrefixTokens && (rule.mode == .automatic || $0.breakpoint) }
        guard !eligible.isEmpty else { return .none }
        return entries.withLock { entries in
            if entries.count > SimulatedCache.maximumEntries {
                entries = entries.filter { $0.value.expiresAt > now }
                if entries.count > SimulatedCache.maximumEntries / 2 {
                    entries = Dictionary(uniqueKeysWithValues: entries.sorted { $0.value.expiresAt > $1.value.expiresAt }.prefix(SimulatedCache.maximumEntries / 2).map { ($0.key, $0.value) })
                }
            }
            func usable(_ boundary: PromptPrefix.Boundary) -> Bool {
                guard let entry = entries[key(boundary)] else { return false }
                return entry.availableAt <= now && entry.expiresAt > now
            }
            // The longest prefix already cached and readable (an entry whose first answer has not begun is not).
            var read = 0
            if let hit = eligible.last(where: usable) {
                read = hit.tokens / rule.stepTokens * rule.stepTokens
                if var entry = entries[key(hit)] {
                    entry.expiresAt = now + entry.lifetime
                    entries[key(hit)] = entry
                }
            }
            // What this call leaves: every eligible boundary (automatic), or its breakpoints (explicit), each kept from
            // when its answer begins unless a live entry is there already. An explicit cache bills the last breakpoint's
            // tokens beyond what was read as a write, whenever that breakpoint missed (parallel first calls all miss).
            var written = 0
            for boundary in eligible where !usable(boundary) {
                if entries[key(boundary)].map({ $0.expiresAt <= now }) ?? true {
                    let lifetime = scaled(boundary.lifetimeMilliseconds ?? (rule.mode == .explicit ? SimulatedCache.defaultExplicitLifetime : SimulatedCache.automaticLifetime(provider: provider)))
                    entries[key(boundary)] = Entry(tokens: boundary.tokens, availableAt: answerBegins, expiresAt: now + lifetime, lifetime: lifetime)
                }
                if rule.mode == .explicit { written = max(written, boundary.tokens - read) }
            }
            return Use(read: read, written: written, estimate: prefix.totalTokens)
        }
    }
}
