/// A project's cap for one month, or for every month that has no cap of its own (`month == nil`).
public struct Budget: Sendable, Hashable {
    public var project: String
    public var month: BudgetMonth?
    public var cap: Money
    /// Warn once charges and reservations reach this share of the cap.
    public var warnPercent: Int
    public var setAt: Int64

    public var periodText: String { month?.description ?? "every month" }

    package init(project: String, month: BudgetMonth? = nil, cap: Money, warnPercent: Int, setAt: Int64) {
        self.project = project
        self.month = month
        self.cap = cap
        self.warnPercent = warnPercent
        self.setAt = setAt
    }
}

/// One cap and what counts against it right now.
public struct CapUse: Sendable, Hashable {
    public enum Scope: Sendable, Hashable {
        case project(String, BudgetMonth)
        case job(Int64, name: String)

        public var isProject: Bool { if case .project = self { true } else { false } }
    }

    public var scope: Scope
    public var cap: Money
    public var warnPercent: Int
    public var charged: Money
    /// Calls cut off by a crash or a forced stop that the provider may have billed, at their worst case.
    public var unsettled: Money = .zero
    public var reserved: Money

    /// What is spent for certain or may be: charges and unsettled calls. New calls must fit beside this.
    public var spent: Money { charged + unsettled }
    public var used: Money { charged + unsettled + reserved }
    public var left: Money { cap - used }
    /// Charges and reservations as a share of the cap, in basis points (a zero cap counts as full).
    public var usedBasisPoints: Int64 { used.basisPoints(of: cap) ?? 10_000 }
    public var isPastWarning: Bool { usedBasisPoints >= Int64(warnPercent) * 100 }

    /// Whether this cap counts the job's spending.
    public func applies(to job: Job) -> Bool {
        switch scope {
        case .project(let project, _): project == job.project
        case .job(let id, _): id == job.id
        }
    }

    /// "project default", "job 3 (quickstart)".
    public var scopeName: String {
        switch scope {
        case .project(let project, _): "project \(project)"
        case .job(let id, let name): "job \(id) (\(name))"
        }
    }

    /// "project default's budget for 2026-11", "job 3 (quickstart)'s cap".
    public var scopeText: String {
        switch scope {
        case .project(_, let month): "\(scopeName)'s budget for \(month)"
        case .job: "\(scopeName)'s cap"
        }
    }

    package init(
        scope: Scope, cap: Money, warnPercent: Int, charged: Money, unsettled: Money = .zero, reserved: Money
    ) {
        self.scope = scope
        self.cap = cap
        self.warnPercent = warnPercent
        self.charged = charged
        self.unsettled = unsettled
        self.reserved = reserved
    }
}

/// Charges gathered from a batch of results, to be added to the ledger's running totals at once.
package struct ChargeTotals {
    package struct ProjectMonth: Hashable {
        package var project: String
        package var month: BudgetMonth
        package var simulated: Bool

        package init(project: String, month: BudgetMonth, simulated: Bool) {
            self.project = project
            self.month = month
            self.simulated = simulated
        }
    }

    package struct JobKey: Hashable {
        package var job: Int64
        package var simulated: Bool

        package init(job: Int64, simulated: Bool) {
            self.job = job
            self.simulated = simulated
        }
    }

    package var byProjectMonth: [ProjectMonth: Money] = [:]
    package var byJob: [JobKey: Money] = [:]

    package mutating func add(_ cost: Money, job: Int64, project: String, month: BudgetMonth, simulated: Bool) {
        byProjectMonth[ProjectMonth(project: project, month: month, simulated: simulated), default: .zero] += cost
        byJob[JobKey(job: job, simulated: simulated), default: .zero] += cost
    }

    package init(byProjectMonth: [ProjectMonth: Money] = [:], byJob: [JobKey: Money] = [:]) {
        self.byProjectMonth = byProjectMonth
        self.byJob = byJob
    }
}
