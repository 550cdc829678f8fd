import Foundation

/// A batch as stored: where it is in its state machine and every provider id known so far.
public struct BatchRow: Sendable {
    public enum State: String, Sendable {
        case planned, uploaded, created, ended, done
    }

    public var id: Int64
    public var key: String
    public var provider: String
    public var model: String
    /// The batch API's dialect.
    public var dialect: Provider.Dialect
    public var simulated: Bool
    public var state: State
    public var requestCount: Int
    public var plannedAt: Int64
    public var createStartedAt: Int64?
    public var submittedAt: Int64?
    public var pullBackAt: Int64
    public var nextPollAt: Int64?
    public var cancelRequestedAt: Int64?
    public var inputFileID: String?
    public var providerBatchID: String?
    public var providerStatus: String?
    public var outputFileID: String?
    public var errorFileID: String?
    public var resultsURL: String?
    /// Provider batches found to be another database's while looking for this one after a crash.
    public var foreignCandidates: Set<String> = []
    /// When an upload of the input was started (a run that died after it may have left the file at the provider).
    public var uploadStartedAt: Int64?

    /// The lease owner of the requests it holds, and of their reservations.
    public var owner: String { BatchRow.owner(id) }
    package static func owner(_ id: Int64) -> String { "batch:\(id)" }

    /// The provider's status as the API client reads results from it.
    package var status: BatchStatus {
        BatchStatus(phase: .ended, providerStatus: providerStatus ?? "ended", outputFileID: outputFileID, errorFileID: errorFileID, resultsURL: resultsURL)
    }

    package init(
        id: Int64, key: String, provider: String, model: String, dialect: Provider.Dialect, simulated: Bool,
        state: State, requestCount: Int, plannedAt: Int64, createStartedAt: Int64? = nil, submittedAt: Int64? = nil,
        pullBackAt: Int64, nextPollAt: Int64? = nil, cancelRequestedAt: Int64? = nil, inputFileID: String? = nil,
        providerBatchID: String? = nil, providerStatus: String? = nil, outputFileID: String? = nil,
        errorFileID: String? = nil, resultsURL: String? = nil, foreignCandidates: Set<String> = [],
        uploadStartedAt: Int64? = nil
    ) {
        self.id = id
        self.key = key
        self.provider = provider
        self.model = model
        self.dialect = dialect
        self.simulated = simulated
        self.state = state
        self.requestCount = requestCount
        self.plannedAt = plannedAt
        self.createStartedAt = createStartedAt
        self.submittedAt = submittedAt
        self.pullBackAt = pullBackAt
        self.nextPollAt = nextPollAt
        self.cancelRequestedAt = cancelRequestedAt
        self.inputFileID = inputFileID
        self.providerBatchID = providerBatchID
        self.providerStatus = providerStatus
        self.outputFileID = outputFileID
        self.errorFileID = errorFileID
        self.resultsURL = resultsURL
        self.foreignCandidates = foreignCandidates
        self.uploadStartedAt = uploadStartedAt
    }
}

/// A request in a batch, as the run needs it to decide what a result line means.
public struct BatchMember: Sendable {
    public var requestID: Int64
    public var jobID: Int64
    public var customID: String
    public var needs: RequestNeeds
    public var referenceModel: String?
    public var deadlineAt: Int64
    public var maxCost: Money?
    public var attempts: Int

    package var plannable: PlannableRequest {
        PlannableRequest(id: requestID, needs: needs, referenceModel: referenceModel, deadlineAt: deadlineAt, maxCost: maxCost)
    }

    package init(
        requestID: Int64, jobID: Int64, customID: String, needs: RequestNeeds, referenceModel: String? = nil,
        deadlineAt: Int64, maxCost: Money? = nil, attempts: Int
    ) {
        self.requestID = requestID
        self.jobID = jobID
        self.customID = customID
        self.needs = needs
        self.referenceModel = referenceModel
        self.deadlineAt = deadlineAt
        self.maxCost = maxCost
        self.attempts = attempts
    }
}

/// What becomes of a request after its batch line was read.
public enum BatchDecision: Sendable {
    case succeed(ProviderResponse, cost: Money, baseline: Money, cacheSaving: Money)
    /// Planned again (a later batch, or live if the deadline is near), this try counted.
    case replan(String)
    /// Planned again for a live call (the batch expired on it, or was cancelled to meet its deadline).
    case replanLive(String)
    /// Served live on another model next (this one refused it).
    case move(model: String, mode: DispatchMode, cost: Money, reason: String)
    case fail(String)
}

/// The provider's ids of a batch's requests: the database's id, the batch's and the request's
/// (`3f9a1c2b7d4e5f60_12_34567`), which fits Anthropic's `^[a-zA-Z0-9_-]{1,64}$` and is unique to this database
/// and batch, so that a batch of another database on the same key is never taken for this one's. Results are
/// joined on it, never by order. Batches stored before this form was used have `r` and the request id.
package enum BatchInput {
    package static func providerCustomID(database: String, batch: Int64, request: Int64) -> String { "\(database)_\(batch)_\(request)" }

    /// The request a results line names, when the line is of this database's batch `batch` (or of a batch stored
    /// before custom ids named their database, `r` and the request id).
    package static func requestID(inCustomID customID: String, database: String, batch: Int64) -> Int64? {
        if customID.hasPrefix("r") { return Int64(customID.dropFirst()) }
        let prefix = "\(database)_\(batch)_"
        guard customID.hasPrefix(prefix) else { return nil }
        return Int64(customID.dropFirst(prefix.count))
    }

    /// True when a line with this custom id belongs to this database's batch `batch`.
    static func isOf(_ customID: String, database: String, batch: Int64) -> Bool {
        customID.hasPrefix("\(database)_\(batch)_")
    }

    /// The provider's dialect for batch bodies.
    package static func batchProvider(_ provider: Provider) -> Provider {
        var batchProvider = provider
        batchProvider.dialect = provider.batchDialect ?? provider.dialect
        return batchProvider
    }

    /// The API limits a batch is cut to (requests, and bytes of input with room to spare).
    package static func limits(_ dialect: Provider.Dialect) -> (requests: Int, bytes: Int) {
        switch dialect {
        case .openai: return (50_000, 190_000_000)
        case .anthropic: return (100_000, 240_000_000)
        }
    }
}

extension BatchResultLine.Outcome {
    /// How the line is recorded among the attempts: its outcome and HTTP status.
    package var attemptWords: (outcome: String, status: Int?) {
        switch self {
        case .succeeded(let response): return ("succeeded", response.statusCode)
        case .failed(let failure): return (failure.kind.rawValue, failure.status)
        case .expired: return ("expired", nil)
        case .cancelled: return ("cancelled", nil)
        }
    }

    /// True when the provider answered the line (a 2xx), so billed it, whether or not the answer could be read.
    package var wasAnswered: Bool {
        switch self {
        case .succeeded: return true
        case .failed(let failure): return (200..<300).contains(failure.status ?? 0)
        case .expired, .cancelled: return false
        }
    }
}
