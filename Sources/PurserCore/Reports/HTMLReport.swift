import Foundation

/// A report as one self-contained HTML page: inline CSS and SVG, no scripts, nothing fetched, so it
/// opens the same in any browser, offline, or attached to an email.
public enum HTMLReport {
    public static func page(_ report: SpendReport) -> String {
        let display = ReportDisplay(report)
        let title = "Purser spend report: \(report.periodText)"
        var scope: [String] = []
        if let project = report.query.project { scope.append("project \(project)") }
        if let job = report.query.job { scope.append("job \(job)") }
        // One line per capped project: caps of different projects are not one budget.
        let budgets: [(project: String, cap: Money)] = report.caps.compactMap { use in
            if case .project(let project, _) = use.scope { (project, use.cap) } else { nil }
        }
        var html = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title))</title>
            <style>
            body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; margin: 2rem auto; max-width: 980px; padding: 0 1rem; }
            h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
            .muted { color: #5b6475; } .banner { background: #fff4d6; border: 1px solid #e7c76b; padding: .5rem .8rem; border-radius: 6px; }
            .tiles { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1.2rem 0; }
            .tile { border: 1px solid #d9dee8; border-radius: 8px; padding: .6rem .9rem; min-width: 150px; }
            .tile b { display: block; font-size: 1.25rem; }
            table { border-collapse: collapse; width: 100%; } th, td { padding: .35rem .5rem; border-bottom: 1px solid #e5e8ef; }
            th { text-align: left; font-weight: 600; } td:first-child { white-space: nowrap; } td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
            tr.total td { font-weight: 700; border-top: 2px solid #1d2330; }
            svg text { font: 11px system-ui, sans-serif; fill: #5b6475; }
            </style>
            </head>
            <body>
            <h1>\(escape(title))</h1>
            <p class="muted">\(escape(scope.isEmpty ? "every project" : scope.joined(separator: ", "))) · by \(report.query.grouping.rawValue) · generated \(Date(timeIntervalSince1970: Double(report.generatedAt / 1000)).formatted(.iso8601))</p>

            """
        if report.query.simulated {
            html += "<p class=\"banner\">Simulated runs: no provider was called or charged. These figures rehearse a job's costs.</p>\n"
        }
        if report.lines.isEmpty {
            // An empty page says why, and where the spending is when it is in the other ledger.
            let other = report.otherLedgerResults > 0
                ? " \(report.otherLedgerResults) \(report.query.simulated ? "real" : "simulated") result\(report.otherLedgerResults == 1 ? " is" : "s are") in this scope: "
                    + (report.query.simulated ? "report without --simulated to see them." : "report with --simulated to see them.")
                : ""
            html += "<p class=\"banner\">Nothing was \(report.query.simulated ? "spent in simulated runs" : "billed") in this period.\(escape(other))</p>\n"
        }
        html += "<div class=\"tiles\">\n"
        html += tile("Spent", display.total.cost, note: "\(display.total.requests) requests")
        html += tile("Baseline", display.total.baseline, note: "every request on its reference model")
        html += tile("Saved", display.total.savings, note: report.total.baseline.picoUSD > 0
            ? percentText(report.total.savings.basisPoints(of: report.total.baseline) ?? 0) + " of the baseline" : "")
        for cap in report.caps {
            html += tile("Left: \(cap.scopeText)", cap.left.formatted, note: "\(percentText(cap.usedBasisPoints)) of \(cap.cap.formatted) used")
        }
        if let forecast = report.forecast {
            html += tile("Forecast at month end", forecast.atMonthEnd.formatted, note: "at the pace so far: \(forecast.basisText)")
        }
        html += "</div>\n"
        if report.query.month != nil {
            html += "<h2>Daily spend against the budget</h2>\n" + dailyChart(report, budgets: budgets)
        }
        // Grouped by model, the bars carry the table's figures, so the two never disagree in the last digit.
        let labels = report.query.grouping == .model ? display.rows.map(\.cost) : report.byModel.map(\.cost.formatted)
        html += "<h2>Spend by model</h2>\n" + modelChart(report.byModel, labels: labels)
        html += "<h2>By \(report.query.grouping.rawValue)</h2>\n<table>\n<tr><th>\(report.query.grouping.rawValue)</th>"
        for header in ["requests", "input tokens", "cached tokens", "output tokens", "cost", "share", "baseline", "savings"] {
            html += "<th class=\"n\">\(header)</th>"
        }
        html += "</tr>\n"
        for (index, row) in (display.rows + [display.total]).enumerated() {
            html += "<tr\(index == display.rows.count ? " class=\"total\"" : "")><td>\(escape(row.key))</td>"
            for cell in [row.requests, row.inputTokens, row.cachedTokens, row.outputTokens, row.cost, row.share, row.baseline, row.savings] {
                html += "<td class=\"n\">\(escape(cell))</td>"
            }
            html += "</tr>\n"
        }
        html += "</table>\n"
        html += "<p class=\"muted\">Amounts are rounded to \(display.decimals) decimal places and apportioned so that each column's lines add up to its total as shown; "
            + "<code>--format json</code> or <code>csv</code> gives them exactly. Savings compare each result's usage priced on its reference model, sync, at list price.</p>\n"
        html += "</body>\n</html>\n"
        return html
    }

    // MARK: - Charts

    static let width = 900, height = 300, left = 80, right = 20, top = 16, bottom = 34

    /// Bars of each day's spend, the running total as a line, each capped project's budget as a dashed line, and the
    /// forecast carried on from today to the month's end.
    static func dailyChart(_ report: SpendReport, budgets: [(project: String, cap: Money)]) -> String {
        var cumulative: [Int64] = []
        var running = Money.zero
        for day in report.daily {
            running += day.cost
            cumulative.append(running.picoUSD)
        }
        let forecastEnd = report.forecast?.atMonthEnd.picoUSD ?? 0
        let ceiling = Int64(clamping: Int128((budgets.map(\.cap.picoUSD) + [forecastEnd, running.picoUSD, 1]).max()!) * 11 / 10)
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let days = max(report.daily.count, 1)
        func x(_ day: Int) -> Int { left + plotWidth * day / days }
        func y(_ amount: Int64) -> Int { top + plotHeight - Int(Int128(plotHeight) * Int128(max(amount, 0)) / Int128(ceiling)) }
        var svg = "<svg viewBox=\"0 0 \(width) \(height)\" width=\"100%\" role=\"img\" aria-label=\"Daily spend against the budget\" xmlns=\"http://www.w3.org/2000/svg\">\n"
        for tick in 0...4 {
            let amount = Int64(Int128(ceiling) * Int128(tick) / 4)
            svg += "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(y(amount))\" y2=\"\(y(amount))\" stroke=\"#e5e8ef\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(y(amount) + 4)\" text-anchor=\"end\">\(escape(Money(picoUSD: amount).formatted))</text>\n"
        }
        let barWidth = max(plotWidth / days - 2, 1)
        for (index, day) in report.daily.enumerated() {
            if day.cost.picoUSD > 0 {
                svg += "<rect x=\"\(x(index) + 1)\" y=\"\(y(day.cost.picoUSD))\" width=\"\(barWidth)\" height=\"\(top + plotHeight - y(day.cost.picoUSD))\" fill=\"#8fb3e8\"><title>\(day.day): \(escape(day.cost.formatted))</title></rect>\n"
            }
            if index % max(days / 8, 1) == 0 || index == days - 1 {
                svg += "<text x=\"\(x(index) + barWidth / 2)\" y=\"\(height - bottom + 16)\" text-anchor=\"middle\">\(day.day.suffix(5))</text>\n"
            }
        }
        let elapsedDays = report.forecast.map { Int(Int64(days) * $0.elapsedBasisPoints / 10_000) } ?? days
        let shown = cumulative.prefix(max(min(elapsedDays + 1, cumulative.count), 1))
        let points = shown.enumerated().map { "\(x($0.offset + 1)),\(y($0.element))" }.joined(separator: " ")
        svg += "<polyline points=\"\(x(0)),\(y(0)) \(points)\" fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2.5\"><title>spent so far</title></polyline>\n"
        if let forecast = report.forecast, elapsedDays < days {
            svg += "<line x1=\"\(x(shown.count))\" y1=\"\(y(shown.last ?? 0))\" x2=\"\(x(days))\" y2=\"\(y(forecast.atMonthEnd.picoUSD))\" stroke=\"#1f5fbf\" stroke-width=\"1.5\" stroke-dasharray=\"3 4\"><title>forecast: \(escape(forecast.atMonthEnd.formatted))</title></line>\n"
        }
        for (index, budget) in budgets.enumerated() where budget.cap.picoUSD > 0 {
            let level = y(budget.cap.picoUSD)
            // Labels of lines close together are set apart along the line.
            let labelX = width - right - (index % 3) * (plotWidth / 3)
            svg += "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(level)\" y2=\"\(level)\" stroke=\"#c0392b\" stroke-width=\"2\" stroke-dasharray=\"8 5\"><title>project \(escape(budget.project)): \(escape(budget.cap.formatted))</title></line>"
            svg += "<text x=\"\(labelX)\" y=\"\(level - 6)\" text-anchor=\"end\" style=\"fill:#c0392b\">\(escape(budget.project)) budget \(escape(budget.cap.formatted))</text>\n"
        }
        svg += "<line x1=\"\(left)\" x2=\"\(left)\" y1=\"\(top)\" y2=\"\(top + plotHeight)\" stroke=\"#9aa3b5\"/>"
        svg += "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(top + plotHeight)\" y2=\"\(top + plotHeight)\" stroke=\"#9aa3b5\"/>\n"
        svg += "</svg>\n<p class=\"muted\">Bars: each day's spend. Solid line: spent so far. Dashed blue: the forecast at the same pace. Dashed red: "
            + (budgets.count > 1 ? "each project's budget, against every project's spending (--project P shows one).</p>\n" : "the budget.</p>\n")
        return svg
    }

    /// One horizontal bar per model, the costliest first; past ten the rest share one bar.
    static func modelChart(_ lines: [SpendReport.Line], labels: [String]) -> String {
        var bars = zip(lines.prefix(10), labels).map { ($0.key, $0.cost, $1) }
        if lines.count > 10 {
            let rest = lines.dropFirst(10).reduce(Money.zero) { $0 + $1.cost }
            bars.append(("\(lines.count - 10) other models", rest, rest.formatted))
        }
        guard !bars.isEmpty else { return "<p class=\"muted\">Nothing was spent in this period.</p>\n" }
        let rowHeight = 26, labelWidth = 260, chartHeight = bars.count * rowHeight + 8
        let largest = max(bars.map(\.1.picoUSD).max() ?? 1, 1)
        let barSpace = width - labelWidth - 120
        var svg = "<svg viewBox=\"0 0 \(width) \(chartHeight)\" width=\"100%\" role=\"img\" aria-label=\"Spend by model\" xmlns=\"http://www.w3.org/2000/svg\">\n"
        for (index, (name, cost, label)) in bars.enumerated() {
            let y = index * rowHeight + 4
            let length = max(Int(Int128(barSpace) * Int128(cost.picoUSD) / Int128(largest)), 1)
            svg += "<text x=\"\(labelWidth - 8)\" y=\"\(y + 16)\" text-anchor=\"end\">\(escape(name))</text>"
            svg += "<rect x=\"\(labelWidth)\" y=\"\(y + 3)\" width=\"\(length)\" height=\"\(rowHeight - 8)\" fill=\"#5b8fd9\"><title>\(escape(name)): \(escape(label))</title></rect>"
            svg += "<text x=\"\(labelWidth + length + 6)\" y=\"\(y + 16)\">\(escape(label))</text>\n"
        }
        return svg + "</svg>\n"
    }

    static func tile(_ label: String, _ value: String, note: String) -> String {
        "<div class=\"tile\"><span class=\"muted\">\(escape(label))</span><b>\(escape(value))</b><span class=\"muted\">\(escape(note))</span></div>\n"
    }

    static func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
