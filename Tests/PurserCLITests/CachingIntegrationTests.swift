import Foundation
import Testing
import PurserCore
@testable import PurserSQLite
import TestSupport

/// Prompt caching over real HTTP: the fake provider caches as Anthropic does (only at the request's breakpoint, from
/// 1,024 tokens, readable once the answer that wrote it has begun) and reports it in Anthropic's usage fields; Purser
/// reads them and charges each result at the tables' rates for reads and writes.
struct CachingIntegrationTests {
    @Test func reportedCacheReadsAndWritesAreChargedAtTheTablesRates() async throws {
        let server = try FakeProviderProcess(["--latency-ms", "20", "--cache", "explicit", "--cache-min", "1024"])
        defer { server.stop() }
        let directory = try fakePricing(port: server.port)
        let models = URL(fileURLWithPath: directory).appendingPathComponent("models.json")
        var text = try String(contentsOf: models, encoding: .utf8)
        let medium = try #require(text.range(of: #""id": "fakeanthropic/medium""#))
        var tail = String(text[medium.lowerBound...])
        tail = tail.replacingOccurrences(of: #""prices": {"input": "1", "output": "5"}"#, with: #""prices": {"input": "1", "output": "5", "cached_input": "0.1", "cache_write_5m": "1.25"}"#)
        tail = tail.replacingOccurrences(of: #""price_date""#, with: #""caching": {"mode": "explicit", "min_prefix_tokens": 1024, "batch": "none", "source": "https://example.com/caching"}, "price_date""#)
        text = String(text[..<medium.lowerBound]) + tail
        try text.write(to: models, atomically: true, encoding: .utf8)
        let database = temporaryDatabase()
        let shared = String(repeating: "Label each support ticket as urgent, normal or low, with one reason. ", count: 110)
        var lines = ""
        for index in 0..<12 {
            lines += #"{"custom_id": "c\#(index)", "pin": true, "params": {"model": "medium", "max_tokens": 16, "system": [{"type": "text", "text": "\#(shared)", "cache_control": {"type": "ephemeral"}}], "messages": [{"role": "user", "content": "Ticket \#(index)"}]}}"# + "\n"
        }
        let file = testFiles.appendingPathComponent("caching-\(UUID().uuidString).jsonl")
        try lines.write(to: file, atomically: true, encoding: .utf8)
        #expect(try await purser(["submit", file.path], database: database, pricing: directory).code == 0)
        // One call at a time: each finds the prefix the one before it wrote.
        let run = try await purser(["run", "--concurrency", "1"], database: database, pricing: directory)
        #expect(run.code == 0, "\(run.error)")
        let rows = try query(database, "SELECT input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, cost_pico FROM results ORDER BY finished_at")
            .map { $0.prefix(5).map { Int64($0) ?? -1 } }
        try #require(rows.count == 12)
        #expect(rows[0][1] == 0 && rows[0][2] > 1_500, "the first call writes the prefix: \(rows[0])")
        #expect(rows.dropFirst().allSatisfy { $0[1] > 1_500 && $0[2] == 0 }, "the others read it: \(rows)")
        // Each charge is the tables' rates: input $1, cached reads $0.10, five-minute writes $1.25, output $5 per million.
        for row in rows {
            #expect(row[4] == row[0] * 1_000_000 + row[1] * 100_000 + row[2] * 1_250_000 + row[3] * 5_000_000, "\(row)")
        }
        let charged = rows.reduce(0) { $0 + $1[4] }
        let uncached = rows.reduce(0) { $0 + ($1[0] + $1[1] + $1[2]) * 1_000_000 + $1[3] * 5_000_000 }
        #expect(charged * 100 < uncached * 30, "caching cut the bill by less than 70%: \(charged) against \(uncached)")
        #expect(try integer(database, "SELECT sum(charged_pico) FROM monthly_charges") == Int(charged))
        // The report's JSON counts the cached and the written tokens; results carry both.
        let report = await purser(["report", "--month", "all", "--json"], database: database)
        let total = try JSONParser.parse(report.out).objectValue?["total"]?.objectValue
        #expect(total?["cached_tokens"]?.intValue == Int(rows.reduce(0) { $0 + $1[1] }) && total?["cache_write_tokens"]?.intValue == Int(rows[0][2]), "\(report.out.prefix(600))")
        // What caching saved: reads at $1 less $0.10, less writes at $1.25 beyond $1, per million tokens.
        let saved = rows.reduce(Int64(0)) { $0 + $1[1] * 900_000 - $1[2] * 250_000 }
        #expect(total?["cache_saving_usd"]?.stringValue == Money(picoUSD: saved).exactUSD, "\(report.out.prefix(900))")
        #expect(saved == uncached - charged)
        let table = await purser(["report", "--month", "all"], database: database)
        #expect(table.out.contains("of which prompt caching saved \(Money(picoUSD: saved).formatted)"), "\(table.out)")
        let results = await purser(["results", "1", "--format", "jsonl"], database: database)
        #expect(results.out.contains(#""cache_write_tokens":\#(rows[0][2])"#), "\(results.out.prefix(400))")
    }

    /// Requests of one job that share a long prefix are sent to Anthropic with a breakpoint at its end (they marked
    /// none), the first alone, so all the others read it from the cache; a request whose prefix no other shares is sent as it
    /// was, and writes nothing.
    @Test func anthropicCallsSharingAPrefixGetABreakpointAndReadIt() async throws {
        let database = temporaryDatabasePath()
        let shared = String(repeating: "Extract the invoice number, the total and the due date as JSON. ", count: 90)
        var lines = ""
        for index in 0..<20 {
            lines += #"{"custom_id": "s\#(index)", "pin": true, "deadline": "hour", "params": {"model": "claude-sonnet-4-5", "max_tokens": 40, "system": "\#(shared)", "messages": [{"role": "user", "content": "Invoice \#(index)"}]}}"# + "\n"
        }
        lines += #"{"custom_id": "alone", "pin": true, "deadline": "hour", "params": {"model": "claude-sonnet-4-5", "max_tokens": 40, "system": "\#(shared) Only this one.", "messages": [{"role": "user", "content": "Invoice X"}]}}"# + "\n"
        let file = testFiles.appendingPathComponent("breakpoints-\(UUID().uuidString).jsonl")
        try lines.write(to: file, atomically: true, encoding: .utf8)
        // The real executable, on the real clock: a cache entry is readable once its answer has begun, which a clock
        // standing still (the in-process runs') never reaches.
        let pricing = repository.appendingPathComponent("pricing").path
        #expect(try await purser(["submit", file.path], database: database, pricing: pricing).code == 0)
        let run = try await purser(["run", "--simulate", "--speedup", "600", "--concurrency", "8"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        let rows = try query(database, """
            SELECT r.custom_id, s.cached_input_tokens, s.cache_write_tokens FROM results s JOIN requests r ON r.id = s.request_id ORDER BY s.finished_at
            """)
        try #require(rows.count == 21)
        let group = rows.filter { $0[0] != "alone" }
        let reads = group.filter { (Int($0[1]) ?? 0) > 1_000 }.count
        let writes = group.filter { (Int($0[2]) ?? 0) > 1_000 }.count
        // One primer writes; the others, eight at a time, wait for its answer to begin and read.
        #expect(writes == 1 && reads == 19, "\(rows)")
        #expect(rows.first { $0[0] == "alone" }.map { $0[1] == "0" && $0[2] == "0" } == true, "\(rows)")
    }

    /// The fake tables with both models caching as their providers do: fakeopenai/small automatically from 1,024 tokens in
    /// 128-token steps (its batches too, at half price), fakeanthropic/medium at breakpoints (reads $0.10, writes $1.25).
    func cachingFakePricing(port: Int, batches: Bool) async throws -> String {
        let directory = try fakePricing(port: port, batches: batches)
        let models = URL(fileURLWithPath: directory).appendingPathComponent("models.json")
        var text = try String(contentsOf: models, encoding: .utf8)
        text = text.replacingOccurrences(of: #""prices": {"input": "0.1", "output": "0.4"}"#, with: #""prices": {"input": "0.1", "output": "0.4", "cached_input": "0.01"}"#)
            .replacingOccurrences(of: #""batch_prices": {"input": "0.05", "output": "0.2"}"#, with: #""batch_prices": {"input": "0.05", "output": "0.2", "cached_input": "0.005"}"#)
            .replacingOccurrences(of: #""prices": {"input": "1", "output": "5"}"#, with: #""prices": {"input": "1", "output": "5", "cached_input": "0.1", "cache_write_5m": "1.25"}"#)
            .replacingOccurrences(of: #""batch_prices": {"input": "0.5", "output": "2.5"}"#, with: #""batch_prices": {"input": "0.5", "output": "2.5", "cached_input": "0.05", "cache_write_5m": "0.625"}"#)
        let small = try #require(text.range(of: #""id": "fakeopenai/small""#)), medium = try #require(text.range(of: #""id": "fakeanthropic/medium""#))
        let automatic = #""caching": {"mode": "automatic", "min_prefix_tokens": 1024, "step_tokens": 128, "batch": "halved", "source": "https://example.com/caching"}, "price_date""#
        let explicit = #""caching": {"mode": "explicit", "min_prefix_tokens": 1024, "batch": "best_effort", "source": "https://example.com/caching"}, "price_date""#
        let first = String(text[small.lowerBound..<medium.lowerBound]).replacingOccurrences(of: #""price_date""#, with: automatic)
        let second = String(text[medium.lowerBound...]).replacingOccurrences(of: #""price_date""#, with: explicit)
        text = String(text[..<small.lowerBound]) + first + second
        try text.write(to: models, atomically: true, encoding: .utf8)
        #expect(try await purser(["pricing", "validate"], database: temporaryDatabase(), pricing: directory).code == 0)
        return directory
    }

    /// A job of `count` lines sharing a system prompt of about 1,500 tokens, each with its own short question, pinned to `model`.
    func prefixJob(_ count: Int, model: String, deadline: String, anthropic: Bool) throws -> URL {
        let shared = String(repeating: "Answer as the support desk of a bank would, in two sentences at most, citing the policy. ", count: 68)
        let lines = (0..<count).map { index in
            anthropic
                ? #"{"custom_id": "p\#(index)", "pin": true, "deadline": "\#(deadline)", "params": {"model": "\#(model)", "max_tokens": 16, "system": "\#(shared)", "messages": [{"role": "user", "content": "Question \#(index)"}]}}"#
                : #"{"custom_id": "p\#(index)", "pin": true, "deadline": "\#(deadline)", "body": {"model": "\#(model)", "max_tokens": 16, "messages": [{"role": "system", "content": "\#(shared)"}, {"role": "user", "content": "Question \#(index)"}]}}"#
        }
        let file = testFiles.appendingPathComponent("prefix-job-\(UUID().uuidString).jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    /// Issue 20's promise: on a prefix-heavy job the plan prices the group's write and reads, the dispatcher earns them,
    /// and the bill comes within 5% of the estimate (before caching was planned, the estimate was five times the bill).
    @Test func aPrefixGroupIsBilledWithinFivePercentOfWhatItsPlanEstimated() async throws {
        let server = try FakeProviderProcess(["--latency-ms", "20", "--cache", "explicit", "--cache-min", "1024"])
        defer { server.stop() }
        let pricing = try await cachingFakePricing(port: server.port, batches: false)
        let database = temporaryDatabase()
        #expect(try await purser(["submit", try prefixJob(60, model: "medium", deadline: "hour", anthropic: true).path], database: database, pricing: pricing).code == 0)
        let plan = try await purser(["plan", "1", "--json"], database: database, pricing: pricing)
        let caching = try #require(try JSONParser.parse(plan.out).objectValue?["caching"]?.objectValue, "\(plan.out)")
        #expect(caching["requests"]?.intValue == 59, "\(plan.out)")
        let run = try await purser(["run", "--concurrency", "8"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        #expect(try integer(database, "SELECT count(*) FROM results WHERE cached_input_tokens > 1000") == 59)
        let estimated = try integer(database, "SELECT sum(cost_pico) FROM request_plans"), billed = try integer(database, "SELECT sum(cost_pico) FROM results")
        #expect(abs(estimated - billed) * 100 <= billed * 5, "estimated \(estimated), billed \(billed)")
        let uncached = try integer(database, "SELECT sum((input_tokens + cached_input_tokens + cache_write_tokens) * 1000000 + output_tokens * 5000000) FROM results")
        #expect(billed * 100 < uncached * 40, "caching cut the bill by less than 60%: \(billed) against \(uncached)")
    }

    /// A batch of a model that caches automatically reads what its earlier calls left (the fake works 32 at a time, as the
    /// simulator does), each read charged at the batch's cached price, and the next plan counts on the hit rate it saw.
    @Test func aBatchReadsItsSharedPrefixAndTheNextPlanCountsOnTheHitRateItSaw() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "200", "--cache", "automatic", "--cache-min", "1024"])
        defer { server.stop() }
        let pricing = try await cachingFakePricing(port: server.port, batches: true)
        // Live calls of small cost forty times the batch's price (reads twice): otherwise the job would be cheaper live, its
        // prefix read at a tenth, than in a batch expected to read at a conservative 30%, as the plan rightly finds.
        let models = URL(fileURLWithPath: pricing).appendingPathComponent("models.json")
        try String(contentsOf: models, encoding: .utf8)
            .replacingOccurrences(of: #""prices": {"input": "0.1", "output": "0.4", "cached_input": "0.01"}"#, with: #""prices": {"input": "2", "output": "8", "cached_input": "0.04"}"#)
            .replacingOccurrences(of: #""batch_prices": {"input": "0.05", "output": "0.2", "cached_input": "0.005"}"#, with: #""batch_prices": {"input": "0.05", "output": "0.2", "cached_input": "0.02"}"#)
            .write(to: models, atomically: true, encoding: .utf8)
        let database = temporaryDatabase()
        #expect(try await purser(["submit", try prefixJob(100, model: "small", deadline: "week", anthropic: false).path], database: database, pricing: pricing).code == 0)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        let batched = try integer(database, "SELECT count(*) FROM results WHERE mode = 'batch'")
        #expect(batched == 100)
        // The first 32 of the batch miss; every later one reads the prefix.
        let read = try integer(database, "SELECT count(*) FROM results WHERE mode = 'batch' AND cached_input_tokens >= 1024")
        #expect(read == batched - 32)
        // Charged at the batch's rates: input $0.05, cached $0.02, output $0.20 per million.
        #expect(try integer(database, "SELECT count(*) FROM results WHERE cost_pico != input_tokens * 50000 + cached_input_tokens * 20000 + output_tokens * 200000") == 0)
        let catalog = try PricingCatalog.load(directory: pricing)
        let seen = try JobPlanning.cacheHits(try PurserDatabase.open(path: database), catalog: catalog, simulated: false)
        #expect(seen.batchHitBasisPoints(model: "fakeopenai/small") == Int64(read * 10_000 / batched))
    }
}
