/// The planner's answer for a set of requests: a model, mode and estimated cost for each, and the sums.
public struct Plan: Sendable {
    public struct Entry: Sendable {
        public var requestID: Int64
        /// Nil when no eligible model has room before the deadline.
        public var model: String?
        public var mode: DispatchMode?
        public var startAt: Int64?
        public var estimatedCost: Money
        /// Every request on its reference model, sync, at list price.
        public var baselineCost: Money
    }

    /// One line of the mix: how many requests go to a model in a mode, and what they cost.
    public struct MixLine: Sendable, Hashable {
        public var model: String
        public var mode: DispatchMode
        public var requests: Int
        public var estimatedCost: Money
    }

    public var entries: [Entry]
    public var estimatedCost: Money
    public var baselineCost: Money
    public var mix: [MixLine]
    /// Requests no eligible model can take before their deadline; they stay queued.
    public var unplaced: Int
    /// True when the solver proved no cheaper assignment exists under the same capacities.
    public var provenOptimal: Bool

    public var saving: Money { baselineCost - estimatedCost }

    /// The saving as a share of the baseline, in basis points (exact integer division, rounded down).
    public var savingBasisPoints: Int64 {
        baselineCost.picoUSD > 0 ? saving.picoUSD * 10_000 / baselineCost.picoUSD : 0
    }
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
    }

    public var request: PlannableRequest
    public var candidates: [Candidate]
    public var baselineCost: Money
}
