import Foundation
import PurserCore
import SQLiteStore

/// The one way jobs are planned. Their requests that have not started are planned together, beside the
/// capacity every other job's plan holds, so two plans never count on the same minute of a model. When
/// some of those other plans no longer fit in the time left, their jobs are planned again with these.
public struct JobPlanning {
    let database: Database

    public init(database: Database) { self.database = database }

    public func plan(_ request: PlanningRequest) throws -> PlanningOutcome {
        let store = PlanStore(database: database)
        let context = PlanningContext(
            catalog: request.catalog, now: request.now, usableProviders: request.usableProviders,
            history: try JobStore(database: database).outputHistory(),
            inputCalibration: try JobStore(database: database).inputCalibration(simulated: request.simulated),
            batchCompletion: try JobPlanning.batchCompletion(database),
            cacheHits: try JobPlanning.cacheHits(database, catalog: request.catalog, simulated: request.simulated))
        let planner = Planner(context: context, shouldStop: request.shouldStop)
        var jobs = Array(Set(request.jobs)).sorted()
        var requests = try store.plannableRequests(jobs: jobs)
        var plan = planner.plan(requests, held: try store.heldCapacity(excludingJobs: jobs))
        let unfit = Set(plan.unfitHeld.map(\.job)).subtracting(jobs)
        if !unfit.isEmpty {
            jobs = (jobs + unfit).sorted()
            requests = try store.plannableRequests(jobs: jobs)
            plan = planner.plan(requests, held: try store.heldCapacity(excludingJobs: jobs))
        }
        if request.save { try store.save(plan, requests: requests, jobs: jobs, now: request.now) }
        return PlanningOutcome(plan: plan, context: context, requests: requests, jobs: jobs)
    }

    /// How often this database's batch calls of a shared prefix (one another request of their job shares, long enough
    /// for the model to cache) read it from the cache, per model, over one ledger's results.
    static func cacheHits(_ database: Database, catalog: PricingCatalog, simulated: Bool) throws -> CacheHitHistory {
        var history = CacheHitHistory()
        try database.statement("""
            SELECT res.model, r.prefix_tokens, count(*), sum(res.cached_input_tokens > 0) FROM results res JOIN requests r ON r.id = res.request_id
            WHERE res.mode = 'batch' AND res.simulated = ? AND r.prefix_group IS NOT NULL AND EXISTS (
                SELECT 1 FROM requests g WHERE g.job_id = r.job_id AND g.prefix_group = r.prefix_group AND g.id <> r.id)
            GROUP BY res.model, r.prefix_tokens
            """).forEachRow([.int(simulated ? 1 : 0)]) { row in
            let model = row.text(0)
            guard let rule = catalog.model(id: model)?.caching, row.int(1) >= rule.minimumPrefixTokens else { return }
            history.calls[model, default: 0] += row.int(2)
            history.hits[model, default: 0] += row.int(3)
        }
        return history
    }

    /// How long this database's batches took, from creation to the provider's end, for those that finished
    /// (the latest 200 per model); simulated batches count only for simulated plans' sake and are skipped.
    static func batchCompletion(_ database: Database) throws -> BatchCompletionHistory {
        var durations: [String: [Int64]] = [:]
        try database.statement("""
            SELECT model, ended_at - submitted_at FROM batches
            WHERE state IN ('ended', 'done') AND provider_status IN ('completed', 'ended') AND cancel_requested_at IS NULL
                AND simulated = 0 AND submitted_at IS NOT NULL AND ended_at IS NOT NULL
            ORDER BY id DESC
            """).forEachRow { row in
            let model = row.text(0)
            if durations[model, default: []].count < 200 { durations[model, default: []].append(row.int64(1)) }
        }
        return BatchCompletionHistory(durations: durations)
    }
}
