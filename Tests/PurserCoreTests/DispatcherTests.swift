import Foundation
import Synchronization
import Testing
@testable import PurserCore

/// The dispatcher alone: an in-memory queue and budgets (`MemoryStorage`), a scripted caller, and virtual time
/// running a hundred times faster than real time, so a minute of rate limits, backoffs and grace periods passes in
/// under a second. Every assertion is one jitter cannot break: on a busy machine virtual time only passes faster
/// between steps, never slower, so the tests bound what happens after a moment, never that it happens before one.
@Suite struct DispatcherTests {
    static let origin: Int64 = 1_795_478_400_000
    let clock = WallClock.accelerated(from: DispatcherTests.origin, by: 100)
    let catalog = Fixtures.catalog([
        Fixtures.model("cheap", input: 1_000_000, output: 2_000_000, quality: 50, requestsPerMinute: 60),
        Fixtures.model("dear", input: 5_000_000, output: 10_000_000, quality: 60),
    ])

    /// A request planned live on `model`, due a day from the origin unless told otherwise.
    func request(_ id: Int64, model: String = "p/cheap", pinned: Bool = false, deadline: Int64 = 86_400_000) -> ClaimedRequest {
        ClaimedRequest(
            id: id, jobID: 1, customID: "r\(id)", shape: .openaiBatch,
            needs: RequestNeeds(
                qualityFloor: 40, qualityTier: "standard", inputTokens: 100, maxOutputTokens: 100, capabilities: [],
                pinnedModel: pinned ? model : nil),
            deadlineAt: Self.origin + deadline, attempts: 0, plannedModel: model, plannedMode: .sync,
            body: #"{"model": "cheap", "messages": [{"role": "user", "content": "Question \#(id)"}], "max_tokens": 100}"#,
            latestStart: Self.origin + deadline - 10_000)
    }

    func options(concurrency: Int = 16, grace: Double = 10) -> RunOptions {
        var options = RunOptions(worker: "dispatcher-test")
        options.concurrency = concurrency
        options.graceSeconds = grace
        let folder = Fixtures.temporaryDirectory()
        options.workFolder = WorkFolder(folder: folder.appendingPathComponent("work").path)
        // As `purser run` does: each call noted before it is sent, so the run claims ahead of its calls; the file is
        // written again every few calls (a real run does it every million).
        options.startedCalls = StartedCalls(databasePath: folder.appendingPathComponent("purser.db").path, owner: options.worker, compactingSize: 64)
        return options
    }

    /// The notices a run gave, in order.
    let notices = Notices()

    func dispatcher(_ store: MemoryStorage, _ caller: ScriptedCaller, _ options: RunOptions) -> Dispatcher {
        let notices = notices
        return Dispatcher(
            storage: RunStorage(queue: store, plans: store, batches: store), caller: caller, catalog: catalog, environment: ["P_KEY": "test"],
            options: options, clock: clock, onEvent: { event in if case .notice(let notice) = event { notices.add(notice) } })
    }

    @Test func aCapIsNeverPassedWithManyCallsInFlightAndWhatDoesNotFitIsHeld() async throws {
        let options = options(concurrency: 64)
        let store = MemoryStorage(owner: options.worker)
        for id in 1...200 { await store.add(request(Int64(id), model: "p/dear")) }
        // Each answer costs 100 input and 50 output tokens on dear, and reserves its worst case first: the cap lets
        // the hundredth call start with 99 paid for, and no more.
        let perAnswer = TokenPrices.cost(inputTokens: 100, outputTokens: 50, input: 5_000_000, output: 10_000_000)
        let worstCase = Charges.worstCase(model: try #require(catalog.model(id: "p/dear")), mode: .sync, inputTokens: 100, maxOutputTokens: 100)
        let cap = Money(picoUSD: perAnswer.picoUSD * 99) + worstCase
        await store.setCap(project: "default", cap)
        let caller = ScriptedCaller(clock: clock, latency: 3_000)
        let summary = try await dispatcher(store, caller, options).run()

        #expect(await store.charged(project: "default") <= cap)
        #expect(try #require(await store.highestCommitted["default"]) <= cap)
        let states = try await store.stateCounts(job: nil)
        #expect(states[.succeeded] == 100)
        #expect(states[.held] == 100)
        #expect(summary.succeeded == 100 && summary.held == 100)
        #expect(await store.reservationCount == 0)
        #expect(caller.mostInFlight > 1)
    }

    @Test func aRunClaimsAheadOfItsCallsOnlyWhileItNotesEachCallItStarts() async throws {
        // Noting: a worker whose call ends finds its next request claimed.
        let noting = options(concurrency: 8)
        let store = MemoryStorage(owner: noting.worker)
        for id in 1...80 { await store.add(request(Int64(id), model: "p/dear")) }
        let summary = try await dispatcher(store, ScriptedCaller(clock: clock, latency: 500), noting).run()
        #expect(summary.succeeded == 80)
        #expect(await store.largestClaim == 16, "8 in flight and 8 ahead")
        #expect(!FileManager.default.fileExists(atPath: try #require(noting.startedCalls).path), "a run that ends holding no lease removes its notes")

        // The file cannot be made (its folder is not there): the run says so and claims no more than it can have in flight.
        var unnoted = options(concurrency: 8)
        unnoted.startedCalls = StartedCalls(databasePath: "/nonexistent-purser-folder/purser.db", owner: unnoted.worker)
        let other = MemoryStorage(owner: unnoted.worker)
        for id in 1...80 { await other.add(request(Int64(id), model: "p/dear")) }
        let unnotedSummary = try await dispatcher(other, ScriptedCaller(clock: clock, latency: 500), unnoted).run()
        #expect(unnotedSummary.succeeded == 80)
        #expect(await other.largestClaim == 8)
        #expect(notices.all.contains { if case .startedCallsNotKept(let reason) = $0 { reason.contains("/nonexistent-purser-folder/") } else { false } })
    }

    @Test func aRunWhoseCallsEndFastClaimsWhatItStartsIn20MillisecondsAndNeverMoreThan512() async throws {
        // How fast a run starts its calls, counted over a quarter second or more.
        let state = RunState(clock: clock)
        #expect(await state.callsStartedPerSecond(now: 1_000) == 0)
        await state.addClaimed((1...600).map { request(Int64($0)) })
        for _ in 0..<300 { guard case .serve = await state.nextStep(refillBelow: 0) else { Issue.record("nothing to serve"); return } }
        #expect(await state.callsStartedPerSecond(now: 1_100) == 0, "under a quarter second: no rate yet")
        #expect(await state.callsStartedPerSecond(now: 1_250) == 1_200)
        for _ in 0..<30 { _ = await state.nextStep(refillBelow: 0) }
        #expect(await state.callsStartedPerSecond(now: 1_400) == 1_200, "under a quarter second since: the last rate stands")
        #expect(await state.callsStartedPerSecond(now: 1_750) == 60)
        #expect(await state.callsStartedPerSecond(now: 2_000) == 0, "none started since")
        #expect(await state.callsStartedPerSecond(now: 500) == 0, "a clock that went back counts again")

        // Its concurrency ahead, or what it starts in 20 ms when that is more, at most 512; none when it cannot note its calls.
        #expect(Dispatcher.claimingAhead(concurrency: 8, startingPerSecond: 16, notingCalls: true) == 8)
        #expect(Dispatcher.claimingAhead(concurrency: 8, startingPerSecond: 6_000, notingCalls: true) == 120)
        #expect(Dispatcher.claimingAhead(concurrency: 100, startingPerSecond: 18_000, notingCalls: true) == 360)
        #expect(Dispatcher.claimingAhead(concurrency: 100, startingPerSecond: 40_000, notingCalls: true) == 512)
        #expect(Dispatcher.claimingAhead(concurrency: 5_000, startingPerSecond: 1_000, notingCalls: true) == 512)
        #expect(Dispatcher.claimingAhead(concurrency: 100, startingPerSecond: 20_000, notingCalls: false) == 0)
    }

    @Test func aPollLooksForJobsToPlanUnlessTheLastClaimFilledItsRoom() async throws {
        let state = RunState(clock: clock)
        var chores = await state.choresDue(now: 1_000)
        #expect(chores.tidy && chores.lookForPlans, "the first poll does both")
        await state.noteClaimed(100, of: 100, now: 1_000)
        chores = await state.choresDue(now: 1_100)
        #expect(!chores.tidy && !chores.lookForPlans, "after a claim that filled its room, planned work is to spare")
        await state.noteClaimed(40, of: 100, now: 1_200)
        chores = await state.choresDue(now: 1_300)
        #expect(!chores.tidy && chores.lookForPlans, "a claim that fell short: look")
        await state.noteClaimed(100, of: 100, now: 1_400)
        chores = await state.choresDue(now: 2_000)
        #expect(chores.tidy && chores.lookForPlans, "once a second, with the tidying, whatever the last claim")
        await state.noteClaimed(0, of: 100, now: 2_100)
        chores = await state.choresDue(now: 2_200)
        #expect(chores.tidy && chores.lookForPlans, "after a claim of nothing")
    }

    @Test func aRunRefillsItsClaimedRequestsBeforeHalfOfWhatItClaimsAheadIsGone() async throws {
        let state = RunState(clock: clock)
        await state.addClaimed((1...400).map { request(Int64($0)) })
        // Claiming 300 ahead of 100 in flight (what it starts in 20 ms at 15,000 a second): the refill comes at 149 left,
        // not at half its concurrency.
        #expect(await state.room(concurrency: 100, claimingAhead: 300) == 0)
        var served = 0
        while true {
            let step = await state.nextStep(refillBelow: 50)
            guard case .serve = step else {
                guard case .refillThenServe = step else { Issue.record("\(step)"); return }
                break
            }
            served += 1
        }
        #expect(400 - served - 1 == 149, "refilled with \(400 - served - 1) left")
    }

    @Test func noCallStartsBeforeItsModelsRateLimitHasRoom() async throws {
        let options = options(concurrency: 16)
        let store = MemoryStorage(owner: options.worker)
        for id in 1...30 { await store.add(request(Int64(id), pinned: true)) }
        let caller = ScriptedCaller(clock: clock, latency: 100)
        let summary = try await dispatcher(store, caller, options).run()

        #expect(summary.succeeded == 30)
        // cheap takes 60 a minute: a burst of 5 (a twelfth of a minute's), then one a second.
        let starts = caller.calls.map(\.startedAt).sorted()
        for (index, start) in starts.enumerated() where index >= 5 {
            #expect(start >= Self.origin + Int64(index - 5) * 1_000 - 50, "call \(index + 1) started \(start - Self.origin) ms in")
        }
    }

    @Test func aPinnedRequestIsRetriedOnItsModelNoSoonerThanTheProviderAsked() async throws {
        let options = options()
        let store = MemoryStorage(owner: options.worker)
        await store.add(request(1, pinned: true))
        let caller = ScriptedCaller(clock: clock, latency: 10) { _, attempt in
            attempt <= 2 ? CallFailure(kind: .retryable, status: 503, message: "overloaded", retryAfterMilliseconds: 5_000) : nil
        }
        let summary = try await dispatcher(store, caller, options).run()

        #expect(summary.succeeded == 1 && summary.retried == 2)
        let starts = caller.calls.map(\.startedAt)
        try #require(starts.count == 3)
        #expect(starts[1] - starts[0] >= 5_000 && starts[2] - starts[1] >= 5_000)
        let entry = try #require(await store.entry(1))
        #expect(entry.attempts.map(\.outcome) == ["retryable", "retryable", "succeeded"])
        #expect(entry.answer?.model == "p/cheap")
    }

    @Test func aRequestTheProviderRefusesFailsAtOnceAndTheRunSaysSoInATypedTrouble() async throws {
        let options = options()
        let store = MemoryStorage(owner: options.worker)
        await store.add(request(1, pinned: true))
        await store.add(request(2, pinned: true))
        let caller = ScriptedCaller(clock: clock, latency: 10) { call, _ in
            call.requestID == 1 ? CallFailure(kind: .permanent, status: 400, message: "messages: field required") : nil
        }
        let summary = try await dispatcher(store, caller, options).run()

        #expect(summary.succeeded == 1 && summary.failed == 1 && summary.retried == 0)
        #expect(summary.trouble == .requestsFailed(1))
        #expect(await store.entry(1)?.lastError == "messages: field required")
        #expect(await store.reservationCount == 0)
    }

    /// A run whose lease on a request was taken over (it lapsed while the run was held up) writes nothing for it and
    /// does not count it: the run that took it over did.
    @Test func aRefusalForARequestWhoseLeaseWasTakenOverIsNeitherWrittenNorCounted() async throws {
        let options = options()
        let store = MemoryStorage(owner: options.worker)
        await store.add(request(1, pinned: true))
        await store.add(request(2, pinned: true))
        let caller = ScriptedCaller(clock: clock, latency: 10, script: { call, _ in
            call.requestID == 1 ? CallFailure(kind: .permanent, status: 400, message: "messages: field required") : nil
        }, onCall: { started in if started == 1 { await store.servedElsewhere(1) } })
        let summary = try await dispatcher(store, caller, options).run()

        #expect(summary.succeeded == 1 && summary.failed == 0)
        let entry = try #require(await store.entry(1))
        #expect(entry.state == .succeeded && entry.lastError == nil)
    }

    @Test func aRateLimitedRequestMovesToAModelWithRoomAndIsBilledThere() async throws {
        let options = options()
        let store = MemoryStorage(owner: options.worker)
        await store.add(request(1))
        let caller = ScriptedCaller(clock: clock, latency: 10) { call, _ in
            call.model.id == "p/cheap" ? CallFailure(kind: .retryable, status: 429, message: "rate limited", retryAfterMilliseconds: 60_000) : nil
        }
        let summary = try await dispatcher(store, caller, options).run()

        #expect(summary.succeeded == 1 && summary.fellBack == 1)
        #expect(caller.calls.map(\.model) == ["p/cheap", "p/dear"])
        // Said as a typed notice, which a front end words and a service can count.
        #expect(notices.all == [.movedToModel(customID: "r1", from: "p/cheap", to: "p/dear", after: "rate limited")])
        let entry = try #require(await store.entry(1))
        #expect(entry.answer?.model == "p/dear")
        #expect(entry.answer?.cost == TokenPrices.cost(inputTokens: 100, outputTokens: 50, input: 5_000_000, output: 10_000_000))
    }

    @Test func requestsTheRateLimitCannotStartByTheirLatestStartExpireInsteadOfStartingLate() async throws {
        let options = options(concurrency: 16)
        let store = MemoryStorage(owner: options.worker)
        // Due 11.5 s from the origin, and cheap's modelled call takes 1.5 s: the latest start is 10 s in, by which its
        // rate limit (a burst of 5, then one a second) starts at most 16 of the 30.
        for id in 1...30 { await store.add(request(Int64(id), pinned: true, deadline: 11_500)) }
        let caller = ScriptedCaller(clock: clock, latency: 100)
        let summary = try await dispatcher(store, caller, options).run()

        // At most 16 start (fewer on a machine too busy to start them in time); every other one expires, none starts late.
        #expect(summary.succeeded + summary.expired == 30)
        #expect(summary.succeeded <= 16)
        #expect(caller.calls.count == summary.succeeded)
        #expect(await store.reservationCount == 0)
    }

    /// Runs `requests` requests four calls at a time, each taking `latency`, and asks the run to stop once four are out.
    func stoppedOnceFourCallsAreOut(requests: Int, latency: Int64, grace: Double) async throws -> (MemoryStorage, ScriptedCaller, RunSummary) {
        let options = options(concurrency: 4, grace: grace)
        let store = MemoryStorage(owner: options.worker)
        for id in 1...requests { await store.add(request(Int64(id), model: "p/dear")) }
        // The fourth call asks for the stop itself as it starts, before its own wait: a test task polling for it could
        // be kept off the processor for longer than a call takes on a busy machine, and see more calls than four.
        let stopper = Mutex<Dispatcher?>(nil)
        let caller = ScriptedCaller(clock: clock, latency: latency, onCall: { count in
            if count == 4, let dispatcher = stopper.withLock({ $0 }) { await dispatcher.stop() }
        })
        let dispatcher = dispatcher(store, caller, options)
        stopper.withLock { $0 = dispatcher }
        return (store, caller, try await dispatcher.run())
    }

    @Test func aStopLetsCallsInFlightFinishWithinTheGraceAndHandsTheRestBack() async throws {
        let (store, caller, summary) = try await stoppedOnceFourCallsAreOut(requests: 40, latency: 40_000, grace: 60)

        // The four calls out when the stop came finish (40 s, within the 60 s grace) and are kept; nothing else starts.
        #expect(caller.calls.count == 4)
        #expect(summary.succeeded == 4)
        let states = try await store.stateCounts(job: nil)
        #expect(states[.succeeded] == 4 && states[.queued] == 36)
        #expect(await store.reservationCount == 0)
    }

    @Test func callsStillOutWhenTheGraceEndsAreCancelledAndCountedAsMaybeBilled() async throws {
        let (store, _, summary) = try await stoppedOnceFourCallsAreOut(requests: 8, latency: 3_600_000, grace: 5)

        #expect(summary.succeeded == 0)
        #expect(try await store.stateCounts(job: nil)[.queued] == 8)
        #expect(await store.reservationCount == 0)
        // The four cut off may have been billed: their worst cases stay counted against the cap, unsettled.
        let worstCase = Charges.worstCase(model: try #require(catalog.model(id: "p/dear")), mode: .sync, inputTokens: 100, maxOutputTokens: 100)
        #expect(await store.unsettled(project: "default") == Money(picoUSD: worstCase.picoUSD * 4))
    }
}

extension TokenPrices {
    /// What `inputTokens` and `outputTokens` cost at these list prices (micro-USD per million tokens).
    static func cost(inputTokens: Int, outputTokens: Int, input: Int64, output: Int64) -> Money {
        TokenPrices(input: TokenPrice(microUSDPerMillion: input), output: TokenPrice(microUSDPerMillion: output), cachedInput: TokenPrice(microUSDPerMillion: input / 10))
            .cost(inputTokens: inputTokens, outputTokens: outputTokens)
    }
}

/// The notices a run gave, in order.
final class Notices: Sendable {
    private let list = Mutex<[RunNotice]>([])
    func add(_ notice: RunNotice) { list.withLock { $0.append(notice) } }
    var all: [RunNotice] { list.withLock { $0 } }
}

/// Answers calls after `latency` of the test's clock with 100 input and 50 output tokens, or with the failure `script`
/// gives for a request's n-th call; a call cancelled before its answer fails, as an HTTP call would.
final class ScriptedCaller: ModelCaller {
    struct Call: Sendable {
        var requestID: Int64
        var model: String
        var startedAt: Int64
    }

    let clock: WallClock
    let latency: Int64
    let script: @Sendable (ProviderCall, Int) -> CallFailure?
    /// Told how many calls have started, as each one starts and before it waits.
    let onCall: @Sendable (Int) async -> Void
    private let log = Mutex<(calls: [Call], inFlight: Int, mostInFlight: Int)>(([], 0, 0))

    init(
        clock: WallClock, latency: Int64, script: @escaping @Sendable (ProviderCall, Int) -> CallFailure? = { _, _ in nil },
        onCall: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.clock = clock
        self.latency = latency
        self.script = script
        self.onCall = onCall
    }

    var calls: [Call] { log.withLock { $0.calls } }
    var mostInFlight: Int { log.withLock { $0.mostInFlight } }

    func call(_ call: ProviderCall) async -> Result<ProviderResponse, CallFailure> {
        let (attempt, started) = log.withLock { log in
            log.calls.append(Call(requestID: call.requestID, model: call.model.id, startedAt: clock.now()))
            log.inFlight += 1
            log.mostInFlight = max(log.mostInFlight, log.inFlight)
            return (log.calls.filter { $0.requestID == call.requestID }.count, log.calls.count)
        }
        defer { log.withLock { $0.inFlight -= 1 } }
        await onCall(started)
        do { try await clock.sleep(milliseconds: latency) } catch {
            return .failure(CallFailure(kind: .retryable, status: nil, message: "cancelled"))
        }
        if let failure = script(call, attempt) { return .failure(failure) }
        return .success(ProviderResponse(
            statusCode: 200, providerRequestID: "answer-\(call.requestID)", body: "{}", usage: Usage(inputTokens: 100, outputTokens: 50), simulated: false))
    }
}

