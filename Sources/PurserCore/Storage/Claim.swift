/// What admitting candidates under the caps did: how many it held and why, how many wait for calls in flight.
public protocol BudgetTally {
    var held: Int { get set }
    var holdReasons: [String: HoldReason] { get set }
    var waitingForBudget: Int { get set }
}

/// What one claim did: the requests it leased, with their money reserved, and what budgets said.
public struct Claim: Sendable, BudgetTally {
    public var requests: [ClaimedRequest] = []
    /// Requests held because their worst case does not fit under a cap, and why (one reason per cap).
    public var held = 0
    /// The latest reason given, per cap that held something.
    public var holdReasons: [String: HoldReason] = [:]
    /// Requests left queued until calls in flight settle and free their reservations.
    public var waitingForBudget = 0
    /// The caps this claim looked at, with its reservations added.
    public var capUses: [CapUse] = []
    /// Claimed to spill over off a model whose present rate would not reach them in time (`ClaimedRequest.spillsOver`).
    public var spilling: Set<Int64> = []
    /// Models whose present rate would not reach every request queued on them by its latest start: they take no
    /// requests spilled from others.
    public var overbooked: Set<String> = []

    public init() {}
}

/// What is left for a run to do, and when it can next do some of it.
public struct WorkRemaining: Sendable {
    /// Queued or waiting requests whose plan is on a usable model.
    public var dispatchable: Int
    /// The soonest moment something becomes claimable (a retry time or a lease expiry).
    public var soonest: Int64?
    /// Requests running under any lease.
    public var running: Int
    /// Queued requests planned on models that cannot be used now (providers disabled or paused).
    public var blocked: Int
    /// Queued requests with no plan (no eligible model had room before the deadline).
    public var unplanned: Int
    /// Requests held by a budget cap.
    public var held: Int
    /// Requests in batches sent to a provider, not counted in `running` when the run does not wait for them.
    public var inBatches = 0
    /// Batches with a step left for this run: to send, to poll, or results to store.
    public var openBatches = 0

    public init(
        dispatchable: Int, soonest: Int64?, running: Int, blocked: Int, unplanned: Int, held: Int, inBatches: Int = 0, openBatches: Int = 0
    ) {
        self.dispatchable = dispatchable
        self.soonest = soonest
        self.running = running
        self.blocked = blocked
        self.unplanned = unplanned
        self.held = held
        self.inBatches = inBatches
        self.openBatches = openBatches
    }
}
