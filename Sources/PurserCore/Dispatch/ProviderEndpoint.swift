import Foundation

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
    func request(_ url: URL, method: String, timeoutSeconds: Double, stalledSeconds: Double? = nil) throws(CallFailure) -> HTTPRequest {
        try check(url)
        var request = HTTPRequest(method: method, url: url, timeoutSeconds: timeoutSeconds, stalledSeconds: stalledSeconds, origin: origin)
        request.certificateAuthorities = provider.certificateAuthorities
        switch dialect {
        case .openai:
            request.setHeader("Authorization", "Bearer \(key)")
        case .anthropic:
            request.setHeader("x-api-key", key)
            request.setHeader("anthropic-version", HTTPProviderClient.anthropicVersion)
        }
        return request
    }

    /// The headers that carry credentials, taken off a request that leaves the origin.
    static let credentialHeaders = ["Authorization", "x-api-key", "anthropic-version", "Cookie"]

    /// The most redirects followed within the origin before the answer is taken as a redirect loop.
    static let redirectHops = 5

    /// Sends `request` through the engine, following a redirect only within the provider's origin. With
    /// `leavingWithoutCredentials` (a results download) a redirect elsewhere is followed with the credentials taken
    /// off, and they are never put back; https is never left for http. Any other redirect is not followed: its 3xx
    /// answer is returned, and `refusedRedirect` says what it means.
    func exchange(_ first: HTTPRequest, leavingWithoutCredentials: Bool = false) async -> Result<HTTPResponse, ExchangeFailure> {
        var request = first
        var hops = 0
        while true {
            let outcome = await HTTPEngine.shared.send(request)
            guard hops < ProviderEndpoint.redirectHops, case .success(let answer) = outcome, [301, 302, 303, 307, 308].contains(answer.status),
                let location = answer.headers["location"], let target = URL(string: location, relativeTo: request.url)?.absoluteURL,
                let next = Origin(target)
            else { return outcome }
            hops += 1
            if answer.status == 303 {
                request.method = "GET"
                request.body = .none
            }
            if next == origin, request.origin == origin {
                request.url = target
                continue
            }
            let downgrade = request.url.scheme?.lowercased() == "https" && next.scheme == "http"
            guard leavingWithoutCredentials, ["http", "https"].contains(next.scheme), !downgrade else { return outcome }
            for header in ProviderEndpoint.credentialHeaders { request.setHeader(header, nil) }
            // The provider's own authorities vouch for its origin only; elsewhere the system's do.
            request.certificateAuthorities = nil
            request.url = target
            request.origin = next
        }
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
