import Foundation
import PurserCore
import PurserSQLite

/// `purser results JOB`: every finished request, in the chosen format.
enum ResultsCommand {
    /// Its options, each declared once: the spec lists them and the command reads them through these keys.
    enum Options {
        static let output = OptionKey.text("output", value: "file", help: "Write here instead of standard output.")
        static let format = OptionKey.choice("format", value: "format", of: ResultFormat.self, default: .openai, help: "The results' format")
        static let only = OptionKey.choice("only", value: "state", of: Only.self, default: nil, help: "Only the requests that ended so")
    }

    static let spec = CommandSpec(
        name: "results",
        overview: "Write a job's results: OpenAI batch output (line for line), Anthropic batch results, JSON lines or CSV.",
        arguments: [.init(name: "job", help: "The job's number or name.")],
        options: [
            Options.format.option,
            Options.output.option,
            Options.only.option,
            SharedOptions.database.option,
        ])

    /// The states `--only` takes.
    enum Only: String, CaseIterable { case succeeded, failed }

    static func run(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let format = (try arguments[Options.format])!
        let only = (try arguments[Options.only]).map { RequestState(rawValue: $0.rawValue)! }
        let workspace = try context.openDatabaseForReading(arguments).workspace
        let job = try await workspace.job(arguments.positionals[0])
        let writer = try arguments[Options.output].map(LineWriter.init(path:))
        let write: (String) -> Void = { line in if let writer { writer.write(line) } else { context.console.print(line) } }
        if format == .csv { write(ResultFormat.csvHeader) }
        let streamed = try await workspace.results(of: job, only: only) { write(format.line($0)) }
        try writer?.close()
        var note = "\(count(streamed.rows, "result")) written"
        if streamed.simulated > 0 { note += "; \(streamed.simulated) simulated (no provider was called)" }
        if streamed.unfinished > 0 { note += "; \(count(streamed.unfinished, "request")) not finished yet" }
        context.console.error(note)
        return 0
    }
}

/// Writes lines to a file in large chunks, so memory stays small however many results there are.
final class LineWriter {
    private let handle: FileHandle
    private var buffer = ""

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw Problem("cannot write \(path)")
        }
        self.handle = handle
    }

    func write(_ line: String) {
        buffer += line + "\n"
        if buffer.utf8.count > 1 << 20 { flush() }
    }

    func close() throws {
        flush()
        try handle.close()
    }

    private func flush() {
        handle.write(Data(buffer.utf8))
        buffer = ""
    }
}

/// `purser cancel JOB`: stops what has not started.
enum CancelCommand {
    static let spec = CommandSpec(
        name: "cancel", overview: "Cancel a job's requests that have not started; running ones finish.",
        arguments: [.init(name: "job", help: "The job's number or name.")], options: [SharedOptions.database.option])

    static func run(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let (job, cancelled, running, inBatches) = try await context.openExistingDatabase(arguments).workspace.cancel(job: arguments.positionals[0])
        var words = "job \(job.id) \"\(job.name)\": \(count(cancelled, "request")) cancelled"
        if running > inBatches { words += "; \(running - inBatches) running will finish" }
        if inBatches > 0 { words += "; \(inBatches) in batches will finish with their batch (and be charged at batch prices)" }
        context.console.print(words)
        return 0
    }
}

/// `purser retry JOB`: queues failed (and expired, cancelled) requests again.
enum RetryCommand {
    enum Options {
        static let failed = OptionKey.flag("failed", help: "Only failed requests.")
    }

    static let spec = CommandSpec(
        name: "retry", overview: "Queue a job's failed, expired and cancelled requests again, with fresh attempts.",
        arguments: [.init(name: "job", help: "The job's number or name.")],
        options: [Options.failed.option, SharedOptions.database.option])

    static func run(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let (job, queued) = try await context.openExistingDatabase(arguments).workspace.retry(job: arguments.positionals[0], onlyFailed: arguments[Options.failed])
        context.console.print("job \(job.id) \"\(job.name)\": \(count(queued, "request")) queued again; 'purser run' plans and serves them")
        return 0
    }
}
