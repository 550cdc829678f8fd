import Foundation
import Testing
import PurserCore
import TestSupport

/// Issue 17: a capacity-bound plan is kept when served. Four models limited to 240 requests a minute and 360 requests due
/// in 30 seconds: the plan fills the three cheapest to what their limits allow by then (116 each) and puts the rest on
/// the fourth. Planned and served on the simulator with the rate limits and deadlines on the wall clock. Claimed in
/// deadline order, one model's requests come first; a worker waiting on that model's limit must not hold back the other
/// models' requests behind it, and each model must run at its full rate from the first second. (Before: 190 served,
/// 170 expired, calls finishing after their deadline.)
@Suite(.serialized)
struct PlanKeptTests {
    /// `count` models m1… of one provider at `baseURL` (the simulator's, by default, which is never called), each
    /// limited to 240 requests a minute, m1 the cheapest.
    static func pricing(models count: Int = 4, baseURL: String = "http://127.0.0.1:9/v1") throws -> String {
        let directory = testFiles.appendingPathComponent("purser-plan-kept-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try """
            {"providers": [{"name": "limited", "dialect": "openai", "base_url": "\(baseURL)", "api_key_env": "FAKE_KEY", "batch_api": false}]}
            """.write(to: directory.appendingPathComponent("providers.json"), atomically: true, encoding: .utf8)
        let models = (1...count).map { index in
            """
            {"id": "limited/m\(index)", "provider": "limited", "model": "m\(index)", "prices": {"input": "\(index)", "output": "\(index)"},
             "context_window": 100000, "max_output_tokens": 8000, "quality": {"score": 70, "source": "test"}, "capabilities": [],
             "rate_limits": {"requests_per_minute": 240, "tokens_per_minute": 1000000000},
             "speed": {"time_to_first_token_ms": 50, "output_tokens_per_second": 1000},
             "price_date": "2026-11-24", "price_source": "https://example.com/prices"}
            """
        }
        try #"{"models": [\#(models.joined(separator: ", "))]}"#.write(to: directory.appendingPathComponent("models.json"), atomically: true, encoding: .utf8)
        try String(contentsOf: repository.appendingPathComponent("pricing/tiers.json"), encoding: .utf8)
            .write(to: directory.appendingPathComponent("tiers.json"), atomically: true, encoding: .utf8)
        return directory.path
    }

    @Test func aCapacityBoundPlanServedAtItsRealLimitsMeetsEveryDeadline() async throws {
        try await alone {
            let pricing = try Self.pricing()
            let database = temporaryDatabase()
            let path = testFiles.appendingPathComponent("purser-plan-kept-\(UUID().uuidString).jsonl").path
            try Self.writeJob(to: path)
            let submit = try await purser(["submit", path], database: database, pricing: pricing, key: nil)
            #expect(submit.code == 0, "\(submit.error)")
            let plan = try await purser(["plan", "1", "--simulate"], database: database, pricing: pricing, key: nil)
            #expect(plan.code == 0 && plan.out.contains("limited/m4"), "\(plan.out)")
            // Simulated latency at a hundredth; the limits and deadlines run on the wall clock.
            let run = try await purser(["run", "--simulate", "--speedup", "100"], database: database, pricing: pricing, key: nil)
            #expect(run.code == 0, "\(run.error)")
            #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == 360, "\(run.out)\n\(run.error.suffix(800))")
            #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'expired'") == 0)
            // No call finished after its request's deadline, so none started after its latest start.
            #expect(try integer(database, "SELECT count(*) FROM results s JOIN requests r ON r.id = s.request_id WHERE s.finished_at > r.deadline_at") == 0)
            // Every model served its share: none stood idle while another's requests waited.
            #expect(try integer(database, "SELECT count(DISTINCT model) FROM results") == 4)
        }
    }

    /// 360 requests due in 30 seconds, any model of quality 70 will do.
    static func writeJob(to path: String) throws {
        let lines = (0..<360).map { index in
            #"{"custom_id": "r\#(index)", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m1", "messages": [{"role": "user", "content": "Question \#(index)"}], "max_tokens": 20}, "deadline": "30s", "quality": 70}"#
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// When a model's real rate falls short of what the plan counted on (here the cheapest answers every call 429, as a
    /// provider does when its limits are lower than the tables say), its requests are moved onto models with room in
    /// time, over real HTTP to the fake provider, and none expires. Five models: the plan fills m1 to m3 and part of m4,
    /// leaving m4 and m5 room enough for m1's share.
    @Test func whenAModelsRealRateFallsShortItsRequestsMoveToModelsWithRoomInTime() async throws {
        try await alone {
            let server = try FakeProviderProcess(["--rate-limit-model", "m1", "--retry-after", "1"])
            defer { server.stop() }
            let pricing = try Self.pricing(models: 5, baseURL: "http://127.0.0.1:\(server.port)/v1")
            let database = temporaryDatabase()
            let path = testFiles.appendingPathComponent("purser-plan-kept-\(UUID().uuidString).jsonl").path
            try Self.writeJob(to: path)
            #expect(try await purser(["submit", path], database: database, pricing: pricing).code == 0)
            let plan = try await purser(["plan", "1"], database: database, pricing: pricing)
            #expect(plan.code == 0 && plan.out.contains("limited/m1") && !plan.out.contains("limited/m5"), "\(plan.out)")
            let run = try await purser(["run"], database: database, pricing: pricing)
            #expect(run.code == 0, "\(run.error.suffix(1_500))")
            #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == 360, "\(run.out)\n\(run.error.suffix(1_500))")
            let lost = try query(database, """
                SELECT r.custom_id, r.state, r.last_error, l.model, (SELECT count(*) FROM attempts a WHERE a.request_id = r.id)
                FROM requests r JOIN request_plans p ON p.request_id = r.id JOIN plan_lines l ON l.id = p.line WHERE r.state IN ('expired', 'failed')
                """)
            #expect(lost.isEmpty, "\(lost)")
            #expect(try integer(database, "SELECT count(*) FROM results s JOIN requests r ON r.id = s.request_id WHERE s.finished_at > r.deadline_at") == 0)
            #expect(try integer(database, "SELECT count(*) FROM results WHERE model = 'limited/m1'") == 0)
            #expect(try integer(database, "SELECT count(*) FROM results WHERE model = 'limited/m5'") > 0)
        }
    }

    /// A plan is a promise made at the moment it was made: run eight seconds later, the three models filled to their
    /// limits have lost eight seconds of their rate, and the requests they can no longer reach by their latest start
    /// spill over to the fourth (the cheapest with room in time; a fifth, dearer, stands idle), instead of expiring. (Before: 322 served, 38 expired.)
    @Test func aPlanRunAWhileAfterItWasMadeMovesWhatItsModelsCanNoLongerReach() async throws {
        try await alone {
            let pricing = try Self.pricing(models: 5)
            let database = temporaryDatabase()
            let path = testFiles.appendingPathComponent("purser-plan-kept-\(UUID().uuidString).jsonl").path
            try Self.writeJob(to: path)
            #expect(try await purser(["submit", path], database: database, pricing: pricing, key: nil).code == 0)
            let plan = try await purser(["plan", "1", "--simulate"], database: database, pricing: pricing, key: nil)
            #expect(plan.code == 0 && plan.out.contains("limited/m4"), "\(plan.out)")
            let plannedModels = try query(database, "SELECT p.request_id, l.model FROM request_plans p JOIN plan_lines l ON l.id = p.line")
            await pause(seconds: 8)
            let run = try await purser(["run", "--simulate", "--speedup", "100"], database: database, pricing: pricing, key: nil)
            #expect(run.code == 0, "\(run.error)")
            let served = try query(database, "SELECT model, count(*) FROM results GROUP BY model ORDER BY model").map { $0.joined(separator: " ") }
            let lost = try query(database, """
                SELECT r.custom_id, r.state, r.last_error, l.model, r.deadline_at - l.latest_start FROM requests r JOIN request_plans p ON p.request_id = r.id
                JOIN plan_lines l ON l.id = p.line WHERE r.state != 'succeeded'
                """)
            #expect(lost.isEmpty, "\(served)\n\(lost)\n\(run.error.suffix(800))")
            #expect(try integer(database, "SELECT count(*) FROM results s JOIN requests r ON r.id = s.request_id WHERE s.finished_at > r.deadline_at") == 0)
            // The fourth model served more than the plan gave it (12): the others' tail.
            #expect(try integer(database, "SELECT count(*) FROM results WHERE model = 'limited/m4'") > 12, "\(served)")
            // All of it: the fourth has room for them in time, so none goes to the dearer fifth for having room a moment sooner.
            #expect(try integer(database, "SELECT count(*) FROM results WHERE model = 'limited/m5'") == 0, "\(served)")
            // Each moved about once, not round and round between models at their limits: at most two moves for each
            // request served on another model than the one planned, and a few (1.4-1.5 in runs here, idle or busy; 30
            // when a spill could go back onto a model it had left). How many move depends on how late the run starts and
            // how far a busy machine holds the models below their rate, so it is counted from what was served rather than
            // foreseen from the wait, which a busy CI machine overran (123 moves against 96 + 20).
            let servedModels = Dictionary(uniqueKeysWithValues: try query(database, "SELECT request_id, model FROM results").map { ($0[0], $0[1]) })
            let moved = plannedModels.filter { servedModels[$0[0]] != $0[1] }.count
            let fallbacks = run.out.firstMatch(of: /(\d+) fallbacks?/).flatMap { Int($0.1) }
            #expect(moved > 0 && fallbacks.map { $0 <= 2 * moved + 10 } == true, "\(moved) served on a model other than the planned one\n\(run.out)")
        }
    }
}
