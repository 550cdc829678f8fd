import Foundation

/// One HTTP/1.1 request as the server read its head: the body is read separately, through `HTTPBody`, so an
/// upload streams to disk instead of into memory.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path, percent-decoded, without the query.
    public var path: String
    public var query: [String: String]
    /// Header names lower-cased; a repeated header's values joined with ", ".
    public var headers: [String: String]
    /// The id every answer to this request carries (`x-request-id`, `request-id`).
    public var id: String

    public func header(_ name: String) -> String? { headers[name] }

    /// The path's segments: `/v1/batches/b1/cancel` is `["v1", "batches", "b1", "cancel"]`.
    public var segments: [String] { path.split(separator: "/", omittingEmptySubsequences: true).map(String.init) }

    /// The cookie named `name`, if the request carries it.
    public func cookie(_ name: String) -> String? {
        guard let header = headers["cookie"] else { return nil }
        for part in header.split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces)
            if pair.hasPrefix(name + "=") { return String(pair.dropFirst(name.count + 1)) }
        }
        return nil
    }
}

/// An answer: its status, headers and body (bytes, or a file streamed from disk).
public struct HTTPResponse: Sendable {
    public enum Body: Sendable {
        case bytes([UInt8])
        /// A file streamed from disk.
        case file(path: String, length: Int64)
    }

    public var status: Int
    public var headers: [(String, String)]
    public var body: Body

    public init(status: Int, headers: [(String, String)] = [], body: Body = .bytes([])) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ status: Int, _ text: String, headers: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: .bytes(Array(text.utf8)))
    }

    public static func text(_ status: Int, _ text: String, type: String = "text/plain; charset=utf-8", headers: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", type)] + headers, body: .bytes(Array(text.utf8)))
    }

    public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 204: "No Content"
        case 303: "See Other"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 411: "Length Required"
        case 413: "Payload Too Large"
        case 415: "Unsupported Media Type"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

/// Why the server stopped reading a request, and how it answers.
public struct HTTPFailure: Error, Sendable {
    public var status: Int
    public var message: String

    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    static let closed = HTTPFailure(0, "the client closed the connection")
}

/// What keeps one client from starving the others.
public struct HTTPLimits: Sendable {
    /// The request line and headers together.
    public var headerBytes = 16_384
    /// Connections open at once; one more is answered 503 and closed.
    public var connections = 512
    /// How long a kept-alive connection may sit between requests.
    public var idleSeconds = 60
    /// How long one read of a request may wait: a client that sends slower than this is dropped.
    public var readSeconds = 30
    /// How long the whole head of a request may take to arrive.
    public var headSeconds = 10

    public init() {}
}
