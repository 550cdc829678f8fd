import PurserCore

/// How `purser run` words what the core reports in typed values: its notices and its batches' steps.
extension RunReporter {
    /// A run's notice in words, with what the user can do about it.
    static func words(_ notice: RunNotice) -> String {
        switch notice {
        case .replannedOffKeylessProviders(let requests):
            return "\(requests) requests were planned on providers this run cannot use (no key set); they are planned again on those it can"
        case .recoveredAnswersStored(let count, let recoveryPath):
            return "stored \(count) paid answers an earlier run could not write (from \(recoveryPath).*); none was called again"
        case .recoveryCopyNotRemoved(let file, let recoveryPath, let error):
            return "cannot remove \(file) (its answers are back in \(recoveryPath)): \(error)"
        case .tookOverGoneRun(let owner, let requests, let neverCalled):
            let taken = "took over \(requests) requests leased by process \(owner.pid) on \(owner.host), which is gone; "
            guard neverCalled > 0 else { return taken + "their calls may have been billed, so their reservations stay counted as unsettled" }
            let called = requests - neverCalled
            return taken + "\(called) had been called and may have been billed, so their reservations stay counted as unsettled; "
                + "the other \(neverCalled) were claimed and never called, and go back to the queue"
        case .leasedElsewhere(let holder, let requests, let until):
            let who = LeaseOwner(holder).map { "process \($0.pid) on \($0.host)" } ?? holder
            return "\(requests) requests are leased by \(who) until \(timestampText(until)); this run serves them if that lease lapses"
        case .capPastWarning(let use, let simulated):
            return "\(use.scopeText) is \(percentText(use.usedBasisPoints)) used: \(use.charged.formatted) charged"
                + (use.unsettled > .zero ? ", \(use.unsettled.formatted) unsettled" : "")
                + " and \(use.reserved.formatted) reserved of \(use.cap.formatted)\(simulated ? " (simulated)" : "")"
        case .storageFailed(let message):
            return "\(message); this run stops claiming and lets its calls in flight finish"
        case .startedCallsNotKept(let reason):
            return "\(reason); this run claims no more than it can have in flight (a run that takes its leases over counts each as maybe billed)"
        case .answerLost(let customID, let recoveryPath?, let error):
            return "the paid answer to \(customID) could be neither stored nor kept in \(recoveryPath) (\(error ?? "unknown")); it is lost, and its call was billed"
        case .answerLost(let customID, nil, _):
            return "the paid answer to \(customID) could not be stored and this run keeps no recovery file; it is lost, and its call was billed"
        case .providerPaused(let provider, let until, let percent, let lastError):
            return "provider \(provider) paused until \(timestampText(until)): \(percent)% of its recent calls failed (last: \(lastError)); it is probed before calls resume"
        case .providerResumed(let provider):
            return "provider \(provider) resumed: a probe call succeeded"
        case .providerUnreachable(let provider, let reason, let batches):
            return "provider \(provider) is \(reason); " + (batches ? "its batches stay where they are for a later run" : "its requests stay queued for a later run")
        case .providerDisabled(let provider, let failure):
            return "provider \(provider.name) disabled for this run (\(advice(failure, provider))): \(failure.message)"
        case .movedToModel(let customID, let from, let to, let after):
            return "\(customID): moving from \(from) to \(to) after: \(after)"
        case .batchLeaseLost(let lost):
            return "\(lost); this run stored nothing of its last step and leaves it to that run"
        case .batchModelGone(let batch, let model, let replanned):
            return "batch \(batch): \(model) is no longer in the pricing tables; its \(replanned) requests are planned again"
        case .batchStepFailed(let batch, let provider, let message):
            return "batch \(batch) (\(provider)): \(message); tried again shortly"
        case .batchRefused(let batch, let provider, let what, let servedLive):
            return "batch \(batch) (\(provider)): the batch API refused it (\(what)); its \(servedLive) requests are served live"
        case .batchGivenUp(let batch, let providerBatchID, let provider, let answered, let milliseconds, let servedLive):
            return "batch \(batch) (\(providerBatchID ?? "?")): \(provider) has answered \(answered) for \(DurationText.approximate(milliseconds)); "
                + "given up: its \(servedLive) requests are served live, and what it may have billed stays counted as unsettled"
        case .batchNotSentInTime(let batch, let replanned):
            return "batch \(batch) was not sent before its requests had to be served live; its \(replanned) requests are planned again"
        case .batchFoundAfterCrash(let batch, let providerBatchID):
            return "batch \(batch): \(providerBatchID), created when this batch's create was cut off by a crash, holds its requests: carried on with it"
        case .batchOfAnotherDatabase(let batch, let providerBatchID):
            return "batch \(batch): \(providerBatchID), of the same size and created about when this batch's create was cut off, holds another database's requests; it is left alone"
        case .batchCreateUndecided(let reason, let servedLive):
            return "\(reason): its \(servedLive) requests are served live, and what the lost create may bill stays counted as unsettled"
        case .batchWaitingForCandidates(let batch, let message):
            return "batch \(batch): \(message)"
        case .batchCancelledNearDeadline(let batch, let providerBatchID):
            return "batch \(batch) (\(providerBatchID)) has not ended and a deadline is near: cancelled; what it did not finish is served live"
        case .batchStillCancelling(let batch, let providerBatchID, let servedLive):
            return "batch \(batch) (\(providerBatchID)) is still being cancelled: its \(servedLive) requests are served live now; any answer it still gives stays counted as unsettled"
        case .resultsReadFromOwnOrigin(let providerBatchID, let problem, let url):
            return "batch \(providerBatchID): \(problem); its results are read from \(url) instead"
        }
    }

    /// A batch's step in words.
    static func words(_ event: BatchEvent) -> String {
        let requests = "\(event.requests) request\(event.requests == 1 ? "" : "s")"
        switch event.step {
        case .formed:
            return "batch \(event.batch): \(requests) for \(event.model) to go through \(event.provider)'s batch API\(event.simulated ? " (simulated)" : "")"
        case .sent(let providerBatchID, _, _, _):
            return "batch \(event.batch): sent to \(event.provider) as \(providerBatchID) (\(requests) for \(event.model))"
        case .ended(let providerBatchID, let status):
            return "batch \(event.batch) (\(providerBatchID)) ended at \(event.provider): \(status)"
        case .stored(let stored):
            var words = "batch \(event.batch): \(stored.answers) answer\(stored.answers == 1 ? "" : "s") stored at batch prices "
                + "(\(stored.spend.formatted)\(event.simulated ? ", simulated" : ""))"
            if stored.replanned > 0 { words += ", \(stored.replanned) planned again\(stored.batchFailed ? " for live calls" : "")" }
            if stored.moved > 0 { words += ", \(stored.moved) moved to another model" }
            if stored.failed > 0 { words += ", \(stored.failed) failed" }
            if stored.batchFailed {
                let lines = stored.errors.keys.filter { $0 > 0 }.sorted()
                words += "; the batch failed validation" + (lines.isEmpty ? "" : " at line\(lines.count == 1 ? "" : "s") \(lines.prefix(10).map(String.init).joined(separator: ", "))")
                    + (stored.errors.first.map { ": \($0.value)" } ?? "")
            }
            return words
        }
    }

    /// What the user can do about a failure that disabled `provider`.
    private static func advice(_ failure: CallFailure, _ provider: Provider) -> String {
        switch failure.kind {
        case .auth: "check \(provider.apiKeyEnvironmentVariable)"
        case .quota: "quota or spend limit"
        case .misdirected: "check its base_url"
        default: "see the message"
        }
    }
}
