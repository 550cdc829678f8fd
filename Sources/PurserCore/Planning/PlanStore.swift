import SQLiteStore

/// Reads requests to plan and writes plans back.
public struct PlanStore {
    let database: Database

    public init(database: Database) { self.database = database }

    /// The job's requests that are not yet running or finished, in line order.
    public func plannableRequests(job: Int64) throws -> [PlannableRequest] {
        try database.readTransaction {
            try database.statement("""
                SELECT id, custom_id, quality_floor, quality_tier, input_tokens, max_output_tokens, capabilities, pinned_model,
                    reference_model, deadline_at, max_cost_pico
                FROM requests WHERE job_id = ? AND state IN ('queued', 'planned') ORDER BY id
                """).rows([.integer(job)]) { row in
                PlannableRequest(
                    id: row.int64(0), customID: row.text(1),
                    needs: RequestNeeds(
                        qualityFloor: row.int(2), qualityTier: row.text(3), inputTokens: row.int(4), maxOutputTokens: row.int(5),
                        capabilities: Capabilities(rawValue: row.int(6)), pinnedModel: row.optionalText(7)),
                    referenceModel: row.optionalText(8), deadlineAt: row.int64(9), maxCost: row.optionalInt64(10).map { Money(picoUSD: $0) })
            }
        }
    }

    /// Stores the plan: placed requests become `planned`; unplaced ones stay (or return to) `queued`.
    public func save(_ plan: Plan) throws {
        try database.writeTransaction {
            let update = try database.statement("""
                UPDATE requests SET state = ?, planned_model = ?, planned_mode = ?, planned_start_at = ?, planned_cost_pico = ?,
                    baseline_cost_pico = ?
                WHERE id = ? AND state IN ('queued', 'planned')
                """)
            for entry in plan.entries {
                try update.execute([
                    .text(entry.model == nil ? RequestState.queued.rawValue : RequestState.planned.rawValue), .optionalText(entry.model),
                    .optionalText(entry.mode?.rawValue), .optionalInt64(entry.startAt),
                    entry.model == nil ? .null : .integer(entry.estimatedCost.picoUSD), .integer(entry.baselineCost.picoUSD),
                    .integer(entry.requestID),
                ])
            }
        }
    }
}
