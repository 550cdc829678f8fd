import Foundation
import Synchronization

/// Serves due requests: claims them under a lease, waits for rate limits, calls the planned model, and
/// records the result with its cost, a retry, a fallback to the next model, or a failure.
///
/// A run is one task group of siblings: the worker pool (a fixed number of workers, each taking the next
/// claimed request), the heartbeat that renews leases, the progress reports, and the shutdown watch, which
/// after a stop request and its grace period cancels the pool. Whichever of the pool and the shutdown watch
/// ends first ends the others.
///
/// Nothing the store says is ignored. A paid answer whose write fails is written again, and if the database
/// still refuses it, kept in the recovery file beside it; the run then stops claiming, lets its calls finish
/// and ends with the failure, and the next run stores those answers first, without calling again.
public final class Dispatcher: Sendable {
    let queue: any RequestQueue
    let plans: any PlanBook
    let batchBook: any BatchBook
    let caller: any ModelCaller
    let catalog: PricingCatalog
    let environment: [String: String]
    let options: RunOptions
    let clock: WallClock
    let onEvent: @Sendable (RunEvent) -> Void
    let limiter: RateLimiter
    let health: ProviderHealth
    let baseline: Baseline
    private let state: RunState
    private let batches: BatchRunner
    private let primers = CachePrimers()

    public init(
        storage: RunStorage, caller: any ModelCaller, catalog: PricingCatalog, environment: [String: String], options: RunOptions,
        clock: WallClock = .system, onEvent: @escaping @Sendable (RunEvent) -> Void
    ) {
        queue = storage.queue
        plans = storage.plans
        batchBook = storage.batches
        self.caller = caller
        self.catalog = catalog
        self.environment = environment
        self.options = options
        self.clock = clock
        self.onEvent = onEvent
        state = RunState(clock: clock)
        limiter = RateLimiter(limits: options.limits, clock: clock)
        var health = options.health
        health.pauseMilliseconds = Int64(options.cooldownSeconds * 1000)
        self.health = ProviderHealth(settings: health)
        baseline = Baseline(context: PlanningContext(catalog: catalog, now: 0, usableProviders: Set(catalog.providers.keys)))
        let providerHealth = self.health
        batches = BatchRunner(
            queue: storage.queue, book: storage.batches, catalog: catalog, environment: environment, options: options, clock: clock, health: providerHealth, baseline: baseline,
            onEvent: onEvent,
            alternative: { request, excluded in
                await Dispatcher.cheapestAlternative(
                    for: request, excluding: excluded, catalog: catalog, environment: environment, simulate: options.simulate, health: providerHealth,
                    now: clock.now(), allowingBatch: true).map { ($0.0, $0.2) }
            })
    }

    /// Stops claiming; calls in flight get `graceSeconds` to finish before they are cancelled and released.
    public func stop() async { await state.requestStop() }

    private enum Role: Sendable { case pool, heartbeat, progress, graceOver, batches }

    public func run() async throws -> RunSummary {
        let started = clock.now()
        // Batch inputs and results that runs killed midway left behind.
        options.workFolder.removeLeftovers()
        let recovered = try await storeRecoveredAnswers()
        // Room for the answers of every call in flight, should the disk fill up while they are out.
        try options.recovery?.open(reserving: min(max(options.concurrency * 64 << 10, 8 << 20), 256 << 20))
        do { try options.startedCalls?.open() } catch { onEvent(.notice(.startedCallsNotKept(reason: "\(error)"))) }
        defer {
            options.recovery?.close()
            // A run that ends with a lease still held (the database failed) leaves the file to whoever takes it over.
            options.startedCalls?.close(remove: state.storageFailure == nil)
            options.workFolder.removeIfEmpty()
        }
        try await takeOverGoneRuns(now: started)
        options.startedCalls?.removeGoneRuns()
        if !options.allowLate { _ = try await queue.expireOverdue(now: started, job: options.job) }
        let stranded = try await queue.unplanStranded(onModels: keylessModels(), job: options.job)
        if stranded > 0 {
            onEvent(.notice(.replannedOffKeylessProviders(requests: stranded)))
        }
        _ = try await planNewJobs(now: started)
        let counts = try await queue.stateCounts(job: options.job)
        let total = counts.values.reduce(0, +)
        let open = [RequestState.queued, .waiting, .running].reduce(0) { $0 + (counts[$1] ?? 0) }
        onEvent(.started(total: total, planned: open))
        await state.setRemaining(open)
        // No more workers than calls can be in flight, nor than there is work for (unless more may arrive).
        let workers = options.watch ? options.concurrency : min(options.concurrency, max(open, 1))
        await withTaskGroup(of: Role.self) { group in
            group.addTask { await self.workerPool(workers); return .pool }
            group.addTask { await self.heartbeat(); return .heartbeat }
            group.addTask { await self.progressReports(started: started); return .progress }
            group.addTask { await self.graceAfterStop(); return .graceOver }
            group.addTask { await self.batchLoop(); return .batches }
            for await role in group where role == .pool || role == .graceOver { group.cancelAll() }
        }
        await state.everyAnswerStored()
        for request in await state.drainClaimed() {
            await persist("return a claimed request to the queue") { try await self.queue.release(request, countAttempt: false, attempt: nil, reason: nil) }
        }
        // Another run may advance this run's batches at once.
        await persist("hand back this run's batches") { try await self.batchBook.releaseBatchLeases() }
        return try await summary(started: started, recovered: recovered)
    }

    // MARK: - Before serving

    /// Stores the paid answers an earlier run could not write, before anything is claimed or called.
    private func storeRecoveredAnswers() async throws -> Int {
        guard let recovery = options.recovery, let (answers, taken) = try recovery.take() else { return 0 }
        var stored = 0
        for (index, answer) in answers.enumerated() {
            do {
                if try await queue.storeRecovered(answer) { stored += 1 }
            } catch {
                // Still failing: what is left goes back in the file for the next run.
                try recovery.giveBack(Array(answers[index...]))
                // The answers are back in the recovery file; a taken copy that cannot be removed is only read by hand.
                for file in taken {
                    do { try FileManager.default.removeItem(atPath: file) } catch {
                        onEvent(.notice(.recoveryCopyNotRemoved(file: file, recoveryPath: recovery.ownPath, error: "\(error)")))
                    }
                }
                throw error
            }
        }
        for file in taken { try FileManager.default.removeItem(atPath: file) }
        if stored > 0 { onEvent(.notice(.recoveredAnswersStored(count: stored, recoveryPath: recovery.path))) }
        return stored
    }

    /// Takes over the leases of runs on this host whose process is gone: those they noted as called stay counted
    /// as maybe billed, the others go back to the queue (`StartedCalls`).
    private func takeOverGoneRuns(now: Int64) async throws {
        let startedCalls = options.startedCalls
        for (owner, requests, neverCalled) in try await queue.takeOverGoneOwners(now: now, startedCalls: { startedCalls?.read(owner: $0) }) {
            startedCalls?.remove(owner: owner.description)
            onEvent(.notice(.tookOverGoneRun(owner: owner, requests: requests, neverCalled: neverCalled)))
        }
    }

    /// Plans jobs with requests that have no plan (at the start and as they come back or arrive); with --watch
    /// every request not yet started is planned again with them, so the new job and the old ones share the
    /// models' capacity. True when it placed any.
    private func planNewJobs(now: Int64) async throws -> Bool {
        let needingPlans = try await plans.jobsNeedingPlans(job: options.job)
        guard !needingPlans.isEmpty else { return false }
        let jobs = options.watch ? try await plans.jobsNotStarted(job: options.job) : needingPlans
        var request = PlanningRequest(
            jobs: jobs, catalog: catalog,
            usableProviders: PlanningContext.usableProviders(catalog: catalog, environment: environment, simulate: options.simulate), now: now)
        let state = self.state
        request.shouldStop = { state.stopWasRequested }
        request.simulated = options.simulate
        return try await plans.planJobs(request) > 0
    }

    // MARK: - The siblings

    /// The workers, in task groups of at most 64 under one: the Swift runtime walks a task group's children to add one
    /// (to find the last) and to take a finished one out, so a single group of 20,000 workers cost some 200 million
    /// steps as the run started and ended.
    private func workerPool(_ count: Int) async {
        let count = max(count, 1), eachGroup = 64
        await withTaskGroup(of: Void.self) { groups in
            for first in stride(from: 0, to: count, by: eachGroup) {
                let workers = min(eachGroup, count - first)
                groups.addTask {
                    await withTaskGroup(of: Void.self) { group in
                        for _ in 0..<workers { group.addTask { await self.workerLoop() } }
                    }
                }
            }
        }
    }

    private func heartbeat() async {
        let interval = Int64(options.leaseSeconds / 3 * 1000)
        while !Task.isCancelled {
            await clock.pause(milliseconds: interval)
            if Task.isCancelled { return }
            let until = clock.now() + Int64(options.leaseSeconds * 1000)
            await persist("renew this run's leases") {
                try await self.queue.extendLeases(until: until)
                try await self.batchBook.extendBatchLeases(until: until)
            }
        }
    }

    private func progressReports(started: Int64) async {
        var inBatches = 0
        var batches: [OpenBatchProgress] = []
        while !Task.isCancelled {
            await clock.pause(milliseconds: 1_000)
            if Task.isCancelled { return }
            let totals = await state.totals
            let now = clock.now()
            // Counts for the progress line only: when they cannot be read, the last ones stand.
            do {
                inBatches = try await queue.requestsInBatches(job: options.job)
                batches = inBatches > 0 ? try await batchBook.openBatchProgress(job: options.job, now: now, window: Tiers.BatchTiming.windowMilliseconds) : []
            } catch {}
            var progress = RunProgress(
                succeeded: totals.succeeded, failed: totals.failed, expired: totals.expired, inFlight: await state.inFlight,
                inBatches: inBatches, remaining: await state.remaining, spend: totals.spend, elapsedMilliseconds: now - started)
            progress.batches = batches
            (progress.retried, progress.fellBack, progress.slowDowns) = (totals.retried, totals.fellBack, totals.slowDowns)
            onEvent(.progress(progress))
        }
    }

    /// Forms and advances batches until the run ends; on a stop it stops at the next step, leaving its batches
    /// at the provider for the next run.
    private func batchLoop() async {
        while !Task.isCancelled {
            let failed = state.storageFailure != nil
            if state.stopWasRequested || failed { return }
            let excluded = await excludedModels(now: clock.now())
            do {
                let next = try await batches.tick(stopping: false, excludedModels: excluded) { progress in
                    await self.state.countBatchProgress(progress)
                    await self.reportBudget(holdReasons: progress.holdReasons, capUses: progress.capUses)
                }
                let wait = next.map { min(max($0 - clock.now(), 50), 1_000) } ?? 1_000
                await clock.pause(milliseconds: wait)
            } catch {
                await storageFailed("advance the batches", error)
                return
            }
        }
    }

    /// Returns `graceSeconds` after a stop request (the run then cancels the calls still in flight), or when cancelled.
    private func graceAfterStop() async {
        await withTaskCancellationHandler {
            await state.waitForStopRequest()
        } onCancel: {
            Task { await self.state.releaseStopWaiters() }
        }
        if Task.isCancelled { return }
        await clock.pause(milliseconds: Int64(options.graceSeconds * 1000))
    }

    // MARK: - Workers

    /// Serves requests one after another. A paid answer waits for its group commit while the worker goes on with its
    /// next calls: a call's cycle is then the call, not the call and a commit's wait. Beyond `storingLimit` answers
    /// waiting in the run, a worker waits for one to be stored (the database's pace holds the calls back); the run
    /// ends only once every answer is stored (`run`).
    private func workerLoop() async {
        while !Task.isCancelled {
            guard let request = await nextRequest() else { return }
            do {
                if let reason = try options.startedCalls?.note(request.id) { onEvent(.notice(.startedCallsNotKept(reason: reason))) }
            } catch {
                await release(request)
                await state.finishedOne()
                await storageFailed("note a call as started", error)
                return
            }
            guard let answer = await serve(request) else {
                await state.finishedOne()
                continue
            }
            await state.answered(storingAtMost: storingLimit)
            let startHandingOver = unstored.withLock { unstored in
                unstored.answers.append((answer, request))
                defer { unstored.handingOver = true }
                return !unstored.handingOver
            }
            if startHandingOver { Task { await self.handOverAnswers() } }
        }
    }

    /// Paid answers waiting to be handed to the store, and whether a task is handing them over. One task hands over
    /// whatever has gathered, in one call, and counts it stored in one step: a task and two hops between actors for each
    /// answer were a tenth of a run's scheduling at 0 ms (`perf stat` on the runtime's enqueues).
    private let unstored = Mutex(UnstoredAnswers())

    private struct UnstoredAnswers {
        var answers: [(answer: PaidAnswer, request: ClaimedRequest)] = []
        var handingOver = false
    }

    /// Hands the answers gathered in `unstored` to the store until none is left. One whose write failed, or that came
    /// once the database had failed, goes the way of `storeAnswer` on its own: written again, else kept for recovery.
    private func handOverAnswers() async {
        var gathered = 64
        while true {
            // The list the next answers gather in, as large as the last batch: grown one answer at a time, it was copied
            // over and over.
            var batch: [(answer: PaidAnswer, request: ClaimedRequest)] = []
            batch.reserveCapacity(gathered)
            unstored.withLock { unstored in
                swap(&batch, &unstored.answers)
                if batch.isEmpty { unstored.handingOver = false }
            }
            guard !batch.isEmpty else { return }
            gathered = batch.count
            let outcomes = state.storageFailure != nil ? [] : await queue.recordSuccesses(batch.map {
                StoringAnswer(answer: $0.answer, estimatedInputTokens: $0.request.needs.inputTokens, reservation: $0.request.reservation)
            })
            var paid: [Money?] = []
            for (index, (answer, request)) in batch.enumerated() {
                if index < outcomes.count, case .success(let kept) = outcomes[index] {
                    paid.append(kept ? answer.cost : nil)
                } else {
                    Task {
                        let kept = await self.storeAnswer(answer, of: request)
                        await self.state.stored(paid: [kept ? answer.cost : nil])
                    }
                }
            }
            if !paid.isEmpty { await state.stored(paid: paid) }
        }
    }

    /// How many requests a run claims beyond those it can have in flight, so that a worker whose call ends finds its
    /// next one claimed, while it notes each call before sending it (so that a crash counts only those called as maybe
    /// billed, `StartedCalls`); none otherwise. Its concurrency, or the calls it starts in 20 ms when that is more, and
    /// at most 512: a claim is a write, and a run whose calls end by thousands a second claims a few hundred at a time
    /// rather than a few dozen, while a slow one holds no more than it will soon call.
    static func claimingAhead(concurrency: Int, startingPerSecond rate: Int, notingCalls: Bool) -> Int {
        notingCalls ? min(max(concurrency, rate / 50), 512) : 0
    }

    /// The most paid answers waiting for their commit before workers wait for them: enough for calls answered in a
    /// millisecond to go on through a group commit's 10 ms wait, and at least one for each call in flight.
    private var storingLimit: Int { max(options.concurrency, 2_048) }

    /// The next request to serve: from this run's claimed batch, claiming more when it runs low; nil when
    /// nothing in scope is left, a stop was requested or the database failed. One worker at a time polls the
    /// database, sleeping in that role when nothing is due yet; the others wait for what it claims.
    private func nextRequest() async -> ClaimedRequest? {
        while !Task.isCancelled {
            switch await state.nextStep(refillBelow: max(1, options.concurrency / 2)) {
            case .stop:
                return nil
            case .serve(let request):
                return request
            case .refillThenServe(let request):
                _ = await poll()
                await state.endPolling()
                return request
            case .wait(let seen):
                await withTaskCancellationHandler {
                    await state.waitForChange(after: seen)
                } onCancel: {
                    Task { await self.state.wakeWaiters() }
                }
            case .poll:
                if let wait = await poll() { await state.pollerSleep(until: clock.now() + wait) }
                await state.endPolling()
            }
        }
        return nil
    }

    /// Claims due requests into the batch, no more than can be in flight and `claimingAhead` beyond. Returns how long
    /// to wait before polling again when nothing was due, or nil to look at the batch at once (and marks the run
    /// exhausted when nothing is left).
    private func poll() async -> Int64? {
        let now = clock.now()
        do {
            let (tidying, lookForPlans) = await state.choresDue(now: now)
            if tidying {
                _ = try await queue.rescueExpiredLeases(now: now)
                try await takeOverGoneRuns(now: now)
                _ = try await queue.releaseEndedHolds(now: now)
            }
            let ahead = Dispatcher.claimingAhead(
                concurrency: options.concurrency, startingPerSecond: await state.callsStartedPerSecond(now: now),
                notingCalls: options.startedCalls?.isKept == true)
            let room = await state.room(concurrency: options.concurrency, claimingAhead: ahead)
            // A busy run claims in groups (each claim is a write): with less room than a sixty-fourth of its concurrency,
            // a poll waits up to 10 ms from the last claim for more calls to end.
            var wait: Int64? = room > 0 ? nil : 20
            if room > 0, room < min(options.concurrency / 64, 100), let since = await state.sinceLastClaim(now: now), since < 10 { wait = 10 - since }
            // What a claim needs first, only when this poll claims (or once a second, with the tidying): a busy run polls
            // as every few calls end, most times to find too little room yet, and the planner's look for jobs to plan is a
            // read of the database each time, waiting its turn behind the commits.
            if wait == nil || tidying {
                let planned = lookForPlans ? try await planNewJobs(now: now) : false
                // A write, so not every poll: after this run plans, and once a second for plans made elsewhere.
                if options.simulate && options.simulationSpeedup > 1, await state.plannedWaitsAreDue(now: now, planned: planned) {
                    try await queue.endPlannedWaits(now: now)
                }
                if let startedCalls = options.startedCalls, startedCalls.needsCompacting { await compact(startedCalls) }
            }
            if let wait { return wait }
            let excluded = await excludedModels(now: now)
            // Per model, no more than its limits let start now, less what is claimed for it already: a model at its limit
            // holds no worker while the others' requests wait behind its own, and the room is shared by what can start.
            var allowances = limiter.allowances(catalog.models)
            for (model, load) in await state.claimedLoad() {
                allowances[model]?.requests -= load.requests
                allowances[model]?.tokens -= load.tokens
            }
            let claim = try await queue.claim(
                limit: room, now: now, leaseUntil: now + Int64(options.leaseSeconds * 1000), job: options.job,
                excludedModels: excluded, simulated: options.simulate, catalog: catalog, allowances: allowances)
            await state.noteClaimed(claim.requests.count, of: room, now: now)
            await state.noteOverbooked(claim.overbooked)
            if claim.held > 0 { await state.countHeld(claim.held) }
            await reportBudget(holdReasons: claim.holdReasons, capUses: claim.capUses)
            if !claim.requests.isEmpty {
                await state.addClaimed(claim.requests)
                return nil
            }
            // Held requests left the queue: look again at once for others that fit.
            if claim.held > 0 { return nil }
            // Nothing claimed by a poll that did not look for jobs to plan: the next one looks, before anything is concluded.
            if !lookForPlans { return nil }
            let remaining = try await queue.remaining(job: options.job, excludedModels: excluded, waitForBatches: !options.detachBatches)
            let unfinished = await state.unfinished
            if !options.watch && remaining.dispatchable == 0 && remaining.running == 0 && remaining.openBatches == 0 && unfinished == 0 {
                await state.markExhausted()
                return nil
            }
            if remaining.running > unfinished { try await reportLeasesHeldElsewhere() }
            // Something is due later (a retry time, a lease held elsewhere) or this run's own calls are
            // still out and may come back as retries.
            return min(max((remaining.soonest ?? now + 250) - now, 50), 1_000)
        } catch {
            await storageFailed("claiming requests", error)
            return nil
        }
    }

    /// Writes the file of started calls again with only the requests this run holds leased, so that a long run's
    /// stays small. When that fails the file stays as it was, every note in it.
    private func compact(_ startedCalls: StartedCalls) async {
        do {
            try startedCalls.beginCompacting()
            try startedCalls.finishCompacting(leased: try await queue.leasedRequests())
        } catch {
            startedCalls.abandonCompacting()
        }
    }

    /// Says once per holder who holds the leases this run is waiting for, and until when.
    private func reportLeasesHeldElsewhere() async throws {
        for (owner, requests, until) in try await queue.leasesHeldElsewhere() where await state.firstNotice("leased \(owner)") {
            onEvent(.notice(.leasedElsewhere(holder: owner, requests: requests, until: until)))
        }
    }

    /// Tells the user, once per cap and run, when a cap holds requests or passes its warning share.
    private func reportBudget(holdReasons: [String: HoldReason], capUses: [CapUse]) async {
        for (cap, reason) in holdReasons.sorted(by: { $0.key < $1.key }) where await state.firstNotice("hold \(cap)") {
            onEvent(.held(reason))
        }
        for use in capUses where use.isPastWarning && use.cap.picoUSD > 0 {
            if await state.firstNotice("warn \(use.scopeText)") {
                onEvent(.notice(.capPastWarning(use, simulated: options.simulate)))
            }
        }
    }

    /// Models whose provider has no key (none, with --simulate).
    private func keylessModels() -> [String] {
        let usable = PlanningContext.usableProviders(catalog: catalog, environment: environment, simulate: options.simulate)
        return catalog.models.filter { !usable.contains($0.provider) }.map(\.id)
    }

    /// Models whose provider cannot be called in this run (disabled, unreachable, or keyless). Paused providers
    /// are not excluded: their requests are claimed and routed around.
    private func excludedModels(now: Int64) async -> [String] {
        let unavailable = Set(health.disabledProviders.keys)
        let usable = PlanningContext.usableProviders(catalog: catalog, environment: environment, simulate: options.simulate)
        return catalog.models.filter { unavailable.contains($0.provider) || !usable.contains($0.provider) }.map(\.id)
    }

    // MARK: - The store

    /// Runs a write, and on failure stops the run from claiming more (its lease will hand the request to
    /// another run). True when the write went through.
    @discardableResult
    private func persist(_ what: String, _ write: () async throws -> Void) async -> Bool {
        do {
            try await write()
            return true
        } catch {
            await storageFailed(what, error)
            return false
        }
    }

    /// A write that ends this run's lease of a request: true when it was written, false when it failed or the lease
    /// was lost meanwhile (another run serves the request now, and counts it).
    private func persistKept(_ what: String, _ write: () async throws -> Bool) async -> Bool {
        var kept = false
        guard await persist(what, { kept = try await write() }) else { return false }
        return kept
    }

    /// A read the run cannot do without: on failure the run stops claiming, and `fallback` stands in.
    private func read<T>(_ what: String, fallback: T, _ body: () async throws -> T) async -> T {
        do { return try await body() } catch {
            await storageFailed(what, error)
            return fallback
        }
    }

    private func storageFailed(_ what: String, _ error: any Error) async {
        let message = "the database failed to \(what): \(error)"
        if await state.failStorage(message) {
            onEvent(.notice(.storageFailed(message: message)))
        }
    }

    /// Stores a paid answer: written again if the database refuses it once, then kept in the recovery file.
    private func storeAnswer(_ answer: PaidAnswer, of request: ClaimedRequest) async -> Bool {
        var lastError: (any Error)?
        // Once the database has refused a write, answers still coming in go straight to the recovery file: a write
        // that gets through now (in the space given back for that file) would only leave the next answer none.
        let databaseFailed = state.storageFailure
        if let databaseFailed { lastError = Problem(databaseFailed) }
        for pause in databaseFailed == nil ? [0, 200, 1_000] as [Int64] : [] {
            if pause > 0 { await clock.pause(milliseconds: pause) }
            do {
                return try await queue.recordSuccess(answer, estimatedInputTokens: request.needs.inputTokens)
            } catch {
                lastError = error
            }
        }
        let kept: String
        if let recovery = options.recovery {
            do {
                try recovery.append(answer)
                await state.keptForRecovery()
                kept = "its answer is kept in \(recovery.ownPath) for the next run"
            } catch {
                kept = "and so did the recovery file (\(error)): this answer is lost"
                await state.lostAnswer(request.customID)
                onEvent(.notice(.answerLost(customID: request.customID, recoveryPath: recovery.ownPath, error: "\(error)")))
            }
        } else {
            kept = "and this run keeps no recovery file: this answer is lost"
            await state.lostAnswer(request.customID)
            onEvent(.notice(.answerLost(customID: request.customID, recoveryPath: nil, error: nil)))
        }
        await storageFailed("store the paid answer to \(request.customID) (\(lastError.map { "\($0)" } ?? "unknown")); \(kept)", lastError ?? Problem("unknown"))
        return false
    }

    // MARK: - One request

    /// Where a call goes: its model, that model's provider, and the mode it is sent in. A reference, so that passing
    /// one from step to step copies a pointer rather than a model and a provider into each step's frame (see `serve`).
    private final class Route: Sendable {
        let model: Model
        let provider: Provider
        let mode: DispatchMode

        init(_ route: (Model, Provider, DispatchMode)) { (model, provider, mode) = route }
    }

    /// Serves one claimed request; its paid answer, to be stored, when the call brought one, and nil when it ended
    /// otherwise (retried, expired, failed, moved or given back, each already written).
    ///
    /// Its frame is held by every call in flight for the whole call, so what is seldom needed (routing around a paused
    /// provider, spilling over, a cache primer's turn, another model when the planned one has no room) and the
    /// accounting after the call are functions of their own, and a route is passed as a reference: an async function's
    /// frame holds a place for every value passed at each of its waits, and a task keeps the memory of its deepest
    /// frames for as long as it runs (Swift's task allocator reuses its slabs rather than freeing them). With all of it
    /// here this frame took 33 KB; now 7.7 KB.
    private func serve(_ request: ClaimedRequest) async -> PaidAnswer? {
        let now = clock.now()
        if !options.allowLate && request.deadlineAt < now {
            if await persistKept("expire \(request.customID)", { try await self.queue.recordExpiry(request) }) { await state.count(.expired) }
            return nil
        }
        guard let planned = catalog.model(id: request.plannedModel), let plannedProvider = catalog.providers[planned.provider] else {
            await fail(request, "its planned model \(request.plannedModel) is no longer in the pricing tables", attempt: nil)
            return nil
        }
        var route = Route((planned, plannedProvider, request.plannedMode))
        switch health.permit(route.provider.name, now: now) {
        case .go, .probe:
            break
        case .disabled(let reason):
            await release(request, reason: "provider \(route.provider.name): \(reason)")
            return nil
        case .wait(let until):
            guard let around = await routeAroundPause(request, route, until: until, now: now) else { return nil }
            route = around
        }
        if request.spillsOver && route.model.id == request.plannedModel {
            guard let spilled = await spill(request, off: route, now: now) else { return nil }
            route = spilled
        }
        // When a rehearsal answers a request planned for a window ahead of time, it prices it at the window's opening.
        var windowOpening: Int64?
        if route.mode == .offpeak, let opening = Dispatcher.nextWindowOpening(route.model, after: now), opening > now,
            opening + route.model.speed.callDuration(outputTokens: route.model.outputAllowance(request.needs.maxOutputTokens)) <= request.deadlineAt
        {
            if options.simulate && options.simulationSpeedup > 1 {
                // A sped-up rehearsal does not wait hours of real time for the window: the simulator answers now, as the
                // window will, like it shortens every other wait.
                windowOpening = opening
            } else {
                // Planned for a discount window that is not open: wait for it, since it still leaves time.
                await release(request, notBefore: opening, what: "wait for its window")
                return nil
            }
        }
        let primedLifetime = Int64(300_000 / (options.simulate ? max(options.simulationSpeedup, 0.001) : 1)) + 1
        let primer = await primerTurn(request, route, lifetime: primedLifetime)
        var primerDone = false
        // A primer that returns before its call (no room by its latest start, a body that cannot be sent) hands the turn on.
        defer { if let primer, !primerDone { Task { await self.primers.failed(primer) } } }
        guard let (slot, slotRoute) = await rateLimitSlot(request, route) else { return nil }
        if slotRoute.model.id != route.model.id { windowOpening = nil }
        route = slotRoute
        let (model, provider, mode) = (route.model, route.provider, route.mode)
        let body: JSONObject
        do {
            body = PromptCaching.prepared(
                try DialectTranslation.requestBody(stored: request.body, storedDialect: request.shape.bodyDialect, model: model, provider: provider, mode: mode),
                requestID: request.id, model: model, provider: provider, group: request.prefixGroup)
        } catch {
            limiter.release(slot)
            await fail(request, "\(error)", attempt: nil)
            return nil
        }
        let call = ProviderCall(
            requestID: request.id, customID: request.customID, model: model, provider: provider, mode: mode, body: body,
            timeoutSeconds: options.timeoutSeconds)
        let callStarted = clock.now()
        let outcome = await caller.call(call)
        primerDone = true
        return await settle(
            request, call, slot: slot, primer: primer, primedLifetime: primedLifetime, windowOpening: windowOpening, started: callStarted,
            outcome: outcome, finished: clock.now())
    }

    /// What a call's outcome comes to: its paid answer, to be stored, or nil when it failed (written, retried or handled).
    /// Releases its rate-limit slot and, for a cache primer, tells the calls waiting on it how it went.
    @inline(never)  // So that its frame is not part of `serve`'s, held during the call.
    private func settle(
        _ request: ClaimedRequest, _ call: ProviderCall, slot: RateLimiter.Slot, primer: String?, primedLifetime: Int64, windowOpening: Int64?,
        started callStarted: Int64, outcome: Result<ProviderResponse, CallFailure>, finished: Int64
    ) async -> PaidAnswer? {
        let (model, provider, mode) = (call.model, call.provider, call.mode)
        // A success also lets a model slowed by 429s climb back, in the same step.
        if case .success = outcome {
            limiter.release(slot, answeredAfter: finished - callStarted)
        } else {
            limiter.release(slot)
        }
        if let primer {
            if case .success = outcome { await primers.primed(primer, now: finished, lifetime: primedLifetime) } else { await primers.failed(primer) }
        }
        func attempt(_ outcome: String, status: Int?, error: String?, usage: Usage?, simulated: Bool) -> AttemptRecord {
            AttemptRecord(
                model: model.id, provider: provider.name, mode: mode, startedAt: callStarted, latencyMilliseconds: finished - callStarted,
                status: status, outcome: outcome, error: error, usage: usage, simulated: simulated)
        }
        switch outcome {
        case .success(let response):
            // A paid answer is kept even when the run is stopping.
            if let change = health.recordSuccess(provider.name, now: finished) { report(change, provider: provider) }
            let prices = Charges.prices(of: model, mode: mode, at: windowOpening ?? callStarted)
            let cost = Charges.cost(of: response.usage, prices: prices)
            // The same usage at the baseline model's list prices: what a one-request-at-a-time router would have paid.
            let baselineCost = baseline.model(for: request.plannable).map { Charges.cost(of: response.usage, prices: $0.prices) } ?? cost
            var answer = PaidAnswer(
                requestID: request.id, jobID: request.jobID, tier: request.needs.qualityTier,
                maxOutputTokens: model.outputAllowance(request.needs.maxOutputTokens), model: model.id, provider: provider.name,
                dialect: provider.dialect, mode: mode, response: response, cost: cost, baseline: baselineCost,
                attempt: attempt("succeeded", status: response.statusCode, error: nil, usage: response.usage, simulated: response.simulated),
                finishedAt: finished)
            answer.cacheSaving = Charges.cacheSaving(of: response.usage, prices: prices)
            return answer
        case .failure where Task.isCancelled:
            // Stopped after the grace period, mid-call: the provider may have billed it.
            await persist("return \(request.customID) to the queue") {
                try await self.queue.release(
                    request, countAttempt: false, attempt: nil, reason: "the run stopped before the call finished", notBefore: nil, mayHaveBeenBilled: true,
                    now: finished)
            }
        case .failure(let failure):
            let record = attempt(failure.kind.rawValue, status: failure.status, error: failure.message, usage: nil, simulated: false)
            await handle(failure, of: request, model: model, provider: provider, attempt: record)
        }
        return nil
    }

    /// Returns a request to the queue, its attempt not counted: ready at once, or waiting until `notBefore`.
    private func release(_ request: ClaimedRequest, reason: String? = nil, notBefore: Int64? = nil, what: String = "the queue") async {
        await persist("return \(request.customID) to \(what)") {
            try await self.queue.release(request, countAttempt: false, attempt: nil, reason: reason, notBefore: notBefore)
        }
    }

    /// Its provider is paused: another model that can serve it now takes it, or it waits for the pause to end (nil).
    @inline(never)  // So that its frame is not part of `serve`'s, held during the call.
    private func routeAroundPause(_ request: ClaimedRequest, _ route: Route, until: Int64, now: Int64) async -> Route? {
        let paused = "provider \(route.provider.name) is paused" + (health.lastError(route.provider.name).map { " after: \($0)" } ?? "")
        guard let alternative = await alternative(for: request, excluding: [route.model.id]), await move(request, to: alternative, now: now) else {
            await release(request, reason: paused, notBefore: until)
            return nil
        }
        return Route(alternative)
    }

    /// Its model's present rate would not reach it in time. The cheapest model that takes spills (not slowed, its own
    /// queue reached in time) serves it now if it has room (the route returned), or is planned for it, to serve it as
    /// its limits free up (nil): a spill is never sent to a dear model only because a cheap one is a few seconds from
    /// room. Never back onto a model it spilled off in this run: a spill can push the next model's own tail out of
    /// reach, and without this the same requests went round between models that were each at their limit.
    @inline(never)  // As `routeAroundPause`.
    private func spill(_ request: ClaimedRequest, off route: Route, now: Int64) async -> Route? {
        let (takingSpills, withRoom) = await modelsTakingSpills()
        let spilledOff = await state.spill(request.id, off: route.model.id)
        guard let alternative = await alternative(
            for: request, excluding: Set(catalog.models.map(\.id)).subtracting(takingSpills).union(spilledOff))
        else {
            await release(request, notBefore: now + 250)
            return nil
        }
        await state.count(.fellBack)
        guard withRoom.contains(alternative.0.id), await move(request, to: alternative, now: now) else {
            await replan(request, onto: alternative.0, mode: alternative.2, now: now)
            await release(request)
            return nil
        }
        return Route(alternative)
    }

    /// A call that can read a cache its group's first call writes waits for that call's answer, but never past the
    /// moment it must start by, nor much longer than a few calls' time (a primer that hangs does not hold its group):
    /// caching is never a reason to miss a deadline. Returns the group's key when this call is the one to write it.
    @inline(never)  // As `routeAroundPause`.
    private func primerTurn(_ request: ClaimedRequest, _ route: Route, lifetime primedLifetime: Int64) async -> String? {
        let model = route.model
        guard let group = request.prefixGroup, group.requests >= 2, let rule = model.caching, group.tokens >= rule.minimumPrefixTokens,
            rule.keepsCache(in: route.mode)
        else { return nil }
        let key = CachePrimers.key(group: group.id, model: model.id)
        let scale = options.simulate ? max(options.simulationSpeedup, 0.001) : 1
        let callTime = Int64(Double(model.speed.callDuration(outputTokens: model.outputAllowance(request.needs.maxOutputTokens))) / scale) + 1
        let step = max(callTime / 8, 1)
        let started = clock.now()
        let limit = min(latestStart(of: request, on: model) ?? Int64.max, started + 4 * callTime + 250)
        while true {
            let now = clock.now()
            switch await primers.turn(key, now: now, lifetime: primedLifetime) {
            case .prime: return key
            case .go: return nil
            case .wait:
                if now + step > limit { return nil }
                await clock.pause(milliseconds: step)
            }
        }
    }

    /// The call starts by the latest moment that still finishes by the deadline, or not at all (unless --allow-late): when
    /// its model's limits leave no room by then, a model with room now takes it, or it expires. Returns the slot taken
    /// and the route it is for; nil when the request was given back or expired (written).
    @inline(never)  // As `routeAroundPause`.
    private func rateLimitSlot(_ request: ClaimedRequest, _ planned: Route) async -> (RateLimiter.Slot, Route)? {
        do {
            let startBy = latestStart(of: request, on: planned.model)
            if let slot = try await limiter.acquire(planned.model, tokens: request.needs.rateLimitTokens, startBy: startBy) {
                return (slot, planned)
            }
            if let elsewhere = try await slotElsewhere(request, planned) { return elsewhere }
        } catch {
            await release(request)
            return nil
        }
        let reason = "no model's rate limits left room to start it by its latest start (its deadline less the call's time)"
        if await persistKept("expire \(request.customID)", { try await self.queue.recordExpiry(request, reason: reason) }) { await state.count(.expired) }
        return nil
    }

    /// The planned model's limits leave no room by the request's latest start: a model with room now takes it, if any.
    @inline(never)  // As `routeAroundPause`.
    private func slotElsewhere(_ request: ClaimedRequest, _ planned: Route) async throws -> (RateLimiter.Slot, Route)? {
        let full = limiter.allowances(catalog.models).filter { $0.value.requests == 0 }.map(\.key)
        guard let alternative = await alternative(for: request, excluding: Set(full + [planned.model.id])),
            await move(request, to: alternative, now: clock.now())
        else { return nil }
        await state.count(.fellBack)
        let startBy = latestStart(of: request, on: alternative.0)
        return try await limiter.acquire(alternative.0, tokens: request.needs.rateLimitTokens, startBy: startBy).map { ($0, Route(alternative)) }
    }

    private func report(_ change: ProviderHealth.Change, provider: Provider) {
        switch change {
        case .paused(let until, let percent, let lastError):
            onEvent(.notice(.providerPaused(provider: provider.name, until: until, failedPercent: percent, lastError: lastError)))
        case .resumed:
            onEvent(.notice(.providerResumed(provider: provider.name)))
        case .unreachable(let reason):
            onEvent(.notice(.providerUnreachable(provider: provider.name, reason: reason, batches: false)))
        }
    }

    private func handle(_ failure: CallFailure, of request: ClaimedRequest, model: Model, provider: Provider, attempt: AttemptRecord) async {
        let now = clock.now()
        switch failure.kind {
        case .auth, .quota, .misdirected:
            if health.disable(provider.name, reason: "\(failure.status.map { "HTTP \($0): " } ?? "")\(failure.message)") {
                onEvent(.notice(.providerDisabled(provider, failure)))
            }
            await persist("return \(request.customID) to the queue") {
                try await self.queue.release(request, countAttempt: false, attempt: attempt, reason: "provider \(provider.name): \(failure.message)")
            }
        case .permanent:
            await fail(request, failure.message, attempt: attempt)
        case .modelRefused, .retryable, .unreachable:
            // A 429 speaks of one model's rate limit, not of the provider's health: the limiter slows that model down
            // and the request moves on, while the provider's other models keep serving.
            let rateLimited = failure.status == 429
            if failure.kind != .modelRefused && !rateLimited {
                let longestPause = max(request.deadlineAt - now - model.speed.callDuration(outputTokens: model.outputAllowance(request.needs.maxOutputTokens)), 1_000)
                if let change = health.recordFailure(
                    provider.name, now: now, unreachable: failure.kind == .unreachable, message: failure.message, longestPause: longestPause)
                {
                    report(change, provider: provider)
                    if case .unreachable = change {
                        await persist("return \(request.customID) to the queue") {
                            try await self.queue.release(request, countAttempt: true, attempt: attempt, reason: failure.message)
                        }
                        return
                    }
                }
            }
            if rateLimited {
                limiter.slowDown(model)
                await state.countSlowDown()
            }
            if request.attempts >= options.retry.maximumAttempts {
                await fail(request, "gave up after \(request.attempts) attempts; last: \(failure.message)", attempt: attempt)
                return
            }
            let onThisModel = await read("read the attempts of \(request.customID)", fallback: Set<String>()) {
                try await self.queue.exhaustedModels(for: request.id, threshold: self.options.retry.attemptsPerModel)
            }
            // This failure is not recorded yet, so it is added to the ones before it.
            let failuresHere = await read("read the attempts of \(request.customID)", fallback: 0) {
                try await self.queue.failures(on: model.id, request: request.id)
            } + 1
            var delay = await state.delay(options.retry, afterAttempt: request.attempts, retryAfterMilliseconds: failure.retryAfterMilliseconds)
            // A wait (a provider's Retry-After, say) that would pass the request's latest start is not waited out
            // on this model: the request moves to the next one, or fails when none can serve it in time.
            let latestStart = request.deadlineAt - model.speed.callDuration(outputTokens: model.outputAllowance(request.needs.maxOutputTokens))
            let waitPassesDeadline = !options.allowLate && now + delay > latestStart
            // A 429 says the model is at its limit now: a model with room to spare takes the request, if there is one.
            let modelIsDone = failure.kind == .modelRefused || failuresHere >= options.retry.attemptsPerModel || waitPassesDeadline || rateLimited
            if modelIsDone, let (next, _, nextMode) = await alternative(for: request, excluding: onThisModel.union(await modelsWithoutRoomToSpare()).union([model.id])) {
                await replan(request, onto: next, mode: nextMode, now: now)
                await state.count(.fellBack)
                onEvent(.notice(.movedToModel(customID: request.customID, from: model.id, to: next.id, after: failure.message)))
                // A new model owes nothing to the old one's backoff, only to what a provider asked for.
                delay = failure.kind == .modelRefused || waitPassesDeadline || rateLimited ? 0 : delay
            } else if waitPassesDeadline {
                let asked = failure.retryAfterMilliseconds.map { "\(model.provider) asked to wait \(DurationText.approximate($0))" } ?? "the next try would start"
                await fail(request, "\(asked), past its latest start for the deadline, and no other model can serve it in time; last: \(failure.message)",
                    attempt: attempt)
                return
            } else if failure.kind == .modelRefused {
                await fail(request, "no other model can serve it; \(model.id) refused: \(failure.message)", attempt: attempt)
                return
            }
            // With no other model (a pinned request, say), it keeps trying this one up to the overall limit.
            await state.count(.retried)
            let retryAt = now + delay
            await persist("schedule a retry of \(request.customID)") { try await self.queue.recordRetry(request, at: retryAt, attempt: attempt) }
            await state.dueAt(retryAt)
        }
    }

    /// The last moment a call of `request` on `model` can start and still finish by its deadline: its plan's latest
    /// start on its planned model (or later, where the modelled call leaves more), the deadline less the modelled call
    /// elsewhere; nil with `--allow-late`.
    private func latestStart(of request: ClaimedRequest, on model: Model) -> Int64? {
        guard !options.allowLate else { return nil }
        let modelled = request.deadlineAt - model.speed.callDuration(outputTokens: model.outputAllowance(request.needs.maxOutputTokens))
        return model.id == request.plannedModel ? max(request.latestStart, modelled) : modelled
    }

    /// The models a request moved off another at once should not go to: those whose limits leave no room now beyond
    /// the calls claimed for them already, and those that take no spills (`modelsTakingSpills`).
    private func modelsWithoutRoomToSpare() async -> Set<String> {
        let (takingSpills, withRoom) = await modelsTakingSpills()
        return Set(catalog.models.map(\.id)).subtracting(takingSpills.intersection(withRoom))
    }

    /// The models that may take requests moved off others (not slowed by 429s, and at the last claim able to reach
    /// every request queued on them in time), and those whose limits have room now beyond the calls claimed for them.
    private func modelsTakingSpills() async -> (takingSpills: Set<String>, withRoom: Set<String>) {
        var allowances = limiter.allowances(catalog.models)
        for (model, load) in await state.claimedLoad() { allowances[model]?.requests -= load.requests }
        let overbooked = await state.overbooked
        let taking = Set(catalog.models.map(\.id).filter { allowances[$0]?.shortOfPlan == nil && !overbooked.contains($0) })
        return (taking, Set(catalog.models.map(\.id).filter { (allowances[$0]?.requests ?? 1) > 0 }))
    }

    /// Moves `request` onto `alternative` for this call: its reservation, which must fit under the caps too, and its plan.
    /// False, moving nothing, when the reservation does not fit.
    private func move(_ request: ClaimedRequest, to alternative: (Model, Provider, DispatchMode), now: Int64) async -> Bool {
        let (model, _, mode) = alternative
        let worstCase = Charges.worstCase(model: model, mode: mode, inputTokens: request.needs.inputTokens, maxOutputTokens: request.needs.maxOutputTokens)
        let moved = await read("move the reservation of \(request.customID)", fallback: false) {
            try await self.queue.moveReservation(request, to: worstCase, now: now, simulated: self.options.simulate)
        }
        guard moved else { return false }
        await replan(request, onto: model, mode: mode, now: now)
        return true
    }

    /// Points the plan of `request` at `model` in `mode`: its expected cost there, and its latest start there (the
    /// deadline less the modelled call on that model, never the old model's, which may be later).
    private func replan(_ request: ClaimedRequest, onto model: Model, mode: DispatchMode, now: Int64) async {
        let cost = Charges.prices(of: model, mode: mode, at: now).cost(
            inputTokens: request.needs.inputTokens, outputTokens: model.outputAllowance(request.needs.maxOutputTokens))
        let latestStart = request.deadlineAt - model.speed.callDuration(outputTokens: model.outputAllowance(request.needs.maxOutputTokens))
        await persist("move the plan of \(request.customID)") {
            try await self.queue.replan(request.id, model: model.id, mode: mode, cost: cost, latestStart: latestStart)
        }
    }

    private func fail(_ request: ClaimedRequest, _ message: String, attempt: AttemptRecord?) async {
        if await persistKept("record the failure of \(request.customID)", { try await self.queue.recordFailure(request, error: message, attempt: attempt) }) {
            await state.count(.failed)
        }
    }

    /// The cheapest model, other than `excluding`, that can still serve the request now.
    private func alternative(for request: ClaimedRequest, excluding: Set<String>) async -> (Model, Provider, DispatchMode)? {
        await Dispatcher.cheapestAlternative(
            for: request.plannable, excluding: excluding, catalog: catalog, environment: environment, simulate: options.simulate, health: health,
            now: clock.now())
    }

    /// The cheapest model, other than `excluding`, whose provider is usable now, for a live call (or by batch
    /// too when `allowingBatch` and the deadline leaves the batch window).
    static func cheapestAlternative(
        for request: PlannableRequest, excluding: Set<String>, catalog: PricingCatalog, environment: [String: String], simulate: Bool,
        health: ProviderHealth, now: Int64, allowingBatch: Bool = false
    ) async -> (Model, Provider, DispatchMode)? {
        let unavailable = health.unavailableProviders(now: now)
        var narrowed = catalog
        narrowed.models.removeAll { excluding.contains($0.id) || unavailable.contains($0.provider) }
        let usable = PlanningContext.usableProviders(catalog: narrowed, environment: environment, simulate: simulate)
        let planner = Planner(context: PlanningContext(catalog: narrowed, now: now, usableProviders: usable))
        guard let best = planner.cheapestOption(for: request, allowingBatch: allowingBatch), let provider = narrowed.providers[best.model.provider] else { return nil }
        return (best.model, provider, best.mode == .offpeak ? .sync : best.mode)
    }

    /// When the model's next discount window opens after `moment` (the moment itself when one is open), within eight days.
    static func nextWindowOpening(_ model: Model, after moment: Int64) -> Int64? {
        model.discountWindows.compactMap { $0.intervals(from: moment, to: moment + 8 * 86_400_000).first?.lowerBound }.min()
    }

    // MARK: - The end

    private func summary(started: Int64, recovered: Int) async throws -> RunSummary {
        let totals = await state.totals
        let disabled = health.disabledProviders
        var leftQueued = disabled.sorted(by: { $0.key < $1.key }).map { LeftQueued.providerDisabled(provider: $0.key, reason: $0.value) }
        let storageFailure = state.storageFailure
        var remaining: WorkRemaining?
        if storageFailure == nil {
            let excluded = await excludedModels(now: clock.now())
            remaining = try await queue.remaining(job: options.job, excludedModels: excluded)
        }
        if let remaining {
            if remaining.blocked > 0 { leftQueued.append(.onUnusableProviders(requests: remaining.blocked)) }
            if remaining.unplanned > 0 { leftQueued.append(.unplanned(requests: remaining.unplanned)) }
            if remaining.held > 0 { leftQueued.append(.heldByCap(requests: remaining.held)) }
            if remaining.dispatchable > 0 { leftQueued.append(.notServed(requests: remaining.dispatchable)) }
            if remaining.inBatches > 0 { leftQueued.append(.inBatches(requests: remaining.inBatches)) }
        }
        var summary = RunSummary(
            succeeded: totals.succeeded, failed: totals.failed, expired: totals.expired, retried: totals.retried, fellBack: totals.fellBack,
            held: remaining?.held ?? 0, spend: totals.spend, simulated: options.simulate, elapsedMilliseconds: clock.now() - started,
            leftQueued: leftQueued)
        summary.disabledProviders = disabled
        if let remaining, remaining.unplanned + remaining.blocked > 0,
            PlanningContext.usableProviders(catalog: catalog, environment: environment, simulate: options.simulate).isEmpty
        {
            summary.missingKeys = Set(catalog.providers.values.map(\.apiKeyEnvironmentVariable)).sorted()
        }
        summary.storageFailure = storageFailure
        summary.keptForRecovery = await state.keptCount
        summary.lostAnswers = await state.lost
        summary.recovered = recovered
        onEvent(.finished(summary))
        return summary
    }
}

/// The run's own bookkeeping: claimed requests not yet started, counts, the stop flag and a storage failure.
actor RunState {
    enum Counter { case expired, failed, retried, fellBack }

    struct Totals: Sendable {
        var succeeded = 0
        var failed = 0
        var expired = 0
        var retried = 0
        var fellBack = 0
        /// 429 answers, each of which slowed its model down.
        var slowDowns = 0
        /// Requests this run held because their worst case did not fit under a cap.
        var held = 0
        var spend = Money.zero
    }

    /// Claimed requests not yet started, the next one last.
    private var claimed: [ClaimedRequest] = []
    private(set) var totals = Totals()
    private(set) var inFlight = 0
    /// Paid answers waiting for their commit, and the workers and the run's end waiting for fewer of them.
    private(set) var storing = 0
    private var storeWaiters: [CheckedContinuation<Void, Never>] = []
    /// Requests this run started and has not finished: calls in flight and answers being stored.
    var unfinished: Int { inFlight + storing }
    private(set) var remaining = 0
    private(set) var stopRequested = false
    /// Read without waiting on the actor, by the planner's stop check and the shutdown watch.
    nonisolated let stopFlag = StopFlag()
    nonisolated var stopWasRequested: Bool { stopFlag.isSet }
    /// Set when the polling worker found nothing left: every worker then stops.
    private(set) var exhausted = false
    /// Set when the database refused a write: the run claims nothing more. Read without waiting on the actor, by every
    /// answer about to be stored.
    private nonisolated let storageFailureText = Mutex<String?>(nil)
    nonisolated var storageFailure: String? { storageFailureText.withLock { $0 } }
    private(set) var keptCount = 0
    private var polling = false
    /// Workers with nothing to do, waiting for a claim, the end of a poll, or the end of the run.
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    /// Counts wake-ups, so a worker that decided to wait notices one that came before its wait began.
    private var changes = 0
    private var pollerPause: Task<Void, Never>?
    private var pollerWakesAt: Int64?
    private let clock: WallClock

    init(clock: WallClock) { self.clock = clock }
    private var random = SystemRandomNumberGenerator()

    func setRemaining(_ count: Int) { remaining = count }

    /// True the first time a notice with this key is asked for, so a run says each thing once.
    private var noticesGiven: Set<String> = []
    func firstNotice(_ key: String) -> Bool { noticesGiven.insert(key).inserted }

    func countHeld(_ count: Int) {
        totals.held += count
        remaining -= count
    }

    /// How many requests the run claims beyond its concurrency (`Dispatcher.claimingAhead`), as its last poll counted.
    private var claimingAhead = 0

    /// How many more requests may be claimed: no more than `concurrency` and `ahead` in flight and claimed together.
    func room(concurrency: Int, claimingAhead ahead: Int) -> Int {
        claimingAhead = ahead
        return max(concurrency + ahead - inFlight - claimed.count, 0)
    }

    /// Calls started since `startsCountedSince`, and how many a second were started over the last quarter second or more.
    private var startsCounted = 0
    private var startsCountedSince: Int64?
    private var startRate = 0

    /// How many calls a second this run starts, over the last quarter second or more.
    func callsStartedPerSecond(now: Int64) -> Int {
        guard let since = startsCountedSince else {
            startsCountedSince = now
            return startRate
        }
        if now - since >= 250 {
            startRate = startsCounted * 1_000 / Int(now - since)
            startsCounted = 0
            startsCountedSince = now
        } else if now < since {
            // The clock went back: count again from now.
            startsCounted = 0
            startsCountedSince = now
        }
        return startRate
    }

    enum NextStep {
        case serve(ClaimedRequest)
        /// Serve this one after claiming more: the batch fell below the refill mark and no one was polling.
        case refillThenServe(ClaimedRequest)
        /// This worker is now the one that polls the database.
        case poll
        /// Nothing to do until the state changes from the given count of changes.
        case wait(Int)
        case stop
    }

    /// What an idle worker does next, decided in one step so that no wake-up can fall between a check and the wait.
    /// The claimed requests are refilled below `mark`, or below half what the run claims ahead when that is more: a claim
    /// waits its turn behind the database's commits, and with a refill at 50 of 100 in flight the calls that end in that
    /// time (18 a millisecond at 0 ms) emptied the batch a few times in every 50 ms, leaving every worker waiting.
    func nextStep(refillBelow mark: Int) -> NextStep {
        if stopRequested || exhausted || storageFailure != nil { return .stop }
        if let next = claimed.popLast() {
            inFlight += 1
            startsCounted += 1
            guard claimed.count < max(mark, claimingAhead / 2), !polling else { return .serve(next) }
            polling = true
            return .refillThenServe(next)
        }
        if !polling {
            polling = true
            return .poll
        }
        return .wait(changes)
    }

    func endPolling() {
        polling = false
        wakeWaiters()
    }

    func markExhausted() {
        exhausted = true
        wakeWaiters()
    }

    /// Records the first storage failure; true when it is the first.
    func failStorage(_ message: String) -> Bool {
        guard storageFailureText.withLock({ failure in
            defer { failure = failure ?? message }
            return failure == nil
        }) else { return false }
        wakeWaiters()
        return true
    }

    func keptForRecovery() { keptCount += 1 }

    /// Paid answers that could be neither stored nor kept in the recovery file, by custom id.
    private(set) var lost: [String] = []
    func lostAnswer(_ customID: String) { lost.append(customID) }

    /// When a poll last tidied the queue, and whether the last poll claimed anything.
    private var tidiedAt: Int64?
    private var lastPollClaimed = false

    /// Whether the last claim took all the room it had: then planned work is to spare.
    private var lastClaimFilledItsRoom = false

    /// What a poll does before it claims. It tidies the queue (rescues lapsed leases, takes over runs whose process is
    /// gone, releases ended holds) when the last poll claimed nothing, and otherwise once a second: those are passes over
    /// the requests running, and a busy run polls for every few calls that end. It looks for jobs to plan with the
    /// tidying and whenever the last claim fell short of its room: after one that filled it, the look (a read waiting
    /// its turn behind the database's commits, a millisecond or more at 0 ms, while the workers used up what was claimed)
    /// waits for the tidying.
    func choresDue(now: Int64) -> (tidy: Bool, lookForPlans: Bool) {
        guard !lastPollClaimed || tidiedAt.map({ now - $0 >= 1_000 }) ?? true else { return (false, !lastClaimFilledItsRoom) }
        tidiedAt = now
        return (true, true)
    }

    private var lastClaimAt: Int64?

    /// A poll claimed `count` requests where it had room for `room`.
    func noteClaimed(_ count: Int, of room: Int, now: Int64) {
        lastPollClaimed = count > 0
        lastClaimFilledItsRoom = count > 0 && count >= room
        if count > 0 { lastClaimAt = now }
    }

    /// How long ago a poll last claimed requests, if one did.
    func sinceLastClaim(now: Int64) -> Int64? { lastClaimAt.map { now - $0 } }

    /// When a sped-up rehearsal last made window-planned requests due (`DispatchStore.endPlannedWaits`).
    private var plannedWaitsEndedAt: Int64?

    /// True when window-planned requests should be made due now: after a plan, and otherwise once a second.
    func plannedWaitsAreDue(now: Int64, planned: Bool) -> Bool {
        guard planned || plannedWaitsEndedAt.map({ now - $0 >= 1_000 }) ?? true else { return false }
        plannedWaitsEndedAt = now
        return true
    }

    /// Per request, the models it spilled off in this run.
    private var spilledOff: [Int64: Set<String>] = [:]

    /// Notes that `request` spills off `model`; returns every model it has spilled off.
    func spill(_ request: Int64, off model: String) -> Set<String> {
        spilledOff[request, default: []].insert(model)
        return spilledOff[request]!
    }

    /// Models whose present rate would not reach every request queued on them in time, at the last claim.
    private(set) var overbooked: Set<String> = []

    func noteOverbooked(_ models: Set<String>) { overbooked = models }

    /// Requests claimed and not yet started, and their tokens, by planned model.
    func claimedLoad() -> [String: (requests: Int, tokens: Int)] {
        var load: [String: (requests: Int, tokens: Int)] = [:]
        for request in claimed {
            load[request.plannedModel, default: (0, 0)].requests += 1
            load[request.plannedModel, default: (0, 0)].tokens += request.needs.rateLimitTokens
        }
        return load
    }

    func addClaimed(_ requests: [ClaimedRequest]) {
        claimed.insert(contentsOf: requests.reversed(), at: 0)
        wakeWaiters()
    }

    /// Returns when the state changed after `seen` (or at once if it already has, or the task is cancelled).
    func waitForChange(after seen: Int) async {
        if Task.isCancelled || changes != seen { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    func wakeWaiters() {
        changes += 1
        for waiter in idleWaiters { waiter.resume() }
        idleWaiters.removeAll()
    }

    /// The poller's pause when nothing is due until `until` (wall-clock milliseconds); cut short when the last
    /// call in flight ends, since the run may then be over, or when a retry falls due before it.
    func pollerSleep(until: Int64) async {
        let milliseconds = max(until - clock.now(), 0)
        let clock = self.clock
        let sleep = Task { await clock.pause(milliseconds: milliseconds) }
        pollerPause = sleep
        pollerWakesAt = until
        await withTaskCancellationHandler { await sleep.value } onCancel: { sleep.cancel() }
        pollerPause = nil
        pollerWakesAt = nil
    }

    /// A request falls due at `time`: a poller sleeping past it wakes to claim it.
    func dueAt(_ time: Int64) {
        if let wakesAt = pollerWakesAt, time < wakesAt { pollerPause?.cancel() }
    }

    /// A request's call ended without an answer to store (each outcome already written).
    func finishedOne() {
        inFlight -= 1
        if unfinished == 0 { pollerPause?.cancel() }
    }

    /// A request's call brought a paid answer, about to be stored; returns once no more than `limit` answers (this one
    /// among them) are waiting for their commit.
    func answered(storingAtMost limit: Int) async {
        inFlight -= 1
        storing += 1
        while storing > limit { await withCheckedContinuation { storeWaiters.append($0) } }
    }

    /// Returns once every answer is stored.
    func everyAnswerStored() async {
        while storing > 0 { await withCheckedContinuation { storeWaiters.append($0) } }
    }

    /// Answers were stored: each one's cost when it was kept (not when its lease was lost, or it went to the recovery file).
    func stored(paid costs: [Money?]) {
        storing -= costs.count
        if unfinished == 0 { pollerPause?.cancel() }
        for case let cost? in costs {
            totals.succeeded += 1
            totals.spend += cost
            remaining -= 1
        }
        // Each waiter looks again at the count it waits on.
        let waiters = storeWaiters
        storeWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// Results a batch brought back, and requests batching held under a cap.
    func countBatchProgress(_ progress: BatchRunner.Progress) {
        totals.succeeded += progress.succeeded
        totals.failed += progress.failed
        totals.spend += progress.spend
        totals.held += progress.held
        remaining -= progress.succeeded + progress.failed + progress.held
    }

    func countSlowDown() { totals.slowDowns += 1 }

    func count(_ counter: Counter) {
        switch counter {
        case .expired: totals.expired += 1; remaining -= 1
        case .failed: totals.failed += 1; remaining -= 1
        case .retried: totals.retried += 1
        case .fellBack: totals.fellBack += 1
        }
    }

    func delay(_ policy: RetryPolicy, afterAttempt attempt: Int, retryAfterMilliseconds: Int64?) -> Int64 {
        policy.delay(afterAttempt: attempt, retryAfterMilliseconds: retryAfterMilliseconds, random: &random)
    }

    func requestStop() {
        stopRequested = true
        stopFlag.set()
        wakeWaiters()
        releaseStopWaiters()
    }

    /// Who waits for a stop request: the shutdown watch.
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []

    /// Returns once a stop is requested (at once if it was), or once `releaseStopWaiters` is called on cancellation.
    func waitForStopRequest() async {
        if stopRequested || Task.isCancelled { return }
        await withCheckedContinuation { stopWaiters.append($0) }
    }

    func releaseStopWaiters() {
        for waiter in stopWaiters { waiter.resume() }
        stopWaiters.removeAll()
    }

    /// Requests claimed but never started, handed back when the run stops.
    func drainClaimed() -> [ClaimedRequest] {
        defer { claimed.removeAll() }
        return claimed
    }
}

/// A flag set once, readable from any thread.
final class StopFlag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
