import Foundation

/// The HTTP exchanges of the batch APIs: JSON calls, a file upload from disk and a download to disk, so that
/// inputs and results of any size pass through without being held in memory. Each goes through the process's one
/// HTTP engine and ends at its answer, its timeout, a stall of two minutes or the cancellation of the calling task.
final class BatchHTTP: Sendable {
    let provider: Provider
    /// Where every step's request is built and checked: the key goes to the provider's origin only.
    private let endpoint: Result<ProviderEndpoint, CallFailure>
    /// A JSON call's whole time, and a file transfer's (which also ends when no byte moves for `stalledSeconds`).
    private let timeoutSeconds: Double
    private let transferSeconds: Double = 6 * 3600
    private let stalledSeconds: Double = 120

    /// The largest results file read: 16 GiB, far above the providers' limits on a batch's results.
    static let resultsLimit: Int64 = 16 << 30

    init(provider: Provider, environment: [String: String], timeoutSeconds: Double = 600) {
        self.provider = provider
        self.timeoutSeconds = timeoutSeconds
        endpoint = Result { () throws(CallFailure) in
            try ProviderEndpoint(provider: provider, dialect: provider.batchDialect ?? provider.dialect, environment: environment)
        }
    }

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

    /// A JSON call's request to `url`, with the provider's credentials.
    func request(_ url: URL, method: String) throws(BatchAPIError) -> HTTPRequest {
        try withEndpoint { endpoint throws(CallFailure) in
            try endpoint.request(url, method: method, timeoutSeconds: timeoutSeconds, stalledSeconds: stalledSeconds)
        }
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
            request.setHeader("Content-Type", "application/json")
            request.body = .bytes(JSONWriter.bytes(.object(body)))
        }
        let answer = try await exchange(request)
        return try object(answer, method: method, url: url)
    }

    /// POSTs the file at `file` as the body (multipart bodies are written to disk first).
    func upload(_ request: HTTPRequest, file: URL) async throws(BatchAPIError) -> JSONObject {
        var request = request
        request.body = .file(path: file.path)
        request.timeoutSeconds = transferSeconds
        let answer = try await exchange(request)
        return try object(answer, method: request.method, url: request.url)
    }

    /// Downloads `url` into `folder`, to a file of its own (the caller removes it).
    func download(_ url: URL, into folder: WorkFolder) async throws(BatchAPIError) -> URL {
        var request = try request(url, method: "GET")
        let kept: URL
        do { kept = try folder.newPath("results") } catch {
            throw BatchAPIError(CallFailure(kind: .retryable, status: nil, message: "could not make a file for the results: \(error)"))
        }
        request.sink = .file(path: kept.path, limit: BatchHTTP.resultsLimit)
        request.timeoutSeconds = transferSeconds
        let answer: HTTPResponse
        do { answer = try await exchange(request, leavingWithoutCredentials: true) } catch {
            try? FileManager.default.removeItem(at: kept)
            throw error
        }
        guard (200..<300).contains(answer.status) else {
            let body = (try? String(contentsOf: kept, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(at: kept)
            if let refused = try checkedEndpoint().refusedRedirect(status: answer.status, location: answer.headers["location"], method: "GET", url: url) {
                throw BatchAPIError(refused)
            }
            throw BatchAPIError(DialectTranslation.classify(
                status: answer.status, body: mask(String(body.prefix(100_000))), retryAfterMilliseconds: nil))
        }
        do { try folder.restrict(kept) } catch {
            try? FileManager.default.removeItem(at: kept)
            throw BatchAPIError(CallFailure(kind: .retryable, status: nil, message: "could not keep the downloaded results private: \(error)"))
        }
        return kept
    }

    private func exchange(_ request: HTTPRequest, leavingWithoutCredentials: Bool = false) async throws(BatchAPIError) -> HTTPResponse {
        switch try await checkedEndpoint().exchange(request, leavingWithoutCredentials: leavingWithoutCredentials) {
        case .success(let answer): return answer
        case .failure(let failure): throw BatchAPIError(NetworkTrouble.failure(failure, url: request.url))
        }
    }

    /// A JSON answer's object, or the failure its status, redirect or body stands for.
    private func object(_ answer: HTTPResponse, method: String, url: URL) throws(BatchAPIError) -> JSONObject {
        if let refused = try checkedEndpoint().refusedRedirect(status: answer.status, location: answer.headers["location"], method: method, url: url) {
            throw BatchAPIError(refused)
        }
        let body = mask(String(decoding: answer.body, as: UTF8.self))
        guard (200..<300).contains(answer.status) else {
            throw BatchAPIError(DialectTranslation.classify(
                status: answer.status, body: body, retryAfterMilliseconds: RetryAfter.milliseconds(header: { answer.headers[$0] }, now: Date())))
        }
        guard let object = (try? JSONParser.parse(body))?.objectValue else {
            throw BatchAPIError(CallFailure(kind: .retryable, status: answer.status, message: "the batch API sent a body that is not a JSON object"))
        }
        return object
    }
}

extension Result {
    var failure: Failure? { if case .failure(let error) = self { error } else { nil } }
}
