import Foundation
import PurserCore
import SQLiteStore

/// Reads results and changes what is left of a job (cancel, retry).
public struct ResultStore {
    let database: Database

    public init(database: Database) { self.database = database }

    /// Streams the job's finished requests in line order (`only`: one state).
    public func forEachFinished(job: Int64, only: RequestState?, _ body: (ResultRow) throws -> Void) throws {
        try database.readTransaction {
            try database.statement("""
                SELECT r.id, r.custom_id, r.state, r.last_error, r.attempts, s.model, s.provider, s.dialect, s.mode, s.status_code,
                    s.provider_request_id, s.body, s.input_tokens, s.cached_input_tokens, s.cache_write_tokens, s.output_tokens, s.cost_pico, s.simulated,
                    s.finished_at, a.status, a.outcome
                FROM requests r LEFT JOIN results s ON s.request_id = r.id
                    LEFT JOIN attempts a ON a.id = (SELECT max(id) FROM attempts WHERE request_id = r.id)
                WHERE r.job_id = ?1 AND r.state IN ('succeeded', 'failed', 'expired', 'cancelled') AND (?2 IS NULL OR r.state = ?2)
                ORDER BY r.id
                """).forEachRow([.integer(job), .optionalText(only?.rawValue)]) { row in
                var answer: ResultRow.Answer?
                if !row.isNull(5) {
                    answer = ResultRow.Answer(
                        model: row.text(5), provider: row.text(6), dialect: Provider.Dialect(rawValue: row.text(7)) ?? .openai, mode: row.text(8),
                        statusCode: row.int(9), providerRequestID: row.optionalText(10), body: row.text(11),
                        usage: Usage(inputTokens: row.int(12), cachedInputTokens: row.int(13), cacheWriteTokens: row.int(14), outputTokens: row.int(15)),
                        cost: Money(picoUSD: row.int64(16)), simulated: row.int(17) == 1, finishedAt: row.int64(18))
                }
                try body(ResultRow(
                    requestID: row.int64(0), customID: row.text(1), state: RequestState(rawValue: row.text(2)) ?? .failed,
                    lastError: row.optionalText(3), attempts: row.int(4), answer: answer, lastStatus: row.optionalInt64(19).map { Int($0) },
                    lastOutcome: row.optionalText(20)))
            }
        }
    }

    /// What the job has spent: the sum of its results' costs, and whether any were simulated.
    public func spend(job: Int64) throws -> (cost: Money, simulated: Int) {
        try database.statement("""
            SELECT coalesce(sum(s.cost_pico), 0), coalesce(sum(s.simulated), 0) FROM results s JOIN requests r ON r.id = s.request_id WHERE r.job_id = ?
            """).firstRow([.integer(job)]) { (Money(picoUSD: $0.int64(0)), $0.int(1)) } ?? (.zero, 0)
    }

    /// Cancels what has not started; running requests finish, those in batches with their batch. Returns how
    /// many were cancelled, how many run on, and how many of those are in batches.
    public func cancel(job: Int64) throws -> (cancelled: Int, running: Int, inBatches: Int) {
        try database.writeTransaction { try RequestLifecycle(database: database).cancel(job: job) }
    }

    /// Queues finished-but-unsuccessful requests again, with fresh attempts and no plan.
    public func retry(job: Int64, onlyFailed: Bool) throws -> Int {
        try database.writeTransaction { try RequestLifecycle(database: database).retry(job: job, onlyFailed: onlyFailed) }
    }
}
