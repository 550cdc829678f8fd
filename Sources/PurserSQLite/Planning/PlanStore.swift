import Foundation
import PurserCore
import SQLiteStore

/// Reads the requests to plan and what other plans hold, and writes plans back.
public struct PlanStore {
    let database: Database

    public init(database: Database) { self.database = database }

    /// Requests that have not started: queued (planned or not), or waiting for a discount window (never tried).
    /// Requests waiting to retry keep the plan they are being served on.
    static let notStarted = RequestLifecycle.notStarted

    /// The requests of these jobs that have not started, in id order.
    public func plannableRequests(jobs: [Int64]) throws -> [PlannableRequest] {
        var requests: [PlannableRequest] = []
        try database.readTransaction {
            for job in jobs.sorted() {
                // A job's requests are stored together, so they are read along the table between its first and last id,
                // in id order as they lie: by the job's index they came in custom-id order, and SQLite's sort of them was
                // half the read (sqlite3's `.timer`, a million requests: 0.49-0.67 s this way, 1.06-1.34 s that way).
                // `+job_id` keeps SQLite off that index; it still says which rows in the range are the job's.
                try database.statement("""
                    SELECT id, quality_floor, quality_tier, input_tokens, max_output_tokens, capabilities, pinned_model,
                        reference_model, deadline_at, max_cost_pico, live_only, provider_filter, prefix_group, prefix_tokens
                    FROM requests
                    WHERE id BETWEEN (SELECT min(id) FROM requests WHERE job_id = ?1) AND (SELECT max(id) FROM requests WHERE job_id = ?1)
                        AND +job_id = ?1 AND \(PlanStore.notStarted)
                    ORDER BY id
                    """).forEachRow([.integer(job)]) { row in
                    requests.append(PlannableRequest(
                        id: row.int64(0),
                        needs: RequestNeeds(
                            qualityFloor: row.int(1), qualityTier: row.text(2), inputTokens: row.int(3), maxOutputTokens: row.int(4),
                            capabilities: Capabilities(rawValue: row.int(5)), pinnedModel: row.optionalText(6),
                            providers: try ProviderFilter.stored(row.optionalText(11))),
                        referenceModel: row.optionalText(7), deadlineAt: row.int64(8), maxCost: row.optionalInt64(9).map { Money(picoUSD: $0) },
                        job: job, liveOnly: row.int(10) == 1,
                        prefix: row.hexadecimal(12).map { SharedPrefix(group: $0, tokens: row.int(13)) }))
                }
            }
        }
        return requests
    }

    public func plannableRequests(job: Int64) throws -> [PlannableRequest] { try plannableRequests(jobs: [job]) }

    /// What the plans of every other job hold: their planned and waiting requests, grouped by plan line.
    public func heldCapacity(excludingJobs jobs: [Int64]) throws -> [HeldCapacity] {
        let excluded = JSONWriter.string(.array(jobs.map { .number(String($0)) }))
        return try database.statement("""
            SELECT p.job_id, l.model, l.mode, l.latest_start, count(*), sum(p.tokens), max(p.tokens)
            FROM request_plans p JOIN plan_lines l ON l.id = p.line
            WHERE p.queue > \(RequestLifecycle.Queue.out.sql) AND p.job_id NOT IN (SELECT value FROM json_each(?))
            GROUP BY p.job_id, p.line ORDER BY l.latest_start
            """).rows([.text(excluded)]) { row in
            HeldCapacity(
                job: row.int64(0), model: row.text(1), mode: DispatchMode(rawValue: row.text(2)) ?? .sync, latestStart: row.int64(3),
                requests: row.int(4), tokens: row.int64(5), largestRequestTokens: row.int64(6))
        }
    }

    /// The request of `job` with this `custom_id`, if it has not started.
    public func plannableRequestID(job: Int64, customID: String) throws -> Int64? {
        try database.statement("SELECT id FROM requests WHERE job_id = ? AND custom_id = ? AND \(PlanStore.notStarted)")
            .firstRow([.integer(job), .text(customID)]) { $0.int64(0) }
    }

    /// Replaces the plans of `jobs`' requests that have not started (the plan's `requests`): a placed request
    /// gets a plan row, which is its place in the dispatch queue, ready or waiting for its discount window; an
    /// unplaced one stays queued with none. A request another process claimed since the plan was made keeps
    /// the plan it is being served on.
    public func save(_ plan: Plan, requests: [PlannableRequest], jobs: [Int64], now: Int64) throws {
        // Requests are never deleted once stored, so the plan rows' references to them cannot dangle;
        // checking each costs a lookup in a table of millions of rows.
        try database.withoutForeignKeyChecks { try write(plan, requests: requests, jobs: jobs, now: now) }
    }

    private func write(_ plan: Plan, requests: [PlannableRequest], jobs: [Int64], now: Int64) throws {
        precondition(requests.count == plan.count, "the plan's requests")
        let lifecycle = RequestLifecycle(database: database)
        let jobList = PlanStore.idList(jobs)
        try database.writeTransaction {
            // The old plans of requests that have not started: those ready, and those waiting only for a window.
            try database.statement("""
                DELETE FROM request_plans WHERE job_id IN (SELECT value FROM json_each(?1)) AND (queue = \(RequestLifecycle.Queue.ready.sql) OR (queue = \(RequestLifecycle.Queue.waiting.sql)
                    AND request_id IN (SELECT id FROM requests WHERE state = 'waiting' AND attempts = 0 AND job_id IN (SELECT value FROM json_each(?1)))))
                """).execute([.text(jobList)])
            var lines: [LineKey: Int64] = [:]
            let findLine = try database.statement("SELECT id FROM plan_lines WHERE model = ? AND mode = ? AND latest_start = ?")
            let insertLine = try database.statement("INSERT INTO plan_lines (model, mode, latest_start) VALUES (?, ?, ?)")
            func line(_ key: LineKey) throws -> Int64 {
                if let known = lines[key] { return known }
                let values: [SQLiteValue] = [.text(plan.modelIDs[Int(key.model)]), .text(key.mode.rawValue), .integer(key.latestStart)]
                let id: Int64
                if let existing = try findLine.firstRow(values, { $0.int64(0) }) {
                    id = existing
                } else {
                    try insertLine.execute(values)
                    id = database.lastInsertRowID
                }
                lines[key] = id
                return id
            }
            // A request planned to start later (in a discount window) gets its plan row waiting, and its request waits
            // with it: one write of each row, not a ready row moved to the waiting queue after.
            let insert = try database.statement("""
                INSERT INTO request_plans (request_id, job_id, line, cost_pico, baseline_pico, deadline_at, tokens, queue)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING
                """)
            for index in 0..<plan.count {
                let model = plan.modelOfRequest[index]
                guard model >= 0 else { continue }
                let id = try line(LineKey(model: model, mode: plan.modeOfRequest[index], latestStart: plan.latestStartOfRequest[index]))
                let request = requests[index]
                try insert.bind(plan.requestIDs[index], at: 1)
                try insert.bind(request.job, at: 2)
                try insert.bind(id, at: 3)
                try insert.bind(plan.costOfRequest[index], at: 4)
                try insert.bind(plan.baselineOfRequest[index], at: 5)
                try insert.bind(request.deadlineAt, at: 6)
                try insert.bind(Int64(request.rateLimitTokens), at: 7)
                let waits = plan.startOfRequest[index] > now
                try insert.bind((waits ? RequestLifecycle.Queue.waiting : .ready).rawValue, at: 8)
                try insert.executeBound()
                if waits, database.changes == 1 {
                    try lifecycle.waitForStart(plan.requestIDs[index], until: plan.startOfRequest[index])
                }
            }
            try lifecycle.endWaitsNoLongerPlanned(jobs: jobs)
            try lifecycle.markPlanned(jobs: jobs)
        }
    }

    /// Request ids as a JSON array, for `json_each` (one bound value instead of a statement per id).
    static func idList(_ ids: [Int64]) -> String {
        var text = "["
        text.reserveCapacity(ids.count * 8 + 2)
        for (index, id) in ids.enumerated() {
            if index > 0 { text += "," }
            text += String(id)
        }
        return text + "]"
    }

    private struct LineKey: Hashable {
        var model: Int32
        var mode: DispatchMode
        var latestStart: Int64
    }
}
