import Foundation
import Testing
import PurserCore
import TestSupport

@Suite(.serialized)
struct BatchIntegrationTests {
    @Test(arguments: ["fakeopenai/small", "fakeanthropic/medium"])
    func eachBatchDialectServesEveryRequestThroughBatchesExactlyOnce(model: String) async throws {
        // A tenth of the lines error in each batch (500): those go into the next batch.
        let server = try FakeProviderProcess(["--batch-delay-ms", "300", "--batch-fail-lines", "0.1"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(60, model: model.split(separator: "/").last.map(String.init)!)], database: database, pricing: pricing)
        let plan = try await purser(["plan", "1"], database: database, pricing: pricing)
        #expect(plan.out.contains("\(model)") && plan.out.contains(" batch "), "\(plan.out)")
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        try expectBooksBalance(database, requests: 60)
        #expect(try query(database, "SELECT DISTINCT mode FROM results").map { $0[0] } == ["batch"])
        // Nothing went live, and a request was sent again only after its line errored.
        #expect(try server.stats()["calls"]?.intValue == 0)
        let errored = try integer(database, "SELECT count(*) FROM attempts WHERE outcome = 'retryable'")
        let lines = try linesPerRequest(server)
        #expect(lines.count == 60 && lines.values.reduce(0, +) == 60 + errored)
        // Results carry the user's own ids, charged at batch prices (half the list prices here).
        #expect(try integer(database, "SELECT count(*) FROM requests r JOIN results s ON s.request_id = r.id WHERE r.custom_id LIKE 'user-%'") == 60)
        let status = try await purser(["status", "1"], database: database, pricing: pricing)
        #expect(status.out.contains("by mode: batch 60"))
    }

    @Test(arguments: [("upload", "fakeopenai/small"), ("create", "fakeopenai/small"), ("ended", "fakeopenai/small"), ("results", "fakeopenai/small"),
        ("create", "fakeanthropic/medium"), ("ended", "fakeanthropic/medium"), ("results", "fakeanthropic/medium")])
    func aRunKilledAtAnyBatchStepIsCarriedOnWithoutSendingTwiceOrStoringTwice(step: String, model: String) async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "200"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        // When the kill comes while results are stored, more lines than one chunk of them, so that some are stored and some not.
        let requests = step == "results" ? BatchResultFile.chunkLines + 200 : 300
        try await purser(["submit", try batchJob(requests, model: model.split(separator: "/").last.map(String.init)!)], database: database, pricing: pricing)
        let killed = try await purser(["run"], database: database, pricing: pricing, environment: ["PURSER_TEST_CRASH_AFTER": step], executable: "purser-crash-test")
        #expect(killed.code == 137 || killed.code == 9, "the first run died at \(step): \(killed.code) \(killed.error)")
        if step == "results" {
            let stored = try integer(database, "SELECT count(*) FROM results")
            #expect(stored > 0 && stored < requests, "some results were stored before the kill (\(stored))")
        }
        // `purser` itself has no such fault: with the same variable set, it carries the batch on to the end.
        let again = try await purser(["run"], database: database, pricing: pricing, environment: ["PURSER_TEST_CRASH_AFTER": step])
        #expect(again.code == 0, "\(again.error)")
        try expectBooksBalance(database, requests: requests)
        #expect(try server.stats()["batches_created"]?.intValue == 1, "the batch was created once")
        #expect(try server.stats()["files_uploaded"]?.intValue == (model.hasPrefix("fakeopenai") ? 1 : 0))
        let lines = try linesPerRequest(server)
        #expect(lines.count == requests && lines.values.allSatisfy { $0 == 1 }, "every request was submitted once")
    }

    @Test func aBatchThatExpiresIsServedLiveBeforeTheDeadline() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "200", "--batch-expire-lines", "1"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        // Just more than the 24-hour window and the hour's margin: planned by batch.
        try await purser(["submit", try batchJob(30, model: "small", deadline: "26h")], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        try expectBooksBalance(database, requests: 30)
        #expect(try integer(database, "SELECT count(*) FROM attempts WHERE outcome = 'expired' AND mode = 'batch'") == 30)
        #expect(try query(database, "SELECT DISTINCT mode FROM results").map { $0[0] } == ["sync"])
        #expect(try integer(database, "SELECT count(*) FROM results s JOIN requests r ON r.id = s.request_id WHERE s.finished_at > r.deadline_at") == 0)
        #expect(try server.stats()["calls"]?.intValue == 30)
    }

    @Test func aDetachedRunLeavesItsBatchAtTheProviderAndTheNextRunFinishesIt() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "1500"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(20, model: "small")], database: database, pricing: pricing)
        let detached = try await purser(["run", "--detach"], database: database, pricing: pricing)
        #expect(detached.code == 0, "\(detached.error)")
        #expect(detached.out.contains("20 requests are in batches"), "\(detached.out)")
        #expect(try integer(database, "SELECT count(*) FROM results") == 0)
        let status = try await purser(["status", "1"], database: database, pricing: pricing)
        #expect(status.out.contains("batch 1: 20 requests for fakeopenai/small at fakeopenai as batch_"), "\(status.out)")
        // Cancelling the job leaves requests already at the provider to their batch, and says so.
        let cancel = try await purser(["cancel", "1"], database: database, pricing: pricing)
        #expect(cancel.out.contains("0 requests cancelled; 20 in batches will finish with their batch"), "\(cancel.out)")
        let again = try await purser(["run"], database: database, pricing: pricing)
        #expect(again.code == 0, "\(again.error)")
        try expectBooksBalance(database, requests: 20)
        #expect(try server.stats()["batches_created"]?.intValue == 1)
        #expect(try server.stats()["calls"]?.intValue == 0)
    }

    @Test func aBatchTheProviderRefusesToCreateIsClosedAndItsRequestsServedLive() async throws {
        let server = try FakeProviderProcess(["--batch-create-fail", "400"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(10, model: "small")], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        #expect(run.error.contains("the batch API refused it (HTTP 400: fake refusal of a batch create); its 10 requests are served live"), "\(run.error)")
        try expectBooksBalance(database, requests: 10)
        #expect(try query(database, "SELECT DISTINCT mode FROM results").map { $0[0] } == ["sync"])
        #expect(try server.stats()["batches_created"]?.intValue == 0)
        #expect(try server.stats()["calls"]?.intValue == 10)
        // Nothing was created, so nothing can have been billed.
        #expect(try integer(database, "SELECT count(*) FROM unsettled_charges") == 0)
    }

    @Test func aBatchItsProviderNoLongerAnswersForIsGivenUpAndServedLive() async throws {
        // Every look at the batch answers 404: after the give-up time the run stops waiting on it.
        let server = try FakeProviderProcess(["--batch-status-fail", "404"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(10, model: "medium")], database: database, pricing: pricing)
        // Looked at every 5 s: refused at 0, 5 and 10 s, given up at the third (6 s after the first).
        let run = try await purser(["run", "--give-up-after", "6"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        #expect(run.error.contains("given up: its 10 requests are served live, and what it may have billed stays counted as unsettled"), "\(run.error)")
        // The same refusal is said once a minute at most, not at every look.
        #expect(run.error.components(separatedBy: "fake refusal: no such batch").count - 1 == 2, "once on its own, once in giving up: \(run.error)")
        try expectBooksBalance(database, requests: 10)
        #expect(try query(database, "SELECT DISTINCT mode FROM results").map { $0[0] } == ["sync"])
        #expect(try server.stats()["batches_created"]?.intValue == 1)
        // The batch may still bill: its requests' worst cases stay counted against the caps.
        #expect(try integer(database, "SELECT count(*) FROM unsettled_charges") == 10)
    }

    @Test func aBatchThatFailsValidationSaysWhichLineAndWhyAndItsRequestsAreServedLive() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "200", "--batch-validation-fail"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(20, model: "small")], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        #expect(run.error.contains("the batch failed validation at line 1: invalid_json_line"), "\(run.error)")
        try expectBooksBalance(database, requests: 20)
        // Sent once by batch (which the provider refused whole, so nothing was billed), then once live.
        #expect(try server.stats()["batches_created"]?.intValue == 1)
        #expect(try server.stats()["calls"]?.intValue == 20)
        #expect(try query(database, "SELECT DISTINCT mode FROM results").map { $0[0] } == ["sync"])
        #expect(try query(database, "SELECT provider_errors FROM batches")[0][0].contains("This line is not parseable"))
    }

    @Test func aLineTheBatchModelRefusesMovesToTheNextModel() async throws {
        // The cheap model refuses every request (400, context length), in its batch and live; the next serves them.
        let server = try FakeProviderProcess(["--batch-delay-ms", "200", "--refuse-model", "small"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        let job = testFiles.appendingPathComponent("purser-batch-refused-\(UUID().uuidString).jsonl").path
        try (0..<12).map { #"{"custom_id": "user-\#($0)", "prompt": "Question \#($0)", "max_tokens": 20, "deadline": "week"}"# }
            .joined(separator: "\n").write(toFile: job, atomically: true, encoding: .utf8)
        try await purser(["submit", job], database: database, pricing: pricing)
        let plan = try await purser(["plan", "1"], database: database, pricing: pricing)
        #expect(plan.out.contains("fakeopenai/small") && plan.out.contains(" batch "), "\(plan.out)")
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        #expect(run.error.contains("12 moved to another model"), "\(run.error)")
        try expectBooksBalance(database, requests: 12)
        #expect(try integer(database, "SELECT count(*) FROM attempts WHERE mode = 'batch' AND outcome = 'model_refused' AND status = 400") == 12)
        // With a week to spare the next model serves them by batch too, and the model that refused them is not tried again.
        let served = try query(database, "SELECT DISTINCT model, mode FROM results").map { Array($0.prefix(2)) }
        let batches = try query(database, "SELECT model, count(*) FROM batches GROUP BY model ORDER BY model").map { Array($0.prefix(2)) }
        #expect(served == [["fakeanthropic/medium", "batch"]], "\(served)")
        #expect(batches == [["fakeanthropic/medium", "1"], ["fakeopenai/small", "1"]], "\(batches)")
        let lines = try linesPerRequest(server)
        #expect(lines.count == 12 && lines.values.allSatisfy { $0 == 2 }, "each request went into one batch of each model: \(lines)")
        #expect(try server.stats()["calls"]?.intValue == 0)
    }

    @Test func aSpeculativeBatchThatDoesNotEndIsCancelledAndServedLiveInTime() async throws {
        let server = try FakeProviderProcess(["--batch-never-ends", "--batch-cancel-ms", "100"])
        defer { server.stop() }
        let pricing = try pulledBackSoonPricing(port: server.port)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(10, model: "small", deadline: "20m")], database: database, pricing: pricing)
        // Five batches of this model finished within a second before: evidence that a batch may beat the deadline.
        try recordQuickBatches(database)
        let plan = try await purser(["plan", "1"], database: database, pricing: pricing)
        #expect(plan.out.contains(" batch "), "a speculative batch is cheaper on the evidence: \(plan.out)")
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        #expect(run.error.contains("has not ended and a deadline is near: cancelled"), "\(run.error)")
        // While the batch held every request, the progress line said so (it comes each second; the wait is ten).
        #expect(run.error.contains("in batches 10") && run.error.contains("waiting on batches"), "\(run.error)")
        try expectBooksBalance(database, requests: 10)
        // What the batch finished before it was cancelled is kept at batch prices; the rest was served live.
        let cancelled = try integer(database, "SELECT count(*) FROM attempts WHERE outcome = 'cancelled' AND mode = 'batch'")
        #expect(cancelled > 0)
        #expect(try integer(database, "SELECT count(*) FROM results WHERE mode = 'sync'") == cancelled)
        #expect(try integer(database, "SELECT count(*) FROM results WHERE mode = 'batch'") == 10 - cancelled)
        #expect(try integer(database, "SELECT count(*) FROM results s JOIN requests r ON r.id = s.request_id WHERE s.finished_at > r.deadline_at") == 0)
    }

    @Test func aCapAtHalfTheNeedIsNeverPassedWithBatchesInFlight() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "300"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(400, model: "small")], database: database, pricing: pricing)
        // Half of what the job's worst cases at batch prices come to.
        let catalog = try PricingCatalog.load(directory: pricing)
        let model = try #require(catalog.model(id: "fakeopenai/small"))
        let need = try query(database, "SELECT input_tokens, max_output_tokens FROM requests").reduce(Money.zero) { sum, row in
            sum + Charges.worstCase(model: model, mode: .batch, inputTokens: Int(row[0])!, maxOutputTokens: Int(row[1])!)
        }
        let cap = Money(picoUSD: need.picoUSD / 2)
        try await purser(["budget", "set", cap.exactUSD], database: database, pricing: pricing)
        let sampler = LedgerSampler(database: database)
        let run = try await purser(["run"], database: database, pricing: pricing)
        let findings = sampler.stop()
        #expect(run.code == 0, "\(run.error)")
        #expect(findings.samples > 0)
        #expect(findings.highest <= cap.picoUSD, "charges plus reservations reached \(findings.highest), over the cap \(cap.picoUSD)")
        let held = try integer(database, "SELECT count(*) FROM requests WHERE state = 'held'")
        let served = try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'")
        #expect(held > 0 && served > 0 && held + served == 400, "held \(held), served \(served)")
        #expect(Int64(try query(database, "SELECT sum(cost_pico) FROM results")[0][0])! <= cap.picoUSD)
        #expect(run.out.contains("held by a budget cap"))
        // Only what fitted was sent.
        #expect(try linesPerRequest(server).count == served)
    }

    @Test func theResultsOfABatchJobAddUpToItsSpendInEveryFormat() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "200"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(25, model: "small")], database: database, pricing: pricing)
        try await purser(["submit", try batchJob(25, model: "medium"), "--name", "second"], database: database, pricing: pricing)
        #expect(try await purser(["run"], database: database, pricing: pricing).code == 0)
        for job in ["1", "2"] {
            let status = try JSONParser.parse(try await purser(["status", job, "--json"], database: database, pricing: pricing).out)
            let spent = try Money(usd: try #require(status.arrayValue?.first?.objectValue?["spent_usd"]?.stringValue))
            #expect(spent > .zero)
            for format in ["openai", "anthropic", "jsonl", "csv"] {
                let out = try await purser(["results", job, "--format", format], database: database, pricing: pricing).out
                var total = Money.zero
                var lines = 0
                for line in out.split(separator: "\n") where !line.hasPrefix("custom_id,") {
                    lines += 1
                    if format == "csv" {
                        total += try Money(usd: String(line.split(separator: ",", omittingEmptySubsequences: false)[8]))
                        #expect(line.contains(",batch,"))
                        continue
                    }
                    let object = try #require(try JSONParser.parse(String(line)).objectValue)
                    let purser = object["purser"]?.objectValue ?? object
                    let cost = try #require(purser["cost_usd"]?.stringValue)
                    total += try Money(usd: cost)
                    #expect(purser["mode"]?.stringValue == "batch")
                    #expect(object["custom_id"]?.stringValue?.hasPrefix("user-") == true)
                }
                #expect(lines == 25, "\(format)")
                #expect(total == spent, "\(format): \(total) against \(spent)")
            }
        }
    }
}

/// The quickstart's prompts without their own deadlines, so that `--deadline` decides.
private func quickstartWithoutDeadlines() throws -> String {
    let path = testFiles.appendingPathComponent("quickstart-\(UUID().uuidString).jsonl").path
    var lines: [String] = []
    for line in try String(contentsOf: repository.appendingPathComponent("jobs/quickstart.jsonl"), encoding: .utf8).split(separator: "\n") {
        var object = try #require(try JSONParser.parse(String(line)).objectValue)
        object["deadline"] = nil
        lines.append(JSONWriter.string(.object(object)))
    }
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Test func aWeekLongQuickstartGoesByBatchAtHalfWhatTheTwoHourPlanPaysForTheSameModel() async throws {
    let file = try quickstartWithoutDeadlines()
    let catalog = try PricingCatalog.load(directory: repository.appendingPathComponent("pricing").path)
    func estimate(_ deadline: String) async throws -> (cost: Money, mix: [JSONObject]) {
        let run = await purser(["estimate", file, "--deadline", deadline, "--simulate", "--json"])
        #expect(run.code == 0, "\(run.error)")
        let json = try #require(try JSONParser.parse(run.out).objectValue)
        #expect(json["planned"]?.intValue == 50)
        let cost = try #require(json["estimated_cost_usd"]?.stringValue)
        return (try Money(usd: cost), json["mix"]?.arrayValue?.compactMap(\.objectValue) ?? [])
    }
    let week = try await estimate("week"), live = try await estimate("2h")
    // Every request whose model has a batch price (and a provider that takes batches) goes by batch.
    for line in week.mix {
        let id = try #require(line["model"]?.stringValue)
        let model = try #require(catalog.model(id: id))
        let batchable = model.batchPrices != nil && catalog.providers[model.provider]?.batchDialect != nil
        #expect((line["mode"]?.stringValue == "batch") == batchable, "\(line)")
    }
    #expect(week.mix.contains { $0["mode"]?.stringValue == "batch" })
    #expect(live.mix.allSatisfy { $0["mode"]?.stringValue != "batch" }, "two hours leave no room for the batch window")
    #expect(week.cost <= live.cost, "week \(week.cost) against two hours \(live.cost)")
    // Where both plans give a model the same requests, by batch in the week and at list price in two hours, the week pays half.
    var compared = 0
    for line in week.mix where line["mode"]?.stringValue == "batch" {
        guard let same = live.mix.first(where: {
            $0["model"] == line["model"] && $0["requests"] == line["requests"] && $0["mode"]?.stringValue == "sync"
        }) else { continue }
        let batch = try Money(usd: try #require(line["estimated_cost_usd"]?.stringValue))
        let sync = try Money(usd: try #require(same["estimated_cost_usd"]?.stringValue))
        #expect(batch.picoUSD * 2 <= sync.picoUSD + 2, "\(line) against \(same)")
        compared += 1
    }
    #expect(compared > 0, "no model served the same requests in both plans: \(week.mix) against \(live.mix)")
}

@Test func aSimulatedWeekLongJobFinishesEveryBatchableRequestByBatch() async throws {
    let database = temporaryDatabasePath()
    #expect(await purser(["submit", try quickstartWithoutDeadlines(), "--deadline", "week"], database: database).code == 0)
    // Simulated batches take 2–12 minutes of real time, here divided by 100,000.
    let run = await purser(["run", "--simulate", "--speedup", "100000"], database: database)
    #expect(run.code == 0, "\(run.error)")
    #expect(run.out.contains("50 succeeded"))
    let results = await purser(["results", "1", "--format", "jsonl"], database: database)
    let lines = results.out.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)).objectValue }
    #expect(lines.count == 50)
    // Every request on a model with a batch price went by batch; the rest (DeepSeek's off-peak hours beat them) did not.
    let catalog = try PricingCatalog.load(directory: repository.appendingPathComponent("pricing").path)
    for line in lines {
        let model = try #require(catalog.model(id: line["model"]?.stringValue ?? ""))
        let batchable = model.batchPrices != nil && catalog.providers[model.provider]?.batchDialect != nil
        #expect((line["mode"]?.stringValue == "batch") == batchable && line["simulated"] == .bool(true), "\(line)")
    }
    #expect(lines.contains { $0["mode"]?.stringValue == "batch" })
    #expect(run.error.contains("stored at batch prices"))
}

@Test func explainSaysWhyARequestDoesNotGoByBatch() async throws {
    let database = temporaryDatabasePath()
    #expect(await purser(["submit", try quickstartWithoutDeadlines(), "--deadline", "20h"], database: database).code == 0)
    let short = await purser(["plan", "1", "--simulate", "--explain", "req-1"], database: database)
    #expect(short.out.contains("no batch: its deadline leaves 20h 00m, less than the batch window (1d) plus the margin (1h)"), "\(short.out)")
    let week = temporaryDatabasePath()
    #expect(await purser(["submit", try quickstartWithoutDeadlines(), "--deadline", "week"], database: week).code == 0)
    let long = await purser(["plan", "1", "--simulate", "--explain", "req-1"], database: week)
    #expect(long.out.contains(" batch ") && !long.out.contains("no batch"), "\(long.out)")
}
