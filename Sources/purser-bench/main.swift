import Foundation
import PurserCore
import PurserSQLite
import SQLiteStore

// purser-bench [--lines N] [--pricing DIR] [--work DIR]
// Measures SPEC §10's ingest and plan bars in a release build, each figure beside the ceiling
// measured in the same run. Run (README, Benchmark): swift build -c release --static-swift-stdlib --scratch-path .build-static,
// then .build-static/release/purser-bench

struct Bench {
    var lines = 1_000_000
    var pricing = "pricing"
    var work = FileManager.default.temporaryDirectory.appendingPathComponent("purser-bench").path
    /// `all`; `plan` to time planning alone against the database the last full run stored; `dispatch` for the dispatch figures alone.
    var phase = "all"
    var dispatchCalls = 5_000
    var batchRequests = 100_000
    /// For `--phase crosscheck`: instance sizes and how many of each.
    var sizes = [500, 1_000, 2_000, 5_000]
    var instances = 3
    var sizesGiven = false, instancesGiven = false
    /// For `--phase estimate`: requests in the calibration sample (half learn, half are measured).
    var estimateLines = 40_000

    static let usage = """
        OVERVIEW: Purser's benchmark: each figure beside its bar and the ceilings measured in the same run (release build).

        USAGE: purser-bench [--phase all|ingest|plan|dispatch|inflight|most|faults|batch|service|caching|estimate|hard|crosscheck] [--lines N] [--dispatch-calls N]
                            [--batch-requests N] [--sizes N,N,...] [--instances N] [--pricing DIR] [--work DIR]

        OPTIONS:
          --phase <phase>         all (default): ingest, plan and dispatch; ingest: ingest and plan; plan: plan what the last
                                  ingest stored; dispatch: dispatch alone; inflight: CPU per answer at 100, 1,000 and 5,000 calls in
                                  flight (5 s a call) beside a plain asyncio client, then the most it holds over HTTP/1.1 and 20,000 over HTTP/2 (nginx); most: those last two alone; faults: the fault mix beside a plain retrying loop;
                                  batch: a week-long job through the fake batch API; service: purser serve through
                                  the official SDK beside purser submit, and pollers beside calls in flight; caching: a
                                  prefix-heavy job through the caching fake, cache-aware and cache-blind; estimate: input-token estimates
                                  before and after calibration; hard: plan every kind of hard instance
                                  (1,500 to 100,000 requests) and print time, gap and bound; crosscheck:
                                  write planning instances for scripts/crosscheck-planner.sh
          --lines <n>             lines to generate and ingest (default: 1000000)
          --dispatch-calls <n>    calls per dispatch round (default: 5000)
          --batch-requests <n>    requests in the batch job (default: 100000)
          --sizes <n,n,...>       crosscheck instance sizes (default: 500,1000,2000,5000)
          --instances <n>         crosscheck instances of each size (default: 3)
          --pricing <dir>         the pricing tables (default: pricing)
          --work <dir>            where files and databases go (default: a folder in the temporary directory)
          -h, --help              Show help information.
        """

    init(arguments: [String]) {
        if arguments.contains("--help") || arguments.contains("-h") {
            print(Bench.usage)
            exit(0)
        }
        let known = ["--lines", "--pricing", "--work", "--phase", "--dispatch-calls", "--sizes", "--instances", "--batch-requests"]
        for (index, argument) in arguments.enumerated() where index % 2 == 0 && !known.contains(argument) {
            FileHandle.standardError.write(Data("Error: Unknown option '\(argument)'.\nUsage: purser-bench --help\n".utf8))
            exit(64)
        }
        if arguments.count % 2 == 1 {
            FileHandle.standardError.write(Data("Error: Missing value for '\(arguments.last!)'.\nUsage: purser-bench --help\n".utf8))
            exit(64)
        }
        var index = 0
        while index + 1 < arguments.count {
            switch arguments[index] {
            case "--lines": lines = Int(arguments[index + 1]) ?? lines
            case "--pricing": pricing = arguments[index + 1]
            case "--work": work = arguments[index + 1]
            case "--phase": phase = arguments[index + 1]
            case "--dispatch-calls": dispatchCalls = Int(arguments[index + 1]) ?? dispatchCalls
            case "--sizes":
                sizes = arguments[index + 1].split(separator: ",").compactMap { Int($0) }
                sizesGiven = true
            case "--instances":
                instances = Int(arguments[index + 1]) ?? instances
                instancesGiven = true
            case "--batch-requests": batchRequests = Int(arguments[index + 1]) ?? batchRequests
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

/// glibc's malloc_trim (malloc.h, which Swift's Glibc module leaves out).
@_silgen_name("malloc_trim") func mallocTrim(_ pad: Int) -> Int32

/// Resets the peak so that each phase reports its own: freed memory is first handed back to the system
/// (glibc keeps it otherwise, and the next phase's peak would start from the last one's).
func resetPeakMemory() {
    _ = mallocTrim(0)
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
// The live and batch phases run the real executables beside this one.
if ["all", "dispatch", "inflight", "most", "faults", "batch", "service", "caching"].contains(bench.phase) {
    // The fake server and the clients hold thousands of sockets: the children inherit the raised limit.
    _ = OpenFileLimit.raised()
    let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    // How the README builds the products the benchmark runs: purser as scripts/install.sh builds it.
    let installedBuild = "swift build -c release --static-swift-stdlib --scratch-path .build-static"
    let missing = ["purser", "purser-fake-provider"].filter { !FileManager.default.isExecutableFile(atPath: folder.appendingPathComponent($0).path) }
    if !missing.isEmpty {
        FileHandle.standardError.write(Data((
            "Error: --phase \(bench.phase) runs \(missing.joined(separator: " and ")) from \(folder.path), where \(missing.count == 1 ? "it is" : "they are") missing; "
            + "build every product first with '\(installedBuild)' (as scripts/install.sh builds purser).\n").utf8))
        exit(1)
    }
    // A purser that loads the Swift runtime as shared libraries resolves its symbols at every start and calls it through a
    // table, so it is slower at 0 ms than the binary scripts/install.sh builds, which links it in (README, Benchmark).
    let purser = folder.appendingPathComponent("purser").path
    if let binary = FileManager.default.contents(atPath: purser), binary.range(of: Data("libswiftCore.so".utf8)) != nil {
        print("note: \(purser) loads the Swift runtime as shared libraries; the installed purser links it in. To measure that one, "
            + "build with '\(installedBuild)' and run .build-static/release/purser-bench.\n")
    }
}
/// Submission and planning happen at a fixed moment, so runs compare: Tuesday 2026-11-24 02:00 UTC, 10:00 in
/// Beijing, DeepSeek's peak hours, with its half-price window opening at 04:00 UTC.
let benchNow: Int64 = 1_795_485_600_000
try FileManager.default.createDirectory(atPath: bench.work, withIntermediateDirectories: true)
let catalog: PricingCatalog
do { catalog = try PricingCatalog.load(directory: bench.pricing) } catch {
    // The usual cause: run from another folder than the repository's, where `pricing` is.
    FileHandle.standardError.write(Data("Error: \(error) (the default is ./pricing: run the benchmark from the repository's folder)\n".utf8))
    exit(1)
}

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

// Input estimates against the (simulated) providers' counts, before and after calibration.
if bench.phase == "all" || bench.phase == "estimate" {
    let figures = try EstimateBench.run(lines: bench.estimateLines, catalog: catalog, now: benchNow)
    func percent(_ basisPoints: Int64) -> String { String(format: "%.1f%%", Double(basisPoints) / 100) }
    let scales = figures.scales.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.2f", Double($0.value) / 10_000))" }.joined(separator: ", ")
    print("Input token estimates on \(figures.requests.formatted()) mixed requests (counts from the simulator's tokenizers, not real ones; "
        + "\(figures.untranslatable) lines the chosen model's dialect could not carry left out)")
    row("input estimate error, uncalibrated", "\(percent(figures.meanErrorBefore)) a request", "\(percent(figures.sumErrorBefore)) on each provider's sum")
    row("input estimate error, calibrated", "\(percent(figures.meanErrorAfter)) a request", "\(percent(figures.sumErrorAfter)) on each provider's sum; scales learnt from as many other requests: \(scales)")
    print()
    if bench.phase == "estimate" { exit(0) }
}

if bench.phase == "crosscheck" || bench.phase == "hard" {
    // `hard`: every kind of instance, from 1,500 to 100,000 requests unless --sizes says otherwise.
    let hard = bench.phase == "hard"
    try CrossCheck.write(
        sizes: hard && !bench.sizesGiven ? [1_500, 10_000, 50_000, 100_000] : bench.sizes, instances: hard && !bench.instancesGiven ? 1 : bench.instances,
        directory: bench.work + "/crosscheck", tiers: catalog.tiers, kinds: hard ? CrossCheck.Kind.allCases : [.capacity])
    exit(0)
}

if ["all", "ingest", "plan"].contains(bench.phase) {
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
            let jobs = try JobSubmitter(database: database, catalog: catalog, clock: .fixed(benchNow)).submit(files: [path], options: SubmitOptions(force: true))
            requests = jobs[0].job.requestCount
        }
        return (time, peakMemoryMiB(), requests)
    }
    let quarterFile = try generate(bench.lines / 4, name: "openai-\(bench.lines / 4).jsonl")
    quarter = try ingest(quarterFile, try freshDatabase("ingest-quarter.db"))
    ingestDatabase = try freshDatabase("ingest.db")
    whole = try ingest(file, ingestDatabase)

}

// Plan: load every stored request, plan, and write the plan back; first with the bundled limits, which bind
// (six deadlines from 15 minutes to a week, a million requests), then with every limit a thousand times larger.
struct PlanFigures {
    var load = 0.0, solve = 0.0, save = 0.0, peakMiB = 0
    var gap = ""
    /// What the plan looked like, in words (the plan itself is not kept, so each row's memory is its own).
    var details: [String] = []
    var total: Double { load + solve + save }
}
func gapText(_ plan: Plan) -> String {
    plan.isOptimal ? "gap 0 (optimal)" : "gap " + plan.gapText
}
func planStored(_ catalog: PricingCatalog) throws -> PlanFigures {
    resetPeakMemory()
    var figures = PlanFigures()
    let store = PlanStore(database: ingestDatabase)
    let context = PlanningContext(catalog: catalog, now: benchNow, usableProviders: Set(catalog.providers.keys))
    var requests: [PlannableRequest] = []
    var plan: Plan?
    figures.load = try seconds { requests = try store.plannableRequests(jobs: [1]) }
    figures.solve = seconds { plan = Planner(context: context).plan(requests) }
    figures.save = try seconds { try store.save(plan!, requests: requests, jobs: [1], now: context.now) }
    figures.peakMiB = peakMemoryMiB()
    guard let plan else { return figures }
    figures.gap = gapText(plan)
    figures.details = [
        "\(plan.count.formatted()) requests, \(plan.mix.count) model/mode lines, estimated \(plan.estimatedCost.formatted), lower bound \(plan.lowerBound.formatted), \(figures.gap); unplaced \(plan.unplaced)",
        "binding rows: \(plan.solver.requestRows) requests/min, \(plan.solver.tokenRows) tokens/min; \(plan.solver.contestedClasses) contested classes; \(plan.solver.iterations) simplex iterations\(plan.solver.linearProgramOptimal ? "" : " (stopped early)")",
        "modes: " + DispatchMode.allCases.compactMap { mode in
            let count = plan.mix.filter { $0.mode == mode }.reduce(0) { $0 + $1.requests }
            return count > 0 ? "\(mode.rawValue) \(count.formatted())" : nil
        }.joined(separator: ", "),
        "baseline \(plan.baselineCost.formatted)" + (plan.baseline.isFeasible ? "" : ", not achievable within the limits (\(plan.baseline.requestsOver.formatted()) requests over)"),
    ]
    return figures
}
var roomy = catalog
for index in roomy.models.indices {
    roomy.models[index].rateLimits.requestsPerMinute *= 1_000
    roomy.models[index].rateLimits.tokensPerMinute *= 1_000
}
let bound = try planStored(catalog)
let easy = try planStored(roomy)

row("figure", "measured", "compared with")
if bench.phase != "plan" {
row("parse only (ceiling)", rate(parsed, parseTime), "-")
row("SQLite insert only (ceiling)", rate(bench.lines, insertTime), "-")
row("ingest end to end", rate(whole.requests, whole.seconds),
    "bar ≥ 100,000 lines/s; \(Int(100 * (Double(whole.requests) / whole.seconds) / (Double(parsed) / parseTime)))% of parse-only, \(Int(100 * (Double(whole.requests) / whole.seconds) / (Double(bench.lines) / insertTime)))% of insert-only")
row("ingest peak memory (whole file)", "\(whole.peakMiB) MiB", "bar ≤ 200 MB; a quarter of the file peaked at \(quarter.peakMiB) MiB")
row("ingest a quarter of the file", rate(quarter.requests, quarter.seconds), "-")
}
for (name, figures) in [("plan 1M, limits bind", bound), ("plan 1M, ample limits", easy)] {
    row(name, String(format: "%.2f s", figures.total),
        String(format: "bar ≤ 5 s (load %.2f s, solve %.2f s, save %.2f s); ", figures.load, figures.solve, figures.save) + figures.gap)
    row("  peak memory", "\(figures.peakMiB) MiB", "bar < 400 MB")
}
for (name, figures) in [("limits bind", bound), ("ample limits", easy)] {
    print()
    print("plan (\(name)): " + figures.details.joined(separator: "\n  "))
}
}

// Dispatch: against nginx answering at once, 100 calls in flight, alternating with the plain client
// (scripts/plain_client.py) so that both see the same machine: calls answered a second, each command timed from its
// launch to its exit (Purser's start and plan, the interpreter's start), and the plain client's own loop beside. nginx
// rather than the fake provider: the fake's own CPU per call varied fourfold with the timing of the plain client's calls
// (0.05 to 0.24 ms), and the plain client's rate with it; nginx's is small and steady.
if bench.phase == "all" || bench.phase == "dispatch" {
    print()
    let calls = bench.dispatchCalls, inFlight = 100
    let fast = try NginxServer(.http1, work: bench.work)
    let fastPricing = bench.work + "/dispatch-pricing-fast"
    try fast.writePricing(pricing: bench.pricing, to: fastPricing)
    _ = try DispatchBench.plainClient(port: fast.port, calls: 500, inFlight: inFlight, work: bench.work)
    var plainRates: [Double] = [], plainLoopRates: [Double] = [], purserRates: [Double] = []
    var stored = 0, failed = 0, errors = 0
    var exitCodes: [Int32] = []
    for _ in 0..<5 {
        let plain = try DispatchBench.plainClient(port: fast.port, calls: calls, inFlight: inFlight, work: bench.work)
        plainRates.append(Double(plain.answers) / plain.processSeconds)
        plainLoopRates.append(Double(plain.answers) / plain.seconds)
        errors += plain.errors
        let run = try DispatchBench.commandRun(calls: calls, concurrency: inFlight, work: bench.work, pricing: fastPricing)
        if run.exitCode != 0 { exitCodes.append(run.exitCode) }
        purserRates.append(Double(run.stored) / run.seconds)
        stored += run.stored
        failed += run.failed
    }
    fast.stop()
    let plain = DispatchBench.median(plainRates), purser = DispatchBench.median(purserRates)
    // Each round's ratio compares runs seconds apart; the median of those is steadier than a ratio of medians.
    let ratio = DispatchBench.median(zip(purserRates, plainRates).map { $0 / $1 })
    let loopRatio = DispatchBench.median(zip(purserRates, plainLoopRates).map { $0 / $1 })
    let rounds = zip(purserRates, plainRates).map { "\(Int($0))/\(Int($1))" }.joined(separator: ", ")
    row("plain client, 0 ms, 100 in flight", "\(Int(plain).formatted()) calls/s",
        "nginx over HTTP/1.1; median of 5 rounds of \(calls.formatted()) calls, launch to exit (its own loop: \(Int(DispatchBench.median(plainLoopRates)).formatted()) calls/s); \(errors) errors")
    row("purser run, 0 ms, 100 in flight", "\(Int(purser).formatted()) calls/s",
        "launch to exit; goal ≥ the plain client's: median round \(Int(100 * ratio))% (purser/plain: \(rounds)), \(Int(100 * loopRatio))% of its own loop's; "
            + "\(stored) results stored, \(failed) failed" + (exitCodes.isEmpty ? "" : "; exit codes \(exitCodes)"))
}

// Faults: 5,000 requests, 500 at once, 50 ms a call, against a server failing 10% with 500 and 5% with 429
// (Retry-After 1 s), then against one that also leaves 2% of calls unanswered and answers 1% malformed, each beside a
// plain retrying URLSession loop on a server with the same faults; then an endpoint nobody listens on.
if bench.phase == "faults" {
    let calls = bench.dispatchCalls, wave = 500, rounds = 3
    for mix in FaultBench.mixes {
        print("fault mix (\(mix.name)): \(mix.flags.joined(separator: " ")), \(FaultBench.latencyMilliseconds) ms a call; "
            + "\(calls.formatted()) requests, \(wave) at once; a call abandoned after \(Int(mix.timeoutSeconds)) s")
        var ratios: [Double] = []
        for round in 1...rounds {
            let plainServer = try DispatchBench.FakeServer(latencyMilliseconds: FaultBench.latencyMilliseconds, faults: mix.flags)
            let plain = FaultBench.plainRetryingLoop(port: plainServer.port, calls: calls, concurrency: wave, timeoutSeconds: mix.timeoutSeconds)
            let plainSeen = FaultBench.serverFigures(plainServer)
            plainServer.stop()
            let server = try DispatchBench.FakeServer(latencyMilliseconds: FaultBench.latencyMilliseconds, faults: mix.flags)
            let run = try await DispatchBench.purserRun(
                port: server.port, calls: calls, concurrency: wave, work: bench.work, catalog: DispatchBench.catalog(port: server.port, tiers: catalog.tiers)
            ) { $0.timeoutSeconds = mix.timeoutSeconds }
            let seen = FaultBench.serverFigures(server)
            server.stop()
            ratios.append(run.seconds / plain.seconds)
            row("round \(round): plain retrying loop", String(format: "%.2f s", plain.seconds),
                "\(plain.succeeded) succeeded in \(plain.calls) calls; \(plainSeen.earlyRetries) calls before their Retry-After")
            row("round \(round): purser run", String(format: "%.2f s", run.seconds),
                String(format: "%.2f× the plain loop; ", run.seconds / plain.seconds)
                    + "\(run.stored) results stored, \(run.failed) failed, \(run.summary.retried) retries in \(seen.calls) calls; "
                    + "\(seen.earlyRetries) calls before their Retry-After; \(seen.answeredTwice) requests answered twice")
        }
        row("purser / plain, median of \(rounds)", String(format: "%.2f×", DispatchBench.median(ratios)), "bar ≤ 1.5×")
        print()
    }

    let port = FaultBench.closedPort()
    let unreachable = try await DispatchBench.purserRun(
        port: port, calls: 100, concurrency: 16, work: bench.work, catalog: DispatchBench.catalog(port: port, tiers: catalog.tiers))
    row("unreachable endpoint, 100 requests", String(format: "%.1f s", unreachable.seconds),
        "bar ≤ 60 s; ends with: \(unreachable.summary.trouble.map { "\($0)" } ?? "no error (a defect)")")
}

// Batch: a week-long job of 100,000 requests through the fake's OpenAI-style batch API, end to end.
if bench.phase == "all" || bench.phase == "batch" {
    print()
    let figures = try await BatchBench.run(requests: bench.batchRequests, work: bench.work, tiers: catalog.tiers)
    let megabytes = Double(figures.uploadBytes) / 1_048_576
    func perSecond(_ milliseconds: Int64) -> Double { max(Double(milliseconds) / 1000, 0.001) }
    row("batch job, parse only (ceiling)", "\(Int(figures.parseOnlyLinesPerSecond).formatted()) lines/s", "the same lines read and parsed, nothing stored")
    row("batch job, submitted", rate(bench.batchRequests, figures.submitSeconds), "parsed, estimated and stored")
    row("batch input written (JSONL)", String(format: "%.1f MB/s", megabytes / perSecond(figures.writeMilliseconds)),
        String(format: "%.1f MB for %d batches in %.2f s", megabytes, figures.batches, Double(figures.writeMilliseconds) / 1000))
    row("batch input uploaded", String(format: "%.1f MB/s", megabytes / perSecond(figures.uploadMilliseconds)),
        String(format: "%.2f s to the fake on 127.0.0.1 (multipart, from disk)", Double(figures.uploadMilliseconds) / 1000))
    row("batch output downloaded and parsed", rate(figures.storedLines, perSecond(figures.readMilliseconds)),
        String(format: "%.0f%% of the parse-only ceiling above", 100 * Double(figures.storedLines) / perSecond(figures.readMilliseconds) / figures.parseOnlyLinesPerSecond))
    row("batch output stored", rate(figures.storedLines, perSecond(figures.storeMilliseconds)),
        "results, attempts, charges and reservations released, \(BatchResultFile.chunkLines.formatted()) lines a transaction")
    row("batch run end to end", String(format: "%.2f s", figures.runSeconds),
        "\(figures.results.formatted()) results at batch prices of \(bench.batchRequests.formatted()); \(figures.linesSentTwice) requests sent twice; \(figures.failed) failed")
    row("  peak memory", "\(figures.peakMiB) MiB", "submit and run; output streamed, not held"
        + (bench.phase == "all" ? " (after the phases above: --phase batch alone measures it clean)" : ""))
}

// Service: a 100,000-line batch uploaded and created through the official openai SDK against `purser submit` of the
// same file; then 200 clients polling a batch while the run service holds 1,000 calls in flight.
if bench.phase == "all" || bench.phase == "service" {
    print()
    let file = try generate(100_000, name: "service-100k.jsonl")
    let upload = try ServiceBench.upload(file: file, work: bench.work, pricing: bench.pricing)
    row("purser submit, 100,000 lines", String(format: "%.2f s", upload.submitSeconds), "\(upload.fileMiB) MiB file, a process from start to exit")
    row("SDK upload + create, 100,000 lines", String(format: "%.2f s", upload.sdkSeconds),
        String(format: "bar ≥ 0.5× submit: %.2f× (upload %.2f s, then checked and stored; %@ with %d requests); serve's peak memory %d MiB",
            upload.submitSeconds / upload.sdkSeconds, upload.uploadSeconds, upload.status, upload.total, upload.servePeakMiB))
    let polls = try ServiceBench.pollWhileServing(requests: 6_000, clients: 200, inFlight: 1_000, latencyMilliseconds: 5_000, work: bench.work, pricing: bench.pricing)
    row("200 clients polling batches.retrieve", "\(Int(Double(polls.answers) / polls.seconds).formatted()) answers/s",
        String(format: "p50 %.1f ms, p99 %.1f ms; %d errors; run service %d calls in flight after, at most %d at the fake (5 s a call)",
            polls.p50Milliseconds, polls.p99Milliseconds, polls.errors, polls.inFlightDuring, polls.peakInFlight))
}

// Calls in flight: at 5 s a call, four waves of 100, 1,000 and 5,000 calls at once, through a plain client (Python's
// asyncio streams, scripts/plain_client.py) and through `purser run`, each on a fake server of its own, three rounds
// of each: wall time against the ideal of four waves, and CPU per answer, which should not grow with the calls in flight. Then the most
// calls one process can hold at once, two waves: over HTTP/1.1 (what its open-file limit allows, up to 20,000) and over
// HTTP/2 (20,000). `--phase most` for those alone.
func perAnswer(_ cpu: Double, _ answers: Int) -> Double { cpu * 1000 / Double(max(answers, 1)) }
if bench.phase == "inflight" {
    print()
    var purserAtHundred = 0.0
    // Three rounds at each level, the plain client and the run taking turns, each figure the median of its three: this
    // machine's CPU time for the same work varies by a tenth from one minute to the next.
    let rounds = 3
    for inFlight in [100, 1_000, 5_000] {
        let calls = inFlight * 4
        var plains: [DispatchBench.PlainFigures] = [], runs: [DispatchBench.CommandFigures] = []
        var plainPeak = 0, peak = 0
        for _ in 0..<rounds {
            let plainServer = try DispatchBench.FakeServer(latencyMilliseconds: 5_000)
            plains.append(try DispatchBench.plainClient(port: plainServer.port, calls: calls, inFlight: inFlight, work: bench.work))
            plainPeak = max(plainPeak, plainServer.peakInFlight())
            plainServer.stop()
            let server = try DispatchBench.FakeServer(latencyMilliseconds: 5_000)
            let pricing = bench.work + "/inflight-pricing"
            try DispatchBench.writePricing(port: server.port, pricing: bench.pricing, to: pricing)
            runs.append(try DispatchBench.commandRun(calls: calls, concurrency: inFlight, work: bench.work, pricing: pricing))
            peak = max(peak, server.peakInFlight())
            server.stop()
        }
        let plainCPUs = plains.map { perAnswer($0.cpuSeconds, $0.answers) }, purserCPUs = runs.map { perAnswer($0.cpuSeconds, $0.stored) }
        let plainCPU = DispatchBench.median(plainCPUs), purserCPU = DispatchBench.median(purserCPUs)
        // Both commands timed from launch to exit (`commandRun` times `purser run` so).
        let plainSeconds = DispatchBench.median(plains.map(\.processSeconds)), purserSeconds = DispatchBench.median(runs.map(\.seconds))
        if inFlight == 100 { purserAtHundred = purserCPU }
        let eachRound = zip(purserCPUs, plainCPUs).map { String(format: "%.2f/%.2f", $0, $1) }.joined(separator: ", ")
        row("plain client, \(inFlight.formatted()) in flight", String(format: "%.1f s", plainSeconds),
            "\(calls.formatted()) calls, ideal 20.0 s; launch to exit (its own loop: " + String(format: "%.1f s", DispatchBench.median(plains.map(\.seconds))) + "); "
                + "\(plains.map(\.answers).min() ?? 0) answers, \(plains.map(\.errors).max() ?? 0) errors; "
                + "at most \(plainPeak) at once; " + String(format: "CPU %.2f ms an answer", plainCPU))
        row("purser run, \(inFlight.formatted()) in flight", String(format: "%.1f s", purserSeconds),
            String(format: "%.2f× the plain client's time (goal ≤ 1.10×); ", purserSeconds / max(plainSeconds, 0.001))
                + "\(runs.map(\.stored).min() ?? 0) results stored, \(runs.map(\.failed).max() ?? 0) failed; at most \(peak) at once; "
                + String(format: "CPU %.2f ms an answer, %.2f× the plain client's (goal ≤ 1.5×) and %.2f× its own at 100 in flight; peak memory %d MiB",
                    purserCPU, purserCPU / max(plainCPU, 1e-9), purserCPU / max(purserAtHundred, 1e-9), (runs.map(\.peakMemoryBytes).max() ?? 0) >> 20)
                + " (ms an answer, purser/plain, each round: \(eachRound))")
    }
}
if bench.phase == "inflight" || bench.phase == "most" {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    let hardLimit = Int(min(limit.rlim_max, 1 << 30))
    // Over HTTP/1.1, a socket a call: as many as the run opens under the hard limit (the descriptors it keeps for its
    // database, files and HTTP engine aside); the fake server, one per call, has fewer to keep.
    let most = min(20_000, OpenFileLimit.connections(within: hardLimit - OpenFileLimit.reserved))
    let server = try DispatchBench.FakeServer(latencyMilliseconds: 5_000)
    let pricing = bench.work + "/inflight-pricing"
    try DispatchBench.writePricing(port: server.port, pricing: bench.pricing, to: pricing)
    let run = try DispatchBench.commandRun(calls: most * 2, concurrency: most, work: bench.work, pricing: pricing)
    let peak = server.peakInFlight()
    server.stop()
    row("purser run over HTTP/1.1, \(most.formatted())", String(format: "%.1f s", run.seconds),
        "\((most * 2).formatted()) calls, \(most.formatted()) in flight, ideal 10.0 s; \(run.stored) results stored, \(run.failed) failed, exit \(run.exitCode); at most \(peak) at once; "
            + String(format: "CPU %.2f ms an answer; peak memory %d MiB", perAnswer(run.cpuSeconds, run.stored), run.peakMemoryBytes >> 20)
            + (most < 20_000 ? "; a connection a call, and the open-file hard limit here is \(limit.rlim_max)" : ""))
    // Over HTTP/2 with TLS, as the providers serve: calls share connections as streams, so the open-file limit does
    // not bound them.
    let h2 = try NginxServer(.http2OverTLS, latencySeconds: 5, work: bench.work)
    let h2Pricing = bench.work + "/inflight-h2-pricing"
    try h2.writePricing(pricing: bench.pricing, to: h2Pricing)
    let h2Calls = 20_000
    let h2Run = try DispatchBench.commandRun(calls: h2Calls * 2, concurrency: h2Calls, work: bench.work, pricing: h2Pricing, countDescriptors: true)
    let h2Peak = try h2.peakInFlight()
    h2.stop()
    row("purser run over HTTP/2, \(h2Calls.formatted())", String(format: "%.1f s", h2Run.seconds),
        "\((h2Calls * 2).formatted()) calls, \(h2Calls.formatted()) in flight, to nginx over TLS, ideal 10.0 s (goal 20,000 in flight without error); "
            + "\(h2Run.stored) results stored, \(h2Run.failed) failed, exit \(h2Run.exitCode); at most \(h2Peak) at once, on at most \(h2Run.peakDescriptors) open files; "
            + String(format: "CPU %.2f ms an answer; peak memory %d MiB", perAnswer(h2Run.cpuSeconds, h2Run.stored), h2Run.peakMemoryBytes >> 20))
}

// Caching: 10,000 requests sharing a 3,000-token prefix with 300 tokens of their own, through the fake provider caching as
// Anthropic does, served with caching in the tables (breakpoints, one primer per group) and without (no breakpoint).
if bench.phase == "all" || bench.phase == "caching" {
    print()
    let requests = 10_000
    let fake = try DispatchBench.FakeServer(latencyMilliseconds: 20, faults: ["--cache", "explicit", "--cache-min", "1024"])
    let job = bench.work + "/caching-job.jsonl"
    try CachingBench.writeJob(requests: requests, prefixTokens: 3_000, uniqueTokens: 300, to: job)
    let aware = bench.work + "/caching-pricing-aware", blind = bench.work + "/caching-pricing-blind"
    try CachingBench.writePricing(port: fake.port, pricing: bench.pricing, to: aware, caching: true)
    try CachingBench.writePricing(port: fake.port, pricing: bench.pricing, to: blind, caching: false)
    let withCache = try CachingBench.run(job: job, pricing: aware, work: bench.work, name: "aware")
    let without = try CachingBench.run(job: job, pricing: blind, work: bench.work, name: "blind")
    fake.stop()
    func error(_ figures: CachingBench.Figures) -> String {
        String(format: "%+.1f%%", (Double(figures.estimated.picoUSD) / Double(max(figures.billed.picoUSD, 1)) - 1) * 100)
    }
    row("cache-blind, billed input", without.billedInput.formatted, "\(without.results.formatted()) results in \(String(format: "%.1f", without.seconds)) s; \(without.reads) read the cache; estimate \(error(without)) of the billed \(without.billed.formatted)")
    row("cache-aware, billed input", withCache.billedInput.formatted,
        String(format: "goal ≥ 60%% lower: %.1f%% lower; ", (1 - Double(withCache.billedInput.picoUSD) / Double(max(without.billedInput.picoUSD, 1))) * 100)
            + "\(withCache.reads) of \(withCache.results - 1) possible read the cache (goal ≥ 95%), \(withCache.writes) wrote it; \(String(format: "%.1f", withCache.seconds)) s")
    let off = abs(Double(withCache.estimated.picoUSD) / Double(max(withCache.billed.picoUSD, 1)) - 1)
    row("cache-aware, estimate against billed", error(withCache),
        "goal within 5%: \(off <= 0.05 ? "met" : "not met") (estimate \(withCache.estimated.formatted), billed \(withCache.billed.formatted))")
}
