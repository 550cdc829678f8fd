import Foundation
import Testing
import PurserCore
@testable import PurserSQLite

/// Reports over the quickstart job served on the simulator: 50 results on several models.
@Suite struct ReportTests {
    let database = temporaryDatabasePath()

    init() async throws {
        #expect(await purser(["submit", repository.appendingPathComponent("jobs/quickstart.jsonl").path], database: database).code == 0)
        #expect(await purser(["budget", "set", "0.1"], database: database).code == 0)
        #expect(await purser(["run", "--simulate", "--speedup", "1000"], database: database).code == 0)
    }

    func report(_ arguments: [String]) async throws -> String {
        let run = await purser(["report", "--simulated"] + arguments, database: database)
        #expect(run.code == 0, "\(arguments): \(run.error)")
        return run.out
    }

    /// "$1,234.5678" or "-$0.000001" as pico-USD.
    func amount(_ text: String) throws -> Int64 {
        let negative = text.hasPrefix("-")
        let digits = text.replacingOccurrences(of: "-", with: "").replacingOccurrences(of: "$", with: "").replacingOccurrences(of: ",", with: "")
        let value = try Money(usd: digits).picoUSD
        return negative ? -value : value
    }

    func integer(_ text: String) -> Int64 { Int64(text.replacingOccurrences(of: ",", with: ""))! }

    /// Checks that each column of `rows` adds up to the matching column of `total`.
    func expectColumnsAddUp(_ rows: [[String]], total: [String], amountColumns: [Int], integerColumns: [Int], context: String) throws {
        #expect(!rows.isEmpty, "\(context)")
        for column in amountColumns {
            #expect(try rows.map { try amount($0[column]) }.reduce(0, +) == (try amount(total[column])), "\(context) column \(column)")
        }
        for column in integerColumns {
            #expect(rows.map { integer($0[column]) }.reduce(0, +) == integer(total[column]), "\(context) column \(column)")
        }
    }

    @Test func theTotalIsTheSumOfTheLinesInEveryFormatAndGrouping() async throws {
        let spent = try #require(try PurserDatabase.open(path: database).scalarInt("SELECT sum(cost_pico) FROM results"))
        for grouping in ReportQuery.Grouping.allCases {
            let by = ["--by", grouping.rawValue]
            // JSON and CSV: exact amounts, to the pico-dollar.
            let json = try await #require(try JSONParser.parse(try report(by + ["--format", "json"])).objectValue)
            let lines = try #require(json["lines"]?.arrayValue).compactMap(\.objectValue)
            let total = try #require(json["total"]?.objectValue)
            for key in ["cost_usd", "baseline_usd", "savings_usd"] {
                let sum = try lines.map { try Money(usd: try #require($0[key]?.stringValue)).picoUSD }.reduce(0, +)
                #expect(sum == (try Money(usd: try #require(total[key]?.stringValue)).picoUSD), "json \(grouping) \(key)")
            }
            for key in ["requests", "input_tokens", "cached_tokens", "output_tokens", "share_basis_points"] {
                #expect(lines.map { $0[key]?.intValue ?? -1 }.reduce(0, +) == total[key]?.intValue, "json \(grouping) \(key)")
            }
            #expect(try Money(usd: try #require(total["cost_usd"]?.stringValue)).picoUSD == spent)
            #expect(total["share_basis_points"]?.intValue == 10_000)

            let csv = try await report(by + ["--format", "csv"]).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
            #expect(csv.first == [grouping.rawValue] + SpendReport.csvColumns)
            try expectColumnsAddUp(Array(csv.dropFirst().dropLast()), total: try #require(csv.last), amountColumns: [5, 7, 8], integerColumns: [1, 2, 3, 4], context: "csv \(grouping)")
            #expect(try amount(csv.last![5]) == spent)

            // Table and HTML: rounded once, and apportioned so the shown lines still add up to the shown total.
            let table = try await report(by).split(separator: "\n").map(String.init)
            let header = try #require(table.firstIndex { $0.hasPrefix(grouping.rawValue) })
            let totalIndex = try #require(table.firstIndex { $0.hasPrefix("total ") })
            func cells(_ line: String) -> [String] { Array(line.split(separator: " ").map(String.init).suffix(8)) }
            try expectColumnsAddUp(
                table[(header + 1)..<totalIndex].map(cells), total: cells(table[totalIndex]), amountColumns: [4, 6, 7], integerColumns: [0, 1, 2, 3],
                context: "table \(grouping)")
            #expect(table[(header + 1)..<totalIndex].map { Int64(cells($0)[5].replacingOccurrences(of: ".", with: "").dropLast())! }.reduce(0, +) == 1000)

            let html = try await report(by + ["--format", "html"])
            let rows = html.components(separatedBy: "<tr").dropFirst(2).map { row in
                row.components(separatedBy: "<td class=\"n\">").dropFirst().map { $0.components(separatedBy: "</td>")[0] }
            }
            try expectColumnsAddUp(Array(rows.dropLast()), total: try #require(rows.last), amountColumns: [4, 6, 7], integerColumns: [0, 1, 2, 3], context: "html \(grouping)")
        }
    }

    @Test func theHTMLPageStandsAloneWithBothCharts() async throws {
        let html = try await report(["--format", "html"])
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("aria-label=\"Daily spend against the budget\""))
        #expect(html.contains("aria-label=\"Spend by model\""))
        #expect(html.contains(">default budget $0.1000</text>"))
        #expect(html.contains("Simulated runs: no provider was called or charged."))
        // Nothing to fetch: no scripts, stylesheets, images or fonts from anywhere.
        for outside in ["<script", "src=", "<link", "@import", "url("] { #expect(!html.contains(outside), "\(outside)") }
        // The default page shows real spending; with only rehearsals, it says where they are instead of being empty.
        let real = await purser(["report", "--format", "html"], database: database)
        #expect(real.out.contains("Nothing was billed in this period. 50 simulated results are in this scope: report with --simulated to see them."),
            "\(real.out.suffix(600))")
    }

    @Test func realAndSimulatedSpendingAreReportedApart() async throws {
        let run = await purser(["report"], database: database)
        #expect(run.out.contains("Nothing was billed in this period. 50 simulated results are: add --simulated to see them."))
        let json = try await #require(try JSONParser.parse(try report(["--json"])).objectValue)
        #expect(json["simulated"] == .bool(true))
        let budgets = try #require(json["budgets"]?.arrayValue)
        #expect(budgets.count == 1)
        #expect(budgets[0].objectValue?["cap_usd"] == .string("0.1"))
    }

    /// Issue 16, item 10: each capped project has its own budget line, and a forecast from little spending says so.
    @Test func eachCappedProjectHasItsBudgetLineAndAForecastSaysHowLittleItHasSeen() async throws {
        #expect(await purser(["budget", "set", "5", "--project", "search"], database: database).code == 0)
        let html = try await report(["--format", "html"])
        #expect(html.contains(">default budget $0.1000</text>") && html.contains(">search budget $5.00</text>"), "\(html.suffix(2_000))")
        #expect(html.contains("each project's budget, against every project's spending"))
        #expect(!html.contains("budget $5.10"))
        // Everything was spent today: one day of spending is little to go on, and the forecast says so.
        let table = try await report([])
        let forecast = try #require(table.split(separator: "\n").first { $0.hasPrefix("forecast:") })
        #expect(forecast.hasSuffix("spending on 1 day: little to go on)"), "\(forecast)")
        let json = try await #require(try JSONParser.parse(try report(["--json"])).objectValue?["forecast"]?.objectValue)
        #expect(json["days_with_spending"]?.intValue == 1 && json["little_to_go_on"] == .bool(true))
    }

    /// Issue 16, item 7: what each provider counted against Purser's estimates, per ledger, and what plans use.
    @Test func theReportShowsEachProvidersCountsAgainstTheEstimatesAndTheScalePlansUse() async throws {
        let json = try await #require(try JSONParser.parse(try report(["--json"])).objectValue)
        let families = try #require(json["input_calibration"]?.arrayValue).compactMap(\.objectValue)
        let byProvider = Dictionary(uniqueKeysWithValues: families.map { ($0["provider"]?.stringValue ?? "", $0) })
        let total = families.reduce(0) { $0 + ($1["results"]?.intValue ?? 0) }
        #expect(total == 50)
        for (provider, family) in byProvider {
            let results = try #require(family["results"]?.intValue)
            let estimated = try #require(family["estimated_input_tokens"]?.intValue)
            let reported = try #require(family["reported_input_tokens"]?.intValue)
            let scale = try #require(family["reported_basis_points"]?.intValue)
            #expect(estimated > 0 && abs(scale - reported * 10_000 / estimated) <= 1, "\(provider)")
            // Under 20 results a provider's scale is shown but not used.
            #expect(family["applied_basis_points"]?.intValue == (results >= 20 ? scale : 10_000), "\(provider)")
        }
        // The simulator's tokenizers do not count what the estimate says.
        #expect(families.contains { $0["estimated_input_tokens"] != $0["reported_input_tokens"] })
        await #expect(try report([]).contains("input tokens, Purser's estimates against the providers' counts"))
        // Simulated counts never calibrate real plans: the real ledger has none.
        let real = try #require(try JSONParser.parse(await purser(["report", "--json"], database: database).out).objectValue)
        #expect(real["input_calibration"]?.arrayValue?.isEmpty == true)
    }

    @Test func otherMonthsAndOtherProjectsAreOutOfScope() async throws {
        await #expect(try report(["--month", "2026-10"]).contains("Nothing was spent in simulated runs in this period."))
        let research = try await report(["--project", "research"])
        #expect(research.contains("Nothing was spent in simulated runs in this period."))
        #expect(research.contains("budget: none in force for project research in 2026-11; 'purser budget set USD' sets one"))
        await #expect(try report(["--month", "all"]).contains("spend report: all time, every project, by model"))
        await #expect(try report(["--job", "1"]).contains("spend report: all time, job 1, by model"))
    }

    @Test func badReportOptionsSayWhatToDo() async {
        let cases: [([String], String)] = [
            (["--by", "colour"], "Error: --by: 'colour' is not one of model, provider, project, job, day, month, tier, mode."),
            (["--format", "pdf"], "Error: --format: 'pdf' is not one of table, json, csv, html."),
            (["--month", "November"], "Error: --month: 'November' is not a month written YYYY-MM, such as 2026-11, or 'all'."),
        ]
        for (arguments, message) in cases {
            let run = await purser(["report"] + arguments, database: database)
            #expect(run.code == 64)
            #expect(run.error.hasPrefix(message), "\(run.error)")
        }
    }

    @Test func aReportByMonthSpansTheMonthsUnlessOneIsAskedFor() async throws {
        let twoMonths = temporaryDatabasePath()
        let quickstart = repository.appendingPathComponent("jobs/quickstart.jsonl").path
        let december = testNow + 31 * 86_400_000
        #expect(await purser(["submit", quickstart], database: twoMonths).code == 0)
        #expect(await purser(["run", "--simulate", "--speedup", "1000"], database: twoMonths).code == 0)
        #expect(await purser(["submit", quickstart, "--force"], database: twoMonths, at: december).code == 0)
        #expect(await purser(["run", "--simulate", "--speedup", "1000"], database: twoMonths, at: december).code == 0)
        let json = try #require(try JSONParser.parse(await purser(["report", "--simulated", "--by", "month", "--format", "json"], database: twoMonths, at: december).out).objectValue)
        #expect(json["lines"]?.arrayValue?.compactMap { $0.objectValue?["month"]?.stringValue } == ["2026-11", "2026-12"])
        #expect(json["lines"]?.arrayValue?.compactMap { $0.objectValue?["requests"]?.intValue } == [50, 50])
        let one = try await #require(try JSONParser.parse(purser(
            ["report", "--simulated", "--by", "month", "--month", "2026-12", "--format", "json"], database: twoMonths, at: december).out).objectValue)
        #expect(one["lines"]?.arrayValue?.compactMap { $0.objectValue?["month"]?.stringValue } == ["2026-12"])
    }
}
