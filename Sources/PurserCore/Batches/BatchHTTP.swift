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
    /// Where every step's request is built and checked: the key goes to the provider's origin only.
    private let endpoint: Result<ProviderEndpoint, CallFailure>

    init(provider: Provider, environment: [String: String], timeoutSeconds: Double = 600) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeoutSeconds
        configuration.timeoutIntervalForResource = timeoutSeconds
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        session = URLSession(configuration: configuration, delegate: SameOriginRedirects(), delegateQueue: nil)
        self.provider = provider
        endpoint = Result { () throws(CallFailure) in
            try ProviderEndpoint(provider: provider, dialect: provider.batchDialect ?? provider.dialect, environment: environment)
        }
    }

    deinit { session.finishTasksAndInvalidate() }

    private func checkedEndpoint() throws(BatchAPIError) -> ProviderEndpoint {
        switch endpoint {
        case .success(let endpoint): return endpoint
        case .failure(let failure): throw BatchAPIError(failure)
        }
    }

    /// What `body` makes of the endpoint, its refusal a batch API error.
    private func withEndpoint<T>(_ body: (ProviderEndpoint) throws(CallFailure) -> T) throws(BatchAPIError) -> T {
        let endpoint = try checkedEndpoint()
        do { return try body(endpoint) } catch { throw BatchAPIError(error) }
    }

    func url(_ path: String) throws(BatchAPIError) -> URL { try withEndpoint { endpoint throws(CallFailure) in try endpoint.url(path) } }

    /// A URL the provider gave (a results URL), resolved against its base; refused when on another origin.
    func resolve(_ reference: String) throws(BatchAPIError) -> URL {
        try withEndpoint { endpoint throws(CallFailure) in try endpoint.resolve(reference) }
    }

    func request(_ url: URL, method: String) throws(BatchAPIError) -> URLRequest {
        try withEndpoint { endpoint throws(CallFailure) in try endpoint.request(url, method: method) }
    }

    /// Provider text with the key taken out.
    func mask(_ text: String) -> String {
        guard case .success(let endpoint) = endpoint else { return text }  // no usable endpoint: no key was read either
        return endpoint.mask(text)
    }

    /// A JSON call; the answer's body parsed, or the failure classified as for a live call.
    func json(_ method: String, _ path: String, body: JSONObject? = nil) async throws(BatchAPIError) -> JSONObject {
        let url = try url(path)
        var request = try request(url, method: method)
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(JSONWriter.string(.object(body)).utf8)
        }
        let prepared = request
        let (data, response) = try await exchange(prepared) { session, handler in session.dataTask(with: prepared, completionHandler: handler) }
        return try object(data ?? Data(), response: response, method: method, url: url)
    }

    /// POSTs the file at `file` as the body (multipart bodies are written to disk first).
    func upload(_ request: URLRequest, file: URL) async throws(BatchAPIError) -> JSONObject {
        let (data, response) = try await exchange(request) { session, handler in
            session.uploadTask(with: request, fromFile: file, completionHandler: handler)
        }
        return try object(data ?? Data(), response: response, method: "POST", url: request.url!)
    }

    /// Downloads `url` into `folder`, to a file of its own (the caller removes it).
    func download(_ url: URL, into folder: WorkFolder) async throws(BatchAPIError) -> URL {
        let request = try request(url, method: "GET")
        let kept: URL
        do { kept = try folder.newPath("results") } catch {
            throw BatchAPIError(CallFailure(kind: .retryable, status: nil, message: "could not make a file for the results: \(error)"))
        }
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
        let http = response as? HTTPURLResponse
        guard let status = http?.statusCode, (200..<300).contains(status) else {
            let status = http?.statusCode ?? 0
            let body = (try? String(contentsOf: kept, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(at: kept)
            if let http, let refused = try checkedEndpoint().refusedRedirect(
                status: status, location: http.value(forHTTPHeaderField: "Location"), method: "GET", url: url)
            {
                throw BatchAPIError(refused)
            }
            throw BatchAPIError(DialectTranslation.classify(status: status, body: mask(String(body.prefix(100_000))), retryAfterMilliseconds: nil))
        }
        do { try folder.restrict(kept) } catch {
            try? FileManager.default.removeItem(at: kept)
            throw BatchAPIError(CallFailure(kind: .retryable, status: nil, message: "could not keep the downloaded results private: \(error)"))
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

    /// A JSON answer's object, or the failure its status, redirect or body stands for.
    private func object(_ data: Data, response: URLResponse?, method: String, url: URL) throws(BatchAPIError) -> JSONObject {
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let http = response as? HTTPURLResponse
        if let http, let refused = try checkedEndpoint().refusedRedirect(
            status: status, location: http.value(forHTTPHeaderField: "Location"), method: method, url: url)
        {
            throw BatchAPIError(refused)
        }
        let body = mask(String(decoding: data, as: UTF8.self))
        guard (200..<300).contains(status) else {
            throw BatchAPIError(DialectTranslation.classify(
                status: status, body: body, retryAfterMilliseconds: http.flatMap { RetryAfter.milliseconds(from: $0, now: Date()) }))
        }
        guard let object = (try? JSONParser.parse(body))?.objectValue else {
            throw BatchAPIError(CallFailure(kind: .retryable, status: status, message: "the batch API sent a body that is not a JSON object"))
        }
        return object
    }
}

extension Result {
    var failure: Failure? { if case .failure(let error) = self { error } else { nil } }
}
