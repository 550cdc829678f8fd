import Foundation

/// What `purser run` was asked to do.
public struct RunOptions: Sendable {
    /// The most calls a run may have in flight (and so the most workers it starts).
    public static let maximumConcurrency = 100_000

    public var job: Int64?
    public var concurrency = 16
    public var simulate = false
    /// Simulated calls take their modelled latency divided by this.
    public var simulationSpeedup = 1.0
    public var watch = false
    public var graceSeconds = 10.0
    public var timeoutSeconds = 120.0
    /// A lease outlives a call's timeout, and is renewed every third of it while the call runs.
    public var leaseSeconds = 180.0
    public var allowLate = false
    public var limits = RateLimiter.Limits()
    public var retry = RetryPolicy()
    /// How long a provider is paused when most of its recent calls fail (doubling while probes fail).
    public var cooldownSeconds = 30.0
    public var health = ProviderHealth.Settings()
    /// Where paid answers go when the database cannot take them (`DB.recovery`); nil keeps none (the benchmark).
    public var recovery: RecoveryFile?
    /// Where the run notes each call before sending it (`DB.started.WORKER`), so that it may claim ahead of its calls:
    /// after a crash only the calls noted there count as maybe billed. Nil claims no more than can be in flight.
    public var startedCalls: StartedCalls?
    /// Where batch inputs, uploads and downloaded results are kept while a batch step needs them (`DB.work`).
    public var workFolder = WorkFolder(folder: FileManager.default.temporaryDirectory.appendingPathComponent("purser.work").path)
    /// Names this process's leases; unique per run.
    public var worker: String
    /// Send and advance batches, but end without waiting for those still at the provider (a later run collects them).
    public var detachBatches = false
    /// Told right after each batch step's API call returned, before what it returned is stored: the moment a crash
    /// would do most harm, which is where the front end's crash tests stop the process.
    public var afterBatchCall: (@Sendable (BatchCall) -> Void)?

    public init(worker: String) { self.worker = worker }
}

/// What a run reports while it works and when it ends. The CLI decides how to show it.
public enum RunEvent: Sendable {
    case started(total: Int, planned: Int)
    case progress(RunProgress)
    /// Something that needs the user's eye: a cap, a paused provider, a failure.
    case notice(RunNotice)
    /// A cap holds requests (the first time this run, per cap): what it holds them at.
    case held(HoldReason)
    /// A batch's step: formed, sent, ended, its results stored.
    case batch(BatchEvent)
    case finished(RunSummary)
}

/// A batch step's call to its provider's API.
public enum BatchCall: String, Sendable, CaseIterable {
    case upload, create, ended, results
}

/// A batch's step, typed: the front end words it.
public struct BatchEvent: Sendable {
    public enum Step: Sendable {
        case formed
        /// Sent as `providerBatchID`: the bytes of its input, how long writing them to disk took, and how long sending
        /// them took (the upload of an OpenAI-style API, the create call of Anthropic's, where the requests travel inline).
        case sent(providerBatchID: String, bytes: Int, writeMilliseconds: Int64, uploadMilliseconds: Int64)
        case ended(providerBatchID: String, providerStatus: String)
        case stored(BatchStored)
    }

    public var batch: Int64
    public var provider: String
    public var model: String
    public var requests: Int
    public var simulated: Bool
    public var step: Step

    /// True when the user should look: the batch failed, or requests of it did.
    public var isWarning: Bool {
        guard case .stored(let stored) = step else { return false }
        return stored.batchFailed || stored.failed > 0
    }
}

/// What storing a batch's results did.
public struct BatchStored: Sendable {
    /// Result lines read, and answers stored at batch prices.
    public var lines: Int
    public var answers: Int
    public var spend: Money
    /// Requests planned again (for live calls when the batch failed), moved to another model, and failed.
    public var replanned: Int
    public var moved: Int
    public var failed: Int
    /// The provider failed the whole batch (validation): `errors` by input line, 0 for the batch's own.
    public var batchFailed: Bool
    public var errors: [Int: String]
    /// How long downloading and parsing took, and storing.
    public var readMilliseconds: Int64
    public var storeMilliseconds: Int64
}

public struct RunProgress: Sendable {
    public var succeeded: Int
    public var failed: Int
    public var expired: Int
    public var inFlight: Int
    /// Requests in batches (sent or to be sent); they are among `remaining`.
    public var inBatches: Int
    /// Requests this run may still serve.
    public var remaining: Int
    public var spend: Money
    public var elapsedMilliseconds: Int64
    /// The batches still open, oldest first, each with when it is expected to end.
    public var batches: [OpenBatchProgress] = []
    /// Retries, moves to another model, and 429s that slowed a model down, so far in this run.
    public var retried = 0
    public var fellBack = 0
    public var slowDowns = 0
}

/// A batch still open, for progress: its age and when it is expected to end — from this database's own history
/// of that model's batches once it has seen enough of them, otherwise at the end of the provider's 24-hour window.
public struct OpenBatchProgress: Sendable, Hashable {
    public var id: Int64
    public var provider: String
    public var model: String
    public var requests: Int
    /// When it was sent; nil while it is still to be sent.
    public var submittedAt: Int64?
    public var expectedEndAt: Int64
    /// True when the expected end comes from the batches seen; false when it is the provider's window.
    public var fromHistory: Bool

    package init(
        id: Int64, provider: String, model: String, requests: Int, submittedAt: Int64? = nil, expectedEndAt: Int64,
        fromHistory: Bool
    ) {
        self.id = id
        self.provider = provider
        self.model = model
        self.requests = requests
        self.submittedAt = submittedAt
        self.expectedEndAt = expectedEndAt
        self.fromHistory = fromHistory
    }
}

/// One reason a run ended with requests in scope not served.
public enum LeftQueued: Sendable, Equatable {
    /// The provider cannot be used for the rest of this run (a refused key, an exhausted quota, unreachable).
    case providerDisabled(provider: String, reason: String)
    /// Requests queued on models whose providers cannot be used now.
    case onUnusableProviders(requests: Int)
    /// Requests no usable model has room for before their deadline.
    case unplanned(requests: Int)
    /// Requests a budget cap holds.
    case heldByCap(requests: Int)
    /// Requests ready to serve when the run stopped early.
    case notServed(requests: Int)
    /// Requests in batches, at their provider or still to be sent: the next run carries them on.
    case inBatches(requests: Int)

    /// True for the reasons that are a provider this run could not use.
    public var isOnUnusableProvider: Bool {
        switch self {
        case .providerDisabled, .onUnusableProviders: true
        case .unplanned, .heldByCap, .notServed, .inBatches: false
        }
    }
}

public struct RunSummary: Sendable {
    public var succeeded: Int
    public var failed: Int
    public var expired: Int
    public var retried: Int
    public var fellBack: Int
    /// Requests in scope held by a budget cap when the run ended.
    public var held: Int
    public var spend: Money
    public var simulated: Bool
    public var elapsedMilliseconds: Int64
    /// What the run left undone, and why (providers disabled, no plan, stopped early): rendered by the front end.
    public var leftQueued: [LeftQueued]
    /// Providers this run could not use, and why (a refused key, an exhausted quota, unreachable).
    public var disabledProviders: [String: String] = [:]
    /// Set when the database stopped taking writes: what failed, and how many paid answers went to the recovery file.
    public var storageFailure: String?
    public var keptForRecovery = 0
    /// Paid answers that could be neither stored nor kept in the recovery file (a full disk), by custom id.
    public var lostAnswers: [String] = []
    /// Set when requests were left unserved because no provider can be used at all: the key variables to set.
    public var missingKeys: [String] = []
    /// Paid answers from an earlier run's recovery file, stored at the start of this one.
    public var recovered = 0

    /// Why the run should exit non-zero, or nil when it did its job; the front end words it.
    public var trouble: RunTrouble? {
        if !lostAnswers.isEmpty { return .answersLost(lostAnswers, storageFailure: storageFailure) }
        if let storageFailure { return .storageFailed(storageFailure) }
        if !missingKeys.isEmpty { return .noKeys(missingKeys) }
        if failed > 0 { return .requestsFailed(failed) }
        if !disabledProviders.isEmpty, leftQueued.contains(where: \.isOnUnusableProvider) || succeeded == 0 {
            return .providersUnusable(disabledProviders)
        }
        return nil
    }
}

/// Why a run did not do its job, most serious first.
public enum RunTrouble: Sendable, Equatable {
    /// Paid answers neither stored nor kept in the recovery file (their custom ids), after the database failed.
    case answersLost([String], storageFailure: String?)
    /// The database stopped taking writes.
    case storageFailed(String)
    /// No provider could be used, since none has its key set: the variables to set.
    case noKeys([String])
    /// Requests failed.
    case requestsFailed(Int)
    /// Providers this run could not use, and why, when that left work undone.
    case providersUnusable([String: String])
}
