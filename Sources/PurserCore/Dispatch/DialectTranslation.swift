/// Moves chat bodies between the OpenAI chat-completions and Anthropic messages dialects, and reads
/// what comes back. Fields Purser does not interpret are passed through where both dialects share them.
public enum DialectTranslation {
    /// Fields with the same name and meaning in both dialects.
    static let sharedFields = ["temperature", "top_p"]

    /// The body to send to `provider` for `model`, from the stored body (JSON text) written in `storedDialect`.
    /// Submit stored only JSON objects, so one that does not read as one is a damaged database: it is an error,
    /// never an empty body sent in its place.
    public static func requestBody(
        stored text: String, storedDialect: Provider.Dialect, model: Model, provider: Provider, mode: DispatchMode
    ) throws -> JSONObject {
        guard let stored = (try? JSONParser.parse(text))?.objectValue else {
            throw Problem("its stored body is not a JSON object (\(text.prefix(60))); the database may be damaged")
        }
        var body: JSONObject
        switch (storedDialect, provider.dialect) {
        case (.openai, .openai), (.anthropic, .anthropic): body = stored
        case (.openai, .anthropic): body = anthropicBody(fromOpenAI: stored)
        case (.anthropic, .openai): body = openAIBody(fromAnthropic: stored)
        }
        body["model"] = .string(model.providerModel)
        // The limit always goes out, so an answer can never be longer than what was reserved for it: the request's own
        // (or the default it was planned with), plus the model's reasoning room, under the name the model takes.
        let requested = outputLimit(of: body)
        body["max_completion_tokens"] = nil
        body["max_tokens"] = nil
        body[outputLimitName(of: model, provider: provider)] = .number(String(model.outputAllowance(requested)))
        if mode == .flex { body["service_tier"] = .string("flex") }
        return body
    }

    /// The output limit a body gives (`max_completion_tokens` or `max_tokens`), or the default it is planned with.
    static func outputLimit(of body: JSONObject) -> Int {
        (body["max_completion_tokens"] ?? body["max_tokens"])?.intValue ?? TokenEstimator.defaultMaxOutputTokens
    }

    /// The body field a model's output limit goes in: its tables' `parameters.output_limit`, else `max_tokens`, except
    /// OpenAI's own models, whose reasoning models refuse `max_tokens` (`max_completion_tokens` works on all of them).
    static func outputLimitName(of model: Model, provider: Provider) -> String {
        guard provider.dialect == .openai else { return "max_tokens" }
        return model.parameters.outputLimitName ?? (provider.name == "openai" ? "max_completion_tokens" : "max_tokens")
    }

    // MARK: - OpenAI → Anthropic

    static func anthropicBody(fromOpenAI openai: JSONObject) -> JSONObject {
        var body = JSONObject()
        var system: [String] = []
        var messages: [JSONValue] = []
        for message in openai["messages"]?.arrayValue ?? [] {
            guard let object = message.objectValue, let role = object["role"]?.stringValue else { continue }
            switch role {
            case "system", "developer":
                system.append(plainText(object["content"]))
            case "tool":
                let block = JSONObject([
                    "type": .string("tool_result"), "tool_use_id": object["tool_call_id"] ?? .string(""),
                    "content": .string(plainText(object["content"])),
                ])
                messages.append(.object(JSONObject(["role": .string("user"), "content": .array([.object(block)])])))
            default:
                var blocks: [JSONValue] = anthropicBlocks(object["content"])
                for call in object["tool_calls"]?.arrayValue ?? [] {
                    guard let call = call.objectValue, let function = call["function"]?.objectValue else { continue }
                    let input = (try? JSONParser.parse(function["arguments"]?.stringValue ?? "{}")) ?? .object(JSONObject())
                    blocks.append(.object(JSONObject([
                        "type": .string("tool_use"), "id": call["id"] ?? .string(""), "name": function["name"] ?? .string(""), "input": input,
                    ])))
                }
                messages.append(.object(JSONObject(["role": .string(role == "assistant" ? "assistant" : "user"), "content": .array(blocks)])))
            }
        }
        body["max_tokens"] = openai["max_completion_tokens"] ?? openai["max_tokens"] ?? .number(String(TokenEstimator.defaultMaxOutputTokens))
        if !system.isEmpty { body["system"] = .string(system.joined(separator: "\n\n")) }
        body["messages"] = .array(messages)
        for field in sharedFields { if let value = openai[field] { body[field] = value } }
        if let stop = openai["stop"] { body["stop_sequences"] = stop.stringValue.map { .array([.string($0)]) } ?? stop }
        if let tools = openai["tools"]?.arrayValue {
            body["tools"] = .array(tools.compactMap { tool in
                guard let function = tool.objectValue?["function"]?.objectValue else { return nil }
                var converted = JSONObject(["name": function["name"] ?? .string("")])
                if let description = function["description"] { converted["description"] = description }
                converted["input_schema"] = function["parameters"] ?? .object(JSONObject(["type": .string("object")]))
                return .object(converted)
            })
        }
        var choice: JSONObject?
        switch openai["tool_choice"] {
        case .string("auto")?: choice = JSONObject(["type": .string("auto")])
        case .string("required")?: choice = JSONObject(["type": .string("any")])
        case .string("none")?: choice = JSONObject(["type": .string("none")])
        case .object(let named)?:
            if let name = named["function"]?.objectValue?["name"] { choice = JSONObject(["type": .string("tool"), "name": name]) }
        default: break
        }
        // One call at most: Anthropic says it on the tool choice.
        if openai["parallel_tool_calls"]?.boolValue == false, body["tools"] != nil {
            if choice == nil { choice = JSONObject(["type": .string("auto")]) }
            if choice?["type"]?.stringValue != "none" { choice?["disable_parallel_tool_use"] = .bool(true) }
        }
        if let choice { body["tool_choice"] = .object(choice) }
        // A JSON schema becomes Anthropic's structured output (`output_config.format`,
        // https://platform.claude.com/docs/en/build-with-claude/structured-outputs); JSON mode without a schema has no
        // Anthropic form, and the planner sends such a request only to models that list json_mode (Claude's rows do not).
        if let format = openai["response_format"]?.objectValue, format["type"]?.stringValue == "json_schema",
            let schema = format["json_schema"]?.objectValue?["schema"]
        {
            let structured = JSONObject(["type": .string("json_schema"), "schema": schema])
            body["output_config"] = .object(JSONObject(["format": .object(structured)]))
        }
        return body
    }

    static func anthropicBlocks(_ content: JSONValue?) -> [JSONValue] {
        switch content {
        case .string(let text)?: return [.object(JSONObject(["type": .string("text"), "text": .string(text)]))]
        case .array(let parts)?:
            return parts.compactMap { part in
                guard let object = part.objectValue else { return nil }
                switch object["type"]?.stringValue {
                case "image_url"?:
                    let url = object["image_url"]?.objectValue?["url"]?.stringValue ?? ""
                    if url.hasPrefix("data:"), let comma = url.firstIndex(of: ",") {
                        let mediaType = url.dropFirst(5).prefix { $0 != ";" }
                        return .object(JSONObject(["type": .string("image"), "source": .object(JSONObject([
                            "type": .string("base64"), "media_type": .string(String(mediaType)), "data": .string(String(url[url.index(after: comma)...])),
                        ]))]))
                    }
                    return .object(JSONObject(["type": .string("image"), "source": .object(JSONObject(["type": .string("url"), "url": .string(url)]))]))
                default:
                    return .object(JSONObject(["type": .string("text"), "text": object["text"] ?? .string("")]))
                }
            }
        default: return []
        }
    }

    // MARK: - Anthropic → OpenAI

    static func openAIBody(fromAnthropic anthropic: JSONObject) -> JSONObject {
        var messages: [JSONValue] = []
        if let system = anthropic["system"] {
            messages.append(.object(JSONObject(["role": .string("system"), "content": .string(plainText(system))])))
        }
        for message in anthropic["messages"]?.arrayValue ?? [] {
            guard let object = message.objectValue, let role = object["role"]?.stringValue else { continue }
            guard case .array(let blocks)? = object["content"] else {
                messages.append(.object(JSONObject(["role": .string(role), "content": object["content"] ?? .string("")])))
                continue
            }
            var parts: [JSONValue] = []
            var toolCalls: [JSONValue] = []
            for block in blocks {
                guard let block = block.objectValue else { continue }
                switch block["type"]?.stringValue {
                case "image"?:
                    let source = block["source"]?.objectValue ?? JSONObject()
                    let url = source["type"]?.stringValue == "base64"
                        ? "data:\(source["media_type"]?.stringValue ?? "image/png");base64,\(source["data"]?.stringValue ?? "")"
                        : source["url"]?.stringValue ?? ""
                    parts.append(.object(JSONObject(["type": .string("image_url"), "image_url": .object(JSONObject(["url": .string(url)]))])))
                case "tool_use"?:
                    toolCalls.append(.object(JSONObject([
                        "id": block["id"] ?? .string(""), "type": .string("function"),
                        "function": .object(JSONObject([
                            "name": block["name"] ?? .string(""), "arguments": .string(JSONWriter.string(block["input"] ?? .object(JSONObject()))),
                        ])),
                    ])))
                case "tool_result"?:
                    messages.append(.object(JSONObject([
                        "role": .string("tool"), "tool_call_id": block["tool_use_id"] ?? .string(""), "content": .string(plainText(block["content"])),
                    ])))
                default:
                    parts.append(.object(JSONObject(["type": .string("text"), "text": block["text"] ?? .string("")])))
                }
            }
            if !parts.isEmpty || !toolCalls.isEmpty {
                var converted = JSONObject(["role": .string(role), "content": parts.isEmpty ? .null : .array(parts)])
                if !toolCalls.isEmpty { converted["tool_calls"] = .array(toolCalls) }
                messages.append(.object(converted))
            }
        }
        var body = JSONObject(["messages": .array(messages)])
        if let maxTokens = anthropic["max_tokens"] { body["max_tokens"] = maxTokens }
        for field in sharedFields { if let value = anthropic[field] { body[field] = value } }
        if let stop = anthropic["stop_sequences"] { body["stop"] = stop }
        if let tools = anthropic["tools"]?.arrayValue {
            body["tools"] = .array(tools.compactMap { tool in
                guard let object = tool.objectValue else { return nil }
                var function = JSONObject(["name": object["name"] ?? .string("")])
                if let description = object["description"] { function["description"] = description }
                function["parameters"] = object["input_schema"] ?? .object(JSONObject(["type": .string("object")]))
                return .object(JSONObject(["type": .string("function"), "function": .object(function)]))
            })
        }
        if let choice = anthropic["tool_choice"]?.objectValue {
            switch choice["type"]?.stringValue {
            case "any"?: body["tool_choice"] = .string("required")
            case "none"?: body["tool_choice"] = .string("none")
            case "tool"?:
                body["tool_choice"] = .object(JSONObject([
                    "type": .string("function"), "function": .object(JSONObject(["name": choice["name"] ?? .string("")])),
                ]))
            default: body["tool_choice"] = .string("auto")
            }
            if choice["disable_parallel_tool_use"]?.boolValue == true, body["tools"] != nil { body["parallel_tool_calls"] = .bool(false) }
        }
        if let format = anthropicStructuredOutput(anthropic), let schema = format["schema"] {
            body["response_format"] = .object(JSONObject([
                "type": .string("json_schema"),
                "json_schema": .object(JSONObject(["name": .string("output"), "schema": schema, "strict": .bool(true)])),
            ]))
        }
        return body
    }

    /// An Anthropic body's JSON-schema output format: `output_config.format`, or the beta's `output_format`.
    static func anthropicStructuredOutput(_ body: JSONObject) -> JSONObject? {
        let format = body["output_config"]?.objectValue?["format"]?.objectValue ?? body["output_format"]?.objectValue
        return format?["type"]?.stringValue == "json_schema" ? format : nil
    }

    /// The text of a content value written either way.
    static func plainText(_ content: JSONValue?) -> String {
        switch content {
        case .string(let text)?: return text
        case .array(let parts)?: return parts.compactMap { $0.objectValue?["text"]?.stringValue ?? $0.stringValue }.joined(separator: "\n")
        default: return ""
        }
    }

    // MARK: - Responses

    /// The most tokens one field of a provider's usage may report; more (or a negative count) makes the answer malformed.
    static let maximumReportedTokens = 1_000_000_000

    /// Reads usage from a successful response body; a body without it, or with counts out of range, is malformed (and retried).
    public static func usage(ofResponse body: JSONValue, dialect: Provider.Dialect) -> Usage? {
        guard let object = body.objectValue, let usage = object["usage"]?.objectValue else { return nil }
        for member in usage.members {
            if let number = member.value.intValue, !(0...maximumReportedTokens).contains(number) { return nil }
            if member.value.numberText != nil && member.value.intValue == nil { return nil }
        }
        for key in ["prompt_tokens_details"] {
            for member in usage[key]?.objectValue?.members ?? [] {
                if let number = member.value.intValue, !(0...maximumReportedTokens).contains(number) { return nil }
            }
        }
        switch dialect {
        case .openai:
            // prompt_tokens includes the cached ones.
            guard object["choices"]?.arrayValue != nil, let prompt = usage["prompt_tokens"]?.intValue,
                let completion = usage["completion_tokens"]?.intValue
            else { return nil }
            let cached = min(usage["prompt_tokens_details"]?.objectValue?["cached_tokens"]?.intValue ?? 0, prompt)
            return Usage(inputTokens: prompt - cached, cachedInputTokens: cached, outputTokens: completion)
        case .anthropic:
            // cache_read_input_tokens and cache_creation_input_tokens come on top of input_tokens.
            guard object["content"]?.arrayValue != nil, let input = usage["input_tokens"]?.intValue,
                let output = usage["output_tokens"]?.intValue
            else { return nil }
            return Usage(
                inputTokens: input, cachedInputTokens: usage["cache_read_input_tokens"]?.intValue ?? 0,
                cacheWriteTokens: usage["cache_creation_input_tokens"]?.intValue ?? 0, outputTokens: output)
        }
    }

    /// The answer's text, whichever dialect it came in.
    public static func answerText(ofResponse body: JSONValue, dialect: Provider.Dialect) -> String {
        switch dialect {
        case .openai:
            return body.objectValue?["choices"]?.arrayValue?.first?.objectValue?["message"]?.objectValue?["content"]?.stringValue ?? ""
        case .anthropic:
            return plainText(body.objectValue?["content"])
        }
    }

    /// An OpenAI chat completion carrying the same answer, for OpenAI-format results of any provider: its text, its
    /// tool calls (`tool_use` blocks become `tool_calls` with their input as JSON arguments), its stop reason and
    /// usage; `model` is the name the provider gave (the message's own), `created` the moment it was stored.
    public static func openAICompletion(fromAnthropic message: JSONObject, model: String, created: Int64) -> JSONObject {
        let usage = message["usage"]?.objectValue ?? JSONObject()
        // Stored answers passed `usage(ofResponse:)`, so each count is at most a billion and the sums cannot overflow.
        let input = (usage["input_tokens"]?.intValue ?? 0) + (usage["cache_read_input_tokens"]?.intValue ?? 0)
            + (usage["cache_creation_input_tokens"]?.intValue ?? 0)
        let output = usage["output_tokens"]?.intValue ?? 0
        let finish: String
        switch message["stop_reason"]?.stringValue {
        case "max_tokens"?: finish = "length"
        case "tool_use"?: finish = "tool_calls"
        case "refusal"?: finish = "content_filter"
        default: finish = "stop"
        }
        var texts: [String] = []
        var toolCalls: [JSONValue] = []
        for block in message["content"]?.arrayValue ?? [] {
            guard let block = block.objectValue else { continue }
            switch block["type"]?.stringValue {
            case "text"?: texts.append(block["text"]?.stringValue ?? "")
            case "tool_use"?:
                toolCalls.append(.object(JSONObject([
                    "id": .string(block["id"]?.stringValue ?? ""), "type": .string("function"),
                    "function": .object(JSONObject([
                        "name": .string(block["name"]?.stringValue ?? ""),
                        "arguments": .string(JSONWriter.string(block["input"] ?? .object(JSONObject()))),
                    ])),
                ])))
            default: break
            }
        }
        var reply = JSONObject(["role": .string("assistant"), "content": texts.isEmpty && !toolCalls.isEmpty ? .null : .string(texts.joined())])
        if !toolCalls.isEmpty { reply["tool_calls"] = .array(toolCalls) }
        if finish == "content_filter" { reply["refusal"] = .string(texts.joined()) }
        return JSONObject([
            "id": .string(message["id"]?.stringValue ?? ""), "object": .string("chat.completion"), "created": .number(String(created)),
            "model": .string(message["model"]?.stringValue ?? model),
            "choices": .array([.object(JSONObject(["index": .number("0"), "message": .object(reply), "finish_reason": .string(finish)]))]),
            "usage": .object(JSONObject([
                "prompt_tokens": .number(String(input)), "completion_tokens": .number(String(output)),
                "total_tokens": .number(String(input + output)),
                "prompt_tokens_details": .object(JSONObject(["cached_tokens": .number(String(usage["cache_read_input_tokens"]?.intValue ?? 0))])),
            ])),
        ])
    }

    /// An Anthropic message carrying the same answer, for Anthropic-format results of any provider: its text, its
    /// tool calls (`tool_calls` become `tool_use` blocks with their arguments as input), its stop reason and usage;
    /// `model` is the name the provider gave (the completion's own).
    public static func anthropicMessage(fromOpenAI completion: JSONObject, model: String) -> JSONObject {
        let usage = completion["usage"]?.objectValue ?? JSONObject()
        let cached = usage["prompt_tokens_details"]?.objectValue?["cached_tokens"]?.intValue ?? 0
        let choice = completion["choices"]?.arrayValue?.first?.objectValue
        let stop: String
        switch choice?["finish_reason"]?.stringValue {
        case "length"?: stop = "max_tokens"
        case "tool_calls"?, "function_call"?: stop = "tool_use"
        case "content_filter"?: stop = "refusal"
        default: stop = "end_turn"
        }
        let reply = choice?["message"]?.objectValue
        var blocks: [JSONValue] = []
        let text = reply?["content"]?.stringValue ?? reply?["refusal"]?.stringValue ?? plainText(reply?["content"])
        if !text.isEmpty || reply?["tool_calls"] == nil { blocks.append(.object(JSONObject(["type": .string("text"), "text": .string(text)]))) }
        for call in reply?["tool_calls"]?.arrayValue ?? [] {
            guard let call = call.objectValue, let function = call["function"]?.objectValue else { continue }
            // Arguments are JSON text; text that does not read as an object is kept under `arguments`.
            let arguments = function["arguments"]?.stringValue ?? "{}"
            let input = (try? JSONParser.parse(arguments)).flatMap { $0.objectValue.map(JSONValue.object) }
                ?? .object(JSONObject(["arguments": .string(arguments)]))
            blocks.append(.object(JSONObject([
                "type": .string("tool_use"), "id": .string(call["id"]?.stringValue ?? ""), "name": .string(function["name"]?.stringValue ?? ""),
                "input": input,
            ])))
        }
        return JSONObject([
            "id": .string(completion["id"]?.stringValue ?? ""), "type": .string("message"), "role": .string("assistant"),
            "model": .string(completion["model"]?.stringValue ?? model), "content": .array(blocks),
            "stop_reason": .string(stop), "stop_sequence": .null,
            "usage": .object(JSONObject([
                "input_tokens": .number(String(max((usage["prompt_tokens"]?.intValue ?? 0) - cached, 0))),
                "output_tokens": .number(String(usage["completion_tokens"]?.intValue ?? 0)),
                "cache_read_input_tokens": .number(String(cached)),
            ])),
        ])
    }

    // MARK: - Errors

    /// Sorts an error answer into what Purser does next.
    public static func classify(status: Int, body: String, retryAfterMilliseconds: Int64?) -> CallFailure {
        let message = errorMessage(body) ?? "HTTP \(status)"
        let lowered = body.lowercased()
        switch status {
        case 401, 403:
            return CallFailure(kind: .auth, status: status, message: message)
        case 429 where lowered.contains("insufficient_quota") || lowered.contains("enforced_spend_limit_reached"):
            return CallFailure(kind: .quota, status: status, message: message)
        case 408, 409, 429, 500...599:
            return CallFailure(kind: .retryable, status: status, message: message, retryAfterMilliseconds: retryAfterMilliseconds)
        case 400, 404, 413, 422:
            let modelCannot = [
                "context_length_exceeded", "maximum context length", "prompt is too long", "too many tokens", "unsupported_parameter",
                "unsupported parameter", "unsupported value", "not supported", "model_not_found", "does not exist",
            ].contains(where: lowered.contains)
            return CallFailure(kind: modelCannot ? .modelRefused : .permanent, status: status, message: message)
        default:
            return CallFailure(kind: .permanent, status: status, message: message)
        }
    }

    /// The longest error message kept from a provider's answer; the rest is cut.
    static let maximumErrorMessageCharacters = 500

    /// `error.message` from either dialect's error body, at most 500 characters.
    static func errorMessage(_ body: String) -> String? {
        guard let object = try? JSONParser.parse(body).objectValue,
            let message = object["error"]?.objectValue?["message"]?.stringValue ?? object["message"]?.stringValue
        else { return nil }
        return message.count > maximumErrorMessageCharacters ? message.prefix(maximumErrorMessageCharacters) + "…" : message
    }
}
