import Foundation

/// Answers every call in-process, deterministically: the same request and model always get the same
/// text and usage. Latency follows the model's speed figures (time to first token plus output tokens
/// at its typical rate), divided by `speedup`. Every answer is marked simulated where Purser keeps it (results,
/// the ledger, the `purser` key of results), never inside the provider-shaped body. A request offering tools is
/// answered with a call of the first one. A reasoning model (one with reasoning room in its tables) spends part of its
/// output limit on reasoning first, reported as `reasoning_tokens`, so a limit that leaves it none gets an empty answer.
public struct Simulator: ModelCaller {
    public var speedup: Double
    /// Whose time the modelled latency passes in.
    public var clock: WallClock
    /// The prompt cache the simulated providers keep, faithful to each model's caching rule.
    public let cache = SimulatedCache()

    public init(speedup: Double = 1, clock: WallClock = .system) {
        self.speedup = max(speedup, 0.001)
        self.clock = clock
    }

    public func call(_ call: ProviderCall) async -> Result<ProviderResponse, CallFailure> {
        let now = clock.now()
        // Caching applies only where the mode keeps it (none in a discounted mode whose rule says none).
        let cacheKept = call.model.caching?.keepsCache(in: call.mode) ?? false
        let firstToken = Int64(Double(call.model.speed.timeToFirstTokenMilliseconds) / speedup)
        let cached = cacheKept
            ? cache.use(model: call.model, provider: call.provider.name, prefix: PromptPrefix(body: call.body, dialect: call.provider.dialect), now: now,
                answerBegins: now + firstToken, speedup: speedup)
            : .none
        let response = Simulator.answer(call, cached: cached)
        let milliseconds = min(Double(call.model.speed.callDuration(outputTokens: response.usage.outputTokens)) / speedup, 3_600_000)
        // Cancelled means the run is stopping: the answer is still given, and the run decides whether to keep it.
        await clock.pause(milliseconds: Int64(milliseconds))
        return .success(response)
    }

    /// The answer to `call`, at once: the same call always gets the same text and usage.
    /// The first tool a body offers, in its dialect, with arguments naming each property of its schema, unless the
    /// body says no tool may be called.
    static func firstTool(of body: JSONObject, dialect: Provider.Dialect) -> (name: String, arguments: JSONObject)? {
        guard let tool = body["tools"]?.arrayValue?.first?.objectValue else { return nil }
        let none = dialect == .openai ? body["tool_choice"]?.stringValue == "none" : body["tool_choice"]?.objectValue?["type"]?.stringValue == "none"
        guard !none else { return nil }
        let definition = dialect == .openai ? tool["function"]?.objectValue ?? JSONObject() : tool
        let schema = (dialect == .openai ? definition["parameters"] : definition["input_schema"])?.objectValue
        var arguments = JSONObject()
        for property in schema?["properties"]?.objectValue?.members ?? [] {
            arguments[property.key] = property.value.objectValue?["type"]?.stringValue == "number" || property.value.objectValue?["type"]?.stringValue == "integer"
                ? .number("1") : .string("example \(property.key)")
        }
        return (definition["name"]?.stringValue ?? "tool", arguments)
    }

    /// `cached` is what the call read from the simulated cache and wrote to it.
    public static func answer(_ call: ProviderCall, cached cache: SimulatedCache.Use = .none) -> ProviderResponse {
        var random = SplitMix64(seed: Simulator.seed(call.requestID, call.model.id))
        let limit = DialectTranslation.outputLimit(of: call.body)
        // Answers use between a third and nine tenths of what they may. A reasoning model first spends a quarter to
        // three quarters of its reasoning room, inside the same limit: a limit that leaves no room is an empty answer.
        let room = call.model.parameters.reasoningRoomTokens
        let reasoning = room > 0 ? min(room * (25 + random.below(51)) / 100, limit) : 0
        let answerRoom = max(limit - room, 0)
        let answer = limit > reasoning ? min(max(1, answerRoom * (33 + random.below(58)) / 100), limit - reasoning) : 0
        let output = max(reasoning + answer, 1)
        let truncated = answer == 0
        let input = Simulator.reportedInputTokens(of: call.body, model: call.model, provider: call.provider, requestID: call.requestID)
        // The cache's counts are in the estimate's tokens; the provider reports them in its own, as it does the input.
        let (cached, written) = cache.reported(input: input, step: call.model.caching?.stepTokens ?? 1)
        let text = truncated ? "" : "Simulated answer from \(call.model.id) to \(call.customID) (\(answer) tokens)."
        let id = "sim-\(call.requestID)-\(random.next() % 1_000_000)"
        let body: JSONObject
        let usage: Usage
        // A request with tools is answered with a call of its first one, its arguments the schema's properties.
        let tool = truncated ? nil : Simulator.firstTool(of: call.body, dialect: call.provider.dialect)
        let toolID = "call_sim_\(call.requestID)"
        switch call.provider.dialect {
        case .openai:
            usage = Usage(inputTokens: input - cached, cachedInputTokens: cached, outputTokens: output)
            var reply = JSONObject(["role": .string("assistant"), "content": tool == nil ? .string(text) : .null])
            if let tool {
                reply["tool_calls"] = .array([.object(JSONObject([
                    "id": .string(toolID), "type": .string("function"),
                    "function": .object(JSONObject(["name": .string(tool.name), "arguments": .string(JSONWriter.string(.object(tool.arguments)))])),
                ]))])
            }
            body = JSONObject([
                "id": .string(id), "object": .string("chat.completion"), "created": .number(String(Int64(Date().timeIntervalSince1970))),
                "model": .string(call.model.providerModel),
                "choices": .array([.object(JSONObject([
                    "index": .number("0"), "message": .object(reply),
                    "finish_reason": .string(truncated ? "length" : tool == nil ? "stop" : "tool_calls"),
                ]))]),
                "usage": .object(JSONObject([
                    "prompt_tokens": .number(String(input)), "completion_tokens": .number(String(output)),
                    "total_tokens": .number(String(input + output)),
                    "prompt_tokens_details": .object(JSONObject(["cached_tokens": .number(String(cached))])),
                    "completion_tokens_details": .object(JSONObject(["reasoning_tokens": .number(String(reasoning))])),
                ])),
            ])
        case .anthropic:
            usage = Usage(inputTokens: input - cached - written, cachedInputTokens: cached, cacheWriteTokens: written, outputTokens: output)
            body = JSONObject([
                "id": .string(id), "type": .string("message"), "role": .string("assistant"), "model": .string(call.model.providerModel),
                "content": .array(tool.map { tool in
                    [.object(JSONObject(["type": .string("tool_use"), "id": .string(toolID), "name": .string(tool.name), "input": .object(tool.arguments)]))]
                } ?? [.object(JSONObject(["type": .string("text"), "text": .string(text)]))]),
                "stop_reason": .string(truncated ? "max_tokens" : tool == nil ? "end_turn" : "tool_use"), "stop_sequence": .null,
                "usage": .object(JSONObject([
                    "input_tokens": .number(String(input - cached - written)), "output_tokens": .number(String(output)),
                    "cache_read_input_tokens": .number(String(cached)), "cache_creation_input_tokens": .number(String(written)),
                ])),
            ])
        }
        return ProviderResponse(statusCode: 200, providerRequestID: id, body: JSONWriter.string(.object(body)), usage: usage, simulated: true)
    }

    /// How many tokens each simulated provider counts where Purser's estimate says 100: every tokenizer splits text its
    /// own way, and the estimate knows none of them. These are the simulator's assumptions, not measurements (Claude's
    /// tokenizer is the one widely reported to count more); they make a rehearsal show what calibration learns
    /// (`InputCalibration`). A provider not named counts what the estimate says.
    static let tokenizerPercent: [String: Int] = ["openai": 100, "anthropic": 118, "google": 93, "deepseek": 107, "mistral": 112, "groq": 104]

    /// The input a simulated provider reports for `body` (in its dialect) on `model`: the estimate of that body at its
    /// tokenizer's share, give or take 6% per request (from its own seed, so the rest of an answer is as it was).
    public static func reportedInputTokens(of body: JSONObject, model: Model, provider: Provider, requestID: Int64) -> Int {
        let estimate: Int
        switch ChatBody.summarize(body, dialect: provider.dialect, fieldPrefix: "body.") {
        case .success(let summary): estimate = summary.inputTokens
        case .failure:
            let bytes = JSONWriter.bytes(.object(body)).count
            estimate = TokenEstimator.inputTokens(textBytes: bytes, messages: 1, images: 0)
        }
        var random = SplitMix64(seed: Simulator.seed(requestID, model.id) ^ 0x746F_6B65_6E69_7A65)
        let percent = (tokenizerPercent[provider.name] ?? 100) * (94 + random.below(13))
        return max(1, Int((Int64(estimate) * Int64(percent) + 5_000) / 10_000))
    }

    static func seed(_ requestID: Int64, _ model: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(bitPattern: requestID)
        for byte in model.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return hash
    }
}
