import Foundation
import Testing
import PurserCore
@testable import PurserSQLite
import TestSupport

/// What `purser results` writes validates with the official SDKs' own types (pinned in .build/sdk-venv by
/// scripts/sdk-venv.sh, as .ci/run makes it), for native, translated, simulated, failed, expired and cancelled
/// lines; and what crosses dialects keeps its tool calls, images and JSON mode.
@Suite(.serialized)
struct OutputShapesTests {
    /// Runs the SDK validator on `lines` written in `format`; its counts of line kinds.
    private func validate(_ format: String, _ text: String) async throws -> [String: Int] {
        let file = testFiles.appendingPathComponent("purser-results-\(UUID().uuidString).jsonl")
        try text.write(to: file, atomically: true, encoding: .utf8)
        let (code, said) = try await runPython(repository.appendingPathComponent("scripts/validate_sdk_shapes.py").path, [format, file.path])
        #expect(code == 0, "\(said)")
        return Dictionary(uniqueKeysWithValues: ((try? JSONParser.parse(said))?.objectValue?.members ?? []).map { ($0.key, $0.value.intValue ?? 0) })
    }

    private func write(_ lines: [String]) throws -> String {
        let path = testFiles.appendingPathComponent("purser-shapes-\(UUID().uuidString).jsonl").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private static let weatherOpenAI = #"[{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]"#
    private static let weatherAnthropic = #"[{"name": "get_weather", "description": "Weather in a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]"#

    /// Each feature in each dialect, pinned to the other dialect's model (and to its own), so every pair is crossed.
    private var featureLines: [String] {
        var lines: [String] = []
        for (model, tag) in [("small", "to-openai"), ("medium", "to-anthropic")] {
            lines += [
                #"{"custom_id": "oa-tools-\#(tag)", "method": "POST", "url": "/v1/chat/completions", "pin": true, "body": {"model": "\#(model)", "max_tokens": 50, "tools": \#(OutputShapesTests.weatherOpenAI), "tool_choice": "auto", "messages": [{"role": "user", "content": "Weather in Paris?"}]}}"#,
                #"{"custom_id": "oa-tool-result-\#(tag)", "method": "POST", "url": "/v1/chat/completions", "pin": true, "body": {"model": "\#(model)", "max_tokens": 50, "tools": \#(OutputShapesTests.weatherOpenAI), "tool_choice": "none", "messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}, {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"}]}}"#,
                #"{"custom_id": "oa-image-\#(tag)", "method": "POST", "url": "/v1/chat/completions", "pin": true, "body": {"model": "\#(model)", "max_tokens": 50, "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}}"#,
                #"{"custom_id": "oa-json-\#(tag)", "method": "POST", "url": "/v1/chat/completions", "pin": true, "body": {"model": "\#(model)", "max_tokens": 50, "response_format": {"type": "json_object"}, "stop": ["END"], "messages": [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Three colours"}]}}"#,
                #"{"custom_id": "an-tools-\#(tag)", "pin": true, "params": {"model": "\#(model)", "max_tokens": 50, "tools": \#(OutputShapesTests.weatherAnthropic), "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": "Weather in Rome?"}]}}"#,
                #"{"custom_id": "an-image-\#(tag)", "pin": true, "params": {"model": "\#(model)", "max_tokens": 50, "system": "Be brief.", "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}, {"type": "text", "text": "Describe it"}]}]}}"#,
            ]
        }
        return lines
    }

    @Test func everyOutputFormatValidatesWithTheOfficialSDKsAndToolCallsSurviveEveryCrossing() async throws {
        let server = try FakeProviderProcess([])
        defer { server.stop() }
        let pricing = try fakePricing(port: server.port)
        let database = temporaryDatabase()
        // Job 1: every feature through every pair of dialects.
        try await purser(["submit", try write(featureLines)], database: database, pricing: pricing)
        // Job 2: expired (its deadline moved into the past), job 3: cancelled, job 4: failed (the provider refuses its model).
        let plain = (0..<2).map { #"{"custom_id": "p\#($0)", "prompt": "Hi", "max_tokens": 10, "model": "small", "pin": true}"# }
        for _ in 0..<3 { try await purser(["submit", try write(plain), "--force"], database: database, pricing: pricing) }
        let connection = try PurserDatabase.open(path: database)
        try connection.execute("UPDATE requests SET deadline_at = 1 WHERE job_id = 2")
        #expect(try await purser(["cancel", "3"], database: database, pricing: pricing).code == 0)
        #expect(try await purser(["run", "--job", "1"], database: database, pricing: pricing).code == 0)
        #expect(try await purser(["run", "--job", "2"], database: database, pricing: pricing).code == 0)
        server.stop()
        let refusing = try FakeProviderProcess(["--refuse-model", "small"])
        defer { refusing.stop() }
        #expect(try await purser(["run", "--job", "4"], database: database, pricing: try fakePricing(port: refusing.port)).code == 1)

        var openai = "", anthropic = ""
        for job in 1...4 {
            openai += try await purser(["results", String(job)], database: database, pricing: pricing).out
            anthropic += try await purser(["results", String(job), "--format", "anthropic"], database: database, pricing: pricing).out
        }
        let openaiKinds = try await validate("openai", openai)
        #expect(openaiKinds == ["200 completion": 8, "200 tool_calls": 4, "400 error": 2, "batch_cancelled": 2, "batch_expired": 2], "\(openaiKinds)")
        let anthropicKinds = try await validate("anthropic", anthropic)
        #expect(anthropicKinds == ["succeeded": 8, "succeeded tool_use": 4, "errored invalid_request_error": 2, "canceled": 2, "expired": 2],
            "\(anthropicKinds)")
        // The call itself, whichever dialect served it: the function's name and its arguments.
        let lines = Dictionary(openai.split(separator: "\n").compactMap { text -> (String, JSONObject)? in
            guard let object = (try? JSONParser.parse(String(text)))?.objectValue, let id = object["custom_id"]?.stringValue else { return nil }
            return (id, object)
        }, uniquingKeysWith: { first, _ in first })
        for id in ["oa-tools-to-anthropic", "an-tools-to-openai", "oa-tools-to-openai", "an-tools-to-anthropic"] {
            let body = lines[id]?["response"]?.objectValue?["body"]?.objectValue
            let choice = body?["choices"]?.arrayValue?.first?.objectValue
            let call = choice?["message"]?.objectValue?["tool_calls"]?.arrayValue?.first?.objectValue?["function"]?.objectValue
            #expect(choice?["finish_reason"]?.stringValue == "tool_calls", "\(id)")
            #expect(call?["name"]?.stringValue == "get_weather", "\(id)")
            #expect((try? JSONParser.parse(call?["arguments"]?.stringValue ?? ""))?.objectValue?["city"] != nil, "\(id): \(call.map { "\($0)" } ?? "no call")")
            // body.model is the provider's name for the model that served it, never Purser's id.
            #expect(body?["model"]?.stringValue.map { !$0.contains("/") } == true, "\(id)")
        }
        // The simulator's answers too (job 5: the features again, rehearsed).
        try await purser(["submit", try write(featureLines), "--force"], database: database, pricing: pricing)
        #expect(try await purser(["run", "--job", "5", "--simulate", "--speedup", "1000"], database: database, pricing: pricing).code == 0)
        let simulatedOpenAI = try await purser(["results", "5"], database: database, pricing: pricing).out
        await #expect(try validate("openai", simulatedOpenAI) == ["200 completion": 8, "200 tool_calls": 4])
        let simulatedAnthropic = try await purser(["results", "5", "--format", "anthropic"], database: database, pricing: pricing).out
        await #expect(try validate("anthropic", simulatedAnthropic) == ["succeeded": 8, "succeeded tool_use": 4])
        #expect(!simulatedOpenAI.contains(#""simulated":true,"#) || simulatedOpenAI.components(separatedBy: #""simulated":true"#).count - 1 == 12,
            "simulated is said once per line, under purser, never inside the body")
        // Nothing of Purser's inside the provider's body; all of it under `purser`.
        #expect(!openai.contains(#""simulated":true}}"#) && !openai.contains(#""body":{"simulated""#))
        #expect(lines["p0"]?["purser"]?.objectValue?["state"] != nil)
    }
}
