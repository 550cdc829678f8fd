/// What a request asks of a model, as stored at submit.
public struct RequestNeeds: Sendable, Hashable {
    public var qualityFloor: Int
    public var qualityTier: String
    public var inputTokens: Int
    public var maxOutputTokens: Int
    public var capabilities: Capabilities
    /// Set when the request is pinned to exactly this model.
    public var pinnedModel: String?
    /// The providers it may go to, when the line or the submit restricted them.
    public var providers: ProviderFilter?

    public init(
        qualityFloor: Int, qualityTier: String, inputTokens: Int, maxOutputTokens: Int, capabilities: Capabilities, pinnedModel: String?,
        providers: ProviderFilter? = nil
    ) {
        self.providers = providers
        self.qualityFloor = qualityFloor
        self.qualityTier = qualityTier
        self.inputTokens = inputTokens
        self.maxOutputTokens = maxOutputTokens
        self.capabilities = capabilities
        self.pinnedModel = pinnedModel
    }

    /// What the request counts against a model's tokens/min: its input and all the output it may ask for.
    public var rateLimitTokens: Int { inputTokens + maxOutputTokens }
}

/// Why a model cannot serve a request, in words a user can act on.
public enum Exclusion: Sendable, Hashable, CustomStringConvertible {
    case pinnedElsewhere(String)
    case quality(score: Int, floor: Int)
    case context(needed: Int, window: Int)
    case maxOutput(requested: Int, limit: Int)
    /// What it lacks, kept as the set and named only when said: a loop over a million requests excludes models by the
    /// million, and their names are read only when no model is left.
    case capabilities(missing: Capabilities)
    case parameters(refused: Capabilities)
    case reasoningRoom(requested: Int, room: Int, limit: Int)
    case providerNotAllowed(String)
    case noKey(provider: String, variable: String)
    case unknownProvider(String)
    case deadline(neededMilliseconds: Int64, leftMilliseconds: Int64)
    case overCeiling(estimate: Money, ceiling: Money)

    public var description: String {
        switch self {
        case .pinnedElsewhere(let model): "the request is pinned to \(model)"
        case .quality(let score, let floor): "quality \(score) is below the floor \(floor)"
        case .context(let needed, let window): "needs ~\(needed) tokens of context, the window is \(window)"
        case .maxOutput(let requested, let limit): "max_tokens \(requested) is above the model's \(limit)"
        case .capabilities(let missing): "lacks \(missing.names.joined(separator: ", "))"
        case .parameters(let refused):
            refused == .topK
                ? "does not accept top_k (it is spoken to in the OpenAI dialect, which has no top_k)"
                : "does not accept \(refused.names.joined(separator: ", ")) (see parameters.unsupported in its tables)"
        case .reasoningRoom(let requested, let room, let limit):
            "max_tokens \(requested) plus its \(room) tokens of reasoning room is above its output limit \(limit)"
        case .providerNotAllowed(let provider): "provider \(provider) is not allowed for this request (its providers only/ignore)"
        case .noKey(let provider, let variable): "provider \(provider) has no key (set \(variable), or plan with --simulate)"
        case .unknownProvider(let provider): "provider \(provider) is not in providers.json"
        case .deadline(let needed, let left):
            "cannot finish in time (needs \(DurationText.approximate(needed)), \(DurationText.approximate(left)) left)"
        case .overCeiling(let estimate, let ceiling): "estimate \(estimate) is above max_cost_usd \(ceiling)"
        }
    }
}

/// The numbers a model is judged and priced on, copied out of `Model` once so that loops over
/// millions of requests copy no strings.
public struct ModelFacts: Sendable {
    public var quality: Int
    public var contextWindow: Int
    public var maxOutputTokens: Int
    public var capabilities: Capabilities
    public var prices: TokenPrices
    public var flexPrices: TokenPrices?
    public var batchPrices: TokenPrices?
    public var speed: Speed
    public var provider: String
    public var reasoningRoomTokens: Int

    public init(_ model: Model) {
        provider = model.provider
        quality = model.quality
        contextWindow = model.contextWindow
        maxOutputTokens = model.maxOutputTokens
        // Its features, and every request parameter its tables do not say it refuses.
        capabilities = model.capabilities.union(
            Capabilities.allParameters.subtracting(model.parameters.unsupported).subtracting(model.parameters.dialectLacks))
        reasoningRoomTokens = model.parameters.reasoningRoomTokens
        prices = model.prices
        flexPrices = model.flexPrices
        batchPrices = model.batchPrices
        speed = model.speed
    }

    /// As `Model.outputAllowance`: the request's limit plus the model's reasoning room.
    public func outputAllowance(_ requested: Int) -> Int { requested + reasoningRoomTokens }
}

public enum Eligibility {
    /// The reasons that do not depend on time, keys or price: quality, context, output limit, capabilities, pin.
    public static func staticExclusion(of model: Model, for needs: RequestNeeds) -> Exclusion? {
        staticExclusion(of: ModelFacts(model), isPinnedModel: needs.pinnedModel == model.id, for: needs)
    }

    /// As above; `isPinnedModel` says whether this is the model the request is pinned to.
    public static func staticExclusion(of model: ModelFacts, isPinnedModel: Bool, for needs: RequestNeeds) -> Exclusion? {
        if let pinned = needs.pinnedModel, !isPinnedModel { return .pinnedElsewhere(pinned) }
        if needs.pinnedModel == nil, model.quality < needs.qualityFloor { return .quality(score: model.quality, floor: needs.qualityFloor) }
        let allowance = model.outputAllowance(needs.maxOutputTokens)
        if needs.inputTokens + allowance > model.contextWindow {
            return .context(needed: needs.inputTokens + allowance, window: model.contextWindow)
        }
        if needs.maxOutputTokens > model.maxOutputTokens { return .maxOutput(requested: needs.maxOutputTokens, limit: model.maxOutputTokens) }
        if allowance > model.maxOutputTokens {
            return .reasoningRoom(requested: needs.maxOutputTokens, room: model.reasoningRoomTokens, limit: model.maxOutputTokens)
        }
        let missing = needs.capabilities.subtracting(model.capabilities)
        let refused = missing.intersection(Capabilities.allParameters), lacking = missing.subtracting(refused)
        if !lacking.isEmpty { return .capabilities(missing: lacking) }
        if !refused.isEmpty { return .parameters(refused: refused) }
        if let filter = needs.providers, !filter.allows(model.provider) { return .providerNotAllowed(model.provider) }
        return nil
    }

    /// The lowest price at which `model` can serve a request in any sync mode
    /// (list, flex, or the deepest discount window) — the best case the planner could find.
    public static func cheapestSyncPrices(of model: Model) -> TokenPrices {
        var best = model.prices
        if let flex = model.flexPrices, flex.cost(inputTokens: 1_000, outputTokens: 1_000) < best.cost(inputTokens: 1_000, outputTokens: 1_000) {
            best = flex
        }
        if let deepest = model.discountWindows.map(\.multiplierBasisPoints).min() {
            let discounted = model.prices.scaled(basisPoints: deepest)
            if discounted.cost(inputTokens: 1_000, outputTokens: 1_000) < best.cost(inputTokens: 1_000, outputTokens: 1_000) {
                best = discounted
            }
        }
        return best
    }
}
