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
        OutputHistory.expectedOutputTokens(byModelAndTier[OutputHistory.key(model: model, tier: tier)], maxOutputTokens: maxOutputTokens)
    }

    public static func expectedOutputTokens(_ sample: Sample?, maxOutputTokens: Int) -> Int {
        guard let sample, sample.samples >= minimumSamples, sample.maxOutputTokens > 0 else { return maxOutputTokens }
        let scaled = (maxOutputTokens * sample.outputTokens + sample.maxOutputTokens - 1) / sample.maxOutputTokens
        return min(max(scaled, 1), maxOutputTokens)
    }

    /// The history arranged by tier and model index, so hot loops look a tier up once per request.
    public func byTier(models: [Model]) -> OutputHistoryByTier {
        var byTier: [String: [Sample?]] = [:]
        let index = Dictionary(uniqueKeysWithValues: models.enumerated().map { ($1.id, $0) })
        for (key, sample) in byModelAndTier {
            let parts = key.split(separator: "\u{1F}", maxSplits: 1).map(String.init)
            guard parts.count == 2, let modelIndex = index[parts[0]] else { continue }
            byTier[parts[1], default: [Sample?](repeating: nil, count: models.count)][modelIndex] = sample
        }
        return OutputHistoryByTier(byTier: byTier)
    }
}

/// `OutputHistory` by tier, then by model index.
public struct OutputHistoryByTier: Sendable {
    let byTier: [String: [OutputHistory.Sample?]]

    /// The samples of one tier (indexed like the catalog's models), or nil when the tier has none.
    public func samples(tier: String) -> [OutputHistory.Sample?]? { byTier.isEmpty ? nil : byTier[tier] }

    public static func expectedOutputTokens(_ samples: [OutputHistory.Sample?]?, model: Int, maxOutputTokens: Int) -> Int {
        guard let samples else { return maxOutputTokens }
        return OutputHistory.expectedOutputTokens(samples[model], maxOutputTokens: maxOutputTokens)
    }
}

/// How far input estimates fell from what providers reported, per provider: a provider's models share a tokenizer (or
/// near enough), and `TokenEstimator` knows none of them. Once a provider has `minimumSamples` results, expected costs
/// on its models price input at the reported share of the estimate. Worst-case reservations never use it: they bound
/// what any tokenizer could report (`Charges.inputBoundFactor`), whatever history says.
public struct InputCalibration: Sendable, Hashable {
    public struct Family: Sendable, Hashable {
        public var results: Int64
        /// Purser's estimates for those results' requests, and what the provider billed (cached and cache writes included).
        public var estimatedTokens: Int64
        public var reportedTokens: Int64

        public init(results: Int64, estimatedTokens: Int64, reportedTokens: Int64) {
            self.results = results
            self.estimatedTokens = estimatedTokens
            self.reportedTokens = reportedTokens
        }

        /// Reported over estimated, in basis points, held to `InputCalibration.scaleRange`.
        public var scaleBasisPoints: Int64 {
            guard estimatedTokens > 0 else { return 10_000 }
            let ratio = Int64(clamping: (Int128(reportedTokens) * 10_000 + Int128(estimatedTokens / 2)) / Int128(estimatedTokens))
            return min(max(ratio, InputCalibration.scaleRange.lowerBound), InputCalibration.scaleRange.upperBound)
        }
    }

    /// Results a provider needs before its scale is used.
    public static let minimumSamples: Int64 = 20
    /// A quarter to four times the estimate: four times is the most any tokenizer can report (one token per byte).
    public static let scaleRange: ClosedRange<Int64> = 2_500...40_000

    public var byProvider: [String: Family]

    public init(byProvider: [String: Family] = [:]) { self.byProvider = byProvider }

    /// The scale applied to input estimates on `provider`'s models, in basis points (10,000 until it has enough results).
    public func scaleBasisPoints(provider: String) -> Int64 {
        guard let family = byProvider[provider], family.results >= InputCalibration.minimumSamples else { return 10_000 }
        return family.scaleBasisPoints
    }

    /// `model` with every price of its input (list, flex, batch) scaled by its provider's calibration, so an expected
    /// cost from its estimate is what the provider's own count would cost.
    public func expected(_ model: Model) -> Model {
        let scale = scaleBasisPoints(provider: model.provider)
        guard scale != 10_000 else { return model }
        var calibrated = model
        calibrated.prices = model.prices.scalingInput(basisPoints: scale)
        calibrated.flexPrices = model.flexPrices?.scalingInput(basisPoints: scale)
        calibrated.batchPrices = model.batchPrices?.scalingInput(basisPoints: scale)
        return calibrated
    }
}
