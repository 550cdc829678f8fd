import Foundation

/// A request as the planner sees it.
public struct PlannableRequest: Sendable {
    public var id: Int64
    public var needs: RequestNeeds
    public var referenceModel: String?
    public var deadlineAt: Int64
    public var maxCost: Money?
    /// The job it belongs to (0 for a file being estimated).
    public var job: Int64
    /// Served by a live call only: a batch already expired on it, or it was taken back from one to meet its deadline.
    public var liveOnly: Bool
    /// The prefix group its leading content belongs to (found at submit), whose cache reads and writes the plan prices.
    public var prefix: SharedPrefix?

    public init(
        id: Int64, needs: RequestNeeds, referenceModel: String?, deadlineAt: Int64, maxCost: Money?, job: Int64 = 0, liveOnly: Bool = false,
        prefix: SharedPrefix? = nil
    ) {
        self.id = id
        self.prefix = prefix
        self.needs = needs
        self.referenceModel = referenceModel
        self.deadlineAt = deadlineAt
        self.maxCost = maxCost
        self.job = job
        self.liveOnly = liveOnly
    }

    /// What the request counts against a model's tokens/min: its input and all the output it may ask for.
    public var rateLimitTokens: Int { needs.rateLimitTokens }
}

/// A request's prefix group as planning needs it, small enough for millions of requests: the group (the 64-bit hash
/// submit stored as 16 hex digits, `PromptPrefix.group`) and the tokens of leading content its members share.
public struct SharedPrefix: Sendable, Hashable {
    public var group: UInt64
    public var tokens: Int32

    public init(group: UInt64, tokens: Int) {
        self.group = group
        self.tokens = Int32(clamping: tokens)
    }

    /// From a group's id as submit writes it (16 hex digits); nil for anything else.
    public init?(id: String, tokens: Int) {
        guard !id.isEmpty, id.utf8.count <= 16, let group = UInt64(id, radix: 16) else { return nil }
        self.init(group: group, tokens: tokens)
    }
}

/// How a planned request will be sent.
public enum DispatchMode: String, Sendable, CaseIterable {
    /// A normal call, now.
    case sync
    /// A call on OpenAI's flex tier: batch prices, answered in the call, may be refused with 429.
    case flex
    /// A normal call made inside the model's discount window.
    case offpeak
    /// Through the provider's batch API (24-hour window).
    case batch
}

/// What the planner knows besides the requests.
public struct PlanningContext: Sendable {
    public var catalog: PricingCatalog
    public var now: Int64
    /// Providers that can be called: a key is set, or the run simulates.
    public var usableProviders: Set<String>
    public var history: OutputHistory
    /// How far input estimates ran from providers' counts; expected costs are priced on the calibrated input.
    public var inputCalibration: InputCalibration
    /// How long batches have taken, for requests whose deadline is shorter than the batch window.
    public var batchCompletion: BatchCompletionHistory
    /// Flex calls may be refused with 429; only requests with at least this much time left use them.
    public var flexMinimumLeadMilliseconds: Int64
    /// Deadlines further away are planned as if they fell here, which bounds the planner's work.
    public var horizonMilliseconds: Int64
    /// How often batches of each model read a shared prefix from the cache (caching in a batch is best effort).
    public var cacheHits: CacheHitHistory

    public static let defaultHorizonMilliseconds: Int64 = 366 * 86_400_000

    public init(
        catalog: PricingCatalog, now: Int64, usableProviders: Set<String>, history: OutputHistory = OutputHistory(),
        inputCalibration: InputCalibration = InputCalibration(), batchCompletion: BatchCompletionHistory = BatchCompletionHistory(),
        flexMinimumLeadMilliseconds: Int64 = 3_600_000, horizonMilliseconds: Int64 = PlanningContext.defaultHorizonMilliseconds,
        cacheHits: CacheHitHistory = CacheHitHistory()
    ) {
        self.cacheHits = cacheHits
        self.catalog = catalog
        self.now = now
        self.usableProviders = usableProviders
        self.history = history
        self.inputCalibration = inputCalibration
        self.batchCompletion = batchCompletion
        self.flexMinimumLeadMilliseconds = flexMinimumLeadMilliseconds
        self.horizonMilliseconds = horizonMilliseconds
    }

    /// Providers usable from the environment's keys, or all of them when simulating.
    public static func usableProviders(catalog: PricingCatalog, environment: [String: String], simulate: Bool) -> Set<String> {
        Set(catalog.providers.values.filter { simulate || $0.hasKey(in: environment) }.map(\.name))
    }
}

/// Capacity another job's plan already counts on: requests planned on a model and mode that must start by
/// `latestStart`. A new plan treats them as placed first.
public struct HeldCapacity: Sendable, Hashable {
    public var job: Int64
    public var model: String
    public var mode: DispatchMode
    public var latestStart: Int64
    public var requests: Int
    public var tokens: Int64
    public var largestRequestTokens: Int64

    public init(job: Int64, model: String, mode: DispatchMode, latestStart: Int64, requests: Int, tokens: Int64, largestRequestTokens: Int64) {
        self.job = job
        self.model = model
        self.mode = mode
        self.latestStart = latestStart
        self.requests = requests
        self.tokens = tokens
        self.largestRequestTokens = largestRequestTokens
    }
}

/// The capacity-constrained assignment behind a plan, as the solver sees it.
///
/// Each usable model has *families* of capacity: its list-price time (sync, or flex where sold), its
/// discount-window time (offpeak, one family per price multiplier), and its batch API. A request may start
/// on a family any time up to its latest start there, its deadline less the call's modelled duration. For
/// a family, requests can all be started in deadline order under both rate limits exactly when, at each
/// latest start, those due by then fit what requests/min and tokens/min allow from now to then, each counted
/// with its own tokens. A family keeps its latest starts exactly when it has up to 2,048 distinct ones (jobs with a few
/// deadlines); with more, they are rounded down onto a grid of whole seconds between 1/256 and 1/128 of the time left,
/// so the program has few boundaries; the rounding only ever makes a plan earlier, and the lower bound counts each
/// boundary's capacity at the latest real latest start rounded onto it.
///
/// Requests alike in everything but input size form a *signature*; signatures whose cheapest option can
/// never run out of room are planned whole, the others are split into classes by input size for the linear
/// program. Other jobs' plans are *held* classes with one option each, placed before anything new.
final class PlanningProblem {
    struct Family {
        enum Kind: Hashable {
            case list
            case window(basisPoints: Int64)
            case batch
        }

        var model: Int
        var kind: Kind
        /// Latest-start moments, ascending.
        var boundaries: [Int64] = []
        /// Requests, and tokens, that may start by each boundary (cumulative from now).
        var requestCapacity: [Int64] = []
        var tokenCapacity: [Int64] = []
        /// The same by the latest real (unrounded) latest start each boundary stands for: the capacity the real problem
        /// has there, which the lower bound counts so that it bounds every real plan.
        var relaxedRequestCapacity: [Int64] = []
        var relaxedTokenCapacity: [Int64] = []
        /// Whether each boundary's request row, and token row, can bind: demand could pass capacity there.
        var requestRowBinds: [Bool] = []
        var tokenRowBinds: [Bool] = []

        var boundsNothing: Bool { !requestRowBinds.contains(true) && !tokenRowBinds.contains(true) }

        /// True when no row at or after `boundary` can bind: the family has room for everything there.
        func isUnlimited(from boundary: Int) -> Bool {
            !requestRowBinds[boundary...].contains(true) && !tokenRowBinds[boundary...].contains(true)
        }
    }

    /// One way to serve a signature's requests.
    struct Option {
        var family: Int32
        var boundary: Int32
        var model: Int32
        var expectedOutput: Int32
        var mode: DispatchMode
        /// pico-USD per token.
        var inputPrice: Int64
        var outputPrice: Int64
        /// Flex prices when the request may use flex, else -1.
        var flexInputPrice: Int64 = -1
        var flexOutputPrice: Int64 = -1
        /// Orders options of equal cost: lower is preferred (higher quality, then faster, then name, then mode).
        var preference: Int64
        /// What caching does to a request of a prefix group here, at the option's prices and at its flex prices.
        var cache: CacheTerms?
        var flexCache: CacheTerms?

        /// The cost of a request with `input` tokens as the linear program prices it (a group's write shared over its
        /// members), the mode it is sent in, and what caching does to it there.
        @inline(__always)
        func cost(input: Int) -> (cost: Int64, mode: DispatchMode, cache: CacheTerms?) {
            let list = Option.price(input: input, output: expectedOutput, inputPrice, outputPrice, cache)
            guard flexInputPrice >= 0 else { return (list, mode, cache) }
            let flex = Option.price(input: input, output: expectedOutput, flexInputPrice, flexOutputPrice, flexCache)
            return flex < list ? (flex, .flex, flexCache) : (list, mode, cache)
        }

        @inline(__always)
        private static func price(input: Int, output: Int32, _ inputPrice: Int64, _ outputPrice: Int64, _ cache: CacheTerms?) -> Int64 {
            let plain = Int64(input) &* inputPrice &+ Int64(output) &* outputPrice
            guard let cache else { return plain }
            return plain &+ cache.adjustment(inputPrice: inputPrice) &+ cache.writeShare
        }

        /// True when a prefix group's write is shared into its price.
        var sharesWrite: Bool { (cache?.write ?? 0) > 0 || (flexCache?.write ?? 0) > 0 }

        /// The same without caching: what the request would cost if its prefix were processed like the rest of its input.
        func uncachedCost(input: Int) -> Int64 {
            var plain = self
            plain.cache = nil
            plain.flexCache = nil
            return plain.cost(input: input).cost
        }
    }

    struct Signature {
        var deadline: Int64
        var ceiling: Int64
        var options: [Option] = []
        var members: Range<Int> = 0..<0
        var eligibility: Int32
        var tier: Int32
        var maxOutput: Int32
        var liveOnly: Bool
        /// The prefix its requests share with the rest of their group, and how many requests the group has (0, 0: none).
        var prefixTokens: Int32 = 0
        var groupSize: Int32 = 0
    }

    struct RequestClass {
        /// Members, in `members`, sorted by input size.
        var members: Range<Int>
        /// The signature's options this class may use (dominated ones removed), cheapest first for the class.
        var options: [Int32]
        var signature: Int32
        /// The held group it stands for, or -1.
        var held: Int32 = -1
        var count: Int
        var inputSum: Int64
        var tokenSum: Int64
        var tokenMax: Int64
        /// True when the linear program decides it; false when its cheapest option can never run out of room.
        var contested: Bool
    }

    let context: PlanningContext
    let pruneDominated: Bool
    let requests: [PlannableRequest]
    let held: [HeldCapacity]
    let models: [Model]
    private(set) var families: [Family] = []
    private(set) var signatures: [Signature] = []
    private(set) var classes: [RequestClass] = []
    /// Request indexes grouped by signature (then by class), each group sorted by input size.
    private(set) var members: [Int32] = []
    /// Where requests share prefix groups: each signature's options before dominated ones were dropped, which the bound
    /// that counts each group's writes whole reads (a group may do best on an option dropped for its shared price).
    private(set) var unprunedOptions: [[Option]] = []
    private(set) var signatureOfRequest: [Int32] = []
    /// Held groups that can no longer start in time on their model: their plans must be made again.
    private(set) var unfitHeld: [Int] = []
    private var familyIndex: [FamilyKey: Int] = [:]
    let modelIsUsable: [Bool]
    let modelIndexByID: [String: Int]
    let modelRankByID: [Int]
    let tierNames: [String]
    private let samplesByTier: [[OutputHistory.Sample?]?]
    /// Each model's reasoning room (`ModelParameters.reasoningRoomTokens`), added to every request's output limit on it.
    private let reasoningRoom: [Int]
    private(set) var tierOfRequest: [Int32] = []
    private var eligibleModels: [[Int32]] = []

    /// The prefix groups of two or more requests (those the provider's cache can share a prefix between), by how many
    /// requests each has: counted among those planned, or as `groupSizes` says (a request explained alone is counted with
    /// the rest of its job).
    private(set) var groups: [Int32] = []
    /// Per request: its group in `groups`, or -1.
    private(set) var groupOfRequest: [Int32] = []

    /// A signature's requests are split into at most about this many classes in all, so the program stays small.
    static let classBudget = 3_000

    private struct FamilyKey: Hashable {
        var model: Int
        var kind: Family.Kind
    }

    /// `pruneDominated: false` keeps every option (for `--explain`, which shows what each model would cost).
    /// `groupSizes`: how many requests each prefix group has, when not only those given here.
    init(
        requests: [PlannableRequest], held: [HeldCapacity] = [], context: PlanningContext, pruneDominated: Bool = true,
        groupSizes: [UInt64: Int]? = nil
    ) {
        self.pruneDominated = pruneDominated
        self.context = context
        self.requests = requests
        self.held = held
        // Expected costs price each model's input at its provider's calibrated estimate.
        self.models = context.catalog.models.map(context.inputCalibration.expected)
        reasoningRoom = context.catalog.models.map(\.parameters.reasoningRoomTokens)
        modelIsUsable = context.catalog.models.map { model in
            context.catalog.providers[model.provider] != nil && context.usableProviders.contains(model.provider)
        }
        modelIndexByID = Dictionary(context.catalog.models.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first })
        let byID = context.catalog.models.indices.sorted { context.catalog.models[$0].id < context.catalog.models[$1].id }
        var ranks = [Int](repeating: 0, count: byID.count)
        for (rank, index) in byID.enumerated() { ranks[index] = rank }
        modelRankByID = ranks
        let byTier = context.history.byTier(models: context.catalog.models)
        var tierIndex: [String: Int32] = [:]
        var names: [String] = []
        tierOfRequest = requests.map { request in
            if let index = tierIndex[request.needs.qualityTier] { return index }
            let index = Int32(names.count)
            names.append(request.needs.qualityTier)
            tierIndex[request.needs.qualityTier] = index
            return index
        }
        tierNames = names
        samplesByTier = names.map { byTier.samples(tier: $0) }
        buildGroups(sizes: groupSizes)
        buildSignatures()
        buildOptions()
        buildHeld()
        finishFamilies()
        markBindingRows()
        buildClasses()
    }

    var now: Int64 { context.now }
    var horizonEnd: Int64 { now + context.horizonMilliseconds }

    // MARK: - Prefix groups

    private func buildGroups(sizes: [UInt64: Int]?) {
        var counts = sizes ?? [:]
        if sizes == nil {
            for request in requests {
                if let prefix = request.prefix, prefix.tokens > 0 { counts[prefix.group, default: 0] += 1 }
            }
        }
        guard !counts.isEmpty else {
            groupOfRequest = [Int32](repeating: -1, count: requests.count)
            return
        }
        var index: [UInt64: Int32] = [:]
        groupOfRequest = requests.map { request in
            guard let prefix = request.prefix, prefix.tokens > 0, let size = counts[prefix.group], size >= 2 else { return -1 }
            if let known = index[prefix.group] { return known }
            let group = Int32(groups.count)
            index[prefix.group] = group
            groups.append(Int32(clamping: size))
            return group
        }
    }

    /// The request's shared prefix in tokens, never more than its whole input.
    func prefixTokensOfRequest(_ index: Int) -> Int32 {
        min(requests[index].prefix?.tokens ?? 0, Int32(clamping: requests[index].needs.inputTokens))
    }

    // MARK: - Signatures

    private struct EligibilityKey: Hashable {
        var floor: Int32
        var capabilities: Int32
        var pinned: Int32
        var contextRank: Int32
        var outputRank: Int32
        /// Which distinct provider filter the request has (0: none).
        var providers: Int32
    }

    private struct SignatureKey: Hashable {
        var eligibility: Int32
        var tier: Int32
        var deadline: Int64
        var maxOutput: Int32
        var ceiling: Int64
        /// The exact input size for requests with a ceiling (their options depend on it), else -1.
        var input: Int32
        var liveOnly: Bool
        var prefixTokens: Int32
        var groupSize: Int32
    }

    private func buildSignatures() {
        // A model with reasoning room judges a request as if its window and output limit were that much smaller, so
        // requests on the same side of every such threshold share their eligibility.
        let windows = Array(Set(models.map { $0.contextWindow - $0.parameters.reasoningRoomTokens } + models.map(\.contextWindow))).sorted()
        let outputLimits = Array(Set(models.map { $0.maxOutputTokens - $0.parameters.reasoningRoomTokens } + models.map(\.maxOutputTokens))).sorted()
        func rank(_ sorted: [Int], below value: Int) -> Int32 {
            var low = 0, high = sorted.count
            while low < high {
                let middle = (low + high) / 2
                if sorted[middle] < value { low = middle + 1 } else { high = middle }
            }
            return Int32(low)
        }
        let facts = models.map(ModelFacts.init)
        var eligibilityIndex: [EligibilityKey: Int32] = [:]
        var filterIndex: [ProviderFilter: Int32] = [:]
        var signatureIndex: [SignatureKey: Int32] = [:]
        var counts: [Int] = []
        signatureOfRequest = [Int32](repeating: 0, count: requests.count)
        for (index, request) in requests.enumerated() {
            let needs = request.needs
            let pinned: Int32 = needs.pinnedModel.map { Int32(modelIndexByID[$0] ?? -2) } ?? -1
            let total = needs.inputTokens.addingReportingOverflow(needs.maxOutputTokens)
            var providers: Int32 = 0
            if let filter = needs.providers {
                if let known = filterIndex[filter] { providers = known } else {
                    providers = Int32(filterIndex.count + 1)
                    filterIndex[filter] = providers
                }
            }
            let eligibilityKey = EligibilityKey(
                floor: Int32(clamping: needs.qualityFloor), capabilities: Int32(truncatingIfNeeded: needs.capabilities.rawValue), pinned: pinned,
                contextRank: total.overflow ? Int32.max : rank(windows, below: total.partialValue), outputRank: rank(outputLimits, below: needs.maxOutputTokens),
                providers: providers)
            let eligibility: Int32
            if let known = eligibilityIndex[eligibilityKey] {
                eligibility = known
            } else {
                eligibility = Int32(eligibleModels.count)
                eligibilityIndex[eligibilityKey] = eligibility
                eligibleModels.append(facts.indices.compactMap { model in
                    guard modelIsUsable[model], !total.overflow,
                        Eligibility.staticExclusion(of: facts[model], isPinnedModel: Int32(model) == pinned, for: needs) == nil
                    else { return nil }
                    return Int32(model)
                })
            }
            let ceiling = request.maxCost?.picoUSD ?? -1
            let group = groupOfRequest[index]
            let key = SignatureKey(
                eligibility: eligibility, tier: tierOfRequest[index], deadline: min(request.deadlineAt, horizonEnd),
                maxOutput: Int32(clamping: needs.maxOutputTokens), ceiling: ceiling, input: ceiling >= 0 ? Int32(clamping: needs.inputTokens) : -1,
                liveOnly: request.liveOnly, prefixTokens: group >= 0 ? prefixTokensOfRequest(index) : 0,
                groupSize: group >= 0 ? groups[Int(group)] : 0)
            if let known = signatureIndex[key] {
                signatureOfRequest[index] = known
                counts[Int(known)] += 1
            } else {
                let signature = Int32(signatures.count)
                signatureIndex[key] = signature
                signatureOfRequest[index] = signature
                counts.append(1)
                signatures.append(Signature(
                    deadline: key.deadline, ceiling: ceiling, eligibility: eligibility, tier: key.tier, maxOutput: key.maxOutput, liveOnly: key.liveOnly,
                    prefixTokens: key.prefixTokens, groupSize: key.groupSize))
            }
        }
        // Members grouped by signature, each group sorted by input size.
        var start = 0
        var next = [Int](repeating: 0, count: signatures.count)
        for (signature, count) in counts.enumerated() {
            signatures[signature].members = start..<(start + count)
            next[signature] = start
            start += count
        }
        members = [Int32](repeating: 0, count: requests.count)
        for (index, signature) in signatureOfRequest.enumerated() {
            members[next[Int(signature)]] = Int32(index)
            next[Int(signature)] += 1
        }
        for signature in signatures where signature.members.count > 1 {
            members[signature.members].sort { requests[Int($0)].needs.inputTokens < requests[Int($1)].needs.inputTokens }
        }
    }

    // MARK: - Options

    /// What a request allowing `maxOutput` tokens is expected to produce on `model`, its reasoning included.
    func expectedOutput(tier: Int32, model: Int, maxOutput: Int) -> Int {
        OutputHistoryByTier.expectedOutputTokens(samplesByTier[Int(tier)], model: model, maxOutputTokens: maxOutput + reasoningRoom[model])
    }

    /// Rounds a latest start down to the grid: a power-of-two number of seconds, the smallest at least 1/256 of the
    /// time left (so between 1/256 and 1/128 of it), at least a second.
    func snapped(_ latestStart: Int64) -> Int64 {
        let left = latestStart - now
        guard left > 1_000 else { return latestStart }
        let quantum = PlanningProblem.quantum(forTimeLeft: left)
        return now + left / quantum * quantum
    }

    static func quantum(forTimeLeft left: Int64) -> Int64 {
        var quantum: Int64 = 1_000
        while quantum < left / 256 { quantum <<= 1 }
        return quantum
    }

    private func family(model: Int, kind: Family.Kind) -> Int {
        let key = FamilyKey(model: model, kind: kind)
        if let known = familyIndex[key] { return known }
        familyIndex[key] = families.count
        families.append(Family(model: model, kind: kind))
        return families.count - 1
    }

    /// Per family: the latest starts its options and held groups have, exactly.
    private var latestStartSets: [Set<Int64>] = []
    /// Per family: whether its latest starts are rounded onto the grid (they are too many to keep as they are).
    private var roundsOntoGrid: [Bool] = []

    /// A family keeps up to this many distinct latest starts exactly; with more, they are rounded onto the grid.
    static let exactLatestStartLimit = 2_048

    private func register(_ family: Int, latest: Int64) {
        while latestStartSets.count <= family { latestStartSets.append([]) }
        latestStartSets[family].insert(latest)
    }

    /// The boundary a latest start of `family` stands at: itself, or rounded down onto the grid.
    private func moment(_ family: Int, _ latest: Int64) -> Int64 { roundsOntoGrid[family] ? snapped(latest) : latest }

    func preference(model: Int, duration: Int64, mode: DispatchMode) -> Int64 {
        let quality = Int64(100 - min(max(models[model].quality, 0), 100))
        let modeOrder = Int64(DispatchMode.allCases.firstIndex(of: mode) ?? 0)
        return quality << 44 | min(max(duration, 0) / 1000, (1 << 23) - 1) << 20 | Int64(modelRankByID[model] & 0xFFF) << 8 | modeOrder
    }

    /// The ways a request of this signature can be served: per usable eligible model, its list time (sync or
    /// flex), its discount windows (offpeak) and its batch API, each with the latest moment a call can start
    /// and still finish by the deadline.
    ///
    /// A batch goes on the model's batch family when the deadline leaves the batch window plus the margin; flex
    /// is then not offered (batch costs no more, and neither takes the model's live rate limits nor is refused
    /// for capacity). With less time, a *speculative* batch is offered where observed completion times make it
    /// cheaper on average: priced at its expected cost (batch prices if it finishes before the pull-back, list
    /// prices for the share served live after), and placed on the model's live capacity at the pull-back moment,
    /// so that every request a batch fails to finish still has room to be served live in time.
    private func buildOptions() {
        let timing = context.catalog.tiers.batch
        for index in signatures.indices {
            let signature = signatures[index]
            let deadline = signature.deadline
            for model in eligibleModels[Int(signature.eligibility)] {
                let model = Int(model)
                let facts = models[model]
                let output = expectedOutput(tier: signature.tier, model: model, maxOutput: Int(signature.maxOutput))
                let duration = facts.speed.callDuration(outputTokens: output)
                let latest = deadline - duration
                let batchPrices = signature.liveOnly || context.catalog.providers[facts.provider]?.batchDialect == nil ? nil : facts.batchPrices
                let batchLatest = deadline - Tiers.BatchTiming.windowMilliseconds - timing.marginMilliseconds
                let fullBatch = batchPrices != nil && batchLatest > now
                func caching(_ mode: DispatchMode, _ prices: TokenPrices) -> CacheTerms? {
                    guard signature.groupSize >= 2 else { return nil }
                    return CacheTerms.terms(
                        model: facts, mode: mode, prices: prices, prefixTokens: Int(signature.prefixTokens), groupSize: Int(signature.groupSize),
                        batchHitBasisPoints: context.cacheHits.batchHitBasisPoints(model: facts.id))
                }
                if latest > now {
                    var list = Option(
                        family: 0, boundary: 0, model: Int32(model), expectedOutput: Int32(clamping: output), mode: .sync,
                        inputPrice: facts.prices.input.microUSDPerMillion, outputPrice: facts.prices.output.microUSDPerMillion,
                        preference: preference(model: model, duration: duration, mode: .sync), cache: caching(.sync, facts.prices))
                    if let flex = facts.flexPrices, !fullBatch, deadline - now >= context.flexMinimumLeadMilliseconds {
                        list.flexInputPrice = flex.input.microUSDPerMillion
                        list.flexOutputPrice = flex.output.microUSDPerMillion
                        list.flexCache = caching(.flex, flex)
                    }
                    addOption(list, to: index, kind: .list, latest: latest)
                    for basisPoints in Set(facts.discountWindows.map(\.multiplierBasisPoints)).sorted() {
                        let prices = facts.prices.scaled(basisPoints: basisPoints)
                        addOption(Option(
                            family: 0, boundary: 0, model: Int32(model), expectedOutput: Int32(clamping: output), mode: .offpeak,
                            inputPrice: prices.input.microUSDPerMillion, outputPrice: prices.output.microUSDPerMillion,
                            preference: preference(model: model, duration: duration, mode: .offpeak), cache: caching(.offpeak, prices)),
                            to: index, kind: .window(basisPoints: basisPoints), latest: latest)
                    }
                    let pullBack = latest - timing.pullBackMilliseconds
                    if let batch = batchPrices, !fullBatch, pullBack > now {
                        let chance = context.batchCompletion.chance(model: facts.id, within: pullBack - now)
                        if chance > 0 {
                            func expected(_ batchPrice: TokenPrice, _ listPrice: TokenPrice) -> Int64 {
                                Int64((Int128(batchPrice.microUSDPerMillion) * Int128(chance)
                                    + Int128(listPrice.microUSDPerMillion) * Int128(10_000 - chance) + 9_999) / 10_000)
                            }
                            let input = expected(batch.input, facts.prices.input), outputPrice = expected(batch.output, facts.prices.output)
                            if input < facts.prices.input.microUSDPerMillion || outputPrice < facts.prices.output.microUSDPerMillion {
                                addOption(Option(
                                    family: 0, boundary: 0, model: Int32(model), expectedOutput: Int32(clamping: output), mode: .batch,
                                    inputPrice: input, outputPrice: outputPrice,
                                    preference: preference(model: model, duration: pullBack - now, mode: .batch)), to: index, kind: .list, latest: pullBack)
                            }
                        }
                    }
                }
                if let batch = batchPrices, fullBatch {
                    addOption(Option(
                        family: 0, boundary: 0, model: Int32(model), expectedOutput: Int32(clamping: output), mode: .batch,
                        inputPrice: batch.input.microUSDPerMillion, outputPrice: batch.output.microUSDPerMillion,
                        preference: preference(model: model, duration: Tiers.BatchTiming.windowMilliseconds, mode: .batch),
                        cache: caching(.batch, batch)),
                        to: index, kind: .batch, latest: batchLatest)
                }
            }
        }
    }

    private func addOption(_ option: Option, to signature: Int, kind: Family.Kind, latest: Int64) {
        var option = option
        let ceiling = signatures[signature].ceiling
        if ceiling >= 0 {
            let input = requests[Int(members[signatures[signature].members.lowerBound])].needs.inputTokens
            guard option.cost(input: input).cost <= ceiling else { return }
        }
        let index = family(model: Int(option.model), kind: kind)
        register(index, latest: latest)
        option.family = Int32(index)
        // The boundary index is filled in once every family's boundaries are known; the latest start is kept meanwhile.
        option.boundary = -1
        pendingMoments.append((signature, signatures[signature].options.count, latest))
        signatures[signature].options.append(option)
    }

    private var pendingMoments: [(signature: Int, option: Int, latest: Int64)] = []
    private var heldPlacement: [(family: Int, moment: Int64)?] = []

    private func buildHeld() {
        for group in held {
            guard let model = modelIndexByID[group.model], modelIsUsable[model], group.latestStart > now else {
                heldPlacement.append(nil)
                continue
            }
            let kind: Family.Kind
            switch group.mode {
            case .sync, .flex: kind = .list
            case .batch: kind = .batch
            case .offpeak:
                guard let basisPoints = models[model].discountWindows.map(\.multiplierBasisPoints).min() else {
                    heldPlacement.append(nil)
                    continue
                }
                kind = .window(basisPoints: basisPoints)
            }
            let index = family(model: model, kind: kind)
            let latest = min(group.latestStart, horizonEnd)
            register(index, latest: latest)
            heldPlacement.append((index, latest))
        }
    }

    // MARK: - Capacity

    private func finishFamilies() {
        for index in families.indices {
            let model = models[families[index].model]
            // Few latest starts are kept as they are, so nothing is lost to rounding; many are rounded onto the grid, each
            // boundary remembering the latest real latest start it stands for (for the lower bound).
            let exact = index < latestStartSets.count ? latestStartSets[index] : []
            let rounds = exact.count > PlanningProblem.exactLatestStartLimit
            roundsOntoGrid.append(rounds)
            var unrounded: [Int64: Int64] = [:]
            for latest in exact {
                let boundary = rounds ? snapped(latest) : latest
                unrounded[boundary] = max(unrounded[boundary] ?? latest, latest)
            }
            let boundaries = unrounded.keys.sorted()
            families[index].boundaries = boundaries
            let kind = families[index].kind
            func capacities(at moments: [Int64]) -> (requests: [Int64], tokens: [Int64]) {
                let time: [Int64]
                switch kind {
                case .batch:
                    // The batch API's own pool. Where the tables give the tokens a model may have waiting in batches, each
                    // window's worth of time before a boundary lets that many through again; otherwise it holds everything.
                    return (moments.map { _ in Int64.max / 4 }, moments.map { moment in
                        guard let enqueued = model.batchEnqueuedTokens else { return Int64.max / 4 }
                        return Int64(enqueued) * (1 + max(moment - now, 0) / Tiers.BatchTiming.windowMilliseconds)
                    })
                case .list:
                    let windows = mergedWindows(model, basisPoints: nil)
                    time = moments.map { ($0 - now) - covered(windows, until: $0) }
                case .window(let basisPoints):
                    let windows = mergedWindows(model, basisPoints: basisPoints)
                    time = moments.map { covered(windows, until: $0) }
                }
                return (time.map { PlanningProblem.allowance(perMinute: model.rateLimits.requestsPerMinute, milliseconds: $0) },
                    time.map { PlanningProblem.allowance(perMinute: model.rateLimits.tokensPerMinute, milliseconds: $0) })
            }
            (families[index].requestCapacity, families[index].tokenCapacity) = capacities(at: boundaries)
            (families[index].relaxedRequestCapacity, families[index].relaxedTokenCapacity) = capacities(at: boundaries.map { unrounded[$0] ?? $0 })
        }
        for (signature, option, latest) in pendingMoments {
            let family = Int(signatures[signature].options[option].family)
            signatures[signature].options[option].boundary = Int32(boundaryIndex(family, moment(family, latest)))
        }
        pendingMoments = []
        heldPlacement = heldPlacement.map { placement in placement.map { ($0.family, moment($0.family, $0.moment)) } }
    }

    /// What a rate of `perMinute` allows in `milliseconds`, rounded down; so large it cannot bind counts as unlimited.
    static func allowance(perMinute: Int, milliseconds: Int64) -> Int64 {
        guard milliseconds > 0, perMinute > 0 else { return 0 }
        let product = Int128(perMinute) * Int128(milliseconds) / 60_000
        return Int64(min(product, Int128(Int64.max / 4)))
    }

    func boundaryIndex(_ family: Int, _ moment: Int64) -> Int {
        let boundaries = families[family].boundaries
        var low = 0, high = boundaries.count
        while low < high {
            let middle = (low + high) / 2
            if boundaries[middle] < moment { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The model's discount windows (all of them, or those with one multiplier) from now to the horizon, merged.
    func mergedWindows(_ model: Model, basisPoints: Int64?) -> [Range<Int64>] {
        let windows = model.discountWindows.filter { basisPoints == nil || $0.multiplierBasisPoints == basisPoints }
        let all = windows.flatMap { $0.intervals(from: now, to: horizonEnd) }.sorted { $0.lowerBound < $1.lowerBound }
        var merged: [Range<Int64>] = []
        for interval in all {
            if let last = merged.last, last.upperBound >= interval.lowerBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, interval.upperBound)
            } else {
                merged.append(interval)
            }
        }
        return merged
    }

    /// Milliseconds of `windows` between now and `moment`.
    func covered(_ windows: [Range<Int64>], until moment: Int64) -> Int64 {
        var total: Int64 = 0
        for window in windows {
            if window.lowerBound >= moment { break }
            total += min(window.upperBound, moment) - max(window.lowerBound, now)
        }
        return max(total, 0)
    }

    /// The first window moment at or after `moment`, if any (when an offpeak call may start).
    func windowOpening(_ windows: [Range<Int64>], atOrAfter moment: Int64) -> Int64? {
        for window in windows where window.upperBound > moment { return max(window.lowerBound, moment) }
        return nil
    }

    // MARK: - Which rows can bind

    /// A row can bind when everything that could use it would not fit: the demand of every signature with an
    /// option there, due by its boundary, is more than its capacity. Options that cost at least as much as one
    /// whose family has room for everything are dropped (they would never be needed), which can show more
    /// rows to be free, so the two steps repeat until nothing changes.
    private func markBindingRows() {
        if !groups.isEmpty { unprunedOptions = signatures.map(\.options) }
        for index in families.indices {
            families[index].requestRowBinds = families[index].boundaries.map { _ in true }
            families[index].tokenRowBinds = families[index].boundaries.map { _ in true }
        }
        var usable = signatures.map { $0.options.indices.map { _ in true } }
        for _ in 0..<4 {
            var requestDemand = families.map { [Int64](repeating: 0, count: $0.boundaries.count) }
            var tokenDemand = requestDemand
            for (signature, value) in signatures.enumerated() {
                let (count, tokens) = demand(of: value)
                for (option, element) in value.options.enumerated() where usable[signature][option] {
                    requestDemand[Int(element.family)][Int(element.boundary)] &+= count
                    tokenDemand[Int(element.family)][Int(element.boundary)] &+= tokens
                }
            }
            for (group, placement) in zip(held, heldPlacement) {
                guard let placement else { continue }
                let boundary = boundaryIndex(placement.family, placement.moment)
                requestDemand[placement.family][boundary] &+= Int64(group.requests)
                tokenDemand[placement.family][boundary] &+= group.tokens
            }
            var changed = false
            for index in families.indices {
                var requests: Int64 = 0, tokens: Int64 = 0
                for boundary in families[index].boundaries.indices {
                    requests = requests.addingReportingOverflow(requestDemand[index][boundary]).partialValue
                    tokens = tokens.addingReportingOverflow(tokenDemand[index][boundary]).partialValue
                    let requestBinds = requests > families[index].requestCapacity[boundary]
                    let tokenBinds = tokens > families[index].tokenCapacity[boundary]
                    if requestBinds != families[index].requestRowBinds[boundary] || tokenBinds != families[index].tokenRowBinds[boundary] {
                        changed = true
                    }
                    families[index].requestRowBinds[boundary] = requestBinds
                    families[index].tokenRowBinds[boundary] = tokenBinds
                }
            }
            var pruned = false
            for (signature, value) in signatures.enumerated() where pruneDominated {
                let (low, high) = inputRange(of: value)
                for (option, element) in value.options.enumerated() where usable[signature][option] {
                    guard families[Int(element.family)].isUnlimited(from: Int(element.boundary)) else { continue }
                    for (other, candidate) in value.options.enumerated() where other != option && usable[signature][other] {
                        if dominates(element, candidate, low: low, high: high) {
                            usable[signature][other] = false
                            pruned = true
                        }
                    }
                }
            }
            if !changed && !pruned { break }
        }
        for signature in signatures.indices {
            signatures[signature].options = signatures[signature].options.enumerated().filter { usable[signature][$0.offset] }.map(\.element)
        }
    }

    /// True when `winner` costs no more than `loser` over the input range (checked at both ends; costs are linear).
    /// In a plan small enough to search exhaustively, neither may carry a share of a prefix group's write: what a member
    /// costs there depends on whether another member pays the write, so only the search that counts writes whole may rule
    /// either out. Larger plans prune on the shared price, which keeps the program small; their bound reads every option.
    private func dominates(_ winner: Option, _ loser: Option, low: Int, high: Int) -> Bool {
        guard requests.count > PlanSolver.exhaustiveLimit || (!winner.sharesWrite && !loser.sharesWrite) else { return false }
        let at = { (option: Option, input: Int) in (option.cost(input: input).cost, option.preference) }
        return at(winner, low) <= at(loser, low) && at(winner, high) <= at(loser, high)
    }

    private func demand(of signature: Signature) -> (requests: Int64, tokens: Int64) {
        var tokens: Int64 = 0
        for member in signature.members { tokens &+= Int64(requests[Int(members[member])].rateLimitTokens) }
        return (Int64(signature.members.count), tokens)
    }

    private func inputRange(of signature: Signature) -> (Int, Int) {
        guard !signature.members.isEmpty else { return (0, 0) }
        return (requests[Int(members[signature.members.lowerBound])].needs.inputTokens,
                requests[Int(members[signature.members.upperBound - 1])].needs.inputTokens)
    }

    // MARK: - Classes

    private func buildClasses() {
        // A signature is settled when one option is cheapest over all its input sizes and can never run out.
        var contested: [Bool] = []
        var contestedMembers = 0
        for signature in signatures {
            let (low, high) = inputRange(of: signature)
            let cheapestLow = signature.options.indices.min { (signature.options[$0].cost(input: low).cost, signature.options[$0].preference) < (signature.options[$1].cost(input: low).cost, signature.options[$1].preference) }
            let cheapestHigh = signature.options.indices.min { (signature.options[$0].cost(input: high).cost, signature.options[$0].preference) < (signature.options[$1].cost(input: high).cost, signature.options[$1].preference) }
            var settled = signature.options.isEmpty
            if let cheapestLow, cheapestLow == cheapestHigh {
                let option = signature.options[cheapestLow]
                settled = families[Int(option.family)].isUnlimited(from: Int(option.boundary))
            }
            contested.append(!settled)
            if !settled { contestedMembers += signature.members.count }
        }
        for (index, signature) in signatures.enumerated() {
            let pieces: Int
            if contested[index] {
                let share = Int((Int64(PlanningProblem.classBudget) * Int64(signature.members.count)) / Int64(max(contestedMembers, 1)))
                pieces = max(1, min(share, signature.members.count))
            } else {
                pieces = 1
            }
            for range in split(signature.members, into: pieces) {
                addClass(members: range, signature: index, contested: contested[index])
            }
        }
        for (group, placement) in zip(held.indices, heldPlacement) {
            guard let placement else {
                unfitHeld.append(group)
                continue
            }
            let boundary = boundaryIndex(placement.family, placement.moment)
            let option = Option(
                family: Int32(placement.family), boundary: Int32(boundary), model: Int32(families[placement.family].model),
                expectedOutput: 0, mode: held[group].mode, inputPrice: 0, outputPrice: 0, preference: 0)
            signatures.append(Signature(deadline: held[group].latestStart, ceiling: -1, options: [option], eligibility: -1, tier: -1, maxOutput: 0, liveOnly: false))
            classes.append(RequestClass(
                members: 0..<0, options: [0], signature: Int32(signatures.count - 1), held: Int32(group), count: held[group].requests,
                inputSum: 0, tokenSum: held[group].tokens, tokenMax: held[group].largestRequestTokens,
                contested: !families[placement.family].isUnlimited(from: boundary)))
        }
    }

    /// Splits sorted members into up to `pieces` runs of equal width in log(input size); into single requests
    /// when there may be as many pieces as members (the program then sees every request's own size).
    private func split(_ range: Range<Int>, into pieces: Int) -> [Range<Int>] {
        guard pieces > 1, range.count > 1 else { return [range] }
        if pieces >= range.count { return range.map { $0..<($0 + 1) } }
        let low = log(Double(max(requests[Int(members[range.lowerBound])].needs.inputTokens, 1)))
        let high = log(Double(max(requests[Int(members[range.upperBound - 1])].needs.inputTokens, 1)))
        guard high > low else { return [range] }
        let width = (high - low) / Double(pieces)
        var result: [Range<Int>] = []
        var start = range.lowerBound
        var bucket = 0
        for position in range {
            let value = log(Double(max(requests[Int(members[position])].needs.inputTokens, 1)))
            let own = min(Int((value - low) / width), pieces - 1)
            if own != bucket {
                if position > start { result.append(start..<position) }
                start = position
                bucket = own
            }
        }
        result.append(start..<range.upperBound)
        return result
    }

    private func addClass(members range: Range<Int>, signature: Int, contested: Bool) {
        guard !range.isEmpty else { return }
        var inputSum: Int64 = 0, tokenSum: Int64 = 0, tokenMax: Int64 = 0
        for position in range {
            let request = requests[Int(members[position])]
            inputSum &+= Int64(request.needs.inputTokens)
            tokenSum &+= Int64(request.rateLimitTokens)
            tokenMax = max(tokenMax, Int64(request.rateLimitTokens))
        }
        let options = signatures[signature].options
        let average = Int(inputSum / Int64(range.count))
        let order = options.indices.sorted { (options[$0].cost(input: average).cost, options[$0].preference) < (options[$1].cost(input: average).cost, options[$1].preference) }
        classes.append(RequestClass(
            members: range, options: order.map { Int32($0) }, signature: Int32(signature), count: range.count, inputSum: inputSum,
            tokenSum: tokenSum, tokenMax: tokenMax, contested: contested))
    }

    // MARK: - For the solver

    func option(_ requestClass: RequestClass, _ index: Int32) -> Option { signatures[Int(requestClass.signature)].options[Int(index)] }

    /// The class's average cost per request on an option, in pico-USD (a group's write shared over its members).
    func averageCost(_ requestClass: RequestClass, _ option: Option) -> Double {
        guard requestClass.count > 0 else { return 0 }
        let input = Double(requestClass.inputSum) / Double(requestClass.count)
        func priced(_ inputPrice: Int64, _ outputPrice: Int64, _ cache: CacheTerms?) -> Double {
            let plain = input * Double(inputPrice) + Double(option.expectedOutput) * Double(outputPrice)
            guard let cache else { return plain }
            return plain + Double(cache.adjustment(inputPrice: inputPrice)) + Double(cache.writeShare)
        }
        var cost = priced(option.inputPrice, option.outputPrice, option.cache)
        if option.flexInputPrice >= 0 {
            cost = min(cost, priced(option.flexInputPrice, option.flexOutputPrice, option.flexCache))
        }
        return cost
    }

    // MARK: - Caching's exact charge

    /// What a prefix group's write is paid once for: the request's group on one family.
    func writeKey(request: Int, family: Int32) -> Int64 { Int64(groupOfRequest[request]) << 32 | Int64(family) }

    /// Each placed request's expected cost with the writes charged as they fall: every call of a group on a family pays
    /// its per-request price, and the group's first there (the primer; the lowest index here) its write too. Sums to
    /// no less than the linear program's shared writes, and to exactly that for a group placed whole.
    func exactCosts(optionOfRequest: [Int32]) -> [Int64] {
        var costs = [Int64](repeating: 0, count: requests.count)
        var primed = Set<Int64>()
        for request in requests.indices where optionOfRequest[request] >= 0 {
            let option = signatures[Int(signatureOfRequest[request])].options[Int(optionOfRequest[request])]
            let priced = option.cost(input: requests[request].needs.inputTokens)
            costs[request] = priced.cost
            guard let cache = priced.cache, cache.write > 0 || cache.writeShare > 0 else { continue }
            costs[request] &-= cache.writeShare
            if primed.insert(writeKey(request: request, family: option.family)).inserted { costs[request] &+= cache.write }
        }
        return costs
    }

    /// Why an eligible, usable model has no option for the (single) request: too slow for its deadline, or
    /// dearer than its ceiling.
    func whyNoOption(model index: Int, request: PlannableRequest) -> Exclusion {
        let model = models[index]
        let output = expectedOutput(tier: tierOfRequest.first ?? 0, model: index, maxOutput: request.needs.maxOutputTokens)
        let duration = model.speed.callDuration(outputTokens: output)
        let left = min(request.deadlineAt, horizonEnd) - now
        if let ceiling = request.maxCost, duration < left {
            let estimate = Eligibility.cheapestSyncPrices(of: model).cost(inputTokens: request.needs.inputTokens, outputTokens: output)
            if estimate > ceiling { return .overCeiling(estimate: estimate, ceiling: ceiling) }
        }
        return .deadline(neededMilliseconds: duration, leftMilliseconds: left)
    }

    /// The latest start a request may use on an option (its boundary), for dispatch and for the capacity other plans hold.
    func latestStart(_ option: Option) -> Int64 { families[Int(option.family)].boundaries[Int(option.boundary)] }
}
