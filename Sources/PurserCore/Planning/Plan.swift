/// The planner's answer for a set of requests: a model, mode and estimated cost for each, the sums, a lower
/// bound on what any plan could cost, and the baseline to compare with.
public struct Plan: Sendable {
    /// One request's plan, assembled from the plan's columns.
    public struct Entry: Sendable {
        public var requestID: Int64
        /// Nil when no eligible model has room before the deadline.
        public var model: String?
        public var mode: DispatchMode?
        /// When the call may start (a discount window's opening for offpeak), and the latest it may start and still finish in time.
        public var startAt: Int64?
        public var latestStart: Int64?
        public var estimatedCost: Money
        /// The request on its reference model, sync, at list price.
        public var baselineCost: Money
    }

    /// One line of the mix: how many requests go to a model in a mode, and what they cost.
    public struct MixLine: Sendable, Hashable {
        public var model: String
        public var mode: DispatchMode
        public var requests: Int
        public var estimatedCost: Money
    }

    /// Whether every request could have been served on its reference model within the same limits.
    public struct BaselineCheck: Sendable, Hashable {
        /// Requests that do not fit when every request is on its reference model (0: the baseline is feasible).
        public var requestsOver: Int
        public var isFeasible: Bool { requestsOver == 0 }
    }

    /// How the solver went, for the benchmark and for `plan --json`.
    public struct SolverFigures: Sendable, Hashable {
        public var requestRows: Int
        public var tokenRows: Int
        public var contestedClasses: Int
        public var iterations: Int
        public var linearProgramOptimal: Bool
        public var exhaustive: Bool
    }

    public var requestIDs: [Int64]
    /// Catalog model index per request, -1 when unplaced.
    public var modelOfRequest: [Int32]
    public var modeOfRequest: [DispatchMode]
    public var startOfRequest: [Int64]
    public var latestStartOfRequest: [Int64]
    public var costOfRequest: [Int64]
    public var baselineOfRequest: [Int64]
    /// The catalog's model ids, indexed like `modelOfRequest`.
    public var modelIDs: [String]
    public var estimatedCost: Money
    public var baselineCost: Money
    /// No plan placing as many requests, within the same limits and beside the same held plans, costs less.
    public var lowerBound: Money
    public var mix: [MixLine]
    /// Requests no eligible model can take before their deadline; they stay queued.
    public var unplaced: Int
    /// Other jobs' plans that no longer fit in the time left: they must be planned again.
    public var unfitHeld: [HeldCapacity]
    public var baseline: BaselineCheck
    public var solver: SolverFigures
    /// Prompt caching in the plan: the requests expected to read a shared prefix from the provider's cache, the tokens
    /// they are expected to read, and what caching takes off the plan's cost (its reads less its writes' extra).
    public var cachingRequests = 0
    public var expectedCachedTokens: Int64 = 0
    public var cacheSaving = Money.zero

    /// The baseline of the requests the plan places: a saving is claimed only on what it serves.
    public var placedBaselineCost: Money {
        guard unplaced > 0 else { return baselineCost }
        var total = Money.zero
        for index in modelOfRequest.indices where modelOfRequest[index] >= 0 { total = total + Money(picoUSD: baselineOfRequest[index]) }
        return total
    }

    public var saving: Money { placedBaselineCost - estimatedCost }

    /// The part of the saving that comes from routing (models, modes and times), the rest being caching's.
    public var routingSaving: Money { saving - cacheSaving }

    /// The saving as a share of the placed requests' baseline, in basis points (exact integer division, rounded down).
    public var savingBasisPoints: Int64 {
        saving.basisPoints(of: placedBaselineCost) ?? 0
    }

    /// True when the plan places no request at all: it claims no saving and no optimality.
    public var placesNothing: Bool { unplaced == count }

    /// How far the plan's cost may be above the cheapest possible, in basis points of the lower bound
    /// (rounded up, so a printed 0.00% means none); nil when the bound is zero and the plan is not.
    public var gapBasisPoints: Int64? {
        let gap = Int128(estimatedCost.picoUSD) - Int128(lowerBound.picoUSD)
        guard gap > 0 else { return 0 }
        guard lowerBound.picoUSD > 0 else { return nil }
        return Int64(clamping: (gap * 10_000 + Int128(lowerBound.picoUSD) - 1) / Int128(lowerBound.picoUSD))
    }

    /// True only when the plan costs exactly its lower bound.
    public var isOptimal: Bool { estimatedCost <= lowerBound }

    /// The gap as a person reads it: `0.12%`, `< 0.01%` when positive but under a basis point, `0%` when optimal.
    public var gapText: String {
        guard let basisPoints = gapBasisPoints else { return "unknown" }
        if basisPoints == 0 { return "0%" }
        if (Int128(estimatedCost.picoUSD) - Int128(lowerBound.picoUSD)) * 10_000 < Int128(lowerBound.picoUSD) { return "< 0.01%" }
        return DecimalText.format(basisPoints, decimals: 2) + "%"
    }

    public var count: Int { requestIDs.count }

    public func entry(_ index: Int) -> Entry {
        let model = modelOfRequest[index]
        return Entry(
            requestID: requestIDs[index], model: model >= 0 ? modelIDs[Int(model)] : nil, mode: model >= 0 ? modeOfRequest[index] : nil,
            startAt: model >= 0 ? startOfRequest[index] : nil, latestStart: model >= 0 ? latestStartOfRequest[index] : nil,
            estimatedCost: Money(picoUSD: costOfRequest[index]), baselineCost: Money(picoUSD: baselineOfRequest[index]))
    }

    public var entries: [Entry] { requestIDs.indices.map(entry) }
}

/// Every candidate for one request, for `purser plan --explain`.
public struct PlanExplanation: Sendable {
    public struct Candidate: Sendable {
        public var model: String
        public var quality: Int
        /// The cheapest way this model could serve the request, when it can.
        public var bestCost: Money?
        public var bestMode: DispatchMode?
        public var exclusion: Exclusion?
        public var chosen: Bool
        /// What prompt caching does to that cost, when the model caches the request's shared prefix there.
        public var cache: CacheUse? = nil
    }

    /// A model's cache terms for the request: the prefix tokens priced as cached, their expected price (a read, or the
    /// mix of reads and writes a best-effort batch gets), the share of calls expected to read, and the write its
    /// prefix group pays once on the model (each request's cost carries its share of it).
    public struct CacheUse: Sendable, Hashable {
        public var tokens: Int
        public var hitBasisPoints: Int64
        public var pricePerMillion: TokenPrice
        public var write: Money
    }

    public var request: PlannableRequest
    public var candidates: [Candidate]
    /// Why no candidate goes by batch, when some model sells batches (nil when one does, or none sells them).
    public var batchNote: String?
    public var baselineCost: Money
    /// The request's prefix group, when others planned with it share its leading content: its tokens and its requests.
    public var prefixGroup: (tokens: Int, requests: Int)? = nil
}
