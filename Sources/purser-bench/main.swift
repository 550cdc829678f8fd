import Foundation
import PurserCore
import SQLiteStore

// purser-bench [--lines N] [--pricing DIR] [--work DIR]
// Measures SPEC §10's ingest and plan bars in a release build, each figure beside the ceiling
// measured in the same run. Run: swift run -c release purser-bench

struct Bench {
    var lines = 1_000_000
    var pricing = "pricing"
    var work = FileManager.default.temporaryDirectory.appendingPathComponent("purser-bench").path
    /// `all`; `plan` to time planning alone against the database the last full run stored; `dispatch` for the dispatch figures alone.
    var phase = "all"
    var dispatchCalls = 5_000

    init(arguments: [String]) {
        var index = 0
        while index + 1 < arguments.count {
            switch arguments[index] {
            case "--lines": lines = Int(arguments[index + 1]) ?? lines
            case "--pricing": pricing = arguments[index + 1]
            case "--work": work = arguments[index + 1]
            case "--phase": phase = arguments[index + 1]
            case "--dispatch-calls": dispatchCalls = Int(arguments[index + 1]) ?? dispatchCalls
            default: break
            }
            index += 2
        }
    }
}

/// Peak resident memory since the last reset, in MiB (Linux's VmHWM).
func peakMemoryMiB() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
        let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
    else { return -1 }
    return kilobytes / 1024
}

/// Resets the peak so that each phase reports its own.
func resetPeakMemory() {
    try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func row(_ name: String, _ figure: String, _ comparison: String) {
    print(name.padding(toLength: 38, withPad: " ", startingAt: 0) + figure.padding(toLength: 22, withPad: " ", startingAt: 0) + comparison)
}

func rate(_ count: Int, _ time: Double) -> String { "\(Int(Double(count) / time).formatted()) lines/s" }

let bench = Bench(arguments: Array(CommandLine.arguments.dropFirst()))
try FileManager.default.createDirectory(atPath: bench.work, withIntermediateDirectories: true)
let catalog = try PricingCatalog.load(directory: bench.pricing)

func generate(_ count: Int, name: String) throws -> String {
    let path = bench.work + "/" + name
    if let attributes = try? FileManager.default.attributesOfItem(atPath: path), (attributes[.size] as? Int ?? 0) > 0,
        FileManager.default.fileExists(atPath: path + ".\(count)")
    {
        return path
    }
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    let handle = FileHandle(forWritingAtPath: path)!
    var generator = JobFileGenerator(seed: 42, shapes: .openai)
    var chunk = ""
    for index in 0..<count {
        chunk += generator.line(index)
        chunk += "\n"
        if chunk.utf8.count > 4 << 20 { handle.write(Data(chunk.utf8)); chunk = "" }
    }
    handle.write(Data(chunk.utf8))
    try handle.close()
    _ = FileManager.default.createFile(atPath: path + ".\(count)", contents: nil)
    return path
}

func freshDatabase(_ name: String) throws -> Database {
    let path = bench.work + "/" + name
    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    return try PurserDatabase.open(path: path)
}

if bench.phase != "dispatch" {
let file = try generate(bench.lines, name: "openai-\(bench.lines).jsonl")
let fileBytes = (try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
print("Purser benchmark: \(bench.lines.formatted()) OpenAI-batch lines, \(fileBytes / 1_000_000) MB, \(ProcessInfo.processInfo.activeProcessorCount) cores")
print()

var parsed = 0, parseTime = 0.0, insertTime = 0.0
var quarter = (seconds: 0.0, peakMiB: 0, requests: 0), whole = (seconds: 0.0, peakMiB: 0, requests: 0)
let ingestDatabase: Database
if bench.phase == "plan" {
    ingestDatabase = try PurserDatabase.open(path: bench.work + "/ingest.db")
} else {
    // Ceiling 1: parsing alone, with the parser ingestion uses.
    parseTime = try seconds {
        let reader = try JobFileReader(path: file)
        while let line = try reader.nextLine() {
            if case .text(_, let bytes) = line, (try? JSONParser.parse(bytes)) != nil { parsed += 1 }
        }
    }
    // Ceiling 2: bare SQLite inserts of the same number of rows and bytes, no parsing.
    do {
    let sampleBody = String(repeating: "x", count: max(1, fileBytes / max(bench.lines, 1) - 120))
    let insertDatabase = try freshDatabase("ceiling.db")
    try insertDatabase.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, job INTEGER, custom_id TEXT, a INTEGER, b INTEGER, c INTEGER, d TEXT, UNIQUE (job, custom_id)); CREATE TABLE bodies (id INTEGER PRIMARY KEY, body TEXT)")
    insertTime = try seconds {
        try insertDatabase.writeTransaction {
            let insert = try insertDatabase.statement("INSERT INTO t (job, custom_id, a, b, c, d) VALUES (1, ?, ?, ?, ?, 'queued')")
            let body = try insertDatabase.statement("INSERT INTO bodies (id, body) VALUES (?, ?)")
            for index in 0..<bench.lines {
                try insert.execute([.text("req-\(index)"), .int(index), .int(index * 7), .int(500)])
                try body.execute([.integer(insertDatabase.lastInsertRowID), .text(sampleBody)])
            }
        }
    }
    }  // the ceiling's database closes here, before ingest is measured

    // Ingest: the real submit path (stream, parse, validate, estimate, store), measured for a quarter of the
    // file and the whole, to show memory does not grow with size.
    func ingest(_ path: String, _ database: Database) throws -> (seconds: Double, peakMiB: Int, requests: Int) {
        resetPeakMemory()
        var requests = 0
        let time = try seconds {
            let jobs = try JobSubmitter(database: database, catalog: catalog).submit(files: [path], options: SubmitOptions(force: true))
            requests = jobs[0].job.requestCount
        }
        return (time, peakMemoryMiB(), requests)
    }
    let quarterFile = try generate(bench.lines / 4, name: "openai-\(bench.lines / 4).jsonl")
    quarter = try ingest(quarterFile, try freshDatabase("ingest-quarter.db"))
    ingestDatabase = try freshDatabase("ingest.db")
    whole = try ingest(file, ingestDatabase)

}

// Plan: load every stored request, plan, and write the plan back.
resetPeakMemory()
var plan: Plan?
var loadTime = 0.0, solveTime = 0.0, saveTime = 0.0
let planStore = PlanStore(database: ingestDatabase)
let context = PlanningContext(
    catalog: catalog, now: Int64(Date().timeIntervalSince1970 * 1000), usableProviders: Set(catalog.providers.keys))
var requests: [PlannableRequest] = []
loadTime = try seconds { requests = try planStore.plannableRequests(jobs: [1]) }
solveTime = seconds { plan = Planner(context: context).plan(requests) }
saveTime = try seconds { try planStore.save(plan!, jobs: [1], now: context.now) }
let planPeak = peakMemoryMiB()
let planTime = loadTime + solveTime + saveTime

row("figure", "measured", "compared with")
if bench.phase != "plan" {
row("parse only (ceiling)", rate(parsed, parseTime), "-")
row("SQLite insert only (ceiling)", rate(bench.lines, insertTime), "-")
row("ingest end to end", rate(whole.requests, whole.seconds),
    "bar ≥ 100,000 lines/s; \(Int(100 * (Double(whole.requests) / whole.seconds) / (Double(parsed) / parseTime)))% of parse-only, \(Int(100 * (Double(whole.requests) / whole.seconds) / (Double(bench.lines) / insertTime)))% of insert-only")
row("ingest peak memory (whole file)", "\(whole.peakMiB) MiB", "bar ≤ 200 MB; a quarter of the file peaked at \(quarter.peakMiB) MiB")
row("ingest a quarter of the file", rate(quarter.requests, quarter.seconds), "-")
}
row("plan \(requests.count.formatted()) requests", String(format: "%.2f s", planTime),
    String(format: "bar ≤ 5 s (load %.2f s, solve %.2f s, save %.2f s)", loadTime, solveTime, saveTime))
row("plan peak memory", "\(planPeak) MiB", "-")
if let plan {
    print()
    print("plan: \(plan.mix.count) model/mode lines, estimated \(plan.estimatedCost.formatted) against a baseline of \(plan.baselineCost.formatted); unplaced \(plan.unplaced); lower bound \(plan.lowerBound.formatted), optimal: \(plan.isOptimal)")
}
}

// Dispatch: against the fake provider at zero latency, alternating with raw URLSession so both see the
// same machine; then 1,000 calls in flight at 1 s latency, again beside raw URLSession.
if bench.phase == "all" || bench.phase == "dispatch" {
    print()
    let calls = bench.dispatchCalls
    let fast = try DispatchBench.FakeServer(latencyMilliseconds: 0)
    let fastCatalog = DispatchBench.catalog(port: fast.port, tiers: catalog.tiers)
    _ = DispatchBench.rawSeconds(port: fast.port, calls: 500, concurrency: 64)
    var rawRates: [Double] = [], purserRates: [Double] = []
    var stored = 0, failed = 0
    for _ in 0..<5 {
        rawRates.append(Double(calls) / DispatchBench.rawSeconds(port: fast.port, calls: calls, concurrency: 64))
        let run = try await DispatchBench.purserRun(port: fast.port, calls: calls, concurrency: 64, work: bench.work, catalog: fastCatalog)
        purserRates.append(Double(run.stored) / run.seconds)
        stored += run.stored
        failed += run.failed
    }
    fast.stop()
    let raw = DispatchBench.median(rawRates), purser = DispatchBench.median(purserRates)
    // Each round's ratio compares runs seconds apart; the median of those is steadier than a ratio of medians.
    let ratio = DispatchBench.median(zip(purserRates, rawRates).map { $0 / $1 })
    let rounds = zip(purserRates, rawRates).map { "\(Int($0))/\(Int($1))" }.joined(separator: ", ")
    row("raw URLSession, 0 ms, 64 at once", "\(Int(raw).formatted()) calls/s", "median of 5 rounds of \(calls.formatted()) calls")
    row("purser run, 0 ms, 64 workers", "\(Int(purser).formatted()) calls/s",
        "bar ≥ 80% of raw: median round \(Int(100 * ratio))% (purser/raw: \(rounds)); \(stored) results stored, \(failed) failed")

    let wave = 1_000, slowCalls = 3_000
    let rawServer = try DispatchBench.FakeServer(latencyMilliseconds: 1_000)
    let rawSlow = DispatchBench.rawSeconds(port: rawServer.port, calls: slowCalls, concurrency: wave)
    let rawPeak = rawServer.peakInFlight()
    rawServer.stop()
    let slow = try DispatchBench.FakeServer(latencyMilliseconds: 1_000)
    let slowRun = try await DispatchBench.purserRun(
        port: slow.port, calls: slowCalls, concurrency: wave, work: bench.work, catalog: DispatchBench.catalog(port: slow.port, tiers: catalog.tiers))
    let purserPeak = slow.peakInFlight()
    slow.stop()
    row("raw URLSession, 1 s, 1,000 at once", String(format: "%.2f s", rawSlow), "\(slowCalls.formatted()) calls; at most \(rawPeak) in flight; ideal 3.00 s")
    row("purser run, 1 s, 1,000 workers", String(format: "%.2f s", slowRun.seconds),
        "\(slowCalls.formatted()) calls; at most \(purserPeak) in flight; \(slowRun.stored) results stored, \(slowRun.failed) failed")
}
