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
            if let answer = row.answer, var completion = body {
                if answer.dialect == .anthropic { completion = DialectTranslation.openAICompletion(fromAnthropic: completion, model: answer.model) }
                object["response"] = .object(JSONObject([
                    "status_code": .number(String(answer.statusCode)), "request_id": answer.providerRequestID.map { .string($0) } ?? .null,
                    "body": .object(completion),
                ]))
                object["error"] = .null
            } else {
                object["response"] = .null
                object["error"] = .object(JSONObject(["code": .string(row.state.rawValue), "message": .string(row.lastError ?? row.state.rawValue)]))
            }
            object["purser"] = purserKey(row)
            return JSONWriter.string(.object(object))
        case .anthropic:
            var result: JSONObject
            switch row.state {
            case .succeeded:
                var message = body ?? JSONObject()
                if let answer = row.answer, answer.dialect == .openai { message = DialectTranslation.anthropicMessage(fromOpenAI: message, model: answer.model) }
                result = JSONObject(["type": .string("succeeded"), "message": .object(message)])
            case .expired: result = JSONObject(["type": .string("expired")])
            case .cancelled: result = JSONObject(["type": .string("canceled")])
            default:
                result = JSONObject([
                    "type": .string("errored"),
                    "error": .object(JSONObject([
                        "type": .string("error"),
                        "error": .object(JSONObject(["type": .string("api_error"), "message": .string(row.lastError ?? "failed")])),
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
            object["output_tokens"] = .number(String(answer.usage.outputTokens))
            object["cost_usd"] = .string(answer.cost.exactUSD)
            object["simulated"] = .bool(answer.simulated)
        }
        return .object(object)
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
