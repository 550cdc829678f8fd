import Foundation
import PurserCore
import SQLiteStore

/// The dispatch side of the database, owned by one actor so that a process uses one connection, its work on a thread
/// of its own (`DatabaseThread`). Every finishing update is guarded by the lease
/// (`WHERE id = ? AND state = 'running' AND lease_owner = ?`), and a result is written with its cost in the same
/// transaction, so a request never has two results.
public actor DispatchStore {
    let database: Database
    let owner: String
    let lifecycle: RequestLifecycle
    /// The database's own random id (`database_identity`), in every batch's custom ids and metadata.
    public nonisolated let databaseID: String
    private nonisolated let thread: DatabaseThread
    public nonisolated var unownedExecutor: UnownedSerialExecutor { thread.asUnownedSerialExecutor() }

    /// `maximumPageCount` caps how large this connection may grow the file (SQLite's `max_page_count`), so a
    /// test can run out of disk on purpose.
    public init(path: String, owner: String, maximumPageCount: Int? = nil) throws {
        database = try PurserDatabase.open(path: path)
        if let maximumPageCount {
            // A whole number from the caller, not user input: PRAGMA takes no parameters.
            try database.execute("PRAGMA max_page_count = \(maximumPageCount)")
        }
        self.owner = owner
        lifecycle = RequestLifecycle(database: database)
        guard let identity = try database.scalarText("SELECT id FROM database_identity") else {
            throw Problem("\(path) has no database id (its database_identity table is empty); it was changed by hand")
        }
        databaseID = identity
        // Made last, once nothing can fail: a store that is never made starts no thread.
        thread = DatabaseThread(name: "purser.store")
    }

    deinit { thread.stop() }

    // MARK: - Claiming


    /// Reserves `amount` for request `id` under its caps; or holds it (counted in `tally`) when it cannot fit even
    /// with nothing in flight; or leaves it queued until calls in flight settle. True when reserved.
    func admit(
        _ id: Int64, amount: Money, job: Int64, project: String, at now: Int64, owner: String? = nil, admission: inout Admission,
        tally: inout some BudgetTally
    ) throws -> Bool {
        switch try admission.decide(amount: amount, job: job, project: project) {
        case .reserve:
            try insertReservation(
                id, job: job, project: project, month: admission.month, simulated: admission.simulated, amount: amount, at: now, owner: owner)
            return true
        case .wait:
            tally.waitingForBudget += 1
            return false
        case .hold(let reason, let until):
            try lifecycle.hold(id, until: until, reason: reason.stored)
            tally.held += 1
            tally.holdReasons[reason.use.scopeText] = reason
            return false
        }
    }


    /// Leases up to `limit` due requests (planned, queued or waiting past their retry time), in deadline order, skipping
    /// those planned on `excludedModels` and, per model, taking no more than its `allowances` (what its rate limits let
    /// start now; a model without one is not limited here), and reserves each one's worst case under its caps in
    /// the same transaction; requests that do not fit are held or left for later (`Admission`). Held requests whose
    /// month has ended are released first. Attempts are counted here. A model at its limit is passed over, so the
    /// requests of the others behind it are claimed; the scan stops after `scanLimit` rows.
    public func claim(
        limit: Int, now: Int64, leaseUntil: Int64, job: Int64?, excludedModels: [String], simulated: Bool, catalog: PricingCatalog,
        allowances: [String: RateLimiter.Allowance]? = nil
    ) throws -> Claim {
        let excluded = JSONWriter.string(.array(excludedModels.map { .string($0) }))
        let scanLimit = max(limit * 64, 4_096)
        var claim = Claim()
        // The requests leased, each with the project its reservation is under.
        let leasedProjects: [Int64: String] = try database.writeTransaction {
            try lifecycle.stage(now: now)
            var allowances = allowances ?? [:]
            // A due request as the scan reads it.
            typealias Candidate = (id: Int64, job: Int64, project: String, input: Int, output: Int, model: String, mode: DispatchMode)
            var candidates: [Candidate] = []
            // Per model at its limit, the requests passed over so far: its queue ahead of the next one.
            var passedOver: [String: Int] = [:]
            var spillable: [Candidate] = []
            var scanned = 0
            try database.statement("""
                SELECT r.id, r.job_id, j.project, r.input_tokens, r.max_output_tokens, l.model, l.mode, l.latest_start
                FROM request_plans p JOIN requests r ON r.id = p.request_id JOIN plan_lines l ON l.id = p.line JOIN jobs j ON j.id = r.job_id
                WHERE p.queue = \(RequestLifecycle.Queue.ready.sql) AND l.mode != 'batch' AND (?1 IS NULL OR r.job_id = ?1) AND l.model NOT IN (SELECT value FROM json_each(?2))
                ORDER BY p.deadline_at, p.request_id
                """).scanRows([.optionalInt64(job), .text(excluded)]) { row in
                scanned += 1
                let model = row.text(5)
                let tokens = row.int(3) + row.int(4)  // as `RequestNeeds.rateLimitTokens`
                let candidate = (
                    id: row.int64(0), job: row.int64(1), project: row.text(2), input: row.int(3), output: row.int(4), model: model,
                    mode: DispatchMode(rawValue: row.text(6)) ?? .sync)
                if let allowance = allowances[model] {
                    guard allowance.requests > 0, min(tokens, allowance.tokenBucketSize) <= allowance.tokens else {
                        // A request its model's present rate would not reach by its latest start (the model is held
                        // below its tables' rate by 429s, or the plan was made a while before this run) spills over to
                        // a model with room, if one is left once every model's own requests are claimed.
                        passedOver[model, default: 0] += 1
                        // Ahead of it: the ones passed over before it, and any claimed already beyond what the buckets hold.
                        let callsAhead = max(Double(passedOver[model]! + max(-allowance.requests, 0)) - allowance.partialCall, 0)
                        let interval = 60_000 / max(allowance.presentRate, 0.001)
                        // With a margin of one call (at least a quarter second) for the moments between a claim and its call.
                        let reachedAt = Double(now) + callsAhead * interval + max(interval, 250)
                        if reachedAt > Double(row.int64(7)) {
                            spillable.append(candidate)
                            claim.overbooked.insert(model)
                        }
                        return scanned < scanLimit
                    }
                    allowances[model]!.requests -= 1
                    allowances[model]!.tokens -= tokens
                }
                candidates.append(candidate)
                return candidates.count < limit && scanned < scanLimit
            }
            // As many as the claim has room for, earliest deadline first: the dispatcher moves each to the cheapest model
            // that takes spills, or plans it there.
            let spilling = Array(spillable.prefix(max(limit - candidates.count, 0)))
            candidates += spilling
            claim.spilling = Set(spilling.map(\.id))
            // Admitted after the scan: holding a request writes to the rows the scan reads.
            var leased: [Int64: String] = [:]
            var admission = try Ledger(database: database).admission(
                for: candidates.map { ($0.project, $0.job) }, month: BudgetMonth(containing: now), simulated: simulated)
            for candidate in candidates {
                // A model gone from the tables reserves nothing; serving it fails the request with that reason.
                let amount = catalog.model(id: candidate.model).map {
                    Charges.worstCase(model: $0, mode: candidate.mode, inputTokens: candidate.input, maxOutputTokens: candidate.output)
                } ?? .zero
                if try admit(candidate.id, amount: amount, job: candidate.job, project: candidate.project, at: now, admission: &admission, tally: &claim) {
                    leased[candidate.id] = candidate.project
                }
            }
            claim.capUses = admission.uses
            try lifecycle.lease(Array(leased.keys), owner: owner, until: leaseUntil)
            return leased
        }
        guard !leasedProjects.isEmpty else { return claim }
        let ids = Array(leasedProjects.keys)
        // One read for the whole claim, put in deadline order here: SQLite's sort carried every row, its body with it,
        // through a sorter (0.75 ms rather than 0.55 for 200 requests, sqlite3's `.timer`).
        let claimedIDs = JSONWriter.string(.array(ids.map { .number(String($0)) }))
        claim.requests = try database.statement("""
            SELECT r.id, r.job_id, r.custom_id, r.shape, r.quality_floor, r.quality_tier, r.input_tokens, r.max_output_tokens,
                r.capabilities, r.pinned_model, r.reference_model, r.deadline_at, r.max_cost_pico, r.attempts, l.model, l.mode, b.body,
                l.latest_start, r.provider_filter, r.prefix_group, r.prefix_tokens,
                CASE WHEN r.prefix_group IS NULL THEN 0 ELSE
                    (SELECT count(*) FROM requests g WHERE g.job_id = r.job_id AND g.prefix_group IS NOT NULL AND g.prefix_group = r.prefix_group) END
            FROM requests r JOIN request_plans p ON p.request_id = r.id JOIN plan_lines l ON l.id = p.line
                JOIN request_bodies b ON b.request_id = r.id
            WHERE r.id IN (SELECT value FROM json_each(?))
            """).rows([.text(claimedIDs)]) { row in
            var request = ClaimedRequest(
                id: row.int64(0), jobID: row.int64(1), customID: row.text(2), shape: RequestShape(rawValue: row.text(3)) ?? .openaiBatch,
                needs: RequestNeeds(
                    qualityFloor: row.int(4), qualityTier: row.text(5), inputTokens: row.int(6), maxOutputTokens: row.int(7),
                    capabilities: Capabilities(rawValue: row.int(8)), pinnedModel: row.optionalText(9),
                    providers: try ProviderFilter.stored(row.optionalText(18))),
                referenceModel: row.optionalText(10), deadlineAt: row.int64(11), maxCost: row.optionalInt64(12).map { Money(picoUSD: $0) },
                attempts: row.int(13), plannedModel: row.text(14), plannedMode: DispatchMode(rawValue: row.text(15)) ?? .sync, body: row.text(16),
                latestStart: row.int64(17), spillsOver: claim.spilling.contains(row.int64(0)))
            if let group = row.optionalText(19) { request.prefixGroup = PrefixGroup(id: group, tokens: row.int(20), requests: row.int(21)) }
            request.reservation = leasedProjects[request.id].map { ClaimedRequest.Reservation(reservedAt: now, project: $0) }
            return request
        }
        claim.requests.sort { ($0.deadlineAt, $0.id) < ($1.deadlineAt, $1.id) }
        return claim
    }

    /// In a sped-up rehearsal, requests planned to wait for a discount window are due now (`RequestLifecycle.endPlannedWaits`).
    public func endPlannedWaits(now: Int64) throws {
        try database.writeTransaction { try lifecycle.endPlannedWaits(now: now) }
    }

    /// Requests held by a month's cap that has ended go back to the queue, to be planned again. Returns how many.
    public func releaseEndedHolds(now: Int64) throws -> Int {
        try database.writeTransaction { try lifecycle.releaseEndedHolds(now: now) }
    }

    /// Returns requests whose holder stopped renewing its lease to the queue, their attempts counted. Their
    /// calls may have been billed, so their reservations stay counted, as unsettled charges.
    public func rescueExpiredLeases(now: Int64) throws -> Int {
        try database.writeTransaction {
            let rescued = try lifecycle.rescueExpiredLeases(now: now)
            try Ledger(database: database).unsettle(requests: rescued, now: now)
            return rescued.count
        }
    }

    /// Leases held by runs on other processes: each owner, how many requests, and until when.
    public func leasesHeldElsewhere() throws -> [(owner: String, requests: Int, until: Int64)] {
        try database.statement("""
            SELECT lease_owner, count(*), max(lease_expires_at) FROM requests
            WHERE state = 'running' AND lease_owner != ? AND lease_owner NOT LIKE 'batch:%' GROUP BY lease_owner
            """).rows([.text(owner)]) { ($0.text(0), $0.int(1), $0.int64(2)) }
    }

    /// Takes over, at once, the leases of runs on this host whose process is gone (killed, crashed): no need to
    /// wait for their leases to lapse. The reservations of the requests it may have called become unsettled charges;
    /// `startedCalls` gives, per owner, the requests it noted as called (`StartedCalls`), and the others, claimed and
    /// never called, go back with their reservations dropped. With no note for an owner, every lease counts as called.
    /// Returns who was taken over, how many requests each held, and how many of those it never called.
    public func takeOverGoneOwners(
        now: Int64, startedCalls: @Sendable (String) -> Set<Int64>?
    ) throws -> [(owner: LeaseOwner, requests: Int, neverCalled: Int)] {
        var taken: [(LeaseOwner, Int, Int)] = []
        for (text, _, _) in try leasesHeldElsewhere() {
            guard let owner = LeaseOwner(text), owner.isGoneFromThisHost else { continue }
            let started = startedCalls(text)
            let (requests, neverCalled) = try database.writeTransaction {
                let ids = try lifecycle.takeOver(owner: text)
                let (called, notCalled) = started.map { started in (ids.filter(started.contains), ids.filter { !started.contains($0) }) } ?? (ids, [])
                try Ledger(database: database).unsettle(requests: called, now: now)
                try Ledger(database: database).dropReservations(requests: notCalled)
                try lifecycle.uncountAttempts(notCalled)
                return (ids.count, notCalled.count)
            }
            if requests > 0 { taken.append((owner, requests, neverCalled)) }
        }
        return taken
    }

    /// Stores a paid answer from the recovery file, once: its result, attempt and charge, in place of any
    /// reservation or unsettled charge for its call. False when the request already has a result.
    public func storeRecovered(_ answer: PaidAnswer) throws -> Bool {
        try database.writeTransaction {
            let id = answer.requestID
            guard try database.scalarInt("SELECT count(*) FROM results WHERE request_id = ?", [.integer(id)]) == 0,
                try lifecycle.succeedFromRecovery(id)
            else { return false }
            // Whichever run reserved its call, the reservation (or unsettled charge) becomes this charge.
            let reservation = try database.statement("DELETE FROM reservations WHERE request_id = ? RETURNING reserved_at, project")
                .firstRow([.integer(id)]) { ClaimedRequest.Reservation(reservedAt: $0.int64(0), project: $0.text(1)) }
            try Ledger(database: database).settle(request: id)
            let estimate = try database.scalarInt("SELECT input_tokens FROM requests WHERE id = ?", [.integer(id)]) ?? 0
            var totals = AnswerTotals()
            try storeAnswer(answer, estimatedInputTokens: Int(estimate), reservation: reservation, worker: nil, into: &totals)
            try totals.write(to: database)
            return true
        }
    }

    /// Keeps this worker's leases alive while its calls run.
    public func extendLeases(until: Int64) throws {
        try database.writeTransaction {
            try lifecycle.extendLeases(owner: owner, until: until)
        }
    }

    /// The requests this run holds leased: what its file of started calls keeps when it is written again.
    public func leasedRequests() throws -> [Int64] {
        try database.statement("SELECT id FROM requests WHERE state = 'running' AND lease_owner = ?").rows([.text(owner)]) { $0.int64(0) }
    }

    /// Requests whose deadline passed while they waited end `expired`.
    public func expireOverdue(now: Int64, job: Int64?) throws -> Int {
        try database.writeTransaction { try lifecycle.expireOverdue(now: now, job: job) }
    }

    // MARK: - Finishing (each guarded by the lease)

    /// Paid answers handed over together, waiting for the next group commit, and the caller waiting for their outcomes.
    private struct PendingSuccesses {
        var answers: [StoringAnswer]
        var continuation: CheckedContinuation<[Result<Bool, any Error>], Never>
    }

    private var pendingSuccesses: [PendingSuccesses] = []
    private var commitScheduled = false

    /// Writes the result, its cost and the attempt, and turns the request's reservation into its charge
    /// (the result is billed to the month it was reserved in); returns once they are committed. False when the lease
    /// was lost (another worker took the request over), in which case nothing is written.
    public func recordSuccess(_ answer: PaidAnswer, estimatedInputTokens: Int) async throws -> Bool {
        try await recordSuccesses([StoringAnswer(answer: answer, estimatedInputTokens: estimatedInputTokens)])[0].get()
    }

    /// Stores each of `answers` as `recordSuccess` does, and returns once they are committed: for each, in order, whether
    /// it was kept, or the error its write met.
    /// Successes share a transaction (group commit): those that arrive within 10 ms of the first (or until 64 are
    /// waiting) and while a commit is being written, so a stream of answers costs a commit per group rather than each.
    public func recordSuccesses(_ answers: [StoringAnswer]) async -> [Result<Bool, any Error>] {
        guard !answers.isEmpty else { return [] }
        return await withCheckedContinuation { continuation in
            pendingSuccesses.append(PendingSuccesses(answers: answers, continuation: continuation))
            if !commitScheduled {
                commitScheduled = true
                Task {
                    // A moment for the answers arriving with these to share their commit: a commit writes every page it
                    // touched to the log, so a group of a few dozen answers writes a fraction of what each alone would.
                    if pendingSuccesses.reduce(0, { $0 + $1.answers.count }) < 64 { await Self.pause(nanoseconds: 10_000_000) }
                    self.commitSuccesses()
                }
            }
        }
    }

    /// Waits `nanoseconds`, or less if the task is cancelled.
    private static func pause(nanoseconds: UInt64) async {
        do { try await Task.sleep(nanoseconds: nanoseconds) } catch {}
    }

    private func commitSuccesses() {
        let groups = pendingSuccesses
        pendingSuccesses = []
        commitScheduled = false
        let answers = groups.flatMap(\.answers)
        var outcomes: [Result<Bool, any Error>]
        do {
            outcomes = try database.writeTransaction {
                var totals = AnswerTotals()
                let kept = try answers.map { try writeSuccess($0, into: &totals) }
                try totals.write(to: database)
                return kept.map { .success($0) }
            }
        } catch {
            // One bad write must not sink the others: each gets a transaction of its own.
            outcomes = answers.map { answer in
                Result {
                    try database.writeTransaction {
                        var totals = AnswerTotals()
                        let kept = try writeSuccess(answer, into: &totals)
                        try totals.write(to: database)
                        return kept
                    }
                }
            }
        }
        var next = 0
        for group in groups {
            group.continuation.resume(returning: Array(outcomes[next..<next + group.answers.count]))
            next += group.answers.count
        }
    }

    /// Ends the lease of a live call's request `succeeded` and stores its answer; false, storing nothing, when the lease
    /// was lost.
    private func writeSuccess(_ success: StoringAnswer, into totals: inout AnswerTotals) throws -> Bool {
        let reservation = try dropReservation(success.answer.requestID, claimed: success.reservation)
        guard try endLease(success.answer.requestID, state: .succeeded, error: nil) else { return false }
        try storeAnswer(success.answer, estimatedInputTokens: success.estimatedInputTokens, reservation: reservation, worker: nil, into: &totals)
        return true
    }

    /// The one write of a paid answer, for live calls, batch result lines and the recovery file alike, once its request
    /// has ended `succeeded`: its result and attempt, billed to the month its call was reserved in (the month it finished,
    /// without a reservation), and its cost and tokens counted in `totals`, which the caller writes in the same transaction.
    func storeAnswer(
        _ answer: PaidAnswer, estimatedInputTokens: Int, reservation: ClaimedRequest.Reservation?, worker: String?,
        into totals: inout AnswerTotals
    ) throws {
        let billedAt = reservation?.reservedAt ?? answer.finishedAt
        let project = try reservation?.project
            ?? database.scalarText("SELECT project FROM jobs WHERE id = ?", [.integer(answer.jobID)]) ?? "default"
        let response = answer.response
        try database.statement("""
            INSERT INTO results (request_id, model, provider, dialect, mode, status_code, provider_request_id, body, input_tokens,
                cached_input_tokens, cache_write_tokens, output_tokens, cost_pico, simulated, finished_at, billed_at, baseline_pico, cache_saving_pico)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute([
            .integer(answer.requestID), .text(answer.model), .text(answer.provider), .text(answer.dialect.rawValue), .text(answer.mode.rawValue),
            .int(response.statusCode), .optionalText(response.providerRequestID), .text(response.body), .int(response.usage.inputTokens),
            .int(response.usage.cachedInputTokens), .int(response.usage.cacheWriteTokens), .int(response.usage.outputTokens),
            .integer(answer.cost.picoUSD), .int(response.simulated ? 1 : 0), .integer(answer.finishedAt), .integer(billedAt),
            .integer(answer.baseline.picoUSD), .integer(answer.cacheSaving.picoUSD),
        ])
        try insertAttempt(answer.attempt, request: answer.requestID, worker: worker)
        totals.add(answer, project: project, billedAt: billedAt, estimatedInputTokens: estimatedInputTokens)
    }

    /// Schedules another try at `at`.
    public func recordRetry(_ request: ClaimedRequest, at: Int64, attempt: AttemptRecord) throws {
        try database.writeTransaction {
            guard try finish(request.id, state: .waiting, error: attempt.error, nextAttemptAt: at) else { return }
            try insertAttempt(attempt, request: request.id)
        }
    }

    @discardableResult
    public func recordFailure(_ request: ClaimedRequest, error: String, attempt: AttemptRecord?) throws -> Bool {
        try database.writeTransaction {
            guard try finish(request.id, state: .failed, error: error) else { return false }
            if let attempt { try insertAttempt(attempt, request: request.id) }
            return true
        }
    }

    @discardableResult
    public func recordExpiry(_ request: ClaimedRequest, reason: String = "the deadline passed before it could be served") throws -> Bool {
        try database.writeTransaction {
            try finish(request.id, state: .expired, error: reason)
        }
    }

    /// Puts a request back in the queue. `countAttempt: false` undoes the count made at claim (the call never
    /// happened, or failed for a reason that is not the request's). `mayHaveBeenBilled`: its call was cut off
    /// mid-way (the run stopped), so its reservation stays counted as an unsettled charge.
    public func release(
        _ request: ClaimedRequest, countAttempt: Bool, attempt: AttemptRecord?, reason: String?, notBefore: Int64? = nil,
        mayHaveBeenBilled: Bool = false, now: Int64 = 0
    ) throws {
        try database.writeTransaction {
            if mayHaveBeenBilled { try Ledger(database: database).unsettle(requests: [request.id], now: now) } else { _ = try dropReservation(request.id) }
            let released = try lifecycle.release(request.id, owner: owner, countAttempt: countAttempt, reason: reason, notBefore: notBefore)
            if released, let attempt { try insertAttempt(attempt, request: request.id) }
        }
    }

    /// Replaces this worker's reservation for a request with `amount` (its call moved to another model), if
    /// that fits under its caps. False when it does not; the request then holds no reservation and must be released.
    public func moveReservation(_ request: ClaimedRequest, to amount: Money, now: Int64, simulated: Bool) throws -> Bool {
        try database.writeTransaction {
            guard let old = try dropReservation(request.id) else { return false }
            let month = BudgetMonth(containing: old.reservedAt)
            var admission = try Ledger(database: database).admission(for: [(old.project, request.jobID)], month: month, simulated: simulated)
            guard case .reserve = try admission.decide(amount: amount, job: request.jobID, project: old.project) else { return false }
            try insertReservation(request.id, job: request.jobID, project: old.project, month: month, simulated: simulated, amount: amount, at: old.reservedAt)
            return true
        }
    }

    /// Moves a request's plan to another model (fallback).
    public func replan(_ request: Int64, model: String, mode: DispatchMode, cost: Money, latestStart: Int64) throws {
        try database.writeTransaction { try movePlan(request, model: model, mode: mode, cost: cost, latestStart: latestStart) }
    }

    /// Moves a request's plan onto the line of `model` and `mode` with `latestStart`, made if there is none yet.
    func movePlan(_ request: Int64, model: String, mode: DispatchMode, cost: Money, latestStart: Int64) throws {
        let values: [SQLiteValue] = [.text(model), .text(mode.rawValue), .integer(latestStart)]
        var line = try database.statement("SELECT id FROM plan_lines WHERE model = ? AND mode = ? AND latest_start = ?").firstRow(values) { $0.int64(0) }
        if line == nil {
            try database.statement("INSERT INTO plan_lines (model, mode, latest_start) VALUES (?, ?, ?)").execute(values)
            line = database.lastInsertRowID
        }
        try database.statement("UPDATE request_plans SET line = ?, cost_pico = ? WHERE request_id = ?")
            .execute([.optionalInt64(line), .integer(cost.picoUSD), .integer(request)])
    }

    /// Models this request should not be tried on again: any that refused it, and any that failed it `threshold` times.
    public func exhaustedModels(for request: Int64, threshold: Int) throws -> Set<String> {
        Set(try database.statement("""
            SELECT model FROM attempts WHERE request_id = ? AND outcome IN ('retryable', 'model_refused')
            GROUP BY model HAVING sum(outcome = 'model_refused') > 0 OR count(*) >= ?
            """).rows([.integer(request), .int(threshold)]) { $0.text(0) })
    }

    /// Retryable failures of this request on this model so far.
    public func failures(on model: String, request: Int64) throws -> Int {
        Int(try database.scalarInt(
            "SELECT count(*) FROM attempts WHERE request_id = ? AND model = ? AND outcome = 'retryable'", [.integer(request), .text(model)]) ?? 0)
    }

    /// Ends this worker's lease on a request, dropping its reservation whether or not the lease was still held
    /// (a request cancelled while its call ran keeps no reservation behind).
    private func finish(_ id: Int64, state: RequestState, error: String?, nextAttemptAt: Int64? = nil) throws -> Bool {
        _ = try dropReservation(id)
        return try endLease(id, state: state, error: error, nextAttemptAt: nextAttemptAt)
    }

    private func endLease(_ id: Int64, state: RequestState, error: String?, nextAttemptAt: Int64? = nil) throws -> Bool {
        try lifecycle.endLease(id, owner: owner, state: state, error: error, nextAttemptAt: nextAttemptAt)
    }

    func insertReservation(
        _ request: Int64, job: Int64, project: String, month: BudgetMonth, simulated: Bool, amount: Money, at reservedAt: Int64, owner: String? = nil
    ) throws {
        try database.statement("""
            INSERT INTO reservations (request_id, owner, job_id, project, month, simulated, amount_pico, reserved_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """).execute([
            .integer(request), .text(owner ?? self.owner), .integer(job), .text(project), .text(month.description), .int(simulated ? 1 : 0),
            .integer(amount.picoUSD), .integer(reservedAt),
        ])
    }

    /// Deletes this worker's reservation for a request, returning when and under which project it was made.
    /// A read and a delete by the request's id (the table's row id) rather than `DELETE … RETURNING`, which gathers what it
    /// returns in a temporary table it makes, with its own pager and page cache, each time: once for every answer stored.
    /// With `claimed`, the claim's own record of the reservation, there is no read: the record holds if a row was deleted.
    func dropReservation(
        _ id: Int64, owner: String? = nil, claimed: ClaimedRequest.Reservation? = nil
    ) throws -> ClaimedRequest.Reservation? {
        if let claimed {
            try database.statement("DELETE FROM reservations WHERE request_id = ? AND owner = ?").execute([.integer(id), .text(owner ?? self.owner)])
            return database.changes == 1 ? claimed : nil
        }
        let read = "SELECT reserved_at, project FROM reservations WHERE request_id = ? AND owner = ?"
        guard let reservation = try database.statement(read).firstRow([.integer(id), .text(owner ?? self.owner)], {
            ClaimedRequest.Reservation(reservedAt: $0.int64(0), project: $0.text(1))
        })
        else { return nil }
        try database.statement("DELETE FROM reservations WHERE request_id = ?").execute([.integer(id)])
        return reservation
    }

    func insertAttempt(_ attempt: AttemptRecord, request: Int64, worker: String? = nil) throws {
        try database.statement("""
            INSERT INTO attempts (request_id, worker, model, provider, mode, started_at, latency_ms, status, outcome, error, input_tokens,
                cached_input_tokens, output_tokens, simulated)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute([
            .integer(request), .text(worker ?? owner), .text(attempt.model), .text(attempt.provider), .text(attempt.mode.rawValue),
            .integer(attempt.startedAt), .integer(attempt.latencyMilliseconds), attempt.status.map { .int($0) } ?? .null, .text(attempt.outcome),
            .optionalText(attempt.error), attempt.usage.map { .int($0.inputTokens) } ?? .null,
            attempt.usage.map { .int($0.cachedInputTokens) } ?? .null, attempt.usage.map { .int($0.outputTokens) } ?? .null,
            .int(attempt.simulated ? 1 : 0),
        ])
    }

    // MARK: - What is left

    /// Work in scope that is not claimable right now: waiting for a retry time, running elsewhere, or stuck.
    /// Requests not started whose plan is on a model this run cannot call at all (its provider has no key: a plan
    /// made with --simulate, or before a key was unset) lose that plan, so the run plans them again on what it can
    /// use. Returns how many.
    public func unplanStranded(onModels models: [String], job: Int64?) throws -> Int {
        guard !models.isEmpty else { return 0 }
        return try database.writeTransaction {
            let stranded = try database.statement("""
                SELECT p.request_id FROM request_plans p JOIN plan_lines l ON l.id = p.line JOIN requests r ON r.id = p.request_id
                WHERE l.model IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR r.job_id = ?2) AND \(RequestLifecycle.notStarted)
                """).rows([.text(JSONWriter.string(.array(models.map { .string($0) }))), .optionalInt64(job)]) { $0.int64(0) }
            try lifecycle.unwaitForReplanning(jobs: try database.statement(
                "SELECT DISTINCT job_id FROM requests WHERE id IN (SELECT value FROM json_each(?))").rows([.text(PlanStore.idList(stranded))]) { $0.int64(0) })
            try lifecycle.unplan(stranded, reason: "planned on a provider this run cannot use; planned again")
            return stranded.count
        }
    }


    /// `waitForBatches: false` leaves requests in batches already at a provider out of `running` (a run that
    /// does not wait for them); requests in batches whose model cannot be used now are always left out. Requests in
    /// batches are read from the open batches' members, as in `requestsInBatches`.
    public func remaining(job: Int64?, excludedModels: [String], waitForBatches: Bool = true) throws -> WorkRemaining {
        let excluded = JSONWriter.string(.array(excludedModels.map { .string($0) }))
        let queue = try database.statement("""
            SELECT sum(l.model NOT IN (SELECT value FROM json_each(?2))), sum(l.model IN (SELECT value FROM json_each(?2)))
            FROM request_plans p JOIN plan_lines l ON l.id = p.line
            WHERE p.queue > \(RequestLifecycle.Queue.out.sql) AND (?1 IS NULL OR p.job_id = ?1)
            """).firstRow([.optionalInt64(job), .text(excluded)]) { ($0.optionalInt64(0) ?? 0, $0.optionalInt64(1) ?? 0) }
        let waiting = try database.statement("""
            SELECT min(next_attempt_at) FROM requests WHERE state = 'waiting' AND (?1 IS NULL OR job_id = ?1)
            """).firstRow([.optionalInt64(job)]) { $0.optionalInt64(0) } ?? nil
        let unplanned = try database.scalarInt("""
            SELECT count(*) FROM requests r WHERE r.state = 'queued' AND (?1 IS NULL OR r.job_id = ?1)
                AND NOT EXISTS (SELECT 1 FROM request_plans p WHERE p.request_id = r.id)
            """, [.optionalInt64(job)]) ?? 0
        let running = try database.statement("""
            SELECT count(*), min(lease_expires_at) FROM requests WHERE state = 'running' AND (?1 IS NULL OR job_id = ?1)
            """).firstRow([.optionalInt64(job)]) { ($0.int(0), $0.optionalInt64(1)) }
        let inBatches = try database.statement("""
            SELECT count(*), sum(b.state = 'created' AND ?2 = 0 OR b.model IN (SELECT value FROM json_each(?3)))
            FROM batch_requests m CROSS JOIN requests r ON r.id = m.request_id JOIN batches b ON b.id = m.batch_id
            WHERE (?1 IS NULL OR r.job_id = ?1)
            """).firstRow([.optionalInt64(job), .int(waitForBatches ? 1 : 0), .text(excluded)]) { ($0.int(0), $0.optionalInt64(1) ?? 0) }
        let held = try database.scalarInt("SELECT count(*) FROM requests WHERE state = 'held' AND (?1 IS NULL OR job_id = ?1)", [.optionalInt64(job)])
        let soonest = [waiting, running?.1].compactMap { $0 }.min()
        let openBatches = try database.scalarInt("""
            SELECT count(*) FROM batches WHERE state != 'done' AND model NOT IN (SELECT value FROM json_each(?2))
                AND (?1 = 1 OR state != 'created')
            """, [.int(waitForBatches ? 1 : 0), .text(excluded)]) ?? 0
        return WorkRemaining(
            dispatchable: Int(queue?.0 ?? 0), soonest: soonest, running: (running?.0 ?? 0) - Int(inBatches?.1 ?? 0), blocked: Int(queue?.1 ?? 0),
            unplanned: Int(unplanned), held: Int(held ?? 0), inBatches: inBatches?.0 ?? 0, openBatches: Int(openBatches))
    }

    /// Requests in scope that are in batches (to be sent, at a provider, or with results to store). Read from the open
    /// batches' members, not from every request the database holds (a `CROSS JOIN` keeps that order in SQLite): it is
    /// counted every second of a run.
    public func requestsInBatches(job: Int64?) throws -> Int {
        Int(try database.scalarInt("""
            SELECT count(*) FROM batch_requests m CROSS JOIN requests r ON r.id = m.request_id WHERE ?1 IS NULL OR r.job_id = ?1
            """, [.optionalInt64(job)]) ?? 0)
    }

    /// Jobs in scope with requests waiting for a plan.
    public func jobsNeedingPlans(job: Int64?) throws -> [Int64] { try lifecycle.jobsNeedingPlans(job: job) }

    /// Jobs in scope with requests that have not started, planned or not.
    public func jobsNotStarted(job: Int64?) throws -> [Int64] { try lifecycle.jobsNotStarted(job: job) }

    /// Plans those jobs' requests that have not started, together, beside what other jobs' plans hold.
    /// Returns how many requests were placed.
    public func planJobs(_ request: PlanningRequest) throws -> Int {
        let outcome = try JobPlanning(database: database).plan(request)
        return outcome.plan.count - outcome.plan.unplaced
    }

    /// Requests in scope by state, for the start and end of a run.
    public func stateCounts(job: Int64?) throws -> [RequestState: Int] {
        var counts: [RequestState: Int] = [:]
        try database.statement("SELECT state, count(*) FROM requests WHERE (?1 IS NULL OR job_id = ?1) GROUP BY state")
            .forEachRow([.optionalInt64(job)]) { row in
                if let state = RequestState(rawValue: row.text(0)) { counts[state] = row.int(1) }
            }
        return counts
    }
}

extension DispatchStore: RequestQueue, PlanBook, BatchBook {
    /// This database as a run works on it: its queue, plans and batches, all kept by this one actor.
    public nonisolated var storage: RunStorage { RunStorage(queue: self, plans: self, batches: self) }
}
