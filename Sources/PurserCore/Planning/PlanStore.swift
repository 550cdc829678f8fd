import SQLiteStore

/// Reads requests to plan and writes plans back.
public struct PlanStore {
    let database: Database

    public init(database: Database) { self.database = database }

    /// The job's queued requests (planned or not yet), in line order.
    public func plannableRequests(job: Int64) throws -> [PlannableRequest] {
        var requests: [PlannableRequest] = []
        try database.readTransaction {
            try database.statement("""
                SELECT id, quality_floor, quality_tier, input_tokens, max_output_tokens, capabilities, pinned_model,
                    reference_model, deadline_at, max_cost_pico
                FROM requests WHERE job_id = ? AND state = 'queued' ORDER BY id
                """).forEachRow([.integer(job)]) { row in
                requests.append(PlannableRequest(
                    id: row.int64(0),
                    needs: RequestNeeds(
                        qualityFloor: row.int(1), qualityTier: row.text(2), inputTokens: row.int(3), maxOutputTokens: row.int(4),
                        capabilities: Capabilities(rawValue: row.int(5)), pinnedModel: row.optionalText(6)),
                    referenceModel: row.optionalText(7), deadlineAt: row.int64(8), maxCost: row.optionalInt64(9).map { Money(picoUSD: $0) }))
            }
        }
        return requests
    }

    /// The request of `job` with this `custom_id`, if it is still queued.
    public func queuedRequestID(job: Int64, customID: String) throws -> Int64? {
        try database.statement("SELECT id FROM requests WHERE job_id = ? AND custom_id = ? AND state = 'queued'")
            .firstRow([.integer(job), .text(customID)]) { $0.int64(0) }
    }

    /// Replaces the job's plan: placed requests get a plan row; unplaced ones have none and stay queued.
    public func save(_ plan: Plan, job: Int64) throws {
        // Requests are never deleted once stored, so the plan rows' references to them cannot dangle;
        // checking each costs a lookup in a table of millions of rows.
        try database.withoutForeignKeyChecks { try write(plan, job: job) }
    }

    private func write(_ plan: Plan, job: Int64) throws {
        try database.writeTransaction {
            // Every queued request of the job is in `plan`, so its old plan rows lie between the lowest and
            // highest id; each row in that range is checked, instead of listing every queued request first.
            // A request another process claimed since `plan` was made keeps the plan it is being served on.
            if let first = plan.entries.lazy.map(\.requestID).min(), let last = plan.entries.lazy.map(\.requestID).max() {
                try database.statement("""
                    DELETE FROM request_plans WHERE request_id BETWEEN ? AND ? AND EXISTS (
                        SELECT 1 FROM requests WHERE requests.id = request_plans.request_id AND job_id = ? AND state = 'queued')
                    """).execute([.integer(first), .integer(last), .integer(job)])
            }
            let insert = try database.statement("""
                INSERT INTO request_plans (request_id, model, mode, start_at, cost_pico, baseline_pico) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (request_id) DO NOTHING
                """)
            for entry in plan.entries {
                guard var model = entry.model, let mode = entry.mode, let startAt = entry.startAt else { continue }
                var modeName = mode.rawValue
                try insert.bind(entry.requestID, at: 1)
                try insert.bind(startAt, at: 4)
                try insert.bind(entry.estimatedCost.picoUSD, at: 5)
                try insert.bind(entry.baselineCost.picoUSD, at: 6)
                // Both texts are read in place, sparing SQLite an allocation and a copy of each per row.
                try model.withUTF8 { model in
                    try modeName.withUTF8 { modeName in
                        try insert.bindBorrowedText(model, at: 2)
                        try insert.bindBorrowedText(modeName, at: 3)
                        try insert.executeBound()
                    }
                }
            }
        }
    }
}
