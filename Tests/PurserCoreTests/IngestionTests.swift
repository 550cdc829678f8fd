import Foundation
import SQLiteStore
import Testing
@testable import PurserCore
@testable import PurserSQLite

/// 2026-11-24T00:00:00Z
let submitTime: Int64 = 1_795_478_400_000

private let goodLine = #"{"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 50}}"#

/// A database holding one job already, and a way to try a submit against it.
private struct Workspace {
    let directory = Fixtures.temporaryDirectory()
    var databasePath: String { directory.appendingPathComponent("purser.db").path }
    let catalog = try! Fixtures.bundledCatalog()

    init() throws {
        let path = Fixtures.write(goodLine + "\n", to: "existing.jsonl", in: directory)
        _ = try submit([path])
    }

    func submit(_ files: [String], _ options: SubmitOptions = SubmitOptions()) throws -> [SubmittedJob] {
        let database = try PurserDatabase.open(path: databasePath)
        return try JobSubmitter(database: database, catalog: catalog, clock: .fixed(submitTime)).submit(files: files, options: options)
    }

    func file(_ lines: [String], name: String = "job.jsonl") -> String {
        Fixtures.write(lines.joined(separator: "\n") + "\n", to: name, in: directory)
    }

    var databaseBytes: Data { FileManager.default.contents(atPath: databasePath)! }

    /// Submits `lines` expecting the whole file to be refused; returns the listed problems and checks nothing changed.
    func rejection(_ lines: [String], options: SubmitOptions = SubmitOptions()) throws -> [String] {
        let before = databaseBytes
        let path = file(lines)
        var listed: [String] = []
        do {
            _ = try submit([path], options)
            Issue.record("expected the file to be rejected")
        } catch let rejected as SubmissionRejected {
            listed = rejected.problems.map(\.description)
        }
        #expect(databaseBytes == before, "a rejected submit changed the database")
        return listed
    }
}

@Test func invalidJSONIsRejectedWithItsColumn() throws {
    let workspace = try Workspace()
    #expect(try workspace.rejection([goodLine, #"{"custom_id": "b", "body": {"#]) == [
        "line 2: invalid JSON at column 29: unexpected end of input inside an object"
    ])
}

@Test func invalidUTF8IsRejected() throws {
    let workspace = try Workspace()
    let directory = workspace.directory
    let before = workspace.databaseBytes
    var bytes = Data((goodLine + "\n").utf8)
    bytes.append(contentsOf: Array(#"{"prompt": "caf"#.utf8) + [0xE9] + Array("\"}\n".utf8))
    let path = directory.appendingPathComponent("latin1.jsonl").path
    _ = FileManager.default.createFile(atPath: path, contents: bytes)
    #expect(throws: SubmissionRejected.self) { _ = try workspace.submit([path]) }
    do { _ = try workspace.submit([path]) } catch let rejected as SubmissionRejected {
        #expect(rejected.problems.map(\.description) == ["line 2: invalid UTF-8 at column 16: invalid UTF-8 (byte 0xE9 not followed by a continuation byte)"])
    }
    #expect(workspace.databaseBytes == before)
}

@Test func everyRejectionRuleNamesTheLineAndWhatIsWrong() throws {
    let workspace = try Workspace()
    let lines = [
        goodLine,
        #"{"custom_id": "no-messages", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o"}}"#,
        #"{"prompt": "Hi", "quality": "ultra"}"#,
        #"{"custom_id": "ok", "prompt": "again"}"#,
        #"{"custom_id": "huge", "prompt": "Hi", "max_tokens": 2000000}"#,
        #"{"custom_id": "cheap", "prompt": "Hi", "max_cost_usd": 0.0000000001}"#,
        #"{"custom_id": "who", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-2", "messages": [{"role": "user", "content": "x"}]}}"#,
        #"{"method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}}"#,
        #"{"prompt": "Hi", "deadlin": "6h"}"#,
        #"{"custom_id": "a1", "params": {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]}}"#,
        #"{"prompt": "Hi", "deadline": "2020-01-01T00:00:00Z"}"#,
        #"{"prompt": "Hi", "deadline": "soonish"}"#,
        #"{"custom_id": "emb", "method": "POST", "url": "/v1/embeddings", "body": {"model": "gpt-4o", "input": "x"}}"#,
        #"[1, 2]"#,
        #"{"custom_id": "tools", "prompt": "Hi", "model": "gpt-4o", "pin": true, "tools": []}"#,
    ]
    #expect(try workspace.rejection(lines) == [
        #"line 2 (custom_id "no-messages"): missing body.messages"#,
        "line 3: unknown quality tier \"ultra\"; use one of basic (30), standard (45), premium (55), frontier (62) or a number 0–100",
        #"line 4 (custom_id "ok"): duplicate custom_id (first used on line 1); custom_id must be unique in a job"#,
        #"line 5 (custom_id "huge"): prompt of ~8 tokens plus max_tokens 2000000 fits no model's context (the largest is 1048576)"#,
        #"line 6 (custom_id "cheap"): max_cost_usd 0.0000000001 is below every eligible model's estimate (the cheapest is 0.0006156 USD)"#,
        #"line 7 (custom_id "who"): unknown model "gpt-2" in body.model: it is not in the pricing tables, nor an alias or dated snapshot of a model there; give the line a "quality" (a tier such as "standard", or a score 0–100) or pass --quality, or add the model to the tables"#,
        "line 8: missing custom_id",
        #"line 9: unknown key "deadlin"; routing keys are quality, deadline, max_cost_usd, pin, tags, providers"#,
        #"line 10 (custom_id "a1"): missing params.max_tokens (the Messages API requires it)"#,
        "line 11: deadline 2020-01-01T00:00:00Z is already past",
        "line 12: deadline 'soonish' is not a duration (15m, 6h, 3d), an RFC 3339 time or a tier (asap (15m), hour (1h), today (8h), day (1d), week (1w))",
        #"line 13 (custom_id "emb"): url "/v1/embeddings" is not supported; Purser serves "/v1/chat/completions""#,
        "line 14: a line must be a JSON object, found an array",
        #"line 15 (custom_id "tools"): unknown key "tools"; routing keys are quality, deadline, max_cost_usd, pin, tags, providers"#,
    ])
}

@Test func oversizedLinesAreRejectedWithoutBeingBuffered() throws {
    let workspace = try Workspace()
    let long = #"{"prompt": ""# + String(repeating: "x", count: 5_000) + #""}"#
    var options = SubmitOptions()
    options.maximumLineBytes = 1_000
    #expect(try workspace.rejection([goodLine, long, goodLine.replacingOccurrences(of: "\"ok\"", with: "\"ok2\"")], options: options) == [
        "line 2: line is 5014 bytes, over the 1000-byte limit; shorten it or raise --max-line-bytes"
    ])
}

@Test func rejectionListsUpToTheLimitThenCounts() throws {
    let workspace = try Workspace()
    var options = SubmitOptions()
    options.listedProblemLimit = 3
    let path = workspace.file((1...10).map { _ in "{" })
    do {
        _ = try workspace.submit([path], options)
        Issue.record("expected a rejection")
    } catch let rejected as SubmissionRejected {
        #expect(rejected.problems.count == 3)
        #expect(rejected.totalBadLines == 10)
        #expect(rejected.description.hasSuffix("… and 7 more bad lines"))
        #expect(rejected.description.hasPrefix("\(path):1: invalid JSON at column 2"))
    }
}

@Test func aBadSecondFileKeepsTheFirstOutToo() throws {
    let workspace = try Workspace()
    let before = workspace.databaseBytes
    let good = workspace.file([goodLine], name: "good.jsonl")
    let bad = workspace.file(["{"], name: "bad.jsonl")
    #expect(throws: SubmissionRejected.self) { _ = try workspace.submit([good, bad]) }
    #expect(workspace.databaseBytes == before)
}

@Test func skipInvalidStoresGoodLinesAndKeepsRejects() throws {
    let workspace = try Workspace()
    var options = SubmitOptions()
    options.skipInvalid = true
    let path = workspace.file([goodLine, "{", #"{"prompt": "Hi", "quality": "ultra"}"#, #"{"prompt": "fine"}"#])
    let job = try #require(try workspace.submit([path], options).first).job
    #expect(job.requestCount == 2)
    #expect(job.rejectedCount == 2)
    let store = JobStore(database: try PurserDatabase.open(path: workspace.databasePath))
    #expect(try store.rejections(job: job.id, limit: 10).map(\.lineNumber) == [2, 3])
    #expect(try store.stateCounts(job: job.id) == [.queued: 2])
}

@Test func resubmittingTheSameBytesReturnsTheExistingJob() throws {
    let workspace = try Workspace()
    let path = workspace.file([goodLine, #"{"prompt": "second"}"#])
    let first = try #require(try workspace.submit([path]).first)
    let again = try #require(try workspace.submit([path]).first)
    #expect(!first.alreadySubmitted)
    #expect(again.alreadySubmitted)
    #expect(again.job.id == first.job.id)
    var options = SubmitOptions()
    options.force = true
    let forced = try #require(try workspace.submit([path], options).first)
    #expect(!forced.alreadySubmitted)
    #expect(forced.job.id != first.job.id)
    // Other routing options make another job.
    options = SubmitOptions()
    options.project = "search"
    #expect(try workspace.submit([path], options).first?.alreadySubmitted == false)
}

@Test func allThreeShapesAreReadWithBOMCRLFAndBlankLines() throws {
    let workspace = try Workspace()
    let text = "\u{FEFF}" + [
        #"{"custom_id": "o", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4.1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}], "max_completion_tokens": 100, "response_format": {"type": "json_object"}}, "quality": "premium"}"#,
        "",
        #"{"custom_id": "a", "params": {"model": "claude-haiku-4-5", "max_tokens": 200, "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}, "deadline": "6h", "tags": {"team": "search"}}"#,
        "   ",
        #"{"prompt": "Summarise this.", "system": "You are terse.", "max_tokens": 60, "quality": 40, "max_cost_usd": "0.01"}"#,
    ].joined(separator: "\r\n") + "\r\n"
    let path = Fixtures.write(text, to: "shapes.jsonl", in: workspace.directory)
    let job = try #require(try workspace.submit([path]).first).job
    #expect(job.requestCount == 3)
    let database = try PurserDatabase.open(path: workspace.databasePath)
    let rows = try database.statement("""
        SELECT custom_id, shape, reference_model, quality_floor, quality_tier, capabilities, max_output_tokens, deadline_at, max_cost_pico, tags, line_number
        FROM requests WHERE job_id = ? ORDER BY id
        """).rows([.integer(job.id)]) { row in
        (row.text(0), row.text(1), row.optionalText(2), row.int(3), row.text(4), row.int(5), row.int(6), row.int64(7), row.optionalInt64(8), row.optionalText(9), row.int(10))
    }
    #expect(rows.map(\.0) == ["o", "a", "line-5"])
    #expect(rows.map(\.1) == ["openai", "anthropic", "minimal"])
    #expect(rows.map(\.2) == ["openai/gpt-4.1", "anthropic/claude-haiku-4-5", nil])
    #expect(rows.map(\.3) == [55, 42, 40])
    #expect(rows.map(\.4) == ["premium", "basic", "basic"])
    #expect(rows[0].5 == (Capabilities.vision.rawValue | Capabilities.jsonMode.rawValue))
    #expect(rows.map(\.6) == [100, 200, 60])
    #expect(rows.map(\.7) == [submitTime + 86_400_000, submitTime + 6 * 3_600_000, submitTime + 86_400_000])
    #expect(rows[2].8 == 10_000_000_000)
    #expect(rows[1].9 == #"{"team":"search"}"#)
    #expect(rows.map(\.10) == [1, 3, 5])
    // The original body is stored untouched; a minimal line becomes an OpenAI chat body.
    let bodies = try database.statement("SELECT body FROM request_bodies JOIN requests ON requests.id = request_id WHERE job_id = ? ORDER BY request_id")
        .rows([.integer(job.id)]) { $0.text(0) }
    #expect(bodies[1] == #"{"model": "claude-haiku-4-5", "max_tokens": 200, "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}"#)
    #expect(bodies[2] == #"{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise this."}],"max_tokens":60}"#)
}

@Test func inputTokensAreEstimatedFromTheText() throws {
    let workspace = try Workspace()
    let prompt = String(repeating: "abcd", count: 100)  // 400 bytes → 100 tokens
    let path = workspace.file([#"{"prompt": "\#(prompt)", "max_tokens": 10}"#])
    let job = try #require(try workspace.submit([path]).first).job
    let database = try PurserDatabase.open(path: workspace.databasePath)
    let tokens = try database.scalarInt("SELECT input_tokens FROM requests WHERE job_id = ?", [.integer(job.id)])
    #expect(tokens == Int64(100 + TokenEstimator.tokensPerMessage + TokenEstimator.tokensPerRequest))
}

@Test func outputHistoryReplacesMaxTokensOnceEnoughResultsExist() {
    var history = OutputHistory()
    #expect(history.expectedOutputTokens(model: "m", tier: "basic", maxOutputTokens: 1_000) == 1_000)
    history.byModelAndTier[OutputHistory.key(model: "m", tier: "basic")] = .init(samples: 25, outputTokens: 2_500, maxOutputTokens: 10_000)
    #expect(history.expectedOutputTokens(model: "m", tier: "basic", maxOutputTokens: 1_000) == 250)
    #expect(history.expectedOutputTokens(model: "m", tier: "premium", maxOutputTokens: 1_000) == 1_000)
}

@Test func standardInputResubmittedIsRecognisedAndUndone() throws {
    // Standard input cannot be fingerprinted beforehand; the duplicate is found after reading and rolled back.
    let workspace = try Workspace()
    let path = workspace.file([#"{"prompt": "from a pipe"}"#])
    let first = try #require(try workspace.submit([path]).first)
    let database = try PurserDatabase.open(path: workspace.databasePath)
    let requestsBefore = try database.scalarInt("SELECT count(*) FROM requests")
    // "-" reads standard input: point descriptor 0 at the same bytes for the duration of the call.
    let handle = try #require(FileHandle(forReadingAtPath: path))
    let saved = dup(0)
    dup2(handle.fileDescriptor, 0)
    defer { dup2(saved, 0); close(saved) }
    let again = try #require(try JobSubmitter(database: database, catalog: workspace.catalog, clock: .fixed(submitTime)).submit(files: ["-"], options: SubmitOptions()).first)
    #expect(again.alreadySubmitted)
    #expect(again.job.id == first.job.id)
    #expect(try database.scalarInt("SELECT count(*) FROM requests") == requestsBefore)
    #expect(try database.scalarInt("SELECT count(*) FROM jobs") == 2)
}

@Test func recordedOutputsSharpenTheNextEstimates() throws {
    let workspace = try Workspace()
    let database = try PurserDatabase.open(path: workspace.databasePath)
    let store = JobStore(database: database)
    for _ in 0..<OutputHistory.minimumSamples {
        try store.recordOutput(model: "openai/gpt-5-nano", tier: "basic", outputTokens: 30, maxOutputTokens: 120)
    }
    let history = try store.outputHistory()
    #expect(history.byModelAndTier[OutputHistory.key(model: "openai/gpt-5-nano", tier: "basic")]
        == OutputHistory.Sample(samples: 20, outputTokens: 600, maxOutputTokens: 2_400))
    // A quarter of max_tokens was used, so a request allowing 400 is now expected to use 100.
    #expect(history.expectedOutputTokens(model: "openai/gpt-5-nano", tier: "basic", maxOutputTokens: 400) == 100)
    #expect(history.byTier(models: workspace.catalog.models).samples(tier: "basic") != nil)
}

@Test func modelNamesResolveAsUsersWriteThem() throws {
    #expect(ModelNames.undated("gpt-4o-2024-08-06") == ["gpt-4o"])
    #expect(ModelNames.undated("claude-sonnet-4-5-20250929") == ["claude-sonnet-4-5"])
    #expect(ModelNames.undated("gpt-3.5-turbo-0125") == ["gpt-3.5-turbo"])
    #expect(ModelNames.undated("gpt-5-chat-latest") == ["gpt-5-chat"])
    #expect(ModelNames.undated("gpt-4o").isEmpty && ModelNames.undated("gpt-5").isEmpty)
    let catalog = try Fixtures.bundledCatalog()
    let expected = [
        "gpt-4o-2024-08-06": "openai/gpt-4o", "gpt-4o-mini-2024-07-18": "openai/gpt-4o-mini",
        "claude-sonnet-4-5-20250929": "anthropic/claude-sonnet-4-5", "claude-haiku-4-5-20251001": "anthropic/claude-haiku-4-5",
        "o4-mini": "openai/o4-mini", "gpt-4.1-nano": "openai/gpt-4.1-nano", "gpt-5-chat-latest": "openai/gpt-5-chat-latest",
        "gpt-3.5-turbo-0125": "openai/gpt-3.5-turbo", "openai/gpt-4o": "openai/gpt-4o",
    ]
    for (name, id) in expected { #expect(catalog.referenceModel(named: name, preferring: .openai)?.id == id, "\(name)") }
    #expect(catalog.referenceModel(named: "gpt-2", preferring: .openai) == nil)
    // Reference rows set floors and baselines; they are never among the models served.
    #expect(!catalog.models.contains { $0.referenceOnly } && catalog.references.allSatisfy(\.referenceOnly))
    #expect(catalog.references.map(\.id).sorted() == ["openai/gpt-3.5-turbo", "openai/gpt-4.1-nano", "openai/gpt-5-chat-latest", "openai/o4-mini"])
}

@Test func aLineNamingAModelNobodyKnowsIsServedByTheQualityItGives() throws {
    let workspace = try Workspace()
    let line = #"{"custom_id": "new", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-9-preview", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}, "quality": "premium"}"#
    let submitted = try workspace.submit([workspace.file([line])])
    #expect(submitted.first?.job.requestCount == 1)
    let stored = try PurserDatabase.open(path: workspace.databasePath)
        .statement("SELECT quality_floor, coalesce(reference_model, '-') FROM requests WHERE custom_id = 'new'").firstRow { ($0.int(0), $0.text(1)) }
    #expect(stored?.0 == 55 && stored?.1 == "-", "its floor is the tier's, and it has no reference model")
    let pinned = #"{"custom_id": "p", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-9-preview", "messages": [{"role": "user", "content": "x"}]}, "quality": 50, "pin": true}"#
    #expect(try workspace.rejection([pinned]) == [#"line 1 (custom_id "p"): pin is true but its model "gpt-9-preview" is not in the pricing tables; add it there, or drop pin"#])
}

@Test func anAnthropicMessageBatchesRequestBodyIsAJob() throws {
    let workspace = try Workspace()
    func request(_ id: String) -> String { #"{"custom_id": "\#(id)", "params": {"model": "claude-haiku-4-5-20251001", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi, \"\#(id)\" [x] {y}"}]}}"# }
    // As the SDK's examples write it, pretty and with a BOM; and on one line.
    let pretty = "\u{FEFF}{\n  \"requests\": [\n    " + request("first") + ",\n    " + request("second") + "\n  ]\n}\n"
    let prettyPath = Fixtures.write(pretty, to: "body.json", in: workspace.directory)
    let oneLine = Fixtures.write(#"{"requests":["# + request("a") + "," + request("b") + "," + request("c") + "]}", to: "one-line.json", in: workspace.directory)
    let jobs = try workspace.submit([prettyPath, oneLine])
    #expect(jobs.map(\.job.requestCount) == [2, 3])
    #expect(jobs.map(\.job.name) == ["body", "one-line"])
    let ids = try PurserDatabase.open(path: workspace.databasePath).statement("SELECT custom_id FROM requests WHERE job_id > 1 ORDER BY id").rows { $0.text(0) }
    #expect(ids == ["first", "second", "a", "b", "c"])
    // A bad request is named by the line it starts on; a body cut short says so.
    let bad = Fixtures.write("{\"requests\": [\n" + request("ok") + ",\n{\"custom_id\": \"nope\"},\n7\n]}", to: "bad.json", in: workspace.directory)
    do {
        _ = try workspace.submit([bad])
        Issue.record("the bad body was accepted")
    } catch let rejected as SubmissionRejected {
        #expect(rejected.problems.map(\.description) == [
            #"line 3 (custom_id "nope"): unrecognised line: expected "body" (OpenAI batch), "params" (Anthropic batch) or "prompt" (minimal)"#,
            "line 4: a line must be a JSON object, found a number",
        ], "\(rejected.problems.map(\.description))")
    }
    let cut = Fixtures.write("{\"requests\": [" + request("ok") + ",", to: "cut.json", in: workspace.directory)
    #expect(throws: (any Error).self) { _ = try workspace.submit([cut]) }
}
