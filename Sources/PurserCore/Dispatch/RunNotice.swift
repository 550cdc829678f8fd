/// Something a run tells the user about as it goes: a cap near its end, a provider paused or disabled, a request moved,
/// a batch given up. Typed, so that a front end words it (the CLI's `RunReporter`) or counts it (a service's metrics),
/// and nothing in the core reads prose.
public enum RunNotice: Sendable, Equatable {
    // MARK: Before serving

    /// Queued requests planned on providers without a key were planned again on those with one.
    case replannedOffKeylessProviders(requests: Int)
    /// Paid answers an earlier run could not write were stored from the recovery file `recoveryPath` (and its copies).
    case recoveredAnswersStored(count: Int, recoveryPath: String)
    /// A taken copy of the recovery file could not be removed; its answers are back in `recoveryPath`.
    case recoveryCopyNotRemoved(file: String, recoveryPath: String, error: String)
    /// The leases of a run on this host whose process is gone were taken over: `requests` in all, of which
    /// `neverCalled` it had claimed and not called (the others stay counted as maybe billed).
    case tookOverGoneRun(owner: LeaseOwner, requests: Int, neverCalled: Int)
    /// Requests this run waits for are leased by another run (`holder`, a lease owner) until `until`.
    case leasedElsewhere(holder: String, requests: Int, until: Int64)

    // MARK: Money and the store

    /// A cap is past its warning share.
    case capPastWarning(CapUse, simulated: Bool)
    /// The database refused a write (`message` says which and why): the run stops claiming.
    case storageFailed(message: String)
    /// The run keeps no file of the calls it started (`StartedCalls`): it claims no more than it can have in flight.
    case startedCallsNotKept(reason: String)
    /// A paid answer could be neither stored nor kept in the recovery file (`recoveryPath`, nil when the run keeps none).
    case answerLost(customID: String, recoveryPath: String?, error: String?)

    // MARK: Providers and models

    case providerPaused(provider: String, until: Int64, failedPercent: Int, lastError: String)
    case providerResumed(provider: String)
    /// A provider could not be reached for long enough to give up on it; its requests (or, `batches`, its batches)
    /// stay for a later run.
    case providerUnreachable(provider: String, reason: String, batches: Bool)
    /// A provider refused the key, the quota or the origin: not used for the rest of the run.
    case providerDisabled(Provider, CallFailure)
    /// A request moved to another model after a failure.
    case movedToModel(customID: String, from: String, to: String, after: String)

    // MARK: Batches

    /// Another run took the batch over; this run stored nothing of its last step.
    case batchLeaseLost(BatchLeaseLost)
    case batchModelGone(batch: Int64, model: String, replanned: Int)
    /// A batch step failed and is tried again shortly.
    case batchStepFailed(batch: Int64, provider: String, message: String)
    /// The batch API refused a batch before it was created; its requests are served live.
    case batchRefused(batch: Int64, provider: String, what: String, servedLive: Int)
    /// A provider answered the same trouble about a batch for `forMilliseconds`; the batch was given up.
    case batchGivenUp(batch: Int64, providerBatchID: String?, provider: String, answered: String, forMilliseconds: Int64, servedLive: Int)
    case batchNotSentInTime(batch: Int64, replanned: Int)
    /// A batch whose create was cut off by a crash was found at the provider, holding its requests.
    case batchFoundAfterCrash(batch: Int64, providerBatchID: String)
    /// A provider batch like the lost one holds another database's requests: left alone.
    case batchOfAnotherDatabase(batch: Int64, providerBatchID: String)
    /// Whether a cut-off create reached the provider could not be told in time (`reason`); its requests are served live.
    case batchCreateUndecided(reason: String, servedLive: Int)
    /// Waiting for provider batches to end, to tell whether one is this batch (`message`, as stored on the batch).
    case batchWaitingForCandidates(batch: Int64, message: String)
    case batchCancelledNearDeadline(batch: Int64, providerBatchID: String)
    case batchStillCancelling(batch: Int64, providerBatchID: String, servedLive: Int)
    /// A batch's results URL pointed at another origin; its results are read from the provider's own `url`.
    case resultsReadFromOwnOrigin(providerBatchID: String, problem: String, url: String)
}
