import Foundation
import PurserCore
import SQLiteStore

/// The one owner of a request's life. Every change of `requests.state`, and of the request's place in the
/// dispatch queue (`request_plans.queue`), is written here, each with its guard, the way River and Oban keep
/// every state verb on one driver. Callers run these inside their own transactions where the change goes
/// with other writes (a result and its charge, an attempt, a reservation).
///
///     queued ──plan──▶ queued + plan (ready) ──claim──▶ running ──succeed──▶ succeeded
///       │                 │      │                        ├──retry later──▶ waiting ──stage──▶ ready
///       │                 │      └──window later──▶ waiting  ├──fail──▶ failed
///       │                 ├──into a batch──▶ running (lease batch:ID) ──result──▶ succeeded / failed, or queued (planned again)
///       │                 └──hold (a cap)──▶ held ──release──▶ queued (planned again)
///       │                                                  ├──release──▶ ready or waiting
///       └──cancel / expire──▶ cancelled / expired          └──lease lapses──▶ ready
///
/// `planned` is not stored: it is a queued request with a plan, which is also its place in the queue.
public struct RequestLifecycle {
    let database: Database

    public init(database: Database) { self.database = database }

    /// The place in the queue: ready to be claimed, waiting for `next_attempt_at`, or out of the queue.
    enum Queue: Int64 {
        case out = 0, ready = 1, waiting = 2

        /// The value as SQL text, for statements that name it: a literal, so that SQLite can use the partial index of
        /// ready rows (`request_plans_ready`, `WHERE queue = 1`).
        var sql: String { String(rawValue) }
    }

    /// States in which a request has not started and may be planned again (waiting only for a discount window).
    static let notStarted = "(state = 'queued' OR (state = 'waiting' AND attempts = 0))"

    private func ids(_ list: [Int64]) -> SQLiteValue { .text(PlanStore.idList(list)) }

    // MARK: - Planning

    /// A freshly planned request that should not start yet waits until `start`; its plan row was written waiting. A
    /// request planned again to the same wait is left as it is: a quarter of a million-request job waiting for a window
    /// was a quarter of its rows written twice over each time it was planned again (made queued, then waiting).
    func waitForStart(_ id: Int64, until start: Int64) throws {
        try database.statement("""
            UPDATE requests SET state = 'waiting', next_attempt_at = ?1
            WHERE id = ?2 AND \(RequestLifecycle.notStarted) AND (state != 'waiting' OR next_attempt_at IS NOT ?1)
            """).execute([.integer(start), .integer(id)])
    }

    /// Once `jobs` are planned again (each request planned to wait has its waiting plan row, `waitForStart`), requests
    /// that waited only for a discount window and are no longer planned to wait become plain queued ones.
    func endWaitsNoLongerPlanned(jobs: [Int64]) throws {
        // `+job_id` keeps SQLite on the small index of waiting requests rather than walking the job's requests.
        try database.statement("""
            UPDATE requests SET state = 'queued', next_attempt_at = NULL
            WHERE state = 'waiting' AND attempts = 0 AND +job_id IN (SELECT value FROM json_each(?))
                AND NOT EXISTS (SELECT 1 FROM request_plans p WHERE p.request_id = requests.id AND p.queue = \(Queue.waiting.sql))
            """).execute([ids(jobs)])
    }

    /// In a sped-up rehearsal, requests planned to wait (for a discount window) are due now: the simulator answers them
    /// as the window will, like it shortens every other wait.
    func endPlannedWaits(now: Int64) throws {
        try database.statement("UPDATE requests SET next_attempt_at = ? WHERE state = 'waiting' AND attempts = 0 AND next_attempt_at > ?")
            .execute([.integer(now), .integer(now)])
    }

    /// Before a job is planned again, requests waiting only for a discount window become plain queued ones.
    func unwaitForReplanning(jobs: [Int64]) throws {
        // `+job_id` keeps SQLite on the small index of waiting requests rather than walking the job's requests.
        try database.statement("""
            UPDATE requests SET state = 'queued', next_attempt_at = NULL
            WHERE state = 'waiting' AND attempts = 0 AND +job_id IN (SELECT value FROM json_each(?))
            """).execute([ids(jobs)])
    }

    func markPlanned(jobs: [Int64]) throws {
        try database.statement("UPDATE jobs SET needs_plan = 0 WHERE id IN (SELECT value FROM json_each(?))").execute([ids(jobs)])
    }

    /// Jobs in scope with requests that came back without a plan (or were never planned).
    func jobsNeedingPlans(job: Int64?) throws -> [Int64] {
        try database.statement("SELECT id FROM jobs WHERE needs_plan = 1 AND (?1 IS NULL OR id = ?1) ORDER BY id")
            .rows([.optionalInt64(job)]) { $0.int64(0) }
    }

    /// Jobs in scope with requests that have not started.
    func jobsNotStarted(job: Int64?) throws -> [Int64] {
        try database.statement("""
            SELECT DISTINCT job_id FROM requests WHERE state IN ('queued', 'waiting') AND (?1 IS NULL OR job_id = ?1) ORDER BY job_id
            """).rows([.optionalInt64(job)]) { $0.int64(0) }
    }

    // MARK: - Dispatch

    /// Waiting requests whose moment has come (a retry's backoff over, a discount window open) are ready.
    func stage(now: Int64) throws {
        try database.statement("""
            UPDATE request_plans SET queue = \(Queue.ready.sql)
            WHERE queue = \(Queue.waiting.sql) AND request_id IN (SELECT id FROM requests WHERE state = 'waiting' AND next_attempt_at <= ?)
            """).execute([.integer(now)])
        try database.statement("UPDATE requests SET state = 'queued', next_attempt_at = NULL WHERE state = 'waiting' AND next_attempt_at <= ?")
            .execute([.integer(now)])
    }

    /// Leases ready requests to `owner`; their attempt is counted now.
    /// `OR FAIL`: a statement that may stop part-way on a constraint keeps a journal of its own to undo itself alone, and a
    /// claim's few hundred requests outgrew the part kept in memory (a temporary file made and deleted, 42 in a run of
    /// 20,000 calls at 0 ms); undoing it alone is never needed, since a failed statement fails its whole transaction.
    func lease(_ leased: [Int64], owner: String, until: Int64) throws {
        guard !leased.isEmpty else { return }
        try database.statement("""
            UPDATE OR FAIL requests SET state = 'running', lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1, next_attempt_at = NULL
            WHERE id IN (SELECT value FROM json_each(?)) AND state = 'queued'
            """).execute([.text(owner), .integer(until), ids(leased)])
        try database.statement("UPDATE OR FAIL request_plans SET queue = \(Queue.out.sql) WHERE request_id IN (SELECT value FROM json_each(?))")
            .execute([ids(leased)])
    }

    /// Ready requests go into a batch: running under the batch's lease (`batch:ID`), which lapses only with the
    /// batch, their attempt counted now.
    func leaseToBatch(_ leased: [Int64], owner: String) throws {
        guard !leased.isEmpty else { return }
        try database.statement("""
            UPDATE requests SET state = 'running', lease_owner = ?, lease_expires_at = NULL, attempts = attempts + 1, next_attempt_at = NULL
            WHERE id IN (SELECT value FROM json_each(?)) AND state = 'queued'
            """).execute([.text(owner), ids(leased)])
        try database.statement("UPDATE request_plans SET queue = \(Queue.out.sql) WHERE request_id IN (SELECT value FROM json_each(?))").execute([ids(leased)])
    }

    /// A request leaves its batch without an answer (its line errored or expired, the batch was cancelled or
    /// failed, or it is taken back to be served live): queued again without a plan, its job to be planned anew,
    /// so the planner chooses a later batch or a live call by the time left.
    /// `liveOnly`: it is to be served live (its batch expired, or it is taken back to meet its deadline).
    func unplanFromBatch(_ id: Int64, owner: String, reason: String, liveOnly: Bool = false) throws {
        try database.statement("""
            UPDATE requests SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL, last_error = ?,
                live_only = max(live_only, ?)
            WHERE id = ? AND state = 'running' AND lease_owner = ?
            """).execute([.text(reason), .int(liveOnly ? 1 : 0), .integer(id), .text(owner)])
        guard database.changes == 1 else { return }
        try database.statement("DELETE FROM request_plans WHERE request_id = ?").execute([.integer(id)])
        try database.statement("UPDATE jobs SET needs_plan = 1 WHERE id = (SELECT job_id FROM requests WHERE id = ?)").execute([.integer(id)])
    }

    /// Queued requests whose plan cannot be followed (their provider no longer takes batches): planned again.
    func unplan(_ queued: [Int64], reason: String) throws {
        guard !queued.isEmpty else { return }
        try database.statement("UPDATE requests SET last_error = ? WHERE id IN (SELECT value FROM json_each(?)) AND state = 'queued'")
            .execute([.text(reason), ids(queued)])
        try database.statement("UPDATE jobs SET needs_plan = 1 WHERE id IN (SELECT job_id FROM requests WHERE id IN (SELECT value FROM json_each(?)))")
            .execute([ids(queued)])
        try database.statement("DELETE FROM request_plans WHERE request_id IN (SELECT value FROM json_each(?))").execute([ids(queued)])
    }

    /// A ready request whose worst case does not fit under a cap: held until the cap is raised or `until`.
    func hold(_ id: Int64, until: Int64?, reason: String) throws {
        try database.statement("UPDATE requests SET state = 'held', next_attempt_at = ?, last_error = ? WHERE id = ? AND state = 'queued'")
            .execute([.optionalInt64(until), .text(reason), .integer(id)])
        try database.statement("UPDATE request_plans SET queue = \(Queue.out.sql) WHERE request_id = ?").execute([.integer(id)])
    }

    /// Ends `owner`'s lease with a final state (succeeded, failed, expired) or a retry later (waiting until
    /// `nextAttemptAt`). False, changing nothing, when the lease was lost.
    func endLease(_ id: Int64, owner: String, state: RequestState, error: String?, nextAttemptAt: Int64? = nil) throws -> Bool {
        precondition([.succeeded, .failed, .expired, .waiting].contains(state), "a lease ends in a final state or a wait")
        try database.statement("""
            UPDATE requests SET state = ?, lease_owner = NULL, lease_expires_at = NULL, last_error = ?, next_attempt_at = ?
            WHERE id = ? AND state = 'running' AND lease_owner = ?
            """).execute([.text(state.rawValue), .optionalText(error), .optionalInt64(nextAttemptAt), .integer(id), .text(owner)])
        guard database.changes == 1 else { return false }
        if state == .waiting { try database.statement("UPDATE request_plans SET queue = \(Queue.waiting.sql) WHERE request_id = ?").execute([.integer(id)]) }
        return true
    }

    /// Puts a running request back in the queue, ready or (with `notBefore`) waiting. `countAttempt: false`
    /// undoes the count made at claim (the call never happened, or failed for a reason not the request's).
    func release(_ id: Int64, owner: String, countAttempt: Bool, reason: String?, notBefore: Int64?) throws -> Bool {
        try database.statement("""
            UPDATE requests SET state = CASE WHEN ?3 IS NULL THEN 'queued' ELSE 'waiting' END, lease_owner = NULL, lease_expires_at = NULL,
                attempts = attempts - ?1, last_error = coalesce(?2, last_error), next_attempt_at = ?3
            WHERE id = ?4 AND state = 'running' AND lease_owner = ?5
            """).execute([.int(countAttempt ? 0 : 1), .optionalText(reason), .optionalInt64(notBefore), .integer(id), .text(owner)])
        guard database.changes == 1 else { return false }
        try database.statement("UPDATE request_plans SET queue = ? WHERE request_id = ?")
            .execute([.integer(notBefore == nil ? Queue.ready.rawValue : Queue.waiting.rawValue), .integer(id)])
        return true
    }

    func extendLeases(owner: String, until: Int64) throws {
        try database.statement("UPDATE requests SET lease_expires_at = ? WHERE state = 'running' AND lease_owner = ?")
            .execute([.integer(until), .text(owner)])
    }

    /// Requests whose holder stopped renewing its lease go back to the queue, their attempts counted.
    /// Returns their ids.
    func rescueExpiredLeases(now: Int64) throws -> [Int64] {
        let rescued = try database.statement("""
            UPDATE requests SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                last_error = 'its worker stopped before finishing (lease expired)'
            WHERE state = 'running' AND lease_expires_at < ? RETURNING id
            """).rows([.integer(now)]) { $0.int64(0) }
        if !rescued.isEmpty {
            try database.statement("UPDATE request_plans SET queue = \(Queue.ready.sql) WHERE request_id IN (SELECT value FROM json_each(?))").execute([ids(rescued)])
        }
        return rescued
    }

    /// Takes back every lease of `owner` (a run whose process is gone): its requests are ready again now,
    /// without waiting for the leases to lapse. Returns their ids.
    func takeOver(owner: String) throws -> [Int64] {
        let taken = try database.statement("""
            UPDATE requests SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                last_error = 'its worker stopped before finishing (its process is gone)'
            WHERE state = 'running' AND lease_owner = ? RETURNING id
            """).rows([.text(owner)]) { $0.int64(0) }
        if !taken.isEmpty {
            try database.statement("UPDATE request_plans SET queue = \(Queue.ready.sql) WHERE request_id IN (SELECT value FROM json_each(?))").execute([ids(taken)])
        }
        return taken
    }

    /// Requests taken over that were claimed and never called: the attempt counted at their claim is taken back, as a
    /// release of a request never called does.
    func uncountAttempts(_ requests: [Int64]) throws {
        guard !requests.isEmpty else { return }
        try database.statement("UPDATE requests SET attempts = attempts - 1 WHERE id IN (SELECT value FROM json_each(?)) AND attempts > 0")
            .execute([ids(requests)])
    }

    /// A paid answer kept in the recovery file is stored: the request succeeds, whatever it was doing since
    /// (queued again, or leased by a run calling it anew, whose answer will then not be kept). False when it
    /// already succeeded.
    func succeedFromRecovery(_ id: Int64) throws -> Bool {
        try database.statement("""
            UPDATE requests SET state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL, last_error = NULL
            WHERE id = ? AND state != 'succeeded'
            """).execute([.integer(id)])
        guard database.changes == 1 else { return false }
        try database.statement("UPDATE request_plans SET queue = \(Queue.out.sql) WHERE request_id = ?").execute([.integer(id)])
        return true
    }

    /// Requests whose deadline passed while they waited end `expired`.
    func expireOverdue(now: Int64, job: Int64?) throws -> Int {
        let expired = try database.statement("""
            UPDATE requests SET state = 'expired', next_attempt_at = NULL, last_error = 'the deadline passed before it could be served'
            WHERE state IN ('queued', 'waiting', 'held') AND deadline_at < ?1 AND (?2 IS NULL OR job_id = ?2) RETURNING id
            """).rows([.integer(now), .optionalInt64(job)]) { $0.int64(0) }
        if !expired.isEmpty {
            try database.statement("UPDATE request_plans SET queue = \(Queue.out.sql) WHERE request_id IN (SELECT value FROM json_each(?))").execute([ids(expired)])
        }
        return expired.count
    }

    // MARK: - Holds

    /// Held requests go back to the queue without their plans, and their jobs are planned again.
    private func releaseHeld(where condition: String, _ values: [SQLiteValue]) throws -> Int {
        try database.statement("UPDATE jobs SET needs_plan = 1 WHERE id IN (SELECT job_id FROM requests WHERE state = 'held' AND \(condition))")
            .execute(values)
        try database.statement("DELETE FROM request_plans WHERE request_id IN (SELECT id FROM requests WHERE state = 'held' AND \(condition))")
            .execute(values)
        try database.statement("UPDATE requests SET state = 'queued', next_attempt_at = NULL WHERE state = 'held' AND \(condition)").execute(values)
        return database.changes
    }

    /// Requests held by a month's cap that has ended.
    func releaseEndedHolds(now: Int64) throws -> Int { try releaseHeld(where: "next_attempt_at <= ?", [.integer(now)]) }

    /// Requests held in a project (its cap was raised or cleared).
    func releaseHeld(project: String) throws -> Int {
        try releaseHeld(where: "job_id IN (SELECT id FROM jobs WHERE project = ?)", [.text(project)])
    }

    /// Requests held in a job (its cap was changed).
    func releaseHeld(job: Int64) throws -> Int { try releaseHeld(where: "job_id = ?", [.integer(job)]) }

    // MARK: - What users do

    /// Cancels what has not started; running requests finish, those in batches with their batch. Returns how
    /// many were cancelled, how many run on, and how many of those are in batches.
    func cancel(job: Int64) throws -> (cancelled: Int, running: Int, inBatches: Int) {
        let cancelled = try database.statement("""
            UPDATE requests SET state = 'cancelled', last_error = 'cancelled by the user', next_attempt_at = NULL
            WHERE job_id = ? AND state IN ('queued', 'waiting', 'held') RETURNING id
            """).rows([.integer(job)]) { $0.int64(0) }
        if !cancelled.isEmpty {
            try database.statement("UPDATE request_plans SET queue = \(Queue.out.sql) WHERE request_id IN (SELECT value FROM json_each(?))").execute([ids(cancelled)])
        }
        let running = try database.statement("""
            SELECT count(*), coalesce(sum(lease_owner LIKE 'batch:%'), 0) FROM requests WHERE job_id = ? AND state = 'running'
            """).firstRow([.integer(job)]) { ($0.int(0), $0.int(1)) } ?? (0, 0)
        return (cancelled.count, running.0, running.1)
    }

    /// Queues finished-but-unsuccessful requests again, with fresh attempts and no plan (the next run plans them
    /// anew, so a model that failed them is not simply tried again).
    func retry(job: Int64, onlyFailed: Bool) throws -> Int {
        let states = onlyFailed ? "[\"failed\"]" : "[\"failed\", \"expired\", \"cancelled\"]"
        try database.statement("""
            DELETE FROM request_plans WHERE request_id IN (SELECT id FROM requests WHERE job_id = ? AND state IN (SELECT value FROM json_each(?)))
            """).execute([.integer(job), .text(states)])
        try database.statement("""
            UPDATE requests SET state = 'queued', attempts = 0, next_attempt_at = NULL, last_error = NULL
            WHERE job_id = ? AND state IN (SELECT value FROM json_each(?))
            """).execute([.integer(job), .text(states)])
        let queued = database.changes
        if queued > 0 { try database.statement("UPDATE jobs SET needs_plan = 1 WHERE id = ?").execute([.integer(job)]) }
        return queued
    }
}
