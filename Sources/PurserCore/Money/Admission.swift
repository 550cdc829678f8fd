/// Decides which requests may be called now: a request's worst case is reserved only if it fits under every cap it
/// falls under (its project's month and its job), beside what is already charged and reserved. It decides over the cap
/// uses it is given and nothing else; the store reads them and decides inside one atomic claim (in SQLite a
/// `BEGIN IMMEDIATE` transaction), so no two workers or processes can admit against the same room. The rule is written
/// here once; each backend owns its isolation.
public struct Admission: Sendable {
    public enum Decision: Sendable {
        case reserve
        /// Fits once the calls in flight settle (their charges usually come well under their reservations).
        case wait
        /// Does not fit even with nothing in flight: held until a cap is raised, or `until` (the month's end). The cap
        /// is the reason's (`reason.use`).
        case hold(reason: HoldReason, until: Int64?)
    }

    public let month: BudgetMonth
    public let simulated: Bool
    /// The caps of every project and job the claim may admit for (nil: that project or job has none), with this
    /// claim's reservations added as it makes them.
    private var projectUses: [String: CapUse?]
    private var jobUses: [Int64: CapUse?]

    /// `projectUses` and `jobUses` name every project and job that `decide` will be asked about, each with its cap's
    /// use or nil when it has no cap.
    public init(month: BudgetMonth, simulated: Bool, projectUses: [String: CapUse?], jobUses: [Int64: CapUse?]) {
        self.month = month
        self.simulated = simulated
        self.projectUses = projectUses
        self.jobUses = jobUses
    }

    public mutating func decide(amount: Money, job: Int64, project: String) throws -> Decision {
        guard let projectUse = projectUses[project], let jobUse = jobUses[job] else {
            throw Problem("admission was not given the caps of project \(project) and job \(job); nothing was reserved")
        }
        let uses = [projectUse, jobUse].compactMap { $0 }
        if let full = uses.first(where: { $0.spent + amount > $0.cap }) {
            let until: Int64? = if case .project = full.scope { month.end } else { nil }
            return .hold(reason: HoldReason(use: full, amount: amount, simulated: simulated, waitFor: until == nil ? nil : month.next), until: until)
        }
        if uses.contains(where: { $0.used + amount > $0.cap }) { return .wait }
        // `.some`: a project or job without a cap stays known as one (a bare nil would remove it).
        projectUses[project] = .some(projectUse.map { use in var use = use; use.reserved += amount; return use })
        jobUses[job] = .some(jobUse.map { use in var use = use; use.reserved += amount; return use })
        return .reserve
    }

    /// The caps this claim looked at, with its own reservations added.
    public var uses: [CapUse] { (Array(projectUses.values) + Array(jobUses.values)).compactMap { $0 } }
}

/// Why a request is held by a cap: the cap's use when it was held and the call's worst case. What to do about it
/// (raise the cap, wait for the next month) is the front end's to say; `stored` is the text kept on the request.
public struct HoldReason: Sendable, Hashable {
    public var use: CapUse
    public var amount: Money
    public var simulated: Bool
    /// The month whose start ends the hold, for a project's monthly cap.
    public var waitFor: BudgetMonth?

    /// The request's `last_error`: what held it, in figures, without advice naming a command.
    public var stored: String {
        "held: \(use.scopeText) is \(use.cap.formatted) with \(use.charged.formatted) charged"
            + (use.unsettled > .zero ? " and \(use.unsettled.formatted) unsettled" : "") + " (\(simulated ? "simulated" : "real")), "
            + "and this call could cost up to \(amount.formatted)"
    }
}
