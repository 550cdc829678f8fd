import Foundation
import Testing
import PurserCore
@testable import PurserSQLite
import TestSupport

/// `purser serve` as a child process on a free port of 127.0.0.1, on the simulator, stopped by the test.
final class ServeProcess {
    let process = Process()
    let port: Int
    let log: URL
    var base: String { "http://127.0.0.1:\(port)" }

    init(database: String, speedup: Int = 600, extra: [String] = []) async throws {
        process.executableURL = products.appendingPathComponent("purser")
        process.arguments = ["serve", "--listen", "127.0.0.1:0", "--simulate", "--speedup", String(speedup), "--db", database, "--quiet", "--grace", "5"] + extra
        var environment = ProcessInfo.processInfo.environment
        environment["PURSER_PRICING"] = repository.appendingPathComponent("pricing").path
        process.environment = environment
        let directory = testFiles
        let out = directory.appendingPathComponent("serve-out-\(UUID().uuidString)")
        log = directory.appendingPathComponent("serve-err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        var found: Int?
        for _ in 0..<500 where found == nil {
            await pause(seconds: 0.02)
            let line = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            if let range = line.range(of: "listening on http://127.0.0.1:") {
                found = Int(line[range.upperBound...].prefix { $0.isNumber })
            }
            if !process.isRunning { break }
        }
        guard let found else {
            kill(process.processIdentifier, SIGKILL)
            throw Problem("purser serve did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        }
        port = found
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    var errorLog: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// SIGTERM, then the exit code (SIGKILL after 30 s).
    func terminate() async -> Int32 {
        kill(process.processIdentifier, SIGTERM)
        for _ in 0..<1500 where process.isRunning { await pause(seconds: 0.02) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        await exited(process)
        return process.terminationStatus
    }
}

/// One raw HTTP/1.1 exchange on a fresh connection: the status line, headers (lower-cased) and body.
func rawHTTP(port: Int, _ request: String) throws -> (status: Int, headers: [String: String], body: String) {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard connected == 0 else { throw Problem("cannot connect to 127.0.0.1:\(port)") }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let bytes = Array(request.utf8)
    var sent = 0
    while sent < bytes.count {
        let count = bytes[sent...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        sent += count
    }
    var answer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = read(descriptor, &chunk, chunk.count)
        if count <= 0 { break }
        answer += chunk[0..<count]
        if let text = String(bytes: answer, encoding: .utf8), let end = text.range(of: "\r\n\r\n"),
           let length = text[..<end.lowerBound].lowercased().split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") })
            .flatMap({ Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }),
           text.utf8.count - text.utf8.distance(from: text.startIndex, to: end.upperBound) >= length { break }
    }
    let text = String(decoding: answer, as: UTF8.self)
    let parts = text.components(separatedBy: "\r\n\r\n")
    let head = parts[0].split(separator: "\r\n")
    let status = head.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
    var headers: [String: String] = [:]
    for line in head.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return (status, headers, parts.dropFirst().joined(separator: "\r\n\r\n"))
}

/// A key made through the CLI: its token (the one line `keys create` prints on standard output).
func makeKey(project: String, role: String = "submit", database: String) async throws -> String {
    let run = await purser(["keys", "create", "--project", project, "--role", role], database: database)
    try #require(run.code == 0, "\(run.error)")
    return run.out.trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite(.serialized) struct ServeTests {
    /// Runs a python script of scripts/ with `arguments` in the SDKs' venv; its exit code and output.
    static func python(_ script: String, _ arguments: [String]) async throws -> (code: Int32, out: String) {
        try await runPython(repository.appendingPathComponent("scripts/\(script)").path, arguments)
    }

    @Test func theOfficialSDKsDriveEveryEndpointAndEachProjectSeesOnlyItsOwn() async throws {
        try await alone {
            let database = temporaryDatabasePath()
            let alpha = try await makeKey(project: "alpha", database: database)
            let beta = try await makeKey(project: "beta", database: database)
            let reader = try await makeKey(project: "alpha", role: "read", database: database)
            let serve = try await ServeProcess(database: database)
            let work = testFiles.appendingPathComponent("sdk-work-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            let (code, out) = try await ServeTests.python("sdk_serve_check.py", [serve.base, alpha, beta, reader, work.path])
            #expect(code == 0, "\(out)\n--- serve's log:\n\(serve.errorLog)")
            #expect(out.contains("all checks passed"))
            // The hints in metadata reached the job: premium quality and an hour's deadline, except where a line said otherwise.
            let hinted = try #require(out.firstMatch(of: /routing hints batch (batch_[0-9a-f]+)/).map { String($0.1) }, "\(out)")
            let rows = try query(database, """
                SELECT r.custom_id, r.quality_tier, r.deadline_at - j.submitted_at FROM requests r JOIN jobs j ON j.id = r.job_id
                WHERE j.name = '\(hinted)' ORDER BY r.line_number
                """).map { Array($0.prefix(3)) }
            #expect(rows == [["req-200", "premium", "3600000"], ["req-201", "premium", "3600000"], ["req-202", "basic", "3600000"]], "\(rows)")
            #expect(await serve.terminate() == 0)
            for key in [alpha, beta, reader] { #expect(!serve.errorLog.contains(key), "a key appeared in the log") }
        }
    }

    /// A serve writes its database's log into the file as it stops: its threads may keep a connection open until the
    /// process exits, and only the last connection's close does that by itself. Before, a serve on a new database left
    /// the file holding nothing and its log holding all of it.
    @Test func aStoppedServeLeavesEverythingInTheDatabaseFileAlone() async throws {
        let database = temporaryDatabasePath()
        let serve = try await ServeProcess(database: database)
        #expect(await serve.terminate() == 0)
        let log = (try? FileManager.default.attributesOfItem(atPath: database + "-wal"))?[.size] as? Int ?? 0
        #expect(log == 0, "\(log) bytes of log left beside the database")
        let copy = temporaryDatabasePath()
        try FileManager.default.copyItem(atPath: database, toPath: copy)
        let alone = try StoreFile.openForReading(path: copy)
        #expect(try alone.jobs.jobs().isEmpty)
    }

    @Test func keysAreStoredOnlyAsHashesAndRevokedKeysAreRefused() async throws {
        let database = temporaryDatabasePath()
        let token = try await makeKey(project: "alpha", role: "admin", database: database)
        #expect(ProjectToken(text: token).isWellFormed)
        let serve = try await ServeProcess(database: database)
        let metrics = try rawHTTP(port: serve.port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n")
        #expect(metrics.status == 200)
        for family in ["purser_requests", "purser_spend_usd", "purser_reserved_usd", "purser_calls_in_flight", "purser_retries_total",
                       "purser_rate_limit_slowdowns_total", "purser_batches"] {
            #expect(metrics.body.contains("# TYPE \(family) "), "\(family) missing from /metrics")
        }
        #expect(await serve.terminate() == 0)
        var bytes = Data()
        for suffix in ["", "-wal"] { bytes += (try? Data(contentsOf: URL(fileURLWithPath: database + suffix))) ?? Data() }
        #expect(bytes.range(of: Data(token.utf8)) == nil, "the token is in the database")
        #expect(bytes.range(of: Data(ProjectToken(text: token).sha256.utf8)) != nil, "the token's hash is not in the database")

        let list = await purser(["keys", "list"], database: database)
        #expect(list.out.contains(String(token.prefix(ProjectToken.prefixLength))) && !list.out.contains(token))
        #expect(await purser(["keys", "revoke", "1"], database: database).code == 0)
        let again = try await ServeProcess(database: database)
        let refused = try rawHTTP(port: again.port, "GET /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n")
        #expect(refused.status == 401)
        #expect(!refused.body.contains(token), "an error repeated the key")
        #expect(await again.terminate() == 0)
    }

    @Test func requestsThatBreakTheLimitsGetTheRightErrorsInEachAPIsShape() async throws {
        let database = temporaryDatabasePath()
        let token = try await makeKey(project: "alpha", database: database)
        let serve = try await ServeProcess(database: database)
        let health = try rawHTTP(port: serve.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(health.status == 200 && health.headers["x-request-id"] != nil)

        let noKey = try rawHTTP(port: serve.port, "GET /v1/batches HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(noKey.status == 401)
        let openAIError = try JSONParser.parse(noKey.body).objectValue?["error"]?.objectValue
        #expect(openAIError?["type"]?.stringValue == "authentication_error" && openAIError?["param"] != nil && openAIError?["code"] != nil)
        let anthropicNoKey = try rawHTTP(port: serve.port, "GET /v1/messages/batches HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let anthropicError = try JSONParser.parse(anthropicNoKey.body).objectValue
        #expect(anthropicNoKey.status == 401 && anthropicError?["type"]?.stringValue == "error" && anthropicError?["request_id"]?.stringValue == anthropicNoKey.headers["request-id"])

        let huge = String(repeating: "a", count: 20_000)
        let tooLarge = try rawHTTP(port: serve.port, "GET /v1/batches HTTP/1.1\r\nHost: x\r\nX-Padding: \(huge)\r\n\r\n")
        #expect(tooLarge.status == 431)
        let body = String(repeating: "x", count: 2 << 20)
        let bigBody = try rawHTTP(port: serve.port, "POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
        #expect(bigBody.status == 413)
        let malformed = try rawHTTP(port: serve.port, "POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{nope")
        #expect(malformed.status == 400 && malformed.headers["x-should-retry"] == "false")
        let unknown = try rawHTTP(port: serve.port, "GET /v1/nothing HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n")
        #expect(unknown.status == 404)
        let garbage = try rawHTTP(port: serve.port, "NOT HTTP AT ALL\r\n\r\n")
        #expect(garbage.status == 400)
        #expect(await serve.terminate() == 0)
    }

    /// The README's two SDK snippets run unchanged against a serve, from the repository's folder.
    @Test func theREADMEsSDKSnippetsRunAsShown() async throws {
        try await alone {
            let readme = try String(contentsOf: repository.appendingPathComponent("README.md"), encoding: .utf8).components(separatedBy: "\n")
            let start = try #require(readme.firstIndex { $0.hasPrefix("## Service: `purser serve`") })
            var snippets: [String] = []
            var index = start + 1
            while index < readme.count, !readme[index].hasPrefix("## ") {
                if readme[index] == "```python", let close = readme[(index + 1)...].firstIndex(of: "```") {
                    snippets.append(readme[(index + 1)..<close].joined(separator: "\n"))
                    index = close
                }
                index += 1
            }
            try #require(snippets.count == 2, "the service section should show one OpenAI and one Anthropic snippet")
            let database = temporaryDatabasePath()
            let key = try await makeKey(project: "search", database: database)
            let serve = try await ServeProcess(database: database)
            for (snippet, expected) in zip(snippets, ["completed 5 of 5", "note-3 succeeded"]) {
                let file = testFiles.appendingPathComponent("readme-snippet-\(UUID().uuidString).py")
                try snippet.write(to: file, atomically: true, encoding: .utf8)
                let (code, said) = try await runPython(file.path, [], in: repository, environment: ["PURSER_URL": serve.base, "PURSER_KEY": key])
                #expect(code == 0 && said.contains(expected), "\(said)")
            }
            #expect(await serve.terminate() == 0)
        }
    }

    /// The dashboard in a real headless Chromium (Debian's chromium and chromium-driver, which .ci/run installs):
    /// sign-in, a job's progress moving, and the month's figures equal to `purser report`'s.
    @Test func theDashboardShowsAJobMovingAndTheFiguresPurserReportGives() async throws {
        try await alone {
            for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
                try #require(FileManager.default.isExecutableFile(atPath: program), "\(program) is missing: apt-get install chromium chromium-driver (bash .ci/run does)")
            }
            let database = temporaryDatabasePath()
            let admin = try await makeKey(project: "alpha", role: "admin", database: database)
            // Sped up 30 times (not 60): the job lasts about twice as long, so a browser that starts slowly on a busy
            // machine still sees it move (at 60 times, a full suite's browser once first saw it at 53 of 60).
            let serve = try await ServeProcess(database: database, speedup: 30, extra: ["--concurrency", "4"])
            let work = testFiles.appendingPathComponent("dashboard-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            let (code, out) = try await ServeTests.python("dashboard_check.py", [
                serve.base, admin, products.appendingPathComponent("purser").path, database, work.path,
            ])
            #expect(code == 0 && out.contains("all checks passed"), "\(out)\n--- serve's log:\n\(serve.errorLog)")
            #expect(await serve.terminate() == 0)
        }
    }

    /// Two serves on one database see the same batches; SIGTERM lets each one's calls in flight finish and be stored
    /// (none is left running), and a later serve finishes what they left.
    @Test func servesShareADatabaseAndSIGTERMDrainsTheirCallsInFlight() async throws {
        let database = temporaryDatabasePath()
        let key = try await makeKey(project: "alpha", database: database)
        let first = try await ServeProcess(database: database, speedup: 10, extra: ["--concurrency", "6"])
        let second = try await ServeProcess(database: database, speedup: 10, extra: ["--concurrency", "6"])
        let requests = (0..<40).map { n in
            #"{"custom_id":"n\#(n)","deadline":"hour","params":{"model":"claude-sonnet-4-5","max_tokens":300,"messages":[{"role":"user","content":"Note \#(n)"}]}}"#
        }
        let body = #"{"requests":["# + requests.joined(separator: ",") + "]}"
        let created = try rawHTTP(port: first.port, "POST /v1/messages/batches HTTP/1.1\r\nHost: x\r\nx-api-key: \(key)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        try #require(created.status == 200, "\(created.body)")
        let id = try #require(try JSONParser.parse(created.body).objectValue?["id"]?.stringValue)
        let seen = try rawHTTP(port: second.port, "GET /v1/messages/batches/\(id) HTTP/1.1\r\nHost: x\r\nx-api-key: \(key)\r\nConnection: close\r\n\r\n")
        #expect(seen.status == 200 && seen.body.contains(id))
        // Once calls are under way (live calls: the hour's deadline leaves no room for a provider batch), both stop.
        for _ in 0..<400 {
            if try integer(database, "SELECT count(*) FROM results") >= 2 { break }
            await pause(seconds: 0.05)
        }
        #expect(await first.terminate() == 0, "\(first.errorLog)")
        #expect(await second.terminate() == 0, "\(second.errorLog)")
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'running'") == 0, "a call was left running")
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == (try integer(database, "SELECT count(*) FROM results")))
        let third = try await ServeProcess(database: database)
        var ended = ""
        for _ in 0..<600 {
            ended = try rawHTTP(port: third.port, "GET /v1/messages/batches/\(id) HTTP/1.1\r\nHost: x\r\nx-api-key: \(key)\r\nConnection: close\r\n\r\n").body
            if ended.contains(#""processing_status":"ended""#) { break }
            await pause(seconds: 0.05)
        }
        #expect(ended.contains(#""succeeded":40"#), "\(ended)")
        #expect(await third.terminate() == 0)
    }

    /// A serve that cannot have its port says so, naming the flag, and leaves no database behind.
    @Test func aServeWhosePortIsTakenSaysSoAndMakesNoDatabase() async throws {
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, length) == 0 && listen(holder, 1) == 0 && getsockname(holder, $0, &length) == 0 }
        }
        try #require(bound)
        let database = temporaryDatabasePath()
        let run = await purser(["serve", "--listen", "127.0.0.1:\(UInt16(bigEndian: address.sin_port))", "--simulate"], database: database)
        #expect(run.code == 1 && run.error.contains("cannot listen on 127.0.0.1:") && run.error.contains("--listen"), "\(run.error)")
        #expect(!FileManager.default.fileExists(atPath: database) && !FileManager.default.fileExists(atPath: database + ".files"))
        let usage = await purser(["serve", "--listen", "300.0.0.1:80", "--simulate"], database: database)
        #expect(usage.code == 64 && usage.error.contains("--listen: '300.0.0.1' is not an IPv4 address"), "\(usage.error)")
    }
}
