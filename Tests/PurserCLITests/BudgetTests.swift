import Foundation
import Testing
import PurserCore
@testable import PurserSQLite
import TestSupport

/// Budgets end to end, in-process on the simulator, with the clock set where each test needs it.
@Suite struct BudgetTests {
    let december = BudgetMonth(year: 2026, month: 12).start
    let database = temporaryDatabasePath()

    /// Twenty identical requests submitted an hour before December, with a month to finish.
    func submitJob(maxCost: String? = nil) async throws -> String {
        let path = testFiles.appendingPathComponent("budget-job-\(UUID().uuidString).jsonl").path
        let lines = (1...20).map { #"{"custom_id": "q\#($0)", "prompt": "Summarise the attached quarterly report in three sentences.", "max_tokens": 400}"# }
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let submitted = await purser(["submit", path, "--deadline", "30d"] + (maxCost.map { ["--max-cost", $0] } ?? []), database: database, at: december - 3_600_000)
        #expect(submitted.code == 0, "\(submitted.error)")
        return path
    }

    func run(at now: Int64) async -> Run {
        await purser(["run", "--simulate", "--speedup", "1000", "--concurrency", "8"], database: database, at: now)
    }

    func scalar(_ sql: String) throws -> Int64 {
        try #require(try PurserDatabase.open(path: database).scalarInt(sql))
    }

    func charged(_ month: String) throws -> Int64 {
        try scalar("SELECT coalesce(sum(cost_pico), 0) FROM results WHERE strftime('%Y-%m', billed_at / 1000, 'unixepoch') = '\(month)'")
    }

    func count(_ state: String) throws -> Int64 { try scalar("SELECT count(*) FROM requests WHERE state = '\(state)'") }

    /// What the job's requests are charged on the simulator without caps, in a database of its own: the
    /// most one costs, and all twenty together (the simulator answers a request the same way every time).
    func uncappedCharges() async throws -> (perRequest: Int64, total: Int64) {
        let probe = BudgetTests()
        _ = try await probe.submitJob()
        #expect(await probe.run(at: december - 3_600_000).code == 0)
        return (try probe.scalar("SELECT max(cost_pico) FROM results"), try probe.scalar("SELECT sum(cost_pico) FROM results"))
    }

    @Test func heldRequestsResumeWhenTheCapIsRaised() async throws {
        let (perRequest, total) = try await uncappedCharges()
        _ = try await submitJob()
        let cap = Money(picoUSD: perRequest * 7)
        #expect(await purser(["budget", "set", cap.exactUSD], database: database, at: december - 3_600_000).code == 0)
        let capped = await run(at: december - 3_600_000)
        #expect(capped.code == 0)
        #expect(capped.out.contains("requests are held by a budget cap"))
        #expect(capped.error.contains("held: project default's budget for 2026-11"))
        let served = try count("succeeded")
        #expect(served > 0 && served < 20)
        #expect(try charged("2026-11") <= cap.picoUSD)
        #expect(try count("held") == 20 - served)
        #expect(try scalar("SELECT count(*) FROM reservations") == 0)

        let raised = await purser(["budget", "set", "5"], database: database, at: december - 3_600_000)
        #expect(raised.out.contains("\(20 - served) held requests released"))
        #expect(await run(at: december - 3_600_000).code == 0)
        #expect(try count("succeeded") == 20)
        #expect(try charged("2026-11") == total)
    }

    @Test func aRecurringCapStartsAfreshEachMonthAndReleasesWhatItHeld() async throws {
        let (perRequest, total) = try await uncappedCharges()
        _ = try await submitJob()
        #expect(await purser(["budget", "set", Money(picoUSD: perRequest * 12).exactUSD], database: database, at: december - 3_600_000).code == 0)
        _ = await run(at: december - 3_600_000)
        let november = try count("succeeded")
        #expect(november < 20)
        // Held until the month whose cap held them ends.
        #expect(try scalar("SELECT min(next_attempt_at) FROM requests WHERE state = 'held'") == december)
        #expect(await run(at: december - 1).out.contains("held"))
        #expect(try count("succeeded") == november)

        _ = await run(at: december + 60_000)
        #expect(try count("succeeded") == 20)
        let novemberCharges = try charged("2026-11")
        #expect(novemberCharges <= perRequest * 12)
        #expect(try charged("2026-12") <= perRequest * 12)
        #expect(novemberCharges + (try charged("2026-12")) == total)
    }

    @Test func aSingleMonthCapReplacesTheRecurringOneForThatMonthOnly() async throws {
        _ = try await submitJob()
        #expect(await purser(["budget", "set", "1000"], database: database, at: december - 3_600_000).code == 0)
        #expect(await purser(["budget", "set", "0", "--month", "2026-11"], database: database, at: december - 3_600_000).code == 0)
        _ = await run(at: december - 3_600_000)
        #expect(try count("held") == 20)
        #expect(try charged("2026-11") == 0)

        let json = try #require(try JSONParser.parse(await purser(["budget", "show", "--json"], database: database, at: december - 3_600_000).out).objectValue)
        #expect(json["month"] == .string("2026-11"))
        let caps = try #require(json["caps"]?.arrayValue)
        #expect(caps.count == 1)
        #expect(caps[0].objectValue?["cap_usd"] == .string("0") && caps[0].objectValue?["project"] == .string("default"))
        // Every request was held, so the rehearsal ledger has nothing to show beside the real one.
        #expect(caps[0].objectValue?["simulated"] == nil)
        #expect(try #require(json["budgets"]?.arrayValue).compactMap { $0.objectValue?["month"] } == [.null, .string("2026-11")])
        let status = try #require(try JSONParser.parse(await purser(["status", "--json"], database: database, at: december - 3_600_000).out).arrayValue)
        #expect(status.first?.objectValue?["caps"]?.arrayValue?.count == 1)
        #expect(status.first?.objectValue?["states"]?.objectValue?["held"] == .number("20"))

        let shown = await purser(["budget", "show"], database: database, at: december - 3_600_000)
        #expect(shown.out.contains("project default: $1,000.00 for every month, warning at 80%"))
        #expect(shown.out.contains("project default: $0.000000 for 2026-11, warning at 80%"))
        #expect(shown.out.contains("20 requests held by caps"))

        // December falls back on the every-month cap, which has room.
        _ = await run(at: december + 1)
        #expect(try count("succeeded") == 20)
    }

    @Test func aSingleMonthCapEndsWithItsMonth() async throws {
        _ = try await submitJob()
        #expect(await purser(["budget", "set", "0", "--month", "2026-11"], database: database, at: december - 3_600_000).code == 0)
        _ = await run(at: december - 3_600_000)
        #expect(try count("held") == 20)
        _ = await run(at: december)
        #expect(try count("succeeded") == 20)
    }

    /// What one request of the job reserves before its call: its worst case on the model and mode that served it uncapped.
    func worstCase(servedIn probe: BudgetTests) throws -> Int64 {
        let row = try #require(try query(
            probe.database, "SELECT s.model, s.mode, r.input_tokens, r.max_output_tokens FROM results s JOIN requests r ON r.id = s.request_id LIMIT 1"
        ).first)
        let catalog = try PricingCatalog.load(directory: repository.appendingPathComponent("pricing").path)
        let model = try #require(catalog.model(id: row[0]))
        let mode = try #require(DispatchMode(rawValue: row[1]))
        return Charges.worstCase(model: model, mode: mode, inputTokens: try #require(Int(row[2])), maxOutputTokens: try #require(Int(row[3]))).picoUSD
    }

    /// `budget set` warns when real charges already pass the new cap; a rehearsal's charges are in a ledger of their
    /// own and do not.
    @Test func simulatedChargesDoNotMakeANewCapAlreadyPassed() async throws {
        _ = try await submitJob()
        #expect(await run(at: december - 3_600_000).code == 0)
        #expect(try charged("2026-11") > 0)
        let set = await purser(["budget", "set", "0.000001"], database: database, at: december - 3_600_000)
        #expect(set.code == 0)
        #expect(set.out == "project default: $0.000001 for every month (UTC), warning at 80%\n", "\(set.out)")
    }

    @Test func aJobCapHoldsItsRequestsUntilRaised() async throws {
        let probe = BudgetTests()
        _ = try await probe.submitJob()
        #expect(await probe.run(at: december - 3_600_000).code == 0)
        let perRequest = try probe.scalar("SELECT max(cost_pico) FROM results")
        let total = try probe.scalar("SELECT sum(cost_pico) FROM results")
        // Room for five charges beside one reservation: a request waits only when what is left is below its worst case.
        let cap = perRequest * 5 + (try worstCase(servedIn: probe))
        _ = try await submitJob(maxCost: Money(picoUSD: cap).exactUSD)
        _ = await run(at: december - 3_600_000)
        let served = try count("succeeded")
        #expect(try charged("2026-11") <= cap)
        let held = try count("held")
        #expect(served >= 5 && held == 20 - served)
        #expect(try scalar("SELECT count(*) FROM requests WHERE state = 'held' AND next_attempt_at IS NULL") == (try count("held")))
        // A new month does not reset a job's cap.
        _ = await run(at: december + 1)
        #expect(try count("succeeded") == served)

        let raised = await purser(["budget", "set", "10", "--job", "1"], database: database, at: december + 1)
        #expect(raised.out.hasPrefix("job 1 (budget-job-"))
        _ = await run(at: december + 1)
        #expect(try count("succeeded") == 20)
        #expect(try charged("2026-11") + (try charged("2026-12")) == total)
    }

    @Test func aWarningShowsOnceACapIsPastItsShare() async throws {
        let (_, total) = try await uncappedCharges()
        _ = try await submitJob()
        #expect(await purser(["budget", "set", Money(picoUSD: total * 2).exactUSD, "--warn-at", "40"], database: database, at: december - 3_600_000).code == 0)
        let served = await run(at: december - 3_600_000)
        #expect(try count("succeeded") == 20)
        #expect(served.error.contains("project default's budget for 2026-11 is "))
        let status = await purser(["status"], database: database, at: december - 3_600_000)
        #expect(status.out.contains("project default's budget for 2026-11 (UTC), simulated runs: 50.0% used"))
        #expect(status.out.contains("(past the 40% warning)"))
        #expect(status.out.contains("project default's budget for 2026-11 (UTC): 0.0% used, $0.000000 charged + $0.000000 reserved"))
    }

    @Test func badBudgetCommandsSayWhatToDoAndChangeNothing() async throws {
        _ = try await submitJob()
        #expect(await purser(["budget", "set", "5"], database: database).code == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: database))
        let cases: [([String], Int32, String)] = [
            (["budget", "set"], 64, "Error: Missing expected argument '<usd>'.\nUsage: purser budget set <usd>"),
            (["budget", "set", "five"], 64, "Error: <usd>: 'five' is not an amount of US dollars, such as 250 or 12.50."),
            (["budget", "set", "12.5.0"], 64, "Error: <usd>: '12.5.0' is not an amount of US dollars, such as 250 or 12.50."),
            (["budget", "set", "5", "--month", "2026-13"], 64, "Error: --month: '2026-13' is not a month written YYYY-MM, such as 2026-11."),
            (["budget", "set", "5", "--warn-at", "120"], 64, "Error: --warn-at: '120' is not a whole percentage from 1 to 100."),
            (["budget", "set", "5", "--job", "1", "--month", "2026-11"], 64,
             "Error: --job caps the job over its whole life; it cannot be combined with --project or --month."),
            (["budget", "set", "5", "--job", "nine"], 1, "Error: no job 'nine'; 'purser status' lists the jobs"),
            (["budget", "clear", "--project", "research"], 1, "Error: project research has no budget for every month; 'purser budget show' lists the budgets"),
            (["budget", "raise"], 64, "Error: Unknown subcommand 'raise' of 'budget'; use set, show or clear."),
            (["budget", "show", "--job", "1"], 64, "Error: Unknown option '--job'."),
        ]
        for (arguments, code, message) in cases {
            let run = await purser(arguments, database: database)
            #expect(run.code == code, "\(arguments)")
            #expect(run.error.hasPrefix(message), "\(arguments): \(run.error)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: database)) == before)
    }
}
