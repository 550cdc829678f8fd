import Foundation
import PurserCore
import SQLiteStore

/// Jobs and requests in the database. Every statement is prepared; nothing is built from input.
public struct JobStore {
    let database: Database

    public init(database: Database) { self.database = database }

    // MARK: - Jobs

    private static let jobColumns = "id, name, project, source, submitted_at, max_cost_pico, request_count, rejected_count"

    private static func job(_ row: Row) -> Job {
        Job(
            id: row.int64(0), name: row.text(1), project: row.text(2), source: row.text(3), submittedAt: row.int64(4),
            maxCost: row.optionalInt64(5).map { Money(picoUSD: $0) }, requestCount: row.int(6), rejectedCount: row.int(7))
    }

    func insertJob(name: String, project: String, source: String, fingerprint: String, submittedAt: Int64, maxCost: Money?) throws -> Int64 {
        try database.statement("""
            INSERT INTO jobs (name, project, source, fingerprint, submitted_at, max_cost_pico) VALUES (?, ?, ?, ?, ?, ?)
            """).execute([.text(name), .text(project), .text(source), .text(fingerprint), .integer(submittedAt), .optionalInt64(maxCost?.picoUSD)])
        return database.lastInsertRowID
    }

    func setCounts(job: Int64, requests: Int, rejected: Int) throws {
        try database.statement("UPDATE jobs SET request_count = ?, rejected_count = ? WHERE id = ?")
            .execute([.int(requests), .int(rejected), .integer(job)])
    }

    public func job(withFingerprint fingerprint: String) throws -> Job? {
        try database.statement("SELECT \(JobStore.jobColumns) FROM jobs WHERE fingerprint = ? ORDER BY id LIMIT 1")
            .firstRow([.text(fingerprint)], JobStore.job)
    }

    public func job(id: Int64) throws -> Job? {
        try database.statement("SELECT \(JobStore.jobColumns) FROM jobs WHERE id = ?").firstRow([.integer(id)], JobStore.job)
    }

    public func jobs() throws -> [Job] {
        try database.statement("SELECT \(JobStore.jobColumns) FROM jobs ORDER BY id").rows([], JobStore.job)
    }

    /// A job by its number or, failing that, its name (the newest job of that name).
    /// The job a number or a name stands for; a name several jobs share is an error listing them.
    public func job(reference: String) throws -> Job? {
        if let id = Int64(reference), let job = try job(id: id) { return job }
        let named = try database.statement("SELECT \(JobStore.jobColumns) FROM jobs WHERE name = ? ORDER BY id LIMIT 11")
            .rows([.text(reference)], JobStore.job)
        guard named.count <= 1 else {
            let listed = named.prefix(10).map { "\($0.id) (\($0.requestCount) requests from \($0.source))" }.joined(separator: ", ")
            throw Problem("\(named.count > 10 ? "more than 10" : String(named.count)) jobs are named '\(reference)': \(listed); give the job's number instead")
        }
        return named.first
    }

    // MARK: - Requests

    /// Statements for storing a file's requests, prepared once per file.
    func requestInserter() throws -> RequestInserter {
        try RequestInserter(
            request: database.statement("""
                INSERT INTO requests (job_id, line_number, custom_id, state, shape, reference_model, quality_floor, quality_tier,
                    deadline_at, max_cost_pico, pinned_model, capabilities, input_tokens, max_output_tokens, tags, provider_filter,
                    prefix_group, prefix_tokens)
                VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (job_id, custom_id) DO NOTHING
                """),
            body: database.statement("INSERT INTO request_bodies (request_id, body) VALUES (?, ?)"), database: database)
    }

    func lineNumber(ofCustomID customID: String, job: Int64) throws -> Int? {
        try database.statement("SELECT line_number FROM requests WHERE job_id = ? AND custom_id = ?")
            .firstRow([.integer(job), .text(customID)]) { $0.int(0) }
    }

    func insertRejection(_ problem: LineProblem, job: Int64) throws {
        try database.statement("INSERT INTO rejected_lines (job_id, line_number, custom_id, reason) VALUES (?, ?, ?, ?)")
            .execute([.integer(job), .int(problem.lineNumber), .optionalText(problem.customID), .text(problem.message)])
    }

    public func rejections(job: Int64, limit: Int) throws -> [LineProblem] {
        try database.statement("SELECT line_number, custom_id, reason FROM rejected_lines WHERE job_id = ? ORDER BY line_number LIMIT ?")
            .rows([.integer(job), .int(limit)]) { LineProblem(lineNumber: $0.int(0), customID: $0.optionalText(1), message: $0.text(2)) }
    }

    /// Request counts by state for one job.
    /// Requests held by a budget cap, in every job.
    public func heldCount() throws -> Int {
        Int(try database.scalarInt("SELECT count(*) FROM requests WHERE state = 'held'") ?? 0)
    }

    public func stateCounts(job: Int64) throws -> [RequestState: Int] {
        var counts: [RequestState: Int] = [:]
        try database.statement("""
            SELECT CASE WHEN requests.state = 'queued' AND request_plans.queue = \(RequestLifecycle.Queue.ready.sql) THEN 'planned' ELSE requests.state END AS shown,
                count(*)
            FROM requests LEFT JOIN request_plans ON request_plans.request_id = requests.id
            WHERE requests.job_id = ? GROUP BY shown
            """).forEachRow([.integer(job)]) { row in
            if let state = RequestState(rawValue: row.text(0)) { counts[state] = row.int(1) }
        }
        return counts
    }

    /// The estimated and baseline cost of the job's planned requests.
    /// Requests by the mode they were served in (a result) or are planned for, with how many of each are done.
    public func modeCounts(job: Int64) throws -> [(mode: String, requests: Int, done: Int)] {
        try database.statement("""
            SELECT coalesce(s.mode, l.mode) AS mode, count(*), count(s.request_id)
            FROM requests r LEFT JOIN results s ON s.request_id = r.id LEFT JOIN request_plans p ON p.request_id = r.id
                LEFT JOIN plan_lines l ON l.id = p.line
            WHERE r.job_id = ? AND coalesce(s.mode, l.mode) IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1
            """).rows([.integer(job)]) { ($0.text(0), $0.int(1), $0.int(2)) }
    }


    /// The batches that hold requests of `job` now.
    public func openBatches(job: Int64) throws -> [BatchSummary] {
        try database.statement("""
            SELECT b.id, b.provider, b.model, b.state, b.provider_status, b.provider_batch_id, count(*), b.submitted_at, b.last_error
            FROM batch_requests m JOIN requests r ON r.id = m.request_id JOIN batches b ON b.id = m.batch_id
            WHERE r.job_id = ? GROUP BY b.id ORDER BY b.id
            """).rows([.integer(job)]) { row in
            BatchSummary(
                id: row.int64(0), provider: row.text(1), model: row.text(2), state: row.text(3), providerStatus: row.optionalText(4),
                providerBatchID: row.optionalText(5), requests: row.int(6), submittedAt: row.optionalInt64(7), lastError: row.optionalText(8))
        }
    }

    public func planTotals(job: Int64) throws -> (estimated: Money, baseline: Money) {
        let sql = """
            SELECT coalesce(sum(cost_pico), 0), coalesce(sum(baseline_pico), 0) FROM request_plans WHERE job_id = ?
            """
        return try database.statement(sql).firstRow([.integer(job)]) { (Money(picoUSD: $0.int64(0)), Money(picoUSD: $0.int64(1))) } ?? (.zero, .zero)
    }

    // MARK: - Output history

    public func outputHistory() throws -> OutputHistory {
        var history = OutputHistory()
        try database.statement("SELECT model_id, quality_tier, samples, output_tokens, max_output_tokens FROM output_history").forEachRow { row in
            history.byModelAndTier[OutputHistory.key(model: row.text(0), tier: row.text(1))] = OutputHistory.Sample(
                samples: row.int(2), outputTokens: row.int(3), maxOutputTokens: row.int(4))
        }
        return history
    }

    /// Input estimates against what providers reported, per provider, over one ledger's results: real ones for real
    /// plans; a rehearsal learns from simulated ones, which never calibrate a real plan.
    public func inputCalibration(simulated: Bool) throws -> InputCalibration {
        var calibration = InputCalibration()
        try database.statement("SELECT provider, results, estimated_tokens, reported_tokens FROM input_history WHERE simulated = ?")
            .forEachRow([.int(simulated ? 1 : 0)]) { row in
                calibration.byProvider[row.text(0)] = InputCalibration.Family(
                    results: row.int64(1), estimatedTokens: row.int64(2), reportedTokens: row.int64(3))
            }
        return calibration
    }

    /// Adds `results` answers of `provider` to the input history: Purser's estimates for their requests and what the
    /// provider counted (`Usage.allInputTokens`). Usage is bounded where it is read.
    public func recordInput(provider: String, simulated: Bool, results: Int = 1, estimatedTokens: Int, reportedTokens: Int) throws {
        try database.statement("""
            INSERT INTO input_history (provider, simulated, results, estimated_tokens, reported_tokens) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (provider, simulated) DO UPDATE SET results = results + excluded.results,
                estimated_tokens = estimated_tokens + excluded.estimated_tokens, reported_tokens = reported_tokens + excluded.reported_tokens
            """).execute([.text(provider), .int(simulated ? 1 : 0), .int(results), .int(estimatedTokens), .int(reportedTokens)])
    }

    /// Adds one result's output length to the history (called by dispatch when a result lands).
    /// Adds `samples` answers (one by default) and their tokens to the model's history for the tier.
    public func recordOutput(model: String, tier: String, samples: Int = 1, outputTokens: Int, maxOutputTokens: Int) throws {
        try database.statement("""
            INSERT INTO output_history (model_id, quality_tier, samples, output_tokens, max_output_tokens) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (model_id, quality_tier) DO UPDATE SET samples = samples + excluded.samples,
                output_tokens = output_tokens + excluded.output_tokens, max_output_tokens = max_output_tokens + excluded.max_output_tokens
            """).execute([.text(model), .text(tier), .int(samples), .int(outputTokens), .int(maxOutputTokens)])
    }
}

/// Stores requests with statements prepared once: this runs for every line of every submitted file.
struct RequestInserter {
    let request: Statement
    let body: Statement
    let database: Database

    /// Inserts one request and its body. Returns false, inserting nothing, when its `custom_id` is already in the job.
    func insert(_ draft: RequestDraft, job: Int64) throws -> Bool {
        // Texts are bound in place (SQLite copies nothing) while the draft's strings are borrowed.
        var customID = draft.customID, tier = draft.needs.qualityTier
        let inserted = try customID.withUTF8 { customID in
            try tier.withUTF8 { tier in
                try request.bind(job, at: 1)
                try request.bind(Int64(draft.lineNumber), at: 2)
                try request.bindBorrowedText(customID, at: 3)
                try request.bind(draft.shape.rawValue, at: 4)
                try request.bind(draft.referenceModel, at: 5)
                try request.bind(Int64(draft.needs.qualityFloor), at: 6)
                try request.bindBorrowedText(tier, at: 7)
                try request.bind(draft.deadlineAt, at: 8)
                try request.bind(draft.maxCost.map { .integer($0.picoUSD) } ?? .null, at: 9)
                try request.bind(draft.needs.pinnedModel, at: 10)
                try request.bind(Int64(draft.needs.capabilities.rawValue), at: 11)
                try request.bind(Int64(draft.needs.inputTokens), at: 12)
                try request.bind(Int64(draft.needs.maxOutputTokens), at: 13)
                try request.bind(draft.tags, at: 14)
                try request.bind(draft.needs.providers?.json, at: 15)
                try request.bind(draft.prefixGroup, at: 16)
                try request.bind(Int64(draft.prefixTokens), at: 17)
                try request.executeBound()
                return database.changes == 1
            }
        }
        guard inserted else { return false }
        try body.bind(database.lastInsertRowID, at: 1)
        var text = draft.body
        try text.withUTF8 { bytes in
            try body.bindBorrowedText(bytes, at: 2)
            try body.executeBound()
        }
        return true
    }
}
