import Foundation
import PurserCore
import SQLiteStore

/// The budgets and the ledger against them: caps per project and month and per job, the
/// reservations held for calls in flight, and the running totals of charges.
///
/// Real and simulated money are kept apart: a rehearsal with `--simulate` is checked against the
/// same caps, so it shows where they would bite, without spending the real budget.
public struct Ledger {
    public static let defaultWarnPercent = 80
    static let everyMonth = "*"

    let database: Database

    public init(database: Database) { self.database = database }

    // MARK: - Budgets

    /// Sets a project's cap for `month` (nil: every month) and releases the project's held requests,
    /// so that the next run looks at them again. Returns the warning share in force and how many were released.
    /// A budget set again keeps its warning share unless `warnPercent` gives a new one.
    public func setBudget(_ cap: Money, project: String, month: BudgetMonth?, warnPercent: Int?, now: Int64) throws -> (warnPercent: Int, released: Int) {
        try database.writeTransaction {
            let inForce = try database.statement("""
                INSERT INTO budgets (project, month, cap_pico, warn_percent, set_at) VALUES (?1, ?2, ?3, coalesce(?4, ?6), ?5)
                ON CONFLICT (project, month) DO UPDATE SET cap_pico = ?3, warn_percent = coalesce(?4, warn_percent), set_at = ?5
                RETURNING warn_percent
                """).firstRow([
                .text(project), .text(month?.description ?? Ledger.everyMonth), .integer(cap.picoUSD), warnPercent.map { .int($0) } ?? .null,
                .integer(now), .int(Ledger.defaultWarnPercent),
            ]) { $0.int(0) }
            return (inForce ?? Ledger.defaultWarnPercent, try releaseHeld(project: project))
        }
    }

    /// Removes a project's cap for `month` (nil: the every-month cap). Returns whether there was one and how many held requests were released.
    public func clearBudget(project: String, month: BudgetMonth?) throws -> (removed: Bool, released: Int) {
        try database.writeTransaction {
            try database.statement("DELETE FROM budgets WHERE project = ? AND month = ?")
                .execute([.text(project), .text(month?.description ?? Ledger.everyMonth)])
            let removed = database.changes == 1
            return (removed, removed ? try releaseHeld(project: project) : 0)
        }
    }

    /// Sets or removes (`cap == nil`) a job's cap, releasing its held requests.
    public func setJobCap(_ cap: Money?, job: Int64, warnPercent: Int?) throws -> Int {
        try database.writeTransaction {
            try database.statement("UPDATE jobs SET max_cost_pico = ?, warn_percent = coalesce(?, warn_percent) WHERE id = ?")
                .execute([.optionalInt64(cap?.picoUSD), warnPercent.map { .int($0) } ?? .null, .integer(job)])
            return try RequestLifecycle(database: database).releaseHeld(job: job)
        }
    }

    private func releaseHeld(project: String) throws -> Int { try RequestLifecycle(database: database).releaseHeld(project: project) }

    /// Every budget, by project, the every-month cap first, then by month.
    public func budgets() throws -> [Budget] {
        try database.statement("""
            SELECT project, month, cap_pico, warn_percent, set_at FROM budgets ORDER BY project, month = '*' DESC, month
            """).rows([], Ledger.budget(from:))
    }

    /// The cap in force for `project` in `month`: that month's own, else the every-month cap, else none.
    public func budget(project: String, month: BudgetMonth) throws -> Budget? {
        try database.statement("""
            SELECT project, month, cap_pico, warn_percent, set_at FROM budgets WHERE project = ? AND month IN (?, '*')
            ORDER BY month = '*' LIMIT 1
            """).firstRow([.text(project), .text(month.description)], Ledger.budget(from:))
    }

    /// A `budgets` row read as `project, month, cap_pico, warn_percent, set_at`.
    private static func budget(from row: Row) -> Budget {
        Budget(
            project: row.text(0), month: BudgetMonth(row.text(1)), cap: Money(picoUSD: row.int64(2)), warnPercent: row.int(3), setAt: row.int64(4))
    }

    // MARK: - What counts against a cap

    /// Charges, unsettled calls and reservations of `project` in `month`, in the real or the simulated ledger.
    public func spending(project: String, month: BudgetMonth, simulated: Bool) throws -> (charged: Money, unsettled: Money, reserved: Money) {
        let values: [SQLiteValue] = [.text(project), .text(month.description), .int(simulated ? 1 : 0)]
        let charged = try database.scalarInt("SELECT charged_pico FROM monthly_charges WHERE project = ? AND month = ? AND simulated = ?", values) ?? 0
        let unsettled = try database.scalarInt(
            "SELECT coalesce(sum(amount_pico), 0) FROM unsettled_charges WHERE project = ? AND month = ? AND simulated = ?", values) ?? 0
        let reserved = try database.scalarInt(
            "SELECT coalesce(sum(amount_pico), 0) FROM reservations WHERE project = ? AND month = ? AND simulated = ?", values) ?? 0
        return (Money(picoUSD: charged), Money(picoUSD: unsettled), Money(picoUSD: reserved))
    }

    /// Charges, unsettled calls and reservations of one job, in the real or the simulated ledger.
    public func spending(job: Int64, simulated: Bool) throws -> (charged: Money, unsettled: Money, reserved: Money) {
        let values: [SQLiteValue] = [.integer(job), .int(simulated ? 1 : 0)]
        let charged = try database.scalarInt("SELECT charged_pico FROM job_charges WHERE job_id = ? AND simulated = ?", values) ?? 0
        let unsettled = try database.scalarInt(
            "SELECT coalesce(sum(amount_pico), 0) FROM unsettled_charges WHERE job_id = ? AND simulated = ?", values) ?? 0
        let reserved = try database.scalarInt("SELECT coalesce(sum(amount_pico), 0) FROM reservations WHERE job_id = ? AND simulated = ?", values) ?? 0
        return (Money(picoUSD: charged), Money(picoUSD: unsettled), Money(picoUSD: reserved))
    }

    // MARK: - Calls that may have been billed

    /// The reservations of requests whose calls were cut off become unsettled charges: the provider may have
    /// billed them, so they keep counting against their caps at the worst case.
    func unsettle(requests: [Int64], now: Int64) throws {
        guard !requests.isEmpty else { return }
        let ids = SQLiteValue.text(PlanStore.idList(requests))
        try database.statement("""
            INSERT INTO unsettled_charges (request_id, job_id, project, month, simulated, amount_pico, reserved_at, lapsed_at, owner)
            SELECT request_id, job_id, project, month, simulated, amount_pico, reserved_at, ?, owner FROM reservations
            WHERE request_id IN (SELECT value FROM json_each(?))
            """).execute([.integer(now), ids])
        try dropReservations(requests: requests)
    }

    /// The reservations of requests claimed and never called are dropped: nothing can have been billed for them.
    func dropReservations(requests: [Int64]) throws {
        guard !requests.isEmpty else { return }
        try database.statement("DELETE FROM reservations WHERE request_id IN (SELECT value FROM json_each(?))")
            .execute([.text(PlanStore.idList(requests))])
    }

    /// A request's unsettled calls are settled when an answer for it is stored: its real charge replaces them.
    func settle(request: Int64) throws {
        try database.statement("DELETE FROM unsettled_charges WHERE request_id = ?").execute([.integer(request)])
    }

    /// One job's unsettled calls and their worst case, in the real or the simulated ledger.
    public func unsettled(job: Int64, simulated: Bool) throws -> (calls: Int, amount: Money) {
        try database.statement("SELECT count(*), coalesce(sum(amount_pico), 0) FROM unsettled_charges WHERE job_id = ? AND simulated = ?")
            .firstRow([.integer(job), .int(simulated ? 1 : 0)]) { ($0.int(0), Money(picoUSD: $0.int64(1))) } ?? (0, .zero)
    }

    /// Unsettled charges in every ledger and month, for `budget show` and reports.
    public func unsettledTotal(simulated: Bool) throws -> (calls: Int, amount: Money) {
        try database.statement("SELECT count(*), coalesce(sum(amount_pico), 0) FROM unsettled_charges WHERE simulated = ?")
            .firstRow([.int(simulated ? 1 : 0)]) { ($0.int(0), Money(picoUSD: $0.int64(1))) } ?? (0, .zero)
    }

    /// The project's cap for `month` with what counts against it, or nil when it has none.
    public func use(project: String, month: BudgetMonth, simulated: Bool) throws -> CapUse? {
        guard let budget = try budget(project: project, month: month) else { return nil }
        let spending = try spending(project: project, month: month, simulated: simulated)
        return CapUse(
            scope: .project(project, month), cap: budget.cap, warnPercent: budget.warnPercent, charged: spending.charged,
            unsettled: spending.unsettled, reserved: spending.reserved)
    }

    /// The job's cap with what counts against it, or nil when it has none.
    public func use(job: Int64, simulated: Bool) throws -> CapUse? {
        guard let (name, cap, warnPercent) = try database.statement("SELECT name, max_cost_pico, warn_percent FROM jobs WHERE id = ? AND max_cost_pico IS NOT NULL")
            .firstRow([.integer(job)], { ($0.text(0), $0.int64(1), $0.int(2)) })
        else { return nil }
        let spending = try spending(job: job, simulated: simulated)
        return CapUse(
            scope: .job(job, name: name), cap: Money(picoUSD: cap), warnPercent: warnPercent, charged: spending.charged,
            unsettled: spending.unsettled, reserved: spending.reserved)
    }

    /// An admission over the caps of these projects (in `month`) and jobs, with what counts against them now.
    func admission(for owners: [(project: String, job: Int64)], month: BudgetMonth, simulated: Bool) throws -> Admission {
        var projectUses: [String: CapUse?] = [:], jobUses: [Int64: CapUse?] = [:]
        for (project, job) in owners {
            if projectUses[project] == nil { projectUses[project] = .some(try use(project: project, month: month, simulated: simulated)) }
            if jobUses[job] == nil { jobUses[job] = .some(try use(job: job, simulated: simulated)) }
        }
        return Admission(month: month, simulated: simulated, projectUses: projectUses, jobUses: jobUses)
    }

    /// Every cap in force in `month` with what counts against it: each project's budget, then each job cap.
    public func capsInForce(month: BudgetMonth, simulated: Bool) throws -> [CapUse] {
        let projects = try database.statement("SELECT DISTINCT project FROM budgets ORDER BY project").rows { $0.text(0) }
        let jobs = try database.statement("SELECT id FROM jobs WHERE max_cost_pico IS NOT NULL ORDER BY id").rows { $0.int64(0) }
        return try projects.compactMap { try use(project: $0, month: month, simulated: simulated) }
            + jobs.compactMap { try use(job: $0, simulated: simulated) }
    }

    /// Whether any simulated money was charged or reserved, so displays can show the rehearsal ledger beside the real one.
    public func hasSimulatedSpending() throws -> Bool {
        try database.scalarInt("SELECT EXISTS (SELECT 1 FROM job_charges WHERE simulated = 1) OR EXISTS (SELECT 1 FROM reservations WHERE simulated = 1)") == 1
    }

    // MARK: - Charges

    /// Adds results' costs to the running totals of their projects' months and their jobs. Called in the
    /// transaction that writes the results.
    func add(_ charges: ChargeTotals) throws {
        let monthly = try database.statement("""
            INSERT INTO monthly_charges (project, month, simulated, charged_pico) VALUES (?1, ?2, ?3, ?4)
            ON CONFLICT (project, month, simulated) DO UPDATE SET charged_pico = charged_pico + ?4
            """)
        for (key, amount) in charges.byProjectMonth {
            try monthly.execute([.text(key.project), .text(key.month.description), .int(key.simulated ? 1 : 0), .integer(amount.picoUSD)])
        }
        let byJob = try database.statement("""
            INSERT INTO job_charges (job_id, simulated, charged_pico) VALUES (?1, ?2, ?3)
            ON CONFLICT (job_id, simulated) DO UPDATE SET charged_pico = charged_pico + ?3
            """)
        for (key, amount) in charges.byJob {
            try byJob.execute([.integer(key.job), .int(key.simulated ? 1 : 0), .integer(amount.picoUSD)])
        }
    }
}
