import Foundation
import Synchronization
import Testing
import PurserCore
@testable import PurserSQLite
#if canImport(FoundationNetworking)
import FoundationNetworking
import TestSupport
#endif

@Suite(.serialized)
struct DispatchIntegrationTests {
    @Test func aCapAtHalfTheNeededSpendIsNeverPassedWith500CallsInFlight() async throws {
        let job = try jobFile(2_000, model: { _ in "small" })
        // What the job costs with no cap, measured in a database and against a server of their own.
        let needed: Int64
        do {
            let server = try FakeProviderProcess(["--latency-ms", "300"])
            defer { server.stop() }
            let pricing = try fakePricing(port: server.port)
            let database = temporaryDatabase()
            try await purser(["submit", job], database: database, pricing: pricing)
            #expect(try await purser(["run", "--concurrency", "500"], database: database, pricing: pricing).code == 0)
            needed = Int64(try query(database, "SELECT sum(cost_pico) FROM results")[0][0])!
        }
        let server = try FakeProviderProcess(["--latency-ms", "300"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", job], database: database, pricing: pricing)
        let cap = needed / 2
        try await purser(["budget", "set", Money(picoUSD: cap).exactUSD], database: database, pricing: pricing)

        // Two processes share the cap, 250 calls in flight each.
        let sampler = LedgerSampler(database: database)
        let runs = try (0..<2).map { _ in try startPurser(["run", "--concurrency", "250"], database: database, pricing: pricing) }
        for run in runs { await exited(run) }
        let findings = sampler.stop()
        // How many calls were in flight at once depends on the machine's speed, which tests never assert
        // (the benchmark measures it); what must hold is the cap, at every sample.
        #expect(findings.samples > 20)
        #expect(findings.highest <= cap, "charges + reservations reached \(findings.highest) against a cap of \(cap)")
        let charged = Int64(try query(database, "SELECT sum(cost_pico) FROM results")[0][0])!
        #expect(charged <= cap && charged * 10 >= cap * 9, "the cap held, and was used: \(charged) of \(cap)")
        let held = Int(try query(database, "SELECT count(*) FROM requests WHERE state = 'held'")[0][0])!
        let served = Int(try query(database, "SELECT count(*) FROM results")[0][0])!
        #expect(held > 0 && held + served == 2_000)
        #expect(try query(database, "SELECT count(*) FROM reservations")[0][0] == "0")

        // Raising the cap releases the held requests, and the next run finishes them.
        try await purser(["budget", "set", Money(picoUSD: needed * 2).exactUSD], database: database, pricing: pricing)
        #expect(try await purser(["run", "--concurrency", "500"], database: database, pricing: pricing).code == 0)
        #expect(try query(database, "SELECT state, count(*) FROM requests GROUP BY state").map { $0[0] + " " + $0[1] } == ["succeeded 2000"])
        #expect(Int64(try query(database, "SELECT sum(cost_pico) FROM results")[0][0])! == needed)
        #expect(Int64(try query(database, "SELECT sum(charged_pico) FROM monthly_charges")[0][0])! == needed)
    }

    @Test func everyFaultIsRetriedUntilEachRequestSucceedsExactlyOnce() async throws {
        let server = try FakeProviderProcess([
            "--fail-5xx", "0.10", "--fail-429", "0.05", "--retry-after", "1", "--hang", "0.02", "--hang-seconds", "3", "--malformed", "0.01",
            "--fail-529", "0.02", "--drop", "0.01", "--seed", "7",
        ])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(300)], database: database, pricing: pricing)
        let run = try await purser(["run", "--timeout", "1", "--concurrency", "32", "--backoff-ms", "50", "--cooldown", "1"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        #expect(run.out.hasPrefix("run finished in "))
        #expect(run.out.contains(": 300 succeeded, 0 failed, 0 expired; "))
        #expect(try query(database, "SELECT state, count(*) FROM requests GROUP BY state").map { $0[0] + " " + $0[1] } == ["succeeded 300"])
        #expect(try query(database, "SELECT count(*), count(DISTINCT request_id) FROM results")[0][0...1] == ["300", "300"])
        let stats = try server.stats()
        #expect(stats["early_retries"]?.intValue == 0, "a call came before its Retry-After")
        // Every call the server saw is an attempt Purser recorded, and the faults really happened.
        let attempts = try query(database, "SELECT count(*), sum(outcome = 'retryable') FROM attempts")[0]
        #expect(Int(attempts[0]) == stats["calls"]?.intValue)
        #expect(Int(attempts[1])! >= 30)
        // Each request got exactly one successful answer from the server.
        #expect(stats["successes"]?.objectValue?.members.allSatisfy { $0.value.intValue == 1 } == true)
        #expect(stats["successes"]?.objectValue?.members.count == 300)
    }

    @Test func anAuthErrorDisablesTheProviderAndItsRequestsStayQueued() async throws {
        let server = try FakeProviderProcess(["--auth-fail"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(20, model: { _ in "small" })], database: database, pricing: pricing)
        let run = try await purser(["run", "--timeout", "2"], database: database, pricing: pricing, key: "wrong-key")
        #expect(run.code == 1, "a run that could use no provider did not do its job")
        #expect(run.error.contains("provider fakeopenai disabled for this run (check FAKE_KEY): Incorrect API key provided"))
        #expect(run.out.contains("note: provider fakeopenai cannot be used in this run: HTTP 401: Incorrect API key provided"))
        #expect(run.error.hasSuffix("Error: provider fakeopenai could not be used: HTTP 401: Incorrect API key provided\n"))
        #expect(try query(database, "SELECT state, count(*) FROM requests GROUP BY state").map { $0[0] + " " + $0[1] } == ["queued 20"])
        #expect(!run.out.contains("wrong-key") && !run.error.contains("wrong-key"), "the key must never be printed")
        #expect(try query(database, "SELECT count(*) FROM attempts WHERE error LIKE '%wrong-key%'")[0][0] == "0")
    }

    @Test func exhaustedQuotaPausesTheProviderLikeAnAuthError() async throws {
        let server = try FakeProviderProcess(["--quota-fail"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(10, model: { _ in "small" })], database: database, pricing: pricing)
        let run = try await purser(["run", "--timeout", "2"], database: database, pricing: pricing)
        #expect(run.error.contains("provider fakeopenai disabled for this run (quota or spend limit)"))
        #expect(try query(database, "SELECT state, count(*) FROM requests GROUP BY state").map { $0[0] + " " + $0[1] } == ["queued 10"])
        #expect(try server.stats()["calls"]?.intValue ?? 0 <= 12, "a disabled provider is not called again")
    }

    @Test func aModelThatRefusesTheRequestFallsBackToTheNext() async throws {
        let server = try FakeProviderProcess(["--refuse-model", "small"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        // Not pinned this time, so the planner may move them.
        let file = try jobFile(10, model: { _ in "small" })
        let unpinned = try String(contentsOfFile: file, encoding: .utf8).replacingOccurrences(of: #", "pin": true"#, with: "")
        try unpinned.write(toFile: file, atomically: true, encoding: .utf8)
        try await purser(["submit", file], database: database, pricing: pricing)
        let run = try await purser(["run", "--timeout", "2"], database: database, pricing: pricing)
        #expect(run.out.contains(": 10 succeeded, 0 failed"), "\(run.out)\(run.error)")
        #expect(run.out.contains("10 fallbacks"))
        #expect(try query(database, "SELECT model, count(*) FROM results GROUP BY model").map { $0[0] + " " + $0[1] } == ["fakeanthropic/medium 10"])
        #expect(try query(database, "SELECT count(*) FROM attempts WHERE outcome = 'model_refused' AND model = 'fakeopenai/small'")[0][0] == "10")
    }

    @Test func workersKilledMidJobLoseNothingAndDuplicateNothing() async throws {
        let server = try FakeProviderProcess(["--latency-ms", "150"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(400)], database: database, pricing: pricing)
        try await purser(["budget", "set", "100"], database: database, pricing: pricing)
        var random = SplitMix64(seed: 20_261_124)
        for _ in 0..<4 {
            let worker = try startPurser(["run", "--lease", "1", "--concurrency", "24", "--timeout", "5"], database: database, pricing: pricing)
            await pause(seconds: 0.2 + Double(random.below(600)) / 1000)
            kill(worker.processIdentifier, SIGKILL)
            await exited(worker)
        }
        let finished = try query(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'")[0][0]
        #expect(Int(finished)! < 400, "the kills came too late to test anything")
        let run = try await purser(["run", "--lease", "1", "--concurrency", "24", "--timeout", "5"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        #expect(try query(database, "SELECT state, count(*) FROM requests GROUP BY state").map { $0[0] + " " + $0[1] } == ["succeeded 400"])
        // One result per request, and the job's charges are exactly the results' costs.
        #expect(try query(database, "SELECT count(*), count(DISTINCT request_id) FROM results")[0][0...1] == ["400", "400"])
        let attempts = try query(database, "SELECT count(*) FROM attempts WHERE outcome = 'succeeded'")[0][0]
        #expect(attempts == "400", "a success was recorded twice")
        // The killed workers' reservations went with their leases, and the ledger's totals are the results' costs.
        #expect(try query(database, "SELECT count(*) FROM reservations")[0][0] == "0")
        #expect(try query(database, "SELECT (SELECT sum(charged_pico) FROM monthly_charges) = (SELECT sum(cost_pico) FROM results)")[0][0] == "1")
        // Requests whose worker died were counted and retried.
        #expect(Int(try query(database, "SELECT count(*) FROM requests WHERE attempts > 1")[0][0])! > 0)
    }

    @Test func twoProcessesOnOneDatabaseNeverCallTwiceForOneRequest() async throws {
        let server = try FakeProviderProcess(["--latency-ms", "20"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(300)], database: database, pricing: pricing)
        let logs = (0..<2).map { testFiles.appendingPathComponent("purser-two-\($0)-\(UUID().uuidString).txt") }
        let first = try startPurser(["run", "--concurrency", "8"], database: database, pricing: pricing, errorLog: logs[0])
        let second = try startPurser(["run", "--concurrency", "8"], database: database, pricing: pricing, errorLog: logs[1])
        await exited(first)
        await exited(second)
        let errors = logs.map { (try? String(contentsOf: $0, encoding: .utf8)) ?? "" }
        #expect(first.terminationStatus == 0 && second.terminationStatus == 0, "\(errors)")
        #expect(try query(database, "SELECT state, count(*) FROM requests GROUP BY state").map { $0[0] + " " + $0[1] } == ["succeeded 300"])
        let calls = try #require(try server.stats()["by_request"]?.objectValue)
        #expect(calls.members.count == 300)
        #expect(calls.members.allSatisfy { $0.value.intValue == 1 }, "a request was called by both processes")
        // Both processes did part of the work.
        #expect(try query(database, "SELECT count(DISTINCT worker) FROM attempts")[0][0] == "2")
    }

    @Test func sigtermLetsCallsInFlightFinishAndReleasesTheRest() async throws {
        let server = try FakeProviderProcess(["--latency-ms", "1500"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(40)], database: database, pricing: pricing)
        let worker = try startPurser(["run", "--concurrency", "10", "--grace", "10"], database: database, pricing: pricing)
        await pause(seconds: 0.7)
        kill(worker.processIdentifier, SIGTERM)
        await exited(worker)
        #expect(worker.terminationStatus == 0)
        let states = try query(database, "SELECT state, count(*) FROM requests GROUP BY state").map { $0[0] + " " + $0[1] }
        #expect(states == ["queued 30", "succeeded 10"], "the ten calls in flight finish; nothing stays running")
        #expect(try query(database, "SELECT count(*) FROM requests WHERE attempts > 0 AND state = 'queued'")[0][0] == "0", "released requests are not counted as tried")
    }

    /// "Every result lives in one SQLite file": once a run has exited, the file alone holds every result, with no log
    /// left beside it. Its last connection writes the log into the file as it closes; a run whose signal handler still
    /// held the run when the process exited never closed it, and a copy of the file alone lacked its last results.
    @Test func aRunLeavesEveryResultInTheDatabaseFileAlone() async throws {
        let server = try FakeProviderProcess(["--latency-ms", "5"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(300, model: { _ in "small" })], database: database, pricing: pricing)
        #expect(try await purser(["run", "--concurrency", "50"], database: database, pricing: pricing).code == 0)
        #expect(!FileManager.default.fileExists(atPath: database + "-wal"))
        let copy = temporaryDatabase()
        try FileManager.default.copyItem(atPath: database, toPath: copy)
        #expect(try query(copy, "SELECT count(*) FROM results")[0][0] == "300")
    }

    @Test func resultsReadLikeTheProvidersBatchOutputAndAddUpExactly() async throws {
        let server = try FakeProviderProcess(["--fail-5xx", "0.2", "--seed", "3"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(30)], database: database, pricing: pricing)
        try await purser(["run", "--backoff-ms", "20", "--cooldown", "1"], database: database, pricing: pricing)
        let openai = try await purser(["results", "1"], database: database, pricing: pricing)
        #expect(openai.error == "30 results written\n")
        let lines = openai.out.split(separator: "\n").map { try! JSONParser.parse(String($0)).objectValue! }
        #expect(lines.count == 30)
        for line in lines {
            #expect(line.keys == ["id", "custom_id", "response", "error", "purser"])
            let response = try #require(line["response"]?.objectValue)
            #expect(response.keys == ["status_code", "request_id", "body"])
            #expect(response["body"]?.objectValue?["choices"]?.arrayValue?.count == 1, "Anthropic answers are shown as chat completions")
        }
        let anthropic = try await purser(["results", "1", "--format", "anthropic"], database: database, pricing: pricing)
        let first = try JSONParser.parse(String(anthropic.out.split(separator: "\n")[0])).objectValue!
        #expect(first["result"]?.objectValue?["type"]?.stringValue == "succeeded")
        #expect(first["result"]?.objectValue?["message"]?.objectValue?["type"]?.stringValue == "message")
        // The sum of the lines' costs is the job's spend, to the last pico-dollar, in every format.
        let status = try JSONParser.parse(try await purser(["status", "1", "--json"], database: database, pricing: pricing).out).arrayValue![0].objectValue!
        let spent = try Money(usd: status["spent_usd"]!.stringValue!)
        #expect(spent > .zero)
        let jsonl = try await purser(["results", "1", "--format", "jsonl"], database: database, pricing: pricing).out
        let jsonlTotal = try jsonl.split(separator: "\n").reduce(Money.zero) { $0 + (try Money(usd: try JSONParser.parse(String($1)).objectValue!["cost_usd"]!.stringValue!)) }
        #expect(jsonlTotal == spent)
        let csv = try await purser(["results", "1", "--format", "csv"], database: database, pricing: pricing).out.split(separator: "\n")
        #expect(csv[0] == Substring(ResultFormat.csvHeader))
        let csvTotal = try csv.dropFirst().reduce(Money.zero) { $0 + (try Money(usd: String($1.split(separator: ",")[8]))) }
        #expect(csvTotal == spent)
    }

    @Test func watchServesJobsSubmittedWhileItRuns() async throws {
        let server = try FakeProviderProcess(["--latency-ms", "20"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(5)], database: database, pricing: pricing)
        let watcher = try startPurser(["run", "--watch", "--concurrency", "4"], database: database, pricing: pricing)
        defer { if watcher.isRunning { kill(watcher.processIdentifier, SIGKILL) } }
        func succeeded() throws -> Int { Int(try query(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'")[0][0])! }
        func waitFor(_ count: Int) async throws -> Bool {
            for _ in 0..<200 where try succeeded() < count { await pause(seconds: 0.05) }
            return try succeeded() == count
        }
        await #expect(try waitFor(5), "the first job is served")
        #expect(watcher.isRunning, "--watch keeps running when the queue is empty")
        try await purser(["submit", try jobFile(7)], database: database, pricing: pricing)
        await #expect(try waitFor(12), "a job submitted later is planned and served by the same run")
        kill(watcher.processIdentifier, SIGTERM)
        await exited(watcher)
        #expect(watcher.terminationStatus == 0)
        #expect(try query(database, "SELECT count(DISTINCT worker) FROM attempts")[0][0] == "1")
    }

    @Test func cancelStopsWhatHasNotStartedAndRetryQueuesItAgain() async throws {
        let server = try FakeProviderProcess([])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(12)], database: database, pricing: pricing)
        #expect(try await purser(["cancel", "1"], database: database, pricing: pricing).out == "job 1 \"purser-job\": 12 requests cancelled\n".replacingOccurrences(
            of: "purser-job", with: try query(database, "SELECT name FROM jobs")[0][0]))
        let idle = try await purser(["run"], database: database, pricing: pricing)
        #expect(idle.out.contains(": 0 succeeded"))
        #expect(try await purser(["retry", "1"], database: database, pricing: pricing).out.contains(": 12 requests queued again"))
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.out.contains(": 12 succeeded, 0 failed"))
    }

    // MARK: - Hardening

    @Test func parallelFirstSubmitsToANewDatabaseStoreEveryJob() async throws {
        let pricing = try fakePricing(port: 9)
        for round in 0..<20 {
            let database = temporaryDatabase()
            let files = try (0..<4).map { index in try jobFile(3 + index, model: { _ in "small" }) }
            let processes = try files.map { file in try startPurser(["submit", file], database: database, pricing: pricing) }
            for process in processes { await exited(process) }
            #expect(processes.allSatisfy { $0.terminationStatus == 0 }, "round \(round): a submit failed")
            let jobs = try query(database, "SELECT count(*), sum(request_count) FROM jobs")[0]
            #expect(jobs == ["4", "18", "", "", "", "", "", ""], "round \(round): \(jobs)")
            #expect(try query(database, "SELECT count(*) FROM requests")[0][0] == "18")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: testFiles.path)
                .filter { $0.hasPrefix(URL(fileURLWithPath: database).lastPathComponent + ".building") }
            #expect(leftovers.isEmpty, "round \(round): \(leftovers)")
        }
    }

    @Test func aStoredBodyThatNoLongerReadsFailsItsRequestInsteadOfSendingAnEmptyOne() async throws {
        let server = try FakeProviderProcess([])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(3)], database: database, pricing: pricing)
        try PurserDatabase.open(path: database).execute("UPDATE request_bodies SET body = 'not json' WHERE request_id = 2")
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(try query(database, "SELECT id, state FROM requests ORDER BY id").map { $0[0] + " " + $0[1] } == ["1 succeeded", "2 failed", "3 succeeded"])
        #expect(try query(database, "SELECT last_error FROM requests WHERE id = 2")[0][0].contains("stored body is not a JSON object"))
        #expect(try server.stats()["calls"]?.intValue == 2, "\(run.error)")
    }

    @Test func anUnreachableEndpointEndsTheRunWithItsError() async throws {
        // A port nothing listens on: bound, never listened on, and held until the test ends, so that no server another test
        // starts meanwhile can be given it (connections to it are refused).
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let pricing = try fakePricing(port: port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(10)], database: database, pricing: pricing)
        let run = try await purser(["run", "--give-up-after", "2", "--backoff-ms", "100", "--concurrency", "4"], database: database, pricing: pricing)
        #expect(run.code == 1)
        #expect(run.error.contains("Error: provider fake") && run.error.contains("connection refused by 127.0.0.1:\(port)"), "\(run.error)")
        #expect(run.out.contains("cannot be used in this run: unreachable for"))
        // Nothing failed or was lost: the requests wait for a run that can reach the provider.
        #expect(try query(database, "SELECT count(*) FROM requests WHERE state IN ('queued', 'waiting')")[0][0] == "10")
        let errors = try query(database, "SELECT DISTINCT last_error FROM requests").map { $0[0] }
        #expect(errors.allSatisfy { $0.contains("connection refused") }, "\(errors)")
    }

    @Test func aRunTakesOverTheLeasesOfAKilledRunAtOnceAndKeepsItsCallsCounted() async throws {
        let server = try FakeProviderProcess(["--latency-ms", "400"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(60)], database: database, pricing: pricing)
        try await purser(["budget", "set", "100"], database: database, pricing: pricing)
        // The default lease (three minutes): without a takeover the next run would wait that long.
        let worker = try startPurser(["run", "--concurrency", "8"], database: database, pricing: pricing)
        for _ in 0..<100 where Int(try query(database, "SELECT count(*) FROM requests WHERE state = 'running'")[0][0])! == 0 {
            await pause(seconds: 0.05)
        }
        kill(worker.processIdentifier, SIGKILL)
        await exited(worker)
        let leased = Int(try query(database, "SELECT count(*) FROM requests WHERE state = 'running'")[0][0])!
        #expect(leased > 0 && leased <= 16, "a run claims no more than its concurrency ahead of its calls (\(leased))")
        // What the provider saw before the kill, and what was stored of it.
        let called = Set(try #require(try server.stats()["by_request"]?.objectValue).members.map(\.key))
        let answered = Set(try query(database, "SELECT id FROM requests WHERE state = 'succeeded'").map { $0[0] })
        let run = try await purser(["run", "--concurrency", "8"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        #expect(run.error.contains("took over \(leased) requests leased by process \(worker.processIdentifier)"), "\(run.error)")
        #expect(try query(database, "SELECT state, count(*) FROM requests GROUP BY state").map { $0[0] + " " + $0[1] } == ["succeeded 60"])
        // The killed run's calls may have been billed: every call the provider saw and no answer was stored for stays
        // counted, unsettled. Those it had claimed and never called do not: no more than its 8 calls in flight count.
        let unsettled = Set(try query(database, "SELECT request_id FROM unsettled_charges").map { $0[0] })
        #expect(called.subtracting(answered).isSubset(of: unsettled), "called \(called.sorted()), answered \(answered.sorted()), unsettled \(unsettled.sorted())")
        #expect(!unsettled.isEmpty && unsettled.count <= 8, "\(unsettled.count) unsettled")
        if unsettled.count < leased {
            #expect(run.error.contains("\(unsettled.count) had been called and may have been billed") && run.error.contains("the other \(leased - unsettled.count) were claimed and never called"), "\(run.error)")
        }
        let notes = URL(fileURLWithPath: database).lastPathComponent + ".started."
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: testFiles.path).filter { $0.hasPrefix(notes) }
        #expect(leftovers.isEmpty, "the killed run's notes and the second run's are removed: \(leftovers)")
        let show = try await purser(["budget", "show"], database: database, pricing: pricing)
        #expect(show.out.contains("unsettled") && show.out.contains("unsettled: \(unsettled.count) calls may have been billed with no answer stored (cut off by a crash or a forced stop"))
        let report = try await purser(["report"], database: database, pricing: pricing)
        #expect(report.out.contains(" unsettled + "), "\(report.out)")
        let json = try await purser(["report", "--json"], database: database, pricing: pricing)
        #expect(json.out.contains("\"unsettled_usd\""))
    }

    @Test func benchmarkHelpIsHelpAndRunsNothing() async throws {
        let process = Process()
        process.executableURL = products.appendingPathComponent("purser-bench")
        process.arguments = ["--help"]
        let output = testFiles.appendingPathComponent("bench-help-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: output)
        try process.run()
        await exited(process)
        #expect(process.terminationStatus == 0)
        #expect(try String(contentsOf: output, encoding: .utf8).hasPrefix("OVERVIEW: Purser's benchmark"))
    }
}

/// Issue 21: each connection holds a socket, so a run raises its soft limit on open files to the hard limit at start and
/// opens no more connections than that leaves room for, saying so when `--concurrency` asks for more; the calls beyond
/// them wait for a connection rather than fail.
@Test func aRunRaisesItsOpenFileLimitAndOpensNoMoreConnectionsThanItCanHold() async throws {
    let server = try FakeProviderProcess(["--latency-ms", "300"])
    defer { server.stop() }
    let pricing = try fakePricing(port: server.port)
    /// `purser run --concurrency N` under a shell's `ulimit` flags: its exit code and what it wrote to standard error.
    func run(ulimit flags: String, concurrency: Int) async throws -> (code: Int32, error: String) {
        let database = temporaryDatabase()
        #expect(try await purser(["submit", try jobFile(120)], database: database, pricing: pricing).code == 0)
        let log = testFiles.appendingPathComponent("ulimit-\(UUID().uuidString).txt")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", "ulimit \(flags) && exec \"$0\" run --concurrency \(concurrency)", products.appendingPathComponent("purser").path]
        var environment = ProcessInfo.processInfo.environment
        (environment["PURSER_DB"], environment["PURSER_PRICING"], environment["FAKE_KEY"]) = (database, pricing, "test-key")
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        await exited(process)
        return (process.terminationStatus, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }
    // A hard limit of 100 open files leaves 36 beside the 64 kept for the rest: 34 connections and the HTTP engine's
    // shard for them (two descriptors). 500 calls asked for go 34 at a time over the fake's HTTP/1.1, every request
    // served.
    let capped = try await run(ulimit: "-n 100", concurrency: 500)
    #expect(capped.code == 0, "\(capped.error)")
    #expect(capped.error.contains("warning: --concurrency 500 is more connections than this process can hold open: its limit on open files is 100"), "\(capped.error)")
    #expect(capped.error.contains("over HTTP/1.1 at most 34 go at once"), "\(capped.error)")
    let stats = try server.stats()
    let peak = try #require(stats["peak_in_flight"]?.intValue), calls = try #require(stats["calls"]?.intValue)
    #expect(peak <= 34, "the fake saw \(peak) calls at once")
    #expect(calls >= 120, "the fake answered \(calls) calls of 120 requests")
    // A soft limit of 120 under a higher hard one is raised: 100 calls at once need no cap.
    var hard = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &hard)
    if hard.rlim_max >= 400 {
        let raised = try await run(ulimit: "-S -n 120", concurrency: 100)
        #expect(raised.code == 0 && !raised.error.contains("warning: --concurrency"), "\(raised.error)")
    }
}
