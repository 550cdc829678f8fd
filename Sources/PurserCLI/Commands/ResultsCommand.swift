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

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws -> Int32 {
        let format = (try arguments[Options.format])!
        let only = (try arguments[Options.only]).map { RequestState(rawValue: $0.rawValue)! }
        let database = try context.openDatabaseForReading(arguments)
        let job = try database.workspace.job(arguments.positionals[0])
        let writer = try arguments[Options.output].map(LineWriter.init(path:))
        let write: (String) -> Void = { line in if let writer { writer.write(line) } else { context.console.print(line) } }
        if format == .csv { write(ResultFormat.csvHeader) }
        var written = 0, simulated = 0
        try database.results.forEachFinished(job: job.id, only: only) { row in
            write(format.line(row))
            written += 1
            if row.answer?.simulated == true { simulated += 1 }
        }
        try writer?.close()
        let open = try database.jobs.stateCounts(job: job.id)
            .filter { !$0.key.isFinished }.values.reduce(0, +)
        var note = "\(count(written, "result")) written"
        if simulated > 0 { note += "; \(simulated) simulated (no provider was called)" }
        if open > 0 { note += "; \(count(open, "request")) not finished yet" }
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

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws -> Int32 {
        let database = try context.openExistingDatabase(arguments)
        let job = try database.workspace.job(arguments.positionals[0])
        let (cancelled, running, inBatches) = try database.results.cancel(job: job.id)
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

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws -> Int32 {
        let database = try context.openExistingDatabase(arguments)
        let job = try database.workspace.job(arguments.positionals[0])
        let queued = try database.results.retry(job: job.id, onlyFailed: arguments[Options.failed])
        context.console.print("job \(job.id) \"\(job.name)\": \(count(queued, "request")) queued again; 'purser run' plans and serves them")
        return 0
    }
}
