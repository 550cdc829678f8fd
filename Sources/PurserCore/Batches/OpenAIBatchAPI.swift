import Foundation

/// OpenAI's Batch API and its clones (Groq, Together, OpenRouter…): the input uploaded as a JSONL file
/// (`POST /files`, `purpose=batch`), then `POST /batches` with `metadata.purser_batch` set to Purser's key,
/// polled with `GET /batches/{id}`; results in the output and error files (`GET /files/{id}/content`).
struct OpenAIBatchAPI: BatchAPI {
    let http: BatchHTTP
    let folder: WorkFolder

    init(provider: Provider, environment: [String: String], folder: WorkFolder) {
        http = BatchHTTP(provider: provider, environment: environment)
        self.folder = folder
    }

    func findUpload(named name: String) async throws(BatchAPIError) -> String? {
        let list: JSONObject
        do { list = try await http.json("GET", "/files?purpose=batch&limit=10000") } catch {
            // A server that cannot list files (404, 405) keeps none Purser could find: upload anew.
            if error.failure.status == 404 || error.failure.status == 405 { return nil }
            throw error
        }
        return list["data"]?.arrayValue?.compactMap(\.objectValue)
            .first { $0["filename"]?.stringValue == name && $0["status"]?.stringValue != "error" }?["id"]?.stringValue
    }

    func upload(file: URL, named name: String) async throws(BatchAPIError) -> String {
        // multipart/form-data, written to disk around the input so that a file of any size is sent from disk.
        let boundary = "purser-\(UUID().uuidString)"
        let body: URL
        do { body = try folder.newFile("upload") } catch {
            throw BatchAPIError(CallFailure(kind: .retryable, status: nil, message: "could not write the upload to disk: \(error)"))
        }
        defer { try? FileManager.default.removeItem(at: body) }
        do {
            // Closed below, where a failure to flush is an error; on an earlier error the handle closes as it goes.
            let out = try FileHandle(forWritingTo: body)
            try out.write(contentsOf: Data("""
                --\(boundary)\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n\
                --\(boundary)\r\nContent-Disposition: form-data; name="file"; filename="\(name)"\r\n\
                Content-Type: application/jsonl\r\n\r\n
                """.utf8))
            let input = try FileHandle(forReadingFrom: file)
            defer { try? input.close() }
            while let chunk = try input.read(upToCount: 1 << 20), !chunk.isEmpty { try out.write(contentsOf: chunk) }
            try out.write(contentsOf: Data("\r\n--\(boundary)--\r\n".utf8))
            try out.close()
        } catch {
            throw BatchAPIError(CallFailure(kind: .retryable, status: nil, message: "could not write the upload to disk: \(error)"))
        }
        var request = try http.request(try http.url("/files"), method: "POST")
        request.setHeader("Content-Type", "multipart/form-data; boundary=\(boundary)")
        let answer = try await http.upload(request, file: body)
        guard let id = answer["id"]?.stringValue else {
            throw BatchAPIError(CallFailure(kind: .retryable, status: 200, message: "the file upload answered without an id"))
        }
        return id
    }

    func findBatch(key: String, database: String, createdAfter: Int64, requestCount: Int) async throws(BatchAPIError) -> [BatchCandidate] {
        var after: String?
        for _ in 0..<20 {
            let list = try await http.json("GET", "/batches?limit=100" + (after.map { "&after=\($0)" } ?? ""))
            let batches = list["data"]?.arrayValue?.compactMap(\.objectValue) ?? []
            let found = batches.first { batch in
                let metadata = batch["metadata"]?.objectValue
                return metadata?["purser_batch"]?.stringValue == key && metadata?["purser_database"]?.stringValue == database
            }
            if let id = found?["id"]?.stringValue { return [BatchCandidate(id: id, certain: true)] }
            // Newest first: once the list is older than the moment the batch was created, it is not there.
            let oldest = batches.last?["created_at"]?.intValue.map { Int64($0) * 1000 } ?? 0
            guard list["has_more"]?.boolValue == true, oldest >= createdAfter - 60_000, let last = batches.last?["id"]?.stringValue else { return [] }
            after = last
        }
        return []
    }

    func create(key: String, database: String, inputFileID: String?, file: URL) async throws(BatchAPIError) -> String {
        guard let inputFileID else { throw BatchAPIError(CallFailure(kind: .permanent, status: nil, message: "an OpenAI-style batch needs its file uploaded first")) }
        let batch = try await http.json("POST", "/batches", body: JSONObject([
            "input_file_id": .string(inputFileID), "endpoint": .string("/v1/chat/completions"), "completion_window": .string("24h"),
            "metadata": .object(JSONObject(["purser_batch": .string(key), "purser_database": .string(database)])),
        ]))
        guard let id = batch["id"]?.stringValue else {
            throw BatchAPIError(CallFailure(kind: .retryable, status: 200, message: "the batch was created without an id in the answer"))
        }
        return id
    }

    func status(_ batchID: String) async throws(BatchAPIError) -> BatchStatus {
        let batch = try await http.json("GET", "/batches/\(batchID)")
        let word = batch["status"]?.stringValue ?? "unknown"
        let phase: BatchStatus.Phase
        switch word {
        case "completed", "expired", "failed", "cancelled": phase = .ended
        case "cancelling": phase = .cancelling
        default: phase = .running
        }
        var status = BatchStatus(
            phase: phase, providerStatus: word, outputFileID: batch["output_file_id"]?.stringValue, errorFileID: batch["error_file_id"]?.stringValue)
        status.errors = (batch["errors"]?.objectValue?["data"]?.arrayValue ?? []).compactMap(\.objectValue).map { error in
            BatchStatus.LineError(
                line: error["line"]?.intValue, code: error["code"]?.stringValue ?? "error",
                message: String((error["message"]?.stringValue ?? "").prefix(500)))
        }
        return status
    }

    func readResults(of status: BatchStatus, batchID: String, chunk body: ([BatchResultLine]) async throws -> Void) async throws {
        for fileID in [status.outputFileID, status.errorFileID].compactMap({ $0 }) {
            let downloaded = try await http.download(try http.url("/files/\(fileID)/content"), into: folder)
            defer { try? FileManager.default.removeItem(at: downloaded) }
            try await BatchResultFile.read(downloaded, chunk: body) { OpenAIBatchAPI.line($0, mask: http.mask) }
        }
    }

    func cancel(_ batchID: String) async throws(BatchAPIError) {
        _ = try await http.json("POST", "/batches/\(batchID)/cancel")
    }

    func firstCustomID(of status: BatchStatus, batchID: String) async throws -> String? {
        for fileID in [status.outputFileID, status.errorFileID].compactMap({ $0 }) {
            let downloaded = try await http.download(try http.url("/files/\(fileID)/content"), into: folder)
            defer { try? FileManager.default.removeItem(at: downloaded) }
            if let found = try BatchResultFile.firstCustomID(downloaded) { return found }
        }
        return nil
    }

    /// One line of an output or error file: `{custom_id, response: {status_code, request_id, body}, error: {code, message}}`.
    /// `mask` takes the key out of the provider's error text before it is cut and kept.
    static func line(_ object: JSONObject, mask: (String) -> String = { $0 }) -> BatchResultLine? {
        guard let customID = object["custom_id"]?.stringValue else { return nil }
        if let response = object["response"]?.objectValue, let status = response["status_code"]?.intValue {
            let body = response["body"] ?? .null
            let text = mask(JSONWriter.string(body))
            let requestID = response["request_id"]?.stringValue
            let header = { (name: String) in name == "x-request-id" ? requestID : nil }
            let outcome = (200..<300).contains(status)
                ? HTTPProviderClient.outcome(status: status, header: header, parsed: body, text: text, dialect: .openai)
                : HTTPProviderClient.outcome(status: status, header: header, body: Data(text.utf8), dialect: .openai, now: Date(), mask: mask)
            switch outcome {
            case .success(let answer): return BatchResultLine(customID: customID, outcome: .succeeded(answer))
            case .failure(let failure): return BatchResultLine(customID: customID, outcome: .failed(failure))
            }
        }
        let error = object["error"]?.objectValue
        let code = String((error?["code"]?.stringValue ?? "unknown").prefix(64))
        let message = String(mask(error?["message"]?.stringValue ?? "the batch gave no answer for it").prefix(500))
        switch code {
        case "batch_expired": return BatchResultLine(customID: customID, outcome: .expired)
        case "batch_cancelled": return BatchResultLine(customID: customID, outcome: .cancelled)
        default: return BatchResultLine(customID: customID, outcome: .failed(CallFailure(kind: .retryable, status: nil, message: "\(code): \(message)")))
        }
    }
}

/// Reads a downloaded results file line by line, in chunks, so memory stays flat however large it is.
public enum BatchResultFile {
    /// One line of a batch's results in `dialect`, or nil when it names no request (it is then skipped).
    public static func line(_ bytes: [UInt8], dialect: Provider.Dialect) -> BatchResultLine? {
        guard let object = (try? JSONParser.parse(bytes))?.objectValue else { return nil }
        switch dialect {
        case .openai: return OpenAIBatchAPI.line(object)
        case .anthropic: return AnthropicBatchAPI.line(object)
        }
    }

    /// The custom id of the first line that names one.
    static func firstCustomID(_ file: URL) throws -> String? {
        let reader = try JobFileReader(path: file.path, maximumLineBytes: maximumLineBytes)
        while let line = try reader.nextLine() {
            guard case .text(_, let bytes) = line, let id = (try? JSONParser.parse(bytes))?.objectValue?["custom_id"]?.stringValue else { continue }
            return id
        }
        return nil
    }

    public static let chunkLines = 5000
    /// The longest results line kept (a long answer); a longer one is skipped and its request served again.
    static let maximumLineBytes = 64 << 20

    static func read(_ file: URL, chunk body: ([BatchResultLine]) async throws -> Void, parse: (JSONObject) -> BatchResultLine?) async throws {
        let reader = try JobFileReader(path: file.path, maximumLineBytes: maximumLineBytes)
        var lines: [BatchResultLine] = []
        while let line = try reader.nextLine() {
            guard case .text(_, let bytes) = line, let object = (try? JSONParser.parse(bytes))?.objectValue, let parsed = parse(object) else { continue }
            lines.append(parsed)
            if lines.count >= chunkLines {
                try await body(lines)
                lines.removeAll(keepingCapacity: true)
            }
        }
        if !lines.isEmpty { try await body(lines) }
    }
}
