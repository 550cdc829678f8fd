import Foundation
import Testing
import PurserCore

/// The files users already have: the providers' documentation examples, dated model ids of both providers, an
/// Anthropic Message Batches request body, and the features of both dialects — tools, tool results, images by URL and
/// base64, JSON mode and schemas, stop sequences (jobs/real-world). Each is accepted as it is and served, on the
/// simulator and against the fake provider with the bundled tables.
@Suite(.serialized)
struct RealWorldFilesTests {
    private let folder = products.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("jobs/real-world")

    private var files: [String] {
        get throws { try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted().map { folder.appendingPathComponent($0).path } }
    }

    @Test func everyRealWorldFileIsAcceptedAndServedOnTheSimulator() async throws {
        let database = temporaryDatabase()
        let pricing = products.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("pricing").path
        let files = try self.files
        #expect(files.count >= 3)
        for file in files {
            let submit = try await purser(["submit", file], database: database, pricing: pricing, key: nil)
            #expect(submit.code == 0, "\(file): \(submit.error)")
        }
        let run = try await purser(["run", "--simulate", "--speedup", "1000"], database: database, pricing: pricing, key: nil)
        #expect(run.code == 0, "\(run.error)")
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state != 'succeeded'") == 0)
        // A line naming a snapshot is measured against its model; one naming a reference row, against that row.
        let references = try query(database, "SELECT custom_id, reference_model FROM requests WHERE custom_id IN ('oa-1', 'an-1', 'request-1', 'oa-3') ORDER BY 1")
        #expect(references.map { $0[0] + " " + $0[1] } == [
            "an-1 anthropic/claude-sonnet-4-5", "oa-1 openai/gpt-4o", "oa-3 openai/o4-mini", "request-1 openai/gpt-3.5-turbo",
        ])
    }

    /// A sped-up rehearsal at 08:00 UTC, when DeepSeek's off-peak window (16:30 to 00:30 UTC) is eight and a half hours
    /// away: the requests planned for the window are answered now, priced as the window will price them, rather than the
    /// run waiting for it on the wall clock. (Before, such a run waited for the window, so this suite hung when run in the
    /// morning, UTC.) The clock is stopped, so a run that waited would never end: the time limit catches that. Alone
    /// the run takes a fraction of a second; beside the suite's other in-process runs, which share the cooperative pool,
    /// it has taken up to a minute, so the limit is five.
    @Test(.timeLimit(.minutes(5))) func aSpedUpRehearsalDoesNotWaitForADiscountWindow() async throws {
        let database = temporaryDatabasePath()
        let morning = testNow + 8 * 3_600_000
        for file in try files { #expect(await purser(["submit", file], database: database, at: morning).code == 0, "\(file)") }
        let run = await purser(["run", "--simulate", "--speedup", "1000"], database: database, at: morning)
        #expect(run.code == 0, "\(run.error)")
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state != 'succeeded'") == 0)
        #expect(try integer(database, "SELECT count(*) FROM results WHERE mode = 'offpeak'") > 0)
    }

    @Test func everyRealWorldFileIsServedByTheFakeProvider() async throws {
        let server = try FakeProviderProcess([])
        defer { server.stop() }
        let pricing = try bundledPricingOnFake(port: server.port)
        let database = temporaryDatabase()
        for file in try files {
            let submit = try await purser(["submit", file, "--deadline", "hour"], database: database, pricing: pricing)
            #expect(submit.code == 0, "\(file): \(submit.error)")
        }
        let run = try await purser(["run"], database: database, pricing: pricing)
        #expect(run.code == 0, "\(run.error)")
        let total = try integer(database, "SELECT count(*) FROM requests")
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == total)
        #expect(try server.stats()["calls"]?.intValue == total)

        // Tools requests come back with the fake's tool calls, in either format, whichever dialect served them.
        func line(_ customID: String, format: String) async throws -> JSONObject {
            let results = try await purser(["results", "features", "--format", format], database: database, pricing: pricing)
            let lines = results.out.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)).objectValue }
            return try #require(lines.first { $0["custom_id"]?.stringValue == customID }, "\(customID) in \(results.out.prefix(300))")
        }
        for customID in ["oa-tools", "an-tools"] {
            let openai = try await line(customID, format: "openai")
            let call = openai["response"]?.objectValue?["body"]?.objectValue?["choices"]?.arrayValue?.first?.objectValue?["message"]?
                .objectValue?["tool_calls"]?.arrayValue?.first?.objectValue?["function"]?.objectValue
            #expect(call?["name"]?.stringValue == "get_weather", "\(customID): \(JSONWriter.string(.object(openai)))")
            let anthropic = try await line(customID, format: "anthropic")
            let blocks = anthropic["result"]?.objectValue?["message"]?.objectValue?["content"]?.arrayValue?.compactMap(\.objectValue) ?? []
            #expect(blocks.contains { $0["type"]?.stringValue == "tool_use" && $0["name"]?.stringValue == "get_weather" },
                "\(customID): \(JSONWriter.string(.object(anthropic)))")
        }
    }
}
