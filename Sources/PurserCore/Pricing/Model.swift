/// One row of the pricing tables: a model as sold by one provider.
public struct Model: Sendable, Identifiable {
    /// The largest context window (and so the largest request, in tokens) the tables may declare. With prices
    /// bounded too (`TokenPrice.maximum`), no request's cost or worst case can overflow.
    public static let maximumContextTokens = 10_000_000

    /// Purser's name for the row, `provider/model`, unique across the tables.
    public var id: String
    public var provider: String
    /// The name the provider's API expects in `model`.
    public var providerModel: String
    public var prices: TokenPrices
    /// Prices through the provider's batch API, when it has one for this model.
    public var batchPrices: TokenPrices?
    /// Prices on OpenAI-style `service_tier: "flex"`: answered in the call, may be refused with 429.
    public var flexPrices: TokenPrices?
    /// Tokens of input plus output the model accepts in one call.
    public var contextWindow: Int
    public var maxOutputTokens: Int
    /// 0–100, higher is better; `qualitySource` says where the number comes from.
    public var quality: Int
    public var qualitySource: String
    public var capabilities: Capabilities
    public var rateLimits: RateLimits
    public var speed: Speed
    public var discountWindows: [DiscountWindow]
    /// The day the prices were read (YYYY-MM-DD) and the public page they were read from.
    public var priceDate: String
    public var priceSource: String
    /// The most prompt tokens the provider lets wait in its batch queue for this model at once, when the tables give it.
    public var batchEnqueuedTokens: Int?
    /// Where the batch prices were read, when not on `priceSource`'s page.
    public var batchPriceSource: String?
    /// Other names a request body may give the model by (`gpt-5-chat-latest`); dated snapshots of any of its names
    /// (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`, `gpt-3.5-turbo-0125`) resolve to it without being listed.
    public var aliases: [String] = []
    /// A row a request may name as its reference model (for its quality floor and its baseline) that Purser does not
    /// serve: a legacy or retired model (`"reference_only": true` in the tables). Never planned on.
    public var referenceOnly = false
    /// Which request parameters it refuses, how its output limit is named, and how much reasoning it spends inside that limit.
    public var parameters = ModelParameters()
    /// How it caches a repeated prefix; nil when the tables say nothing (then nothing is counted as cached).
    public var caching: CachingRule?

    /// The output limit sent for a request allowing `requested` tokens of answer: that plus the model's reasoning room,
    /// so a reasoning model's thinking does not eat the answer. Worst cases, estimates and time are figured on it.
    public func outputAllowance(_ requested: Int) -> Int { requested + parameters.reasoningRoomTokens }

    public init(
        id: String, provider: String, providerModel: String, prices: TokenPrices, batchPrices: TokenPrices? = nil,
        flexPrices: TokenPrices? = nil, contextWindow: Int, maxOutputTokens: Int, quality: Int, qualitySource: String,
        capabilities: Capabilities = [], rateLimits: RateLimits, speed: Speed, discountWindows: [DiscountWindow] = [],
        priceDate: String, priceSource: String, batchEnqueuedTokens: Int? = nil, batchPriceSource: String? = nil
    ) {
        self.id = id
        self.provider = provider
        self.providerModel = providerModel
        self.prices = prices
        self.batchPrices = batchPrices
        self.flexPrices = flexPrices
        self.contextWindow = contextWindow
        self.maxOutputTokens = maxOutputTokens
        self.quality = quality
        self.qualitySource = qualitySource
        self.capabilities = capabilities
        self.rateLimits = rateLimits
        self.speed = speed
        self.discountWindows = discountWindows
        self.priceDate = priceDate
        self.priceSource = priceSource
        self.batchEnqueuedTokens = batchEnqueuedTokens
        self.batchPriceSource = batchPriceSource
    }
}

public struct TokenPrices: Sendable, Hashable {
    public var input: TokenPrice
    public var output: TokenPrice
    /// A prefix token read from the provider's cache.
    public var cachedInput: TokenPrice
    /// A prefix token written to the cache for five minutes, and for an hour, where the provider bills writes
    /// (Anthropic; OpenAI from GPT-5.6); nil where a write costs what uncached input does.
    public var cacheWrite5m: TokenPrice?
    public var cacheWrite1h: TokenPrice?

    public init(input: TokenPrice, output: TokenPrice, cachedInput: TokenPrice) {
        self.input = input
        self.output = output
        self.cachedInput = cachedInput
    }

    public func cost(inputTokens: Int, outputTokens: Int) -> Money {
        input.cost(tokens: inputTokens) + output.cost(tokens: outputTokens)
    }

    public func scaled(basisPoints: Int64) -> TokenPrices {
        var scaled = TokenPrices(
            input: input.scaled(basisPoints: basisPoints), output: output.scaled(basisPoints: basisPoints),
            cachedInput: cachedInput.scaled(basisPoints: basisPoints))
        scaled.cacheWrite5m = cacheWrite5m?.scaled(basisPoints: basisPoints)
        scaled.cacheWrite1h = cacheWrite1h?.scaled(basisPoints: basisPoints)
        return scaled
    }

    /// The same prices with input (and cached input) scaled, for an input estimate known to run high or low
    /// (`InputCalibration`): an estimate of N tokens then costs what N × the scale would.
    public func scalingInput(basisPoints: Int64) -> TokenPrices {
        guard basisPoints != 10_000 else { return self }
        var scaled = TokenPrices(input: input.scaled(basisPoints: basisPoints), output: output, cachedInput: cachedInput.scaled(basisPoints: basisPoints))
        scaled.cacheWrite5m = cacheWrite5m?.scaled(basisPoints: basisPoints)
        scaled.cacheWrite1h = cacheWrite1h?.scaled(basisPoints: basisPoints)
        return scaled
    }
}

/// What a request's body may use that not every model offers.
public struct Capabilities: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let tools = Capabilities(rawValue: 1 << 0)
    public static let jsonMode = Capabilities(rawValue: 1 << 1)
    public static let vision = Capabilities(rawValue: 1 << 2)
    /// Structured output against a JSON schema (OpenAI's `response_format` json_schema, Anthropic's `output_format`).
    public static let jsonSchema = Capabilities(rawValue: 1 << 3)

    /// The request parameters a model may refuse (reasoning models do), each a capability a request needs when its body
    /// sets it away from its default. Every model accepts them unless its tables' `parameters.unsupported` names them.
    public static let temperature = Capabilities(rawValue: 1 << 8)
    public static let topP = Capabilities(rawValue: 1 << 9)
    public static let presencePenalty = Capabilities(rawValue: 1 << 10)
    public static let frequencyPenalty = Capabilities(rawValue: 1 << 11)
    public static let logprobs = Capabilities(rawValue: 1 << 12)
    public static let logitBias = Capabilities(rawValue: 1 << 13)
    /// Anthropic's `top_k`: the OpenAI dialect has no such parameter, so no model spoken to in it takes one.
    public static let topK = Capabilities(rawValue: 1 << 14)

    /// The feature names used in the pricing files' `capabilities`, in a fixed order.
    public static let named: [(name: String, capability: Capabilities)] = [
        ("tools", .tools), ("json_mode", .jsonMode), ("json_schema", .jsonSchema), ("vision", .vision),
    ]
    /// The parameter names used in `parameters.unsupported`, as a request body spells them.
    public static let parameterNamed: [(name: String, capability: Capabilities)] = [
        ("temperature", .temperature), ("top_p", .topP), ("presence_penalty", .presencePenalty),
        ("frequency_penalty", .frequencyPenalty), ("logprobs", .logprobs), ("logit_bias", .logitBias), ("top_k", .topK),
    ]
    public static let allParameters = Capabilities(parameterNamed.map(\.capability))

    /// Feature names, then parameter names, for messages.
    public var names: [String] { (Capabilities.named + Capabilities.parameterNamed).filter { contains($0.capability) }.map(\.name) }
    /// Feature names only, as the tables' `capabilities` list them.
    public var featureNames: [String] { Capabilities.named.filter { contains($0.capability) }.map(\.name) }
}

/// What the tables' `parameters` say of a model's request parameters.
public struct ModelParameters: Sendable, Hashable {
    /// The most reasoning room the tables may give, so allowances stay far from overflow.
    public static let maximumReasoningRoomTokens = 1_000_000

    /// Parameters it refuses when set away from their defaults (OpenAI's reasoning models: temperature, top_p, …).
    public var unsupported: Capabilities = []
    /// The body field its output limit goes in; nil for the dialect's own (`max_tokens`; OpenAI's own models take
    /// `max_completion_tokens`).
    public var outputLimitName: String?
    /// Tokens of reasoning that count against its output limit, added to each request's limit (0: not a reasoning model).
    public var reasoningRoomTokens = 0
    /// Where the above was read.
    public var source: String?
    /// Parameters its provider's dialect has no field for (`top_k` in the OpenAI dialect): set from the provider when
    /// the catalog is made, never written to the tables.
    public var dialectLacks: Capabilities = []

    public init(unsupported: Capabilities = [], outputLimitName: String? = nil, reasoningRoomTokens: Int = 0, source: String? = nil) {
        self.unsupported = unsupported
        self.outputLimitName = outputLimitName
        self.reasoningRoomTokens = reasoningRoomTokens
        self.source = source
    }

    public var isDefault: Bool { self == ModelParameters() }
}

public struct RateLimits: Sendable, Hashable {
    /// Bounds on what the tables and flags may say, so products with time and tokens never overflow.
    public static let maximumRequestsPerMinute = 1_000_000_000
    public static let maximumTokensPerMinute = 1_000_000_000_000

    public var requestsPerMinute: Int
    public var tokensPerMinute: Int

    public init(requestsPerMinute: Int, tokensPerMinute: Int) {
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
    }
}

public struct Speed: Sendable, Hashable {
    public static let maximumTimeToFirstTokenMilliseconds = 3_600_000
    public static let maximumOutputTokensPerSecond = 10_000_000

    public var timeToFirstTokenMilliseconds: Int
    public var outputTokensPerSecond: Int

    public init(timeToFirstTokenMilliseconds: Int, outputTokensPerSecond: Int) {
        self.timeToFirstTokenMilliseconds = timeToFirstTokenMilliseconds
        self.outputTokensPerSecond = outputTokensPerSecond
    }

    /// How long one call producing `outputTokens` takes, in milliseconds.
    public func callDuration(outputTokens: Int) -> Int64 {
        Int64(timeToFirstTokenMilliseconds) + Int64(outputTokens) * 1000 / Int64(max(outputTokensPerSecond, 1))
    }
}
