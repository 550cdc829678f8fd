import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The HTTP exchanges of the batch APIs: JSON calls, a file upload from disk and a download to disk, so that
/// inputs and results of any size pass through without being held in memory. Each ends at its answer, its
/// timeout or the cancellation of the calling task. Keys are read from the environment per call.
final class BatchHTTP: Sendable {
    private let session: URLSession
    let provider: Provider
    private let key: String

    init(provider: Provider, environment: [String: String], timeoutSeconds: Double = 600) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeoutSeconds
        configuration.timeoutIntervalForResource = timeoutSeconds
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        session = URLSession(configuration: configuration)
        self.provider = provider
        key = environment[provider.apiKeyEnvironmentVariable] ?? ""
    }

    deinit { session.finishTasksAndInvalidate() }

    func url(_ path: String) throws(BatchAPIError) -> URL {
        let base = provider.baseURL.hasSuffix("/") ? String(provider.baseURL.dropLast()) : provider.baseURL
        guard let url = URL(string: base + path) else {
            throw BatchAPIError(CallFailure(kind: .auth, status: nil, message: "provider \(provider.name) has an invalid base_url"))
        }
        return url
    }

    func request(_ url: URL, method: String) -> URLRequest {
        var request = URLRequest(url: url)
        request.httpMethod = method
        switch provider.batchDialect ?? provider.dialect {
        case .openai:
            request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
        case .anthropic:
            request.setValue(key, forHTTPHeaderField: "x-api-key")
            request.setValue(HTTPProviderClient.anthropicVersion, forHTTPHeaderField: "anthropic-version")
        }
        return request
    }

    /// A JSON call; the answer's body parsed, or the failure classified as for a live call.
    func json(_ method: String, _ path: String, body: JSONObject? = nil) async throws(BatchAPIError) -> JSONObject {
        var request = request(try url(path), method: method)
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(JSONWriter.string(.object(body)).utf8)
        }
        let prepared = request
        let (data, response) = try await exchange(prepared) { session, handler in session.dataTask(with: prepared, completionHandler: handler) }
        return try BatchHTTP.object(data ?? Data(), response: response)
    }

    /// POSTs the file at `file` as the body (multipart bodies are written to disk first).
    func upload(_ request: URLRequest, file: URL) async throws(BatchAPIError) -> JSONObject {
        let (data, response) = try await exchange(request) { session, handler in
            session.uploadTask(with: request, fromFile: file, completionHandler: handler)
        }
        return try BatchHTTP.object(data ?? Data(), response: response)
    }

    /// Downloads `url` to a file of its own (the caller removes it).
    func download(_ url: URL) async throws(BatchAPIError) -> URL {
        let request = request(url, method: "GET")
        let kept = FileManager.default.temporaryDirectory.appendingPathComponent("purser-batch-\(UUID().uuidString).jsonl")
        let moved = MovedFile()
        let (_, response) = try await exchange(request) { session, handler in
            session.downloadTask(with: request) { location, response, error in
                // The temporary file is gone once this handler returns: it is moved first.
                if let location { moved.error = Result { try FileManager.default.moveItem(at: location, to: kept) }.failure }
                handler(nil, response, error)
            }
        }
        if let error = moved.error {
            throw BatchAPIError(CallFailure(kind: .retryable, status: nil, message: "could not keep the downloaded results: \(error)"))
        }
        guard let http = response as? HTTPURLResponse, (200..<300).contains(http.statusCode) else {
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            let body = (try? String(contentsOf: kept, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(at: kept)
            throw BatchAPIError(DialectTranslation.classify(status: status, body: String(body.prefix(10_000)), retryAfterMilliseconds: nil))
        }
        return kept
    }

    private final class MovedFile: @unchecked Sendable { var error: (any Error)? }

    private final class TaskBox: @unchecked Sendable {
        let lock = NSLock()
        var task: URLSessionTask?
        var cancelled = false
    }

    private func exchange(
        _ request: URLRequest,
        make: @escaping @Sendable (URLSession, @escaping @Sendable (Data?, URLResponse?, (any Error)?) -> Void) -> URLSessionTask
    ) async throws(BatchAPIError) -> (Data?, URLResponse?) {
        let box = TaskBox()
        let session = session
        let result: Result<(Data?, URLResponse?), any Error> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    let task = make(session) { data, response, error in
                        if let error, response == nil { continuation.resume(returning: .failure(error)) } else {
                            continuation.resume(returning: .success((data, response)))
                        }
                    }
                    box.lock.withLock {
                        box.task = task
                        if box.cancelled { task.cancel() }
                    }
                    task.resume()
                }
            }
        } onCancel: {
            DispatchQueue.global().async { box.lock.withLock { box.cancelled = true; box.task?.cancel() } }
        }
        switch result {
        case .success(let answer): return answer
        case .failure(let error):
            guard let url = request.url else { throw BatchAPIError(CallFailure(kind: .retryable, status: nil, message: "\(error)")) }
            throw BatchAPIError(NetworkTrouble.failure(error, url: url))
        }
    }

    static func object(_ data: Data, response: URLResponse?) throws(BatchAPIError) -> JSONObject {
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let body = String(decoding: data, as: UTF8.self)
        guard (200..<300).contains(status) else {
            let http = response as? HTTPURLResponse
            throw BatchAPIError(DialectTranslation.classify(
                status: status, body: body, retryAfterMilliseconds: http.flatMap { RetryAfter.milliseconds(from: $0, now: Date()) }))
        }
        guard let object = (try? JSONParser.parse(Array(data)))?.objectValue else {
            throw BatchAPIError(CallFailure(kind: .retryable, status: status, message: "the batch API sent a body that is not a JSON object"))
        }
        return object
    }
}

extension Result {
    var failure: Failure? { if case .failure(let error) = self { error } else { nil } }
}
