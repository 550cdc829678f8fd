import Foundation
import PurserCore
import PurserSQLite

/// `purser report`: where the money went, what the routing saved, and what is left of the budgets.
enum ReportCommand {
    /// Its options, each declared once: the spec lists them and the command reads them through these keys.
    enum Options {
        static let month = OptionKey.text("month", value: "yyyy-mm", help: "The month to report, UTC, or 'all' (default: this month; with --job or --by month, all time).")
        static let project = OptionKey.text("project", value: "name", help: "Only this project.")
        static let job = OptionKey.text("job", value: "job", help: "Only this job (number or name).")
        static let output = OptionKey.text("output", value: "file", help: "Write the report here instead of standard output.")
        static let simulated = OptionKey.flag("simulated", help: "Report the simulated runs (rehearsals) instead of real spending.")
        static let by = OptionKey.choice("by", value: "grouping", of: ReportQuery.Grouping.self, default: .model, help: "How to group the lines (mode means sync, flex, offpeak or batch)")
        static let format = OptionKey.choice("format", value: "format", of: Format.self, default: .table, help: "The report's format (html: one self-contained page with charts)")
    }

    static let spec = CommandSpec(
        name: "report",
        overview: "Report spending: requests, tokens, cost, share and savings by model, provider, project, job, day, month, tier or mode, with budgets and a forecast.",
        options: [
            Options.month.option,
            Options.project.option,
            Options.job.option,
            Options.by.option,
            Options.format.option,
            Options.output.option,
            Options.simulated.option,
            SharedOptions.database.option, SharedOptions.json.option,
        ])

    enum Format: String, CaseIterable { case table, json, csv, html }

    static func run(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let format = arguments[SharedOptions.json] ? .json : (try arguments[Options.format])!
        let grouping = (try arguments[Options.by])!
        let now = context.clock.now()
        // Across months unless one is asked for: a job's whole life, or every month side by side.
        var month: BudgetMonth? = arguments[Options.job] == nil && grouping != .month ? BudgetMonth(containing: now) : nil
        if let text = arguments[Options.month] {
            if text == "all" {
                month = nil
            } else {
                guard let parsed = BudgetMonth(text) else {
                    throw UsageError(message: "--month: '\(text)' is not a month written YYYY-MM, such as 2026-11, or 'all'.", spec: spec)
                }
                month = parsed
            }
        }
        let report = try await context.openDatabaseForReading(arguments).workspace.report(
            month: month, project: arguments[Options.project], job: arguments[Options.job], grouping: grouping, simulated: arguments[Options.simulated],
            now: now)
        let text: String
        switch format {
        case .table: text = table(report)
        case .json: text = JSONWriter.string(report.json(), pretty: true) + "\n"
        case .csv: text = report.csv()
        case .html: text = HTMLReport.page(report)
        }
        if let path = arguments[Options.output] {
            guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
                throw Problem("--output: cannot write \(path); check that its folder exists and is writable")
            }
            context.console.error("report written to \(path) (\(count(report.lines.count, "line")), total \(report.total.cost.formatted)\(report.query.simulated ? ", simulated" : ""))")
        } else {
            context.console.print(text.trimmingTrailingNewline())
        }
        return 0
    }

    static func table(_ report: SpendReport) -> String {
        let query = report.query
        var scope = [query.project.map { "project \($0)" }, query.job.map { "job \($0)" }].compactMap { $0 }.joined(separator: ", ")
        if scope.isEmpty { scope = "every project" }
        var out = "spend report: \(report.periodText), \(scope), by \(query.grouping.rawValue)"
            + (query.simulated ? " (simulated runs: no provider was called or charged)" : "") + "\n\n"
        if report.lines.isEmpty {
            out += "Nothing was \(query.simulated ? "spent in simulated runs" : "billed") in this period."
            if report.otherLedgerResults > 0 {
                out += " \(count(Int(report.otherLedgerResults), "\(query.simulated ? "real" : "simulated") result")) are: "
                    + (query.simulated ? "drop --simulated to see them." : "add --simulated to see them.")
            }
            out += "\n"
        } else {
            let display = ReportDisplay(report)
            var table = TextTable(
                headers: [query.grouping.rawValue, "requests", "input tokens", "cached", "output tokens", "cost", "share", "baseline", "savings"],
                rightAligned: Set(1...8))
            for row in display.rows + [display.total] {
                table.rows.append([row.key, row.requests, row.inputTokens, row.cachedTokens, row.outputTokens, row.cost, row.share, row.baseline, row.savings])
            }
            out += table.render() + "\n"
            out += "\namounts rounded to \(display.decimals) places so that lines add up to the total; --format json or csv gives them exactly\n"
            if report.total.baseline.picoUSD > 0 {
                out += "saved \(report.total.savings.formatted) (\(percentText(report.total.savings.basisPoints(of: report.total.baseline) ?? 0))) against every request on its reference model at list price\n"
                if report.total.cacheSaving != .zero {
                    out += "of which prompt caching saved \(report.total.cacheSaving.formatted): \(grouped(report.total.cachedTokens)) tokens read from the providers' caches, \(grouped(report.total.cacheWriteTokens)) written\n"
                }
            }
            if report.unsettled.calls > 0 { out += BudgetCommand.unsettledLine(calls: report.unsettled.calls, amount: report.unsettled.amount) + "\n" }
        }
        out += calibrationTable(report.inputCalibration)
        if !report.caps.isEmpty || report.forecast != nil { out += "\n" }
        for cap in report.caps { out += BudgetCommand.line(cap, simulated: query.simulated) + "\n" }
        if report.caps.isEmpty, let month = query.month {
            out += "budget: none in force for \(query.project.map { "project \($0)" } ?? "any project") in \(month); 'purser budget set USD' sets one\n"
        }
        if let forecast = report.forecast, let month = query.month {
            out += forecast.elapsedBasisPoints >= 10_000
                ? "\(month) is over: \(forecast.atMonthEnd.formatted) spent\n"
                : "forecast: \(forecast.atMonthEnd.formatted) by the end of \(month) at the pace so far (\(forecast.basisText))"
                    + forecastAgainstCaps(report) + "\n"
        }
        return out
    }

    /// Input estimates against what each provider counted, and the scale plans use for it.
    static func calibrationTable(_ calibration: InputCalibration) -> String {
        guard !calibration.byProvider.isEmpty else { return "" }
        func ratio(_ basisPoints: Int64) -> String {
            let hundredths = (basisPoints + 50) / 100
            return "\(hundredths / 100)." + (hundredths % 100 < 10 ? "0" : "") + "\(hundredths % 100)×"
        }
        var table = TextTable(headers: ["provider", "results", "estimated input", "reported input", "reported/estimated", "plans use"], rightAligned: Set(1...5))
        for (provider, family) in calibration.byProvider.sorted(by: { $0.key < $1.key }) {
            let applied = calibration.scaleBasisPoints(provider: provider)
            let enough = family.results >= InputCalibration.minimumSamples
            table.rows.append([
                provider, String(family.results), String(family.estimatedTokens), String(family.reportedTokens), ratio(family.scaleBasisPoints),
                enough ? ratio(applied) : "1.00× (under \(InputCalibration.minimumSamples))",
            ])
        }
        return "\ninput tokens, Purser's estimates against the providers' counts (all results of this ledger):\n" + table.render() + "\n"
    }

    /// " — within every cap", or which project budget the forecast passes.
    static func forecastAgainstCaps(_ report: SpendReport) -> String {
        guard let forecast = report.forecast else { return "" }
        let projectCaps = report.caps.filter(\.scope.isProject)
        guard !projectCaps.isEmpty, report.query.project != nil || projectCaps.count == 1 else { return "" }
        let cap = projectCaps[0]
        return forecast.atMonthEnd > cap.cap ? "; that passes the \(cap.cap.formatted) cap, so requests will be held before the month ends" : "; within the \(cap.cap.formatted) cap"
    }
}
