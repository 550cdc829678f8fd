/// Estimates token counts before any provider has seen the text.
///
/// Input: about four UTF-8 bytes per token for text (the usual rule for English with BPE tokenizers),
/// plus a few tokens of framing per message, plus a fixed charge per image. Output: the request's
/// `max_tokens`, scaled down by what past results of the same model and tier actually used once
/// enough of them exist (`OutputHistory`).
public enum TokenEstimator {
    public static let bytesPerToken = 4
    public static let tokensPerMessage = 4
    public static let tokensPerRequest = 3
    /// OpenAI's charge for one 1024×1024 image at high detail; a conservative figure for other providers.
    public static let tokensPerImage = 765
    /// `max_tokens` when a line gives none.
    public static let defaultMaxOutputTokens = 1024

    public static func inputTokens(textBytes: Int, messages: Int, images: Int) -> Int {
        (textBytes + bytesPerToken - 1) / bytesPerToken + messages * tokensPerMessage + tokensPerRequest + images * tokensPerImage
    }
}

/// What past results showed about output length, per model and quality tier.
public struct OutputHistory: Sendable {
    public struct Sample: Sendable, Hashable {
        public var samples: Int
        public var outputTokens: Int
        public var maxOutputTokens: Int

        public init(samples: Int, outputTokens: Int, maxOutputTokens: Int) {
            self.samples = samples
            self.outputTokens = outputTokens
            self.maxOutputTokens = maxOutputTokens
        }
    }

    /// Results needed before history replaces `max_tokens` as the estimate.
    public static let minimumSamples = 20

    public var byModelAndTier: [String: Sample]

    public init(byModelAndTier: [String: Sample] = [:]) { self.byModelAndTier = byModelAndTier }

    public static func key(model: String, tier: String) -> String { model + "\u{1F}" + tier }

    /// Expected output tokens for a request allowing `maxOutputTokens`: the observed share of
    /// `max_tokens` actually used (never below 1 token, never above `max_tokens`).
    public func expectedOutputTokens(model: String, tier: String, maxOutputTokens: Int) -> Int {
        guard let sample = byModelAndTier[OutputHistory.key(model: model, tier: tier)],
            sample.samples >= OutputHistory.minimumSamples, sample.maxOutputTokens > 0
        else { return maxOutputTokens }
        let scaled = (maxOutputTokens * sample.outputTokens + sample.maxOutputTokens - 1) / sample.maxOutputTokens
        return min(max(scaled, 1), maxOutputTokens)
    }
}
