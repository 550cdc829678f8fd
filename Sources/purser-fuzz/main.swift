import Foundation
import PurserFuzz

// purser-fuzz: long fuzz runs of the job-line parser and of reading providers' answers, beyond the fixed
// count the test suite runs. Seeded mutation of the committed corpus by default; built with libFuzzer
// (scripts/fuzz.sh --libfuzzer) the same targets run coverage-guided.

let usage = """
    USAGE: purser-fuzz [--target job-line|openai-response|anthropic-response|openai-batch-line|anthropic-batch-line|all] [--seconds N] [--seed N]
                       [--corpus DIR] [--pricing DIR] [--findings DIR]

    OPTIONS:
      --target <name>     what to fuzz (default: all, the time split evenly)
      --seconds <n>       how long to run (default: 60)
      --seed <n>          the first seed; the same seed gives the same inputs (default: 1)
      --corpus <dir>      the inputs to mutate, one folder per target (default: Tests/fuzz-corpus)
      --pricing <dir>     the pricing tables the job-line parser reads (default: pricing)
      --findings <dir>    where inputs that crash or give a wrong answer are written (default: .build/fuzz-findings)
    """

#if LIBFUZZER
// Coverage-guided: `PURSER_FUZZ_TARGET=TARGET purser-fuzz [libFuzzer options] [corpus folders]`, built by
// scripts/fuzz.sh --libfuzzer. The target comes from the environment, so that the processes libFuzzer starts
// itself (-merge, -fork) fuzz the same one.
if let name = ProcessInfo.processInfo.environment["PURSER_FUZZ_TARGET"], let target = FuzzTarget(rawValue: name) {
    exit(LibFuzzer.run(target, pricing: ProcessInfo.processInfo.environment["PURSER_PRICING"] ?? "pricing"))
}
#endif

var options: [String: String] = ["--target": "all", "--seconds": "60", "--seed": "1", "--corpus": "Tests/fuzz-corpus", "--pricing": "pricing",
    "--findings": ".build/fuzz-findings"]
var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") { print(usage); exit(0) }
while !arguments.isEmpty {
    let name = arguments.removeFirst()
    guard options[name] != nil, !arguments.isEmpty else {
        FileHandle.standardError.write(Data("Error: unknown option or missing value: '\(name)'.\n\(usage)\n".utf8))
        exit(64)
    }
    options[name] = arguments.removeFirst()
}
guard let seconds = Double(options["--seconds"]!), seconds > 0, seconds <= 7 * 86_400, let seed = UInt64(options["--seed"]!) else {
    FileHandle.standardError.write(Data("Error: --seconds must be a number of seconds up to a week and --seed a whole number.\n".utf8))
    exit(64)
}
let targets: [FuzzTarget] = options["--target"] == "all" ? FuzzTarget.allCases : FuzzTarget(rawValue: options["--target"]!).map { [$0] } ?? []
guard !targets.isEmpty else {
    FileHandle.standardError.write(Data("Error: --target: '\(options["--target"]!)' is not one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")) or all.\n".utf8))
    exit(64)
}
let findings = URL(fileURLWithPath: options["--findings"]!)
try FileManager.default.createDirectory(at: findings, withIntermediateDirectories: true)
var harness = try FuzzHarness(pricingDirectory: options["--pricing"]!)

// A stop on SIGINT or SIGTERM ends the run with its counts.
let stop = Stop()
final class Stop: @unchecked Sendable { var requested = false }
for signalNumber in [SIGINT, SIGTERM] {
    signal(signalNumber, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: signalNumber)
    source.setEventHandler { stop.requested = true }
    source.resume()
    _ = Unmanaged.passRetained(source as AnyObject)
}

var failures = 0
for target in targets {
    let corpus = FuzzCorpus.load(target, from: options["--corpus"]!)
    guard !corpus.isEmpty else {
        FileHandle.standardError.write(Data("Error: no corpus for \(target.rawValue) in \(options["--corpus"]!)/\(target.rawValue).\n".utf8))
        exit(1)
    }
    // Each input is written here before it runs, so a crash leaves the input that caused it behind.
    let lastPath = findings.appendingPathComponent("last-\(target.rawValue)").path
    let last = open(lastPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    var mutator = Mutator(seed: seed &+ UInt64(FuzzTarget.allCases.firstIndex(of: target)!))
    // Mutants that ran are mutated further (a random walk from the corpus), up to a pool of 512.
    var pool = corpus
    var runs = 0
    let started = Date()
    let budget = seconds / Double(targets.count)
    while Date().timeIntervalSince(started) < budget && !stop.requested {
        for _ in 0..<256 {
            let parent = pool[mutator.below(pool.count)]
            let input = mutator.mutate(parent, corpus: corpus)
            _ = input.withUnsafeBytes { pwrite(last, $0.baseAddress, $0.count, 0) }
            ftruncate(last, off_t(input.count))
            if let wrong = harness.run(target, input) {
                failures += 1
                let path = findings.appendingPathComponent("\(target.rawValue)-\(failures)")
                try Data(input).write(to: path)
                print("\(target.rawValue): \(wrong) (input in \(path.path))")
            }
            if pool.count < 512 { pool.append(input) } else { pool[mutator.below(pool.count)] = input }
            runs += 1
        }
    }
    close(last)
    let elapsed = Date().timeIntervalSince(started)
    print("\(target.rawValue): \(runs.formatted()) inputs in \(String(format: "%.1f", elapsed)) s (\(Int(Double(runs) / elapsed).formatted())/s), seed \(seed), \(corpus.count) corpus files")
}
print(failures == 0 ? "no crash and no wrong answer" : "\(failures) inputs gave wrong answers; see \(findings.path)")
exit(failures == 0 ? 0 : 1)
