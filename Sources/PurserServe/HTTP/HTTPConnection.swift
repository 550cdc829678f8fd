import Foundation

/// One accepted socket: a buffered reader of requests, and the writer of their answers. Used by one thread at a time.
final class HTTPConnection: @unchecked Sendable {
    let descriptor: Int32
    let limits: HTTPLimits
    private var buffer: [UInt8] = []
    private var start = 0
    private var chunk = [UInt8](repeating: 0, count: 65_536)

    init(descriptor: Int32, limits: HTTPLimits) {
        self.descriptor = descriptor
        self.limits = limits
        var timeout = timeval(tv_sec: limits.readSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var yes: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
    }

    private var buffered: Int { buffer.count - start }

    /// Reads more bytes into the buffer; false at the end of the stream. A read that waits past the read timeout throws 408.
    private func fill() throws -> Bool {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 65_536 {
            buffer.removeFirst(start)
            start = 0
        }
        while true {
            let count = read(descriptor, &chunk, chunk.count)
            if count > 0 {
                buffer.append(contentsOf: chunk[0..<count])
                return true
            }
            if count == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw HTTPFailure(408, "the client sent nothing for \(limits.readSeconds) s") }
            return false
        }
    }

    /// Waits until a request starts arriving: true when bytes are there, false when the connection closed, sat idle
    /// past the idle timeout, or `stopping` turned true meanwhile.
    func awaitRequest(stopping: () -> Bool) -> Bool {
        if buffered > 0 { return true }
        var waited = 0
        while waited < limits.idleSeconds * 1000 {
            if stopping() { return false }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 250)
            if ready > 0 {
                // A read that fails here is a client gone or silent: the connection just ends.
                do { return try fill() } catch { return false }
            }
            if ready < 0 && errno != EINTR { return false }
            waited += 250
        }
        return false
    }

    /// The next request's head, within the header limits; nil when the client closed the connection first.
    func readHead() throws -> HTTPRequest? {
        let began = DispatchTime.now()
        var searchFrom = start
        while true {
            if let end = headEnd(from: searchFrom) {
                guard end - start <= limits.headerBytes else { throw HTTPFailure(431, "the request line and headers pass \(limits.headerBytes) bytes") }
                let head = String(decoding: buffer[start..<end], as: UTF8.self)
                start = end + 4
                return try HTTPConnection.parse(head)
            }
            searchFrom = max(start, buffer.count - 3)
            if buffered > limits.headerBytes { throw HTTPFailure(431, "the request line and headers pass \(limits.headerBytes) bytes") }
            if DispatchTime.now().uptimeNanoseconds - began.uptimeNanoseconds > UInt64(limits.headSeconds) * 1_000_000_000 {
                throw HTTPFailure(408, "the request's headers took longer than \(limits.headSeconds) s")
            }
            guard try fill() else {
                if buffered == 0 { return nil }
                throw HTTPFailure.closed
            }
        }
    }

    private func headEnd(from index: Int) -> Int? {
        var index = index
        while index + 3 < buffer.count {
            if buffer[index] == 13 && buffer[index + 1] == 10 && buffer[index + 2] == 13 && buffer[index + 3] == 10 { return index }
            index += 1
        }
        return nil
    }

    static func parse(_ head: String) throws -> HTTPRequest {
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard !lines.isEmpty else { throw HTTPFailure(400, "an empty request line") }
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1.") else { throw HTTPFailure(400, "the request line is not 'METHOD /path HTTP/1.1'") }
        let target = String(requestLine[1])
        guard target.hasPrefix("/") else { throw HTTPFailure(400, "the request target must be a path starting with '/'") }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { throw HTTPFailure(400, "a header line has no ':'") }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = headers[name].map { $0 + ", " + value } ?? value
        }
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard let path = String(parts[0]).removingPercentEncoding else { throw HTTPFailure(400, "the path's percent-encoding is broken") }
        var query: [String: String] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let keyValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let decode = { (text: Substring) in String(text).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(text) }
                query[decode(keyValue[0])] = keyValue.count > 1 ? decode(keyValue[1]) : ""
            }
        }
        return HTTPRequest(method: String(requestLine[0]), path: path, query: query, headers: headers, id: HTTPConnection.newRequestID())
    }

    static func newRequestID() -> String {
        var generator = SystemRandomNumberGenerator()
        return "req_" + String(UInt64.random(in: 0...UInt64.max, using: &generator), radix: 16) + String(UInt32.random(in: 0...UInt32.max, using: &generator), radix: 16)
    }

    // MARK: - Bodies

    /// Copies up to `count` bytes of what is buffered or arrives next into `into`; 0 at the end of the stream.
    func readSome(into target: inout [UInt8], upTo count: Int) throws -> Int {
        if buffered == 0 { guard try fill() else { return 0 } }
        let take = min(count, buffered)
        target.append(contentsOf: buffer[start..<start + take])
        start += take
        return take
    }

    /// The next CRLF-ended line (a chunk size line), without its CRLF.
    func readLine(limit: Int) throws -> String {
        while true {
            var index = start
            while index + 1 < buffer.count {
                if buffer[index] == 13 && buffer[index + 1] == 10 {
                    let line = String(decoding: buffer[start..<index], as: UTF8.self)
                    start = index + 2
                    return line
                }
                index += 1
            }
            if buffered > limit { throw HTTPFailure(400, "a chunk size line is too long") }
            guard try fill() else { throw HTTPFailure.closed }
        }
    }

    // MARK: - Writing

    func write(_ bytes: [UInt8]) throws {
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw HTTPFailure.closed }
            written += count
        }
    }

    /// Sends the answer; `close` adds `Connection: close`.
    func send(_ response: HTTPResponse, requestID: String, close: Bool, headOnly: Bool = false) throws {
        var head = "HTTP/1.1 \(response.status) \(HTTPResponse.reason(response.status))\r\n"
        for (name, value) in response.headers { head += "\(name): \(value)\r\n" }
        head += "x-request-id: \(requestID)\r\nrequest-id: \(requestID)\r\n"
        if close { head += "Connection: close\r\n" }
        switch response.body {
        case .bytes(let bytes):
            head += "Content-Length: \(bytes.count)\r\n\r\n"
            try write(Array(head.utf8) + (headOnly ? [] : bytes))
        case .file(let path, let length):
            head += "Content-Length: \(length)\r\n\r\n"
            try write(Array(head.utf8))
            guard !headOnly else { return }
            let file = open(path, O_RDONLY)
            guard file >= 0 else { throw HTTPFailure.closed }
            defer { Foundation.close(file) }
            var left = length
            var piece = [UInt8](repeating: 0, count: 1 << 20)
            while left > 0 {
                let count = read(file, &piece, Int(min(left, Int64(piece.count))))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { throw HTTPFailure.closed }
                try write(Array(piece[0..<count]))
                left -= Int64(count)
            }
        }
    }
}

/// A request's body, read as it arrives (by Content-Length or chunked), never past `limit` bytes.
public final class HTTPBody: @unchecked Sendable {
    private let connection: HTTPConnection
    private var remaining: Int64?
    private let chunked: Bool
    private var chunkLeft: Int64 = 0
    private var ended = false
    public private(set) var received: Int64 = 0
    public let limit: Int64

    init(connection: HTTPConnection, request: HTTPRequest, limit: Int64) throws {
        self.connection = connection
        self.limit = limit
        chunked = request.headers["transfer-encoding"]?.lowercased().contains("chunked") == true
        if !chunked, let text = request.headers["content-length"] {
            guard let length = Int64(text), length >= 0 else { throw HTTPFailure(400, "Content-Length '\(text)' is not a length") }
            guard length <= limit else { throw HTTPFailure(413, "the body is \(length) bytes; at most \(limit) are accepted here") }
            remaining = length
        } else if !chunked {
            remaining = 0
        }
        ended = remaining == 0
    }

    /// Appends up to `count` bytes of the body to `target`; 0 at its end.
    public func read(into target: inout [UInt8], upTo count: Int) throws -> Int {
        guard !ended else { return 0 }
        var want = count
        if chunked {
            if chunkLeft == 0 {
                let line = try connection.readLine(limit: 1024)
                guard let size = Int64(line.split(separator: ";").first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? "", radix: 16), size >= 0 else {
                    throw HTTPFailure(400, "a chunk size '\(line.prefix(20))' is not hexadecimal")
                }
                if size == 0 {
                    // Trailers, if any, end with an empty line.
                    while !(try connection.readLine(limit: 8192)).isEmpty {}
                    ended = true
                    return 0
                }
                chunkLeft = size
            }
            want = Int(min(Int64(want), chunkLeft))
        } else if let remaining {
            want = Int(min(Int64(want), remaining))
        }
        let got = try connection.readSome(into: &target, upTo: want)
        guard got > 0 else { throw HTTPFailure.closed }
        received += Int64(got)
        if received > limit { throw HTTPFailure(413, "the body passes \(limit) bytes, the most accepted here") }
        if chunked {
            chunkLeft -= Int64(got)
            if chunkLeft == 0 { _ = try connection.readLine(limit: 2) }
        } else if let left = remaining {
            remaining = left - Int64(got)
            if remaining == 0 { ended = true }
        }
        return got
    }

    /// The whole body, for the small JSON bodies of creates and budgets.
    public func readAll() throws -> [UInt8] {
        var bytes: [UInt8] = []
        while try read(into: &bytes, upTo: 65_536) > 0 {}
        return bytes
    }

    var isFinished: Bool { ended }
}
