import Foundation
import PurserCore
import SQLiteStore

/// Reads job files and stores their requests: all files in one transaction, so a failed submit stores nothing.
public struct JobSubmitter {
    let database: Database
    let catalog: PricingCatalog
    let clock: WallClock

    public init(database: Database, catalog: PricingCatalog, clock: WallClock = .system) {
        self.database = database
        self.catalog = catalog
        self.clock = clock
    }

    public func submit(files: [String], options: SubmitOptions) throws -> [SubmittedJob] {
        let store = JobStore(database: database)
        let history = try store.outputHistory()
        let calibration = try store.inputCalibration(simulated: false)
        let submittedAt = clock.now()
        // Every reference written here is to a row written just before in the same transaction,
        // so the per-row foreign-key lookups are skipped.
        return try database.withoutForeignKeyChecks {
            try database.writeTransaction {
                try files.map { file in
                    try submit(file: file, options: options, store: store, history: history, calibration: calibration, submittedAt: submittedAt)
                }
            }
        }
    }

    private func submit(
        file: String, options: SubmitOptions, store: JobStore, history: OutputHistory, calibration: InputCalibration, submittedAt: Int64
    ) throws -> SubmittedJob {
        // A regular file is fingerprinted first, so a resubmission costs one fast read and no parsing.
        if file != "-", !options.force {
            let fingerprint = fingerprintKey(try JobFileReader.fingerprint(ofFile: file), options: options)
            if let existing = try store.job(withFingerprint: fingerprint) {
                return SubmittedJob(job: existing, alreadySubmitted: true, rejected: [])
            }
        }
        let catalog = catalog
        let defaults = RequestLineParser.Defaults(quality: options.quality, deadline: options.deadline, providers: options.providers)
        let stream = try ParsedLineStream(file: file, maximumLineBytes: options.maximumLineBytes) {
            RequestLineParser(catalog: catalog, defaults: defaults, submittedAt: submittedAt, history: history, inputCalibration: calibration)
        }
        var finished = false
        defer { if !finished { stream.cancel() } }
        let name = options.name ?? JobSubmitter.defaultName(for: file)
        // A savepoint per file, so a file found to duplicate an earlier job can be undone alone.
        try database.execute("SAVEPOINT submit_file")
        let jobID = try store.insertJob(
            name: name, project: options.project, source: file == "-" ? "stdin" : file, fingerprint: "pending", submittedAt: submittedAt,
            maxCost: options.maxCost)
        let inserter = try store.requestInserter()
        var accepted = 0
        var listed: [LineProblem] = []
        var badLines = 0
        func reject(_ problem: LineProblem) throws {
            badLines += 1
            if listed.count < options.listedProblemLimit { listed.append(problem) }
            if options.skipInvalid { try store.insertRejection(problem, job: jobID) }
        }
        var content = ContentFingerprint()
        reading: while true {
            switch stream.next() {
            case .batch(let items):
                for item in items {
                    switch item {
                    case .problem(let problem):
                        try reject(problem)
                    case .request(let draft):
                        if try inserter.insert(draft, job: jobID) {
                            accepted += 1
                        } else {
                            let first = try store.lineNumber(ofCustomID: draft.customID, job: jobID) ?? 0
                            try reject(.duplicate(customID: draft.customID, lineNumber: draft.lineNumber, firstLine: first))
                        }
                    }
                }
            case .finished(let fingerprint):
                content = fingerprint
                finished = true
                break reading
            case .failed(let message):
                finished = true
                throw Problem(message)
            }
        }
        if badLines > 0 && !options.skipInvalid {
            throw SubmissionRejected(file: file, problems: listed, totalBadLines: badLines)
        }
        if accepted == 0 && badLines == 0 { throw EmptySubmission(file: file) }
        let fingerprint = fingerprintKey(content, options: options)
        if file == "-", !options.force, let existing = try store.job(withFingerprint: fingerprint) {
            // Standard input can be read only once, so its duplicate is found after the fact and undone.
            try database.execute("ROLLBACK TO submit_file; RELEASE submit_file")
            return SubmittedJob(job: existing, alreadySubmitted: true, rejected: [])
        }
        try database.execute("RELEASE submit_file")
        try database.statement("UPDATE jobs SET fingerprint = ? WHERE id = ?").execute([.text(fingerprint), .integer(jobID)])
        try store.setCounts(job: jobID, requests: accepted, rejected: badLines)
        return SubmittedJob(job: try store.job(id: jobID)!, alreadySubmitted: false, rejected: listed)
    }

    /// The same bytes with the same routing options make the same job.
    private func fingerprintKey(_ content: ContentFingerprint, options: SubmitOptions) -> String {
        let quality = options.quality.map { JSONWriter.string($0) } ?? "-"
        var parts = [content.hex, options.project, quality, options.deadline ?? "-", options.maxCost?.exactUSD ?? "-", options.skipInvalid ? "skip" : "strict"]
        if let providers = options.providers { parts.append(providers.json) }
        return parts.joined(separator: "|")
    }

    static func defaultName(for file: String) -> String {
        guard file != "-" else { return "stdin" }
        let base = file.split(separator: "/").last.map(String.init) ?? file
        for suffix in [".jsonl", ".json"] where base.hasSuffix(suffix) { return String(base.dropLast(suffix.count)) }
        return base
    }
}

extension StoreFile {
    /// Stores job files as jobs in the database at `path`, all or nothing, creating the database if there is none.
    public static func submit(files: [String], options: SubmitOptions, catalog: PricingCatalog, clock: WallClock, path: String) throws -> [SubmittedJob] {
        func store(into path: String) throws -> [SubmittedJob] {
            try StoreFile.open(path: path).submitter(catalog: catalog, clock: clock).submit(files: files, options: options)
        }
        return FileManager.default.fileExists(atPath: path) ? try store(into: path) : try storeIntoNewDatabase(path, store)
    }

    /// A first submit builds the database under a name of its own beside `path` and links it into place only
    /// once the jobs are stored: a failed submit leaves no file behind, and a database that another process
    /// created meanwhile is never replaced (`link` refuses; the jobs are then stored into that one).
    private static func storeIntoNewDatabase(_ path: String, _ store: (String) throws -> [SubmittedJob]) throws -> [SubmittedJob] {
        // What submits that were killed midway left behind (a kill skips the cleanup below).
        let file = URL(fileURLWithPath: path)
        WorkFolder.removeFilesOfGoneProcesses(in: file.deletingLastPathComponent().path, prefix: file.lastPathComponent + ".building-")
        let building = path + ".building-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { for suffix in ["", "-wal", "-shm"] { unlink(building + suffix) } }
        let submitted = try store(building)  // its connection is closed on return, the log folded into the file
        if link(building, path) == 0 { return submitted }
        switch errno {
        case EEXIST: return try store(path)
        case EPERM, EXDEV, ENOTSUP, EMLINK:
            // No hard links here: store into the path itself (a failed submit then leaves an empty database).
            return try store(path)
        default: throw Problem("cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

}
