import Foundation
import PurserCore
import PurserSQLite

/// Checks a batch's lines and stores them as its job (the same submit as `purser submit`, one job per batch, named by
/// the batch), then starts the batch; a batch cancelled meanwhile has its job's requests cancelled instead. A job a
/// crashed keeper or create already stored under the batch's name is taken, not stored again. Returns whether the
/// batch started.
enum BatchValidation {
    static func check(path: String, batch: String, project: String, deadline: String, quality: JSONValue?, context: ServiceContext) throws -> Bool {
        let job: Job
        if let stored = try context.withStore({ try $0.jobs.job(reference: batch) }), stored.project == project {
            job = stored
        } else {
            let options = SubmitOptions(name: batch, project: project, quality: quality, deadline: deadline, force: true, listedProblemLimit: 100)
            job = try StoreFile.submit(files: [path], options: options, catalog: context.catalog, clock: context.clock, path: context.databasePath)[0].job
        }
        guard try context.withStore({ try $0.service.startBatch(batch, job: job.id, at: context.now()) }) else {
            _ = try context.withStore { try $0.results.cancel(job: job.id) }
            return false
        }
        return true
    }
}

/// The service's background work, on a thread of its own and a connection of its own: checks new OpenAI batches
/// and makes them jobs, and ends batches whose jobs have finished by writing their output and error files. Each
/// step is claimed first, so many serves on one database never do one twice; a step cut short by a crash is
/// taken up again (a batch stays `validating` or `finalizing` until its step completes).
final class BatchKeeper: @unchecked Sendable {
    let context: ServiceContext
    let name = "serve-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    private let stopped = NSCondition()
    private var stopping = false
    private var finished = false
    /// A failure the keeper met and keeps meeting, for the log; nil while it works.
    private(set) var lastProblem: String?
    let log: @Sendable (String) -> Void

    init(context: ServiceContext, log: @escaping @Sendable (String) -> Void) {
        self.context = context
        self.log = log
    }

    func start() {
        let thread = Thread.named("purser.keeper") { [self] in
            while !isStopping {
                tick()
                stopped.lock()
                if !stopping { _ = stopped.wait(until: Date().addingTimeInterval(0.25)) }
                stopped.unlock()
            }
            stopped.lock()
            finished = true
            stopped.broadcast()
            stopped.unlock()
        }
        thread.start()
    }

    private var isStopping: Bool {
        stopped.lock()
        defer { stopped.unlock() }
        return stopping
    }

    /// Asks the keeper to stop and waits for its step in progress to end.
    func stop() {
        stopped.lock()
        stopping = true
        stopped.broadcast()
        while !finished { stopped.wait() }
        stopped.unlock()
    }

    func tick() {
        do {
            let work = try context.withStore { try $0.service.batches(in: [.validating, .inProgress, .cancelling, .finalizing]) }
            for batch in work {
                if isStopping { return }
                try step(batch)
            }
            if lastProblem != nil { log("the service's batch keeper works again") }
            lastProblem = nil
        } catch {
            let problem = "\(error)"
            if problem != lastProblem { log("warning: the service's batch keeper could not advance a batch: \(problem); it tries again") }
            lastProblem = problem
        }
    }

    /// The job's requests not finished yet (only the counts: the keeper asks every quarter second).
    private func openRequests(job: Int64) throws -> Int {
        try context.withStore { try $0.jobs.stateCounts(job: job) }.filter { !$0.key.isFinished }.values.reduce(0, +)
    }

    private func claim(_ batch: ServiceBatch) throws -> Bool {
        try context.withStore { try $0.service.claimBatch(batch.id, keeper: name, for: 120_000, now: context.now()) }
    }

    private func step(_ batch: ServiceBatch) throws {
        switch batch.status {
        case .validating:
            guard try claim(batch) else { return }
            try validate(batch)
        case .inProgress:
            guard let job = batch.jobID, try openRequests(job: job) == 0, try claim(batch) else { return }
            if try context.withStore({ try $0.service.finalizeBatch(batch.id, at: context.now()) }) {
                var finalizing = batch
                finalizing.status = .finalizing
                try finish(finalizing)
            }
        case .finalizing:
            guard try claim(batch) else { return }
            try finish(batch)
        case .cancelling:
            if let job = batch.jobID {
                // Requests that came back to the queue (a retry, a call given up) are cancelled too.
                _ = try context.withStore { try $0.results.cancel(job: job) }
                guard try openRequests(job: job) == 0 else { return }
            }
            guard try claim(batch) else { return }
            try finish(batch)
        default:
            return
        }
    }

    private func validate(_ batch: ServiceBatch) throws {
        let now = context.now()
        if batch.dialect == .anthropic {
            // A create cut short after storing the batch: its requests are still in their file, unless it was the job that was stored.
            let path = context.path(forFile: AnthropicAPI.inputFileName(batch.id))
            do {
                _ = try BatchValidation.check(path: path, batch: batch.id, project: batch.project, deadline: batch.completionWindow, quality: nil, context: context)
                unlink(path)
            } catch is SubmissionRejected {
                try fail(batch, [(0, "invalid_request", "the batch's requests did not pass the check")])
            } catch let problem as Problem {
                try fail(batch, [(0, "invalid_file", problem.message)])
            }
            return
        }
        guard let inputID = batch.inputFileID,
              let input = try context.withStore({ try $0.service.file(inputID, project: batch.project, now: now) }),
              FileManager.default.fileExists(atPath: input.path) else {
            try fail(batch, [(0, "input_file_missing", "the input file \(batch.inputFileID ?? "-") was deleted or expired before the batch was checked")])
            return
        }
        // The metadata the create stored and checked: a row that no longer parses stops here, said in the log.
        let metadata = try batch.metadata.map { try JSONParser.parse($0).objectValue ?? JSONObject() } ?? JSONObject()
        let deadline = metadata["purser_deadline"]?.stringValue ?? batch.completionWindow
        let quality = metadata["purser_quality"].map { value -> JSONValue in
            if let text = value.stringValue, let number = Int(text) { return .number(String(number)) }
            return value
        }
        do {
            if try !BatchValidation.check(path: input.path, batch: batch.id, project: batch.project, deadline: deadline, quality: quality, context: context) {
                // Cancelled while it was checked: its requests went with it, and the claim goes so its end is written.
                try context.withStore { store in _ = try store.service.claimBatch(batch.id, keeper: name, for: 0, now: context.now()) }
            }
        } catch let rejected as SubmissionRejected {
            try fail(batch, rejected.problems.map { ($0.lineNumber, "invalid_request", $0.message) })
        } catch let empty as EmptySubmission {
            try fail(batch, [(0, "empty_file", "\(input.filename) has no requests: \(empty)")])
        } catch let problem as Problem {
            // A file that cannot be read as lines at all (a line past the size limit, bytes that are not UTF-8).
            try fail(batch, [(0, "invalid_file", problem.message)])
        }
    }

    private func fail(_ batch: ServiceBatch, _ problems: [(line: Int, code: String, message: String)]) throws {
        let errors = JSONValue.array(problems.map { problem in
            .object(JSONObject([
                "code": .string(problem.code), "line": problem.line > 0 ? .number(String(problem.line)) : .null,
                "message": .string(problem.message), "param": .null,
            ]))
        })
        if try !context.withStore({ try $0.service.failBatch(batch.id, errors: JSONWriter.string(errors), at: context.now()) }) {
            // Cancelled while it was checked: it ends cancelled, with nothing stored.
            try finish(ServiceBatch(id: batch.id, project: batch.project, dialect: batch.dialect, status: .cancelling, inputFileID: batch.inputFileID,
                endpoint: batch.endpoint, completionWindow: batch.completionWindow, metadata: batch.metadata, createdAt: batch.createdAt))
        }
    }

    /// Writes the batch's output (OpenAI: succeeded lines and error lines, each file only when it has lines;
    /// Anthropic: one results file) and ends it.
    private func finish(_ batch: ServiceBatch) throws {
        let store = try StoreFile.open(path: context.databasePath)
        let now = context.now()
        var files: [ServiceFile] = []
        var ending: ServiceBatchStatus = batch.status == .cancelling ? .cancelled : .completed
        if let jobID = batch.jobID, let job = try store.jobs.job(id: jobID) {
            if batch.status != .cancelling, try store.jobs.stateCounts(job: jobID)[.expired, default: 0] > 0 { ending = .expired }
            switch batch.dialect {
            case .openai:
                let output = try OutputFile(context: context, project: batch.project, name: "\(batch.id)_output.jsonl", purpose: "batch_output")
                let errors = try OutputFile(context: context, project: batch.project, name: "\(batch.id)_error.jsonl", purpose: "batch_output")
                _ = try store.workspace.results.forEachFinished(job: job.id, only: nil) { row in
                    try (row.state == .succeeded ? output : errors).append(ResultFormat.openai.line(row))
                }
                files = [try output.close(at: now), try errors.close(at: now)].compactMap { $0 }
            case .anthropic:
                let results = try OutputFile(context: context, project: batch.project, name: "\(batch.id)_results.jsonl", purpose: AnthropicAPI.resultsPurpose)
                _ = try store.workspace.results.forEachFinished(job: job.id, only: nil) { row in try results.append(ResultFormat.anthropic.line(row)) }
                files = [try results.close(at: now, keepEmpty: true)].compactMap { $0 }
            }
        } else if batch.dialect == .anthropic {
            let results = try OutputFile(context: context, project: batch.project, name: "\(batch.id)_results.jsonl", purpose: AnthropicAPI.resultsPurpose)
            files = [try results.close(at: now, keepEmpty: true)].compactMap { $0 }
        }
        let output = batch.dialect == .anthropic ? files.first?.id : files.first { $0.filename.hasSuffix("_output.jsonl") }?.id
        let error = batch.dialect == .anthropic ? nil : files.first { $0.filename.hasSuffix("_error.jsonl") }?.id
        if try !context.withStore({ try $0.service.endBatch(batch.id, as: ending, files: files, output: output, error: error, at: now) }) {
            for file in files { unlink(file.path) }
        }
    }
}

/// A batch output file being written: lines gathered and written in large pieces, hashed as they go.
final class OutputFile {
    let id = ServiceContext.newID("file-")
    let file: ServiceFile
    private let handle: FileHandle
    private var pending: [UInt8] = []
    private var hasher = SHA256()
    private var bytes: Int64 = 0

    init(context: ServiceContext, project: String, name: String, purpose: String) throws {
        let path = context.path(forFile: id)
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw Problem("cannot write \(path) for a batch's output: check the folder \(context.filesFolder)")
        }
        self.handle = handle
        file = ServiceFile(id: id, project: project, filename: name, purpose: purpose, bytes: 0, sha256: "", path: path, createdAt: 0, expiresAt: nil)
    }

    func append(_ line: String) throws {
        pending.append(contentsOf: line.utf8)
        pending.append(10)
        if pending.count >= 1 << 20 { try flush() }
    }

    private func flush() throws {
        guard !pending.isEmpty else { return }
        pending.withUnsafeBytes { hasher.update($0) }
        try handle.write(contentsOf: Data(pending))
        bytes += Int64(pending.count)
        pending.removeAll(keepingCapacity: true)
    }

    /// The file as stored, or nil (and no file) when nothing was written and `keepEmpty` is false.
    func close(at now: Int64, keepEmpty: Bool = false) throws -> ServiceFile? {
        try flush()
        try handle.synchronize()
        try handle.close()
        guard bytes > 0 || keepEmpty else {
            unlink(file.path)
            return nil
        }
        var stored = file
        stored.bytes = bytes
        stored.sha256 = hasher.hex()
        stored.createdAt = now
        stored.expiresAt = now + 30 * 86_400_000
        return stored
    }
}
