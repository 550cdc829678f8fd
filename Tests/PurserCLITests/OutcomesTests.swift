import Foundation
import Testing
import PurserCore
import TestSupport

/// Outcomes that are true: a run that can serve nothing says why and fails, plans made for providers that cannot
/// be used now are made again, a plan that places nothing claims nothing, and a name two jobs share is no job.
@Suite(.serialized)
struct OutcomesTests {
    private let quickstart = products.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("jobs/quickstart.jsonl").path
    private let bundled = products.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("pricing").path

    @Test func aRunWithNoKeySetServesNothingAndSaysWhichKeysToSet() async throws {
        let database = temporaryDatabase()
        try await purser(["submit", quickstart], database: database, pricing: bundled, key: nil)
        let plan = try await purser(["plan", "1"], database: database, pricing: bundled, key: nil)
        #expect(plan.out.contains("this plan places nothing, so it claims no saving and no optimality"), "\(plan.out)")
        #expect(!plan.out.contains("saving:") && !plan.out.contains("optimal\n"), "\(plan.out)")
        #expect(plan.out.contains("50 requests cannot be placed: no provider has its key set"), "\(plan.out)")
        let json = try JSONParser.parse(try await purser(["plan", "1", "--json"], database: database, pricing: bundled, key: nil).out).objectValue
        #expect(json?["optimal"]?.boolValue == false && json?["saving_usd"]?.isNull == true)
        let run = try await purser(["run"], database: database, pricing: bundled, key: nil)
        #expect(run.code == 1)
        #expect(run.error.contains("Error: no request could be served: no provider can be used, since none has its key set; set ANTHROPIC_API_KEY, DEEPSEEK_API_KEY"), "\(run.error)")
        #expect(run.error.contains("or pass --simulate to rehearse on the simulator"))
    }

    @Test func requestsPlannedOnAProviderThatCannotBeUsedNowArePlannedAgainAtRunStart() async throws {
        let server = try FakeProviderProcess([])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        // The anthropic-dialect model is the cheaper one here, and its provider has a key of its own.
        let models = pricing + "/models.json", providers = pricing + "/providers.json"
        try String(contentsOfFile: models, encoding: .utf8)
            .replacingOccurrences(of: #""input": "1", "output": "5""#, with: #""input": "0.01", "output": "0.05""#)
            .write(toFile: models, atomically: true, encoding: .utf8)
        try String(contentsOfFile: providers, encoding: .utf8)
            .replacingOccurrences(of: #""name": "fakeanthropic", "dialect": "anthropic", "base_url": "http://127.0.0.1:\#(server.port)", "api_key_env": "FAKE_KEY""#,
                with: #""name": "fakeanthropic", "dialect": "anthropic", "base_url": "http://127.0.0.1:\#(server.port)", "api_key_env": "FAKE_ANTHROPIC_KEY""#)
            .write(toFile: providers, atomically: true, encoding: .utf8)
        let database = temporaryDatabase()
        let lines = (0..<6).map { #"{"custom_id": "q\#($0)", "prompt": "Question \#($0)", "max_tokens": 20, "model": "medium", "deadline": "1h"}"# }
        let job = testFiles.appendingPathComponent("purser-stranded-\(UUID().uuidString).jsonl").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: job, atomically: true, encoding: .utf8)
        try await purser(["submit", job], database: database, pricing: pricing)
        // Planned while both providers could be used: every request on the cheaper one.
        let plan = try await purser(["plan", "1"], database: database, pricing: pricing, environment: ["FAKE_ANTHROPIC_KEY": "another-key"])
        #expect(plan.out.contains("fakeanthropic/medium"), "\(plan.out)")
        // Served without that provider's key: planned again on the one that can be used, not left queued.
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        #expect(run.error.contains("6 requests were planned on providers this run cannot use (no key set); they are planned again on those it can"), "\(run.error)")
        #expect(try query(database, "SELECT DISTINCT model FROM results").map { $0[0] } == ["fakeopenai/small"])
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == 6)
    }

    @Test func aNameTwoJobsShareIsAnErrorListingThem() async throws {
        let database = temporaryDatabase()
        try await purser(["submit", quickstart], database: database, pricing: bundled, key: nil)
        try await purser(["submit", quickstart, "--force"], database: database, pricing: bundled, key: nil)
        let status = try await purser(["status", "quickstart"], database: database, pricing: bundled, key: nil)
        #expect(status.code == 1)
        #expect(status.error.contains("2 jobs are named 'quickstart': 1 (50 requests from "), "\(status.error)")
        #expect(status.error.contains("give the job's number instead"))
        #expect(try await purser(["status", "2"], database: database, pricing: bundled, key: nil).code == 0)
    }

    // MARK: - Long work that speaks when it matters

    @Test func offATerminalTheProgressLineComesWhenItChangesAndBatchesSayWhenTheyShouldEnd() async throws {
        let server = try FakeProviderProcess(["--batch-delay-ms", "4000"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port, batches: true)
        let database = temporaryDatabase()
        try await purser(["submit", try batchJob(5, model: "small")], database: database, pricing: pricing)
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        let progress = run.error.split(separator: "\n").filter { $0.contains("purser.run: progress") }
        // Four seconds of the same state make one line, not four.
        #expect(progress.count <= 2, "\(progress.joined(separator: "\n"))")
        #expect(progress.first?.contains("waiting on batches (1 batch open, oldest") == true, "\(progress)")
        #expect(progress.first?.contains("(the providers' 24h window)") == true, "\(progress)")
        // --quiet: the summary and nothing on the way.
        try await purser(["submit", try batchJob(3, model: "small"), "--force"], database: database, pricing: pricing)
        let quiet = try await purser(["run", "--quiet"], database: database, pricing: pricing)
        #expect(quiet.code == 0 && !quiet.error.contains("info purser.run"), "\(quiet.error)")
        #expect(quiet.out.contains("run finished in"))
        // --json: every event with its time and level.
        try await purser(["submit", try batchJob(3, model: "small"), "--force"], database: database, pricing: pricing)
        let json = try await purser(["run", "--json"], database: database, pricing: pricing)
        let events = json.out.split(separator: "\n").compactMap { (try? JSONParser.parse(String($0)))?.objectValue }
        #expect(!events.isEmpty && events.allSatisfy { $0["time"]?.stringValue != nil && ["info", "warning", "error"].contains($0["level"]?.stringValue ?? "") })
        #expect(events.contains { $0["event"]?.stringValue == "progress" && $0["batches"]?.arrayValue?.first?.objectValue?["expected_end"] != nil })
    }

    // MARK: - Keeping data with chosen providers

    @Test func providerAllowAndDenyListsAreHonouredByThePlanFallbacksAndExplain() async throws {
        let server = try FakeProviderProcess(["--refuse-model", "medium"])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        func line(_ id: String, _ providers: String?) -> String {
            #"{"custom_id": "\#(id)", "prompt": "Hi \#(id)", "max_tokens": 10, "model": "small", "deadline": "1h"\#(providers.map { ", \"providers\": \($0)" } ?? "")}"#
        }
        let job = testFiles.appendingPathComponent("purser-providers-\(UUID().uuidString).jsonl").path
        try ([line("only-anthropic", #"{"only": ["fakeanthropic"]}"#), line("not-openai", #"{"ignore": ["fakeopenai"]}"#), line("free", nil)]
            .joined(separator: "\n") + "\n").write(toFile: job, atomically: true, encoding: .utf8)
        let submitted = try await purser(["submit", job], database: database, pricing: pricing)
        let plan = try await purser(["plan", "1", "--json"], database: database, pricing: pricing)
        #expect(plan.code == 0, "\(submitted.error)\n\(plan.error)")
        let mix = (try JSONParser.parse(plan.out).objectValue?["mix"]?.arrayValue ?? []).compactMap(\.objectValue)
            .map { "\($0["model"]?.stringValue ?? "") \($0["requests"]?.intValue ?? 0)" }.sorted()
        #expect(mix == ["fakeanthropic/medium 2", "fakeopenai/small 1"], "\(plan.out)")
        let explain = try await purser(["plan", "1", "--explain", "only-anthropic"], database: database, pricing: pricing)
        #expect(explain.out.contains("provider fakeopenai is not allowed for this request"), "\(explain.out)")
        // The provider they are allowed refuses them: they fail rather than fall back to a provider they exclude.
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 1, "\(run.error)")
        #expect(try query(database, "SELECT custom_id, state FROM requests ORDER BY id").map { $0[0] + " " + $0[1] }
            == ["only-anthropic failed", "not-openai failed", "free succeeded"])
        #expect(try integer(database, "SELECT count(*) FROM attempts WHERE provider = 'fakeopenai' AND request_id < 3") == 0)
        // On submit, for every line; a name that is no provider is a usage error.
        // A line's own list narrows the submit's: only-anthropic, ignoring anthropic, has nowhere to go, which submit says.
        let narrowed = try await purser(["submit", job, "--force", "--ignore-providers", "fakeanthropic"], database: database, pricing: pricing)
        #expect(narrowed.code == 1, "\(narrowed.error)")
        #expect(narrowed.error.contains(#"custom_id "only-anthropic": no model can serve this request: provider fakeanthropic is not allowed for this request"#),
            "\(narrowed.error)")
        let ignoring = try await purser(["submit", job, "--force", "--ignore-providers", "fakeanthropic", "--skip-invalid"], database: database, pricing: pricing)
        #expect(ignoring.code == 0, "\(ignoring.error)")
        let second = try JSONParser.parse(try await purser(["plan", "2", "--json"], database: database, pricing: pricing).out).objectValue
        #expect(second?["mix"]?.arrayValue?.compactMap { $0.objectValue?["model"]?.stringValue } == ["fakeopenai/small"])
        let bad = try await purser(["submit", job, "--force", "--only-providers", "nobody"], database: database, pricing: pricing)
        #expect(bad.code == 64 && bad.error.contains("--only-providers: 'nobody' is not a provider of the tables"), "\(bad.error)")
        let badLine = testFiles.appendingPathComponent("purser-providers-bad-\(UUID().uuidString).jsonl").path
        try (line("x", #"{"only": ["nobody"]}"#) + "\n").write(toFile: badLine, atomically: true, encoding: .utf8)
        let rejected = try await purser(["submit", badLine], database: database, pricing: pricing)
        #expect(rejected.code == 1 && rejected.error.contains("providers.only names \"nobody\", which is not a provider of the tables"), "\(rejected.error)")
    }
}
