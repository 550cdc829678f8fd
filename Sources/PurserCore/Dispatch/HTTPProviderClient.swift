import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Calls real endpoints over HTTP: `POST {base}/chat/completions` with a bearer key (openai dialect) or
/// `POST {base}/v1/messages` with `x-api-key` and `anthropic-version` (anthropic dialect).
/// Keys are read from the environment at each call and never kept anywhere else.
public final class HTTPProviderClient: ModelCaller {
    private let session: URLSession
    private let environment: [String: String]
    public static let anthropicVersion = "2023-06-01"

    public init(maximumConnectionsPerHost: Int, timeoutSeconds: Double, environment: [String: String]) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = maximumConnectionsPerHost
        configuration.timeoutIntervalForRequest = timeoutSeconds
        configuration.timeoutIntervalForResource = timeoutSeconds
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        session = URLSession(configuration: configuration)
        self.environment = environment
    }

    deinit { session.invalidateAndCancel() }

    public func call(_ call: ProviderCall) async -> Result<ProviderResponse, CallFailure> {
        let base = call.provider.baseURL.hasSuffix("/") ? String(call.provider.baseURL.dropLast()) : call.provider.baseURL
        let path = call.provider.dialect == .openai ? "/chat/completions" : "/v1/messages"
        guard let url = URL(string: base + path) else {
            return .failure(CallFailure(kind: .auth, status: nil, message: "provider \(call.provider.name) has an invalid base_url"))
        }
        var request = URLRequest(url: url, timeoutInterval: call.timeoutSeconds)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(String(call.requestID), forHTTPHeaderField: "X-Purser-Request")
        let key = environment[call.provider.apiKeyEnvironmentVariable] ?? ""
        switch call.provider.dialect {
        case .openai:
            request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
        case .anthropic:
            request.setValue(key, forHTTPHeaderField: "x-api-key")
            request.setValue(HTTPProviderClient.anthropicVersion, forHTTPHeaderField: "anthropic-version")
        }
        request.httpBody = Data(JSONWriter.string(.object(call.body)).utf8)
        let data: Data
        let response: URLResponse
        do {
            let prepared = request
            (data, response) = try await withDeadline(seconds: call.timeoutSeconds) { [session] in try await session.data(for: prepared) }
        } catch is DeadlinePassed {
            return .failure(CallFailure(kind: .retryable, status: nil, message: "timed out after \(call.timeoutSeconds)s"))
        } catch {
            let kind = (error as? URLError)?.code == .timedOut ? "timed out after \(call.timeoutSeconds)s" : "connection failed"
            return .failure(CallFailure(kind: .retryable, status: nil, message: "\(kind): \(error.localizedDescription)"))
        }
        guard let http = response as? HTTPURLResponse else {
            return .failure(CallFailure(kind: .retryable, status: nil, message: "not an HTTP response"))
        }
        let body = String(decoding: data, as: UTF8.self)
        guard (200..<300).contains(http.statusCode) else {
            return .failure(DialectTranslation.classify(
                status: http.statusCode, body: body, retryAfterMilliseconds: RetryAfter.milliseconds(from: http, now: Date())))
        }
        guard let parsed = try? JSONParser.parse(Array(data)), let usage = DialectTranslation.usage(ofResponse: parsed, dialect: call.provider.dialect)
        else {
            return .failure(CallFailure(kind: .retryable, status: http.statusCode, message: "malformed response body (no usage or no answer)"))
        }
        let requestID = http.value(forHTTPHeaderField: "x-request-id") ?? http.value(forHTTPHeaderField: "request-id")
            ?? parsed.objectValue?["id"]?.stringValue
        return .success(ProviderResponse(statusCode: http.statusCode, providerRequestID: requestID, body: body, usage: usage, simulated: false))
    }
}

struct DeadlinePassed: Error {}

/// Runs `work`, cancelling it if it has not finished within `seconds` (URLSession on Linux does not
/// always honour its own timeouts).
func withDeadline<T: Sendable>(seconds: Double, _ work: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await work() }
        group.addTask {
            try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            throw DeadlinePassed()
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// How long a provider asked us to wait, from whichever of its headers it sent.
public enum RetryAfter {
    public static func milliseconds(from response: HTTPURLResponse, now: Date) -> Int64? {
        milliseconds(header: { response.value(forHTTPHeaderField: $0) }, now: now)
    }

    /// `retry-after-ms`, else `retry-after` (seconds or an HTTP date), else the latest rate-limit reset
    /// (OpenAI's `x-ratelimit-reset-*` durations such as `6m0s`, Anthropic's `anthropic-ratelimit-*-reset` times).
    public static func milliseconds(header: (String) -> String?, now: Date) -> Int64? {
        if let text = header("retry-after-ms"), let value = Double(text) { return Int64(value.rounded(.up)) }
        if let text = header("retry-after") {
            if let seconds = Double(text) { return Int64((seconds * 1000).rounded(.up)) }
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
            if let date = formatter.date(from: text) { return max(0, Int64(date.timeIntervalSince(now) * 1000)) }
        }
        var latest: Int64?
        for name in ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"] {
            if let text = header(name), let value = goDuration(text) { latest = max(latest ?? 0, value) }
        }
        for name in ["anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-input-tokens-reset",
            "anthropic-ratelimit-output-tokens-reset"]
        {
            if let text = header(name), let date = RoutingText.rfc3339Date(text) {
                latest = max(latest ?? 0, max(0, Int64(date.timeIntervalSince(now) * 1000)))
            }
        }
        return latest
    }

    /// Durations as OpenAI writes them: `20ms`, `1s`, `6m0s`, `1h2m3.5s`.
    static func goDuration(_ text: String) -> Int64? {
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
        guard sawUnit, number.isEmpty else { return nil }
        return Int64(total.rounded(.up))
    }
}
