import Foundation
import PurserCore
import PurserSQLite

/// The Anthropic Message Batches API, as the official `anthropic` SDK calls it (`base_url=http://HOST`). The
/// requests come inline; they are checked and stored as a Purser job before the create answers, as Anthropic
/// checks them before it answers.
struct AnthropicAPI {
    let context: ServiceContext
    /// This server's own origin, for `results_url`, given the request's Host header.
    let origin: @Sendable (String?) -> String

    init(context: ServiceContext, origin: @escaping @Sendable (String?) -> String) {
        self.context = context
        self.origin = origin
    }

    /// The purpose of a message batch's results file: kept with the files, never listed by the Files API.
    static let resultsPurpose = "message_batch_results"

    func route(_ request: HTTPRequest, _ body: HTTPBody, key: ProjectKey) throws -> HTTPResponse {
        let parts = request.segments  // ["v1", "messages", "batches", ...]
        let origin = origin(request.header("host"))
        switch (request.method, parts.count) {
        case ("POST", 3): return try create(body, key: key, origin: origin)
        case ("GET", 3): return try list(request, key: key, origin: origin)
        case ("GET", 4): return try show(try batch(parts[3], key: key), origin: origin)
        case ("DELETE", 4): return try delete(parts[3], key: key)
        case ("POST", 5) where parts[4] == "cancel": return try cancel(parts[3], key: key, origin: origin)
        case ("GET", 5) where parts[4] == "results": return try results(parts[3], key: key)
        default: throw APIError(status: 404, type: "not_found_error", message: "Unknown request URL: \(request.method) \(request.path)")
        }
    }

    private func batch(_ id: String, key: ProjectKey) throws -> ServiceBatch {
        guard let batch = try context.withStore({ try $0.service.batch(id, project: key.project) }), batch.dialect == .anthropic else {
            throw APIError(status: 404, type: "not_found_error", message: "No message batch with id '\(id.prefix(80))'.")
        }
        return batch
    }

    private func show(_ batch: ServiceBatch, origin: String) throws -> HTTPResponse {
        let view = try context.withStore { try BatchView(batch, store: $0, cache: context.jobFigures) }
        return .json(200, JSONWriter.string(.object(view.anthropic(origin: origin))))
    }

    private func create(_ body: HTTPBody, key: ProjectKey, origin: String) throws -> HTTPResponse {
        try OpenAIAPI.requireSubmit(key)
        let bytes = try APIError.bodyBytes(body)
        let createKey = SHA256.hex(of: Array((key.project + "\u{0}").utf8) + bytes)
        let now = context.now()
        if let existing = try context.withStore({ try $0.service.batch(createKey: createKey, project: key.project, since: now - context.retryWindowMilliseconds) }) {
            return try show(existing, origin: origin)
        }
        let shape = "a JSON object with a 'requests' array of {custom_id, params}"
        guard let requests = try APIError.jsonObject(bytes, expected: shape, param: "requests")["requests"]?.arrayValue else {
            throw APIError.invalid("The body must be \(shape).", param: "requests")
        }
        guard !requests.isEmpty, requests.count <= context.maximumBatchRequests else {
            throw APIError.invalid("requests must hold from 1 to \(context.maximumBatchRequests) requests; it holds \(requests.count).", param: "requests")
        }
        // The requests become a job file of Anthropic batch lines, which submit reads like any other. The batch is
        // stored first, claimed by this create, so that a crash midway leaves a batch the keeper checks again (from the
        // same file), never a job no batch names.
        let id = ServiceContext.newID("msgbatch_")
        let inputName = AnthropicAPI.inputFileName(id)
        let inputPath = context.path(forFile: inputName)
        var text = ""
        text.reserveCapacity(bytes.count + requests.count)
        for request in requests {
            JSONWriter.write(request, into: &text)
            text += "\n"
        }
        guard FileManager.default.createFile(atPath: inputPath, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw APIError.internalError("cannot write the batch's requests to \(context.filesFolder)")
        }
        let claim = "create-\(id)"
        let batch = ServiceBatch(
            id: id, project: key.project, dialect: .anthropic, status: .validating, inputFileID: inputName, endpoint: "/v1/messages",
            completionWindow: "24h", metadata: nil, createdAt: now)
        let stored = try context.withStore { try $0.service.insertBatch(batch, createKey: createKey, since: now - context.retryWindowMilliseconds, claimedBy: claim) }
        guard stored.created else {
            unlink(inputPath)
            return try show(stored.batch, origin: origin)
        }
        do {
            _ = try BatchValidation.check(path: inputPath, batch: id, project: key.project, deadline: "24h", quality: nil, context: context)
        } catch let rejected as SubmissionRejected {
            try context.withStore { try $0.service.discardBatch(id, at: context.now()) }
            unlink(inputPath)
            let first = rejected.problems.first.map { "requests[\($0.lineNumber - 1)]: \($0.message)" } ?? "bad requests"
            throw APIError.invalid(first + (rejected.totalBadLines > 1 ? " (and \(rejected.totalBadLines - 1) more bad requests)" : ""), param: "requests")
        }
        unlink(inputPath)
        return try show(try self.batch(id, key: key), origin: origin)
    }

    /// Where a message batch's requests wait, as job lines, until they are stored as its job.
    static func inputFileName(_ id: String) -> String { id + ".input.jsonl" }

    private func list(_ request: HTTPRequest, key: ProjectKey, origin: String) throws -> HTTPResponse {
        let limit = try OpenAIAPI.limit(request, default: 20, maximum: 1000)
        let (items, hasMore) = try context.withStore { store in
            let (batches, hasMore) = try store.service.batches(
                project: key.project, dialect: .anthropic, after: request.query["after_id"], before: request.query["before_id"], limit: limit)
            return (try batches.map { try BatchView($0, store: store, cache: context.jobFigures).anthropic(origin: origin) }, hasMore)
        }
        return .json(200, JSONWriter.string(.object(JSONObject([
            "data": .array(items.map(JSONValue.object)), "has_more": .bool(hasMore),
            "first_id": items.first?["id"] ?? .null, "last_id": items.last?["id"] ?? .null,
        ]))))
    }

    private func cancel(_ id: String, key: ProjectKey, origin: String) throws -> HTTPResponse {
        try OpenAIAPI.requireSubmit(key)
        let batch = try batch(id, key: key)
        try BatchCancel.cancel(batch, context: context) { _ in "Message batch \(id) has ended: there is nothing to cancel." }
        return try show(try self.batch(id, key: key), origin: origin)
    }

    private func delete(_ id: String, key: ProjectKey) throws -> HTTPResponse {
        try OpenAIAPI.requireSubmit(key)
        let batch = try batch(id, key: key)
        guard batch.status.isEnded else {
            throw APIError.invalid("Message batch \(id) is still processing: cancel it and wait for it to end before deleting it.")
        }
        guard try context.withStore({ try $0.service.deleteBatch(id, project: key.project, at: context.now()) }) else {
            throw APIError(status: 404, type: "not_found_error", message: "No message batch with id '\(id.prefix(80))'.")
        }
        if let results = batch.outputFileID { unlink(context.path(forFile: results)) }
        return .json(200, JSONWriter.string(.object(JSONObject(["id": .string(id), "type": .string("message_batch_deleted")]))))
    }

    private func results(_ id: String, key: ProjectKey) throws -> HTTPResponse {
        let batch = try batch(id, key: key)
        guard batch.status.isEnded, let fileID = batch.outputFileID,
              let file = try context.withStore({ try $0.service.file(fileID, project: key.project, now: context.now()) }) else {
            throw APIError.invalid("Message batch \(id) has not ended yet: its results are ready once processing_status is 'ended'.")
        }
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/binary")], body: .file(path: file.path, length: file.bytes))
    }
}
