import Foundation
import Synchronization

/// Calls real endpoints over HTTP: `POST {base}/chat/completions` with a bearer key (openai dialect) or
/// `POST {base}/v1/messages` with `x-api-key` and `anthropic-version` (anthropic dialect), through the process's
/// one HTTP engine. Keys are read from the environment once per provider and never kept anywhere else.
public final class HTTPProviderClient: ModelCaller {
    private let environment: [String: String]
    /// Each provider's endpoint, the URL of its live calls and a request to it with the provider's credentials, made once
    /// (its base URL parsed and checked, its key read) rather than on every call.
    private let endpoints = Mutex<[Provider: LiveCalls]>([:])
    private struct LiveCalls {
        var endpoint: ProviderEndpoint
        var url: URL
        var request: HTTPRequest
    }
    public static let anthropicVersion = "2023-06-01"

    public init(environment: [String: String]) {
        self.environment = environment
    }

    private func liveCalls(to provider: Provider) throws(CallFailure) -> LiveCalls {
        if let known = endpoints.withLock({ $0[provider] }) { return known }
        let endpoint = try ProviderEndpoint(provider: provider, environment: environment)
        let url = try endpoint.url(provider.dialect == .openai ? "/chat/completions" : "/v1/messages")
        var request = try endpoint.request(url, method: "POST", timeoutSeconds: 60)
        request.setHeader("Content-Type", "application/json")
        let known = LiveCalls(endpoint: endpoint, url: url, request: request)
        endpoints.withLock { $0[provider] = known }
        return known
    }

    public func call(_ call: ProviderCall) async -> Result<ProviderResponse, CallFailure> {
        let live: LiveCalls
        do { live = try liveCalls(to: call.provider) } catch { return .failure(error) }
        let (endpoint, url) = (live.endpoint, live.url)
        var request = live.request
        request.timeoutSeconds = call.timeoutSeconds
        request.setHeader("X-Purser-Request", String(call.requestID))
        request.body = .bytes(JSONWriter.bytes(.object(call.body)))
        let answer: HTTPResponse
        switch await endpoint.exchange(request) {
        case .success(let response): answer = response
        case .failure(.timedOut): return .failure(CallFailure(kind: .retryable, status: nil, message: "timed out after \(call.timeoutSeconds)s"))
        case .failure(let failure): return .failure(NetworkTrouble.failure(failure, url: url))
        }
        if let refused = endpoint.refusedRedirect(status: answer.status, location: answer.headers["location"], method: "POST", url: url) {
            return .failure(refused)
        }
        return HTTPProviderClient.outcome(
            status: answer.status, header: { answer.headers[$0] }, body: answer.body, dialect: call.provider.dialect,
            now: Date(), mask: endpoint.mask)
    }

    /// What a provider's answer means: its status, headers and body read into a response with usage, or a
    /// classified failure. Everything here comes from outside, so any bytes give one or the other.
    /// `mask` takes the key out of any text the provider sent, before it is cut, kept or shown.
    public static func outcome(
        status: Int, header: (String) -> String?, body data: some Collection<UInt8>, dialect: Provider.Dialect,
        now: Date, mask: (String) -> String = { $0 }
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

/// A network failure in words, and whether it means the endpoint cannot be reached at all.
enum NetworkTrouble {
    static func failure(_ failure: ExchangeFailure, url: URL) -> CallFailure {
        let place = url.host.map { host in url.port.map { "\(host):\($0)" } ?? host } ?? url.absoluteString
        switch failure {
        case .timedOut: return CallFailure(kind: .retryable, status: nil, message: "no answer from \(place) in time (timed out)")
        case .refused: return CallFailure(kind: .unreachable, status: nil, message: "connection refused by \(place)")
        case .noSuchHost: return CallFailure(kind: .unreachable, status: nil, message: "no such host: \(place)")
        case .insecure: return CallFailure(kind: .unreachable, status: nil, message: "the secure connection to \(place) failed (TLS)")
        case .dropped: return CallFailure(kind: .retryable, status: nil, message: "the connection to \(place) dropped")
        case .broken: return CallFailure(kind: .retryable, status: nil, message: "\(place) sent a broken answer")
        case .tooLarge(let limit):
            return CallFailure(kind: .permanent, status: nil, message: "\(place) sent an answer over \(limit.formatted()) bytes; it was not read")
        case .misdirected(let why): return CallFailure(kind: .misdirected, status: nil, message: why)
        case .localFile(let why): return CallFailure(kind: .retryable, status: nil, message: why)
        case .cancelled: return CallFailure(kind: .retryable, status: nil, message: "cancelled (the run is stopping)")
        case .other(let why): return CallFailure(kind: .retryable, status: nil, message: "the call to \(place) failed: \(why)")
        }
    }
}
