/// The jobs and what their requests are doing, as the front ends show them.
public protocol JobBook {
    func jobs() throws -> [Job]
    /// A job by its number or name.
    func job(reference: String) throws -> Job?
    func stateCounts(job: Int64) throws -> [RequestState: Int]
    func modeCounts(job: Int64) throws -> [(mode: String, requests: Int, done: Int)]
    func openBatches(job: Int64) throws -> [BatchSummary]
    /// The estimate and the baseline of the job's plan.
    func planTotals(job: Int64) throws -> (estimated: Money, baseline: Money)
    /// The first `limit` lines rejected at submit.
    func rejections(job: Int64, limit: Int) throws -> [LineProblem]
    /// Requests held by caps, in every job.
    func heldCount() throws -> Int
}

/// The budgets and the ledger against them, as the front ends show them.
public protocol BudgetBook {
    func budgets() throws -> [Budget]
    /// Every cap in force in `month`, with what counts against it.
    func capsInForce(month: BudgetMonth, simulated: Bool) throws -> [CapUse]
    func hasSimulatedSpending() throws -> Bool
    /// A project's cap in `month` with what counts against it; nil when it has none.
    func use(project: String, month: BudgetMonth, simulated: Bool) throws -> CapUse?
    /// A job's cap with what counts against it; nil when it has none.
    func use(job: Int64, simulated: Bool) throws -> CapUse?
    /// Sets a project's cap for one month or every month (`month` nil): the warning share in force, and how many
    /// held requests it released.
    func setBudget(_ cap: Money, project: String, month: BudgetMonth?, warnPercent: Int?, now: Int64) throws -> (warnPercent: Int, released: Int)
    /// Removes a project's cap: whether there was one, and how many held requests it released.
    func clearBudget(project: String, month: BudgetMonth?) throws -> (removed: Bool, released: Int)
    /// Sets (or, with nil, removes) a job's cap; how many held requests it released.
    func setJobCap(_ cap: Money?, job: Int64, warnPercent: Int?) throws -> Int
    /// Calls cut off that the provider may have billed: how many and their worst case.
    func unsettled(job: Int64, simulated: Bool) throws -> (calls: Int, amount: Money)
    func unsettledTotal(simulated: Bool) throws -> (calls: Int, amount: Money)
}

/// Planning a job on demand (`plan`, `plan --explain`), beside what the other plans hold.
public protocol PlanningBook {
    /// Plans the requests of `request.jobs` not started (and any job whose plan no longer fits), keeping the plan
    /// when `request.save`.
    func plan(_ request: PlanningRequest) throws -> PlanningOutcome
    /// The id of the job's request with this custom id that is waiting to be served, if any.
    func plannableRequestID(job: Int64, customID: String) throws -> Int64?
}

/// Where the money went: spending grouped as a query asks.
public protocol ReportBook {
    func report(_ query: ReportQuery, now: Int64) throws -> SpendReport
}

/// The results of jobs: what they spent, each finished request streamed in line order, and changes to what is left.
public protocol ResultBook {
    func spend(job: Int64) throws -> (cost: Money, simulated: Int)
    func forEachFinished(job: Int64, only: RequestState?, _ body: (ResultRow) throws -> Void) throws
    func cancel(job: Int64) throws -> (cancelled: Int, running: Int, inBatches: Int)
    func retry(job: Int64, onlyFailed: Bool) throws -> Int
}

/// A batch holding requests of a job, as `status` shows it.
public struct BatchSummary: Sendable {
    public var id: Int64
    public var provider: String
    public var model: String
    public var state: String
    public var providerStatus: String?
    public var providerBatchID: String?
    public var requests: Int
    public var submittedAt: Int64?
    public var lastError: String?

    public init(
        id: Int64, provider: String, model: String, state: String, providerStatus: String? = nil,
        providerBatchID: String? = nil, requests: Int, submittedAt: Int64? = nil, lastError: String? = nil
    ) {
        self.id = id
        self.provider = provider
        self.model = model
        self.state = state
        self.providerStatus = providerStatus
        self.providerBatchID = providerBatchID
        self.requests = requests
        self.submittedAt = submittedAt
        self.lastError = lastError
    }
}
