import Foundation
import Synchronization

/// A small HTTP/1.1 server on 127.0.0.1 for the engine's tests: a thread per connection, each request answered as
/// `reply` says, connections kept alive. It ends after `maxSeconds` or when the test calls `stop()`.
final class LocalHTTPServer: @unchecked Sendable {
    struct Received: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: [UInt8]
    }

    enum Reply: Sendable {
        case answer(status: Int, headers: [String] = [], body: [UInt8] = [])
        /// Reads the request and never answers.
        case silence
        /// Reads the request and closes the connection without a word, as a server closing a kept connection does.
        case hangUp
        /// Answers, then closes the connection a moment later, as a server closing an idle connection does.
        case answerThenClose(status: Int, body: [UInt8])
        /// Sends the status line, headers and `sent` of a body of `length`, then nothing more.
        case stall(length: Int, sent: [UInt8])
    }

    let port: Int
    private let listener: Int32
    private let state = Mutex<(requests: [Received], connections: Int, closed: Int, open: [Int32], stopped: Bool)>(([], 0, 0, [], false))
    private let reply: @Sendable (Received) -> Reply

    init(host: String = "127.0.0.1", maxSeconds: Double = 60, reply: @escaping @Sendable (Received) -> Reply) throws {
        self.reply = reply
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr(host)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        guard bound == 0, listen(listener, 512) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EADDRNOTAVAIL) }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptLoop() }.start()
        let deadline = DispatchTime.now() + maxSeconds
        DispatchQueue.global().asyncAfter(deadline: deadline) { [weak self] in self?.stop() }
    }

    deinit { stop() }

    var requests: [Received] { state.withLock { $0.requests } }
    var connections: Int { state.withLock { $0.connections } }
    /// Connections whose client closed them.
    var closedByClient: Int { state.withLock { $0.closed } }

    /// A port that was free a moment ago, for another server (openssl, nginx) to listen on.
    static func freePort() async throws -> Int {
        let probe = try LocalHTTPServer { _ in .silence }
        let port = probe.port
        probe.stop()
        try await Task.sleep(for: .milliseconds(100))
        return port
    }

    func stop() {
        let open = state.withLock { state -> [Int32] in
            guard !state.stopped else { return [] }
            state.stopped = true
            return state.open + [listener]
        }
        for descriptor in open { shutdown(descriptor, Int32(SHUT_RDWR)) }
    }

    private func acceptLoop() {
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else {
                if errno == EINTR { continue }
                return
            }
            let stopped = state.withLock { state -> Bool in
                if !state.stopped { state.connections += 1; state.open.append(connection) }
                return state.stopped
            }
            if stopped { close(connection); return }
            Thread { [self] in serve(connection) }.start()
        }
    }

    private func serve(_ connection: Int32) {
        defer {
            state.withLock { $0.open.removeAll { $0 == connection } }
            close(connection)
        }
        var buffer: [UInt8] = []
        while let request = readRequest(connection, &buffer) {
            state.withLock { $0.requests.append(request) }
            switch reply(request) {
            case .answer(let status, let headers, let body):
                let head = "HTTP/1.1 \(status) Answer\r\nContent-Length: \(body.count)\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n"
                guard send(connection, Array(head.utf8) + body) else { return }
            case .silence:
                waitForClose(connection)
                return
            case .hangUp:
                return
            case .answerThenClose(let status, let body):
                _ = send(connection, Array("HTTP/1.1 \(status) Answer\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
                Thread.sleep(forTimeInterval: 0.2)
                return
            case .stall(let length, let sent):
                guard send(connection, Array("HTTP/1.1 200 OK\r\nContent-Length: \(length)\r\n\r\n".utf8) + sent) else { return }
                waitForClose(connection)
                return
            }
        }
    }

    private func waitForClose(_ connection: Int32) {
        var byte: UInt8 = 0
        while recv(connection, &byte, 1, 0) > 0 {}
        state.withLock { $0.closed += 1 }
    }

    private func send(_ connection: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }

    /// The next request on the connection, or nil when the client closed it.
    private func readRequest(_ connection: Int32, _ buffer: inout [UInt8]) -> Received? {
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        var chunk = [UInt8](repeating: 0, count: 65_536)
        func fill() -> Bool {
            let count = recv(connection, &chunk, chunk.count, 0)
            guard count > 0 else {
                state.withLock { $0.closed += 1 }
                return false
            }
            buffer.append(contentsOf: chunk[0..<count])
            return true
        }
        var headEnd: Int?
        while headEnd == nil {
            headEnd = buffer.count >= 4 ? (0...(buffer.count - 4)).first { Array(buffer[$0..<($0 + 4)]) == end } : nil
            if headEnd == nil, !fill() { return nil }
        }
        let lines = String(decoding: buffer[0..<headEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        let words = lines[0].split(separator: " ")
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        buffer.removeFirst(headEnd! + 4)
        while buffer.count < length { if !fill() { return nil } }
        let body = Array(buffer[0..<length])
        buffer.removeFirst(length)
        return Received(method: words.first.map(String.init) ?? "", path: words.dropFirst().first.map(String.init) ?? "", headers: headers, body: body)
    }
}
