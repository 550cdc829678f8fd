/// One call to make: a body already in the provider's dialect, and where to send it.
public struct ProviderCall: Sendable {
    public var requestID: Int64
    public var customID: String
    public var model: Model
    public var provider: Provider
    public var mode: DispatchMode
    /// The JSON body to POST, in `provider.dialect`.
    public var body: JSONObject
    public var timeoutSeconds: Double

    package init(
        requestID: Int64, customID: String, model: Model, provider: Provider, mode: DispatchMode, body: JSONObject,
        timeoutSeconds: Double
    ) {
        self.requestID = requestID
        self.customID = customID
        self.model = model
        self.provider = provider
        self.mode = mode
        self.body = body
        self.timeoutSeconds = timeoutSeconds
    }
}

/// Tokens as the provider reported them, normalised: `inputTokens` excludes cached and cache-write tokens.
public struct Usage: Sendable, Hashable {
    public var inputTokens: Int
    public var cachedInputTokens: Int
    public var cacheWriteTokens: Int
    public var outputTokens: Int

    public init(inputTokens: Int, cachedInputTokens: Int = 0, cacheWriteTokens: Int = 0, outputTokens: Int) {
        self.inputTokens = inputTokens
        self.cachedInputTokens = cachedInputTokens
        self.cacheWriteTokens = cacheWriteTokens
        self.outputTokens = outputTokens
    }

    /// Every input token the provider counted: uncached, cached and cache writes.
    public var allInputTokens: Int { inputTokens + cachedInputTokens + cacheWriteTokens }
}

/// A successful answer.
public struct ProviderResponse: Sendable {
    public var statusCode: Int
    public var providerRequestID: String?
    /// The response body as the provider sent it.
    public var body: String
    public var usage: Usage
    public var simulated: Bool
}

/// Why a call did not produce an answer, sorted by what Purser should do next.
public struct CallFailure: Error, Sendable, Hashable {
    public enum Kind: String, Sendable {
        /// 408, 409, 429, 5xx, 529, timeouts, dropped connections, malformed bodies: try again later.
        case retryable
        /// The endpoint could not be reached at all (connection refused, no such host, no network, TLS failed):
        /// try again later, and if it stays so, the provider is unreachable.
        case unreachable
        /// This model cannot serve this request (context too long, unsupported parameter): try another model.
        case modelRefused = "model_refused"
        /// 401/403: the provider is unusable for this run; its requests stay queued.
        case auth
        /// Out of quota or over the account's spend limit: pause the provider like an auth error.
        case quota
        /// Any other 4xx: the request itself is wrong; it fails.
        case permanent
        /// The endpoint sent Purser to another origin (a redirect, a results URL elsewhere) or its base URL is
        /// unusable: nothing with the key was sent there, and the provider is not used for the rest of the run.
        case misdirected
    }

    public var kind: Kind
    public var status: Int?
    public var message: String
    /// How long the provider asked us to wait (Retry-After, retry-after-ms, rate-limit reset headers).
    public var retryAfterMilliseconds: Int64?

    public init(kind: Kind, status: Int?, message: String, retryAfterMilliseconds: Int64? = nil) {
        self.kind = kind
        self.status = status
        self.message = message
        self.retryAfterMilliseconds = retryAfterMilliseconds
    }
}

extension CallFailure {
    /// Failures after which the provider is not used for the rest of the run (its requests stay queued).
    var disablesProvider: Bool { kind == .auth || kind == .quota || kind == .misdirected }
}

/// Something that answers calls: an HTTP client per dialect, or the simulator.
public protocol ModelCaller: Sendable {
    func call(_ call: ProviderCall) async -> Result<ProviderResponse, CallFailure>
}
