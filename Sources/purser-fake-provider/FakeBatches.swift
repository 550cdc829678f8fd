import Foundation
import Synchronization
import PurserCore

/// The answer bodies both the live endpoints and the batches give.
enum Answers {
    /// Input tokens (a quarter of the body's bytes), output tokens (`max_tokens`, at most 16) and the model a body names.
    static func shape(of text: String, bytes: Int) -> (input: Int, output: Int, model: String) {
        let maxTokens = text.range(of: #""max(_completion)?_tokens": ?(\d+)"#, options: .regularExpression)
            .flatMap { Int(text[$0].split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "") } ?? 16
        let model = text.range(of: #""model": ?"[^"]*""#, options: .regularExpression)
            .map { String(text[$0].split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: CharacterSet(charactersIn: " \"")) } ?? "fake"
        return (max(1, bytes / 4), min(maxTokens, 16), model)
    }

    /// The first tool a request body offers, with arguments naming each property of its schema, as JSON text; nil
    /// when it offers none or says none may be called.
    static func tool(in body: String, anthropic: Bool) -> (name: String, arguments: String)? {
        guard body.contains("\"tools\""), let object = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any],
            let first = (object["tools"] as? [[String: Any]])?.first
        else { return nil }
        // A body that says no tool may be called gets text.
        if object["tool_choice"] as? String == "none" || (object["tool_choice"] as? [String: Any])?["type"] as? String == "none" { return nil }
        let definition = anthropic ? first : (first["function"] as? [String: Any] ?? [:])
        let schema = (anthropic ? definition["input_schema"] : definition["parameters"]) as? [String: Any]
        let properties = (schema?["properties"] as? [String: Any] ?? [:]).keys.sorted()
        let arguments = "{" + properties.map { "\"\($0)\":\"fake \($0)\"" }.joined(separator: ",") + "}"
        return (definition["name"] as? String ?? "tool", arguments)
    }

    /// `cached`: prompt tokens read from the cache, reported as OpenAI does (part of `prompt_tokens`).
    static func openai(id: String, model: String, text: String, input: Int, output: Int, tool: (name: String, arguments: String)? = nil, cached: Int = 0) -> String {
        let message = tool.map { tool in
            let arguments = tool.arguments.replacingOccurrences(of: "\"", with: "\\\"")
            return "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_\(id)\",\"type\":\"function\",\"function\":{\"name\":\"\(tool.name)\",\"arguments\":\"\(arguments)\"}}]}"
        } ?? "{\"role\":\"assistant\",\"content\":\"\(text)\"}"
        return """
        {"id":"\(id)","object":"chat.completion","created":\(Int(Date().timeIntervalSince1970)),"model":"\(model)","choices":[{"index":0,\
        "message":\(message),"finish_reason":"\(tool == nil ? "stop" : "tool_calls")"}],"usage":{"prompt_tokens":\(input),\
        "completion_tokens":\(output),"total_tokens":\(input + output),"prompt_tokens_details":{"cached_tokens":\(cached)}}}
        """
    }

    /// `cached`: tokens read from the cache and written to it, reported as Anthropic does (apart from `input_tokens`).
    static func anthropic(
        id: String, model: String, text: String, input: Int, output: Int, tool: (name: String, arguments: String)? = nil, cached: (read: Int, written: Int) = (0, 0)
    ) -> String {
        let content = tool.map { "[{\"type\":\"tool_use\",\"id\":\"toolu_\(id)\",\"name\":\"\($0.name)\",\"input\":\($0.arguments)}]" }
            ?? "[{\"type\":\"text\",\"text\":\"\(text)\"}]"
        return """
        {"id":"\(id)","type":"message","role":"assistant","model":"\(model)","content":\(content),\
        "stop_reason":"\(tool == nil ? "end_turn" : "tool_use")","stop_sequence":null,"usage":{"input_tokens":\(input - cached.read - cached.written),\
        "output_tokens":\(output),"cache_read_input_tokens":\(cached.read),"cache_creation_input_tokens":\(cached.written)}}
        """
    }
}

/// Both batch APIs, in memory: OpenAI's files and batches, and Anthropic's message batches. A batch ends
/// `--batch-delay-ms` after it is created (never, with `--batch-never-ends`, until cancelled); each line's fate
/// (answered, errored with a 500, expired) is drawn from the seed; results come back in shuffled order.
final class FakeBatches: Sendable {
    struct Reply {
        var status: Int
        var body: String
        var headers: [String] = []
    }

    struct File {
        var id: String
        var name: String
        var bytes: [UInt8]
        var createdAt: Int
    }

    struct Line {
        var customID: String
        /// The request body (OpenAI) or params (Anthropic), as JSON text.
        var body: String
    }

    struct Batch {
        var id: String
        var anthropic: Bool
        var lines: [Line]
        var metadata: [String: String]
        var inputFileID: String?
        var created: Date
        var cancelRequested: Date?
        var validationErrors: [(line: Int, code: String, message: String)] = []
        var outputFileID: String?
        var errorFileID: String?
        /// The key that created it, for `--echo-key`'s error messages.
        var key = ""
    }

    struct State {
        var files: [String: File] = [:]
        var batches: [String: Batch] = [:]
        var order: [String] = []
        var nextID = 1
    }

    let settings: Settings
    let ledger: Ledger
    let state = Mutex(State())

    init(settings: Settings, ledger: Ledger) {
        self.settings = settings
        self.ledger = ledger
    }

    /// The reply to a batch API call, or nil when the path is not one.
    func answer(method: String, path: String, headers: [String: String], body: [UInt8]) -> Reply? {
        let route = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        let query = path.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
        let parts = route.split(separator: "/").map(String.init)
        let host = headers["host"] ?? "127.0.0.1"
        let anthropic = parts.count >= 3 && parts[1] == "messages"
        // Refusals asked for: every batch create, or every look at a batch, answers that status.
        if let status = settings.batchCreateFail, method == "POST", parts == ["v1", "batches"] || parts == ["v1", "messages", "batches"] {
            return error(status, "fake refusal of a batch create", anthropic: anthropic)
        }
        if let status = settings.batchStatusFail, method == "GET",
            (parts.count == 3 && parts[1] == "batches") || (parts.count == 4 && parts[1] == "messages" && parts[2] == "batches")
        {
            return error(status, "fake refusal: no such batch \(parts.last ?? "")", anthropic: anthropic)
        }
        switch (method, parts) {
        case ("POST", ["v1", "files"]): return upload(headers: headers, body: body)
        case ("GET", ["v1", "files"]):
            if settings.noFilesList { return error(405, "Method Not Allowed") }
            return listFiles()
        case ("GET", let p) where p.count == 4 && p[0] == "v1" && p[1] == "files" && p[3] == "content": return content(p[2])
        case ("POST", ["v1", "batches"]): return createOpenAI(body, key: key(headers))
        case ("GET", ["v1", "batches"]): return list(anthropic: false, query: query, host: host)
        case ("GET", let p) where p.count == 3 && p[0] == "v1" && p[1] == "batches": return show(p[2], host: host)
        case ("POST", let p) where p.count == 4 && p[0] == "v1" && p[1] == "batches" && p[3] == "cancel": return cancel(p[2], host: host)
        case ("POST", ["v1", "messages", "batches"]): return createAnthropic(body, host: host, key: key(headers))
        case ("GET", ["v1", "messages", "batches"]): return list(anthropic: true, query: query, host: host)
        case ("GET", let p) where p.count == 4 && p[0] == "v1" && p[1] == "messages" && p[2] == "batches": return show(p[3], host: host)
        case ("GET", let p) where p.count == 5 && p[1] == "messages" && p[2] == "batches" && p[4] == "results": return results(p[3])
        case ("POST", let p) where p.count == 5 && p[1] == "messages" && p[2] == "batches" && p[4] == "cancel": return cancel(p[3], host: host)
        default: return nil
        }
    }

    // MARK: - OpenAI files

    private func upload(headers: [String: String], body: [UInt8]) -> Reply {
        guard let type = headers["content-type"], let range = type.range(of: "boundary=") else { return error(400, "expected multipart/form-data") }
        let boundary = Array(("--" + type[range.upperBound...]).utf8)
        var name = "upload.jsonl", content: [UInt8]?
        // Parts: headers, a blank line, the content, then CRLF before the next boundary.
        for slice in split(body, on: boundary) {
            let part = Array(slice)
            guard let headerEnd = find(part[...], Array("\r\n\r\n".utf8)) else { continue }
            let head = String(decoding: part[0..<headerEnd], as: UTF8.self)
            var data = Array(part[(headerEnd + 4)...])
            if data.suffix(2) == [13, 10] { data.removeLast(2) }
            if head.contains("name=\"file\"") {
                content = data
                if let found = head.range(of: #"filename="[^"]*""#, options: .regularExpression) { name = String(head[found].dropFirst(10).dropLast()) }
            }
        }
        guard let content else { return error(400, "no file part") }
        let file = state.withLock { state -> File in
            let file = File(id: "file-\(state.nextID)", name: name, bytes: content, createdAt: Int(Date().timeIntervalSince1970))
            state.nextID += 1
            state.files[file.id] = file
            return file
        }
        ledger.state.withLock { $0.filesUploaded += 1 }
        return Reply(status: 200, body: fileJSON(file))
    }

    private func listFiles() -> Reply {
        let files = state.withLock { $0.files.values.sorted { $0.id < $1.id } }
        return Reply(status: 200, body: "{\"object\":\"list\",\"data\":[\(files.map(fileJSON).joined(separator: ","))]}")
    }

    private func content(_ id: String) -> Reply {
        guard let file = state.withLock({ $0.files[id] }) else { return error(404, "no such file \(id)") }
        return Reply(status: 200, body: String(decoding: file.bytes, as: UTF8.self))
    }

    private func fileJSON(_ file: File) -> String {
        "{\"id\":\"\(file.id)\",\"object\":\"file\",\"bytes\":\(file.bytes.count),\"created_at\":\(file.createdAt),\"filename\":\"\(file.name)\",\"purpose\":\"batch\",\"status\":\"processed\"}"
    }

    // MARK: - Creating batches

    private func key(_ headers: [String: String]) -> String {
        headers["x-api-key"] ?? headers["authorization"].map { String($0.dropFirst("Bearer ".count)) } ?? ""
    }

    /// An error message, with the caller's key in it under `--echo-key` (as careless providers and proxies do).
    private func fault(_ message: String, key: String) -> String { settings.echoKey ? "\(message) (key \(key))" : message }

    private func createOpenAI(_ body: [UInt8], key: String) -> Reply {
        guard let request = json(body), let fileID = request["input_file_id"] as? String else { return error(400, "input_file_id is required") }
        guard request["completion_window"] as? String == "24h" else { return error(400, "completion_window must be 24h") }
        guard let file = state.withLock({ $0.files[fileID] }) else { return error(404, "no such file \(fileID)") }
        var lines: [Line] = []
        var errors: [(Int, String, String)] = []
        var seen: Set<String> = [], models: Set<String> = []
        for (index, text) in String(decoding: file.bytes, as: UTF8.self).split(separator: "\n").enumerated() {
            guard let line = json(Array(text.utf8)), let customID = line["custom_id"] as? String, let body = line["body"] as? [String: Any],
                let data = try? JSONSerialization.data(withJSONObject: body)
            else {
                errors.append((index + 1, "invalid_json_line", "This line is not parseable as valid JSON."))
                continue
            }
            if !seen.insert(customID).inserted { errors.append((index + 1, "duplicate_custom_id", "The custom_id \(customID) is used twice.")) }
            models.insert(body["model"] as? String ?? "")
            lines.append(Line(customID: customID, body: String(decoding: data, as: UTF8.self)))
        }
        if models.count > 1 { errors.append((1, "model_mismatch", "A batch input file may name one model only.")) }
        if settings.batchValidationFail { errors.append((1, "invalid_json_line", "This line is not parseable as valid JSON.")) }
        let metadata = (request["metadata"] as? [String: String]) ?? [:]
        let batch = register(anthropic: false, lines: lines, metadata: metadata, inputFileID: fileID, errors: errors, key: key)
        return Reply(status: 200, body: openAIJSON(batch))
    }

    private func createAnthropic(_ body: [UInt8], host: String, key: String) -> Reply {
        guard let request = json(body), let requests = request["requests"] as? [[String: Any]], !requests.isEmpty else {
            return error(400, "requests: at least one is required", anthropic: true)
        }
        var lines: [Line] = []
        var seen: Set<String> = []
        for item in requests {
            guard let customID = item["custom_id"] as? String, customID.range(of: "^[a-zA-Z0-9_-]{1,64}$", options: .regularExpression) != nil,
                seen.insert(customID).inserted, let params = item["params"] as? [String: Any], params["max_tokens"] != nil,
                let data = try? JSONSerialization.data(withJSONObject: params)
            else { return error(400, "requests: each needs a unique custom_id matching ^[a-zA-Z0-9_-]{1,64}$ and params with max_tokens", anthropic: true) }
            lines.append(Line(customID: customID, body: String(decoding: data, as: UTF8.self)))
        }
        let batch = register(anthropic: true, lines: lines, metadata: [:], inputFileID: nil, errors: [], key: key)
        return Reply(status: 200, body: anthropicJSON(batch, host: host))
    }

    private func register(
        anthropic: Bool, lines: [Line], metadata: [String: String], inputFileID: String?, errors: [(Int, String, String)], key: String
    ) -> Batch {
        let batch = state.withLock { state -> Batch in
            let id = anthropic ? "msgbatch_\(state.nextID)" : "batch_\(state.nextID)"
            state.nextID += 1
            var batch = Batch(id: id, anthropic: anthropic, lines: lines, metadata: metadata, inputFileID: inputFileID, created: Date())
            batch.key = key
            batch.validationErrors = errors.map { (line: $0.0, code: $0.1, message: $0.2) }
            state.batches[id] = batch
            state.order.append(id)
            return batch
        }
        ledger.state.withLock { ledger in
            ledger.batchesCreated += 1
            for line in lines { ledger.batchLines[line.customID, default: 0] += 1 }
        }
        return batch
    }

    // MARK: - Status, results, cancel

    /// Where a batch is: failed validation, running, cancelling, or ended (cancelled, expired or completed).
    private func phase(_ batch: Batch) -> String {
        if !batch.validationErrors.isEmpty { return "failed" }
        let now = Date()
        if let cancelled = batch.cancelRequested {
            return now.timeIntervalSince(cancelled) * 1000 >= Double(settings.batchCancelMilliseconds) ? "cancelled" : "cancelling"
        }
        if settings.batchNeverEnds || now.timeIntervalSince(batch.created) * 1000 < Double(settings.batchDelayMilliseconds) { return "in_progress" }
        return "completed"
    }

    /// Each line's fate: answered, errored (500), refused (its model is `--refuse-model`'s; 400 context length) or
    /// expired; lines of a cancelled batch past its cancel are cancelled.
    private func fate(_ line: Line, in batch: Batch) -> String {
        let ended = phase(batch)
        // Drawn per batch: a line that errors in one batch may succeed in the next.
        let key = "\(batch.id)/\(line.customID)"
        if ended == "cancelled" && draw(key, 9) >= 0.3 { return "cancelled" }
        if let refused = settings.refuseModel, line.body.contains("\"model\":\"\(refused)\"") { return "refused" }
        if draw(key, 7) < settings.batchExpireLines { return "expired" }
        if draw(key, 8) < settings.batchFailLines { return "errored" }
        return "succeeded"
    }

    private func show(_ id: String, host: String) -> Reply? {
        guard let batch = state.withLock({ $0.batches[id] }) else { return error(404, "no such batch \(id)", anthropic: id.hasPrefix("msgbatch")) }
        if !batch.anthropic && ["completed", "cancelled"].contains(phase(batch)) && batch.outputFileID == nil { writeFiles(id) }
        let current = state.withLock { $0.batches[id]! }
        return Reply(status: 200, body: current.anthropic ? anthropicJSON(current, host: host) : openAIJSON(current))
    }

    private func cancel(_ id: String, host: String) -> Reply {
        let batch = state.withLock { state -> Batch? in
            guard var batch = state.batches[id] else { return nil }
            if batch.cancelRequested == nil && !["completed", "failed"].contains(phase(batch)) { batch.cancelRequested = Date() }
            state.batches[id] = batch
            return batch
        }
        guard let batch else { return error(404, "no such batch \(id)", anthropic: id.hasPrefix("msgbatch")) }
        return Reply(status: 200, body: batch.anthropic ? anthropicJSON(batch, host: host) : openAIJSON(batch))
    }

    /// What each line of a batch reads from the fake's prompt cache and writes to it, in the fake's own count of its input
    /// (`--cache`: worked through as the simulator works through its batches, `SimulatedCache.batch`).
    private func cacheUses(_ batch: Batch) -> [(read: Int, written: Int)] {
        let parsed = batch.lines.map { line -> (model: Model, provider: String, prefix: PromptPrefix)? in
            let model = Answers.shape(of: line.body, bytes: line.body.utf8.count).model
            guard let caching = settings.cachingModel(model), let object = Settings.cacheableBody(Array(line.body.utf8)) else { return nil }
            return (caching, "fake", PromptPrefix(body: object, dialect: batch.anthropic ? .anthropic : .openai))
        }
        guard parsed.allSatisfy({ $0 != nil }) else { return batch.lines.map { _ in (0, 0) } }
        let calls = parsed.compactMap { $0 }
        return zip(SimulatedCache.batch(calls), zip(batch.lines, calls)).map { use, member in
            use.reported(input: Answers.shape(of: member.0.body, bytes: member.0.body.utf8.count).input, step: member.1.model.caching?.stepTokens ?? 1)
        }
    }

    /// OpenAI: the output file (answers) and the error file (errors, expiries, cancellations), lines shuffled.
    private func writeFiles(_ id: String) {
        guard let batch = state.withLock({ $0.batches[id] }) else { return }
        var output: [String] = [], errors: [String] = []
        let cached = cacheUses(batch)
        for (index, line) in batch.lines.enumerated() {
            let (input, outputTokens, model) = Answers.shape(of: line.body, bytes: line.body.utf8.count)
            switch fate(line, in: batch) {
            case "succeeded":
                var answer = Answers.openai(
                    id: "chatcmpl-batch-\(index)", model: model, text: "batch answer \(index)", input: input, output: outputTokens, cached: cached[index].read)
                if settings.unreadableUsage { answer = answer.replacingOccurrences(of: "\"usage\":{", with: "\"usage\":\"unreadable\",\"was\":{") }
                output.append("{\"id\":\"batch_req_\(index)\",\"custom_id\":\"\(line.customID)\",\"response\":{\"status_code\":200,\"request_id\":\"req_\(index)\",\"body\":\(answer)},\"error\":null}")
            case "errored":
                errors.append("{\"id\":\"batch_req_\(index)\",\"custom_id\":\"\(line.customID)\",\"response\":{\"status_code\":500,\"request_id\":\"req_\(index)\",\"body\":{\"error\":{\"message\":\"\(fault("fake server error", key: batch.key))\",\"type\":\"server_error\"}}},\"error\":null}")
            case "refused":
                errors.append("{\"id\":\"batch_req_\(index)\",\"custom_id\":\"\(line.customID)\",\"response\":{\"status_code\":400,\"request_id\":\"req_\(index)\",\"body\":{\"error\":{\"message\":\"This model's maximum context length is 8192 tokens\",\"code\":\"context_length_exceeded\"}}},\"error\":null}")
            case "expired":
                errors.append("{\"id\":\"batch_req_\(index)\",\"custom_id\":\"\(line.customID)\",\"response\":null,\"error\":{\"code\":\"batch_expired\",\"message\":\"This request could not be executed before the completion window expired.\"}}")
            default:
                errors.append("{\"id\":\"batch_req_\(index)\",\"custom_id\":\"\(line.customID)\",\"response\":null,\"error\":{\"code\":\"batch_cancelled\",\"message\":\"This request was cancelled.\"}}")
            }
        }
        state.withLock { state in
            func store(_ lines: [String], _ name: String) -> String? {
                guard !lines.isEmpty else { return nil }
                let file = File(id: "file-\(state.nextID)", name: name, bytes: Array(cut(shuffled(lines, id)).joined(separator: "\n").utf8) + [10], createdAt: Int(Date().timeIntervalSince1970))
                state.nextID += 1
                state.files[file.id] = file
                return file.id
            }
            state.batches[id]?.outputFileID = store(output, "\(id)_output.jsonl")
            state.batches[id]?.errorFileID = store(errors, "\(id)_errors.jsonl")
        }
    }

    /// Anthropic: one results file, lines shuffled.
    private func results(_ id: String) -> Reply {
        guard let batch = state.withLock({ $0.batches[id] }), ["completed", "cancelled"].contains(phase(batch)) else {
            return error(404, "batch \(id) has not ended", anthropic: true)
        }
        let cached = cacheUses(batch)
        let lines = batch.lines.enumerated().map { index, line -> String in
            let (input, output, model) = Answers.shape(of: line.body, bytes: line.body.utf8.count)
            let result: String
            switch fate(line, in: batch) {
            case "succeeded":
                var answer = Answers.anthropic(
                    id: "msg_batch_\(index)", model: model, text: "batch answer \(index)", input: input, output: output, cached: cached[index])
                if settings.unreadableUsage { answer = answer.replacingOccurrences(of: "\"usage\":{", with: "\"usage\":\"unreadable\",\"was\":{") }
                result = "{\"type\":\"succeeded\",\"message\":\(answer)}"
            case "errored":
                result = "{\"type\":\"errored\",\"error\":{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"\(fault("fake server error", key: batch.key))\"}}}"
            case "refused":
                result = "{\"type\":\"errored\",\"error\":{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"prompt is too long: 9000 tokens > 8192 maximum\"}}}"
            case "expired": result = "{\"type\":\"expired\"}"
            default: result = "{\"type\":\"canceled\"}"
            }
            return "{\"custom_id\":\"\(line.customID)\",\"result\":\(result)}"
        }
        return Reply(status: 200, body: cut(shuffled(lines, id)).joined(separator: "\n") + "\n")
    }

    private func list(anthropic: Bool, query: String, host: String) -> Reply {
        let batches = state.withLock { state in state.order.reversed().compactMap { state.batches[$0] }.filter { $0.anthropic == anthropic } }
        let body = batches.map { anthropic ? anthropicJSON($0, host: host) : openAIJSON($0) }.joined(separator: ",")
        return Reply(status: 200, body: anthropic ? "{\"data\":[\(body)],\"has_more\":false}" : "{\"object\":\"list\",\"data\":[\(body)],\"has_more\":false}")
    }

    private func openAIJSON(_ batch: Batch) -> String {
        let status = phase(batch)
        let total = batch.lines.count
        let done = ["completed", "cancelled"].contains(status)
        let completed = done ? batch.lines.filter { fate($0, in: batch) == "succeeded" }.count : 0
        let metadata = batch.metadata.map { "\"\($0.key)\":\"\($0.value)\"" }.joined(separator: ",")
        let errors = batch.validationErrors.map { "{\"code\":\"\($0.code)\",\"message\":\"\($0.message)\",\"param\":null,\"line\":\($0.line)}" }
            .joined(separator: ",")
        return "{\"id\":\"\(batch.id)\",\"object\":\"batch\",\"endpoint\":\"/v1/chat/completions\",\"status\":\"\(status)\",\"input_file_id\":\"\(batch.inputFileID ?? "")\","
            + "\"completion_window\":\"24h\",\"created_at\":\(Int(batch.created.timeIntervalSince1970)),"
            + "\"output_file_id\":\(batch.outputFileID.map { "\"\($0)\"" } ?? "null"),\"error_file_id\":\(batch.errorFileID.map { "\"\($0)\"" } ?? "null"),"
            + "\"errors\":\(errors.isEmpty ? "null" : "{\"object\":\"list\",\"data\":[\(errors)]}"),"
            + "\"request_counts\":{\"total\":\(total),\"completed\":\(completed),\"failed\":\(done ? total - completed : 0)},\"metadata\":{\(metadata)}}"
    }

    private func anthropicJSON(_ batch: Batch, host: String) -> String {
        let status = phase(batch)
        let ended = ["completed", "cancelled"].contains(status)
        var counts = ["processing": ended ? 0 : batch.lines.count, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0]
        if ended {
            for line in batch.lines {
                switch fate(line, in: batch) {
                case "succeeded": counts["succeeded"]! += 1
                case "errored": counts["errored"]! += 1
                case "expired": counts["expired"]! += 1
                default: counts["canceled"]! += 1
                }
            }
        }
        let word = ended ? "ended" : status == "cancelling" ? "canceling" : "in_progress"
        let formatter = ISO8601DateFormatter()
        return "{\"id\":\"\(batch.id)\",\"type\":\"message_batch\",\"processing_status\":\"\(word)\","
            + "\"request_counts\":{\(counts.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ","))},"
            + "\"created_at\":\"\(formatter.string(from: batch.created))\",\"expires_at\":\"\(formatter.string(from: batch.created.addingTimeInterval(86_400)))\","
            + "\"results_url\":\(ended ? "\"\(resultsURL(batch.id, host: host))\"" : "null")}"
    }

    // MARK: - Pieces

    /// Where an Anthropic batch's results are said to be: on this host, a path relative to it, or another origin.
    private func resultsURL(_ id: String, host: String) -> String {
        switch settings.resultsURL {
        case "relative"?: return "/v1/messages/batches/\(id)/results"
        case "foreign"?: return "\(settings.foreignOrigin)/v1/messages/batches/\(id)/results"
        default: return "http://\(host)/v1/messages/batches/\(id)/results"
        }
    }

    /// With `--cut-results-line`, the first line of a results file cut short, as a broken transfer would leave it.
    private func cut(_ lines: [String]) -> [String] {
        guard settings.cutResultsLine, let first = lines.first else { return lines }
        return [String(first.prefix(first.count / 2))] + lines.dropFirst()
    }

    private func error(_ status: Int, _ message: String, anthropic: Bool = false) -> Reply {
        Reply(status: status, body: anthropic
            ? "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"\(message)\"}}"
            : "{\"error\":{\"message\":\"\(message)\",\"type\":\"invalid_request_error\"}}")
    }

    private func json(_ bytes: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
    }

    private func draw(_ customID: String, _ salt: UInt64) -> Double {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ settings.seed ^ (salt &* 0x9E37_79B9_7F4A_7C15)
        for byte in customID.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        hash ^= hash >> 29
        hash = hash &* 0xBF58_476D_1CE4_E5B9
        hash ^= hash >> 32
        return Double(hash % 1_000_000) / 1_000_000
    }

    /// The lines in an order of the seed's choosing, never the input's: results must be joined on custom_id.
    private func shuffled(_ lines: [String], _ id: String) -> [String] {
        lines.enumerated().sorted { lhs, rhs in draw("\(id)-\(lhs.offset)", 11) < draw("\(id)-\(rhs.offset)", 11) }.map(\.element)
    }

    private func find(_ data: ArraySlice<UInt8>, _ pattern: [UInt8]) -> Int? {
        guard data.count >= pattern.count else { return nil }
        var index = data.startIndex
        while index <= data.endIndex - pattern.count {
            if data[index..<index + pattern.count].elementsEqual(pattern) { return index - data.startIndex }
            index += 1
        }
        return nil
    }

    private func split(_ data: [UInt8], on boundary: [UInt8]) -> [ArraySlice<UInt8>] {
        var parts: [ArraySlice<UInt8>] = []
        var start = 0
        var index = 0
        while index <= data.count - boundary.count {
            if data[index] == boundary[0] && data[index..<index + boundary.count].elementsEqual(boundary) {
                if index > start { parts.append(data[start..<index]) }
                index += boundary.count
                start = index
            } else {
                index += 1
            }
        }
        if start < data.count { parts.append(data[start...]) }
        return parts.map { part in part.first == 13 ? part.dropFirst(2) : part }
    }
}
