import Foundation
import Synchronization

/// Sends requests planned for batch mode through the providers' batch APIs and brings their results back,
/// as one of a run's sibling tasks. It forms batches from ready requests (one model each, cut to the API's
/// limits), then advances every open batch a step whenever one falls due: upload, create, poll, read the
/// results, finish. Each step is one API call followed by one transaction that stores what the call returned,
/// so that after a crash at any point the next run carries on from the last stored step.
final class BatchRunner: Sendable {
    let queue: any RequestQueue
    let book: any BatchBook
    let catalog: PricingCatalog
    let environment: [String: String]
    let options: RunOptions
    let clock: WallClock
    let health: ProviderHealth
    let baseline: Baseline
    let onEvent: @Sendable (RunEvent) -> Void
    /// The cheapest model and mode (by batch where the deadline still allows) other than those given, for a
    /// request a batch's model refused.
    let alternative: @Sendable (PlannableRequest, Set<String>) async -> (Model, DispatchMode)?
    private let apis = Mutex<[String: any BatchAPI]>([:])
    /// When a batch's provider began refusing every step of it (a 4xx other than auth, quota or rate limits).
    private let refusedSince = Mutex<[Int64: Int64]>([:])
    /// The last failure said for each batch, and when: the same one is said again at most once a minute.
    private let lastSaid = Mutex<[Int64: (message: String, at: Int64)]>([:])

    /// A failed API step is tried again after this long (a minute at most).
    static let retryMilliseconds: Int64 = 5_000
    /// After a cancel was asked for to serve a batch's requests live, how much of the pull-back margin is
    /// waited for the provider to end the batch before its requests are taken back regardless.
    static let cancelAllowanceShare: Int64 = 2

    init(
        queue: any RequestQueue, book: any BatchBook, catalog: PricingCatalog, environment: [String: String], options: RunOptions, clock: WallClock,
        health: ProviderHealth, baseline: Baseline, onEvent: @escaping @Sendable (RunEvent) -> Void,
        alternative: @escaping @Sendable (PlannableRequest, Set<String>) async -> (Model, DispatchMode)?
    ) {
        self.queue = queue
        self.book = book
        self.catalog = catalog
        self.environment = environment
        self.options = options
        self.clock = clock
        self.health = health
        self.baseline = baseline
        self.onEvent = onEvent
        self.alternative = alternative
    }

    /// What a tick did, for the run's counts.
    struct Progress: Sendable {
        var succeeded = 0
        var failed = 0
        var spend = Money.zero
        var held = 0
        var holdReasons: [String: HoldReason] = [:]
        var capUses: [CapUse] = []
    }

    /// Forms new batches (unless the run is stopping) and advances every batch that is due. Returns when the next
    /// step falls due, or nil when no batch is open.
    func tick(stopping: Bool, excludedModels: [String], report: (Progress) async -> Void) async throws -> Int64? {
        let now = clock.now()
        if !stopping {
            let formed = try await book.formBatches(
                now: now, job: options.job, excludedModels: excludedModels, simulated: options.simulate, catalog: catalog)
            for batch in formed.batches {
                onEvent(.batch(event(batch, .formed)))
            }
            if formed.held > 0 || !formed.capUses.isEmpty {
                await report(Progress(held: formed.held, holdReasons: formed.holdReasons, capUses: formed.capUses))
            }
        }
        for batch in try await book.batchesToAdvance(now: now, leaseUntil: now + Int64(options.leaseSeconds * 1000)) {
            if Task.isCancelled { break }
            do {
                try await advance(batch, report: report)
            } catch let lost as BatchLeaseLost {
                onEvent(.notice(.batchLeaseLost(lost)))
            }
        }
        return try await book.nextBatchStep()
    }

    // MARK: - One step

    private func advance(_ batch: BatchRow, report: (Progress) async -> Void) async throws {
        let now = clock.now()
        guard let provider = catalog.providers[batch.provider], catalog.model(id: batch.model) != nil else {
            let left = try await book.abandonBatch(batch, reason: "batch \(batch.id): \(batch.model) is no longer in the pricing tables")
            onEvent(.notice(.batchModelGone(batch: batch.id, model: batch.model, replanned: left)))
            return
        }
        if health.disabledProviders[provider.name] != nil { return }
        let api = self.api(for: batch, provider: provider)
        do {
            switch batch.state {
            case .planned, .uploaded:
                try await send(batch, api: api, now: now)
            case .created:
                try await poll(batch, api: api, now: now)
            case .ended:
                try await storeResults(batch, api: api, now: now, report: report)
            case .done:
                break
            }
            _ = health.recordSuccess(provider.name, now: clock.now())
            refusedSince.withLock { _ = $0.removeValue(forKey: batch.id) }
        } catch let error as BatchAPIError {
            // The run is ending: the step is left for the next one.
            if Task.isCancelled { return }
            let failure = error.failure
            if failure.kind == .permanent || failure.kind == .modelRefused, try await refused(batch, failure: failure, now: now) { return }
            if failure.disablesProvider {
                if health.disable(provider.name, reason: "\(failure.status.map { "HTTP \($0): " } ?? "")\(failure.message)") {
                    onEvent(.notice(.providerDisabled(provider, failure)))
                }
            } else {
                // Counted with the provider's live calls: an endpoint that keeps refusing connections ends the run.
                let change = health.recordFailure(
                    provider.name, now: now, unreachable: failure.kind == .unreachable, message: failure.message,
                    longestPause: max(batch.pullBackAt - now, 1_000))
                if case .unreachable(let reason)? = change {
                    onEvent(.notice(.providerUnreachable(provider: provider.name, reason: reason, batches: true)))
                } else if sayOnce(batch.id, failure.message, now: now) {
                    onEvent(.notice(.batchStepFailed(batch: batch.id, provider: batch.provider, message: failure.message)))
                }
            }
            let wait = max(failure.retryAfterMilliseconds ?? 0, BatchRunner.retryMilliseconds)
            try await book.recordBatchError(batch.id, message: failure.message, retryAt: now + min(wait, 60_000))
        }
    }

    /// True when `message` about batch `id` is new, or was last said a minute or more ago (a provider that is down
    /// for hours would otherwise be reported every few seconds).
    private func sayOnce(_ id: Int64, _ message: String, now: Int64) -> Bool {
        lastSaid.withLock { said in
            if let last = said[id], last.message == message, now - last.at < 60_000 { return false }
            said[id] = (message, now)
            return true
        }
    }

    /// The provider answered a step of the batch with a 4xx that trying again will not change (a request it
    /// will not take, a batch it does not know). A batch no create was ever sent for is closed at once and its
    /// requests are served live. One that may be at the provider is given up once such answers have lasted the
    /// give-up time (`--give-up-after`) and come twice in a row: its requests are served live, and what it may
    /// have billed stays counted as unsettled, so that a run never waits on it for ever. True when the batch
    /// was closed.
    private func refused(_ batch: BatchRow, failure: CallFailure, now: Int64) async throws -> Bool {
        let what = "\(failure.status.map { "HTTP \($0): " } ?? "")\(failure.message)"
        guard batch.state != .done else { return false }
        // `batch` is the row as this step found it: no create started before it means none can have succeeded.
        if batch.state == .planned || batch.state == .uploaded, batch.createStartedAt == nil {
            let left = try await book.finishBatch(
                batch, reason: "\(batch.provider)'s batch API refused batch \(batch.id): \(what)", lineErrors: [:], liveOnly: true).replanned
            onEvent(.notice(.batchRefused(batch: batch.id, provider: batch.provider, what: what, servedLive: left)))
            return true
        }
        let since = refusedSince.withLock { $0[batch.id, default: now] }
        guard now - since >= options.health.unreachableAfterMilliseconds, now > since else {
            refusedSince.withLock { $0[batch.id] = since }
            return false
        }
        refusedSince.withLock { _ = $0.removeValue(forKey: batch.id) }
        let reason = "\(batch.provider) answered \(what) about batch \(batch.id) for \(DurationText.approximate(now - since)); served live"
        let taken = try await book.detachBatch(batch, now: now, reason: reason)
        try await book.finishBatch(batch, reason: reason, lineErrors: [:])
        onEvent(.notice(.batchGivenUp(
            batch: batch.id, providerBatchID: batch.providerBatchID, provider: batch.provider, answered: what, forMilliseconds: now - since, servedLive: taken)))
        return true
    }

    /// Uploads the input (OpenAI-style APIs) and creates the batch, storing each id as soon as it comes back.
    /// A file or batch a run created just before it died is found again (by name, by metadata or by its time
    /// and size) rather than sent twice.
    private func send(_ batch: BatchRow, api: any BatchAPI, now: Int64) async throws {
        // A create that was started may have reached the provider: that is settled first (below).
        if now >= batch.pullBackAt && batch.createStartedAt == nil {
            try await abandonUnsent(batch)
            return
        }
        let input = try options.workFolder.newPath("input")
        defer { try? FileManager.default.removeItem(at: input) }
        var bytes = 0, writing: UInt64 = 0, sending: UInt64 = 0
        func timed<T>(_ total: inout UInt64, _ body: () async throws -> T) async throws -> T {
            let started = DispatchTime.now().uptimeNanoseconds
            defer { total += DispatchTime.now().uptimeNanoseconds - started }
            return try await body()
        }
        var inputFileID = batch.inputFileID
        if batch.state == .planned && batch.dialect == .openai && !batch.simulated {
            let name = "purser-\(batch.key).jsonl"
            // Only a run that died during an upload may have left the file at the provider.
            if batch.uploadStartedAt != nil, let found = try await api.findUpload(named: name) {
                inputFileID = found
            } else {
                try await book.recordBatchUploadStarted(batch.id, now: now)
                bytes = try await timed(&writing) { try await BatchInputFile.write(batch, to: input, catalog: catalog, book: book) }
                inputFileID = try await timed(&sending) { try await api.upload(file: input, named: name) }
            }
            options.afterBatchCall?(.upload)
            try await book.recordBatchUpload(batch.id, fileID: inputFileID!)
        }
        var providerBatchID: String?
        if batch.createStartedAt != nil {
            switch try await earlierCreate(batch, api: api, now: now) {
            case .found(let id): providerBatchID = id
            case .undecided: return
            case .none:
                if now >= batch.pullBackAt {
                    try await abandonUnsent(batch)
                    return
                }
            }
        }
        if providerBatchID == nil {
            try await book.recordBatchCreateStarted(batch.id, now: now)
            let inline = batch.dialect == .anthropic && !batch.simulated
            if inline { bytes = try await timed(&writing) { try await BatchInputFile.write(batch, to: input, catalog: catalog, book: book) } }
            var creating: UInt64 = 0
            providerBatchID = try await timed(&creating) {
                try await api.create(key: batch.key, database: book.databaseID, inputFileID: inputFileID, file: input)
            }
            if inline { sending += creating }
        }
        options.afterBatchCall?(.create)
        let created = clock.now()
        try await book.recordBatchCreated(batch.id, providerBatchID: providerBatchID!, now: created, nextPoll: nextPoll(batch, submittedAt: created, now: created))
        onEvent(.batch(event(batch, .sent(
            providerBatchID: providerBatchID!, bytes: bytes, writeMilliseconds: Int64(writing / 1_000_000), uploadMilliseconds: Int64(sending / 1_000_000)))))
    }

    private func abandonUnsent(_ batch: BatchRow) async throws {
        let left = try await book.abandonBatch(batch, reason: "its batch could not be sent before it had to be served live")
        onEvent(.notice(.batchNotSentInTime(batch: batch.id, replanned: left)))
    }

    enum EarlierCreate { case found(String), undecided, none }

    /// A run died during this batch's create: did the create reach the provider? A batch is taken for this one only
    /// beyond doubt: its metadata names this batch and database, or (where the API keeps no metadata) its results'
    /// custom ids carry this database's id and this batch's. Candidates of the same size and time that have not
    /// ended cannot be told apart yet, so the batch waits for them (until it must be served live, keeping what a
    /// lost create may bill as unsettled); one found to be another database's is never looked at again for it.
    private func earlierCreate(_ batch: BatchRow, api: any BatchAPI, now: Int64) async throws -> EarlierCreate {
        guard let started = batch.createStartedAt else { return .none }
        let known = try await book.knownProviderBatchIDs(provider: batch.provider).union(batch.foreignCandidates)
        let candidates = try await api.findBatch(key: batch.key, database: book.databaseID, createdAfter: started, requestCount: batch.requestCount)
            .filter { !known.contains($0.id) }
        if let certain = candidates.first(where: \.certain) { return .found(certain.id) }
        var undecided: [String] = []
        for candidate in candidates {
            let status = try await api.status(candidate.id)
            guard status.phase == .ended else {
                undecided.append(candidate.id)
                continue
            }
            if let first = try await api.firstCustomID(of: status, batchID: candidate.id),
                BatchInput.isOf(first, database: book.databaseID, batch: batch.id)
            {
                onEvent(.notice(.batchFoundAfterCrash(batch: batch.id, providerBatchID: candidate.id)))
                return .found(candidate.id)
            }
            try await book.recordForeignCandidate(batch.id, providerBatchID: candidate.id)
            onEvent(.notice(.batchOfAnotherDatabase(batch: batch.id, providerBatchID: candidate.id)))
        }
        guard !undecided.isEmpty else { return .none }
        if now >= batch.pullBackAt {
            let reason = "batch \(batch.id)'s create was cut off by a crash and whether it reached \(batch.provider) could not be told in time; served live"
            let taken = try await book.detachBatch(batch, now: now, reason: reason)
            try await book.finishBatch(batch, reason: reason, lineErrors: [:])
            onEvent(.notice(.batchCreateUndecided(reason: reason, servedLive: taken)))
            return .undecided
        }
        let message = "waiting for \(undecided.joined(separator: ", ")) to end, to tell whether \(undecided.count == 1 ? "it is" : "one is") this batch (its create was cut off by a crash)"
        if sayOnce(batch.id, message, now: now) { onEvent(.notice(.batchWaitingForCandidates(batch: batch.id, message: message))) }
        try await book.recordBatchError(batch.id, message: message, retryAt: now + min(max((now - started) / 10, 1_000), 60_000))
        return .undecided
    }

    /// Asks the provider how the batch is doing; cancels it when its earliest request must be pulled back to be
    /// served live, and takes its requests back if the provider has not ended it soon after.
    private func poll(_ batch: BatchRow, api: any BatchAPI, now: Int64) async throws {
        guard let providerBatchID = batch.providerBatchID else { return }
        if batch.cancelRequestedAt == nil && now >= batch.pullBackAt {
            try await api.cancel(providerBatchID)
            try await book.recordBatchCancelRequested(batch.id, now: now)
            onEvent(.notice(.batchCancelledNearDeadline(batch: batch.id, providerBatchID: providerBatchID)))
        } else if let cancelled = batch.cancelRequestedAt,
            now - cancelled >= catalog.tiers.batch.pullBackMilliseconds / BatchRunner.cancelAllowanceShare
        {
            let taken = try await book.detachBatch(batch, now: now, reason: "taken back from batch \(batch.id), which did not end in time, to be served live")
            if taken > 0 {
                onEvent(.notice(.batchStillCancelling(batch: batch.id, providerBatchID: providerBatchID, servedLive: taken)))
            }
        }
        let status = try await api.status(providerBatchID)
        if status.phase == .ended { options.afterBatchCall?(.ended) }
        try await book.recordBatchPoll(batch.id, status: status, now: clock.now(), nextPoll: nextPoll(batch, submittedAt: batch.submittedAt ?? now, now: now))
        if status.phase == .ended {
            onEvent(.batch(event(batch, .ended(providerBatchID: providerBatchID, providerStatus: status.providerStatus))))
        }
    }

    /// Reads the results in chunks and stores each chunk in one transaction; then plans again whatever the
    /// batch did not answer, and closes it.
    private func storeResults(_ batch: BatchRow, api: any BatchAPI, now: Int64, report: (Progress) async -> Void) async throws {
        guard let providerBatchID = batch.providerBatchID else { return }
        var totals = BatchResultCounts()
        var chunks = 0, lineCount = 0
        var storing: UInt64 = 0
        let started = DispatchTime.now().uptimeNanoseconds
        if batch.providerStatus != "failed" {
            try await api.readResults(of: batch.status, batchID: providerBatchID) { lines in
                lineCount += lines.count
                let chunkStarted = DispatchTime.now().uptimeNanoseconds
                defer { storing += DispatchTime.now().uptimeNanoseconds - chunkStarted }
                let members = try await book.batchMembers(batch.id, providerCustomIDs: lines.map(\.customID))
                var decided: [(line: BatchResultLine, member: BatchMember?, decision: BatchDecision?)] = []
                for line in lines {
                    if let member = members[line.customID] {
                        decided.append((line, member, try await decide(member, outcome: line.outcome, batch: batch, now: now)))
                    } else {
                        decided.append((line, nil, nil))
                    }
                }
                let counts = try await book.applyBatchResults(batch, lines: decided, now: now, catalog: catalog)
                totals.succeeded += counts.succeeded
                totals.failed += counts.failed
                totals.replanned += counts.replanned
                totals.moved += counts.moved
                totals.spend += counts.spend
                await report(Progress(succeeded: counts.succeeded, failed: counts.failed, spend: counts.spend))
                chunks += 1
                if chunks == 1 { options.afterBatchCall?(.results) }
            }
        }
        let errors = try await book.batchErrors(batch.id)
        let reason = batch.providerStatus == "failed"
            ? "batch \(batch.id) failed at \(batch.provider)" + (errors[0].map { " (\($0))" } ?? "")
            : "batch \(batch.id) ended (\(batch.providerStatus ?? "ended")) without an answer for it"
        let failed = batch.providerStatus == "failed"
        let finished = try await book.finishBatch(
            batch, reason: reason, lineErrors: errors, liveOnly: failed,
            unanswered: failed ? .notBilled : .mayBeBilled(maximumAttempts: options.retry.maximumAttempts, now: now))
        let left = finished.replanned
        totals.failed += finished.failed
        if finished.failed > 0 { await report(Progress(failed: finished.failed)) }
        onEvent(.batch(event(batch, .stored(BatchStored(
            lines: lineCount, answers: totals.succeeded, spend: totals.spend, replanned: totals.replanned + left, moved: totals.moved,
            failed: totals.failed, batchFailed: failed, errors: errors,
            readMilliseconds: Int64((DispatchTime.now().uptimeNanoseconds - started - storing) / 1_000_000),
            storeMilliseconds: Int64(storing / 1_000_000))))))
    }

    private func event(_ batch: BatchRow, _ step: BatchEvent.Step) -> BatchEvent {
        BatchEvent(batch: batch.id, provider: batch.provider, model: batch.model, requests: batch.requestCount, simulated: batch.simulated, step: step)
    }

    /// What a result line means for its request: stored at batch prices; planned again (a later batch or live,
    /// by the time left); moved to the next model when this one refused it; or failed.
    private func decide(_ member: BatchMember, outcome: BatchResultLine.Outcome, batch: BatchRow, now: Int64) async throws -> BatchDecision {
        guard let model = catalog.model(id: batch.model) else { return .replan("\(batch.model) is no longer in the pricing tables") }
        switch outcome {
        case .succeeded(let response):
            let prices = Charges.prices(of: model, mode: .batch, at: now)
            let cost = Charges.cost(of: response.usage, prices: prices)
            let baselineCost = baseline.model(for: member.plannable).map { Charges.cost(of: response.usage, prices: $0.prices) } ?? cost
            return .succeed(response, cost: cost, baseline: baselineCost, cacheSaving: Charges.cacheSaving(of: response.usage, prices: prices))
        case .expired:
            // The provider could not serve it in its window: planned for a live call rather than another day's wait.
            return .replanLive("batch \(batch.id)'s window ended before it was served; planned for a live call")
        case .cancelled:
            return .replanLive("batch \(batch.id) was cancelled before it was served; planned for a live call")
        case .failed(let failure):
            switch failure.kind {
            case .permanent:
                return .fail(failure.message)
            case .modelRefused:
                // Every model that refused it (or failed it as often as a model may) is passed over, so that two
                // models' batches never hand a request back and forth.
                let passedOver = try await queue.exhaustedModels(for: member.requestID, threshold: options.retry.attemptsPerModel)
                guard let (next, mode) = await alternative(member.plannable, passedOver.union([model.id])) else {
                    return .fail("no other model can serve it; \(model.id) refused: \(failure.message)")
                }
                let cost = Charges.prices(of: next, mode: mode, at: now).cost(
                    inputTokens: member.needs.inputTokens, outputTokens: next.outputAllowance(member.needs.maxOutputTokens))
                return .move(model: next.id, mode: mode, cost: cost, reason: "moved from \(model.id) after: \(failure.message)")
            case .retryable, .unreachable, .auth, .quota, .misdirected:
                if member.attempts >= options.retry.maximumAttempts {
                    return .fail("gave up after \(member.attempts) attempts; last: \(failure.message)")
                }
                return .replan("batch \(batch.id): \(failure.message)")
            }
        }
    }

    // MARK: - Pieces

    private func api(for batch: BatchRow, provider: Provider) -> any BatchAPI {
        let key = "\(batch.simulated ? "sim:" : "")\(provider.name)"
        return apis.withLock { apis in
            if let api = apis[key] { return api }
            let api: any BatchAPI
            if batch.simulated {
                let book = book, catalog = catalog
                api = SimulatedBatchAPI(speedup: options.simulationSpeedup) { id in
                    try await book.batchCalls(providerBatchID: id, catalog: catalog)
                }
            } else {
                switch batch.dialect {
                case .openai: api = OpenAIBatchAPI(provider: provider, environment: environment, folder: options.workFolder)
                case .anthropic:
                    let onEvent = onEvent
                    api = AnthropicBatchAPI(provider: provider, environment: environment, folder: options.workFolder) { onEvent(.notice($0)) }
                }
            }
            apis[key] = api
            return api
        }
    }

    /// Polls come often while a batch is young and every minute at most once it has run a while (a tenth of
    /// its age), and never later than its pull-back. A simulated batch, answered in-process in real time, is
    /// looked at on every pass of the batch loop.
    private func nextPoll(_ batch: BatchRow, submittedAt: Int64, now: Int64) -> Int64 {
        guard !batch.simulated else { return now }
        return min(now + min(max((now - submittedAt) / 10, 1_000), 60_000), max(batch.pullBackAt, now))
    }
}
