import Foundation
import PurserCore

/// nginx answering every chat completion with a fixed one, the same server for the plain client and for Purser, and
/// one whose own cost per call is small and steady (about 0.014 ms): over plain HTTP/1.1 at once (with a length, which
/// the plain client reads), or over HTTP/2 with TLS, as the providers serve, after a wait (its echo module). The
/// certificate is self-signed for 127.0.0.1 and handed to the run as the provider's `ca_file`; the folder holding it all
/// goes with `stop`.
struct NginxServer {
    enum Kind { case http1, http2OverTLS }

    let port: Int
    let folder: String
    let kind: Kind
    var certificate: String { folder + "/cert.pem" }
    private let process: Process

    /// `latencySeconds` above 0 only over HTTP/2.
    init(_ kind: Kind, latencySeconds: Int = 0, work: String) throws {
        guard let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }),
            let openssl = ["/usr/bin/openssl", "/bin/openssl"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else { throw Problem("the benchmark's server is nginx, with openssl for its certificate: apt-get install -y nginx-light libnginx-mod-http-echo openssl") }
        let echo = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
        guard FileManager.default.fileExists(atPath: echo) else { throw Problem("the benchmark's server needs nginx's echo module: apt-get install -y libnginx-mod-http-echo") }
        self.kind = kind
        folder = work + "/nginx-\(kind)"
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        if kind == .http2OverTLS {
            let made = try NginxServer.start(openssl, [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ], in: folder)
            made.waitUntilExit()
            guard made.terminationStatus == 0 else { throw Problem("openssl could not make a certificate in \(folder)") }
        }
        port = try NginxServer.freePort()
        // One worker (the other core is the client's); streams up to nginx's default 128 a connection; a connection
        // kept for as many calls as a row makes.
        let answer = #"{"id":"chatcmpl-nginx","object":"chat.completion","created":1,"model":"small","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}"#
        let listen = switch kind {
        case .http1:
            "listen 127.0.0.1:\(port); location / { default_type application/json; return 200 '\(answer)'; }"
        case .http2OverTLS:
            "listen 127.0.0.1:\(port) ssl http2; ssl_certificate \(folder)/cert.pem; ssl_certificate_key \(folder)/key.pem; "
                + "location / { default_type application/json; echo_read_request_body; echo_sleep \(latencySeconds); echo '\(answer)'; }"
        }
        try """
            load_module \(echo);
            worker_processes 1;
            worker_rlimit_nofile 8192;
            pid \(folder)/nginx.pid;
            error_log \(folder)/error.log warn;
            daemon off;
            events { worker_connections 4096; }
            http {
                log_format ends '$msec $request_time';
                access_log \(folder)/access.log ends;
                client_body_temp_path \(folder)/body;
                keepalive_requests 1000000;
                keepalive_timeout 120s;
                server {
                    \(listen)
                }
            }
            """.write(toFile: folder + "/nginx.conf", atomically: true, encoding: .utf8)
        process = try NginxServer.start(nginx, ["-c", folder + "/nginx.conf", "-e", folder + "/error.log"], in: folder)
        // Listening once a connection is taken.
        for _ in 0..<500 {
            if NginxServer.accepts(port) { return }
            Thread.sleep(forTimeInterval: 0.01)
        }
        stop()
        throw Problem("nginx did not start on port \(port); see \(folder)/error.log")
    }

    /// Writes a pricing folder whose one provider is this server, over TLS its certificate vouched for by `ca_file`.
    func writePricing(pricing: String, to directory: String) throws {
        try DispatchBench.writePricing(port: port, pricing: pricing, to: directory)
        guard kind == .http2OverTLS else { return }
        try """
            {"providers": [{"name": "fake", "dialect": "openai", "base_url": "https://127.0.0.1:\(port)/v1", "api_key_env": "FAKE_KEY", "batch_api": false, "ca_file": "\(certificate)"}]}
            """.write(toFile: directory + "/providers.json", atomically: true, encoding: .utf8)
    }

    /// The most calls nginx was answering at one moment, from its log: each line is when a call ended and how long it
    /// took, in seconds to the millisecond.
    func peakInFlight() throws -> Int {
        let log = try String(contentsOfFile: folder + "/access.log", encoding: .utf8)
        var changes: [(at: Int, by: Int)] = []
        for line in log.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, let ended = Double(fields[0]), let took = Double(fields[1]) else { continue }
            let end = Int(ended * 1000)
            changes.append((end - Int(took * 1000), 1))
            changes.append((end, -1))
        }
        // Ends before starts at the same millisecond: a call that ended as another began did not overlap it.
        changes.sort { $0.at != $1.at ? $0.at < $1.at : $0.by < $1.by }
        var current = 0, peak = 0
        for change in changes {
            current += change.by
            peak = max(peak, current)
        }
        return peak
    }

    /// Stops nginx (SIGTERM, its fast shutdown, which takes its worker with it) and removes its folder.
    func stop() {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: folder)
    }

    private static func start(_ binary: String, _ arguments: [String], in folder: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// A port on 127.0.0.1 nobody listens on now.
    private static func freePort() throws -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        guard bound else { throw Problem("no free port on 127.0.0.1 for nginx") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func accepts(_ port: Int) -> Bool {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}
