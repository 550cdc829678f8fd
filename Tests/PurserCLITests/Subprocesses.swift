import Foundation
import Synchronization
import Testing
import PurserCore
@testable import PurserSQLite
#if canImport(FoundationNetworking)
import FoundationNetworking
import TestSupport
#endif

// What the integration tests share: the real executables run as child processes, the fake provider, and
// pricing tables pointing at it.

/// Where `swift build` put the executables (beside the test runner).
let products: URL = {
    let runner = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
    var directory = runner.deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("purser").path), directory.path != "/" {
        directory = directory.deletingLastPathComponent()
    }
    return directory
}()

/// The fake provider as a child process on 127.0.0.1, stopped when the test ends.
final class FakeProviderProcess {
    let process = Process()
    let host: String
    let port: Int

    init(_ arguments: [String]) throws {
        process.executableURL = products.appendingPathComponent("purser-fake-provider")
        process.arguments = ["--max-seconds", "120"] + arguments
        // A file, not a pipe: pipes leak into other tests' children and then never reach end of file.
        let output = testFiles.appendingPathComponent("fake-provider-\(UUID().uuidString).txt")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: output)
        try process.run()
        var line = ""
        for _ in 0..<200 where !line.contains("\n") {
            Thread.sleep(forTimeInterval: 0.01)
            line = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        }
        guard let port = Int(line.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").last ?? "") else {
            process.terminate()
            throw Problem("fake provider did not start: \(line)")
        }
        self.port = port
        host = line.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").last?.split(separator: ":").first.map(String.init) ?? "127.0.0.1"
    }

    deinit { stop() }

    /// SIGKILL: a child may inherit an ignored SIGTERM from the test runner.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// `/stats`: calls in all and per request, and retries made before their Retry-After.
    func stats() throws -> JSONObject {
        let data = try Data(contentsOf: URL(string: "http://\(host):\(port)/stats")!)
        return try #require(try JSONParser.parse(Array(data)).objectValue)
    }
}

/// A pricing folder whose two providers (one per dialect) point at the fake server.
func fakePricing(port: Int, batches: Bool = false, tiers: ((String) -> String)? = nil) throws -> String {
    let directory = testFiles.appendingPathComponent("purser-fake-pricing-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let tiersText = try String(contentsOf: products.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("pricing/tiers.json"), encoding: .utf8)
    try (tiers.map { $0(tiersText) } ?? tiersText).write(to: directory.appendingPathComponent("tiers.json"), atomically: true, encoding: .utf8)
    try """
        {"providers": [
         {"name": "fakeopenai", "dialect": "openai", "base_url": "http://127.0.0.1:\(port)/v1", "api_key_env": "FAKE_KEY", "batch_api": \(batches)},
         {"name": "fakeanthropic", "dialect": "anthropic", "base_url": "http://127.0.0.1:\(port)", "api_key_env": "FAKE_KEY", "batch_api": \(batches)}
        ]}
        """.write(to: directory.appendingPathComponent("providers.json"), atomically: true, encoding: .utf8)
    // Batch prices at half the list prices, as the providers sell them.
    func half(_ price: String) -> String { (try? Money(usd: price)).map { Money(picoUSD: $0.picoUSD / 2).exactUSD } ?? price }
    func model(_ provider: String, _ name: String, _ input: String, _ output: String) -> String {
        """
        {"id": "\(provider)/\(name)", "provider": "\(provider)", "model": "\(name)", "prices": {"input": "\(input)", "output": "\(output)"},
         "batch_prices": {"input": "\(half(input))", "output": "\(half(output))"},
         "context_window": 100000, "max_output_tokens": 8000, "quality": {"score": 70, "source": "test"}, "capabilities": ["tools", "json_mode", "vision"],
         "rate_limits": {"requests_per_minute": 1000000, "tokens_per_minute": 1000000000}, "speed": {"time_to_first_token_ms": 50, "output_tokens_per_second": 1000},
         "price_date": "2026-11-24", "price_source": "https://example.com/prices"}
        """
    }
    try """
        {"models": [\(model("fakeopenai", "small", "0.1", "0.4")), \(model("fakeanthropic", "medium", "1", "5"))]}
        """.write(to: directory.appendingPathComponent("models.json"), atomically: true, encoding: .utf8)
    return directory.path
}

/// The bundled tables with every provider's endpoint on the fake (its own path kept, so each dialect's calls reach
/// their route) and its key in FAKE_KEY; no batches, so everything is served live.
func bundledPricingOnFake(port: Int) throws -> String {
    let source = products.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("pricing")
    let directory = testFiles.appendingPathComponent("purser-bundled-on-fake-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    for name in try FileManager.default.contentsOfDirectory(atPath: source.path) where name.hasSuffix(".json") {
        var text = try String(contentsOf: source.appendingPathComponent(name), encoding: .utf8)
        if name == "providers.json" {
            text = text.replacingOccurrences(of: #"https?://[^/"]+"#, with: "http://127.0.0.1:\(port)", options: .regularExpression)
                .replacingOccurrences(of: #""api_key_env": "[A-Z_]+""#, with: #""api_key_env": "FAKE_KEY""#, options: .regularExpression)
                .replacingOccurrences(of: #""batch_api": (true|"[a-z]+")"#, with: #""batch_api": false"#, options: .regularExpression)
        } else if var document = try JSONParser.parse(text).objectValue, let models = document["models"]?.arrayValue {
            // The fake has no off-peak hours: a run on it never waits (in real time) for DeepSeek's.
            document["models"] = .array(models.map { model in
                guard var object = model.objectValue else { return model }
                object["discount_windows"] = nil
                return .object(object)
            })
            text = JSONWriter.string(.object(document))
        }
        try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }
    return directory.path
}

/// Runs the real `purser` executable (or `executable`, such as the kill tests' `purser-crash-test`) and waits for it.
@discardableResult
func purser(
    _ arguments: [String], database: String, pricing: String, key: String? = "test-key", environment extra: [String: String] = [:],
    executable: String = "purser"
) async throws -> (code: Int32, out: String, error: String) {
    let process = purserProcess(arguments, database: database, pricing: pricing, key: key, environment: extra, executable: executable)
    // Files, not pipes: a pipe leaks into children other tests start meanwhile and then never reaches end of file.
    let directory = testFiles
    let out = directory.appendingPathComponent("purser-out-\(UUID().uuidString)"), error = directory.appendingPathComponent("purser-err-\(UUID().uuidString)")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    _ = FileManager.default.createFile(atPath: error.path, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: out)
    process.standardError = try FileHandle(forWritingTo: error)
    try process.run()
    await exited(process)
    let outData = try Data(contentsOf: out), errorData = try Data(contentsOf: error)
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
}

/// The real `purser` executable, not started, on the test's database and tables, with the fake's key.
private func purserProcess(
    _ arguments: [String], database: String, pricing: String, key: String?, environment extra: [String: String], executable: String = "purser"
) -> Process {
    let process = Process()
    process.executableURL = products.appendingPathComponent(executable)
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    environment["PURSER_DB"] = database
    environment["PURSER_PRICING"] = pricing
    environment["FAKE_KEY"] = key
    for (name, value) in extra { environment[name] = value }
    process.environment = environment
    return process
}

/// Waits for a child process to end without holding a thread: the tests share a pool of as many threads as
/// cores, and a test blocked in `waitUntilExit` keeps every other test off its thread meanwhile.
func exited(_ process: Process) async {
    while process.isRunning {
        do { try await Task.sleep(nanoseconds: 5_000_000) } catch { break }
    }
    process.waitUntilExit()
}

/// Waits in a test without holding a thread (see `exited`).
func pause(seconds: Double) async {
    do { try await Task.sleep(nanoseconds: UInt64(seconds * 1e9)) } catch {}
}

/// Starts the real `purser` executable without waiting for it; its error output goes to `errorLog` when given.
func startPurser(_ arguments: [String], database: String, pricing: String, errorLog: URL? = nil) throws -> Process {
    let process = purserProcess(arguments, database: database, pricing: pricing, key: "test-key", environment: [:])
    process.standardOutput = FileHandle.nullDevice
    if let errorLog {
        _ = FileManager.default.createFile(atPath: errorLog.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: errorLog)
    } else {
        process.standardError = FileHandle.nullDevice
    }
    try process.run()
    return process
}

/// A job of `count` lines, split between the two dialects, each naming a fake model.
func jobFile(_ count: Int, model: (Int) -> String = { $0 % 3 == 0 ? "medium" : "small" }) throws -> String {
    let path = testFiles.appendingPathComponent("purser-job-\(UUID().uuidString).jsonl").path
    var text = ""
    for index in 0..<count {
        let name = model(index)
        if index % 2 == 0 {
            text += #"{"custom_id": "r\#(index)", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "\#(name)", "messages": [{"role": "user", "content": "Question \#(index)"}], "max_tokens": 20}, "pin": true}"# + "\n"
        } else {
            text += #"{"custom_id": "r\#(index)", "params": {"model": "\#(name)", "max_tokens": 20, "messages": [{"role": "user", "content": "Question \#(index)"}]}, "pin": true}"# + "\n"
        }
    }
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

func temporaryDatabase() -> String {
    testFiles.appendingPathComponent("purser-dispatch-\(UUID().uuidString).db").path
}

/// Rows of a query against the test's database, through the same SQLite the product uses.
func query(_ database: String, _ sql: String) throws -> [[String]] {
    let connection = try PurserDatabase.open(path: database)
    return try connection.statement(sql).rows { row in (0..<8).map { row.optionalText(Int32($0)) ?? "" } }
}

/// Reads the ledger from a connection of its own, as often as it can, while runs write to it: the most
/// that charges plus reservations ever came to, and the most reservations seen at once.
final class LedgerSampler: Sendable {
    struct Findings: Sendable {
        var samples = 0
        var highest: Int64 = 0
        var mostReservations = 0
    }

    private let findings = Mutex(Findings())
    private let stopped = Mutex(false)
    private let finished = DispatchSemaphore(value: 0)

    init(database: String) {
        Thread.detachNewThread { [self] in
            defer { finished.signal() }
            guard let connection = try? PurserDatabase.open(path: database) else { return }
            while !stopped.withLock({ $0 }) {
                // One read transaction: charges and reservations as of the same instant.
                let sample = try? connection.readTransaction {
                    try connection.statement("""
                        SELECT (SELECT coalesce(sum(cost_pico), 0) FROM results) + (SELECT coalesce(sum(amount_pico), 0) FROM reservations),
                            (SELECT count(*) FROM reservations)
                        """).firstRow { ($0.int64(0), $0.int(1)) }
                }
                if let (total, reservations) = sample ?? nil {
                    findings.withLock { findings in
                        findings.samples += 1
                        findings.highest = max(findings.highest, total)
                        findings.mostReservations = max(findings.mostReservations, reservations)
                    }
                }
            }
        }
    }

    func stop() -> Findings {
        stopped.withLock { $0 = true }
        finished.wait()
        return findings.withLock { $0 }
    }
}


// MARK: - Batch jobs

/// Tables on the fake whose batches are pulled back 10 s before a 20-minute deadline's live call (time enough for
/// a slow machine to plan and send the batch first): the deadline less a live call less the pull-back (1190 s).
func pulledBackSoonPricing(port: Int) throws -> String {
    try fakePricing(port: port, batches: true) { tiers in tiers.replacingOccurrences(of: "\"pull_back\": \"15m\"", with: "\"pull_back\": \"1190s\"") }
}

/// Five batches of `model` that finished within a second: the evidence that makes a speculative batch worth planning.
func recordQuickBatches(_ database: String, model: String = "fakeopenai/small", provider: String = "fakeopenai") throws {
    let connection = try PurserDatabase.open(path: database)
    for index in 0..<5 {
        try connection.execute("""
            INSERT INTO batches (key, provider, model, dialect, simulated, state, request_count, planned_at, submitted_at, ended_at, pull_back_at,
                provider_status)
            VALUES ('seen-\(index)', '\(provider)', '\(model)', 'openai', 0, 'done', 1, 0, 1000, 2000, 0, 'completed')
            """)
    }
}

/// A job of `count` minimal lines for one fake model, with `deadline` (a `week` goes by batch).
func batchJob(_ count: Int, model: String, deadline: String = "week") throws -> String {
    let path = testFiles.appendingPathComponent("purser-batch-job-\(UUID().uuidString).jsonl").path
    let lines = (0..<count).map { #"{"custom_id": "user-\#($0)", "prompt": "Question \#($0)", "max_tokens": 20, "model": "\#(model)", "pin": true, "deadline": "\#(deadline)"}"# }
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

func integer(_ database: String, _ sql: String) throws -> Int { Int(try query(database, sql)[0][0]) ?? -1 }

/// The fake's count of lines submitted in batches for each provider custom id.
func linesPerCustomID(_ server: FakeProviderProcess) throws -> [String: Int] {
    Dictionary(uniqueKeysWithValues: (try server.stats()["batch_lines"]?.objectValue?.members ?? []).map { ($0.key, $0.value.intValue ?? 0) })
}

/// The fake's count of lines submitted in batches for each request: a provider custom id is the database's id, the
/// batch's and the request's (`DB_BATCH_REQUEST`), so lines are added up by what follows its last `_`.
func linesPerRequest(_ server: FakeProviderProcess) throws -> [String: Int] {
    var lines: [String: Int] = [:]
    for (customID, count) in try linesPerCustomID(server) { lines[String(customID.split(separator: "_").last ?? ""), default: 0] += count }
    return lines
}

/// Everything stored adds up: one result per request, costs equal to the job's charges, no reservation left.
func expectBooksBalance(_ database: String, requests: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == requests, sourceLocation: sourceLocation)
    #expect(try integer(database, "SELECT count(DISTINCT request_id) FROM results") == requests, sourceLocation: sourceLocation)
    #expect(try integer(database, "SELECT count(*) FROM results") == requests, sourceLocation: sourceLocation)
    #expect(try query(database, "SELECT sum(cost_pico) FROM results")[0][0] == (try query(database, "SELECT sum(charged_pico) FROM job_charges")[0][0]),
        sourceLocation: sourceLocation)
    #expect(try integer(database, "SELECT count(*) FROM reservations") == 0, sourceLocation: sourceLocation)
    #expect(try integer(database, "SELECT count(*) FROM batches WHERE state != 'done'") == 0, sourceLocation: sourceLocation)
    // The input history kept as results land says what the results themselves say, once each.
    #expect(try query(database, "SELECT provider, simulated, results, estimated_tokens, reported_tokens FROM input_history ORDER BY 1, 2")
        == (try query(database, """
            SELECT s.provider, s.simulated, count(*), sum(r.input_tokens), sum(s.input_tokens + s.cached_input_tokens + s.cache_write_tokens)
            FROM results s JOIN requests r ON r.id = s.request_id GROUP BY 1, 2 ORDER BY 1, 2
            """)), sourceLocation: sourceLocation)
}


/// The official SDKs' python (.build/sdk-venv), made on first use by scripts/sdk-venv.sh (PyPI is one of the
/// registries this machine reaches).
func sdkPython() async throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = [repository.appendingPathComponent("scripts/sdk-venv.sh").path]
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    await exited(process)
    try #require(process.terminationStatus == 0, "scripts/sdk-venv.sh could not install the pinned SDKs")
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// Runs a python file with the SDKs' python, in `folder` when given, with `environment` added: its exit code and
/// what it wrote (both streams, in a file: a pipe would leak into other tests' children).
func runPython(_ file: String, _ arguments: [String], in folder: URL? = nil, environment extra: [String: String] = [:]) async throws -> (code: Int32, out: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try await sdkPython())
    process.arguments = [file] + arguments
    if let folder { process.currentDirectoryURL = folder }
    var environment = ProcessInfo.processInfo.environment
    // What the SDKs and the browser keep for themselves (Chromium's profile) goes with the tests' files.
    environment["TMPDIR"] = testFiles.path
    for (name, value) in extra { environment[name] = value }
    process.environment = environment
    let output = testFiles.appendingPathComponent("python-\(UUID().uuidString).txt")
    _ = FileManager.default.createFile(atPath: output.path, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: output)
    process.standardError = process.standardOutput
    try process.run()
    await exited(process)
    return (process.terminationStatus, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
}

/// Runs the tests that time themselves against the clock (PlanKeptTests, whose runs must start soon after their plans)
/// one at a time with the heaviest tests (the SDK and browser tests of `purser serve`), so that a browser starting on
/// one core does not make the other late. Waiting holds no thread.
actor HeavyTestGate {
    static let shared = HeavyTestGate()
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        guard busy else { busy = true; return }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
    }
}

func alone<T>(_ body: () async throws -> T) async rethrows -> T {
    await HeavyTestGate.shared.acquire()
    do {
        let value = try await body()
        await HeavyTestGate.shared.release()
        return value
    } catch {
        await HeavyTestGate.shared.release()
        throw error
    }
}
