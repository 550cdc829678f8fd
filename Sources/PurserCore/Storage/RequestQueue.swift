/// The requests waiting to be served, as a run sees them: claimed under the caps (admission inside the one atomic
/// claim), then each finished exactly once — succeeded (`recordSuccess`, `storeRecovered`: the one success write, for
/// live calls, batch lines and the recovery file alike), retried later, failed, expired or released back to the
/// queue. Every finishing write is guarded by the claimer's lease. A backend owns its isolation (SQLite:
/// `BEGIN IMMEDIATE`); what is decided, `Admission` and the request's life, is the same for every backend.
public protocol RequestQueue: Sendable {
    /// Leases up to `limit` due requests in deadline order, at most what each model's `allowances` let start now,
    /// reserving each one's worst case under its caps in the same atomic step.
    func claim(
        limit: Int, now: Int64, leaseUntil: Int64, job: Int64?, excludedModels: [String], simulated: Bool, catalog: PricingCatalog,
        allowances: [String: RateLimiter.Allowance]?
    ) async throws -> Claim

    /// Stores a paid answer with its cost and attempt, ending the lease; false when the lease was lost meanwhile.
    func recordSuccess(_ answer: PaidAnswer, estimatedInputTokens: Int) async throws -> Bool
    /// Stores each of `answers` as `recordSuccess` does, together where the backend can: for each, in order, whether it
    /// was kept, or the error its write met (one answer's failed write leaves the others stored).
    func recordSuccesses(_ answers: [StoringAnswer]) async -> [Result<Bool, any Error>]
    /// Stores a paid answer from the recovery file once; false when the request already has a result.
    func storeRecovered(_ answer: PaidAnswer) async throws -> Bool
    func recordRetry(_ request: ClaimedRequest, at: Int64, attempt: AttemptRecord) async throws
    /// Ends the lease of a request `failed`; false, writing nothing, when the lease was lost meanwhile.
    func recordFailure(_ request: ClaimedRequest, error: String, attempt: AttemptRecord?) async throws -> Bool
    /// Ends the lease of a request `expired`; false, writing nothing, when the lease was lost meanwhile.
    func recordExpiry(_ request: ClaimedRequest, reason: String) async throws -> Bool
    /// Puts a claimed request back in the queue (`notBefore`: not before then); `mayHaveBeenBilled` keeps its
    /// reservation counted as an unsettled charge.
    func release(
        _ request: ClaimedRequest, countAttempt: Bool, attempt: AttemptRecord?, reason: String?, notBefore: Int64?, mayHaveBeenBilled: Bool, now: Int64
    ) async throws
    /// Replaces the request's reservation with `amount` if that fits under its caps.
    func moveReservation(_ request: ClaimedRequest, to amount: Money, now: Int64, simulated: Bool) async throws -> Bool
    /// Moves a request's plan to another model (a fallback, a 429, a spill).
    func replan(_ request: Int64, model: String, mode: DispatchMode, cost: Money, latestStart: Int64) async throws
    /// Models the request should not be tried on again.
    func exhaustedModels(for request: Int64, threshold: Int) async throws -> Set<String>
    /// Retryable failures of the request on the model so far.
    func failures(on model: String, request: Int64) async throws -> Int

    /// In a sped-up rehearsal, requests planned to wait for a discount window become due now.
    func endPlannedWaits(now: Int64) async throws
    /// Requests held by a month's cap that has ended go back to the queue; how many.
    func releaseEndedHolds(now: Int64) async throws -> Int
    /// Requests whose lease lapsed go back to the queue; how many.
    func rescueExpiredLeases(now: Int64) async throws -> Int
    /// Leases held by other processes' runs: owner, requests, until when.
    func leasesHeldElsewhere() async throws -> [(owner: String, requests: Int, until: Int64)]
    /// Takes over the leases of runs on this host whose process is gone: the requests `startedCalls` names for an
    /// owner (nil: all of them) may have been billed and are counted unsettled, the others go back with their
    /// reservations dropped. Per owner, how many requests it held and how many of them it never called.
    func takeOverGoneOwners(
        now: Int64, startedCalls: @Sendable (String) -> Set<Int64>?
    ) async throws -> [(owner: LeaseOwner, requests: Int, neverCalled: Int)]
    func extendLeases(until: Int64) async throws
    /// The requests this run holds leased.
    func leasedRequests() async throws -> [Int64]
    /// Requests in scope past their deadline are expired; how many.
    func expireOverdue(now: Int64, job: Int64?) async throws -> Int
    /// Queued requests planned on `models` (which cannot be used) are planned again; how many.
    func unplanStranded(onModels models: [String], job: Int64?) async throws -> Int

    func remaining(job: Int64?, excludedModels: [String], waitForBatches: Bool) async throws -> WorkRemaining
    func requestsInBatches(job: Int64?) async throws -> Int
    func stateCounts(job: Int64?) async throws -> [RequestState: Int]
}

extension RequestQueue {
    public func claim(
        limit: Int, now: Int64, leaseUntil: Int64, job: Int64?, excludedModels: [String], simulated: Bool, catalog: PricingCatalog
    ) async throws -> Claim {
        try await claim(
            limit: limit, now: now, leaseUntil: leaseUntil, job: job, excludedModels: excludedModels, simulated: simulated, catalog: catalog,
            allowances: nil)
    }

    @discardableResult
    public func recordExpiry(_ request: ClaimedRequest) async throws -> Bool {
        try await recordExpiry(request, reason: "the deadline passed before it could be served")
    }

    public func release(
        _ request: ClaimedRequest, countAttempt: Bool, attempt: AttemptRecord?, reason: String?, notBefore: Int64? = nil
    ) async throws {
        try await release(request, countAttempt: countAttempt, attempt: attempt, reason: reason, notBefore: notBefore, mayHaveBeenBilled: false, now: 0)
    }

    public func remaining(job: Int64?, excludedModels: [String]) async throws -> WorkRemaining {
        try await remaining(job: job, excludedModels: excludedModels, waitForBatches: true)
    }
}

/// The plans a run makes and keeps: which jobs need one, and planning them beside what other plans hold.
public protocol PlanBook: Sendable {
    /// Jobs in scope with requests waiting for a plan.
    func jobsNeedingPlans(job: Int64?) async throws -> [Int64]
    /// Jobs in scope with requests that have not started, planned or not.
    func jobsNotStarted(job: Int64?) async throws -> [Int64]
    /// Plans those jobs' requests that have not started, together; how many requests were planned.
    func planJobs(_ request: PlanningRequest) async throws -> Int
}

/// What one run works on: the queue, the plans and the batches of one database. A backend gives all three; they may
/// be one object, but a part of the run sees only the one it needs.
public struct RunStorage: Sendable {
    public var queue: any RequestQueue
    public var plans: any PlanBook
    public var batches: any BatchBook

    public init(queue: any RequestQueue, plans: any PlanBook, batches: any BatchBook) {
        self.queue = queue
        self.plans = plans
        self.batches = batches
    }
}
