import Foundation

/// What `purser submit` was asked to do.
public struct SubmitOptions: Sendable {
    public var name: String?
    public var project: String
    public var quality: JSONValue?
    public var deadline: String?
    public var maxCost: Money?
    /// The providers the job's requests may go to (`--only-providers`, `--ignore-providers`).
    public var providers: ProviderFilter?
    public var skipInvalid: Bool
    public var force: Bool
    public var maximumLineBytes: Int
    /// How many bad lines a rejection lists before it only counts.
    public var listedProblemLimit: Int

    public init(
        name: String? = nil, project: String = "default", quality: JSONValue? = nil, deadline: String? = nil, maxCost: Money? = nil,
        skipInvalid: Bool = false, force: Bool = false, maximumLineBytes: Int = 1 << 20, listedProblemLimit: Int = 20
    ) {
        self.name = name
        self.project = project
        self.quality = quality
        self.deadline = deadline
        self.maxCost = maxCost
        self.skipInvalid = skipInvalid
        self.force = force
        self.maximumLineBytes = maximumLineBytes
        self.listedProblemLimit = listedProblemLimit
    }
}

/// One file's outcome.
public struct SubmittedJob: Sendable {
    public var job: Job
    /// True when the same bytes had been submitted before and that job was returned instead.
    public var alreadySubmitted: Bool
    /// The first rejected lines (with `--skip-invalid`), up to the listing limit.
    public var rejected: [LineProblem]

    package init(job: Job, alreadySubmitted: Bool, rejected: [LineProblem]) {
        self.job = job
        self.alreadySubmitted = alreadySubmitted
        self.rejected = rejected
    }
}

/// A file with bad lines, refused whole: nothing was stored.
public struct SubmissionRejected: Error, Sendable, CustomStringConvertible {
    public var file: String
    /// The first bad lines, up to the listing limit.
    public var problems: [LineProblem]
    public var totalBadLines: Int

    public var description: String {
        var lines = problems.map { $0.located(in: file) }
        if totalBadLines > problems.count { lines.append("… and \(totalBadLines - problems.count) more bad lines") }
        return lines.joined(separator: "\n")
    }

    package init(file: String, problems: [LineProblem], totalBadLines: Int) {
        self.file = file
        self.problems = problems
        self.totalBadLines = totalBadLines
    }
}

/// A file that held no request at all.
public struct EmptySubmission: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var description: String { "\(file) has no requests (every line is blank)" }

    package init(file: String) {
        self.file = file
    }
}
