import Foundation

/// Anthropic's Message Batches: `POST /v1/messages/batches` with the requests inline (the body is written to
/// disk and sent from there), polled with `GET /v1/messages/batches/{id}`, results streamed from `results_url`.
/// Message batches carry no metadata, so one created just before a crash is found by its creation time and size.
struct AnthropicBatchAPI: BatchAPI {
    let http: BatchHTTP
    let folder: WorkFolder
    /// Tells the run something about a batch it should know (a results URL that was not followed).
    let say: @Sendable (RunNotice) -> Void

    init(provider: Provider, environment: [String: String], folder: WorkFolder, say: @escaping @Sendable (RunNotice) -> Void = { _ in }) {
        http = BatchHTTP(provider: provider, environment: environment)
        self.folder = folder
        self.say = say
    }

    func findUpload(named name: String) async throws(BatchAPIError) -> String? { nil }

    func upload(file: URL, named name: String) async throws(BatchAPIError) -> String {
        throw BatchAPIError(CallFailure(kind: .permanent, status: nil, message: "message batches take their requests inline; nothing is uploaded"))
    }

    func findBatch(key: String, database: String, createdAfter: Int64, requestCount: Int) async throws(BatchAPIError) -> [BatchCandidate] {
        let list = try await http.json("GET", "/v1/messages/batches?limit=100")
        return (list["data"]?.arrayValue ?? []).compactMap(\.objectValue).filter { batch in
            let counts = batch["request_counts"]?.objectValue?.members.compactMap { $0.value.intValue }.reduce(0, +) ?? -1
            let created = (batch["created_at"]?.stringValue).flatMap(RFC3339.milliseconds) ?? 0
            return counts == requestCount && created >= createdAfter - 60_000
        }.sorted { ($0["created_at"]?.stringValue ?? "") < ($1["created_at"]?.stringValue ?? "") }.compactMap { $0["id"]?.stringValue }
            .map { BatchCandidate(id: $0, certain: false) }
    }

    func create(key: String, database: String, inputFileID: String?, file: URL) async throws(BatchAPIError) -> String {
        var request = try http.request(try http.url("/v1/messages/batches"), method: "POST")
        request.setHeader("Content-Type", "application/json")
        let batch = try await http.upload(request, file: file)
        guard let id = batch["id"]?.stringValue else {
            throw BatchAPIError(CallFailure(kind: .retryable, status: 200, message: "the batch was created without an id in the answer"))
        }
        return id
    }

    func status(_ batchID: String) async throws(BatchAPIError) -> BatchStatus {
        let batch = try await http.json("GET", "/v1/messages/batches/\(batchID)")
        let word = batch["processing_status"]?.stringValue ?? "unknown"
        let phase: BatchStatus.Phase = word == "ended" ? .ended : word == "canceling" ? .cancelling : .running
        return BatchStatus(phase: phase, providerStatus: word, resultsURL: batch["results_url"]?.stringValue)
    }

    func readResults(of status: BatchStatus, batchID: String, chunk body: ([BatchResultLine]) async throws -> Void) async throws {
        let downloaded = try await downloadResults(of: status, batchID: batchID)
        defer { try? FileManager.default.removeItem(at: downloaded) }
        try await BatchResultFile.read(downloaded, chunk: body) { AnthropicBatchAPI.line($0, mask: http.mask) }
    }

    func firstCustomID(of status: BatchStatus, batchID: String) async throws -> String? {
        let downloaded = try await downloadResults(of: status, batchID: batchID)
        defer { try? FileManager.default.removeItem(at: downloaded) }
        return try BatchResultFile.firstCustomID(downloaded)
    }

    private func downloadResults(of status: BatchStatus, batchID: String) async throws(BatchAPIError) -> URL {
        // The results URL the provider gave, resolved against its base when relative. One on another origin is not
        // followed (the key would go there): the results are read from the API's own path, on the provider's origin.
        let own = try http.url("/v1/messages/batches/\(batchID)/results")
        var url = own
        if let text = status.resultsURL {
            do { url = try http.resolve(text) } catch {
                guard error.failure.kind == .misdirected else { throw error }
                say(.resultsReadFromOwnOrigin(providerBatchID: batchID, problem: error.failure.message, url: own.absoluteString))
            }
        }
        return try await http.download(url, into: folder)
    }

    func cancel(_ batchID: String) async throws(BatchAPIError) {
        _ = try await http.json("POST", "/v1/messages/batches/\(batchID)/cancel")
    }

    /// `{custom_id, result: {type: succeeded, message} | {type: errored, error} | {type: canceled} | {type: expired}}`.
    /// `mask` takes the key out of the provider's error text before it is cut and kept.
    static func line(_ object: JSONObject, mask: (String) -> String = { $0 }) -> BatchResultLine? {
        guard let customID = object["custom_id"]?.stringValue, let result = object["result"]?.objectValue else { return nil }
        switch result["type"]?.stringValue {
        case "succeeded"?:
            let message = result["message"] ?? .null
            switch HTTPProviderClient.outcome(status: 200, header: { _ in nil }, parsed: message, text: mask(JSONWriter.string(message)), dialect: .anthropic) {
            case .success(let answer): return BatchResultLine(customID: customID, outcome: .succeeded(answer))
            case .failure(let failure): return BatchResultLine(customID: customID, outcome: .failed(failure))
            }
        case "errored"?:
            // The error response as a live call would have had it, with the status its type stands for.
            let error = result["error"]?.objectValue ?? JSONObject()
            let type = error["error"]?.objectValue?["type"]?.stringValue ?? error["type"]?.stringValue ?? "api_error"
            let status: Int
            switch type {
            case "invalid_request_error": status = 400
            case "authentication_error": status = 401
            case "permission_error": status = 403
            case "not_found_error": status = 404
            case "request_too_large": status = 413
            case "rate_limit_error": status = 429
            case "overloaded_error": status = 529
            default: status = 500
            }
            return BatchResultLine(
                customID: customID, outcome: .failed(DialectTranslation.classify(status: status, body: mask(JSONWriter.string(.object(error))), retryAfterMilliseconds: nil)))
        case "canceled"?: return BatchResultLine(customID: customID, outcome: .cancelled)
        case "expired"?: return BatchResultLine(customID: customID, outcome: .expired)
        default: return nil
        }
    }
}

/// RFC 3339 times as Anthropic writes them (`2026-11-24T00:01:00Z`, fractions allowed), to epoch milliseconds.
enum RFC3339 {
    static func milliseconds(_ text: String) -> Int64? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return Int64(date.timeIntervalSince1970 * 1000) }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text).map { Int64($0.timeIntervalSince1970 * 1000) }
    }

    static func text(_ milliseconds: Int64) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}
