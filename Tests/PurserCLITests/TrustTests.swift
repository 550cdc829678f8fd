import Foundation
import Testing
import PurserCore
import TestSupport

/// Credentials go only to the provider's origin, and a batch belongs to one database. A second fake on
/// 127.0.0.2 stands for "another origin": it counts every request that reaches it and those that carry a key.
@Suite(.serialized)
struct TrustTests {
    /// The other origin, and the provider that sends Purser there with `faults`.
    private func servers(_ faults: (String) -> [String]) throws -> (provider: FakeProviderProcess, elsewhere: FakeProviderProcess) {
        let elsewhere = try FakeProviderProcess(["--host", "127.0.0.2"])
        let provider = try FakeProviderProcess(["--batch-delay-ms", "200"] + faults("http://127.0.0.2:\(elsewhere.port)"))
        return (provider, elsewhere)
    }

    private func reached(_ server: FakeProviderProcess) throws -> (requests: Int, withCredentials: Int) {
        let stats = try server.stats()
        return (stats["requests"]?.intValue ?? -1, stats["with_credentials"]?.intValue ?? -1)
    }

    @Test func aLiveCallRedirectedToAnotherOriginIsNotFollowedInEitherDialect() async throws {
        let (provider, elsewhere) = try servers { ["--redirect", "live", "--redirect-to", $0] }
        defer { provider.stop(); elsewhere.stop() }
        let pricing = try fakePricing(port: provider.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(6)], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 1, "\(run.out)\n\(run.error)")
        // Both providers (one per dialect) were told to go elsewhere; neither followed.
        for name in ["fakeopenai", "fakeanthropic"] {
            #expect(run.error.contains("provider \(name) disabled for this run (check its base_url)"), "\(run.error)")
        }
        #expect(run.error.contains("to http://127.0.0.2:\(elsewhere.port), another origin; its key goes only to http://127.0.0.1:\(provider.port)"), "\(run.error)")
        #expect(try reached(elsewhere).requests == 0)
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'queued'") == 6, "the requests wait for a later run")
    }

    @Test(arguments: ["fakeopenai/small", "fakeanthropic/medium"])
    func aBatchUploadOrCreateRedirectedElsewhereIsRefusedAndNothingReachesTheOtherOrigin(model: String) async throws {
        let (provider, elsewhere) = try servers { ["--redirect", "create", "--redirect-to", $0] }
        defer { provider.stop(); elsewhere.stop() }
        let pricing = try fakePricing(port: provider.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(5, model: String(model.split(separator: "/")[1]))], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.error.contains("another origin; its key goes only to http://127.0.0.1:\(provider.port)"), "\(run.error)")
        #expect(try reached(elsewhere).requests == 0)
    }

    @Test(arguments: ["fakeopenai/small", "fakeanthropic/medium"])
    func aBatchPollRedirectedElsewhereIsRefusedAndTheBatchStaysForALaterRun(model: String) async throws {
        let (provider, elsewhere) = try servers { ["--redirect", "poll", "--redirect-to", $0] }
        defer { provider.stop(); elsewhere.stop() }
        let pricing = try fakePricing(port: provider.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(5, model: String(model.split(separator: "/")[1]))], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 1, "\(run.error)")
        #expect(run.error.contains("redirected GET /v1") && run.error.contains("another origin"), "\(run.error)")
        #expect(try reached(elsewhere).requests == 0)
        #expect(try integer(database, "SELECT count(*) FROM batches WHERE state = 'created'") == 1, "the batch waits at the provider")
    }

    @Test func aBatchCancelRedirectedElsewhereIsRefused() async throws {
        let (provider, elsewhere) = try servers { ["--batch-never-ends", "--redirect", "cancel", "--redirect-to", $0] }
        defer { provider.stop(); elsewhere.stop() }
        // A speculative batch that must be pulled back 10 s after submit, whose cancel is sent elsewhere.
        let pricing = try pulledBackSoonPricing(port: provider.port)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(4, model: "small", deadline: "20m")], database: database, pricing: pricing)
        try recordQuickBatches(database)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.error.contains("redirected POST /v1/batches/") && run.error.contains("another origin"), "\(run.error)")
        #expect(try reached(elsewhere).requests == 0)
    }

    @Test(arguments: ["fakeopenai/small", "fakeanthropic/medium"])
    func aResultsDownloadRedirectedElsewhereIsFollowedWithoutTheKey(model: String) async throws {
        let (provider, elsewhere) = try servers { ["--redirect", "download", "--redirect-to", $0] }
        defer { provider.stop(); elsewhere.stop() }
        let pricing = try fakePricing(port: provider.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(5, model: String(model.split(separator: "/")[1]))], database: database, pricing: pricing)
        let run = try await purser(["run", "--give-up-after", "2"], database: database, pricing: pricing)
        // The other origin has no such results: the batch is given up and its requests are served live.
        let seen = try reached(elsewhere)
        #expect(seen.requests > 0 && seen.withCredentials == 0, "\(seen)\n\(run.error)")
        #expect(run.code == 0, "\(run.error)")
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == 5)
    }

    @Test(arguments: ["relative", "foreign"])
    func anAnthropicResultsURLIsReadOnTheProvidersOwnOrigin(form: String) async throws {
        let (provider, elsewhere) = try servers { ["--results-url", form, "--foreign-origin", $0] }
        defer { provider.stop(); elsewhere.stop() }
        let pricing = try fakePricing(port: provider.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(20, model: "medium")], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        try expectBooksBalance(database, requests: 20)
        #expect(try query(database, "SELECT DISTINCT mode FROM results").map { $0[0] } == ["batch"])
        #expect(try reached(elsewhere).requests == 0)
        if form == "foreign" {
            #expect(run.error.contains("is not its origin http://127.0.0.1:\(provider.port)") && run.error.contains("its results are read from http://127.0.0.1:\(provider.port)/v1/messages/batches/"), "\(run.error)")
        }
    }

    @Test func aProviderErrorThatEchoesTheKeyIsMaskedWhereverItIsKeptOrShown() async throws {
        let secret = "sk-test-0123456789abcdef"
        let server = try FakeProviderProcess(["--echo-key", "--fail-5xx", "1"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try jobFile(2)], database: database, pricing: pricing, key: secret)
        let run = try await purser(["run", "--backoff-ms", "1"], database: database, pricing: pricing, key: secret)
        #expect(!(run.out + run.error).contains(secret))
        let kept = try query(database, "SELECT coalesce(group_concat(error, ' '), '') FROM attempts")[0][0]
            + (try query(database, "SELECT coalesce(group_concat(last_error, ' '), '') FROM requests")[0][0])
        #expect(kept.contains("fake server error (key [key masked])") && !kept.contains(secret), "\(kept)")
        let results = try await purser(["results", "1", "--format", "jsonl"], database: database, pricing: pricing, key: secret)
        #expect(!results.out.contains(secret))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: database))
        #expect(bytes.range(of: Data(secret.utf8)) == nil, "the key is nowhere in the database file")
    }

    // MARK: - A batch belongs to one database

    @Test func aRunKilledInsideItsCreateNeverAdoptsAnotherDatabasesBatchOnTheSameKey() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "1500"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let other = temporaryDatabase(), mine = temporaryDatabase()
        // Another project's database sends a batch of the same size first, and leaves it at the provider.
        try await purser(["submit", try batchJob(30, model: "medium")], database: other, pricing: pricing)
        #expect(try await purser(["run", "--detach"], database: other, pricing: pricing).code == 0)
        try await purser(["submit", try batchJob(30, model: "medium")], database: mine, pricing: pricing)
        let killed = try await purser(["run"], database: mine, pricing: pricing, environment: ["PURSER_TEST_CRASH_AFTER": "create"], executable: "purser-crash-test")
        #expect(killed.code == 137 || killed.code == 9, "\(killed.error)")
        let again = try await purser(["run"], database: mine, pricing: pricing)
        #expect(again.code == 0, "\(again.error)")
        // The other database's batch is never taken for this one's. Whether it is looked at at all depends on which of the
        // two has ended by the first poll (once this one's is found, the other is not read); when it is, it is left alone.
        #expect(!again.error.contains("msgbatch_1, created when this batch's create was cut off by a crash, holds its requests"), "\(again.error)")
        try expectBooksBalance(mine, requests: 30)
        // This database carried on with its own batch, the second one created, and stored only its own answers.
        #expect(try query(mine, "SELECT provider_batch_id FROM batches").map { $0[0] } == ["msgbatch_2"])
        #expect(try server.stats()["batches_created"]?.intValue == 2)
        let lines = try linesPerCustomID(server)
        #expect(lines.count == 60 && lines.values.allSatisfy { $0 == 1 }, "the two databases' custom ids never collide: \(lines.keys.sorted().prefix(4))")
        // The other database still gets its own batch's answers, once.
        #expect(try await purser(["run"], database: other, pricing: pricing).code == 0)
        try expectBooksBalance(other, requests: 30)
        #expect(try server.stats()["batches_created"]?.intValue == 2)
    }

    // MARK: - What a batch does not answer

    @Test func aLineMissingFromEveryBatchIsTriedAsOftenAsAnyRequestAndWhatItMayCostStaysCounted() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "100", "--cut-results-line"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(10, model: "medium")], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        // Each batch's first line comes back cut short: after the first batch, one request is left, alone in each
        // batch, until its attempts run out.
        #expect(run.code == 1, "\(run.error)")
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == 9)
        let failed = try query(database, "SELECT custom_id, attempts, last_error FROM requests WHERE state = 'failed'")
        #expect(failed.count == 1 && failed[0][1] == "8" && failed[0][2].contains("gave up after 8 attempts"), "\(failed)")
        #expect(try server.stats()["batches_created"]?.intValue == 8)
        // Every line the provider may have billed without answering is counted, unsettled, at its worst case.
        #expect(try integer(database, "SELECT count(*) FROM unsettled_charges") == 8)
        #expect(try integer(database, "SELECT count(*) FROM attempts WHERE outcome = 'missing'") == 8)
        // With no budget set, status, report and their JSON still show them.
        let status = try await purser(["status", "1"], database: database, pricing: pricing)
        #expect(status.out.contains("unsettled: 8 calls may have been billed with no answer stored"), "\(status.out)")
        let statusJSON = try JSONParser.parse(try await purser(["status", "1", "--json"], database: database, pricing: pricing).out)
        #expect(statusJSON.arrayValue?.first?.objectValue?["unsettled_calls"]?.intValue == 8)
        let report = try await purser(["report"], database: database, pricing: pricing)
        #expect(report.out.contains("unsettled: 8 calls may have been billed"), "\(report.out)")
        let reportJSON = try JSONParser.parse(try await purser(["report", "--format", "json"], database: database, pricing: pricing).out)
        #expect(reportJSON.objectValue?["unsettled"]?.objectValue?["calls"]?.intValue == 8)
    }

    @Test func anAnswerWhoseUsageCannotBeReadIsCountedAsMayBeBilledAndTriedNoMoreThanAnyRequest() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "100", "--unreadable-usage"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(2, model: "small")], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 1, "\(run.error)")
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'failed' AND last_error LIKE '%malformed response body%'") == 2)
        #expect(try server.stats()["batches_created"]?.intValue == 8)
        #expect(try integer(database, "SELECT count(*) FROM unsettled_charges") == 16, "each answered line may have been billed")
    }

    @Test func anOpenAICompatibleBatchServerWithoutAFileListStillGetsBatches() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "100", "--no-files-list"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(12, model: "small")], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        try expectBooksBalance(database, requests: 12)
        #expect(try query(database, "SELECT DISTINCT mode FROM results").map { $0[0] } == ["batch"])
        #expect(try server.stats()["calls"]?.intValue == 0, "nothing went live at full price")
    }

    // MARK: - Nothing bought is lost

    /// Runs `command` with `arguments` and waits; its exit code.
    private func system(_ command: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test func answersInFlightWhenTheDiskFillsUpAreKeptAndStoredByTheNextRunWithoutCallingAgain() async throws {
        // A small file system of its own (tmpfs; this machine's tests run as root, as CI does), filled while calls are out.
        let disk = testFiles.appendingPathComponent("purser-full-disk-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        #expect(try system("/bin/mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", disk]) == 0, "mounting a small tmpfs needs root")
        defer { _ = try? system("/bin/umount", ["-l", disk]) }
        let server = try FakeProviderProcess(["--latency-ms", "2500"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = disk + "/purser.db"
        try await purser(["submit", try jobFile(40)], database: database, pricing: pricing)
        let log = testFiles.appendingPathComponent("purser-full-disk-\(UUID().uuidString).log")
        let run = try startPurser(["run", "--concurrency", "40"], database: database, pricing: pricing, errorLog: log)
        // Once the run has set its recovery file's space aside and its calls are out, the disk is filled to the last byte.
        let recovery = database + ".recovery.\(run.processIdentifier)"
        for _ in 0..<500 where !FileManager.default.fileExists(atPath: recovery) { await pause(seconds: 0.01) }
        await pause(seconds: 1)
        let filler = disk + "/filler"
        _ = FileManager.default.createFile(atPath: filler, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: filler))
        let block = Data(count: 1 << 16)
        while (try? handle.write(contentsOf: block)) != nil {}
        try? handle.close()
        await exited(run)
        #expect(run.terminationStatus == 1, "the run says the database stopped taking writes")
        let kept = try String(contentsOfFile: recovery, encoding: .utf8).split(separator: "\n").count
        #expect(kept > 0, "the answers that could not be stored are in the recovery file")
        try FileManager.default.removeItem(atPath: filler)
        let again = try await purser(["run"], database: database, pricing: pricing)
        #expect(again.code == 0, "\(again.error)")
        #expect(again.error.contains("stored \(kept) paid answers an earlier run could not write"), "\(again.error)")
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == 40)
        #expect(try integer(database, "SELECT count(*) FROM results") == 40)
        // No answer was bought twice: every request was called once.
        let calls = try server.stats()["calls"]?.intValue
        #expect(calls == 40, "\(calls ?? -1) calls; first run: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")\n\(again.error)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: disk).filter { $0.contains(".recovery") }.isEmpty, "the recovery file is taken and removed")
    }

    // MARK: - A wait past the deadline

    @Test func aRetryAfterPastTheDeadlineMovesTheRequestOnOrFailsItInsteadOfWaiting() async throws {
        // Every call to the cheaper model is told to wait almost three hours (with spaces around the value).
        let server = try FakeProviderProcess(["--rate-limit-model", "small", "--retry-after", "10000"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        let job = testFiles.appendingPathComponent("purser-retry-after-\(UUID().uuidString).jsonl").path
        let lines = (0..<4).map { index in
            #"{"custom_id": "q\#(index)", "prompt": "Question \#(index)", "max_tokens": 20, "model": "small", "deadline": "1h"\#(index < 2 ? ", \"pin\": true" : "")}"#
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: job, atomically: true, encoding: .utf8)
        try await purser(["submit", job], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 1, "two pinned requests cannot be served in time: \(run.error)")
        // The unpinned ones moved to the other model at once; the pinned ones failed, saying why, instead of waiting.
        #expect(try query(database, "SELECT r.custom_id, s.model FROM results s JOIN requests r ON r.id = s.request_id ORDER BY 1").map { $0[0] + " " + $0[1] }
            == ["q2 fakeanthropic/medium", "q3 fakeanthropic/medium"])
        let failed = try query(database, "SELECT custom_id, last_error FROM requests WHERE state = 'failed' ORDER BY 1")
        #expect(failed.map { $0[0] } == ["q0", "q1"])
        #expect(failed.allSatisfy { $0[1].contains("fakeopenai asked to wait 2h") && $0[1].contains("past its latest start") }, "\(failed)")
        #expect(try server.stats()["early_retries"]?.intValue == 0)
    }
}
