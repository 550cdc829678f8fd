import Foundation
import PurserCore
import PurserSQLite

/// The OpenAI Files and Batches API, as the official `openai` SDK calls it under `base_url=http://HOST/v1`.
/// A batch is a Purser job: created `validating`, checked and stored by the keeper, then planned and served.
struct OpenAIAPI {
    let context: ServiceContext

    /// The purposes the SDK uploads with; only `batch` files can be a batch's input.
    static let purposes: Set<String> = ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
    /// The endpoint Purser serves batch lines to.
    static let endpoints: Set<String> = ["/v1/chat/completions"]

    func route(_ request: HTTPRequest, _ body: HTTPBody, key: ProjectKey) throws -> HTTPResponse {
        let parts = request.segments  // ["v1", "files", ...]
        switch (request.method, parts.count > 1 ? parts[1] : "", parts.count) {
        case ("POST", "files", 2): return try upload(request, body, key: key)
        case ("GET", "files", 2): return try listFiles(request, key: key)
        case ("GET", "files", 3): return .json(200, JSONWriter.string(.object(try file(parts[2], key: key).openAI)))
        case ("DELETE", "files", 3): return try deleteFile(parts[2], key: key)
        case ("GET", "files", 4) where parts[3] == "content": return try content(parts[2], key: key)
        case ("POST", "batches", 2): return try createBatch(body, key: key)
        case ("GET", "batches", 2): return try listBatches(request, key: key)
        case ("GET", "batches", 3): return try show(try batch(parts[2], key: key))
        case ("POST", "batches", 4) where parts[3] == "cancel": return try cancel(parts[2], key: key)
        default: throw APIError(status: 404, type: "invalid_request_error", message: "Unknown request URL: \(request.method) \(request.path)", code: "unknown_url")
        }
    }

    static func requireSubmit(_ key: ProjectKey) throws {
        guard key.role.maySubmit else { throw APIError.forbidden("This key has the read role: uploads, creates and cancels need a submit or admin key.") }
    }

    // MARK: - Files

    private func upload(_ request: HTTPRequest, _ body: HTTPBody, key: ProjectKey) throws -> HTTPResponse {
        try OpenAIAPI.requireSubmit(key)
        guard let boundary = MultipartUpload.boundary(in: request.header("content-type")) else {
            throw APIError(status: 415, type: "invalid_request_error", message: "POST /v1/files takes multipart/form-data with a 'file' part and a 'purpose' field.", code: "unsupported_media_type")
        }
        guard context.beginUpload(key: key.id) else {
            throw APIError(status: 429, type: "rate_limit_error", message: "This key has \(context.uploadsPerKey) uploads in progress; wait for one to end.", code: "too_many_uploads")
        }
        defer { context.endUpload(key: key.id) }
        let id = ServiceContext.newID("file-")
        let path = context.path(forFile: id)
        var kept = false
        defer { if !kept { unlink(path) } }
        let upload: MultipartUpload
        do {
            upload = try MultipartUpload.read(body, boundary: boundary, fileField: "file", destination: path, maximumFileBytes: context.maximumUploadBytes)
        } catch let failure as HTTPFailure {
            throw APIError(failure, param: "file")
        }
        guard let filename = upload.filename else { throw APIError.invalid("The upload has no 'file' part.", param: "file") }
        guard let purpose = upload.fields["purpose"] else { throw APIError.invalid("Missing required parameter: 'purpose'.", param: "purpose") }
        guard OpenAIAPI.purposes.contains(purpose) else {
            throw APIError.invalid("'\(purpose.prefix(40))' is not a purpose: use one of \(OpenAIAPI.purposes.sorted().joined(separator: ", ")).", param: "purpose")
        }
        if purpose == "batch" && upload.fileBytes > context.maximumBatchFileBytes {
            throw APIError(status: 413, type: "invalid_request_error", message: "A batch input file may be at most 200 MB; this one is \(upload.fileBytes) bytes.", param: "file", code: "file_too_large")
        }
        let now = context.now()
        var expiresAt: Int64? = purpose == "batch" ? now + 30 * 86_400_000 : nil
        if let anchor = upload.fields["expires_after[anchor]"] {
            guard anchor == "created_at" else { throw APIError.invalid("expires_after[anchor] must be 'created_at'.", param: "expires_after[anchor]") }
            guard let seconds = upload.fields["expires_after[seconds]"].flatMap({ Int64($0) }), (3_600...2_592_000).contains(seconds) else {
                throw APIError.invalid("expires_after[seconds] must be a whole number of seconds from 3600 to 2592000.", param: "expires_after[seconds]")
            }
            expiresAt = now + seconds * 1000
        }
        // The same bytes, name and purpose uploaded again (an SDK retry) are the file already stored.
        if let existing = try context.withStore({ try $0.service.file(sha256: upload.sha256, purpose: purpose, filename: filename, project: key.project, now: now) }) {
            return .json(200, JSONWriter.string(.object(existing.openAI)))
        }
        let file = ServiceFile(
            id: id, project: key.project, filename: String(filename.prefix(255)), purpose: purpose, bytes: upload.fileBytes, sha256: upload.sha256,
            path: path, createdAt: now, expiresAt: expiresAt)
        try context.withStore { try $0.service.insertFile(file) }
        kept = true
        return .json(200, JSONWriter.string(.object(file.openAI)))
    }

    private func file(_ id: String, key: ProjectKey) throws -> ServiceFile {
        guard let file = try context.withStore({ try $0.service.file(id, project: key.project, now: context.now()) }), file.purpose != AnthropicAPI.resultsPurpose else {
            throw APIError.notFound("No such File object: \(id.prefix(80))", code: "file_not_found")
        }
        return file
    }

    private func listFiles(_ request: HTTPRequest, key: ProjectKey) throws -> HTTPResponse {
        let limit = try OpenAIAPI.limit(request, default: 10_000, maximum: 10_000)
        let order = request.query["order"] ?? "desc"
        guard order == "asc" || order == "desc" else { throw APIError.invalid("order must be 'asc' or 'desc'.", param: "order") }
        let (files, hasMore) = try context.withStore {
            try $0.service.files(project: key.project, purpose: request.query["purpose"], after: request.query["after"], limit: limit, ascending: order == "asc", now: context.now())
        }
        let shown = files.filter { $0.purpose != AnthropicAPI.resultsPurpose }
        return OpenAIAPI.page(shown.map(\.openAI), hasMore: hasMore)
    }

    private func deleteFile(_ id: String, key: ProjectKey) throws -> HTTPResponse {
        try OpenAIAPI.requireSubmit(key)
        let file = try file(id, key: key)
        guard try context.withStore({ try $0.service.deleteFile(id, project: key.project, at: context.now()) }) else {
            throw APIError.notFound("No such File object: \(id.prefix(80))", code: "file_not_found")
        }
        // A batch created from it and not checked yet fails for want of its input; one checked holds its lines already.
        unlink(file.path)
        return .json(200, JSONWriter.string(.object(JSONObject(["id": .string(id), "object": .string("file"), "deleted": .bool(true)]))))
    }

    private func content(_ id: String, key: ProjectKey) throws -> HTTPResponse {
        let file = try file(id, key: key)
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/octet-stream")], body: .file(path: file.path, length: file.bytes))
    }

    // MARK: - Batches

    private func batch(_ id: String, key: ProjectKey) throws -> ServiceBatch {
        guard let batch = try context.withStore({ try $0.service.batch(id, project: key.project) }), batch.dialect == .openai else {
            throw APIError.notFound("No batch found with id '\(id.prefix(80))'.", code: "batch_not_found")
        }
        return batch
    }

    private func show(_ batch: ServiceBatch) throws -> HTTPResponse {
        let view = try context.withStore { try BatchView(batch, store: $0, cache: context.jobFigures) }
        return .json(200, JSONWriter.string(.object(view.openAI)))
    }

    private func createBatch(_ body: HTTPBody, key: ProjectKey) throws -> HTTPResponse {
        try OpenAIAPI.requireSubmit(key)
        let fields = try OpenAIAPI.jsonObject(body)
        guard let inputFileID = fields["input_file_id"]?.stringValue else { throw APIError.invalid("Missing required parameter: 'input_file_id'.", param: "input_file_id") }
        guard let endpoint = fields["endpoint"]?.stringValue else { throw APIError.invalid("Missing required parameter: 'endpoint'.", param: "endpoint") }
        guard OpenAIAPI.endpoints.contains(endpoint) else {
            throw APIError.invalid("Purser serves batches for /v1/chat/completions; '\(endpoint.prefix(60))' is not served.", param: "endpoint")
        }
        let window = fields["completion_window"]?.stringValue ?? "24h"
        guard let windowMilliseconds = DurationText.milliseconds(window), (3_600_000...7 * 86_400_000).contains(windowMilliseconds) else {
            throw APIError.invalid("completion_window '\(window.prefix(20))' is not a duration from 1h to 7d (such as 24h).", param: "completion_window")
        }
        let metadata = fields["metadata"] ?? .null
        try OpenAIAPI.checkMetadata(metadata)
        let input = try file(inputFileID, key: key)
        guard input.purpose == "batch" else {
            throw APIError.invalid("File \(inputFileID) was uploaded with purpose '\(input.purpose)'; a batch's input needs purpose 'batch'.", param: "input_file_id")
        }
        let metadataText = metadata.isNull ? nil : JSONWriter.string(metadata)
        let createKey = SHA256.hex(of: Array([key.project, inputFileID, endpoint, window, metadataText ?? ""].joined(separator: "\u{0}").utf8))
        let now = context.now()
        let batch = ServiceBatch(
            id: ServiceContext.newID("batch_"), project: key.project, dialect: .openai, status: .validating, inputFileID: inputFileID,
            endpoint: endpoint, completionWindow: window, metadata: metadataText, createdAt: now)
        let stored = try context.withStore { try $0.service.insertBatch(batch, createKey: createKey, since: now - context.retryWindowMilliseconds).batch }
        return try show(stored)
    }

    private func listBatches(_ request: HTTPRequest, key: ProjectKey) throws -> HTTPResponse {
        let limit = try OpenAIAPI.limit(request, default: 20, maximum: 100)
        let page = try context.withStore { store in
            let (batches, hasMore) = try store.service.batches(project: key.project, dialect: .openai, after: request.query["after"], before: nil, limit: limit)
            return (try batches.map { try BatchView($0, store: store, cache: context.jobFigures).openAI }, hasMore)
        }
        return OpenAIAPI.page(page.0, hasMore: page.1)
    }

    private func cancel(_ id: String, key: ProjectKey) throws -> HTTPResponse {
        try OpenAIAPI.requireSubmit(key)
        let batch = try batch(id, key: key)
        try BatchCancel.cancel(batch, context: context) { status in
            "Cannot cancel a batch with status '\(status.rawValue)': only validating, in_progress and finalizing batches can be cancelled."
        }
        return try show(try self.batch(id, key: key))
    }

    // MARK: - Shared parts

    static func limit(_ request: HTTPRequest, default value: Int, maximum: Int) throws -> Int {
        guard let text = request.query["limit"] else { return value }
        guard let limit = Int(text), (1...maximum).contains(limit) else { throw APIError.invalid("limit must be a whole number from 1 to \(maximum).", param: "limit") }
        return limit
    }

    static func page(_ items: [JSONObject], hasMore: Bool) -> HTTPResponse {
        .json(200, JSONWriter.string(.object(JSONObject([
            "object": .string("list"), "data": .array(items.map(JSONValue.object)),
            "first_id": items.first?["id"] ?? .null, "last_id": items.last?["id"] ?? .null, "has_more": .bool(hasMore),
        ]))))
    }

    static func jsonObject(_ body: HTTPBody) throws -> JSONObject {
        try APIError.jsonObject(try APIError.bodyBytes(body), expected: "a JSON object")
    }

    /// OpenAI's metadata limits: at most 16 pairs, keys up to 64 characters, string values up to 512.
    static func checkMetadata(_ metadata: JSONValue) throws {
        if metadata.isNull { return }
        guard let object = metadata.objectValue else { throw APIError.invalid("metadata must be an object of strings.", param: "metadata") }
        guard object.members.count <= 16 else { throw APIError.invalid("metadata may hold at most 16 pairs.", param: "metadata") }
        for member in object.members {
            guard member.key.count <= 64, let value = member.value.stringValue, value.count <= 512 else {
                throw APIError.invalid("metadata['\(member.key.prefix(64))'] must be a string of at most 512 characters, under a key of at most 64.", param: "metadata")
            }
        }
    }
}

/// A cancel through either API: the batch moves to cancelling and its job's requests not started are cancelled;
/// those in flight finish, and the keeper ends the batch once none is left running.
enum BatchCancel {
    static func cancel(_ batch: ServiceBatch, context: ServiceContext, refusal: (ServiceBatchStatus) -> String) throws {
        if batch.status == .cancelling { return }
        guard try context.withStore({ try $0.service.cancelBatch(batch.id, at: context.now()) }) else {
            throw APIError.invalid(refusal(batch.status), code: "invalid_state")
        }
        if let job = batch.jobID { _ = try context.withStore { try $0.results.cancel(job: job) } }
    }
}
