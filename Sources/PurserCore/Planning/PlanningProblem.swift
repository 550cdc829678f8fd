/// A request as the planner sees it.
public struct PlannableRequest: Sendable {
    public var id: Int64
    public var needs: RequestNeeds
    public var referenceModel: String?
    public var deadlineAt: Int64
    public var maxCost: Money?

    public init(id: Int64, needs: RequestNeeds, referenceModel: String?, deadlineAt: Int64, maxCost: Money?) {
        self.id = id
        self.needs = needs
        self.referenceModel = referenceModel
        self.deadlineAt = deadlineAt
        self.maxCost = maxCost
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
    /// Batch mode is priced but chosen only once a batch dispatcher exists.
    public var batchDispatchAvailable: Bool
    /// Flex calls may be refused with 429; only requests with at least this much time left use them.
    public var flexMinimumLeadMilliseconds: Int64
    /// At most this many deadline classes split time into slots; more distinct deadlines are rounded down.
    public var maximumDeadlineClasses: Int

    public init(
        catalog: PricingCatalog, now: Int64, usableProviders: Set<String>, history: OutputHistory = OutputHistory(),
        batchDispatchAvailable: Bool = false, flexMinimumLeadMilliseconds: Int64 = 3_600_000, maximumDeadlineClasses: Int = 8
    ) {
        self.catalog = catalog
        self.now = now
        self.usableProviders = usableProviders
        self.history = history
        self.batchDispatchAvailable = batchDispatchAvailable
        self.flexMinimumLeadMilliseconds = flexMinimumLeadMilliseconds
        self.maximumDeadlineClasses = maximumDeadlineClasses
    }

    /// Providers usable from the environment's keys, or all of them when simulating.
    public static func usableProviders(catalog: PricingCatalog, environment: [String: String], simulate: Bool) -> Set<String> {
        Set(catalog.providers.values.filter { simulate || $0.hasKey(in: environment) }.map(\.name))
    }
}

/// The capacity-constrained assignment behind a plan.
///
/// Time from now to the latest deadline is cut into slots at the requests' deadlines. Each model has
/// a resource per slot for list-price time and, where it has discount windows, one for the windows'
/// time; a resource takes as many requests as the model's rate limits allow in that time
/// (requests/min × minutes, and tokens/min × minutes ÷ the average request's tokens). A request may use
/// any resource of an eligible model in a slot that ends by its deadline and leaves time for the call.
public final class PlanningProblem: AssignmentProblem {
    public struct Resource: Sendable {
        public var model: Int
        public var slot: Int
        public var mode: DispatchMode
        /// The earliest moment this resource's time is available.
        public var earliestStart: Int64
        public var capacity: Int
        public var basisPoints: Int64
    }

    public let context: PlanningContext
    public let requests: [PlannableRequest]
    public let models: [Model]
    public private(set) var resources: [Resource] = []
    public var capacities: [Int] { resources.map(\.capacity) }
    public var requestCount: Int { requests.count }
    /// Slot boundaries: slot k runs from `slotEnds[k-1]` (or now) to `slotEnds[k]`.
    public private(set) var slotEnds: [Int64] = []
    private var slotLimitOfRequest: [Int32] = []
    /// resources of model m in slot s: `resourcesByModelSlot[m * slots + s]`.
    private var resourcesByModelSlot: [[Int]] = []
    private var modelRankByID: [Int] = []
    private let historyByTier: OutputHistoryByTier
    /// Per model: its provider (nil when providers.json lacks it) and whether it can be called.
    private let providerOfModel: [Provider?]
    private let modelIsUsable: [Bool]
    private let facts: [ModelFacts]
    private let modelIndexByID: [String: Int]
    /// The batch-API resource of each model, when batch dispatch is available.
    private var batchResourceOfModel: [Int: Int] = [:]
    /// A provider's batch API answers within this window.
    public static let batchWindowMilliseconds: Int64 = 86_400_000

    public init(requests: [PlannableRequest], context: PlanningContext) {
        self.context = context
        self.requests = requests
        self.models = context.catalog.models
        self.historyByTier = context.history.byTier(models: context.catalog.models)
        self.providerOfModel = context.catalog.models.map { context.catalog.providers[$0.provider] }
        self.modelIsUsable = context.catalog.models.map { context.usableProviders.contains($0.provider) }
        self.facts = context.catalog.models.map(ModelFacts.init)
        self.modelIndexByID = Dictionary(context.catalog.models.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first })
        let byID = models.indices.sorted { models[$0].id < models[$1].id }
        modelRankByID = [Int](repeating: 0, count: models.count)
        for (rank, index) in byID.enumerated() { modelRankByID[index] = rank }
        buildSlots()
        buildResources()
    }

    private func buildSlots() {
        let now = context.now
        let distinct = Set(requests.lazy.map(\.deadlineAt).filter { $0 > now }).sorted()
        var ends = distinct
        if distinct.count > context.maximumDeadlineClasses {
            let classes = context.maximumDeadlineClasses
            ends = (0..<classes).map { distinct[$0 * (distinct.count - 1) / (classes - 1)] }
            ends = Array(Set(ends)).sorted()
        }
        slotEnds = ends
        slotLimitOfRequest = requests.map { request in
            // The number of slots that end by this request's deadline (rounded down, so never late).
            var low = 0, high = ends.count
            while low < high {
                let middle = (low + high) / 2
                if ends[middle] <= request.deadlineAt { low = middle + 1 } else { high = middle }
            }
            return Int32(low)
        }
    }

    private func buildResources() {
        let totalTokens = requests.reduce(0) { $0 + $1.needs.inputTokens + $1.needs.maxOutputTokens }
        let averageTokens = max(1, requests.isEmpty ? 1 : totalTokens / requests.count)
        let slots = slotEnds.count
        resourcesByModelSlot = [[Int]](repeating: [], count: models.count * max(slots, 1))
        for (modelIndex, model) in models.enumerated() where context.usableProviders.contains(model.provider) {
            var slotStart = context.now
            let windows = model.discountWindows.isEmpty ? [] : mergedWindows(model, until: slotEnds.last ?? context.now)
            let windowBasisPoints = model.discountWindows.map(\.multiplierBasisPoints).min() ?? 10_000
            for (slot, slotEnd) in slotEnds.enumerated() {
                let inWindow = windows.compactMap { window -> Range<Int64>? in
                    let lower = max(window.lowerBound, slotStart), upper = min(window.upperBound, slotEnd)
                    return lower < upper ? lower..<upper : nil
                }
                let windowTime = inWindow.reduce(Int64(0)) { $0 + ($1.upperBound - $1.lowerBound) }
                let listTime = (slotEnd - slotStart) - windowTime
                let listStart = firstMomentOutside(inWindow, from: slotStart, to: slotEnd)
                func add(_ mode: DispatchMode, time: Int64, start: Int64, basisPoints: Int64) {
                    let capacity = capacityOf(model, milliseconds: time, averageTokens: averageTokens)
                    guard capacity > 0 else { return }
                    resourcesByModelSlot[modelIndex * slots + slot].append(resources.count)
                    resources.append(Resource(model: modelIndex, slot: slot, mode: mode, earliestStart: start, capacity: capacity, basisPoints: basisPoints))
                }
                if listTime > 0 { add(.sync, time: listTime, start: listStart, basisPoints: 10_000) }
                if windowTime > 0 { add(.offpeak, time: windowTime, start: inWindow[0].lowerBound, basisPoints: windowBasisPoints) }
                slotStart = slotEnd
            }
            if context.batchDispatchAvailable, model.batchPrices != nil, context.catalog.providers[model.provider]?.offersBatchAPI == true {
                batchResourceOfModel[modelIndex] = resources.count
                resources.append(Resource(
                    model: modelIndex, slot: -1, mode: .batch, earliestStart: context.now, capacity: Int(Int32.max), basisPoints: 10_000))
            }
        }
    }

    private func mergedWindows(_ model: Model, until end: Int64) -> [Range<Int64>] {
        let all = model.discountWindows.flatMap { $0.intervals(from: context.now, to: end) }.sorted { $0.lowerBound < $1.lowerBound }
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

    private func firstMomentOutside(_ windows: [Range<Int64>], from start: Int64, to end: Int64) -> Int64 {
        var moment = start
        for window in windows where window.lowerBound <= moment && moment < window.upperBound { moment = window.upperBound }
        return min(moment, end)
    }

    /// How many requests a model's rate limits admit in `milliseconds`; limits so large that the
    /// product overflows count as unlimited (`Int32.max`).
    private func capacityOf(_ model: Model, milliseconds: Int64, averageTokens: Int) -> Int {
        func perWindow(_ perMinute: Int) -> Int64 {
            let (product, overflow) = Int64(perMinute).multipliedReportingOverflow(by: milliseconds)
            return overflow ? Int64.max : product / 60_000
        }
        let byRequests = perWindow(model.rateLimits.requestsPerMinute)
        let byTokens = perWindow(model.rateLimits.tokensPerMinute) / Int64(averageTokens)
        return Int(min(byRequests, byTokens, Int64(Int32.max)))
    }

    // MARK: - Options

    public func options(for request: Int) -> [AssignmentOption] {
        var result: [AssignmentOption] = []
        enumerateOptions(for: request) { option, _ in result.append(option) }
        result.sort { ($0.cost, $0.preference) < ($1.cost, $1.preference) }
        return result
    }

    public func cheapestOption(for request: Int) -> AssignmentOption? {
        var best: AssignmentOption?
        enumerateOptions(for: request) { option, _ in
            if best == nil || (option.cost, option.preference) < (best!.cost, best!.preference) { best = option }
        }
        return best
    }

    /// The mode and start time an option stands for.
    public func describe(resource: Int, request: Int) -> (model: Int, mode: DispatchMode, startAt: Int64) {
        let chosen = resources[resource]
        var mode = chosen.mode
        if mode == .sync, flexIsCheaper(chosen.model, for: requests[request]) { mode = .flex }
        return (chosen.model, mode, max(chosen.earliestStart, context.now))
    }

    private func flexIsCheaper(_ modelIndex: Int, for request: PlannableRequest) -> Bool {
        let model = facts[modelIndex]
        guard let flex = model.flexPrices, request.deadlineAt - context.now >= context.flexMinimumLeadMilliseconds else { return false }
        let output = OutputHistoryByTier.expectedOutputTokens(
            historyByTier.samples(tier: request.needs.qualityTier), model: modelIndex,
            maxOutputTokens: request.needs.maxOutputTokens)
        return flex.cost(inputTokens: request.needs.inputTokens, outputTokens: output)
            < model.prices.cost(inputTokens: request.needs.inputTokens, outputTokens: output)
    }

    /// Calls `body` with every option, or with the reason each model is excluded when `exclusions` is given.
    func enumerateOptions(for index: Int, exclusions: ((Model, Exclusion) -> Void)? = nil, _ body: (AssignmentOption, Resource) -> Void) {
        let request = requests[index]
        let slots = slotEnds.count
        let slotLimit = Int(slotLimitOfRequest[index])
        let samples = historyByTier.samples(tier: request.needs.qualityTier)
        let pinnedIndex = request.needs.pinnedModel.flatMap { modelIndexByID[$0] }
        for modelIndex in facts.indices {
            let model = facts[modelIndex]
            if let exclusion = Eligibility.staticExclusion(of: model, isPinnedModel: pinnedIndex == modelIndex, for: request.needs) {
                exclusions?(models[modelIndex], exclusion)
                continue
            }
            guard let provider = providerOfModel[modelIndex] else {
                exclusions?(models[modelIndex], .unknownProvider(models[modelIndex].provider))
                continue
            }
            guard modelIsUsable[modelIndex] else {
                exclusions?(models[modelIndex], .noKey(provider: provider.name, variable: provider.apiKeyEnvironmentVariable))
                continue
            }
            let output = OutputHistoryByTier.expectedOutputTokens(samples, model: modelIndex, maxOutputTokens: request.needs.maxOutputTokens)
            let duration = model.speed.callDuration(outputTokens: output)
            let listCost = model.prices.cost(inputTokens: request.needs.inputTokens, outputTokens: output)
            var syncCost = listCost
            if let flex = model.flexPrices, request.deadlineAt - context.now >= context.flexMinimumLeadMilliseconds {
                syncCost = min(syncCost, flex.cost(inputTokens: request.needs.inputTokens, outputTokens: output))
            }
            let preference = Int64(100 - model.quality) << 44 | min(duration / 1000, (1 << 23) - 1) << 20 | Int64(modelRankByID[modelIndex]) << 8
            var found = false
            var cheapestRejectedByCeiling: Money?
            for slot in 0..<slotLimit {
                for resourceIndex in resourcesByModelSlot[modelIndex * slots + slot] {
                    let resource = resources[resourceIndex]
                    guard resource.earliestStart + duration <= request.deadlineAt else { continue }
                    let cost = resource.mode == .offpeak
                        ? model.prices.scaled(basisPoints: resource.basisPoints).cost(inputTokens: request.needs.inputTokens, outputTokens: output)
                        : syncCost
                    if let ceiling = request.maxCost, cost > ceiling {
                        if cheapestRejectedByCeiling == nil || cost < cheapestRejectedByCeiling! { cheapestRejectedByCeiling = cost }
                        continue
                    }
                    found = true
                    body(AssignmentOption(resource: resourceIndex, cost: cost.picoUSD, preference: preference | Int64(min(slot, 255))), resource)
                }
            }
            if !batchResourceOfModel.isEmpty, let resourceIndex = batchResourceOfModel[modelIndex], let batchPrices = model.batchPrices,
                request.deadlineAt - context.now >= PlanningProblem.batchWindowMilliseconds
            {
                let cost = batchPrices.cost(inputTokens: request.needs.inputTokens, outputTokens: output)
                if request.maxCost.map({ cost <= $0 }) ?? true {
                    found = true
                    body(AssignmentOption(resource: resourceIndex, cost: cost.picoUSD, preference: preference | 255), resources[resourceIndex])
                }
            }
            if !found, let exclusions {
                if let rejected = cheapestRejectedByCeiling, let ceiling = request.maxCost {
                    exclusions(models[modelIndex], .overCeiling(estimate: rejected, ceiling: ceiling))
                } else {
                    exclusions(models[modelIndex], .deadline(neededMilliseconds: duration, leftMilliseconds: request.deadlineAt - context.now))
                }
            }
        }
    }
}
