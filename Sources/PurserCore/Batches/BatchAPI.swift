import Foundation

/// A provider's batch API, one step per call, so that the run can store what each step returned before the
/// next one: upload the input (OpenAI-style APIs), create the batch, poll it, read its results, cancel it.
/// Every id it hands back is written to the database before anything else happens.
public protocol BatchAPI: Sendable {
    /// A file uploaded earlier under `name` (a run that died before storing its id), if the API keeps one.
    func findUpload(named name: String) async throws(BatchAPIError) -> String?
    /// Uploads the JSONL input at `file` under `name`; returns its file id.
    func upload(file: URL, named name: String) async throws(BatchAPIError) -> String
    /// Batches that may be the one created earlier for `key` in database `database` by a run that died before
    /// storing its id: the one whose metadata names both, certainly it, where the API keeps metadata; else those
    /// created since `createdAfter` with `requestCount` requests, which may be anyone's on the same key until
    /// their results show whose lines they hold.
    func findBatch(key: String, database: String, createdAfter: Int64, requestCount: Int) async throws(BatchAPIError) -> [BatchCandidate]
    /// Creates the batch: from an uploaded file (`inputFileID`), or with the requests inline from `file`; its
    /// metadata names `key` and `database` where the API keeps metadata.
    func create(key: String, database: String, inputFileID: String?, file: URL) async throws(BatchAPIError) -> String
    /// The custom id of the first line of an ended batch's results, to tell whose batch it is; nil when it has none.
    func firstCustomID(of status: BatchStatus, batchID: String) async throws -> String?
    func status(_ batchID: String) async throws(BatchAPIError) -> BatchStatus
    /// Reads every line of the batch's results (output and error files), in whatever order the provider wrote
    /// them, handing them to `body` in chunks; memory stays flat however many there are.
    func readResults(of status: BatchStatus, batchID: String, chunk body: ([BatchResultLine]) async throws -> Void) async throws
    func cancel(_ batchID: String) async throws(BatchAPIError)
}

/// A provider batch that may be the one a run created just before it died.
public struct BatchCandidate: Sendable, Hashable {
    public var id: String
    /// True when the provider's own record names the batch and database (metadata); otherwise its results must show it.
    public var certain: Bool
}

/// What a provider says about a batch.
public struct BatchStatus: Sendable, Hashable {
    public enum Phase: String, Sendable {
        /// Accepted and working (OpenAI: validating, in_progress, finalizing; Anthropic: in_progress).
        case running
        /// Being cancelled; results come when it ends.
        case cancelling
        /// Finished, whatever the outcome: its results (if any) can be read.
        case ended
    }

    public var phase: Phase
    /// The provider's own word: `completed`, `expired`, `failed`, `cancelled`, `ended`…
    public var providerStatus: String
    public var outputFileID: String?
    public var errorFileID: String?
    public var resultsURL: String?
    /// Why a whole batch failed (OpenAI's validation errors), with the input line where given (1-based).
    public var errors: [LineError] = []

    public struct LineError: Sendable, Hashable {
        public var line: Int?
        public var code: String
        public var message: String
    }

    public init(phase: Phase, providerStatus: String, outputFileID: String? = nil, errorFileID: String? = nil, resultsURL: String? = nil) {
        self.phase = phase
        self.providerStatus = providerStatus
        self.outputFileID = outputFileID
        self.errorFileID = errorFileID
        self.resultsURL = resultsURL
    }
}

/// One line of a batch's results, joined to its request by `customID`.
public struct BatchResultLine: Sendable {
    public enum Outcome: Sendable {
        case succeeded(ProviderResponse)
        case failed(CallFailure)
        /// The window ran out before it was served.
        case expired
        /// The batch was cancelled before it was served.
        case cancelled
    }

    public var customID: String
    public var outcome: Outcome
}

/// A batch API call that did not work, sorted like a live call's failure.
public struct BatchAPIError: Error, Sendable, CustomStringConvertible {
    public var failure: CallFailure
    public init(_ failure: CallFailure) { self.failure = failure }
    public var description: String { failure.message }
}
