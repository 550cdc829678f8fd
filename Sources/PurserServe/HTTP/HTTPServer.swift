import Foundation
import PurserCore
import Synchronization

/// What answers the server's requests.
public protocol HTTPHandler: Sendable {
    /// The most body bytes this request may carry (read before its body is).
    func bodyLimit(for request: HTTPRequest) -> Int64
    func respond(to request: HTTPRequest, body: HTTPBody) -> HTTPResponse
    /// The answer to a request the server could not read (too large, too slow, malformed), in the API's own error shape.
    func failed(_ failure: HTTPFailure, request: HTTPRequest?) -> HTTPResponse
}

/// A small HTTP/1.1 server on blocking sockets, one thread per connection, with keep-alive and the limits in
/// `HTTPLimits`. `stop` closes the listener, lets exchanges in flight finish and closes idle connections.
public final class HTTPServer: Sendable {
    let handler: any HTTPHandler
    let limits: HTTPLimits
    private let listener: Int32
    public let host: String
    public let port: UInt16

    private struct State {
        var connections = 0
        var exchanges = 0
        var stopping = false
    }

    private let state = Mutex(State())

    /// Binds `host:port` (port 0: any free one), then makes its handler (so that nothing is opened for a port that
    /// cannot be had) and starts accepting.
    public init(host: String, port: UInt16, limits: HTTPLimits = HTTPLimits(), handler makeHandler: (_ port: UInt16) throws -> any HTTPHandler) throws {
        self.limits = limits
        self.host = host
        signal(SIGPIPE, SIG_IGN)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw Problem("--listen: '\(host)' is not an IPv4 address (such as 127.0.0.1, or 0.0.0.0 for every interface)")
        }
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Problem("cannot open a socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(descriptor, 1024) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw Problem("cannot listen on \(host):\(port): \(reason); pass --listen HOST:PORT with a free port")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
        listener = descriptor
        self.port = UInt16(bigEndian: actual.sin_port)
        do {
            handler = try makeHandler(self.port)
        } catch {
            close(descriptor)
            throw error
        }
        let thread = Thread.named("purser.accept") { [self] in acceptLoop() }
        thread.start()
    }

    /// Connections open and exchanges being answered now.
    public var load: (connections: Int, exchanges: Int) { state.withLock { ($0.connections, $0.exchanges) } }

    private var stopping: Bool { state.withLock { $0.stopping } }

    private func acceptLoop() {
        while true {
            var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 200)
            if stopping { return }
            guard ready > 0 else { continue }
            let connection = accept(listener, nil, nil)
            if connection < 0 { continue }
            let admitted = state.withLock { state -> Bool in
                guard state.connections < limits.connections else { return false }
                state.connections += 1
                return true
            }
            guard admitted else {
                refuse(HTTPConnection(descriptor: connection, limits: limits), HTTPFailure(503, "the server has \(limits.connections) connections open; retry shortly"), request: nil)
                close(connection)
                continue
            }
            let thread = Thread { [self] in
                serve(HTTPConnection(descriptor: connection, limits: limits))
                close(connection)
                state.withLock { $0.connections -= 1 }
            }
            thread.stackSize = 512 << 10
            thread.start()
        }
    }

    private func serve(_ connection: HTTPConnection) {
        while connection.awaitRequest(stopping: { stopping }) {
            state.withLock { $0.exchanges += 1 }
            defer { state.withLock { $0.exchanges -= 1 } }
            let request: HTTPRequest
            do {
                guard let read = try connection.readHead() else { return }
                request = read
            } catch let failure as HTTPFailure {
                if failure.status > 0 { refuse(connection, failure, request: nil) }
                return
            } catch { return }
            let body: HTTPBody
            do {
                body = try HTTPBody(connection: connection, request: request, limit: handler.bodyLimit(for: request))
            } catch let failure as HTTPFailure {
                refuse(connection, failure, request: request)
                return
            } catch { return }
            if request.headers["expect"]?.lowercased() == "100-continue" {
                do { try connection.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) } catch { return }  // the client is gone
            }
            var response = handler.respond(to: request, body: body)
            // A body the handler left unread is not drained (it may be large): the connection closes after the answer.
            let keepAlive = body.isFinished && !stopping && request.headers["connection"]?.lowercased() != "close"
            if !keepAlive && response.header("Connection") == nil { response.headers.append(("Connection", "close")) }
            do {
                try connection.send(response, requestID: request.id, close: false, headOnly: request.method == "HEAD")
            } catch { return }
            if !keepAlive { return }
        }
    }

    /// Answers a request the server could not read with its refusal and ends the exchange. A client gone meanwhile is
    /// not told: nothing was stored for it and nothing is owed.
    private func refuse(_ connection: HTTPConnection, _ failure: HTTPFailure, request: HTTPRequest?) {
        do {
            try connection.send(handler.failed(failure, request: request), requestID: request?.id ?? HTTPConnection.newRequestID(), close: true)
        } catch {}
    }

    /// Stops accepting, lets exchanges in flight finish (for up to `seconds`), and closes idle connections.
    public func stop(waitingUpTo seconds: Double = 30) {
        let first = state.withLock { state -> Bool in
            defer { state.stopping = true }
            return !state.stopping
        }
        if first {
            shutdown(listener, Int32(SHUT_RDWR))
            close(listener)
        }
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, state.withLock({ $0.exchanges > 0 }) { usleep(20_000) }
    }
}
