import Foundation
import Testing
@testable import PurserCore

/// One fake model on a provider that takes batches, at half price by batch.
private func batchCatalog(enqueuedTokens: Int? = nil) throws -> PricingCatalog {
    var catalog = try Fixtures.bundledCatalog()
    let provider = Provider(name: "p", dialect: .openai, baseURL: "https://example.com/v1", apiKeyEnvironmentVariable: "P_KEY", batchDialect: .openai)
    let prices = TokenPrices(input: TokenPrice(microUSDPerMillion: 1_000_000), output: TokenPrice(microUSDPerMillion: 4_000_000), cachedInput: TokenPrice(microUSDPerMillion: 1_000_000))
    let model = Model(
        id: "p/m", provider: "p", providerModel: "m", prices: prices, batchPrices: prices.scaled(basisPoints: 5_000), contextWindow: 100_000,
        maxOutputTokens: 8_000, quality: 90, qualitySource: "test", rateLimits: RateLimits(requestsPerMinute: 10_000, tokensPerMinute: 100_000_000),
        speed: Speed(timeToFirstTokenMilliseconds: 100, outputTokensPerSecond: 100), priceDate: "2026-11-24", priceSource: "https://example.com",
        batchEnqueuedTokens: enqueuedTokens)
    catalog.models = [model]
    catalog.providers = ["p": provider]
    return catalog
}

private func requests(_ count: Int, deadlineIn milliseconds: Int64, liveOnly: Bool = false) -> [PlannableRequest] {
    (0..<count).map { index in
        PlannableRequest(
            id: Int64(index + 1),
            needs: RequestNeeds(qualityFloor: 50, qualityTier: "standard", inputTokens: 1_000, maxOutputTokens: 500, capabilities: [], pinnedModel: nil),
            referenceModel: nil, deadlineAt: submitTime + milliseconds, maxCost: nil, liveOnly: liveOnly)
    }
}

private func modes(_ plan: Plan) -> [DispatchMode: Int] {
    Dictionary(grouping: plan.modeOfRequest.compactMap { $0 }, by: { $0 }).mapValues(\.count)
}

@Test func workWithTheWindowAndMarginToSpareGoesByBatchAndNothingShorterDoes() throws {
    let catalog = try batchCatalog()
    let planner = Planner(context: PlanningContext(catalog: catalog, now: submitTime, usableProviders: ["p"]))
    // The window (24 h) plus the margin (1 h) is 25 h.
    #expect(modes(planner.plan(requests(10, deadlineIn: 26 * 3_600_000))) == [.batch: 10])
    #expect(modes(planner.plan(requests(10, deadlineIn: 24 * 3_600_000))) == [.sync: 10])
    // A request a batch already expired on is planned live whatever its deadline.
    #expect(modes(planner.plan(requests(10, deadlineIn: 7 * 86_400_000, liveOnly: true))) == [.sync: 10])
}

@Test func aSpeculativeBatchIsPlannedOnlyOnEvidenceAndPricedAtItsExpectedCost() throws {
    let catalog = try batchCatalog()
    let deadline: Int64 = 4 * 3_600_000
    let fresh = Planner(context: PlanningContext(catalog: catalog, now: submitTime, usableProviders: ["p"])).plan(requests(10, deadlineIn: deadline))
    #expect(modes(fresh) == [.sync: 10], "without observed batches a short deadline is served live")
    // Eight batches of this model finished within ten minutes, two took a day.
    let history = BatchCompletionHistory(durations: ["p/m": Array(repeating: 600_000, count: 8) + [86_400_000, 86_400_000]])
    #expect(history.chance(model: "p/m", within: 3_600_000) == 8 * 10_000 / 14)
    let informed = Planner(context: PlanningContext(catalog: catalog, now: submitTime, usableProviders: ["p"], batchCompletion: history))
        .plan(requests(10, deadlineIn: deadline))
    #expect(modes(informed) == [.batch: 10])
    // Priced between the batch and list prices: the chance of finishing in time at batch prices, the rest live.
    #expect(informed.estimatedCost < fresh.estimatedCost)
    #expect(informed.estimatedCost.picoUSD * 2 > fresh.estimatedCost.picoUSD)
    // Too few batches seen: no evidence yet.
    let thin = BatchCompletionHistory(durations: ["p/m": [600_000, 600_000]])
    #expect(thin.chance(model: "p/m", within: 3_600_000) == 0)
}

@Test func aModelsEnqueuedTokenLimitBoundsWhatGoesByBatch() throws {
    // Each request counts 1,500 tokens; 30,000 may wait in batches at once, so at most 20 per 24-hour window.
    let catalog = try batchCatalog(enqueuedTokens: 30_000)
    let planner = Planner(context: PlanningContext(catalog: catalog, now: submitTime, usableProviders: ["p"]))
    let plan = planner.plan(requests(50, deadlineIn: 26 * 3_600_000))
    #expect(modes(plan) == [.batch: 20, .sync: 30])
}
