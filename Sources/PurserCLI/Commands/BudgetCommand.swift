import Foundation
import PurserCore
import PurserSQLite

/// `purser budget set USD | show | clear`: monthly caps per project, and job caps.
enum BudgetCommand {
    static let spec = CommandSpec(
        name: "budget",
        overview: "Set, show or clear spending caps: per project for every month or one month (UTC), or per job.",
        discussion: """
            Before each call Purser reserves its worst case under every cap it falls under; a request whose
            worst case does not fit is held, never failed, until the cap is raised or the month ends.
            A month's own cap replaces the every-month cap for that month. Simulated runs are checked
            against the same caps in a ledger of their own.
            """)

    /// Its options, each declared once: the specs list them and the subcommands read them through these keys.
    enum Options {
        static let project = OptionKey.text("project", value: "name", help: "The project the cap applies to (default: default).")
        static let job = OptionKey.text("job", value: "job", help: "Cap one job (number or name) instead of a project.")
        static let setMonth = OptionKey.text("month", value: "yyyy-mm", help: "Only this month (default: every month).")
        static let warnAt = OptionKey.text("warn-at", value: "percent", help: "Warn when charges and reservations reach this share of the cap (default: 80).")
        static let showProject = OptionKey.text("project", value: "name", help: "Only this project's caps and budgets.")
        static let showMonth = OptionKey.text("month", value: "yyyy-mm", help: "The month to show (default: this one).")
        static let clearMonth = OptionKey.text("month", value: "yyyy-mm", help: "Only this month's own cap (default: the every-month cap).")
    }

    static let setSpec = CommandSpec(
        name: "budget set",
        overview: "Set a cap: a project's for every month or one month (UTC), or a job's over its whole life.",
        arguments: [.init(name: "usd", help: "The cap in US dollars, such as 250 or 12.50.")],
        options: [
            Options.project.option, Options.setMonth.option, Options.job.option, Options.warnAt.option, SharedOptions.database.option,
        ])

    static let showSpec = CommandSpec(
        name: "budget show",
        overview: "Show the caps in force with what is charged, unsettled, reserved and left, and the budgets set.",
        options: [
            Options.showProject.option, Options.showMonth.option, SharedOptions.database.option, SharedOptions.json.option,
        ])

    static let clearSpec = CommandSpec(
        name: "budget clear",
        overview: "Remove a cap, releasing what it held.",
        options: [
            Options.project.option, Options.clearMonth.option, Options.job.option, SharedOptions.database.option,
        ])

    static var subcommand: Subcommand {
        Subcommand(spec: spec, children: [
            Subcommand(spec: setSpec, run: set), Subcommand(spec: showSpec, run: show), Subcommand(spec: clearSpec, run: clear),
        ])
    }

    static func set(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let text = arguments.positionals[0]
        guard case .success(let cap) = RoutingText.usd(.string(text), field: "<usd>") else {
            throw UsageError(message: "<usd>: '\(text)' is not an amount of US dollars, such as 250 or 12.50.", spec: arguments.spec)
        }
        let month = try self.month(arguments, Options.setMonth)
        var warnPercent: Int?
        if let text = arguments[Options.warnAt] {
            guard let value = Int(text.hasSuffix("%") ? String(text.dropLast()) : text), (1...100).contains(value) else {
                throw UsageError(message: "--warn-at: '\(text)' is not a whole percentage from 1 to 100.", spec: arguments.spec)
            }
            warnPercent = value
        }
        let workspace = try context.openDatabase(arguments).workspace
        if let reference = arguments[Options.job] {
            return try await capJob(reference, at: cap, warnPercent: warnPercent, arguments: arguments, month: Options.setMonth, workspace: workspace, context: context)
        }
        let project = arguments[Options.project] ?? "default"
        let (warningAt, released, passed) = try await workspace.setBudget(cap, project: project, month: month, warnPercent: warnPercent, now: context.clock.now())
        context.console.print(
            "project \(project): \(cap.formatted) for \(month.map { "\($0) (UTC)" } ?? "every month (UTC)"), warning at \(warningAt)%"
                + (released > 0 ? "; \(count(released, "held request")) released for the next run" : ""))
        if let use = passed {
            context.console.print("warning: \(use.scopeText) is already passed: \(use.charged.formatted) charged and \(use.reserved.formatted) reserved; new calls will be held")
        }
        return 0
    }

    static func clear(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let workspace = try context.openExistingDatabase(arguments).workspace
        if let reference = arguments[Options.job] {
            return try await capJob(reference, at: nil, warnPercent: nil, arguments: arguments, month: Options.clearMonth, workspace: workspace, context: context)
        }
        let project = arguments[Options.project] ?? "default"
        let month = try self.month(arguments, Options.clearMonth)
        let period = month.map { "\($0)" } ?? "every month"
        let (removed, released) = try await workspace.clearBudget(project: project, month: month)
        guard removed else {
            throw Problem("project \(project) has no budget for \(period); 'purser budget show' lists the budgets")
        }
        context.console.print("project \(project): the cap for \(period) is cleared\(released > 0 ? "; \(count(released, "held request")) released" : "")")
        return 0
    }

    static func show(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let month = try self.month(arguments, Options.showMonth) ?? BudgetMonth(containing: context.clock.now())
        let report = try await context.openDatabaseForReading(arguments).workspace.budgetReport(month: month, project: arguments[Options.showProject])
        if arguments[SharedOptions.json] { context.printJSON(json(report)) } else { render(report, console: context.console) }
        return 0
    }

    static func json(_ report: BudgetReport) -> JSONValue {
        .object(JSONObject([
            "month": .string(report.month.description),
            "caps": .array(report.caps.map { use in
                var members = use.jsonMembers
                if let rehearsal = report.rehearsals.first(where: { $0.scope == use.scope }) {
                    members.append(.init(key: "simulated", value: .object(JSONObject(rehearsal.jsonMembers))))
                }
                return .object(JSONObject(members))
            }),
            "budgets": .array(report.budgets.map { budget in
                .object(JSONObject([
                    "project": .string(budget.project), "month": budget.month.map { .string($0.description) } ?? .null,
                    "cap_usd": budget.cap.jsonUSD, "warn_percent": .number(String(budget.warnPercent)),
                ]))
            }),
        ]))
    }

    static func render(_ report: BudgetReport, console: Console) {
        guard !report.caps.isEmpty || !report.budgets.isEmpty else {
            console.print("No budgets. Set one with: purser budget set 100 (USD, every month, project default)")
            return
        }
        console.print("caps in force for \(report.month) (UTC):")
        // Unsettled calls get a column only when there are any.
        let showUnsettled = report.caps.contains { $0.unsettled > .zero }
        var table = TextTable(
            headers: ["cap", "limit", "charged"] + (showUnsettled ? ["unsettled"] : []) + ["reserved", "left", "used", ""],
            rightAligned: Set(1...(showUnsettled ? 6 : 5)))
        for use in report.caps {
            table.rows.append([use.scopeName, use.cap.formatted, use.charged.formatted] + (showUnsettled ? [use.unsettled.formatted] : []) + [
                use.reserved.formatted, use.left.formatted, percentText(use.usedBasisPoints),
                use.used > use.cap ? "over" : use.isPastWarning ? "past \(use.warnPercent)% warning" : "",
            ])
        }
        console.print(table.render())
        if report.unsettled.calls > 0 { console.print(unsettledLine(calls: report.unsettled.calls, amount: report.unsettled.amount)) }
        for rehearsal in report.rehearsals where rehearsal.used > .zero { console.print(line(rehearsal, simulated: true)) }
        if report.held > 0 { console.print("\(count(report.held, "request")) held by caps; raise a cap with 'purser budget set' to release them") }
        console.print()
        console.print("budgets:")
        for budget in report.budgets {
            console.print("  project \(budget.project): \(budget.cap.formatted) for \(budget.periodText), warning at \(budget.warnPercent)%")
        }
    }

    /// "project default's budget for 2026-11 (UTC): 12.5% used, $1.20 charged + $0.05 reserved of $10.00, $8.75 left".
    static func line(_ use: CapUse, simulated: Bool) -> String {
        "\(use.scopeText)\(use.scope.isProject ? " (UTC)" : "")\(simulated ? ", simulated runs" : ""): \(percentText(use.usedBasisPoints)) used, "
            + "\(use.charged.formatted) charged + " + (use.unsettled > .zero ? "\(use.unsettled.formatted) unsettled + " : "")
            + "\(use.reserved.formatted) reserved of \(use.cap.formatted), \(use.left.formatted) left"
            + (use.used > use.cap ? " (over)" : use.isPastWarning ? " (past the \(use.warnPercent)% warning)" : "")
    }

    /// The month `--month` names (through the subcommand's own key), nil when not given.
    static func month(_ arguments: ParsedArguments, _ key: OptionKey<String?>) throws -> BudgetMonth? {
        guard let text = arguments[key] else { return nil }
        guard let month = BudgetMonth(text) else { throw UsageError(message: "--month: '\(text)' is not a month written YYYY-MM, such as 2026-11.", spec: arguments.spec) }
        return month
    }

    /// `--job`: caps one job over its whole life, or removes its cap (`cap == nil`), releasing what it held.
    static func capJob(
        _ reference: String, at cap: Money?, warnPercent: Int?, arguments: ParsedArguments, month: OptionKey<String?>, workspace: Workspace,
        context: CommandContext
    ) async throws -> Int32 {
        if arguments[Options.project] != nil || arguments[month] != nil {
            throw UsageError(message: "--job caps the job over its whole life; it cannot be combined with --project or --month.", spec: arguments.spec)
        }
        let (job, released) = try await workspace.capJob(reference, at: cap, warnPercent: warnPercent)
        context.console.print(
            "job \(job.id) (\(job.name)) " + (cap.map { "is capped at \($0.formatted)" } ?? "has no cap")
                + (released > 0 ? "; \(count(released, "held request")) released" : ""))
        return 0
    }

    /// Calls that may have been billed with no answer stored, in words (status, report and budget show say it alike).
    static func unsettledLine(calls: Int, amount: Money) -> String {
        "unsettled: \(count(calls, "call")) may have been billed with no answer stored (cut off by a crash or a forced stop, or lines a batch "
            + "did not give back): \(amount.formatted) at the worst case, not in the spending above but counted against the caps"
    }
}
