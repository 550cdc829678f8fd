import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where a URL points: its scheme, host and port (the default port of the scheme when none is written).
/// Credentials go to one origin only, the provider's.
public struct Origin: Hashable, Sendable, CustomStringConvertible {
    public let scheme: String
    public let host: String
    public let port: Int

    public init?(_ url: URL) {
        guard let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased(), !host.isEmpty else { return nil }
        guard let port = url.port ?? (scheme == "https" ? 443 : scheme == "http" ? 80 : nil) else { return nil }
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    public var description: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return "\(scheme)://\(bracketed):\(port)"
    }
}

/// The one place a request to a provider is built and its destination checked, for live calls, uploads,
/// downloads and results URLs alike. The provider's origin (the scheme, host and port of its `base_url`) is the
/// only place its key goes: a URL on any other origin is refused before anything is sent, and a redirect is
/// followed only within the origin (a download's redirect elsewhere is followed without credentials; every
/// other redirect elsewhere is refused). Provider text that echoes the key is masked before it is kept or shown.
struct ProviderEndpoint: Sendable {
    let provider: Provider
    let origin: Origin
    /// How the key is sent: a bearer token (`openai`) or `x-api-key` with `anthropic-version` (`anthropic`).
    let dialect: Provider.Dialect
    private let base: URL
    private let key: String

    /// The endpoint of `provider`'s live API, or of its batch API (`dialect` its batch dialect).
    init(provider: Provider, dialect: Provider.Dialect? = nil, environment: [String: String]) throws(CallFailure) {
        let text = provider.baseURL.hasSuffix("/") ? String(provider.baseURL.dropLast()) : provider.baseURL
        guard let base = URL(string: text), let origin = Origin(base), ["http", "https"].contains(origin.scheme) else {
            throw CallFailure(
                kind: .misdirected, status: nil,
                message: "provider \(provider.name) has an invalid base_url (\(String(provider.baseURL.prefix(100)))); give an http or https URL in providers.json")
        }
        self.provider = provider
        self.dialect = dialect ?? provider.dialect
        self.origin = origin
        self.base = base
        key = environment[provider.apiKeyEnvironmentVariable] ?? ""
    }

    /// The base URL followed by `path` (which starts with `/`).
    func url(_ path: String) throws(CallFailure) -> URL {
        guard let url = URL(string: base.absoluteString + path) else {
            throw CallFailure(kind: .permanent, status: nil, message: "cannot form a URL for \(provider.name) from the path \(String(path.prefix(100)))")
        }
        return url
    }

    /// A URL the provider handed back (a results URL), resolved against its base when relative. One on another
    /// origin is refused: nothing is sent there, with or without the key.
    func resolve(_ reference: String) throws(CallFailure) -> URL {
        let resolved: URL?
        if reference.hasPrefix("/") {
            resolved = URL(string: origin.description + reference)
        } else {
            resolved = URL(string: reference, relativeTo: base.appendingPathComponent(""))?.absoluteURL
        }
        guard let url = resolved, Origin(url) != nil else {
            throw CallFailure(kind: .permanent, status: nil, message: "\(provider.name) gave a URL Purser cannot read: \(String(reference.prefix(200)))")
        }
        try check(url)
        return url
    }

    /// A request to `url` with the provider's credentials, or a refusal when `url` is not on the provider's origin.
    func request(_ url: URL, method: String, timeoutSeconds: Double? = nil) throws(CallFailure) -> URLRequest {
        try check(url)
        var request = timeoutSeconds.map { URLRequest(url: url, timeoutInterval: $0) } ?? URLRequest(url: url)
        request.httpMethod = method
        switch dialect {
        case .openai:
            request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
        case .anthropic:
            request.setValue(key, forHTTPHeaderField: "x-api-key")
            request.setValue(HTTPProviderClient.anthropicVersion, forHTTPHeaderField: "anthropic-version")
        }
        return request
    }

    private func check(_ url: URL) throws(CallFailure) {
        guard let target = Origin(url), target == origin else {
            throw CallFailure(
                kind: .misdirected, status: nil,
                message: "\(provider.name) pointed Purser at \(Origin(url)?.description ?? String(url.absoluteString.prefix(100))), which is not its origin "
                    + "\(origin); its key goes only to \(origin), so nothing was sent there")
        }
    }

    /// The failure a redirect the session refused to follow stands for (a 3xx answered as final), naming where it
    /// pointed; nil for any other status.
    func refusedRedirect(status: Int, location: String?, method: String, url: URL) -> CallFailure? {
        guard (300..<400).contains(status) else { return nil }
        let target = location.flatMap { URL(string: $0, relativeTo: url)?.absoluteURL }.flatMap(Origin.init)
        let place = target?.description ?? "an unreadable location"
        let sameOrigin = target == origin
        return CallFailure(
            kind: sameOrigin ? .retryable : .misdirected, status: status,
            message: sameOrigin
                ? "\(provider.name) redirected \(method) \(url.path) again and again within its origin"
                : "\(provider.name) redirected \(method) \(url.path) to \(place), another origin; its key goes only to \(origin), so the redirect was not followed (check base_url in providers.json)")
    }

    /// `text` with every occurrence of the key replaced. Keys under 8 characters are not looked for (they would
    /// match ordinary words); real keys are far longer.
    func mask(_ text: String) -> String {
        guard key.utf8.count >= 8, text.contains(key) else { return text }
        return text.replacingOccurrences(of: key, with: "[key masked]")
    }

    func mask(_ failure: CallFailure) -> CallFailure {
        var masked = failure
        masked.message = mask(failure.message)
        return masked
    }
}

/// A session delegate that follows a redirect only within the origin of the request it started from; a
/// download's redirect to another origin is followed with its credentials taken off. Every other redirect
/// elsewhere is refused, and the 3xx answer reaches the caller, which reports it (`refusedRedirect`).
final class SameOriginRedirects: NSObject, URLSessionTaskDelegate, Sendable {
    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest,
        completionHandler: @escaping @Sendable (URLRequest?) -> Void
    ) {
        completionHandler(SameOriginRedirects.follow(from: task.originalRequest?.url, to: request, isDownload: task is URLSessionDownloadTask))
    }

    /// What to send for a redirect from `start` to `request`: the request itself within the origin, the request
    /// without credentials for a download elsewhere, or nil (not followed).
    static func follow(from start: URL?, to request: URLRequest, isDownload: Bool) -> URLRequest? {
        guard let start, let from = Origin(start), let target = request.url, let to = Origin(target) else { return nil }
        if from == to { return request }
        guard isDownload, ["http", "https"].contains(to.scheme), !(from.scheme == "https" && to.scheme == "http") else { return nil }
        var bare = request
        for header in ["Authorization", "x-api-key", "anthropic-version", "Cookie"] { bare.setValue(nil, forHTTPHeaderField: header) }
        return bare
    }
}
