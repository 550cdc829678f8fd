import Foundation
import Testing
@testable import PurserCore

/// Issue 20, part 3: prompt caching is a planned cost. A prefix group placed on a model pays its write once and reads
/// after that, where its prefix reaches the model's minimum; the planner stays exact on small instances and within 1%
/// of its bound at scale, and the bound stays a bound.

// MARK: - Fixtures

/// A model that caches: explicitly (writes at 1.25× input, as Anthropic bills them) or automatically (a miss costs input),
/// reads at a tenth of input, from `minimum` tokens.
private func cachingModel(
    _ name: String, mode: CachingRule.Mode = .explicit, minimum: Int = 1_024, step: Int = 1, batch: CachingRule.InMode = .bestEffort,
    input: Int64, output: Int64, quality: Int = 50, requestsPerMinute: Int = 1_000, tokensPerMinute: Int = 100_000_000,
    batchPrices: Bool = false, windows: [DiscountWindow] = []
) -> Model {
    var model = Fixtures.model(
        name, input: input, output: output, quality: quality, requestsPerMinute: requestsPerMinute, tokensPerMinute: tokensPerMinute, ttft: 10,
        tokensPerSecond: 100_000, windows: windows)
    if mode == .explicit { model.prices.cacheWrite5m = TokenPrice(microUSDPerMillion: input * 5 / 4) }
    if batchPrices {
        var batch = model.prices.scaled(basisPoints: 5_000)
        batch.cacheWrite5m = model.prices.cacheWrite5m?.scaled(basisPoints: 5_000)
        model.batchPrices = batch
    }
    model.caching = CachingRule(mode: mode, minimumPrefixTokens: minimum, stepTokens: step, batch: batch, source: "https://example.com/caching")
    return model
}

private func grouped(_ request: PlannableRequest, _ group: String, prefix: Int) -> PlannableRequest {
    var request = request
    var hasher = Hasher()
    hasher.combine(group)
    request.prefix = SharedPrefix(group: UInt64(bitPattern: Int64(hasher.finalize())), tokens: prefix)
    return request
}

/// The tables with every provider taking batches in its own dialect.
private func withBatches(_ catalog: PricingCatalog) -> PricingCatalog {
    var batching = catalog
    for name in batching.providers.keys { batching.providers[name]?.batchDialect = .openai }
    return batching
}

private func context(_ catalog: PricingCatalog, now: Int64 = 0, cacheHits: CacheHitHistory = CacheHitHistory()) -> PlanningContext {
    PlanningContext(catalog: catalog, now: now, usableProviders: Set(catalog.providers.keys), cacheHits: cacheHits)
}

// MARK: - What a group costs

@Test func aGroupPlacedOnACachingModelPaysOneWriteAndReadsAfter() {
    let model = cachingModel("claude", input: 3_000_000, output: 15_000_000)
    let catalog = Fixtures.catalog([model])
    let requests = (0..<100).map { grouped(Fixtures.request(Int64($0), input: 3_300, output: 200), "g", prefix: 3_000) }
    let plan = Planner(context: context(catalog)).plan(requests)
    // Independently: every request pays its own 300 tokens at $3 and 200 out at $15; the prefix is written once at $3.75
    // and read 99 times at $0.30 a million tokens.
    let own: Int64 = 100 * (300 * 3_000_000 + 200 * 15_000_000)
    let prefix: Int64 = 3_000 * 3_750_000 + 99 * 3_000 * 300_000
    #expect(plan.estimatedCost.picoUSD == own + prefix)
    // The primer's cost carries the write; the others are alike.
    #expect(plan.costOfRequest.filter { $0 == 300 * 3_000_000 + 200 * 15_000_000 + 3_000 * 300_000 }.count == 99)
    #expect(plan.cachingRequests == 99 && plan.expectedCachedTokens == 99 * 3_000)
    let uncached: Int64 = 100 * (3_300 * 3_000_000 + 200 * 15_000_000)
    #expect(plan.cacheSaving.picoUSD == uncached - plan.estimatedCost.picoUSD)
    #expect(plan.isOptimal)
}

@Test func theCheapestListPriceIsNotTheCheapestOnceCachingIsPriced() {
    // "plain" is 20% cheaper per input token but caches nothing; "caching" reads the shared prefix at a tenth.
    let plain = Fixtures.model("plain", input: 2_400_000, output: 15_000_000, quality: 50)
    let caching = cachingModel("caching", input: 3_000_000, output: 15_000_000)
    let catalog = Fixtures.catalog([plain, caching])
    let alone = (0..<50).map { Fixtures.request(Int64($0), input: 3_300, output: 200) }
    #expect(Planner(context: context(catalog)).plan(alone).mix.map(\.model) == ["p/plain"])
    let sharing = alone.map { grouped($0, "g", prefix: 3_000) }
    let plan = Planner(context: context(catalog)).plan(sharing)
    #expect(plan.mix.map(\.model) == ["p/caching"])
    #expect(plan.cacheSaving > .zero)
}

@Test func aPrefixUnderTheModelsMinimumOrAGroupOfOneIsNotCached() {
    let model = cachingModel("claude", minimum: 4_096, input: 3_000_000, output: 15_000_000)
    let catalog = Fixtures.catalog([model])
    let plain = (0..<20).map { Fixtures.request(Int64($0), input: 3_300, output: 200) }
    let expected = Planner(context: context(catalog)).plan(plain).costOfRequest
    let short = plain.map { grouped($0, "g", prefix: 3_000) }
    #expect(Planner(context: context(catalog)).plan(short).costOfRequest == expected)
    let alone = plain.enumerated().map { grouped($1, "g\($0)", prefix: 5_000) }
    #expect(Planner(context: context(catalog)).plan(alone).costOfRequest == expected)
}

@Test func automaticCachingReadsInTheModelsStepsAndAMissCostsInput() {
    let model = cachingModel("gpt", mode: .automatic, minimum: 1_024, step: 128, input: 1_250_000, output: 10_000_000)
    let catalog = Fixtures.catalog([model])
    let requests = (0..<10).map { grouped(Fixtures.request(Int64($0), input: 3_300, output: 100), "g", prefix: 3_000) }
    let plan = Planner(context: context(catalog)).plan(requests)
    // 3,000 tokens read in steps of 128: 2,944. The first call processes them at the input price, the nine others read.
    let read: Int64 = 2_944
    let others = (3_300 - read) * 1_250_000 + read * 125_000 + 100 * 10_000_000
    #expect(plan.estimatedCost.picoUSD == 9 * others + (3_300 * 1_250_000 + 100 * 10_000_000))
}

@Test func batchCachingCountsOnTheHitRateThisDatabasesBatchesSaw() {
    let model = cachingModel("gpt", mode: .automatic, minimum: 1_024, batch: .halved, input: 1_000_000, output: 8_000_000, batchPrices: true)
    let catalog = withBatches(Fixtures.catalog([model]))
    let requests = (0..<10).map { grouped(Fixtures.request(Int64($0), input: 2_000, output: 100, deadlineAt: 3 * 86_400_000), "g", prefix: 1_500) }
    func plan(_ hits: CacheHitHistory) -> Plan { Planner(context: context(catalog, cacheHits: hits)).plan(requests) }
    // Batch prices: input $0.50, cached $0.05, output $4. Each call but the first reads with the hit rate, else pays input.
    func expected(hitBasisPoints: Int64) -> Int64 {
        let price = (50_000 * hitBasisPoints + 500_000 * (10_000 - hitBasisPoints) + 9_999) / 10_000
        return 10 * (500 * 500_000 + 100 * 4_000_000) + 1_500 * 500_000 + 9 * 1_500 * price
    }
    let unseen = plan(CacheHitHistory())
    #expect(unseen.mix.map(\.mode) == [.batch])
    #expect(unseen.estimatedCost.picoUSD == expected(hitBasisPoints: CacheHitHistory.defaultBatchHitBasisPoints))
    // Too few batches seen: still the conservative rate. Enough: their own.
    #expect(plan(CacheHitHistory(calls: ["p/gpt": 19], hits: ["p/gpt": 19])).estimatedCost == unseen.estimatedCost)
    #expect(plan(CacheHitHistory(calls: ["p/gpt": 40], hits: ["p/gpt": 36])).estimatedCost.picoUSD == expected(hitBasisPoints: 9_000))
}

@Test func explicitCachingIsNotCountedOnInBatchesPurserSendsWithoutBreakpoints() {
    let model = cachingModel("claude", input: 3_000_000, output: 15_000_000, batchPrices: true)
    let catalog = withBatches(Fixtures.catalog([model]))
    let requests = (0..<10).map { grouped(Fixtures.request(Int64($0), input: 3_300, output: 200, deadlineAt: 3 * 86_400_000), "g", prefix: 1_100) }
    let plan = Planner(context: context(catalog)).plan(requests)
    #expect(plan.mix.map(\.mode) == [.batch])
    #expect(plan.estimatedCost.picoUSD == 10 * (3_300 * 1_500_000 + 200 * 7_500_000))
    #expect(plan.cachingRequests == 0 && plan.cacheSaving == .zero)
}

@Test func aLongSharedPrefixCanMakeLiveCallsCheaperThanAHalfPriceBatch() {
    // 3,000 of 3,300 tokens shared: read at a tenth live, they cost less than the whole input at half price in a batch.
    let model = cachingModel("claude", input: 3_000_000, output: 15_000_000, batchPrices: true)
    let catalog = withBatches(Fixtures.catalog([model]))
    let requests = (0..<10).map { grouped(Fixtures.request(Int64($0), input: 3_300, output: 200, deadlineAt: 3 * 86_400_000), "g", prefix: 3_000) }
    let plan = Planner(context: context(catalog)).plan(requests)
    #expect(plan.mix.map(\.mode) == [.sync])
    #expect(plan.estimatedCost.picoUSD == 10 * (300 * 3_000_000 + 200 * 15_000_000) + 3_000 * 3_750_000 + 9 * 3_000 * 300_000)
    #expect(plan.estimatedCost.picoUSD < 10 * (3_300 * 1_500_000 + 200 * 7_500_000))
}

@Test func withoutSharedPrefixesAPlanCostsExactlyAsBefore() {
    let (catalog, requests, now) = capacityBoundCachingInstance(requests: 600, seed: 3, groups: 0)
    let before = Planner(context: context(catalog, now: now)).plan(requests.map { var plain = $0; plain.prefix = nil; return plain })
    let after = Planner(context: context(catalog, now: now)).plan(requests.enumerated().map { grouped($1, "own-\($0)", prefix: 2_000) })
    #expect(after.costOfRequest == before.costOfRequest && after.modelOfRequest == before.modelOfRequest)
    #expect(after.lowerBound == before.lowerBound && after.cacheSaving == .zero)
}

// MARK: - Exact on small instances

/// The cheapest plan under the real limits by trying every assignment, priced from the tables without the planner's code:
/// a request pays its own tokens and its prefix at the read price when its model caches that prefix (group of two or more,
/// at least the minimum), and each group pays one write (at the write price less the read) on each model and kind of time
/// (list or window) it uses.
private func exhaustiveOptimumWithGroups(_ requests: [PlannableRequest], catalog: PricingCatalog, now: Int64) -> (placed: Int, cost: Int64) {
    struct Choice {
        var model: String
        var mode: DispatchMode
        var latest: Int64
        var cost: Int64
        var write: Int64
        var key: String?
    }
    let check = LimitCheck(catalog: catalog, now: now)
    let sizes = Dictionary(grouping: requests.compactMap(\.prefix?.group)) { $0 }.mapValues(\.count)
    let choices: [[Choice]] = requests.map { request in
        catalog.models.flatMap { model -> [Choice] in
            guard model.quality >= request.needs.qualityFloor else { return [] }
            let output = request.needs.maxOutputTokens, input = request.needs.inputTokens
            let latest = request.deadlineAt - model.speed.callDuration(outputTokens: output)
            guard latest > now else { return [] }
            func priced(_ prices: TokenPrices, _ kind: String, _ mode: DispatchMode) -> Choice {
                var cached = 0
                if let prefix = request.prefix, let rule = model.caching, sizes[prefix.group, default: 0] >= 2, prefix.tokens >= rule.minimumPrefixTokens {
                    cached = Int(prefix.tokens) / rule.stepTokens * rule.stepTokens
                }
                let read = prices.cachedInput.microUSDPerMillion, write = (prices.cacheWrite5m ?? prices.input).microUSDPerMillion
                let cost = Int64(input - cached) * prices.input.microUSDPerMillion + Int64(cached) * read + Int64(output) * prices.output.microUSDPerMillion
                return Choice(
                    model: model.id, mode: mode, latest: latest, cost: cost, write: Int64(cached) * (write - read),
                    key: cached > 0 ? "\(request.prefix!.group)|\(model.id)|\(kind)" : nil)
            }
            var result = [priced(model.prices, "list", .sync)]
            for multiplier in Set(model.discountWindows.map(\.multiplierBasisPoints)) {
                result.append(priced(model.prices.scaled(basisPoints: multiplier), "window", .offpeak))
            }
            return result
        }
    }
    var best = (placed: -1, cost: Int64.max)
    var chosen: [(model: String, mode: DispatchMode, latestStart: Int64, tokens: Int64)] = []
    var written: [String: Int] = [:]
    func search(_ index: Int, placed: Int, cost: Int64) {
        if index == requests.count {
            if (placed, -cost) > (best.placed, -best.cost) { best = (placed, cost) }
            return
        }
        for choice in choices[index] {
            chosen.append((choice.model, choice.mode, choice.latest, Int64(requests[index].rateLimitTokens)))
            if check.violations(chosen).isEmpty {
                let write = choice.key.map { written[$0, default: 0] == 0 ? choice.write : 0 } ?? 0
                if let key = choice.key { written[key, default: 0] += 1 }
                search(index + 1, placed: placed + 1, cost: cost + choice.cost + write)
                if let key = choice.key { written[key]! -= 1 }
            }
            chosen.removeLast()
        }
        search(index + 1, placed: placed, cost: cost)
    }
    search(0, placed: 0, cost: 0)
    return best
}

/// Three models with room for one to three requests a minute, some caching explicitly or automatically (or not at all,
/// or with a minimum some prefixes miss), one sometimes half price over the first two minutes; four to seven requests
/// in one or two prefix groups, deadlines one to three minutes away.
private func smallGroupedInstance(seed: UInt64) -> (catalog: PricingCatalog, requests: [PlannableRequest], now: Int64) {
    var random = SplitMix64(seed: seed)
    let now: Int64 = 1_795_478_400_000
    let window = DiscountWindow(weekdays: Set(1...7), startMinute: 0, endMinute: 2, timeZoneIdentifier: "UTC", multiplierBasisPoints: 5_000)
    let models = (0..<3).map { index -> Model in
        let input = Int64(500_000 + random.below(3_000_000)), output = Int64(1_000_000 + random.below(10_000_000))
        let rpm = 1 + random.below(3), tpm = 5_000 + random.below(25_000), quality = 40 + random.below(30)
        let windows = index == 0 && random.below(2) == 0 ? [window] : []
        switch random.below(4) {
        case 0:
            return Fixtures.model(
                "m\(index)", input: input, output: output, quality: quality, requestsPerMinute: rpm, tokensPerMinute: tpm, ttft: 10,
                tokensPerSecond: 100_000, windows: windows)
        case 1:
            return cachingModel(
                "m\(index)", mode: .automatic, minimum: 1_024, step: 128, input: input, output: output, quality: quality,
                requestsPerMinute: rpm, tokensPerMinute: tpm, windows: windows)
        default:
            return cachingModel(
                "m\(index)", minimum: random.below(2) == 0 ? 1_024 : 2_048, input: input, output: output, quality: quality,
                requestsPerMinute: rpm, tokensPerMinute: tpm, windows: windows)
        }
    }
    let prefixes = [1_000 + random.below(3_000), 1_000 + random.below(3_000)]
    let requests = (0..<(4 + random.below(4))).map { index in
        let group = random.below(3) == 0 ? 1 : 0
        let request = Fixtures.request(
            Int64(index), floor: random.below(2) == 0 ? 40 : 55, input: prefixes[group] + 50 + random.below(1_000), output: 10 + random.below(500),
            deadlineAt: now + Int64(60_000 * (1 + random.below(3)) + 1_000))
        return grouped(request, "g\(group)", prefix: prefixes[group])
    }
    return (Fixtures.catalog(models), requests, now)
}

@Test func plannerMatchesTheExhaustiveOptimumWithPrefixGroups() {
    var cachedSomewhere = 0
    for seed in UInt64(1)...60 {
        let (catalog, requests, now) = smallGroupedInstance(seed: seed)
        let plan = Planner(context: context(catalog, now: now)).plan(requests)
        let exact = exhaustiveOptimumWithGroups(requests, catalog: catalog, now: now)
        #expect(LimitCheck(catalog: catalog, now: now).violations(plan, requests).isEmpty, "seed \(seed)")
        #expect(plan.count - plan.unplaced == exact.placed, "seed \(seed): placed fewer than possible")
        #expect(plan.estimatedCost.picoUSD == exact.cost, "seed \(seed): \(plan.estimatedCost.picoUSD) vs optimum \(exact.cost)")
        #expect(plan.lowerBound.picoUSD <= exact.cost, "seed \(seed): the bound \(plan.lowerBound.picoUSD) passes the optimum \(exact.cost)")
        if plan.cacheSaving > .zero { cachedSomewhere += 1 }
    }
    #expect(cachedSomewhere >= 20, "caching priced in \(cachedSomewhere) of 60 instances")
}

@Test func theBoundWithPrefixGroupsNeverPassesTheOptimumWhenTheProgramAlonePlans() {
    for seed in UInt64(101)...140 {
        let (catalog, requests, now) = smallGroupedInstance(seed: seed)
        let problem = PlanningProblem(requests: requests, context: context(catalog, now: now))
        var solver = PlanSolver(problem: problem)
        solver.searchSmallPlansExhaustively = false
        let outcome = solver.solve()
        let exact = exhaustiveOptimumWithGroups(requests, catalog: catalog, now: now)
        if requests.count - outcome.unplaced == exact.placed {
            #expect(outcome.lowerBound <= exact.cost, "seed \(seed): bound \(outcome.lowerBound) vs optimum \(exact.cost)")
            #expect(outcome.costOfRequest.reduce(0, +) >= exact.cost, "seed \(seed): a plan cheaper than the optimum")
        }
    }
}

// MARK: - At scale

/// Thousands of requests with six deadlines, four models bound by requests/min or tokens/min (two of them caching), one
/// half price at night, a dear one with room for everything; the requests in `groups` prefix groups of 1,100–4,000 tokens.
private func capacityBoundCachingInstance(requests count: Int, seed: UInt64, groups: Int) -> (catalog: PricingCatalog, requests: [PlannableRequest], now: Int64) {
    var random = SplitMix64(seed: seed)
    let now: Int64 = 1_795_478_400_000 + 3_600_000  // 01:00 UTC
    let night = DiscountWindow(weekdays: Set(1...7), startMinute: 120, endMinute: 360, timeZoneIdentifier: "UTC", multiplierBasisPoints: 5_000)
    let models = [
        Fixtures.model("cheap", input: 500_000, output: 2_000_000, quality: 45, requestsPerMinute: 6, tokensPerMinute: 2_000_000, ttft: 300, tokensPerSecond: 200),
        cachingModel("cached-tokens", mode: .automatic, minimum: 1_024, step: 128, input: 800_000, output: 3_000_000, requestsPerMinute: 1_000, tokensPerMinute: 60_000),
        cachingModel("night", input: 900_000, output: 3_600_000, quality: 55, requestsPerMinute: 10, tokensPerMinute: 100_000, windows: [night]),
        Fixtures.model("mid", input: 4_000_000, output: 16_000_000, quality: 55, requestsPerMinute: 10, tokensPerMinute: 100_000, ttft: 400, tokensPerSecond: 120),
        Fixtures.model("dear", input: 25_000_000, output: 100_000_000, quality: 70, requestsPerMinute: 100_000, tokensPerMinute: 1_000_000_000, ttft: 300, tokensPerSecond: 300),
    ]
    let deadlines: [Int64] = [600_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 86_400_000]
    let prefixes = (0..<max(groups, 1)).map { _ in 1_100 + random.below(2_900) }
    let requests = (0..<count).map { index in
        let group = groups > 0 ? random.below(groups) : -1
        let own = Int(exp(Double(random.below(1_000)) / 1_000 * log(1_000.0))) + 20
        let request = Fixtures.request(
            Int64(index), floor: [0, 45, 50][random.below(3)], input: own + (group >= 0 ? prefixes[group] : 0), output: [20, 100, 400][random.below(3)],
            deadlineAt: now + deadlines[random.below(deadlines.count)])
        return group >= 0 ? grouped(request, "g\(group)", prefix: prefixes[group]) : request
    }
    return (Fixtures.catalog(models), requests, now)
}

@Test func atScaleWithPrefixGroupsTheGapIsWithinOnePercentAndNoLimitIsPassed() {
    for (count, seed, groups) in [(1_000, UInt64(7), 4), (4_000, UInt64(8), 12)] {
        let (catalog, requests, now) = capacityBoundCachingInstance(requests: count, seed: seed, groups: groups)
        let plan = Planner(context: context(catalog, now: now)).plan(requests)
        #expect(plan.unplaced == 0)
        #expect(LimitCheck(catalog: catalog, now: now).violations(plan, requests).isEmpty)
        let gap = plan.gapBasisPoints
        #expect(gap != nil && gap! <= 100, "\(count) requests: gap \(gap.map(String.init) ?? "unknown") basis points")
        #expect(plan.lowerBound <= plan.estimatedCost)
        #expect(plan.cacheSaving > .zero && plan.solver.requestRows + plan.solver.tokenRows > 0)
    }
}



