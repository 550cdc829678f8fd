import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Calls real endpoints over HTTP: `POST {base}/chat/completions` with a bearer key (openai dialect) or
/// `POST {base}/v1/messages` with `x-api-key` and `anthropic-version` (anthropic dialect).
/// Keys are read from the environment at each call and never kept anywhere else.
public final class HTTPProviderClient: ModelCaller {
    private let session: URLSession
    private let environment: [String: String]
    private let deadlines = ExchangeDeadlines()
    /// Each provider's endpoint, made once (its base URL parsed, its key read) rather than on every call.
    private let endpoints = Mutex<[Provider: ProviderEndpoint]>([:])
    public static let anthropicVersion = "2023-06-01"

    public init(maximumConnectionsPerHost: Int, timeoutSeconds: Double, environment: [String: String]) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = maximumConnectionsPerHost
        configuration.timeoutIntervalForRequest = timeoutSeconds
        configuration.timeoutIntervalForResource = timeoutSeconds
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        // Redirects are followed only within the provider's origin, where its key may go.
        session = URLSession(configuration: configuration, delegate: SameOriginRedirects(), delegateQueue: nil)
        self.environment = environment
    }

    deinit {
        deadlines.stop()
        session.invalidateAndCancel()
    }

    enum Exchange: Sendable {
        case answered(Data, URLResponse)
        case timedOut
        case cancelled
        case failed(any Error)
    }

    /// One HTTP exchange that ends at the first of: the answer, the deadline, or cancellation of the
    /// calling task. URLSession's task is cancelled from a Dispatch queue, never from Swift's
    /// cooperative pool: on Linux that cancel can block, and blocked pool threads stall every worker.
    private func send(_ request: URLRequest, timeoutSeconds: Double) async -> Exchange {
        let pending = PendingExchange()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Exchange, Never>) in
                pending.attach(continuation)
                deadlines.watch(pending, until: .now() + timeoutSeconds)
                // Creating and starting a URLSession task waits on the session's own queue; that wait
                // happens on a Dispatch thread so that it never holds one of the few cooperative threads.
                let session = session
                DispatchQueue.global().async {
                    let task = session.dataTask(with: request) { data, response, error in
                        if let data, let response { pending.finish(.answered(data, response)) }
                        else { pending.finish(.failed(error ?? URLError(.badServerResponse))) }
                    }
                    pending.attach(task)
                    task.resume()
                }
            }
        } onCancel: {
            pending.finish(.cancelled, cancellingTask: true)
        }
    }

    private func endpoint(for provider: Provider) throws(CallFailure) -> ProviderEndpoint {
        if let known = endpoints.withLock({ $0[provider] }) { return known }
        let endpoint = try ProviderEndpoint(provider: provider, environment: environment)
        endpoints.withLock { $0[provider] = endpoint }
        return endpoint
    }

    public func call(_ call: ProviderCall) async -> Result<ProviderResponse, CallFailure> {
        let endpoint: ProviderEndpoint
        let url: URL
        var request: URLRequest
        do {
            endpoint = try self.endpoint(for: call.provider)
            url = try endpoint.url(call.provider.dialect == .openai ? "/chat/completions" : "/v1/messages")
            request = try endpoint.request(url, method: "POST", timeoutSeconds: call.timeoutSeconds)
        } catch {
            return .failure(error)
        }
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(String(call.requestID), forHTTPHeaderField: "X-Purser-Request")
        request.httpBody = Data(JSONWriter.string(.object(call.body)).utf8)
        let data: Data
        let response: URLResponse
        switch await send(request, timeoutSeconds: call.timeoutSeconds) {
        case .answered(let answerData, let answer):
            (data, response) = (answerData, answer)
        case .timedOut:
            return .failure(CallFailure(kind: .retryable, status: nil, message: "timed out after \(call.timeoutSeconds)s"))
        case .cancelled:
            return .failure(CallFailure(kind: .retryable, status: nil, message: "cancelled (the run is stopping)"))
        case .failed(let error):
            return .failure(NetworkTrouble.failure(error, url: url))
        }
        guard let http = response as? HTTPURLResponse else {
            return .failure(CallFailure(kind: .retryable, status: nil, message: "not an HTTP response"))
        }
        if let refused = endpoint.refusedRedirect(status: http.statusCode, location: http.value(forHTTPHeaderField: "Location"), method: "POST", url: url) {
            return .failure(refused)
        }
        return HTTPProviderClient.outcome(
            status: http.statusCode, header: { http.value(forHTTPHeaderField: $0) }, body: data, dialect: call.provider.dialect, now: Date(),
            mask: endpoint.mask)
    }

    /// What a provider's answer means: its status, headers and body read into a response with usage, or a
    /// classified failure. Everything here comes from outside, so any bytes give one or the other.
    /// `mask` takes the key out of any text the provider sent, before it is cut, kept or shown.
    public static func outcome(
        status: Int, header: (String) -> String?, body data: Data, dialect: Provider.Dialect, now: Date, mask: (String) -> String = { $0 }
    ) -> Result<ProviderResponse, CallFailure> {
        let body = mask(String(decoding: data, as: UTF8.self))
        guard (200..<300).contains(status) else {
            return .failure(DialectTranslation.classify(status: status, body: body, retryAfterMilliseconds: RetryAfter.milliseconds(header: header, now: now)))
        }
        return outcome(status: status, header: header, parsed: try? JSONParser.parse(body), text: body, dialect: dialect)
    }

    /// A successful status's answer, already parsed (a batch results line carries it as JSON).
    static func outcome(
        status: Int, header: (String) -> String?, parsed: JSONValue?, text: String, dialect: Provider.Dialect
    ) -> Result<ProviderResponse, CallFailure> {
        guard let parsed, let usage = DialectTranslation.usage(ofResponse: parsed, dialect: dialect) else {
            return .failure(CallFailure(kind: .retryable, status: status, message: "malformed response body (no usage or no answer)"))
        }
        let requestID = header("x-request-id") ?? header("request-id") ?? parsed.objectValue?["id"]?.stringValue
        return .success(ProviderResponse(statusCode: status, providerRequestID: requestID, body: text, usage: usage, simulated: false))
    }
}

/// How long a provider asked us to wait, from whichever of its headers it sent.
public enum RetryAfter {
    public static func milliseconds(from response: HTTPURLResponse, now: Date) -> Int64? {
        milliseconds(header: { response.value(forHTTPHeaderField: $0) }, now: now)
    }

    /// The longest wait a provider's header is taken at: a day. A provider asking for more (or for `1e30`) is
    /// waited on for a day; the request's deadline decides what happens then.
    public static let maximumMilliseconds: Int64 = 86_400_000

    /// `retry-after-ms`, else `retry-after` (seconds or an HTTP date), else the latest rate-limit reset
    /// (OpenAI's `x-ratelimit-reset-*` durations such as `6m0s`, Anthropic's `anthropic-ratelimit-*-reset` times),
    /// always between zero and a day.
    public static func milliseconds(header rawHeader: (String) -> String?, now: Date) -> Int64? {
        // Values are read without the spaces around them (`Retry-After:   3  `).
        func header(_ name: String) -> String? { rawHeader(name)?.trimmingCharacters(in: .whitespaces) }
        if let text = header("retry-after-ms"), let value = Double(text) { return bounded(value) }
        if let text = header("retry-after") {
            if let seconds = Double(text) { return bounded(seconds * 1000) }
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
            if let date = formatter.date(from: text) { return bounded(date.timeIntervalSince(now) * 1000) }
        }
        var latest: Int64?
        for name in ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"] {
            if let text = header(name), let value = goDuration(text) { latest = max(latest ?? 0, bounded(value)) }
        }
        for name in ["anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-input-tokens-reset",
            "anthropic-ratelimit-output-tokens-reset"]
        {
            if let text = header(name), let date = RoutingText.rfc3339Date(text) {
                latest = max(latest ?? 0, bounded(date.timeIntervalSince(now) * 1000))
            }
        }
        return latest
    }

    /// Milliseconds as a whole number from zero to a day; NaN counts as zero.
    static func bounded(_ milliseconds: Double) -> Int64 {
        guard milliseconds.isFinite else { return milliseconds > 0 ? maximumMilliseconds : 0 }
        return Int64(min(max(milliseconds.rounded(.up), 0), Double(maximumMilliseconds)))
    }

    /// Durations as OpenAI writes them: `20ms`, `1s`, `6m0s`, `1h2m3.5s`.
    static func goDuration(_ text: String) -> Double? {
        var total = 0.0
        var number = ""
        var index = text.startIndex
        var sawUnit = false
        while index < text.endIndex {
            let character = text[index]
            if character.isNumber || character == "." {
                number.append(character)
                index = text.index(after: index)
                continue
            }
            guard let value = Double(number) else { return nil }
            let rest = text[index...]
            if rest.hasPrefix("ms") { total += value; index = text.index(index, offsetBy: 2) }
            else if character == "s" { total += value * 1000; index = text.index(after: index) }
            else if character == "m" { total += value * 60_000; index = text.index(after: index) }
            else if character == "h" { total += value * 3_600_000; index = text.index(after: index) }
            else { return nil }
            number = ""
            sawUnit = true
        }
        guard sawUnit, number.isEmpty, total.isFinite else { return nil }
        return total
    }
}

/// Ends exchanges that pass their deadline, from one timer that looks every 100 ms (a timer per call
/// costs Dispatch far more once thousands of calls are out).
final class ExchangeDeadlines: Sendable {
    private let watched = Mutex<[ObjectIdentifier: (deadline: DispatchTime, exchange: PendingExchange)]>([:])
    /// Set up once in `init`; afterwards only cancelled, which Dispatch allows from any thread.
    private let timer: UncheckedBox<any DispatchSourceTimer>

    init() {
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "purser.exchange-deadlines"))
        timer.schedule(deadline: .now() + .milliseconds(100), repeating: .milliseconds(100), leeway: .milliseconds(20))
        self.timer = UncheckedBox(timer)
        timer.setEventHandler { [weak self] in self?.endOverdue() }
        timer.resume()
    }

    private func endOverdue() {
        let now = DispatchTime.now()
        // One pass drops exchanges that ended by themselves and takes out the overdue ones.
        let overdue = watched.withLock { watched -> [PendingExchange] in
            var overdue: [PendingExchange] = []
            watched = watched.filter { _, entry in
                if entry.exchange.isEnded { return false }
                if entry.deadline <= now { overdue.append(entry.exchange); return false }
                return true
            }
            return overdue
        }
        for exchange in overdue { exchange.finish(.timedOut, cancellingTask: true) }
    }

    func watch(_ exchange: PendingExchange, until deadline: DispatchTime) {
        watched.withLock { $0[ObjectIdentifier(exchange)] = (deadline, exchange) }
    }

    func stop() { timer.value.cancel() }
}

/// The state of one exchange: the first of answer, deadline or cancellation resumes the caller, once.
final class PendingExchange: Sendable {
    private struct State {
        var ended = false
        var endedWith: HTTPProviderClient.Exchange?
        var continuation: CheckedContinuation<HTTPProviderClient.Exchange, Never>?
        var task: UncheckedBox<URLSessionDataTask>?
    }

    private let state = Mutex(State())

    var isEnded: Bool { state.withLock { $0.ended } }

    func attach(_ continuation: CheckedContinuation<HTTPProviderClient.Exchange, Never>) {
        // Cancelled before it started: answer at once.
        let early = state.withLock { state -> HTTPProviderClient.Exchange? in
            if state.ended { return state.endedWith }
            state.continuation = continuation
            return nil
        }
        if let early { continuation.resume(returning: early) }
    }

    func attach(_ task: URLSessionDataTask) {
        let cancelNow = state.withLock { state -> Bool in
            state.task = UncheckedBox(task)
            return state.ended
        }
        if cancelNow { let box = UncheckedBox(task); DispatchQueue.global().async { box.value.cancel() } }
    }

    func finish(_ exchange: HTTPProviderClient.Exchange, cancellingTask: Bool = false) {
        let (continuation, task) = state.withLock { state -> (CheckedContinuation<HTTPProviderClient.Exchange, Never>?, UncheckedBox<URLSessionDataTask>?) in
            guard !state.ended else { return (nil, nil) }
            state.ended = true
            state.endedWith = exchange
            defer { state.continuation = nil }
            return (state.continuation, state.task)
        }
        continuation?.resume(returning: exchange)
        if cancellingTask, let task { DispatchQueue.global().async { task.value.cancel() } }
    }
}

/// A network error in words, and whether it means the endpoint cannot be reached at all.
enum NetworkTrouble {
    static func failure(_ error: any Error, url: URL) -> CallFailure {
        let place = url.host.map { host in url.port.map { "\(host):\($0)" } ?? host } ?? url.absoluteString
        guard let urlError = error as? URLError else {
            return CallFailure(kind: .retryable, status: nil, message: "the call to \(place) failed: \(error)")
        }
        switch urlError.code {
        case .timedOut: return CallFailure(kind: .retryable, status: nil, message: "no answer from \(place) in time (timed out)")
        case .cannotConnectToHost: return CallFailure(kind: .unreachable, status: nil, message: "connection refused by \(place)")
        case .cannotFindHost, .dnsLookupFailed: return CallFailure(kind: .unreachable, status: nil, message: "no such host: \(place)")
        case .notConnectedToInternet: return CallFailure(kind: .unreachable, status: nil, message: "no network connection to reach \(place)")
        case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate, .serverCertificateNotYetValid,
            .serverCertificateHasUnknownRoot, .clientCertificateRejected:
            return CallFailure(kind: .unreachable, status: nil, message: "the secure connection to \(place) failed (TLS)")
        case .networkConnectionLost: return CallFailure(kind: .retryable, status: nil, message: "the connection to \(place) dropped")
        case .badServerResponse, .cannotParseResponse: return CallFailure(kind: .retryable, status: nil, message: "\(place) sent a broken answer")
        default: return CallFailure(kind: .retryable, status: nil, message: "the call to \(place) failed (network error \(urlError.code.rawValue))")
        }
    }
}
