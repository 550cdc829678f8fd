import Foundation
import PurserCore
import PurserSQLite
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The dispatch figures: Purser serving requests from its database against the fake provider, beside
/// plain URLSession calls to the same kind of server in the same run.
enum DispatchBench {
    /// A `purser-fake-provider` process (built beside this benchmark), killed by `stop()`.
    struct FakeServer {
        let process: Process
        let port: Int

        /// `faults` are the server's fault options (`--fail-5xx 0.1 …`).
        init(latencyMilliseconds: Int, faults: [String] = []) throws {
            process = Process()
            process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
                .appendingPathComponent("purser-fake-provider")
            process.arguments = ["--max-seconds", "600", "--latency-ms", String(latencyMilliseconds)] + faults
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("bench-fake-\(UUID().uuidString).txt")
            _ = FileManager.default.createFile(atPath: output.path, contents: nil)
            defer { try? FileManager.default.removeItem(at: output) }
            process.standardOutput = try FileHandle(forWritingTo: output)
            try process.run()
            for _ in 0..<500 {
                if let text = try? String(contentsOf: output, encoding: .utf8), text.hasSuffix("\n"),
                    let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").last ?? "")
                {
                    self.port = port
                    return
                }
                Thread.sleep(forTimeInterval: 0.01)
            }
            kill(process.processIdentifier, SIGKILL)
            throw Problem("the fake provider did not start; build it with swift build -c release")
        }

        /// The most calls the server was answering at one moment.
        func peakInFlight() -> Int { stat("peak_in_flight") }

        /// A count from the server's /stats (calls, early_retries, peak_in_flight), or -1 when it cannot be read.
        func stat(_ name: String) -> Int {
            guard let stats = self.stats(), case .number(let value)? = stats[name] else { return -1 }
            return Int(value) ?? -1
        }

        func stats() -> JSONObject? {
            guard let data = try? Data(contentsOf: URL(string: "http://127.0.0.1:\(port)/stats")!) else { return nil }
            return try? JSONParser.parse(String(decoding: data, as: UTF8.self)).objectValue
        }

        func stop() {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// One OpenAI-dialect model on the fake server, with limits far above what the benchmark asks.
    static func catalog(port: Int, tiers: Tiers) -> PricingCatalog {
        let prices = TokenPrices(
            input: TokenPrice(microUSDPerMillion: 150_000), output: TokenPrice(microUSDPerMillion: 600_000),
            cachedInput: TokenPrice(microUSDPerMillion: 75_000))
        let model = Model(
            id: "fake/small", provider: "fake", providerModel: "small", prices: prices, contextWindow: 100_000, maxOutputTokens: 8_000,
            quality: 90, qualitySource: "benchmark", capabilities: [.tools, .jsonMode, .vision],
            rateLimits: RateLimits(requestsPerMinute: 100_000_000, tokensPerMinute: 1_000_000_000_000),
            speed: Speed(timeToFirstTokenMilliseconds: 1, outputTokensPerSecond: 100_000), priceDate: "2026-11-24",
            priceSource: "https://example.com")
        let provider = Provider(
            name: "fake", dialect: .openai, baseURL: "http://127.0.0.1:\(port)/v1", apiKeyEnvironmentVariable: "FAKE_KEY")
        return PricingCatalog(models: [model], providers: ["fake": provider], tiers: tiers)
    }

    /// A URLSession as a plain client would set one up: `concurrency` connections, a minute per call.
    static func plainSession(concurrency: Int, timeoutSeconds: Double = 60) -> URLSession {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = concurrency
        configuration.timeoutIntervalForRequest = timeoutSeconds
        return URLSession(configuration: configuration)
    }

    /// A chat call like Purser's for request `index`, named `name` for the fake's per-request counts and fault draws.
    static func chatRequest(port: Int, index: Int, name: String) -> URLRequest {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/v1/chat/completions")!)
        request.httpMethod = "POST"
        request.httpBody = Data(#"{"model":"small","messages":[{"role":"user","content":"hello \#(index)"}],"max_tokens":16}"#.utf8)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("Bearer bench", forHTTPHeaderField: "Authorization")
        request.setValue(name, forHTTPHeaderField: "X-Purser-Request")
        return request
    }

    struct RunFigures {
        var seconds: Double
        var stored: Int
        var failed: Int
        var summary: RunSummary
    }

    /// The same model and provider as `catalog` written as pricing tables (beside `tiers.json` from `pricing`), for
    /// the `purser` command.
    static func writePricing(port: Int, pricing: String, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let tiers = directory + "/tiers.json"
        try? FileManager.default.removeItem(atPath: tiers)
        try FileManager.default.copyItem(atPath: pricing + "/tiers.json", toPath: tiers)
        try """
            {"providers": [{"name": "fake", "dialect": "openai", "base_url": "http://127.0.0.1:\(port)/v1", "api_key_env": "FAKE_KEY", "batch_api": false}]}
            """.write(toFile: directory + "/providers.json", atomically: true, encoding: .utf8)
        try """
            {"models": [{"id": "fake/small", "provider": "fake", "model": "small", "prices": {"input": "0.15", "output": "0.6", "cached_input": "0.075"},
             "context_window": 100000, "max_output_tokens": 8000, "quality": {"score": 90, "source": "benchmark"}, "capabilities": ["tools", "json_mode", "vision"],
             "rate_limits": {"requests_per_minute": 100000000, "tokens_per_minute": 1000000000000},
             "speed": {"time_to_first_token_ms": 1, "output_tokens_per_second": 100000}, "price_date": "2026-11-24", "price_source": "https://example.com"}]}
            """.write(toFile: directory + "/models.json", atomically: true, encoding: .utf8)
    }

    /// A fresh database at `path` holding one job of `calls` requests for the fake model.
    private static func submitJob(calls: Int, path: String, work: String, catalog: PricingCatalog) throws {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        let jobFile = work + "/dispatch-job.jsonl"
        var text = ""
        for index in 0..<calls {
            text += #"{"custom_id": "c\#(index)", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "small", "messages": [{"role": "user", "content": "hello \#(index)"}], "max_tokens": 16}, "deadline": "week"}"#
            text += "\n"
        }
        try text.write(toFile: jobFile, atomically: true, encoding: .utf8)
        _ = try JobSubmitter(database: try PurserDatabase.open(path: path), catalog: catalog).submit(files: [jobFile], options: SubmitOptions(force: true))
    }

    /// What a `purser run` command did, timed from its start to its exit as a user sees it.
    struct CommandFigures {
        var seconds: Double
        var stored: Int
        var failed: Int
        var exitCode: Int32
        /// The run's CPU time, user and system (the children this benchmark reaped while it ran: the run alone).
        var cpuSeconds: Double = 0
        /// The run's peak resident memory (its VmHWM, read while it ran).
        var peakMemoryBytes = 0
        /// The most descriptors the run held open at once (read while it ran, when asked for).
        var peakDescriptors = 0
    }

    /// CPU seconds, user and system, of the children reaped so far.
    static func childrenCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// Submits `calls` requests for the fake model to a fresh database and serves them with the `purser run`
    /// command, in a process of its own as a user runs it (its start, planning and exit are in the time).
    static func commandRun(calls: Int, concurrency: Int, work: String, pricing: String, countDescriptors: Bool = false) throws -> CommandFigures {
        let path = work + "/dispatch-command.db"
        try submitJob(calls: calls, path: path, work: work, catalog: try PricingCatalog.load(directory: pricing))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("purser")
        process.arguments = ["run", "--concurrency", String(concurrency), "--timeout", "60"]
        var environment = ProcessInfo.processInfo.environment
        environment["PURSER_DB"] = path
        environment["PURSER_PRICING"] = pricing
        environment["FAKE_KEY"] = "bench"
        process.environment = environment
        // Files, not pipes: nobody reads a pipe while the run writes its log.
        let log = work + "/dispatch-command.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? handle.close() }
        process.standardOutput = handle
        process.standardError = handle
        let cpuBefore = childrenCPUSeconds()
        let started = DispatchTime.now().uptimeNanoseconds
        try process.run()
        let peak = Mutex(0), peakDescriptors = Mutex(0)
        let watching = Atomic<Bool>(true)
        let watcher = Thread {
            while watching.load(ordering: .relaxed) {
                if let kilobytes = peakResidentKilobytes(process.processIdentifier) { peak.withLock { $0 = max($0, kilobytes * 1024) } }
                if countDescriptors, let open = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(process.processIdentifier)/fd").count {
                    peakDescriptors.withLock { $0 = max($0, open) }
                }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        watcher.start()
        process.waitUntilExit()
        watching.store(false, ordering: .relaxed)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let cpu = childrenCPUSeconds() - cpuBefore
        let database = try PurserDatabase.open(path: path)
        return CommandFigures(
            seconds: seconds, stored: Int(try database.scalarInt("SELECT count(*) FROM results") ?? 0),
            failed: Int(try database.scalarInt("SELECT count(*) FROM requests WHERE state = 'failed'") ?? 0), exitCode: process.terminationStatus,
            cpuSeconds: cpu, peakMemoryBytes: peak.withLock { $0 }, peakDescriptors: peakDescriptors.withLock { $0 })
    }

    /// The peak resident set of process `id` so far (`VmHWM` in /proc), in KiB; nil once it has exited.
    static func peakResidentKilobytes(_ id: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(id)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return nil }
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }

    /// Submits `calls` requests for the fake model to a fresh database and serves them all with `purser run`'s
    /// dispatcher in this process (for the figures that need its summary).
    static func purserRun(
        port: Int, calls: Int, concurrency: Int, work: String, catalog: PricingCatalog, adjust: (inout RunOptions) -> Void = { _ in }
    ) async throws -> RunFigures {
        let path = work + "/dispatch.db"
        try submitJob(calls: calls, path: path, work: work, catalog: catalog)
        var options = RunOptions(worker: "bench")
        options.concurrency = concurrency
        options.timeoutSeconds = 60
        adjust(&options)
        let environment = ["FAKE_KEY": "bench"]
        let dispatcher = Dispatcher(
            storage: try DispatchStore(path: path, owner: "bench").storage,
            caller: HTTPProviderClient(environment: environment),
            catalog: catalog, environment: environment, options: options, onEvent: { _ in })
        let started = DispatchTime.now().uptimeNanoseconds
        let summary = try await dispatcher.run()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let stored = Int(try PurserDatabase.open(path: path).scalarInt("SELECT count(*) FROM results") ?? 0)
        return RunFigures(seconds: seconds, stored: stored, failed: summary.failed, summary: summary)
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// What the plain client (`scripts/plain_client.py`, Python's asyncio streams) did with `calls` calls, `inFlight` at once.
    struct PlainFigures {
        /// From the start of its loop of calls to their end, as the client times itself.
        var seconds: Double
        /// From launching the process to its exit, as `commandRun` times `purser run`: the interpreter's start included.
        var processSeconds: Double
        var cpuSeconds: Double
        var answers: Int
        var errors: Int
    }

    static func plainClient(port: Int, calls: Int, inFlight: Int, work: String) throws -> PlainFigures {
        let script = "scripts/plain_client.py"
        guard FileManager.default.fileExists(atPath: script) else { throw Problem("\(script) is missing: run the benchmark from the repository's folder") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, String(port), String(calls), String(inFlight)]
        let output = work + "/plain-client.json"
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardOutput = handle
        process.standardError = FileHandle.nullDevice
        let started = DispatchTime.now().uptimeNanoseconds
        try process.run()
        process.waitUntilExit()
        let processSeconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        try handle.close()
        let text = try String(contentsOf: URL(fileURLWithPath: output), encoding: .utf8)
        guard process.terminationStatus == 0, let figures = try JSONParser.parse(text.trimmingCharacters(in: .whitespacesAndNewlines)).objectValue else {
            throw Problem("the plain client failed (exit \(process.terminationStatus)): \(text.prefix(300))")
        }
        func number(_ key: String) -> Double { figures[key].flatMap { value -> Double? in if case .number(let text) = value { Double(text) } else { nil } } ?? 0 }
        return PlainFigures(seconds: number("seconds"), processSeconds: processSeconds, cpuSeconds: number("cpu_seconds"), answers: Int(number("answers")), errors: Int(number("errors")))
    }
}
