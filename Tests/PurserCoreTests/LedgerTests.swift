import Foundation
import SQLiteStore
import Testing
@testable import PurserCore
@testable import PurserSQLite

/// One job of identical requests, planned for live calls (no provider takes batches here), in a database of its
/// own, with a dispatch store on it.
private struct LedgerWorkspace {
    let directory = Fixtures.temporaryDirectory()
    let catalog = Fixtures.withoutBatches(try! Fixtures.bundledCatalog())
    let store: DispatchStore
    var path: String { directory.appendingPathComponent("purser.db").path }

    /// `deadline`: line `n`'s deadline, as a job file writes it.
    init(requests: Int, deadline: (Int) -> String = { _ in "30d" }) async throws {
        let lines = (1...requests).map { #"{"custom_id": "r\#($0)", "prompt": "Name three rivers.", "max_tokens": 100, "deadline": "\#(deadline($0))"}"# }
        let file = Fixtures.write(lines.joined(separator: "\n") + "\n", to: "job.jsonl", in: directory)
        _ = try JobSubmitter(database: try PurserDatabase.open(path: directory.appendingPathComponent("purser.db").path), catalog: catalog, clock: .fixed(submitTime))
            .submit(files: [file], options: SubmitOptions())
        store = try DispatchStore(path: directory.appendingPathComponent("purser.db").path, owner: "worker-1")
        _ = try await store.planJobs(PlanningRequest(jobs: [1], catalog: catalog, usableProviders: Set(catalog.providers.keys), now: submitTime))
    }

    var ledger: Ledger { Ledger(database: try! PurserDatabase.open(path: path)) }

    func claim(_ limit: Int, at now: Int64) async throws -> Claim {
        try await store.claim(limit: limit, now: now, leaseUntil: now + 60_000, job: nil, excludedModels: [], simulated: false, catalog: catalog)
    }

    /// A paid answer to `request` on its planned model, `body` its text, finished at `finishedAt`.
    func answer(to request: ClaimedRequest, body: String = "{}", finishedAt: Int64) throws -> PaidAnswer {
        let model = try #require(catalog.model(id: request.plannedModel))
        let provider = try #require(catalog.providers[model.provider])
        let usage = Usage(inputTokens: request.needs.inputTokens, outputTokens: 40)
        let cost = Charges.cost(of: usage, prices: model.prices)
        return PaidAnswer(
            requestID: request.id, jobID: request.jobID, tier: request.needs.qualityTier, maxOutputTokens: request.needs.maxOutputTokens,
            model: model.id, provider: provider.name, dialect: provider.dialect, mode: request.plannedMode,
            response: ProviderResponse(statusCode: 200, providerRequestID: "x", body: body, usage: usage, simulated: false), cost: cost, baseline: cost,
            attempt: AttemptRecord(
                model: model.id, provider: provider.name, mode: request.plannedMode, startedAt: finishedAt - 2_000, latencyMilliseconds: 2_000,
                status: 200, outcome: "succeeded", error: nil, usage: usage, simulated: false),
            finishedAt: finishedAt)
    }

    func worstCase(of request: ClaimedRequest) throws -> Money {
        Charges.worstCase(
            model: try #require(catalog.model(id: request.plannedModel)), mode: request.plannedMode, inputTokens: request.needs.inputTokens,
            maxOutputTokens: request.needs.maxOutputTokens)
    }
}

@Test func aClaimHandsItsRequestsOutEarliestDeadlineFirst() async throws {
    // Each line's deadline is a day before the line above's, so the requests' ids run against their deadlines.
    let workspace = try await LedgerWorkspace(requests: 6, deadline: { "\(31 - $0)d" })
    let claimed = try await workspace.claim(6, at: submitTime + 1_000).requests
    try #require(claimed.count >= 2)
    #expect(claimed.map(\.deadlineAt) == claimed.map(\.deadlineAt).sorted())
    #expect(claimed.map(\.id) == claimed.map(\.id).sorted(by: >), "the latest line first: its deadline is the earliest")
}

/// `handedBack`: the answer comes with the reservation its claim made (as a run's do), else the store reads it.
@Test(arguments: [false, true]) func aCallIsBilledToTheMonthItsMoneyWasReservedIn(handedBack: Bool) async throws {
    let workspace = try await LedgerWorkspace(requests: 1)
    let december = BudgetMonth(year: 2026, month: 12).start
    let request = try #require(try await workspace.claim(1, at: december - 1_000).requests.first)
    #expect(request.reservation == ClaimedRequest.Reservation(reservedAt: december - 1_000, project: "default"))
    let november = try workspace.ledger.spending(project: "default", month: BudgetMonth(year: 2026, month: 11), simulated: false)
    #expect(november.reserved == (try workspace.worstCase(of: request)))

    let answer = try workspace.answer(to: request, finishedAt: december + 1_100)
    let cost = answer.cost
    let kept = handedBack
        ? try await workspace.store.recordSuccesses([
            StoringAnswer(answer: answer, estimatedInputTokens: request.needs.inputTokens, reservation: request.reservation)
        ])[0].get()
        : try await workspace.store.recordSuccess(answer, estimatedInputTokens: request.needs.inputTokens)
    #expect(kept)
    // Finished in December, charged to November, whose cap admitted it; the reservation became the charge.
    let after = try workspace.ledger.spending(project: "default", month: BudgetMonth(year: 2026, month: 11), simulated: false)
    #expect(after.charged == cost && after.reserved == .zero)
    #expect(try workspace.ledger.spending(project: "default", month: BudgetMonth(year: 2026, month: 12), simulated: false).charged == .zero)
    #expect(cost <= november.reserved)
}

@Test func answersHandedOverTogetherEachGetTheirOwnOutcome() async throws {
    let workspace = try await LedgerWorkspace(requests: 3)
    let now = submitTime + 1_000
    let claimed = try await workspace.claim(3, at: now).requests
    try #require(claimed.count == 3)
    // A store that may grow the file by a few pages: room for a small answer, none for a 2 MiB one.
    let pages = try #require(try PurserDatabase.open(path: workspace.path).scalarInt("PRAGMA page_count"))
    let store = try DispatchStore(path: workspace.path, owner: "worker-1", maximumPageCount: Int(pages) + 8)
    let answers = [
        try workspace.answer(to: claimed[0], finishedAt: now + 2_000),
        try workspace.answer(to: claimed[1], body: String(repeating: "x", count: 2 << 20), finishedAt: now + 2_000),
        try workspace.answer(to: claimed[2], finishedAt: now + 2_000),
        // The first request again: its lease ended with the first answer, so this one is not kept.
        try workspace.answer(to: claimed[0], finishedAt: now + 2_100),
    ]
    let outcomes = await store.recordSuccesses(answers.map { StoringAnswer(answer: $0, estimatedInputTokens: 10) })
    try #require(outcomes.count == 4)
    #expect((try? outcomes[0].get()) == true)
    #expect((try? outcomes[1].get()) == nil, "the answer the file has no room for fails alone")
    #expect((try? outcomes[2].get()) == true)
    #expect((try? outcomes[3].get()) == false)
    let database = try PurserDatabase.open(path: workspace.path)
    let stored = try database.statement("SELECT request_id FROM results ORDER BY request_id").rows { $0.int64(0) }
    #expect(stored == [claimed[0].id, claimed[2].id].sorted())
    #expect(try database.scalarText("SELECT state FROM requests WHERE id = ?", [.integer(claimed[1].id)]) == "running", "its lease is still held")
}

@Test func aCallMovedToAnotherModelMustFitUnderTheCapAgain() async throws {
    let workspace = try await LedgerWorkspace(requests: 1)
    let now = submitTime + 1_000
    let probe = try #require(try await workspace.claim(1, at: now).requests.first)
    let worstCase = try workspace.worstCase(of: probe)
    try await workspace.store.release(probe, countAttempt: false, attempt: nil, reason: nil)
    _ = try workspace.ledger.setBudget(worstCase + worstCase, project: "default", month: nil, warnPercent: nil, now: now)

    let request = try #require(try await workspace.claim(1, at: now).requests.first)
    #expect(try await workspace.store.moveReservation(request, to: worstCase + worstCase, now: now, simulated: false))
    #expect(try workspace.ledger.spending(project: "default", month: BudgetMonth(containing: now), simulated: false).reserved == worstCase + worstCase)
    // Three times the first worst case does not fit under a cap of two: nothing stays reserved, and the caller releases it.
    #expect(!(try await workspace.store.moveReservation(request, to: worstCase + worstCase + worstCase, now: now, simulated: false)))
    #expect(try workspace.ledger.spending(project: "default", month: BudgetMonth(containing: now), simulated: false).reserved == .zero)
}

@Test func requestsThatFitOnceCallsSettleWaitAndOnesThatNeverFitAreHeld() async throws {
    let workspace = try await LedgerWorkspace(requests: 3)
    let now = submitTime + 1_000
    let probe = try await workspace.claim(3, at: now).requests
    let worstCase = try workspace.worstCase(of: try #require(probe.first))
    for request in probe { try await workspace.store.release(request, countAttempt: false, attempt: nil, reason: nil) }

    // Room for one call in flight at a time.
    _ = try workspace.ledger.setBudget(worstCase, project: "default", month: nil, warnPercent: 50, now: now)
    let first = try await workspace.claim(3, at: now)
    #expect(first.requests.count == 1 && first.waitingForBudget == 2 && first.held == 0)
    #expect(first.capUses.first?.isPastWarning == true)
    // Nothing more fits until that call settles.
    #expect(try await workspace.claim(3, at: now).requests.isEmpty)

    // With the cap spent by charges (not reservations), the rest are held until the month ends.
    try await workspace.store.release(first.requests[0], countAttempt: false, attempt: nil, reason: nil)
    _ = try workspace.ledger.setBudget(Money(picoUSD: worstCase.picoUSD - 1), project: "default", month: nil, warnPercent: nil, now: now)
    let second = try await workspace.claim(3, at: now)
    #expect(second.requests.isEmpty && second.held == 3)
    #expect(second.holdReasons.keys.sorted() == ["project default's budget for 2026-11"])
    let database = try PurserDatabase.open(path: workspace.path)
    #expect(try database.scalarInt("SELECT min(next_attempt_at) FROM requests WHERE state = 'held'") == BudgetMonth(containing: now).end)
}
