import Foundation

/// How results are written: OpenAI's batch output line for line, Anthropic's batch results, a flat
/// JSON line per request, or CSV. Each JSON format adds a `purser` key with model, provider, mode,
/// cost, attempts and whether the answer was simulated.
public enum ResultFormat: String, Sendable, CaseIterable {
    case openai, anthropic, jsonl, csv

    public static let csvHeader = "custom_id,state,model,provider,mode,input_tokens,cached_input_tokens,output_tokens,cost_usd,attempts,simulated,error,text"

    public func line(_ row: ResultRow) -> String {
        let body = row.answer.flatMap { try? JSONParser.parse($0.body).objectValue }
        switch self {
        case .openai:
            var object = JSONObject(["id": .string("batch_req_\(row.requestID)"), "custom_id": .string(row.customID)])
            if let answer = row.answer, let stored = body {
                object["response"] = .object(JSONObject([
                    "status_code": .number(String(answer.statusCode)), "request_id": .string(answer.providerRequestID ?? "purser_req_\(row.requestID)"),
                    "body": .object(ResultFormat.chatCompletion(stored, answer: answer)),
                ]))
                object["error"] = .null
            } else {
                (object["response"], object["error"]) = ResultFormat.openAIFailure(row)
            }
            object["purser"] = purserKey(row)
            return JSONWriter.string(.object(object))
        case .anthropic:
            var result: JSONObject
            switch row.state {
            case .succeeded:
                var message = body ?? JSONObject()
                if let answer = row.answer, answer.dialect == .openai {
                    message = DialectTranslation.anthropicMessage(fromOpenAI: message, model: ResultFormat.providerModel(answer))
                }
                result = JSONObject(["type": .string("succeeded"), "message": .object(message)])
            case .expired: result = JSONObject(["type": .string("expired")])
            case .cancelled: result = JSONObject(["type": .string("canceled")])
            default:
                result = JSONObject([
                    "type": .string("errored"),
                    "error": .object(JSONObject([
                        "type": .string("error"),
                        "error": .object(JSONObject([
                            "type": .string(ResultFormat.anthropicErrorType(row)), "message": .string(row.lastError ?? "failed"),
                        ])),
                    ])),
                ])
            }
            return JSONWriter.string(.object(JSONObject(["custom_id": .string(row.customID), "result": .object(result), "purser": purserKey(row)])))
        case .jsonl:
            var object = JSONObject(["custom_id": .string(row.customID), "state": .string(row.state.rawValue)])
            if let answer = row.answer {
                object["text"] = .string(body.map { DialectTranslation.answerText(ofResponse: .object($0), dialect: answer.dialect) } ?? "")
            } else {
                object["error"] = .string(row.lastError ?? row.state.rawValue)
            }
            for member in purserKey(row).objectValue?.members ?? [] { object[member.key] = member.value }
            return JSONWriter.string(.object(object))
        case .csv:
            let answer = row.answer
            let text = answer.flatMap { answer in body.map { DialectTranslation.answerText(ofResponse: .object($0), dialect: answer.dialect) } } ?? ""
            let fields = [
                ResultFormat.csvText(row.customID), row.state.rawValue, ResultFormat.csvText(answer?.model ?? ""),
                ResultFormat.csvText(answer?.provider ?? ""), answer?.mode ?? "",
                answer.map { String($0.usage.inputTokens + $0.usage.cachedInputTokens + $0.usage.cacheWriteTokens) } ?? "",
                answer.map { String($0.usage.cachedInputTokens) } ?? "", answer.map { String($0.usage.outputTokens) } ?? "",
                answer?.cost.exactUSD ?? "", String(row.attempts), answer.map { $0.simulated ? "true" : "false" } ?? "",
                ResultFormat.csvText(row.answer == nil ? (row.lastError ?? "") : ""), ResultFormat.csvText(text),
            ]
            return fields.map(ResultFormat.csvField).joined(separator: ",")
        }
    }

    private func purserKey(_ row: ResultRow) -> JSONValue {
        var object = JSONObject(["state": .string(row.state.rawValue), "attempts": .number(String(row.attempts))])
        if let answer = row.answer {
            object["model"] = .string(answer.model)
            object["provider"] = .string(answer.provider)
            object["mode"] = .string(answer.mode)
            object["input_tokens"] = .number(String(answer.usage.inputTokens + answer.usage.cachedInputTokens + answer.usage.cacheWriteTokens))
            object["cached_input_tokens"] = .number(String(answer.usage.cachedInputTokens))
            object["cache_write_tokens"] = .number(String(answer.usage.cacheWriteTokens))
            object["output_tokens"] = .number(String(answer.usage.outputTokens))
            object["cost_usd"] = .string(answer.cost.exactUSD)
            object["simulated"] = .bool(answer.simulated)
        }
        return .object(object)
    }

    /// The answer as an OpenAI chat completion: a native one as the provider sent it (with `created` and `object`
    /// where a compatible provider left them out), a translated one with its text, tool calls and usage.
    static func chatCompletion(_ stored: JSONObject, answer: ResultRow.Answer) -> JSONObject {
        let created = answer.finishedAt / 1000
        guard answer.dialect == .openai else {
            return DialectTranslation.openAICompletion(fromAnthropic: stored, model: providerModel(answer), created: created)
        }
        var completion = stored
        if completion["created"]?.intValue == nil { completion["created"] = .number(String(created)) }
        if completion["object"]?.stringValue != "chat.completion" { completion["object"] = .string("chat.completion") }
        if completion["model"]?.stringValue == nil { completion["model"] = .string(providerModel(answer)) }
        if completion["id"]?.stringValue == nil { completion["id"] = .string(answer.providerRequestID ?? "") }
        return completion
    }

    /// The provider's name for the model that served it (Purser's ids are `provider/name`).
    static func providerModel(_ answer: ResultRow.Answer) -> String {
        answer.model.hasPrefix(answer.provider + "/") ? String(answer.model.dropFirst(answer.provider.count + 1)) : answer.model
    }

    /// A request that did not succeed, as OpenAI's batch output has it: the provider's last HTTP answer as the
    /// response (`{"error": {message, type, param, code}}`), or, for a failure with no HTTP status, one of its
    /// non-HTTP codes (`batch_expired`, `batch_cancelled`, `request_timeout`).
    static func openAIFailure(_ row: ResultRow) -> (response: JSONValue, error: JSONValue) {
        let message = row.lastError ?? row.state.rawValue
        switch row.state {
        case .expired: return (.null, .object(JSONObject(["code": .string("batch_expired"), "message": .string(message)])))
        case .cancelled: return (.null, .object(JSONObject(["code": .string("batch_cancelled"), "message": .string(message)])))
        default: break
        }
        if row.lastStatus == nil, row.lastOutcome == CallFailure.Kind.retryable.rawValue || row.lastOutcome == CallFailure.Kind.unreachable.rawValue {
            return (.null, .object(JSONObject(["code": .string("request_timeout"), "message": .string(message)])))
        }
        // A failure Purser decided (no model can serve it, say) reads as the request's own fault: 400.
        let status = row.lastStatus ?? 400
        let (type, code): (String, JSONValue)
        switch status {
        case 401: (type, code) = ("invalid_request_error", .string("invalid_api_key"))
        case 403: (type, code) = ("invalid_request_error", .null)
        case 404: (type, code) = ("invalid_request_error", .string("model_not_found"))
        case 429: (type, code) = ("requests", .string("rate_limit_exceeded"))
        case 500...599: (type, code) = ("server_error", .null)
        default: (type, code) = ("invalid_request_error", .null)
        }
        let body = JSONObject(["error": .object(JSONObject([
            "message": .string(message), "type": .string(type), "param": .null, "code": code,
        ]))])
        return (.object(JSONObject([
            "status_code": .number(String(status)), "request_id": .string("purser_req_\(row.requestID)"), "body": .object(body),
        ])), .null)
    }

    /// Anthropic's error type for a request's last HTTP status.
    static func anthropicErrorType(_ row: ResultRow) -> String {
        switch row.lastStatus {
        case 400?, 413?, 422?: return "invalid_request_error"
        case 401?: return "authentication_error"
        case 402?: return "billing_error"
        case 403?: return "permission_error"
        case 404?: return "not_found_error"
        case 429?: return "rate_limit_error"
        case 529?: return "overloaded_error"
        case nil where row.lastOutcome == CallFailure.Kind.retryable.rawValue: return "timeout_error"
        case nil: return "invalid_request_error"
        default: return "api_error"
        }
    }

    /// Text from users or providers, kept from being read as a formula by a spreadsheet: a cell starting with
    /// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading apostrophe (OWASP's advice for CSV injection).
    /// Control characters other than tab and line breaks (ESC, BEL, NUL…), which a terminal or a spreadsheet
    /// would act on, become U+FFFD.
    public static func csvText(_ text: String) -> String {
        var clean = text
        if text.unicodeScalars.contains(where: isUnsafeControl) {
            clean = String(String.UnicodeScalarView(text.unicodeScalars.map { isUnsafeControl($0) ? "\u{FFFD}" : $0 }))
        }
        guard let first = clean.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first) else { return clean }
        return "'" + clean
    }

    private static func isUnsafeControl(_ scalar: Unicode.Scalar) -> Bool {
        (scalar.value < 0x20 && scalar != "\t" && scalar != "\n" && scalar != "\r") || (0x7F...0x9F).contains(scalar.value)
    }

    /// RFC 4180: quoted when it holds a comma, quote or line break; quotes doubled.
    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
