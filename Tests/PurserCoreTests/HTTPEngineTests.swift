import Foundation
import Synchronization
import Testing
@testable import PurserCore
import TestSupport

/// The HTTP engine against a local server: what it sends and reads, the connections it keeps, and every way an
/// exchange ends short of an answer. One test at a time: the process has one engine, and the connections a test counts
/// are its own only when no other test's calls share the engine's shards.
@Suite(.serialized) struct HTTPEngineTests {
    private func request(_ server: LocalHTTPServer, _ path: String = "/v1/echo", method: String = "GET", timeout: Double = 10) -> HTTPRequest {
        HTTPRequest(method: method, url: URL(string: "http://127.0.0.1:\(server.port)\(path)")!, timeoutSeconds: timeout)
    }

    @Test func anExchangeSendsItsMethodHeadersAndBodyAndReadsTheAnswer() async throws {
        let server = try LocalHTTPServer { received in
            .answer(status: 201, headers: ["X-Seen: \(received.body.count)", "Set-Thing: a", "set-thing: b", "X-Where:   http://h:1/p  "], body: Array("{\"ok\":true}".utf8))
        }
        defer { server.stop() }
        var outgoing = request(server, method: "POST")
        outgoing.setHeader("Authorization", "Bearer sk-test")
        outgoing.setHeader("Content-Type", "application/json")
        outgoing.body = .bytes(Array("{\"model\":\"small\"}".utf8))
        let answer = try await HTTPEngine.shared.send(outgoing).get()
        #expect(answer.status == 201)
        #expect(String(decoding: answer.body, as: UTF8.self) == "{\"ok\":true}")
        #expect(answer.headers["x-seen"] == "17" && answer.headers["X-SEEN"] == "17")
        #expect(answer.headers["set-thing"] == "a, b", "a header sent twice is read as both values")
        #expect(answer.headers["x-where"] == "http://h:1/p", "a value is read whole from the first colon, without the spaces around it")
        #expect(answer.headers["x-se"] == nil && answer.headers["x-seen-not"] == nil && answer.headers["missing"] == nil)
        let received = try #require(server.requests.first)
        #expect(received.method == "POST" && received.path == "/v1/echo")
        #expect(received.headers["authorization"] == "Bearer sk-test" && received.headers["content-type"] == "application/json")
        #expect(received.headers["expect"] == nil, "no 100-continue wait is asked for")
        #expect(String(decoding: received.body, as: UTF8.self) == "{\"model\":\"small\"}")
    }

    /// A call's handle is kept for the next call, set up as it was when the next call is of the same kind (method, kind of
    /// body, authority, stall time) and reset when it is not: calls of every kind one after another, each on the handle
    /// the last one left, carry nothing of the one before.
    @Test func aKeptHandleCarriesNothingOfItsLastCallIntoTheNext() async throws {
        let server = try LocalHTTPServer { _ in .answer(status: 200, body: Array("ok".utf8)) }
        defer { server.stop() }
        func send(_ method: String, body: [UInt8]?, header: (String, String)?, stalled: Double? = nil) async throws -> LocalHTTPServer.Received {
            var outgoing = request(server, "/\(method.lowercased())", method: method)
            if let body { outgoing.body = .bytes(body) }
            if let header { outgoing.setHeader(header.0, header.1) }
            outgoing.stalledSeconds = stalled
            #expect(try await HTTPEngine.shared.send(outgoing).get().status == 200)
            return try #require(server.requests.last)
        }
        var seen = try await send("POST", body: Array("first".utf8), header: ("X-First", "1"), stalled: 5)
        #expect(seen.method == "POST" && seen.body == Array("first".utf8) && seen.headers["x-first"] == "1")
        seen = try await send("POST", body: Array("second, longer".utf8), header: ("X-Second", "2"), stalled: 5)
        #expect(seen.method == "POST" && seen.body == Array("second, longer".utf8), "the same kind of call sends its own body")
        #expect(seen.headers["x-second"] == "2" && seen.headers["x-first"] == nil, "and its own headers only")
        seen = try await send("GET", body: nil, header: nil)
        #expect(seen.method == "GET" && seen.body.isEmpty && seen.headers["x-second"] == nil && seen.headers["content-length"] == nil)
        seen = try await send("DELETE", body: nil, header: nil)
        #expect(seen.method == "DELETE" && seen.body.isEmpty)
        seen = try await send("POST", body: Array("third".utf8), header: nil)
        #expect(seen.method == "POST" && seen.body == Array("third".utf8), "no method of the call before")
        seen = try await send("POST", body: nil, header: nil)
        #expect(seen.method == "POST" && seen.body.isEmpty && seen.headers["content-length"] == "0")
        seen = try await send("GET", body: nil, header: ("X-Last", "3"))
        #expect(seen.method == "GET" && seen.body.isEmpty && seen.headers["x-last"] == "3")
        #expect(server.requests.count == 7)
    }

    @Test func callsOneAfterAnotherShareOneConnection() async throws {
        let server = try LocalHTTPServer { _ in .answer(status: 200, body: Array("ok".utf8)) }
        defer { server.stop() }
        for _ in 0..<20 { #expect(try await HTTPEngine.shared.send(request(server)).get().status == 200) }
        #expect(server.requests.count == 20)
        #expect(server.connections == 1, "the connection is kept and reused")
    }

    @Test func manyCallsAtOnceAreAllAnswered() async throws {
        let server = try LocalHTTPServer { received in
            Thread.sleep(forTimeInterval: 0.05)
            return .answer(status: 200, body: Array(received.path.utf8))
        }
        defer { server.stop() }
        func wave() async -> Int {
            await withTaskGroup(of: Bool.self) { group in
                for index in 0..<300 {
                    group.addTask { (try? await HTTPEngine.shared.send(request(server, "/call/\(index)")).get().body) == Array("/call/\(index)".utf8) }
                }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
        }
        #expect(await wave() == 300, "every call got its own answer")
        let opened = server.connections
        #expect(opened <= 300)
        // Spread over the engine's shards of 64, the second wave finds the first's connections idle wherever they are.
        #expect(await wave() == 300)
        #expect(server.connections == opened, "the second wave reused the first's \(opened) connections")
    }

    @Test func aCallWhoseKeptConnectionClosesBeforeAnsweringIsNotSentAgain() async throws {
        // The second call goes out on the first's kept connection, which the server closes without answering. libcurl
        // would send it again on a new connection by itself; the provider may have billed the first, so it is not.
        let server = try LocalHTTPServer { received in
            received.path == "/second" ? .hangUp : .answer(status: 200, body: Array("ok".utf8))
        }
        defer { server.stop() }
        for method in ["POST", "DELETE"] {
            var first = request(server, "/first", method: method)
            first.body = .bytes(Array("{\"n\":1}".utf8))
            #expect(try await HTTPEngine.shared.send(first).get().status == 200)
            var second = request(server, "/second", method: method)
            second.body = .bytes(Array("{\"n\":2}".utf8))
            #expect(await HTTPEngine.shared.send(second).failure == .dropped, "\(method)")
        }
        #expect(server.requests.map(\.path) == ["/first", "/second", "/first", "/second"], "each call reached the server once")
    }

    @Test func anIdleConnectionItsServerClosesIsLetGoAndTheNextCallOpensAnother() async throws {
        // The engine leaves an idle connection's socket in its epoll set. When the server closes it, the socket is
        // readable for good: the loop must take it out rather than wake for it again and again, and the next call must
        // find a connection that works.
        let server = try LocalHTTPServer { _ in .answerThenClose(status: 200, body: Array("ok".utf8)) }
        defer { server.stop() }
        #expect(try await HTTPEngine.shared.send(request(server)).get().status == 200)
        try await Task.sleep(for: .milliseconds(400))
        let before = HTTPEngine.shared.wakes.load(ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(500))
        let woken = HTTPEngine.shared.wakes.load(ordering: .relaxed) - before
        #expect(woken < 1_000, "the loop woke \(woken) times in half a second with nothing to do")
        #expect(try await HTTPEngine.shared.send(request(server)).get().status == 200)
        #expect(server.connections == 2)
    }

    @Test func aServerThatNeverAnswersTimesOut() async throws {
        let server = try LocalHTTPServer { _ in .silence }
        defer { server.stop() }
        let outcome = await HTTPEngine.shared.send(request(server, timeout: 0.5))
        #expect(outcome.failure == .timedOut)
    }

    @Test func anAnswerThatStopsComingEndsAsStalledBeforeItsTotalTime() async throws {
        let server = try LocalHTTPServer { _ in .stall(length: 1_000, sent: Array(repeating: 65, count: 10)) }
        defer { server.stop() }
        var outgoing = request(server, timeout: 3_600)
        outgoing.stalledSeconds = 1
        let outcome = await HTTPEngine.shared.send(outgoing)
        #expect(outcome.failure == .timedOut)
    }

    @Test func cancellingTheCallingTaskEndsTheExchangeAndClosesItsConnection() async throws {
        let server = try LocalHTTPServer { _ in .silence }
        defer { server.stop() }
        let call = Task { await HTTPEngine.shared.send(request(server, timeout: 3_600)) }
        while server.requests.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        call.cancel()
        #expect(await call.value.failure == .cancelled)
        var waited = 0
        while server.closedByClient == 0, waited < 1_000 {
            try await Task.sleep(for: .milliseconds(10))
            waited += 1
        }
        #expect(server.closedByClient == 1, "the engine closed the connection it gave up on")
    }

    @Test func aTaskCancelledBeforeItsCallSendsNothing() async throws {
        let server = try LocalHTTPServer { _ in .answer(status: 200) }
        defer { server.stop() }
        let call = Task {
            while !Task.isCancelled { await Task.yield() }
            return await HTTPEngine.shared.send(request(server))
        }
        call.cancel()
        #expect(await call.value.failure == .cancelled)
        #expect(server.connections == 0)
    }

    @Test func anAnswerOverItsLimitIsNotRead() async throws {
        let server = try LocalHTTPServer { _ in .answer(status: 200, body: Array(repeating: 120, count: 200_000)) }
        defer { server.stop() }
        var outgoing = request(server)
        outgoing.sink = .memory(limit: 1_000)
        #expect(await HTTPEngine.shared.send(outgoing).failure == .tooLarge(limit: 1_000))
        let file = testFiles.appendingPathComponent("engine-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        outgoing.sink = .file(path: file, limit: 5_000)
        #expect(await HTTPEngine.shared.send(outgoing).failure == .tooLarge(limit: 5_000))
        outgoing.sink = .file(path: file, limit: 1 << 20)
        let whole = try await HTTPEngine.shared.send(outgoing).get()
        let size = try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int
        #expect(whole.body.isEmpty && size == 200_000)
    }

    @Test func aFileIsSentFromDisk() async throws {
        let server = try LocalHTTPServer { received in .answer(status: 200, body: Array(String(received.body.count).utf8)) }
        defer { server.stop() }
        let file = testFiles.appendingPathComponent("engine-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        let contents = Array((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 % 251) })
        try Data(contents).write(to: file)
        var outgoing = request(server, method: "POST")
        outgoing.body = .file(path: file.path)
        let answer = try await HTTPEngine.shared.send(outgoing).get()
        #expect(String(decoding: answer.body, as: UTF8.self) == "3000000")
        #expect(server.requests.first?.body == contents)
        outgoing.body = .file(path: file.path + "-missing")
        guard case .localFile(let why)? = await HTTPEngine.shared.send(outgoing).failure else { Issue.record("a missing file is a local failure"); return }
        #expect(why.contains("-missing"))
    }

    @Test func nobodyListeningIsARefusedConnection() async throws {
        let server = try LocalHTTPServer { _ in .answer(status: 200) }
        let port = server.port
        server.stop()
        let outcome = await HTTPEngine.shared.send(HTTPRequest(method: "GET", url: URL(string: "http://127.0.0.1:\(port)/")!, timeoutSeconds: 5))
        #expect(outcome.failure == .refused)
    }

    @Test func aURLOnAnotherOriginThanTheRequestsIsNeverSent() async throws {
        let server = try LocalHTTPServer { _ in .answer(status: 200) }
        defer { server.stop() }
        var outgoing = request(server)
        outgoing.origin = Origin(URL(string: "http://127.0.0.1:\(server.port + 1)")!)
        guard case .misdirected? = await HTTPEngine.shared.send(outgoing).failure else { Issue.record("sent to another origin"); return }
        outgoing.origin = Origin(URL(string: "http://127.0.0.1:\(server.port)")!)
        #expect(try await HTTPEngine.shared.send(outgoing).get().status == 200)
        #expect(server.requests.count == 1)
    }

    @Test func aCertificateNobodyVouchesForIsRefusedUnlessTheRequestNamesItsAuthority() async throws {
        let tls = try SelfSignedServerFolder()
        defer { tls.remove() }
        let port = try await LocalHTTPServer.freePort()
        let server = try tls.run(tls.openssl, ["s_server", "-accept", String(port), "-cert", "cert.pem", "-key", "key.pem", "-www", "-naccept", "20"])
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        var outcome: Result<HTTPResponse, ExchangeFailure> = .failure(.refused)
        for _ in 0..<50 where outcome.failure == .refused {
            try await Task.sleep(for: .milliseconds(100))
            outcome = await HTTPEngine.shared.send(HTTPRequest(method: "GET", url: URL(string: "https://127.0.0.1:\(port)/")!, timeoutSeconds: 10))
        }
        #expect(outcome.failure == .insecure, "\(outcome)")
        // A gateway with a private authority: the provider's ca_file vouches for it, and the same server is trusted.
        var vouched = HTTPRequest(method: "GET", url: URL(string: "https://127.0.0.1:\(port)/")!, timeoutSeconds: 10)
        vouched.certificateAuthorities = tls.certificate
        #expect(try await HTTPEngine.shared.send(vouched).get().status == 200)
    }

    /// nginx offers HTTP/2 over TLS, as the providers do, and answers each call after a wait: calls made at once are
    /// streams of one connection, which its log shows.
    @Test func callsAtOnceToAnHTTP2ServerAreStreamsOfOneConnection() async throws {
        let tls = try SelfSignedServerFolder()
        defer { tls.remove() }
        let nginx = try #require(["/usr/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) },
            "nginx is needed for this test; .ci/run installs it")
        let echo = try #require(["/usr/lib/nginx/modules/ngx_http_echo_module.so"].first { FileManager.default.fileExists(atPath: $0) },
            "nginx's echo module is needed for this test; .ci/run installs libnginx-mod-http-echo")
        let port = try await LocalHTTPServer.freePort()
        let folder = tls.folder.path
        try """
            load_module \(echo);
            worker_processes 1;
            pid \(folder)/nginx.pid;
            error_log \(folder)/error.log warn;
            daemon off;
            events { worker_connections 256; }
            http {
                log_format streams '$connection $server_protocol $status';
                access_log \(folder)/access.log streams;
                client_body_temp_path \(folder)/body;
                server {
                    listen 127.0.0.1:\(port) ssl http2;
                    ssl_certificate \(folder)/cert.pem;
                    ssl_certificate_key \(folder)/key.pem;
                    location / { echo_read_request_body; echo_sleep 0.5; echo ok; }
                }
            }
            """.write(toFile: folder + "/nginx.conf", atomically: true, encoding: .utf8)
        let server = try tls.run(nginx, ["-c", folder + "/nginx.conf", "-e", folder + "/error.log"])
        // SIGTERM: nginx's fast shutdown, its worker with it (SIGKILL would leave the worker behind).
        defer { kill(server.processIdentifier, SIGTERM); server.waitUntilExit() }
        func call() -> HTTPRequest {
            var request = HTTPRequest(method: "POST", url: URL(string: "https://127.0.0.1:\(port)/v1/chat/completions")!, body: .bytes(Array("{}".utf8)), timeoutSeconds: 10)
            request.certificateAuthorities = tls.certificate
            return request
        }
        var first: Result<HTTPResponse, ExchangeFailure> = .failure(.refused)
        for _ in 0..<50 where first.failure == .refused {
            try await Task.sleep(for: .milliseconds(100))
            first = await HTTPEngine.shared.send(call())
        }
        #expect(try first.get().status == 200)
        let answered = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<40 { group.addTask { (try? await HTTPEngine.shared.send(call()).get().status) ?? 0 } }
            return await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(answered == Array(repeating: 200, count: 40))
        // nginx writes each line of its log as the call ends.
        let lines = try String(contentsOfFile: folder + "/access.log", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 41)
        #expect(lines.allSatisfy { $0.hasSuffix("HTTP/2.0 200") }, "\(lines.prefix(3))")
        // The forty overlapped (half a second each) and went as streams of the first call's connection.
        #expect(Set(lines.map { $0.split(separator: " ")[0] }).count == 1, "\(lines)")
    }
}

/// A temporary folder holding a certificate for 127.0.0.1 that no authority vouches for (`cert.pem`, `key.pem`), made
/// with openssl, and a way to run servers in it.
private struct SelfSignedServerFolder {
    let folder = testFiles.appendingPathComponent("engine-tls-\(UUID().uuidString)")
    let openssl: String
    var certificate: String { folder.appendingPathComponent("cert.pem").path }

    init() throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        openssl = try #require(["/usr/bin/openssl", "/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) },
            "openssl is needed for this test; .ci/run installs it")
        let made = try run(openssl, [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ])
        made.waitUntilExit()
    }

    func run(_ binary: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = folder
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    func remove() { try? FileManager.default.removeItem(at: folder) }
}

/// Redirects through `ProviderEndpoint.exchange`: followed within the provider's origin with its key, never elsewhere
/// with it.
@Suite struct ProviderRedirectTests {
    private func endpoint(_ port: Int) throws -> ProviderEndpoint {
        let provider = Provider(name: "local", dialect: .openai, baseURL: "http://127.0.0.1:\(port)/v1", apiKeyEnvironmentVariable: "LOCAL_KEY")
        return try ProviderEndpoint(provider: provider, environment: ["LOCAL_KEY": "sk-local-123456"])
    }

    @Test func aRedirectWithinTheOriginIsFollowedWithTheKeyAndALoopEnds() async throws {
        let server = try LocalHTTPServer { received in
            switch received.path {
            case "/v1/old": .answer(status: 307, headers: ["Location: /v1/new"])
            case "/v1/new": .answer(status: 200, body: Array("moved".utf8))
            default: .answer(status: 302, headers: ["Location: /v1/loop"])
            }
        }
        defer { server.stop() }
        let endpoint = try endpoint(server.port)
        var request = try endpoint.request(try endpoint.url("/old"), method: "POST", timeoutSeconds: 10)
        request.body = .bytes(Array("{}".utf8))
        let answer = try await endpoint.exchange(request).get()
        #expect(answer.status == 200 && answer.body == Array("moved".utf8))
        #expect(server.requests.map(\.path) == ["/v1/old", "/v1/new"])
        #expect(server.requests.allSatisfy { $0.headers["authorization"] == "Bearer sk-local-123456" && $0.body == Array("{}".utf8) })

        let looped = try await endpoint.exchange(try endpoint.request(try endpoint.url("/loop"), method: "GET", timeoutSeconds: 10)).get()
        #expect(looped.status == 302)
        #expect(server.requests.count == 2 + 1 + ProviderEndpoint.redirectHops)
        let refusal = try #require(endpoint.refusedRedirect(status: looped.status, location: looped.headers["location"], method: "GET", url: try endpoint.url("/loop")))
        #expect(refusal.kind == .retryable && refusal.message.contains("again and again within its origin"))
    }

    @Test func aDownloadLeavesTheOriginWithoutItsKeyAndAnythingElseStays() async throws {
        let elsewhere = try LocalHTTPServer(host: "127.0.0.2") { _ in .answer(status: 200, body: Array("results".utf8)) }
        defer { elsewhere.stop() }
        let server = try LocalHTTPServer { _ in .answer(status: 302, headers: ["Location: http://127.0.0.2:\(elsewhere.port)/files/results"]) }
        defer { server.stop() }
        let endpoint = try endpoint(server.port)
        let request = try endpoint.request(try endpoint.url("/batches/1/results"), method: "GET", timeoutSeconds: 10)

        let stayed = try await endpoint.exchange(request).get()
        #expect(stayed.status == 302 && elsewhere.requests.isEmpty, "a call that is not a download is not followed elsewhere")

        let downloaded = try await endpoint.exchange(request, leavingWithoutCredentials: true).get()
        #expect(downloaded.body == Array("results".utf8))
        let reached = try #require(elsewhere.requests.first)
        #expect(reached.headers["authorization"] == nil && reached.headers["x-api-key"] == nil, "the key stayed home")
    }
}

extension Result {
    fileprivate var failure: Failure? { if case .failure(let error) = self { error } else { nil } }
}
