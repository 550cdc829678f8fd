import Foundation
@testable import PurserCore

/// A request queue, budgets and a batch book (batch members only) held in memory: what the dispatcher's unit tests run against,
/// so they exercise the dispatcher alone (its workers, limiter, retries, fallbacks, budgets and shutdown) on virtual
/// time, without SQLite. It keeps the contract of `RequestQueue` — admission inside the one atomic claim (an actor
/// turn here), every finishing write guarded by the lease, a result written once — and records the most that
/// charges and reservations ever came to against each cap, which is what the cap tests assert on. What it leaves
/// out is said where it does (spilling between models, batches, planning): those are the SQLite store's, tested
/// through it.
actor MemoryStorage: RequestQueue, PlanBook, BatchBook {
    struct Entry {
        var request: ClaimedRequest
        var project: String
        var state: RequestState = .queued
        var notBefore: Int64?
        var leaseOwner: String?
        var leaseUntil: Int64?
        var lastError: String?
        var attempts: [AttemptRecord] = []
        var answer: PaidAnswer?
        /// Its worst case reserved under its caps while it is claimed, and the month it was reserved in.
        var reservation: (amount: Money, month: BudgetMonth)?
    }

    private(set) var entries: [Int64: Entry] = [:]
    private let owner: String
    /// Monthly caps by project, and caps by job.
    private var projectCaps: [String: Money] = [:]
    private var jobCaps: [Int64: Money] = [:]
    /// Charges by project and month, and by job.
    private var projectCharges: [String: [BudgetMonth: Money]] = [:]
    private var jobCharges: [Int64: Money] = [:]
    /// Calls cut off that may have been billed, by project and month, and by job.
    private var projectUnsettled: [String: [BudgetMonth: Money]] = [:]
    private var jobUnsettled: [Int64: Money] = [:]
    /// The most that charges, unsettled calls and reservations ever came to, per project (all months) and job.
    private(set) var highestCommitted: [String: Money] = [:]
    /// Claims made, for tests that look at how the dispatcher polls.
    private(set) var claims = 0
    /// The most requests a claim was asked for.
    private(set) var largestClaim = 0

    init(owner: String) { self.owner = owner }

    nonisolated var databaseID: String { "memory" }

    // MARK: - Setting up and reading back

    /// Adds a planned request, queued.
    func add(_ request: ClaimedRequest, project: String = "default") {
        entries[request.id] = Entry(request: request, project: project)
    }

    func setCap(project: String, _ cap: Money) { projectCaps[project] = cap }
    func setCap(job: Int64, _ cap: Money) { jobCaps[job] = cap }

    func entry(_ id: Int64) -> Entry? { entries[id] }
    /// Ends a running request `succeeded` as another run would that took over its lapsed lease and served it.
    func servedElsewhere(_ id: Int64) {
        entries[id]!.state = .succeeded
        entries[id]!.leaseOwner = nil
    }
    func charged(project: String) -> Money { (projectCharges[project] ?? [:]).values.reduce(.zero, +) }
    func unsettled(project: String) -> Money { (projectUnsettled[project] ?? [:]).values.reduce(.zero, +) }
    var reservationCount: Int { entries.values.filter { $0.reservation != nil }.count }

    // MARK: - RequestQueue

    func claim(
        limit: Int, now: Int64, leaseUntil: Int64, job: Int64?, excludedModels: [String], simulated: Bool, catalog: PricingCatalog,
        allowances: [String: RateLimiter.Allowance]?
    ) throws -> Claim {
        claims += 1
        largestClaim = max(largestClaim, limit)
        for (id, entry) in entries where entry.state == .waiting && (entry.notBefore ?? 0) <= now {
            entries[id]!.state = .queued
            entries[id]!.notBefore = nil
        }
        var allowances = allowances ?? [:]
        var candidates: [Entry] = []
        // Deadline order, as the SQLite scan; a model at its limit is passed over (no spilling here).
        for entry in entries.values.sorted(by: { ($0.request.deadlineAt, $0.request.id) < ($1.request.deadlineAt, $1.request.id) })
        where candidates.count < limit && entry.state == .queued && (entry.notBefore ?? 0) <= now && entry.request.plannedMode != .batch
            && (job == nil || entry.request.jobID == job) && !excludedModels.contains(entry.request.plannedModel)
        {
            let model = entry.request.plannedModel, tokens = entry.request.needs.rateLimitTokens
            if let allowance = allowances[model] {
                guard allowance.requests > 0, min(tokens, allowance.tokenBucketSize) <= allowance.tokens else { continue }
                allowances[model]!.requests -= 1
                allowances[model]!.tokens -= tokens
            }
            candidates.append(entry)
        }
        var claim = Claim()
        let month = BudgetMonth(containing: now)
        var admission = admission(month: month, simulated: simulated, leaving: nil)
        for candidate in candidates {
            let id = candidate.request.id
            let amount = catalog.model(id: candidate.request.plannedModel).map {
                Charges.worstCase(
                    model: $0, mode: candidate.request.plannedMode, inputTokens: candidate.request.needs.inputTokens,
                    maxOutputTokens: candidate.request.needs.maxOutputTokens)
            } ?? .zero
            switch try admission.decide(amount: amount, job: candidate.request.jobID, project: candidate.project) {
            case .reserve:
                entries[id]!.reservation = (amount, month)
                entries[id]!.state = .running
                entries[id]!.leaseOwner = owner
                entries[id]!.leaseUntil = leaseUntil
                entries[id]!.request.attempts += 1
                claim.requests.append(entries[id]!.request)
            case .wait:
                claim.waitingForBudget += 1
            case .hold(let reason, let until):
                entries[id]!.state = .held
                entries[id]!.notBefore = until
                entries[id]!.lastError = reason.stored
                claim.held += 1
                claim.holdReasons[reason.use.scopeText] = reason
            }
        }
        claim.capUses = admission.uses
        noteCommitted()
        return claim
    }

    func recordSuccess(_ answer: PaidAnswer, estimatedInputTokens: Int) throws -> Bool {
        guard let entry = leased(answer.requestID) else { return false }
        store(answer, of: entry)
        return true
    }

    func recordSuccesses(_ answers: [StoringAnswer]) -> [Result<Bool, any Error>] {
        answers.map { stored in Result { try recordSuccess(stored.answer, estimatedInputTokens: stored.estimatedInputTokens) } }
    }

    func storeRecovered(_ answer: PaidAnswer) throws -> Bool {
        guard let entry = entries[answer.requestID], entry.answer == nil else { return false }
        store(answer, of: entry)
        return true
    }

    func recordRetry(_ request: ClaimedRequest, at: Int64, attempt: AttemptRecord) throws {
        guard leased(request.id) != nil else { return }
        endLease(request.id, state: .waiting, attempt: attempt)
        entries[request.id]!.notBefore = at
    }

    func recordFailure(_ request: ClaimedRequest, error: String, attempt: AttemptRecord?) throws -> Bool {
        guard leased(request.id) != nil else { return false }
        endLease(request.id, state: .failed, attempt: attempt)
        entries[request.id]!.lastError = error
        return true
    }

    func recordExpiry(_ request: ClaimedRequest, reason: String) throws -> Bool {
        guard leased(request.id) != nil else { return false }
        endLease(request.id, state: .expired, attempt: nil)
        entries[request.id]!.lastError = reason
        return true
    }

    func release(
        _ request: ClaimedRequest, countAttempt: Bool, attempt: AttemptRecord?, reason: String?, notBefore: Int64?, mayHaveBeenBilled: Bool,
        now: Int64
    ) throws {
        guard let entry = leased(request.id) else { return }
        if mayHaveBeenBilled, let (amount, month) = entry.reservation {
            projectUnsettled[entry.project, default: [:]][month, default: .zero] += amount
            jobUnsettled[entry.request.jobID, default: .zero] += amount
        }
        endLease(request.id, state: notBefore == nil ? .queued : .waiting, attempt: attempt)
        entries[request.id]!.notBefore = notBefore
        entries[request.id]!.lastError = reason
        if !countAttempt { entries[request.id]!.request.attempts -= 1 }
    }

    func moveReservation(_ request: ClaimedRequest, to amount: Money, now: Int64, simulated: Bool) throws -> Bool {
        guard let entry = leased(request.id), let reserved = entry.reservation else { return false }
        var admission = admission(month: reserved.month, simulated: simulated, leaving: request.id)
        guard case .reserve = try admission.decide(amount: amount, job: entry.request.jobID, project: entry.project) else { return false }
        entries[request.id]!.reservation = (amount, reserved.month)
        noteCommitted()
        return true
    }

    func replan(_ request: Int64, model: String, mode: DispatchMode, cost: Money, latestStart: Int64) throws {
        entries[request]?.request.plannedModel = model
        entries[request]?.request.plannedMode = mode
        entries[request]?.request.latestStart = latestStart
    }

    func exhaustedModels(for request: Int64, threshold: Int) throws -> Set<String> {
        let failed = (entries[request]?.attempts ?? []).filter { $0.outcome != "succeeded" }
        return Set(Dictionary(grouping: failed, by: \.model).filter { $0.value.count >= threshold }.keys)
    }

    func failures(on model: String, request: Int64) throws -> Int {
        (entries[request]?.attempts ?? []).filter { $0.model == model && $0.outcome == CallFailure.Kind.retryable.rawValue }.count
    }

    func endPlannedWaits(now: Int64) throws {}

    func releaseEndedHolds(now: Int64) throws -> Int {
        let ended = entries.filter { $0.value.state == .held && ($0.value.notBefore.map { $0 <= now } ?? false) }.keys
        for id in ended {
            entries[id]!.state = .queued
            entries[id]!.notBefore = nil
        }
        return ended.count
    }

    func rescueExpiredLeases(now: Int64) throws -> Int {
        let lapsed = entries.filter { $0.value.state == .running && ($0.value.leaseUntil ?? .max) < now }.keys
        for id in lapsed { endLease(id, state: .queued, attempt: nil) }
        return lapsed.count
    }

    func leasesHeldElsewhere() throws -> [(owner: String, requests: Int, until: Int64)] { [] }
    func takeOverGoneOwners(
        now: Int64, startedCalls: @Sendable (String) -> Set<Int64>?
    ) throws -> [(owner: LeaseOwner, requests: Int, neverCalled: Int)] { [] }

    func extendLeases(until: Int64) throws {
        for (id, entry) in entries where entry.state == .running && entry.leaseOwner == owner { entries[id]!.leaseUntil = until }
    }

    func leasedRequests() throws -> [Int64] {
        entries.filter { $0.value.state == .running && $0.value.leaseOwner == owner }.map(\.key)
    }

    func expireOverdue(now: Int64, job: Int64?) throws -> Int {
        let overdue = entries.filter {
            [.queued, .waiting].contains($0.value.state) && $0.value.request.deadlineAt < now && (job == nil || $0.value.request.jobID == job)
        }.keys
        for id in overdue { entries[id]!.state = .expired }
        return overdue.count
    }

    func unplanStranded(onModels models: [String], job: Int64?) throws -> Int { 0 }

    func remaining(job: Int64?, excludedModels: [String], waitForBatches: Bool) throws -> WorkRemaining {
        let inScope = entries.values.filter { job == nil || $0.request.jobID == job }
        let open = inScope.filter { [.queued, .waiting].contains($0.state) }
        let blocked = open.filter { excludedModels.contains($0.request.plannedModel) }
        return WorkRemaining(
            dispatchable: open.count - blocked.count, soonest: open.compactMap(\.notBefore).min(),
            running: inScope.filter { $0.state == .running }.count, blocked: blocked.count, unplanned: 0,
            held: inScope.filter { $0.state == .held }.count)
    }

    func requestsInBatches(job: Int64?) throws -> Int { 0 }

    func stateCounts(job: Int64?) throws -> [RequestState: Int] {
        entries.values.filter { job == nil || $0.request.jobID == job }.reduce(into: [:]) { $0[$1.state, default: 0] += 1 }
    }

    // MARK: - PlanBook: requests come planned

    func jobsNeedingPlans(job: Int64?) throws -> [Int64] { [] }
    func jobsNotStarted(job: Int64?) throws -> [Int64] { [] }
    func planJobs(_ request: PlanningRequest) throws -> Int { 0 }

    // MARK: - BatchBook: none

    func formBatches(now: Int64, job: Int64?, excludedModels: [String], simulated: Bool, catalog: PricingCatalog) throws -> FormedBatches {
        FormedBatches()
    }
    func batchesToAdvance(now: Int64, leaseUntil: Int64) throws -> [BatchRow] { [] }
    func nextBatchStep() throws -> Int64? { nil }
    func openBatchProgress(job: Int64?, now: Int64, window: Int64) throws -> [OpenBatchProgress] { [] }
    func openBatches() throws -> (batches: Int, requests: Int) { (0, 0) }
    func releaseBatchLeases() throws {}
    func extendBatchLeases(until: Int64) throws {}

    private static let noBatches = Problem("the in-memory store keeps no batches")
    /// The members of batches, by batch, that `batchInputPage` reads: the one batch step this store takes part in.
    private var batchLines: [Int64: [StoredBatchLine]] = [:]
    func setBatchLines(_ batch: Int64, _ lines: [StoredBatchLine]) { batchLines[batch] = lines }
    private(set) var batchPagesRead = 0

    func batchInputPage(_ batch: Int64, afterLine: Int64, limit: Int) throws -> [StoredBatchLine] {
        batchPagesRead += 1
        return Array((batchLines[batch] ?? []).filter { $0.line > afterLine }.sorted { $0.line < $1.line }.prefix(limit))
    }
    func batchCalls(providerBatchID: String, catalog: PricingCatalog) throws -> [(customID: String, call: ProviderCall)] { throw Self.noBatches }
    func knownProviderBatchIDs(provider: String) throws -> Set<String> { [] }
    func recordForeignCandidate(_ id: Int64, providerBatchID: String) throws { throw Self.noBatches }
    func recordBatchUploadStarted(_ id: Int64, now: Int64) throws { throw Self.noBatches }
    func recordBatchUpload(_ id: Int64, fileID: String) throws { throw Self.noBatches }
    func recordBatchCreateStarted(_ id: Int64, now: Int64) throws { throw Self.noBatches }
    func recordBatchCreated(_ id: Int64, providerBatchID: String, now: Int64, nextPoll: Int64) throws { throw Self.noBatches }
    func recordBatchPoll(_ id: Int64, status: BatchStatus, now: Int64, nextPoll: Int64) throws { throw Self.noBatches }
    func recordBatchCancelRequested(_ id: Int64, now: Int64) throws { throw Self.noBatches }
    func recordBatchError(_ id: Int64, message: String, retryAt: Int64) throws { throw Self.noBatches }
    func batchMembers(_ batch: Int64, providerCustomIDs: [String]) throws -> [String: BatchMember] { throw Self.noBatches }
    func applyBatchResults(
        _ batch: BatchRow, lines: [(line: BatchResultLine, member: BatchMember?, decision: BatchDecision?)], now: Int64, catalog: PricingCatalog
    ) throws -> BatchResultCounts { throw Self.noBatches }
    func batchErrors(_ id: Int64) throws -> [Int: String] { throw Self.noBatches }
    func finishBatch(
        _ batch: BatchRow, reason: String, lineErrors: [Int: String], liveOnly: Bool, unanswered: UnansweredLines
    ) throws -> (replanned: Int, failed: Int) { throw Self.noBatches }
    func detachBatch(_ batch: BatchRow, now: Int64, reason: String) throws -> Int { throw Self.noBatches }
    func abandonBatch(_ batch: BatchRow, reason: String) throws -> Int { throw Self.noBatches }

    // MARK: - Inside

    /// The entry when it is running under this store's owner's lease.
    private func leased(_ id: Int64) -> Entry? {
        guard let entry = entries[id], entry.state == .running, entry.leaseOwner == owner else { return nil }
        return entry
    }

    private func endLease(_ id: Int64, state: RequestState, attempt: AttemptRecord?) {
        entries[id]!.state = state
        entries[id]!.leaseOwner = nil
        entries[id]!.leaseUntil = nil
        entries[id]!.reservation = nil
        if let attempt { entries[id]!.attempts.append(attempt) }
    }

    /// The one success write: the answer, its charge (to the month its money was reserved in) and the lease's end.
    private func store(_ answer: PaidAnswer, of entry: Entry) {
        let month = entry.reservation?.month ?? BudgetMonth(containing: answer.finishedAt)
        projectCharges[entry.project, default: [:]][month, default: .zero] += answer.cost
        jobCharges[entry.request.jobID, default: .zero] += answer.cost
        endLease(answer.requestID, state: .succeeded, attempt: answer.attempt)
        entries[answer.requestID]!.answer = answer
        entries[answer.requestID]!.lastError = nil
        noteCommitted()
    }

    /// What admission decides over: every project's and job's cap in `month` with what counts against it, leaving out
    /// the reservation of request `leaving` (the one being moved).
    private func admission(month: BudgetMonth, simulated: Bool, leaving: Int64?) -> Admission {
        var projectReserved: [String: Money] = [:]
        var jobReserved: [Int64: Money] = [:]
        for entry in entries.values where entry.request.id != leaving {
            guard let (amount, reservedIn) = entry.reservation else { continue }
            if reservedIn == month { projectReserved[entry.project, default: .zero] += amount }
            jobReserved[entry.request.jobID, default: .zero] += amount
        }
        var projectUses: [String: CapUse?] = [:]
        var jobUses: [Int64: CapUse?] = [:]
        for project in Set(entries.values.map(\.project)) {
            projectUses[project] = .some(projectCaps[project].map {
                CapUse(
                    scope: .project(project, month), cap: $0, warnPercent: 80, charged: projectCharges[project]?[month] ?? .zero,
                    unsettled: projectUnsettled[project]?[month] ?? .zero, reserved: projectReserved[project] ?? .zero)
            })
        }
        for job in Set(entries.values.map(\.request.jobID)) {
            jobUses[job] = .some(jobCaps[job].map {
                CapUse(
                    scope: .job(job, name: "job \(job)"), cap: $0, warnPercent: 80, charged: jobCharges[job] ?? .zero,
                    unsettled: jobUnsettled[job] ?? .zero, reserved: jobReserved[job] ?? .zero)
            })
        }
        return Admission(month: month, simulated: simulated, projectUses: projectUses, jobUses: jobUses)
    }

    private func noteCommitted() {
        for project in Set(entries.values.map(\.project)) {
            let committed = charged(project: project) + (projectUnsettled[project] ?? [:]).values.reduce(.zero, +)
                + entries.values.filter { $0.project == project }.reduce(.zero) { $0 + ($1.reservation?.amount ?? .zero) }
            highestCommitted[project] = max(highestCommitted[project] ?? .zero, committed)
        }
    }
}
