/// Which jobs to plan, against which tables and providers, and whether to keep the plan.
public struct PlanningRequest: Sendable {
    public var jobs: [Int64]
    public var catalog: PricingCatalog
    public var usableProviders: Set<String>
    public var now: Int64
    /// Store the plan (`purser plan`, `purser run`), or only show it.
    public var save = true
    /// A rehearsal: its input estimates are calibrated from simulated results, a real plan's from real ones.
    public var simulated = false
    public var shouldStop: @Sendable () -> Bool = { false }

    public init(jobs: [Int64], catalog: PricingCatalog, usableProviders: Set<String>, now: Int64) {
        self.jobs = jobs
        self.catalog = catalog
        self.usableProviders = usableProviders
        self.now = now
    }
}

/// A plan made, with what it was made from.
public struct PlanningOutcome: Sendable {
    public var plan: Plan
    public var context: PlanningContext
    public var requests: [PlannableRequest]
    /// The jobs planned: those asked for, and any whose plans no longer fitted.
    public var jobs: [Int64]

    public init(plan: Plan, context: PlanningContext, requests: [PlannableRequest], jobs: [Int64]) {
        self.plan = plan
        self.context = context
        self.requests = requests
        self.jobs = jobs
    }
}
