public struct FormedBatches: Sendable, BudgetTally {
    public var batches: [BatchRow] = []
    public var held = 0
    public var holdReasons: [String: HoldReason] = [:]
    public var waitingForBudget = 0
    /// The caps looked at, with the batches' reservations added.
    public var capUses: [CapUse] = []

    public init() {}
}

public struct BatchResultCounts: Sendable {
    public var succeeded = 0, failed = 0, replanned = 0, moved = 0, late = 0
    public var spend = Money.zero

    public init() {}
}

/// What the provider may have done with the requests a batch still holds when it is closed.
public enum UnansweredLines: Sendable {
    /// Nothing was billed for them (the batch was never sent, was refused, or failed validation).
    case notBilled
    /// The batch ended and gave no line for them (a line cut off, or too long to read): the provider may have
    /// answered and billed them, so their worst case stays counted as unsettled. Each batch a request went into
    /// was an attempt: at `maximumAttempts` it fails rather than go into another.
    case mayBeBilled(maximumAttempts: Int, now: Int64)
}
