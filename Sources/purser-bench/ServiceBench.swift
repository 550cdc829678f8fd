import Foundation
import PurserCore
import Synchronization

/// The service figures: a large batch uploaded and created through the official openai SDK against `purser submit`
/// of the same file, and many clients polling a batch while the run service holds many calls in flight.
enum ServiceBench {
    static var folder: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }

    /// `purser serve` as a child process on a free port; its address read from its first line.
    final class Serve {
        let process = Process()
        let port: Int

        init(database: String, pricing: String, arguments: [String], work: String, environment extra: [String: String] = [:]) throws {
            process.executableURL = ServiceBench.folder.appendingPathComponent("purser")
            process.arguments = ["serve", "--listen", "127.0.0.1:0", "--db", database, "--pricing", pricing, "--quiet"] + arguments
            var environment = ProcessInfo.processInfo.environment
            for (name, value) in extra { environment[name] = value }
            process.environment = environment
            let out = work + "/serve-\(UUID().uuidString).out"
            _ = FileManager.default.createFile(atPath: out, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            for _ in 0..<1000 {
                if let text = try? String(contentsOfFile: out, encoding: .utf8), let range = text.range(of: "127.0.0.1:") {
                    port = Int(text[range.upperBound...].prefix { $0.isNumber }) ?? 0
                    return
                }
                Thread.sleep(forTimeInterval: 0.01)
            }
            kill(process.processIdentifier, SIGKILL)
            throw Problem("purser serve did not start")
        }

        /// The process's peak resident memory so far, in MiB (VmHWM).
        var peakMiB: Int {
            let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
        }

        func stop() {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// An admin project key (it reads /metrics too) made with the real command.
    static func key(database: String) throws -> String {
        let process = Process()
        process.executableURL = folder.appendingPathComponent("purser")
        process.arguments = ["keys", "create", "--project", "bench", "--role", "admin", "--db", database]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The SDKs' python in .build/sdk-venv (scripts/sdk-venv.sh makes it).
    static func python() throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["scripts/sdk-venv.sh"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Problem("scripts/sdk-venv.sh failed: run the benchmark from the repository's folder") }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct UploadFigures {
        var submitSeconds: Double
        var sdkSeconds: Double
        var uploadSeconds: Double
        var status: String
        var total: Int
        var servePeakMiB: Int
        var fileMiB: Int
    }

    /// `purser submit FILE` timed as a process, then the same file through the SDK against a serve on a fresh database.
    static func upload(file: String, work: String, pricing: String) throws -> UploadFigures {
        let submitDatabase = work + "/service-submit.db"
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: submitDatabase + suffix) }
        let submit = Process()
        submit.executableURL = folder.appendingPathComponent("purser")
        submit.arguments = ["submit", file, "--db", submitDatabase, "--pricing", pricing]
        submit.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        submit.standardError = FileHandle(forWritingAtPath: "/dev/null")
        let started = DispatchTime.now().uptimeNanoseconds
        try submit.run()
        submit.waitUntilExit()
        let submitSeconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9

        let database = work + "/service-upload.db"
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
        try? FileManager.default.removeItem(atPath: database + ".files")
        let key = try key(database: database)
        // Simulated, slowed right down: the run service plans the job but makes few calls while the upload is measured.
        let serve = try Serve(database: database, pricing: pricing, arguments: ["--simulate", "--speedup", "0.001", "--concurrency", "1"], work: work)
        defer { serve.stop() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try python())
        process.arguments = ["scripts/bench_service_upload.py", "http://127.0.0.1:\(serve.port)", key, file]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard let figures = try? JSONParser.parse(String(decoding: data, as: UTF8.self)).objectValue,
              let validated = figures["validated_seconds"]?.numberText.flatMap(Double.init),
              let uploadSeconds = figures["upload_seconds"]?.numberText.flatMap(Double.init) else {
            throw Problem("the SDK upload did not finish: \(String(decoding: data, as: UTF8.self))")
        }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        return UploadFigures(
            submitSeconds: submitSeconds, sdkSeconds: validated, uploadSeconds: uploadSeconds, status: figures["status"]?.stringValue ?? "?",
            total: figures["total"]?.intValue ?? 0, servePeakMiB: serve.peakMiB, fileMiB: bytes >> 20)
    }

    struct PollFigures {
        var answers: Int
        var seconds: Double
        var p50Milliseconds: Double
        var p99Milliseconds: Double
        var errors: Int
        var inFlightDuring: Int
        var peakInFlight: Int
    }

    /// `clients` threads, each on its own kept-alive connection, GET the batch as fast as answers come for `seconds`.
    static func poll(port: Int, key: String, batch: String, clients: Int, seconds: Double) -> (latencies: [Double], errors: Int, elapsed: Double) {
        let results = Mutex<(latencies: [Double], errors: Int)>(([], 0))
        let group = DispatchGroup()
        let started = DispatchTime.now().uptimeNanoseconds
        let end = started + UInt64(seconds * 1e9)
        for _ in 0..<clients {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                var latencies: [Double] = [], errors = 0
                var connection = KeptAlive(port: port)
                let request = Array("GET /v1/batches/\(batch) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\n\r\n".utf8)
                while DispatchTime.now().uptimeNanoseconds < end {
                    let sent = DispatchTime.now().uptimeNanoseconds
                    if connection?.exchange(request) == 200 {
                        latencies.append(Double(DispatchTime.now().uptimeNanoseconds - sent) / 1e6)
                    } else {
                        errors += 1
                        connection = KeptAlive(port: port)
                    }
                }
                results.withLock { $0.latencies += latencies; $0.errors += errors }
            }
            thread.stackSize = 256 << 10
            thread.start()
        }
        group.wait()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        return results.withLock { ($0.latencies, $0.errors, elapsed) }
    }

    /// A job of `requests` chat lines for the fake model uploaded and created through the API (with curl-like raw
    /// HTTP: the SDK's time is not what this row measures), then `clients` pollers while the run service serves it.
    static func pollWhileServing(requests: Int, clients: Int, inFlight: Int, latencyMilliseconds: Int, work: String, pricing: String) throws -> PollFigures {
        let fake = try DispatchBench.FakeServer(latencyMilliseconds: latencyMilliseconds)
        defer { fake.stop() }
        let fakePricing = work + "/service-pricing"
        try DispatchBench.writePricing(port: fake.port, pricing: pricing, to: fakePricing)
        let database = work + "/service-poll.db"
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
        try? FileManager.default.removeItem(atPath: database + ".files")
        let key = try key(database: database)
        let serve = try Serve(database: database, pricing: fakePricing, arguments: ["--concurrency", String(inFlight), "--timeout", "120"], work: work,
            environment: ["FAKE_KEY": "bench"])
        defer { serve.stop() }
        var lines = ""
        for index in 0..<requests {
            lines += #"{"custom_id":"p\#(index)","method":"POST","url":"/v1/chat/completions","body":{"model":"small","max_tokens":16,"messages":[{"role":"user","content":"hello \#(index)"}]}}"# + "\n"
        }
        let boundary = "bench-boundary"
        let upload = "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"poll.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n\(lines)\r\n--\(boundary)--\r\n"
        var connection = KeptAlive(port: serve.port)
        guard let file = connection?.json("POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\nContent-Type: multipart/form-data; boundary=\(boundary)\r\nContent-Length: \(upload.utf8.count)\r\n\r\n\(upload)")?["id"]?.stringValue else {
            throw Problem("the upload failed")
        }
        let create = #"{"input_file_id":"\#(file)","endpoint":"/v1/chat/completions","completion_window":"24h"}"#
        guard let batch = connection?.json("POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\nContent-Length: \(create.utf8.count)\r\n\r\n\(create)")?["id"]?.stringValue else {
            throw Problem("the create failed")
        }
        // Wait until the run service holds its calls in flight.
        func inFlightNow() -> Int {
            var metrics = KeptAlive(port: serve.port)
            let text = metrics?.text("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\n\r\n") ?? ""
            return text.split(separator: "\n").first { $0.hasPrefix("purser_calls_in_flight ") }.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        _ = connection
        connection = nil
        let waitUntil = Date().addingTimeInterval(60)
        while Date() < waitUntil, fake.stat("peak_in_flight") < inFlight * 9 / 10 { Thread.sleep(forTimeInterval: 0.2) }
        let (latencies, errors, elapsed) = poll(port: serve.port, key: key, batch: batch, clients: clients, seconds: 5)
        let during = inFlightNow()
        let sorted = latencies.sorted()
        func percentile(_ share: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * share))] }
        return PollFigures(
            answers: latencies.count, seconds: elapsed, p50Milliseconds: percentile(0.5), p99Milliseconds: percentile(0.99), errors: errors,
            inFlightDuring: during, peakInFlight: fake.stat("peak_in_flight"))
    }
}

/// One kept-alive HTTP/1.1 connection to 127.0.0.1, for the pollers (blocking, one request at a time).
struct KeptAlive {
    let descriptor: Int32
    private var buffer: [UInt8] = []

    init?(port: Int) {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { close(descriptor); return nil }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var yes: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
        self.descriptor = descriptor
    }

    /// Sends `request` and reads one answer: its status, or nil when the connection failed.
    mutating func exchange(_ request: [UInt8]) -> Int? { answer(request)?.status }

    mutating func text(_ request: String) -> String? { answer(Array(request.utf8)).map { String(decoding: $0.body, as: UTF8.self) } }

    mutating func json(_ request: String) -> JSONObject? { text(request).flatMap { try? JSONParser.parse($0).objectValue } }

    private mutating func answer(_ request: [UInt8]) -> (status: Int, body: [UInt8])? {
        var sent = 0
        while sent < request.count {
            let count = request[sent...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { return nil }
            sent += count
        }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            if let end = headEnd() {
                let head = String(decoding: buffer[0..<end], as: UTF8.self).lowercased()
                let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                if buffer.count >= end + 4 + length {
                    let body = Array(buffer[(end + 4)..<(end + 4 + length)])
                    buffer.removeFirst(end + 4 + length)
                    return (status, body)
                }
            }
            let count = read(descriptor, &chunk, chunk.count)
            guard count > 0 else { return nil }
            buffer += chunk[0..<count]
        }
    }

    private func headEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for index in 0...(buffer.count - 4) where buffer[index] == 13 && buffer[index + 1] == 10 && buffer[index + 2] == 13 && buffer[index + 3] == 10 {
            return index
        }
        return nil
    }
}
