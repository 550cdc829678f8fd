import Foundation
import Synchronization

/// Serves due requests: claims them under a lease, waits for rate limits, calls the planned model,
/// and records the result with its cost, a retry, a fallback to the next model, or a failure.
/// A fixed pool of workers runs in a task group; a stop request ends claiming and lets calls in
/// flight finish within the grace period.
public final class Dispatcher: Sendable {
    let store: DispatchStore
    let caller: any ModelCaller
    let catalog: PricingCatalog
    let environment: [String: String]
    let options: RunOptions
    let clock: WallClock
    let onEvent: @Sendable (RunEvent) -> Void
    let limiter: RateLimiter
    let health: ProviderHealth
    let baseline: Baseline
    private let state = RunState()

    public init(
        store: DispatchStore, caller: any ModelCaller, catalog: PricingCatalog, environment: [String: String], options: RunOptions,
        clock: WallClock = .system, onEvent: @escaping @Sendable (RunEvent) -> Void
    ) {
        self.store = store
        self.caller = caller
        self.catalog = catalog
        self.environment = environment
        self.options = options
        self.clock = clock
        self.onEvent = onEvent
        limiter = RateLimiter(limits: options.limits, clock: clock)
        health = ProviderHealth(failuresBeforeCooldown: options.failuresBeforeCooldown, cooldownMilliseconds: Int64(options.cooldownSeconds * 1000))
        baseline = Baseline(context: PlanningContext(catalog: catalog, now: 0, usableProviders: Set(catalog.providers.keys)))
    }

    /// Stops claiming; calls in flight get `graceSeconds` to finish before they are cancelled and released.
    public func stop() async { await state.requestStop() }

    public func run() async throws -> RunSummary {
        let started = clock.now()
        if !options.allowLate { _ = try await store.expireOverdue(now: started, job: options.job) }
        _ = try await planNewJobs(now: started)
        let counts = try await store.stateCounts(job: options.job)
        let total = counts.values.reduce(0, +)
        let open = [RequestState.queued, .planned, .waiting, .running].reduce(0) { $0 + (counts[$1] ?? 0) }
        onEvent(.started(total: total, planned: open))
        await state.setRemaining(open)

        let workers = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<max(options.concurrency, 1) { group.addTask { await self.workerLoop() } }
            }
        }
        let heartbeat = Task { await self.heartbeat() }
        let progress = Task { await self.progressReports(started: started) }
        let graceWatcher = Task {
            await state.waitForStopRequest()
            try? await Task.sleep(nanoseconds: UInt64(options.graceSeconds * 1e9))
            workers.cancel()
        }
        await workers.value
        for task in [heartbeat, progress, graceWatcher] { task.cancel() }
        for request in await state.drainClaimed() {
            try? await store.release(request, countAttempt: false, attempt: nil, reason: nil)
        }
        return try await summary(started: started)
    }

    private func summary(started: Int64) async throws -> RunSummary {
        let totals = await state.totals
        var leftQueued: [String] = []
        let excluded = await excludedModels(now: clock.now())
        let remaining = try await store.remaining(job: options.job, excludedModels: excluded)
        for (provider, reason) in await health.disabledProviders.sorted(by: { $0.key < $1.key }) {
            leftQueued.append("provider \(provider) is disabled for this run: \(reason)")
        }
        if remaining.blocked > 0 { leftQueued.append("\(remaining.blocked) requests stay queued on providers that cannot be used now") }
        if remaining.unplanned > 0 {
            leftQueued.append("\(remaining.unplanned) requests have no plan: no usable model has room before their deadline")
        }
        if remaining.held > 0 {
            leftQueued.append("\(remaining.held) requests are held by a budget cap (see 'purser budget show'); raising the cap with 'purser budget set' or the start of the next month releases them")
        }
        if remaining.dispatchable > 0 { leftQueued.append("\(remaining.dispatchable) requests were not served (the run stopped early)") }
        let summary = RunSummary(
            succeeded: totals.succeeded, failed: totals.failed, expired: totals.expired, retried: totals.retried, fellBack: totals.fellBack,
            held: remaining.held, spend: totals.spend, simulated: options.simulate, elapsedMilliseconds: clock.now() - started, leftQueued: leftQueued)
        onEvent(.finished(summary))
        return summary
    }

    // MARK: - Workers

    private func workerLoop() async {
        while !Task.isCancelled {
            guard let request = await nextRequest() else { return }
            await serve(request)
            await state.finishedOne()
        }
    }

    /// The next request to serve: from this run's claimed batch, claiming more when it runs dry;
    /// nil when nothing in scope is left (or a stop was requested). One worker at a time polls the
    /// database, sleeping in that role when nothing is due yet; the others wait for what it claims.
    private func nextRequest() async -> ClaimedRequest? {
        while !Task.isCancelled {
            switch await state.nextStep(refillBelow: max(1, options.concurrency / 2)) {
            case .stop:
                return nil
            case .serve(let request):
                return request
            case .refillThenServe(let request):
                // The batch is running low: top it up now, so the other workers do not wait for the next claim.
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
                if let wait = await poll() { await state.pollerSleep(milliseconds: wait) }
                await state.endPolling()
            }
        }
        return nil
    }

    /// Claims due requests into the batch. Returns how long to wait before polling again when nothing
    /// was due, or nil to look at the batch at once (and marks the run exhausted when nothing is left).
    private func poll() async -> Int64? {
        let now = clock.now()
        do {
            _ = try await store.rescueExpiredLeases(now: now)
            _ = try await store.releaseEndedHolds(now: now)
            _ = try await planNewJobs(now: now)
            let excluded = await excludedModels(now: now)
            let claim = try await store.claim(
                limit: max(1, options.concurrency), now: now, leaseUntil: now + Int64(options.leaseSeconds * 1000), job: options.job,
                excludedModels: excluded, simulated: options.simulate, catalog: catalog)
            await reportBudget(claim)
            if !claim.requests.isEmpty {
                await state.addClaimed(claim.requests)
                return nil
            }
            // Held requests left the queue: look again at once for others that fit.
            if claim.held > 0 { return nil }
            let remaining = try await store.remaining(job: options.job, excludedModels: excluded)
            let inFlight = await state.inFlight
            if !options.watch && remaining.dispatchable == 0 && remaining.running == 0 && inFlight == 0 {
                await state.markExhausted()
                return nil
            }
            // Something is due later (a retry time, a lease held elsewhere) or this run's own calls are
            // still out and may come back as retries.
            return min(max((remaining.soonest ?? now + 250) - now, 50), 1_000)
        } catch {
            onEvent(.notice("database: \(error)"))
            return 200
        }
    }

    /// Tells the user, once per cap and run, when a cap holds requests or passes its warning share.
    private func reportBudget(_ claim: DispatchStore.Claim) async {
        if claim.held > 0 { await state.countHeld(claim.held) }
        for (cap, reason) in claim.holdReasons.sorted(by: { $0.key < $1.key }) where await state.firstNotice("hold \(cap)") {
            onEvent(.notice(reason))
        }
        for use in claim.capUses where use.isPastWarning && use.cap.picoUSD > 0 {
            if await state.firstNotice("warn \(use.scopeText)") {
                onEvent(.notice("\(use.scopeText) is \(percentText(use.usedBasisPoints)) used: \(use.charged.formatted) charged and \(use.reserved.formatted) reserved of \(use.cap.formatted)\(options.simulate ? " (simulated)" : "")"))
            }
        }
    }

    /// Plans jobs with queued requests that have no plan yet (at the start, and with --watch as jobs arrive);
    /// with --watch every request not yet started is planned again with them, so the new job and the old ones
    /// share the models' capacity. True when it placed any.
    private func planNewJobs(now: Int64) async throws -> Bool {
        let needingPlans = try await store.jobsNeedingPlans(job: options.job)
        guard !needingPlans.isEmpty else { return false }
        let jobs = options.watch ? try await store.jobsNotStarted(job: options.job) : needingPlans
        var request = JobPlanning.Request(
            jobs: jobs, catalog: catalog,
            usableProviders: PlanningContext.usableProviders(catalog: catalog, environment: environment, simulate: options.simulate), now: now)
        let state = self.state
        request.shouldStop = { state.stopWasRequested }
        return try await store.planJobs(request) > 0
    }

    /// Models whose provider cannot be called in this run (disabled, or keyless). Paused providers are
    /// not excluded: their requests are claimed and routed around.
    private func excludedModels(now: Int64) async -> [String] {
        let unavailable = Set(await health.disabledProviders.keys)
        let usable = PlanningContext.usableProviders(catalog: catalog, environment: environment, simulate: options.simulate)
        return catalog.models.filter { unavailable.contains($0.provider) || !usable.contains($0.provider) }.map(\.id)
    }

    private func heartbeat() async {
        let interval = UInt64(options.leaseSeconds / 3 * 1e9)
        while !Task.isCancelled {
            try? await Task.sleep(nanoseconds: interval)
            if Task.isCancelled { return }
            try? await store.extendLeases(until: clock.now() + Int64(options.leaseSeconds * 1000))
        }
    }

    private func progressReports(started: Int64) async {
        while !Task.isCancelled {
            try? await Task.sleep(nanoseconds: 1_000_000_000)
            if Task.isCancelled { return }
            let totals = await state.totals
            onEvent(.progress(RunProgress(
                succeeded: totals.succeeded, failed: totals.failed, expired: totals.expired, inFlight: await state.inFlight,
                remaining: await state.remaining, spend: totals.spend, elapsedMilliseconds: clock.now() - started)))
        }
    }

    // MARK: - One request

    private func serve(_ request: ClaimedRequest) async {
        let now = clock.now()
        if !options.allowLate && request.deadlineAt < now {
            try? await store.recordExpiry(request)
            await state.count(.expired)
            return
        }
        guard var model = catalog.model(id: request.plannedModel), var provider = catalog.providers[model.provider] else {
            await fail(request, "its planned model \(request.plannedModel) is no longer in the pricing tables", attempt: nil)
            return
        }
        var mode = request.plannedMode
        if case .paused(let until) = await health.availability(provider.name, now: now) {
            // Routed around the paused provider when another model can serve it; otherwise it waits.
            guard let alternative = await alternative(for: request, excluding: [model.id]) else {
                try? await store.release(request, countAttempt: false, attempt: nil, reason: "provider \(provider.name) is cooling down", notBefore: until)
                return
            }
            (model, provider, mode) = alternative
            // The reservation was made for the planned model; the new one must fit under the caps too.
            let worstCase = Charges.worstCase(model: model, mode: mode, inputTokens: request.needs.inputTokens, maxOutputTokens: request.needs.maxOutputTokens)
            guard (try? await store.moveReservation(request, to: worstCase, now: now, simulated: options.simulate)) == true else {
                try? await store.release(request, countAttempt: false, attempt: nil, reason: "provider \(provider.name) is cooling down", notBefore: until)
                return
            }
            try? await store.replan(request, model: model.id, mode: mode, cost: Charges.prices(of: model, mode: mode, at: now).cost(
                inputTokens: request.needs.inputTokens, outputTokens: request.needs.maxOutputTokens))
        }
        if mode == .offpeak, let opening = Dispatcher.nextWindowOpening(model, after: now), opening > now,
            opening + model.speed.callDuration(outputTokens: request.needs.maxOutputTokens) <= request.deadlineAt
        {
            // Planned for a discount window that is not open: wait for it, since it still leaves time.
            try? await store.release(request, countAttempt: false, attempt: nil, reason: nil, notBefore: opening)
            return
        }
        do {
            try await limiter.acquire(model, tokens: request.needs.inputTokens + request.needs.maxOutputTokens)
        } catch {
            try? await store.release(request, countAttempt: false, attempt: nil, reason: nil)
            return
        }
        let body = DialectTranslation.requestBody(
            stored: (try? JSONParser.parse(request.body).objectValue) ?? JSONObject(), storedDialect: request.shape.bodyDialect, model: model,
            provider: provider, mode: mode)
        let call = ProviderCall(
            requestID: request.id, customID: request.customID, model: model, provider: provider, mode: mode, body: body,
            timeoutSeconds: options.timeoutSeconds)
        let callStarted = clock.now()
        let outcome = await caller.call(call)
        await limiter.release(model)
        let finished = clock.now()
        if Task.isCancelled {
            // Stopped after the grace period: the answer, if any, arrived too late to keep.
            try? await store.release(request, countAttempt: false, attempt: nil, reason: "the run stopped before the call finished")
            return
        }
        func attempt(_ outcome: String, status: Int?, error: String?, usage: Usage?, simulated: Bool) -> AttemptRecord {
            AttemptRecord(
                model: model.id, provider: provider.name, mode: mode, startedAt: callStarted, latencyMilliseconds: finished - callStarted,
                status: status, outcome: outcome, error: error, usage: usage, simulated: simulated)
        }
        switch outcome {
        case .success(let response):
            await health.recordSuccess(provider.name)
            let cost = Charges.cost(of: response.usage, prices: Charges.prices(of: model, mode: mode, at: callStarted))
            // The same usage at the baseline model's list prices: what a one-request-at-a-time router would have paid.
            let baselineCost = baseline.model(for: request.plannable).map { Charges.cost(of: response.usage, prices: $0.prices) } ?? cost
            let kept = (try? await store.recordSuccess(
                request, response: response, model: model, provider: provider, mode: mode, cost: cost, baseline: baselineCost,
                attempt: attempt("succeeded", status: response.statusCode, error: nil, usage: response.usage, simulated: response.simulated),
                now: finished)) ?? false
            if kept { await state.succeeded(cost: cost) }
        case .failure(let failure):
            let record = attempt(failure.kind.rawValue, status: failure.status, error: failure.message, usage: nil, simulated: false)
            await handle(failure, of: request, model: model, provider: provider, attempt: record)
        }
    }

    private func handle(_ failure: CallFailure, of request: ClaimedRequest, model: Model, provider: Provider, attempt: AttemptRecord) async {
        let now = clock.now()
        switch failure.kind {
        case .auth, .quota:
            if await health.disable(provider.name, reason: "\(failure.status.map { "HTTP \($0): " } ?? "")\(failure.message)") {
                onEvent(.notice("provider \(provider.name) disabled for this run (\(failure.kind == .auth ? "check \(provider.apiKeyEnvironmentVariable)" : "quota or spend limit")): \(failure.message)"))
            }
            try? await store.release(request, countAttempt: false, attempt: attempt, reason: "provider \(provider.name): \(failure.message)")
        case .permanent:
            await fail(request, failure.message, attempt: attempt)
        case .modelRefused, .retryable:
            if failure.kind == .retryable, await health.recordFailure(provider.name, now: now) {
                onEvent(.notice("provider \(provider.name) failed \(options.failuresBeforeCooldown) times in a row; paused for \(Int(options.cooldownSeconds))s"))
            }
            if request.attempts >= options.retry.maximumAttempts {
                await fail(request, "gave up after \(request.attempts) attempts; last: \(failure.message)", attempt: attempt)
                return
            }
            let onThisModel = (try? await store.exhaustedModels(for: request.id, threshold: options.retry.attemptsPerModel)) ?? []
            // This failure is not recorded yet, so it is added to the ones before it.
            let failuresHere = ((try? await store.failures(on: model.id, request: request.id)) ?? 0) + 1
            let modelIsDone = failure.kind == .modelRefused || failuresHere >= options.retry.attemptsPerModel
            var delay = await state.delay(options.retry, afterAttempt: request.attempts, retryAfterMilliseconds: failure.retryAfterMilliseconds)
            if modelIsDone, let (next, _, nextMode) = await alternative(for: request, excluding: onThisModel.union([model.id])) {
                let cost = Charges.prices(of: next, mode: nextMode, at: now).cost(
                    inputTokens: request.needs.inputTokens, outputTokens: request.needs.maxOutputTokens)
                try? await store.replan(request, model: next.id, mode: nextMode, cost: cost)
                await state.count(.fellBack)
                onEvent(.notice("\(request.customID): moving from \(model.id) to \(next.id) after: \(failure.message)"))
                // A new model owes nothing to the old one's backoff, only to what a provider asked for.
                delay = failure.kind == .modelRefused ? 0 : delay
            } else if failure.kind == .modelRefused {
                await fail(request, "no other model can serve it; \(model.id) refused: \(failure.message)", attempt: attempt)
                return
            }
            // With no other model (a pinned request, say), it keeps trying this one up to the overall limit.
            await state.count(.retried)
            try? await store.recordRetry(request, at: now + delay, attempt: attempt)
        }
    }

    private func fail(_ request: ClaimedRequest, _ message: String, attempt: AttemptRecord?) async {
        try? await store.recordFailure(request, error: message, attempt: attempt)
        await state.count(.failed)
    }

    /// The cheapest model, other than `excluding`, that can still serve the request now.
    private func alternative(for request: ClaimedRequest, excluding: Set<String>) async -> (Model, Provider, DispatchMode)? {
        let now = clock.now()
        let unavailable = await health.unavailableProviders(now: now)
        var narrowed = catalog
        narrowed.models.removeAll { excluding.contains($0.id) || unavailable.contains($0.provider) }
        let usable = PlanningContext.usableProviders(catalog: narrowed, environment: environment, simulate: options.simulate)
        let planner = Planner(context: PlanningContext(catalog: narrowed, now: now, usableProviders: usable))
        guard let best = planner.cheapestOption(for: request.plannable), let provider = narrowed.providers[best.model.provider] else { return nil }
        return (best.model, provider, best.mode == .offpeak ? .sync : best.mode)
    }

    /// When the model's next discount window opens after `moment` (the moment itself when one is open), if within a year.
    static func nextWindowOpening(_ model: Model, after moment: Int64) -> Int64? {
        model.discountWindows.compactMap { $0.intervals(from: moment, to: moment + 8 * 86_400_000).first?.lowerBound }.min()
    }
}

/// The run's own bookkeeping: claimed requests not yet started, counts, and the stop flag.
actor RunState {
    enum Counter { case expired, failed, retried, fellBack }

    struct Totals: Sendable {
        var succeeded = 0
        var failed = 0
        var expired = 0
        var retried = 0
        var fellBack = 0
        /// Requests this run held because their worst case did not fit under a cap.
        var held = 0
        var spend = Money.zero
    }

    /// Claimed requests not yet started, the next one last.
    private var claimed: [ClaimedRequest] = []
    private(set) var totals = Totals()
    private(set) var inFlight = 0
    private(set) var remaining = 0
    private(set) var stopRequested = false
    /// Read without waiting on the actor, by the planner's stop check.
    nonisolated let stopFlag = StopFlag()
    nonisolated var stopWasRequested: Bool { stopFlag.isSet }
    /// Set when the polling worker found nothing left: every worker then stops.
    private(set) var exhausted = false
    private var polling = false
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    /// Workers with nothing to do, waiting for a claim, the end of a poll, or the end of the run.
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    /// Counts wake-ups, so a worker that decided to wait notices one that came before its wait began.
    private var changes = 0
    private var pollerPause: Task<Void, Never>?
    private var random = SystemRandomNumberGenerator()

    func setRemaining(_ count: Int) { remaining = count }

    /// True the first time a notice with this key is asked for, so a run says each thing once.
    private var noticesGiven: Set<String> = []
    func firstNotice(_ key: String) -> Bool { noticesGiven.insert(key).inserted }

    func countHeld(_ count: Int) {
        totals.held += count
        remaining -= count
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
    func nextStep(refillBelow mark: Int) -> NextStep {
        if stopRequested || exhausted { return .stop }
        if let next = claimed.popLast() {
            inFlight += 1
            guard claimed.count < mark, !polling else { return .serve(next) }
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

    /// The poller's pause when nothing is due; cut short when the last call in flight ends, since the
    /// run may then be over.
    func pollerSleep(milliseconds: Int64) async {
        let sleep = Task { _ = try? await Task.sleep(nanoseconds: UInt64(milliseconds) * 1_000_000) }
        pollerPause = sleep
        await withTaskCancellationHandler { await sleep.value } onCancel: { sleep.cancel() }
        pollerPause = nil
    }

    func finishedOne() {
        inFlight -= 1
        if inFlight == 0 { pollerPause?.cancel() }
    }

    func succeeded(cost: Money) {
        totals.succeeded += 1
        totals.spend += cost
        remaining -= 1
    }

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
        for waiter in stopWaiters { waiter.resume() }
        stopWaiters.removeAll()
        wakeWaiters()
    }

    func waitForStopRequest() async {
        if stopRequested { return }
        await withCheckedContinuation { stopWaiters.append($0) }
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
