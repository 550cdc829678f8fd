/// Decides, inside a claim's transaction, which requests may be called now: a request's worst case is
/// reserved only if it fits under every cap it falls under (its project's month and its job), beside
/// what is already charged and reserved. Because claims run in `BEGIN IMMEDIATE` transactions, no two
/// workers or processes can admit against the same room.
struct Admission {
    enum Decision {
        case reserve
        /// Fits once the calls in flight settle (their charges usually come well under their reservations).
        case wait
        /// Does not fit even with nothing in flight: held until a cap is raised, or `until` (the month's end).
        case hold(cap: String, reason: String, until: Int64?)
    }

    let ledger: Ledger
    let month: BudgetMonth
    let simulated: Bool
    /// Caps looked up so far in this claim (nil: that project or job has none).
    private var projectUses: [String: CapUse?] = [:]
    private var jobUses: [Int64: CapUse?] = [:]

    init(ledger: Ledger, month: BudgetMonth, simulated: Bool) {
        self.ledger = ledger
        self.month = month
        self.simulated = simulated
    }

    mutating func decide(amount: Money, job: Int64, project: String) throws -> Decision {
        let projectUse = try projectUses[project] ?? ledger.use(project: project, month: month, simulated: simulated)
        let jobUse = try jobUses[job] ?? ledger.use(job: job, simulated: simulated)
        projectUses[project] = .some(projectUse)
        jobUses[job] = .some(jobUse)
        let uses = [projectUse, jobUse].compactMap { $0 }
        if let full = uses.first(where: { $0.spent + amount > $0.cap }) {
            let until: Int64? = if case .project = full.scope { month.end } else { nil }
            let after = until == nil ? "" : ", or wait for \(month.next)"
            return .hold(
                cap: full.scopeText,
                reason: "held: \(full.scopeText) is \(full.cap.formatted) with \(full.charged.formatted) charged"
                    + (full.unsettled > .zero ? " and \(full.unsettled.formatted) unsettled" : "") + " (\(simulated ? "simulated" : "real")), "
                    + "and this call could cost up to \(amount.formatted); raise the cap with 'purser budget set'\(after)",
                until: until)
        }
        if uses.contains(where: { $0.used + amount > $0.cap }) { return .wait }
        projectUses[project] = projectUse.map { use in var use = use; use.reserved += amount; return use }
        jobUses[job] = jobUse.map { use in var use = use; use.reserved += amount; return use }
        return .reserve
    }

    /// The caps this claim looked at, with its own reservations added.
    var uses: [CapUse] { (Array(projectUses.values) + Array(jobUses.values)).compactMap { $0 } }
}
