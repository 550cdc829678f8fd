import Foundation

/// One HTTP request as Purser's engine sends it: nothing is followed, cached or stored but what is asked here.
public struct HTTPRequest: Sendable {
    public enum Body: Sendable {
        case none
        case bytes([UInt8])
        /// A file on disk, read as it is sent (batch inputs of any size).
        case file(path: String)
    }

    /// Where the answer's body goes: into memory up to a size, or into a file (created or emptied) up to a size.
    public enum Sink: Sendable {
        case memory(limit: Int)
        case file(path: String, limit: Int64)
    }

    public var method: String
    public var url: URL
    /// Names and values, sent in this order; a name given twice is sent twice.
    public var headers: [(name: String, value: String)]
    public var body: Body
    public var sink: Sink
    /// The whole exchange, from the start of connecting to the last byte, in seconds.
    public var timeoutSeconds: Double
    /// How long the exchange may go without a byte in either direction before it is ended; nil when only the total
    /// timeout counts (a model thinks for a long time before its first byte).
    public var stalledSeconds: Double?
    /// The origin the URL must be on as libcurl itself reads it, or the request is refused unsent.
    public var origin: Origin?
    /// A PEM file of the certificate authorities that vouch for the server, in place of the system's (a gateway with a
    /// private authority); nil for the system's.
    public var certificateAuthorities: String?

    public init(
        method: String, url: URL, headers: [(name: String, value: String)] = [], body: Body = .none,
        sink: Sink = .memory(limit: HTTPRequest.answerLimit), timeoutSeconds: Double, stalledSeconds: Double? = nil, origin: Origin? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.sink = sink
        self.timeoutSeconds = timeoutSeconds
        self.stalledSeconds = stalledSeconds
        self.origin = origin
    }

    /// The most an answer held in memory may be: 64 MiB, far above any model's answer or batch API object.
    public static let answerLimit = 64 << 20

    /// Sets header `name` to `value` (nil removes it), replacing any value it had.
    public mutating func setHeader(_ name: String, _ value: String?) {
        headers.removeAll { $0.name.equalsIgnoringASCIICase(name) }
        if let value { headers.append((name, value)) }
    }
}

/// The answer's status line and headers, and its body when it was kept in memory.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    /// Empty when the body went to a file.
    public var body: [UInt8]
}

/// Response headers by name in any case; a name sent more than once has its values joined with ", ".
public struct HTTPHeaders: Sendable {
    private var values: [String: String] = [:]

    public init() {}

    public subscript(name: String) -> String? { values[name.lowercased()] }

    mutating func add(name: String, value: String) {
        let key = name.lowercased()
        // Room for the dozen or so headers an answer carries, made once rather than grown header by header.
        if values.isEmpty { values.reserveCapacity(16) }
        if let earlier = values[key] { values[key] = earlier + ", " + value } else { values[key] = value }
    }
}

/// Why an exchange ended without an answer, in terms the callers classify (`NetworkTrouble`).
public enum ExchangeFailure: Error, Sendable, Equatable {
    /// Nobody accepted the connection.
    case refused
    case noSuchHost
    /// No answer within the request's time (connecting, in total, or while stalled).
    case timedOut
    /// TLS could not be set up or the server's certificate did not verify.
    case insecure
    /// The connection broke before the whole answer came.
    case dropped
    /// The server answered with something that is not HTTP.
    case broken
    /// The answer's body or headers passed the request's limit (in bytes).
    case tooLarge(limit: Int64)
    /// libcurl read the URL as pointing elsewhere than the request's origin.
    case misdirected(String)
    /// The body file could not be read or the answer's file could not be written.
    case localFile(String)
    /// The calling task was cancelled.
    case cancelled
    /// Any other failure, in libcurl's words.
    case other(String)
}
