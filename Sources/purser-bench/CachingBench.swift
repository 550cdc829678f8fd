import Foundation
import PurserCore
import PurserSQLite

/// The caching figures: one prefix-heavy job through the fake provider (which caches as Anthropic does), served by
/// `purser run` with caching priced in its tables (breakpoints marked, one primer per group) and without (the same
/// tables with no caching rule: what Purser did before, sending no breakpoint, so nothing is cached).
enum CachingBench {
    struct Figures {
        var seconds: Double
        var results: Int
        var billedInput: Money
        var billed: Money
        var estimated: Money
        var reads: Int
        var writes: Int
    }

    /// Pricing for one Anthropic-dialect model on the fake: $3 input, $15 output, cached reads $0.30, five-minute writes
    /// $3.75 (claude-sonnet-4.5's list prices), with or without its caching rule.
    static func writePricing(port: Int, pricing: String, to directory: String, caching: Bool) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let tiers = directory + "/tiers.json"
        try? FileManager.default.removeItem(atPath: tiers)
        try FileManager.default.copyItem(atPath: pricing + "/tiers.json", toPath: tiers)
        try """
            {"providers": [{"name": "fakeanthropic", "dialect": "anthropic", "base_url": "http://127.0.0.1:\(port)", "api_key_env": "FAKE_KEY", "batch_api": false}]}
            """.write(toFile: directory + "/providers.json", atomically: true, encoding: .utf8)
        let rule = caching ? #""caching": {"mode": "explicit", "min_prefix_tokens": 1024, "source": "https://platform.claude.com/docs/en/build-with-claude/prompt-caching"},"# : ""
        try """
            {"models": [{"id": "fakeanthropic/medium", "provider": "fakeanthropic", "model": "medium",
             "prices": {"input": "3", "output": "15", "cached_input": "0.3", "cache_write_5m": "3.75"},
             "context_window": 200000, "max_output_tokens": 8000, "quality": {"score": 70, "source": "benchmark"}, "capabilities": ["tools"],
             "rate_limits": {"requests_per_minute": 100000000, "tokens_per_minute": 1000000000000},
             "speed": {"time_to_first_token_ms": 20, "output_tokens_per_second": 100000}, \(rule)
             "price_date": "2026-12-06", "price_source": "https://platform.claude.com/docs/en/about-claude/pricing"}]}
            """.write(toFile: directory + "/models.json", atomically: true, encoding: .utf8)
    }

    /// `requests` lines sharing a system prompt of about `prefixTokens` tokens, each with about `uniqueTokens` of its own.
    static func writeJob(requests: Int, prefixTokens: Int, uniqueTokens: Int, to path: String) throws {
        let shared = String(repeating: "Read the contract clause below and list every obligation it creates, with its party and deadline. ", count: prefixTokens * 4 / 99)
        guard FileManager.default.createFile(atPath: path, contents: nil) else { throw Problem("cannot write \(path)") }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        var chunk = ""
        for index in 0..<requests {
            let unique = "Clause \(index): " + String(repeating: "The supplier shall deliver item \(index) within thirty days. ", count: max(uniqueTokens * 4 / 60, 1))
            chunk += #"{"custom_id": "k\#(index)", "pin": true, "deadline": "hour", "params": {"model": "medium", "max_tokens": 20, "system": "\#(shared)", "messages": [{"role": "user", "content": "\#(unique)"}]}}"# + "\n"
            if chunk.utf8.count > 4 << 20 { try handle.write(contentsOf: Data(chunk.utf8)); chunk = "" }
        }
        try handle.write(contentsOf: Data(chunk.utf8))
        try handle.close()  // a job file cut short would make the figures lie
    }

    static func run(job: String, pricing: String, work: String, name: String) throws -> Figures {
        let database = work + "/caching-\(name).db"
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
        func purser(_ arguments: [String]) throws -> Double {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("purser")
            process.arguments = arguments + ["--db", database, "--pricing", pricing]
            var environment = ProcessInfo.processInfo.environment
            environment["FAKE_KEY"] = "bench"
            process.environment = environment
            process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            let started = DispatchTime.now().uptimeNanoseconds
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw Problem("purser \(arguments[0]) exited \(process.terminationStatus)") }
            return Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        }
        _ = try purser(["submit", job])
        _ = try purser(["plan", "1"])
        let seconds = try purser(["run", "--concurrency", "64"])
        let store = try PurserDatabase.open(path: database)
        func integer(_ sql: String) throws -> Int64 { try store.scalarInt(sql) ?? 0 }
        let input = try integer("SELECT sum(input_tokens) FROM results"), cached = try integer("SELECT sum(cached_input_tokens) FROM results")
        let written = try integer("SELECT sum(cache_write_tokens) FROM results")
        // Input billed at $3, reads at $0.30, writes at $3.75 a million tokens: pico-USD per token is 3,000,000 and so on.
        let billedInput = Money(picoUSD: input * 3_000_000 + cached * 300_000 + written * 3_750_000)
        return Figures(
            seconds: seconds, results: Int(try integer("SELECT count(*) FROM results")), billedInput: billedInput,
            billed: Money(picoUSD: try integer("SELECT sum(cost_pico) FROM results")),
            estimated: Money(picoUSD: try integer("SELECT sum(cost_pico) FROM request_plans")),
            reads: Int(try integer("SELECT count(*) FROM results WHERE cached_input_tokens > 0")),
            writes: Int(try integer("SELECT count(*) FROM results WHERE cache_write_tokens > 0")))
    }
}
