import Foundation

/// Answers every call in-process, deterministically: the same request and model always get the same
/// text and usage. Latency follows the model's speed figures (time to first token plus output tokens
/// at its typical rate), divided by `speedup`. Every answer says it was simulated.
public struct Simulator: ModelCaller {
    public var speedup: Double

    public init(speedup: Double = 1) { self.speedup = max(speedup, 0.001) }

    public func call(_ call: ProviderCall) async -> Result<ProviderResponse, CallFailure> {
        let response = Simulator.answer(call)
        let milliseconds = min(Double(call.model.speed.callDuration(outputTokens: response.usage.outputTokens)) / speedup, 3_600_000)
        // Cancelled means the run is stopping: the answer is still given, and the run decides whether to keep it.
        try? await Task.sleep(nanoseconds: UInt64(milliseconds * 1_000_000))
        return .success(response)
    }

    /// The answer to `call`, at once: the same call always gets the same text and usage.
    public static func answer(_ call: ProviderCall) -> ProviderResponse {
        var random = SplitMix64(seed: Simulator.seed(call.requestID, call.model.id))
        let maxTokens = (call.body["max_completion_tokens"] ?? call.body["max_tokens"])?.intValue ?? TokenEstimator.defaultMaxOutputTokens
        // Answers use between a third and nine tenths of what they may.
        let output = max(1, maxTokens * (33 + random.below(58)) / 100)
        let input = TokenEstimator.inputTokens(textBytes: JSONWriter.string(.object(call.body)).utf8.count, messages: 1, images: 0)
        let cached = random.below(4) == 0 ? input / 2 : 0
        let text = "Simulated answer from \(call.model.id) to \(call.customID) (\(output) tokens)."
        let id = "sim-\(call.requestID)-\(random.next() % 1_000_000)"
        let body: JSONObject
        let usage: Usage
        switch call.provider.dialect {
        case .openai:
            usage = Usage(inputTokens: input - cached, cachedInputTokens: cached, outputTokens: output)
            body = JSONObject([
                "id": .string(id), "object": .string("chat.completion"), "model": .string(call.model.providerModel),
                "choices": .array([.object(JSONObject([
                    "index": .number("0"), "message": .object(JSONObject(["role": .string("assistant"), "content": .string(text)])),
                    "finish_reason": .string("stop"),
                ]))]),
                "usage": .object(JSONObject([
                    "prompt_tokens": .number(String(input)), "completion_tokens": .number(String(output)),
                    "total_tokens": .number(String(input + output)),
                    "prompt_tokens_details": .object(JSONObject(["cached_tokens": .number(String(cached))])),
                ])),
                "simulated": .bool(true),
            ])
        case .anthropic:
            usage = Usage(inputTokens: input - cached, cachedInputTokens: cached, outputTokens: output)
            body = JSONObject([
                "id": .string(id), "type": .string("message"), "role": .string("assistant"), "model": .string(call.model.providerModel),
                "content": .array([.object(JSONObject(["type": .string("text"), "text": .string(text)]))]),
                "stop_reason": .string("end_turn"), "stop_sequence": .null,
                "usage": .object(JSONObject([
                    "input_tokens": .number(String(input - cached)), "output_tokens": .number(String(output)),
                    "cache_read_input_tokens": .number(String(cached)), "cache_creation_input_tokens": .number("0"),
                ])),
                "simulated": .bool(true),
            ])
        }
        return ProviderResponse(statusCode: 200, providerRequestID: id, body: JSONWriter.string(.object(body)), usage: usage, simulated: true)
    }

    static func seed(_ requestID: Int64, _ model: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(bitPattern: requestID)
        for byte in model.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return hash
    }
}
