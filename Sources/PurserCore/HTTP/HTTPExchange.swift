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
///
/// Kept as the lines came (each name and value, trimmed), and read when asked for: an answer carries from a few headers
/// to a few dozen and a caller asks for two or three, so one buffer a response costs less than a string for each name and
/// value and a dictionary holding them, made on the engine's thread for every call.
public struct HTTPHeaders: Sendable {
    /// `name:value` lines, each ended by a line feed (which `add` keeps out of every name and value).
    private var lines: [UInt8] = []

    public init() {}

    public subscript(name: String) -> String? {
        var found: String?
        var start = lines.startIndex
        while start < lines.endIndex {
            let end = lines[start...].firstIndex(of: 0x0A) ?? lines.endIndex
            if let colon = lines[start..<end].firstIndex(of: UInt8(ascii: ":")), HTTPHeaders.sameName(lines[start..<colon], name) {
                let value = String(decoding: lines[(colon + 1)..<end], as: UTF8.self)
                found = found.map { $0 + ", " + value } ?? value
            }
            start = end + 1
        }
        return found
    }

    /// Adds a header line's name and value, trimmed; a line feed in either (which HTTP does not allow) ends what is kept.
    mutating func add(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        // Room for the dozen or so headers an answer carries, made once rather than grown header by header.
        if lines.isEmpty { lines.reserveCapacity(512) }
        append(name)
        lines.append(UInt8(ascii: ":"))
        append(value)
        lines.append(0x0A)
    }

    private mutating func append(_ bytes: UnsafeRawBufferPointer) {
        lines.append(contentsOf: bytes.firstIndex(of: 0x0A).map { UnsafeRawBufferPointer(rebasing: bytes[..<$0]) } ?? bytes)
    }

    private static func sameName(_ bytes: ArraySlice<UInt8>, _ name: String) -> Bool {
        var wanted = name.utf8.makeIterator()
        for byte in bytes {
            guard let other = wanted.next(), byte.asciiLowercased == other.asciiLowercased else { return false }
        }
        return wanted.next() == nil
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
