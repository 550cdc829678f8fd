/// The use cases every front end calls on one database — the CLI today, the service next: each reads or changes
/// what the books hold and answers in typed values, which the front end renders. Nothing here prints, and nothing
/// here knows which backend keeps the books.
public struct Workspace {
    public let jobs: any JobBook
    public let budgets: any BudgetBook
    public let results: any ResultBook
    public let planning: any PlanningBook
    public let reports: any ReportBook

    public init(jobs: any JobBook, budgets: any BudgetBook, results: any ResultBook, planning: any PlanningBook, reports: any ReportBook) {
        self.jobs = jobs
        self.budgets = budgets
        self.results = results
        self.planning = planning
        self.reports = reports
    }

    /// A job by its number or name.
    public func job(_ reference: String) async throws -> Job {
        guard let job = try jobs.job(reference: reference) else { throw UnknownJob(reference: reference) }
        return job
    }

    /// Every job, or the one named, with what its requests are doing, what it spent, and the caps in force over it
    /// in the month of `now`.
    public func status(job reference: String?, now: Int64) async throws -> StatusReport {
        let chosen = if let reference { [try await job(reference)] } else { try jobs.jobs() }
        let month = BudgetMonth(containing: now)
        let caps = try budgets.capsInForce(month: month, simulated: false).filter { use in chosen.contains { use.applies(to: $0) } }
        let rehearsals = try budgets.hasSimulatedSpending()
            ? try budgets.capsInForce(month: month, simulated: true).filter { use in use.used > .zero && chosen.contains { use.applies(to: $0) } } : []
        let rows = try chosen.map { job in
            let totals = try jobs.planTotals(job: job.id)
            let spend = try results.spend(job: job.id)
            return JobStatus(
                job: job, counts: try jobs.stateCounts(job: job.id), estimated: totals.estimated, baseline: totals.baseline, spent: spend.cost,
                simulatedResults: spend.simulated, modes: try jobs.modeCounts(job: job.id), batches: try jobs.openBatches(job: job.id),
                unsettled: try budgets.unsettled(job: job.id, simulated: false),
                rejections: chosen.count == 1 && job.rejectedCount > 0 ? try jobs.rejections(job: job.id, limit: 20) : [])
        }
        return StatusReport(jobs: rows, caps: caps, rehearsals: rehearsals)
    }

    /// Plans a job's requests not started beside what the other plans hold, and keeps the plan unless `save` is false:
    /// the plan with the caps over the job in the month of `now`, which say whether its estimate fits.
    public func plan(
        job reference: String, catalog: PricingCatalog, usableProviders: Set<String>, now: Int64, simulated: Bool, save: Bool = true
    ) async throws -> JobPlan {
        let job = try await job(reference)
        var request = PlanningRequest(jobs: [job.id], catalog: catalog, usableProviders: usableProviders, now: now)
        request.save = save
        request.simulated = simulated
        let outcome = try planning.plan(request)
        let caps = [try budgets.use(project: job.project, month: BudgetMonth(containing: now), simulated: simulated),
                    try budgets.use(job: job.id, simulated: simulated)].compactMap { $0 }
        return JobPlan(job: job, outcome: outcome, caps: caps)
    }

    /// Why the job's request `customID` is planned where it is, from a plan made and not kept.
    public func explain(
        job reference: String, customID: String, catalog: PricingCatalog, usableProviders: Set<String>, now: Int64, simulated: Bool
    ) async throws -> PlanExplanation {
        let plan = try await plan(job: reference, catalog: catalog, usableProviders: usableProviders, now: now, simulated: simulated, save: false)
        guard let id = try planning.plannableRequestID(job: plan.job.id, customID: customID),
            let index = plan.outcome.requests.firstIndex(where: { $0.id == id })
        else { throw NoPlannableRequest(job: plan.job.id, customID: customID) }
        return Planner(context: plan.outcome.context).explain(plan.outcome.requests, index: index, plan: plan.outcome.plan)
    }

    /// Cancels the job's requests that have not started: what was cancelled, and what is still running (in batches
    /// among it), which finishes.
    public func cancel(job reference: String) async throws -> (job: Job, cancelled: Int, running: Int, inBatches: Int) {
        let job = try await job(reference)
        let (cancelled, running, inBatches) = try results.cancel(job: job.id)
        return (job, cancelled, running, inBatches)
    }

    /// Queues the job's failed (and, unless `onlyFailed`, expired and cancelled) requests again; how many.
    public func retry(job reference: String, onlyFailed: Bool) async throws -> (job: Job, queued: Int) {
        let job = try await job(reference)
        return (job, try results.retry(job: job.id, onlyFailed: onlyFailed))
    }

    /// Streams the job's finished requests (only those in `state`, when given) in line order: what was streamed, and
    /// how many of the job's requests are not finished yet. The job is looked up first (`job(_:)`), so that a front end
    /// can refuse an unknown one before it opens anything to write to.
    public func results(of job: Job, only state: RequestState?, _ body: (ResultRow) throws -> Void) async throws -> ResultsStreamed {
        var streamed = ResultsStreamed(job: job)
        try results.forEachFinished(job: job.id, only: state) { row in
            try body(row)
            streamed.rows += 1
            if row.answer?.simulated == true { streamed.simulated += 1 }
        }
        streamed.unfinished = try jobs.stateCounts(job: job.id).filter { !$0.key.isFinished }.values.reduce(0, +)
        return streamed
    }

    /// Sets a project's cap for `month` (every month when nil): the warning share in force, the held requests it
    /// released, and the cap's use in that month (or this one) when it is already passed.
    public func setBudget(
        _ cap: Money, project: String, month: BudgetMonth?, warnPercent: Int?, now: Int64
    ) async throws -> (warnPercent: Int, released: Int, passed: CapUse?) {
        let (warningAt, released) = try budgets.setBudget(cap, project: project, month: month, warnPercent: warnPercent, now: now)
        let use = try budgets.use(project: project, month: month ?? BudgetMonth(containing: now), simulated: false)
        return (warningAt, released, use.flatMap { $0.used > $0.cap ? $0 : nil })
    }

    /// Removes a project's cap for `month` (the every-month cap when nil): whether it had one, and what it released.
    public func clearBudget(project: String, month: BudgetMonth?) async throws -> (removed: Bool, released: Int) {
        try budgets.clearBudget(project: project, month: month)
    }

    /// Caps a job over its whole life (removes its cap, with nil): the job, and the held requests it released.
    public func capJob(_ reference: String, at cap: Money?, warnPercent: Int?) async throws -> (job: Job, released: Int) {
        let job = try await job(reference)
        return (job, try budgets.setJobCap(cap, job: job.id, warnPercent: warnPercent))
    }

    /// Where the money went in `month` (all time when nil), for one project or job (its number or name) when given,
    /// grouped as asked, from real spending or (`simulated`) the rehearsals' ledger.
    public func report(
        month: BudgetMonth?, project: String?, job reference: String?, grouping: ReportQuery.Grouping, simulated: Bool, now: Int64
    ) async throws -> SpendReport {
        let job = if let reference { try await job(reference).id } else { nil as Int64? }
        return try reports.report(ReportQuery(month: month, project: project, job: job, grouping: grouping, simulated: simulated), now: now)
    }

    /// The caps in force in `month` (only `project`'s, when given) and the budgets set, with what counts against them.
    public func budgetReport(month: BudgetMonth, project: String?) async throws -> BudgetReport {
        let uses = try budgets.capsInForce(month: month, simulated: false).filter { use in
            guard let project else { return true }
            if case .project(project, _) = use.scope { return true } else { return false }
        }
        return BudgetReport(
            month: month, caps: uses, rehearsals: try budgets.hasSimulatedSpending() ? try budgets.capsInForce(month: month, simulated: true) : [],
            budgets: try budgets.budgets().filter { project == nil || $0.project == project },
            unsettled: try budgets.unsettledTotal(simulated: false), held: try jobs.heldCount())
    }
}

/// A job number or name that names no job.
public struct UnknownJob: Error, Sendable {
    public var reference: String

    public init(reference: String) { self.reference = reference }
}

/// A job's custom id that names no request waiting to be served.
public struct NoPlannableRequest: Error, Sendable, CustomStringConvertible {
    public var job: Int64
    public var customID: String

    public var description: String {
        "job \(job) has no request with custom_id \(JSONWriter.quoted(customID)) waiting to be served (running and finished requests are not planned)"
    }
}

/// What `results` streamed of a job.
public struct ResultsStreamed: Sendable {
    public var job: Job
    public var rows = 0
    /// Rows whose answer came from the simulator.
    public var simulated = 0
    /// The job's requests not finished yet.
    public var unfinished = 0
}

/// A job's plan, with the caps over the job.
public struct JobPlan: Sendable {
    public var job: Job
    public var outcome: PlanningOutcome
    /// The project's cap in the plan's month and the job's own, where set.
    public var caps: [CapUse]

    /// The other jobs planned again with it, whose plans no longer fitted.
    public var others: [Int64] { outcome.jobs.filter { $0 != job.id } }
}

/// What `status` shows: per job, and the caps over them.
public struct StatusReport: Sendable {
    public var jobs: [JobStatus]
    /// The caps in force over these jobs, real money.
    public var caps: [CapUse]
    /// The same caps in the rehearsals' ledger, where simulated runs used some.
    public var rehearsals: [CapUse]
}

/// One job as `status` shows it.
public struct JobStatus: Sendable {
    public var job: Job
    public var counts: [RequestState: Int]
    public var estimated: Money
    public var baseline: Money
    public var spent: Money
    /// Results of simulated runs among its results.
    public var simulatedResults: Int
    public var modes: [(mode: String, requests: Int, done: Int)]
    public var batches: [BatchSummary]
    public var unsettled: (calls: Int, amount: Money)
    /// The first lines rejected at submit, when one job was asked for.
    public var rejections: [LineProblem]
}

/// What `budget show` shows.
public struct BudgetReport: Sendable {
    public var month: BudgetMonth
    public var caps: [CapUse]
    public var rehearsals: [CapUse]
    public var budgets: [Budget]
    public var unsettled: (calls: Int, amount: Money)
    /// Requests held by caps, in every job.
    public var held: Int
}
