import Foundation
import Testing
@testable import PurserCore
@testable import PurserSQLite

private func planner(_ models: [Model], now: Int64 = 0, usable: Set<String>? = nil) -> Planner {
    let catalog = Fixtures.catalog(models)
    return Planner(context: PlanningContext(catalog: catalog, now: now, usableProviders: usable ?? Set(catalog.providers.keys)))
}

@Test func picksTheCheapestModelMeetingTheFloor() {
    let plan = planner([
        Fixtures.model("cheap-weak", input: 100_000, output: 400_000, quality: 20),
        Fixtures.model("mid", input: 300_000, output: 1_200_000, quality: 50),
        Fixtures.model("dear", input: 3_000_000, output: 15_000_000, quality: 70),
    ]).plan([Fixtures.request(1, floor: 40), Fixtures.request(2, floor: 60), Fixtures.request(3, floor: 10)])
    #expect(plan.entries.map(\.model) == ["p/mid", "p/dear", "p/cheap-weak"])
    // 1000 input + 500 output tokens at the chosen prices.
    let expected: [Int64] = [900_000_000, 10_500_000_000, 300_000_000]
    #expect(plan.entries.map(\.estimatedCost.picoUSD) == expected)
    #expect(plan.isOptimal)
    #expect(plan.lowerBound == plan.estimatedCost)
}

@Test func tiesGoToHigherQualityThenFasterThenName() {
    let same = (input: Int64(200_000), output: Int64(800_000))
    let models = [
        Fixtures.model("b-slow", input: same.input, output: same.output, quality: 50, tokensPerSecond: 50),
        Fixtures.model("a-slow", input: same.input, output: same.output, quality: 50, tokensPerSecond: 50),
        Fixtures.model("c-fast", input: same.input, output: same.output, quality: 50, tokensPerSecond: 200),
        Fixtures.model("d-better", input: same.input, output: same.output, quality: 60, tokensPerSecond: 10),
    ]
    #expect(planner(models).plan([Fixtures.request(1)]).entries[0].model == "p/d-better")
    #expect(planner(Array(models.prefix(3))).plan([Fixtures.request(1)]).entries[0].model == "p/c-fast")
    #expect(planner(Array(models.prefix(2))).plan([Fixtures.request(1)]).entries[0].model == "p/a-slow")
}

@Test func overflowMovesWhereMovingCostsLeast() {
    // "cheap" takes 2 requests per minute and the deadline is one minute away: one of three must move.
    // Moving the short request to "backup" costs least, so that one moves.
    let models = [
        Fixtures.model("cheap", input: 100_000, output: 100_000, quality: 50, requestsPerMinute: 2, ttft: 10, tokensPerSecond: 100_000),
        Fixtures.model("backup", input: 1_000_000, output: 1_000_000, quality: 50, requestsPerMinute: 100, ttft: 10, tokensPerSecond: 100_000),
    ]
    let requests = [
        Fixtures.request(1, input: 5_000, output: 100, deadlineAt: 61_000),
        Fixtures.request(2, input: 100, output: 10, deadlineAt: 61_000),
        Fixtures.request(3, input: 8_000, output: 100, deadlineAt: 61_000),
    ]
    let plan = planner(models).plan(requests)
    #expect(plan.entries.map(\.model) == ["p/cheap", "p/backup", "p/cheap"])
    #expect(plan.unplaced == 0)
    #expect(plan.isOptimal)
}

@Test func requestsWithNoRoomBeforeTheirDeadlineStayUnplaced() {
    let models = [Fixtures.model("only", input: 100_000, output: 100_000, quality: 50, requestsPerMinute: 1, ttft: 10, tokensPerSecond: 100_000)]
    let plan = planner(models).plan([Fixtures.request(1, deadlineAt: 61_000), Fixtures.request(2, deadlineAt: 61_000)])
    #expect(plan.entries.compactMap(\.model) == ["p/only"])
    #expect(plan.unplaced == 1)
}

@Test func rateLimitsTooLargeToMultiplyCountAsUnlimited() {
    // A week of a model allowing Int.max / 1000 requests per minute overflows Int64 when multiplied out.
    var model = Fixtures.model("vast", input: 100_000, output: 100_000, quality: 50, requestsPerMinute: Int.max / 1_000)
    model.rateLimits.tokensPerMinute = Int.max / 1_000
    let plan = planner([model]).plan([Fixtures.request(1, deadlineAt: 7 * 86_400_000), Fixtures.request(2, deadlineAt: 7 * 86_400_000)])
    #expect(plan.entries.compactMap(\.model) == ["p/vast", "p/vast"])
    #expect(plan.unplaced == 0)
}

@Test func aModelTooSlowForTheDeadlineIsExcluded() {
    // 500 output tokens at 10 tokens/s take 50 s: too slow for a 30 s deadline.
    let slowCheap = Fixtures.model("slow-cheap", input: 10_000, output: 10_000, quality: 50, ttft: 1_000, tokensPerSecond: 10)
    let fastDear = Fixtures.model("fast-dear", input: 500_000, output: 500_000, quality: 50, ttft: 100, tokensPerSecond: 1_000)
    let planner = planner([slowCheap, fastDear])
    let requests = [Fixtures.request(1, deadlineAt: 30_000), Fixtures.request(2, deadlineAt: 3_600_000)]
    let plan = planner.plan(requests)
    #expect(plan.entries.map(\.model) == ["p/fast-dear", "p/slow-cheap"])
    let explanation = planner.explain(requests, index: 0, plan: plan)
    let excluded = explanation.candidates.first { $0.model == "p/slow-cheap" }?.exclusion
    #expect(excluded == .deadline(neededMilliseconds: 51_000, leftMilliseconds: 30_000))
    #expect(excluded?.description == "cannot finish in time (needs 51s, 30s left)")
}

@Test func aCallPlannedInAStretchOfTimeMustFinishByTheDeadline() {
    // One request per minute, calls of 30 s, deadline 90 s: only a call starting in the first minute ends by
    // 90 s, so one request fits, not the two a minute and a half of rate would allow.
    let model = Fixtures.model("half-minute", input: 100_000, output: 100_000, quality: 50, requestsPerMinute: 2, ttft: 30_000, tokensPerSecond: 1_000_000)
    let plan = planner([model]).plan([Fixtures.request(1, deadlineAt: 90_000), Fixtures.request(2, deadlineAt: 90_000), Fixtures.request(3, deadlineAt: 90_000)])
    #expect(plan.count - plan.unplaced == 2, "two starts fit in the first 60 s at 2 per minute")
    for entry in plan.entries where entry.model != nil { #expect(entry.latestStart! <= 60_000) }
}

@Test func providersWithoutKeysAreNotUsedUnlessSimulating() {
    let models = [
        Fixtures.model("keyless", provider: "nokey", input: 1, output: 1, quality: 50),
        Fixtures.model("keyed", provider: "keyed", input: 500_000, output: 500_000, quality: 50),
    ]
    let catalog = Fixtures.catalog(models)
    let usable = PlanningContext.usableProviders(catalog: catalog, environment: ["KEYED_KEY": "secret"], simulate: false)
    #expect(usable == ["keyed"])
    #expect(PlanningContext.usableProviders(catalog: catalog, environment: [:], simulate: true) == ["keyed", "nokey"])
    let plan = Planner(context: PlanningContext(catalog: catalog, now: 0, usableProviders: usable)).plan([Fixtures.request(1)])
    #expect(plan.entries[0].model == "keyed/keyed")
}

@Test func discountWindowIsUsedWhenTheDeadlineLeavesRoom() {
    // Half price every day from 02:00 to 06:00 UTC; now is midnight.
    let window = DiscountWindow(weekdays: Set(1...7), startMinute: 120, endMinute: 360, timeZoneIdentifier: "UTC", multiplierBasisPoints: 5_000)
    let discounted = Fixtures.model("night", input: 400_000, output: 400_000, quality: 50, windows: [window])
    let steady = Fixtures.model("steady", input: 300_000, output: 300_000, quality: 50)
    let midnight: Int64 = 1_795_478_400_000  // 2026-11-24T00:00:00Z
    let planner = planner([discounted, steady], now: midnight)
    let plan = planner.plan([Fixtures.request(1, deadlineAt: midnight + 3_600_000), Fixtures.request(2, deadlineAt: midnight + 8 * 3_600_000)])
    #expect(plan.entries[0].model == "p/steady")
    #expect(plan.entries[1].model == "p/night")
    #expect(plan.entries[1].mode == .offpeak)
    #expect(plan.entries[1].startAt == midnight + 2 * 3_600_000)
    #expect(plan.entries[1].estimatedCost.picoUSD == 1_500 * 200_000)
}

@Test func flexIsUsedOnlyWithTimeToSpare() {
    let flex = TokenPrices(input: TokenPrice(microUSDPerMillion: 50_000), output: TokenPrice(microUSDPerMillion: 50_000), cachedInput: TokenPrice(microUSDPerMillion: 5_000))
    let model = Fixtures.model("flexible", input: 100_000, output: 100_000, quality: 50, flex: flex)
    let plan = planner([model]).plan([Fixtures.request(1, deadlineAt: 600_000), Fixtures.request(2, deadlineAt: 7_200_000)])
    #expect(plan.entries.map(\.mode) == [.sync, .flex])
}

@Test func pinnedRequestsUseExactlyTheirModel() {
    let models = [Fixtures.model("cheap", input: 1, output: 1, quality: 90), Fixtures.model("pinned", input: 900_000, output: 900_000, quality: 10)]
    let plan = planner(models).plan([Fixtures.request(1, reference: "p/pinned", pinned: "p/pinned")])
    #expect(plan.entries[0].model == "p/pinned")
}

@Test func baselineIsTheReferenceModelAtListPrice() {
    let models = [Fixtures.model("cheap", input: 100_000, output: 100_000, quality: 60), Fixtures.model("reference", input: 2_000_000, output: 8_000_000, quality: 50)]
    let plan = planner(models).plan([Fixtures.request(1, floor: 50, reference: "p/reference")])
    #expect(plan.baselineCost.picoUSD == 6_000_000_000)  // 1000 × 2 000 000 + 500 × 8 000 000
    #expect(plan.estimatedCost.picoUSD == 150_000_000)  // 1500 × 100 000
    #expect(plan.saving == plan.baselineCost - plan.estimatedCost)
    #expect(plan.savingBasisPoints == 9_750)
    #expect(plan.baseline.isFeasible)
}

@Test func aBaselineTheReferenceModelCannotServeInTimeIsSaidToBeInfeasible() {
    // Every request names "reference", which takes one request a minute; ten are due in a minute.
    let models = [
        Fixtures.model("reference", input: 100_000, output: 100_000, quality: 50, requestsPerMinute: 1, ttft: 10, tokensPerSecond: 100_000),
        Fixtures.model("roomy", input: 400_000, output: 400_000, quality: 50, requestsPerMinute: 100, ttft: 10, tokensPerSecond: 100_000),
    ]
    let requests = (1...10).map { Fixtures.request(Int64($0), floor: 50, deadlineAt: 61_000, reference: "p/reference") }
    let plan = planner(models).plan(requests)
    #expect(plan.unplaced == 0)
    #expect(plan.estimatedCost > plan.baselineCost, "the plan is dearer than an impossible baseline")
    #expect(!plan.baseline.isFeasible)
    #expect(plan.baseline.requestsOver == 9)
}

// MARK: - An independent check of the limits

/// The capacity model checked again from its definition, without the planner's code: every placed request
/// starts by a latest start that leaves its modelled call time before the deadline, and for every model and
/// kind of time (list-price time, discount-window time), at each latest start, the requests due by then fit
/// what requests/min and tokens/min allow from now to then, each request counted with its own tokens.
struct LimitCheck {
    let catalog: PricingCatalog
    let now: Int64

    func windowTime(_ model: Model, until moment: Int64) -> Int64 {
        let intervals = model.discountWindows.flatMap { $0.intervals(from: now, to: moment) }.sorted { $0.lowerBound < $1.lowerBound }
        var total: Int64 = 0, reached = now
        for interval in intervals where interval.upperBound > reached {
            total += interval.upperBound - max(interval.lowerBound, reached)
            reached = interval.upperBound
        }
        return total
    }

    func allows(_ perMinute: Int, _ milliseconds: Int64) -> Int64 {
        Int64(min(Int128(perMinute) * Int128(max(milliseconds, 0)) / 60_000, Int128(Int64.max / 4)))
    }

    /// Problems found, empty when the demand fits. `demand` lists (model id, mode, latest start, tokens).
    func violations(_ demand: [(model: String, mode: DispatchMode, latestStart: Int64, tokens: Int64)]) -> [String] {
        var problems: [String] = []
        let grouped = Dictionary(grouping: demand) { "\($0.model)|\($0.mode == .offpeak ? "window" : $0.mode == .batch ? "batch" : "list")" }
        for (key, items) in grouped where !key.hasSuffix("batch") {
            let model = catalog.model(id: String(key.split(separator: "|")[0]))!
            var requests: Int64 = 0, tokens: Int64 = 0
            for item in items.sorted(by: { $0.latestStart < $1.latestStart }) {
                requests += 1
                tokens += item.tokens
                let window = windowTime(model, until: item.latestStart)
                let time = key.hasSuffix("window") ? window : (item.latestStart - now) - window
                if requests > allows(model.rateLimits.requestsPerMinute, time) || tokens > allows(model.rateLimits.tokensPerMinute, time) {
                    problems.append("\(key): \(requests) requests and \(tokens) tokens due by \(item.latestStart - now) ms after now, in \(time) ms of time")
                }
            }
        }
        return problems
    }

    func violations(_ plan: Plan, _ requests: [PlannableRequest], held: [HeldCapacity] = []) -> [String] {
        var problems: [String] = []
        var demand: [(model: String, mode: DispatchMode, latestStart: Int64, tokens: Int64)] = []
        for (index, entry) in plan.entries.enumerated() {
            guard let modelID = entry.model, let mode = entry.mode, let latest = entry.latestStart else { continue }
            let model = catalog.model(id: modelID)!
            let request = requests[index]
            let callEnds = latest + model.speed.callDuration(outputTokens: request.needs.maxOutputTokens)
            if mode != .batch && callEnds > request.deadlineAt { problems.append("request \(request.id) may end at \(callEnds), after its deadline \(request.deadlineAt)") }
            if latest <= now { problems.append("request \(request.id) must start before now") }
            demand.append((modelID, mode, latest, Int64(request.rateLimitTokens)))
        }
        for group in held {
            for _ in 0..<group.requests { demand.append((group.model, group.mode, group.latestStart, group.tokens / Int64(group.requests))) }
        }
        return problems + violations(demand)
    }
}

// MARK: - Optimality against exhaustive search

/// The latest-start grid that is part of the problem's definition: rounded down to 1/256 of the time left, at least a second.
private func snapped(_ latest: Int64, now: Int64) -> Int64 {
    let left = latest - now
    guard left > 1_000 else { return latest }
    var quantum: Int64 = 1_000
    while quantum < left / 256 { quantum <<= 1 }
    return now + left / quantum * quantum
}

/// The exact optimum by trying every assignment, checked with `LimitCheck`: most requests placed first, then least cost.
private func exhaustiveOptimum(_ requests: [PlannableRequest], catalog: PricingCatalog, now: Int64) -> (placed: Int, cost: Int64) {
    let check = LimitCheck(catalog: catalog, now: now)
    let options: [[(model: String, mode: DispatchMode, latest: Int64, cost: Int64)]] = requests.map { request in
        catalog.models.flatMap { model -> [(model: String, mode: DispatchMode, latest: Int64, cost: Int64)] in
            guard model.quality >= request.needs.qualityFloor else { return [] }
            let output = request.needs.maxOutputTokens, input = request.needs.inputTokens
            let latest = request.deadlineAt - model.speed.callDuration(outputTokens: output)
            guard latest > now else { return [] }
            var list = model.prices.cost(inputTokens: input, outputTokens: output).picoUSD
            if let flex = model.flexPrices, request.deadlineAt - now >= 3_600_000 { list = min(list, flex.cost(inputTokens: input, outputTokens: output).picoUSD) }
            var result = [(model.id, DispatchMode.sync, snapped(latest, now: now), list)]
            for multiplier in Set(model.discountWindows.map(\.multiplierBasisPoints)) {
                result.append((model.id, .offpeak, snapped(latest, now: now), model.prices.scaled(basisPoints: multiplier).cost(inputTokens: input, outputTokens: output).picoUSD))
            }
            return result
        }
    }
    var best = (placed: -1, cost: Int64.max)
    var chosen: [(model: String, mode: DispatchMode, latestStart: Int64, tokens: Int64)] = []
    func search(_ index: Int, placed: Int, cost: Int64) {
        if index == requests.count {
            if (placed, -cost) > (best.placed, -best.cost), check.violations(chosen).isEmpty { best = (placed, cost) }
            return
        }
        for option in options[index] {
            chosen.append((option.model, option.mode, option.latest, Int64(requests[index].rateLimitTokens)))
            if check.violations(chosen).isEmpty { search(index + 1, placed: placed + 1, cost: cost + option.cost) }
            chosen.removeLast()
        }
        search(index + 1, placed: placed, cost: cost)
    }
    search(0, placed: 0, cost: 0)
    return best
}

/// A small instance where both limits bind: three models with room for one to three requests a minute and a
/// few thousand tokens, requests of very different sizes, deadlines one to three minutes away, and sometimes a
/// model with a half-price window over the first two minutes.
private func smallInstance(seed: UInt64) -> (catalog: PricingCatalog, requests: [PlannableRequest], now: Int64) {
    var random = SplitMix64(seed: seed)
    let now: Int64 = 1_795_478_400_000  // midnight UTC
    let window = DiscountWindow(weekdays: Set(1...7), startMinute: 0, endMinute: 2, timeZoneIdentifier: "UTC", multiplierBasisPoints: 5_000)
    let models = (0..<3).map { index in
        Fixtures.model(
            "m\(index)", input: Int64(50_000 + random.below(500_000)), output: Int64(100_000 + random.below(2_000_000)),
            quality: 40 + random.below(30), requestsPerMinute: 1 + random.below(3), tokensPerMinute: 2_000 + random.below(8_000), ttft: 10,
            tokensPerSecond: 100_000, windows: index == 0 && random.below(2) == 0 ? [window] : [])
    }
    let requests = (0..<(4 + random.below(3))).map { index in
        Fixtures.request(
            Int64(index), floor: random.below(2) == 0 ? 40 : 55, input: 100 + random.below(4_000), output: 10 + random.below(1_000),
            deadlineAt: now + Int64(60_000 * (1 + random.below(3)) + 1_000))
    }
    return (Fixtures.catalog(models), requests, now)
}

@Test func plannerMatchesTheExhaustiveOptimumWhereBothLimitsAndSeveralDeadlinesBind() {
    var tokenBound = 0
    for seed in UInt64(1)...80 {
        let (catalog, requests, now) = smallInstance(seed: seed)
        let context = PlanningContext(catalog: catalog, now: now, usableProviders: Set(catalog.providers.keys))
        let plan = Planner(context: context).plan(requests)
        let exact = exhaustiveOptimum(requests, catalog: catalog, now: now)
        #expect(LimitCheck(catalog: catalog, now: now).violations(plan, requests).isEmpty, "seed \(seed)")
        #expect(plan.count - plan.unplaced == exact.placed, "seed \(seed): placed fewer than possible")
        #expect(plan.estimatedCost.picoUSD * 100 <= exact.cost * 101, "seed \(seed): \(plan.estimatedCost.picoUSD) vs optimum \(exact.cost)")
        #expect(plan.lowerBound.picoUSD <= exact.cost, "seed \(seed): the lower bound \(plan.lowerBound.picoUSD) passes the optimum \(exact.cost)")
        // Would the requests have fitted if each model's tokens/min were unlimited? If not, tokens bound here.
        var roomy = catalog
        for index in roomy.models.indices { roomy.models[index].rateLimits.tokensPerMinute = 1_000_000_000 }
        if exhaustiveOptimum(requests, catalog: roomy, now: now) != exact { tokenBound += 1 }
    }
    #expect(tokenBound >= 20, "tokens/min bound in \(tokenBound) of 80 instances")
}

@Test func theLowerBoundNeverPassesTheOptimumWhenTheProgramAlonePlans() {
    // The same instances, planned without the exhaustive search, check the linear program's bound and rounding.
    for seed in UInt64(101)...140 {
        let (catalog, requests, now) = smallInstance(seed: seed)
        let context = PlanningContext(catalog: catalog, now: now, usableProviders: Set(catalog.providers.keys))
        let problem = PlanningProblem(requests: requests, context: context)
        var solver = PlanSolver(problem: problem)
        solver.searchSmallPlansExhaustively = false
        let outcome = solver.solve()
        let exact = exhaustiveOptimum(requests, catalog: catalog, now: now)
        if requests.count - outcome.unplaced == exact.placed {
            #expect(outcome.lowerBound <= exact.cost, "seed \(seed): bound \(outcome.lowerBound) vs optimum \(exact.cost)")
        }
    }
}

// MARK: - At scale

/// Thousands of requests with six deadlines from 10 minutes to a day, four models bound by requests/min or
/// tokens/min, one of them half price at night, and a dear model with room for everything.
private func capacityBoundInstance(requests count: Int, seed: UInt64) -> (catalog: PricingCatalog, requests: [PlannableRequest], now: Int64) {
    var random = SplitMix64(seed: seed)
    let now: Int64 = 1_795_478_400_000 + 3_600_000  // 01:00 UTC
    let night = DiscountWindow(weekdays: Set(1...7), startMinute: 120, endMinute: 360, timeZoneIdentifier: "UTC", multiplierBasisPoints: 5_000)
    let models = [
        Fixtures.model("cheap-small", input: 50_000, output: 200_000, quality: 45, requestsPerMinute: 6, tokensPerMinute: 200_000, ttft: 300, tokensPerSecond: 200),
        Fixtures.model("cheap-tokens", input: 80_000, output: 300_000, quality: 50, requestsPerMinute: 1_000, tokensPerMinute: 4_000, ttft: 500, tokensPerSecond: 150),
        Fixtures.model("night", input: 90_000, output: 360_000, quality: 55, requestsPerMinute: 10, tokensPerMinute: 10_000, ttft: 800, tokensPerSecond: 100, windows: [night]),
        Fixtures.model("mid", input: 400_000, output: 1_600_000, quality: 55, requestsPerMinute: 10, tokensPerMinute: 10_000, ttft: 400, tokensPerSecond: 120),
        Fixtures.model("dear", input: 2_500_000, output: 10_000_000, quality: 70, requestsPerMinute: 100_000, tokensPerMinute: 1_000_000_000, ttft: 300, tokensPerSecond: 300),
    ]
    let deadlines: [Int64] = [600_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 86_400_000]
    let requests = (0..<count).map { index in
        let input = Int(exp(Double(random.below(1_000)) / 1_000 * log(3_000.0))) + 20
        return Fixtures.request(
            Int64(index), floor: [0, 45, 50][random.below(3)], input: input, output: [20, 100, 400][random.below(3)],
            deadlineAt: now + deadlines[random.below(deadlines.count)])
    }
    return (Fixtures.catalog(models), requests, now)
}

@Test func atScaleThePrintedGapIsWithinOnePercentAndNoLimitIsPassed() {
    for (count, seed) in [(1_000, UInt64(7)), (4_000, UInt64(8))] {
        let (catalog, requests, now) = capacityBoundInstance(requests: count, seed: seed)
        let context = PlanningContext(catalog: catalog, now: now, usableProviders: Set(catalog.providers.keys))
        let plan = Planner(context: context).plan(requests)
        #expect(plan.unplaced == 0)
        #expect(LimitCheck(catalog: catalog, now: now).violations(plan, requests).isEmpty)
        let gap = plan.gapBasisPoints
        #expect(gap != nil && gap! <= 100, "\(count) requests: gap \(gap.map(String.init) ?? "unknown") basis points")
        // Capacity really binds, in requests and in tokens; at 4,000 the dear model takes the overflow of the
        // early deadlines and the night window the late ones.
        #expect(plan.solver.requestRows > 0 && plan.solver.tokenRows > 0)
        if count == 4_000 { #expect(plan.mix.contains { $0.model == "p/dear" } && plan.mix.contains { $0.mode == .offpeak }) }
    }
}

@Test func tokensPerMinuteCountsEachRequestsOwnTokensNotTheAverage() {
    // "cheap" allows 10,000 tokens a minute. Ten small requests (100 tokens) and ten large ones (1,900 tokens)
    // average 1,000 tokens, so a count made from the average would admit ten of any kind, and ten large ones
    // would pass the limit nearly twice. Counted with their own sizes, the cheapest plan fills the 10,000 tokens
    // exactly (five large and five small: each token saves the same) and sends the other 10,000 to "dear".
    let models = [
        Fixtures.model("cheap", input: 100_000, output: 100_000, quality: 50, requestsPerMinute: 100, tokensPerMinute: 10_000, ttft: 10, tokensPerSecond: 100_000),
        Fixtures.model("dear", input: 1_000_000, output: 1_000_000, quality: 50, requestsPerMinute: 100, tokensPerMinute: 1_000_000, ttft: 10, tokensPerSecond: 100_000),
    ]
    // The calls take 10 ms, so the latest start is 60 s exactly, on the planner's grid: the rounded problem is the real one
    // and the plan can be proven optimal. (With a deadline of 61 s the real limit allows 10,165 tokens by the latest start,
    // one more small request fits, and the bound rightly stops calling the plan optimal.)
    let requests = (0..<20).map { index in Fixtures.request(Int64(index), input: index < 10 ? 90 : 1_890, output: 10, deadlineAt: 60_010) }
    let catalog = Fixtures.catalog(models)
    let plan = Planner(context: PlanningContext(catalog: catalog, now: 0, usableProviders: Set(catalog.providers.keys))).plan(requests)
    #expect(LimitCheck(catalog: catalog, now: 0).violations(plan, requests).isEmpty)
    let onCheap = plan.entries.enumerated().filter { $0.element.model == "p/cheap" }.map { requests[$0.offset].rateLimitTokens }
    #expect(onCheap.reduce(0, +) == 10_000)
    #expect(plan.estimatedCost.picoUSD == 10_000 * 100_000 + 10_000 * 1_000_000)
    #expect(plan.isOptimal)
}

@Test func aSecondPlanCountsOnlyOnWhatTheFirstLeftFree() {
    // Job 1 fills "cheap" for the next minute; job 2, planned after it, must not count on the same minute.
    let models = [
        Fixtures.model("cheap", input: 100_000, output: 100_000, quality: 50, requestsPerMinute: 5, ttft: 10, tokensPerSecond: 100_000),
        Fixtures.model("dear", input: 1_000_000, output: 1_000_000, quality: 50, requestsPerMinute: 1_000, ttft: 10, tokensPerSecond: 100_000),
    ]
    let catalog = Fixtures.catalog(models)
    let planner = Planner(context: PlanningContext(catalog: catalog, now: 0, usableProviders: Set(catalog.providers.keys)))
    let first = (0..<5).map { Fixtures.request(Int64($0), deadlineAt: 61_000) }
    let firstPlan = planner.plan(first)
    #expect(firstPlan.entries.allSatisfy { $0.model == "p/cheap" })
    let held = [HeldCapacity(
        job: 1, model: "p/cheap", mode: .sync, latestStart: firstPlan.entries[0].latestStart!, requests: 5, tokens: 5 * 1_500, largestRequestTokens: 1_500)]
    let second = (5..<8).map { Fixtures.request(Int64($0), deadlineAt: 61_000) }
    let secondPlan = planner.plan(second, held: held)
    #expect(secondPlan.entries.allSatisfy { $0.model == "p/dear" })
    #expect(LimitCheck(catalog: catalog, now: 0).violations(secondPlan, second, held: held).isEmpty)
    // Without the first plan's hold, the second would have taken the cheap minute.
    #expect(planner.plan(second).entries.allSatisfy { $0.model == "p/cheap" })
}

// MARK: - Plans across jobs, in the database

@Test func twoJobsInOneDatabaseNeverCountOnTheSameMinuteOfAModel() throws {
    // "cheap" takes five requests a minute; each job has five requests due in a minute.
    let models = [
        Fixtures.model("cheap", input: 100_000, output: 100_000, quality: 50, requestsPerMinute: 5, ttft: 10, tokensPerSecond: 100_000),
        Fixtures.model("dear", input: 1_000_000, output: 1_000_000, quality: 50, requestsPerMinute: 1_000, ttft: 10, tokensPerSecond: 100_000),
    ]
    let catalog = Fixtures.catalog(models)
    let directory = Fixtures.temporaryDirectory()
    let database = try PurserDatabase.open(path: directory.appendingPathComponent("purser.db").path)
    let now: Int64 = 1_795_478_400_000
    for name in ["first", "second"] {
        let lines = (1...5).map { #"{"custom_id": "\#(name)-\#($0)", "prompt": "Name a river.", "max_tokens": 10, "quality": 50, "deadline": "61s"}"# }
        let file = Fixtures.write(lines.joined(separator: "\n") + "\n", to: "\(name).jsonl", in: directory)
        let submitted = try JobSubmitter(database: database, catalog: catalog, clock: .fixed(now)).submit(files: [file], options: SubmitOptions())
        #expect(submitted[0].job.requestCount == 5 && !submitted[0].alreadySubmitted)
    }
    let planning = JobPlanning(database: database)
    func plan(_ job: Int64, at moment: Int64) throws -> PlanningOutcome {
        try planning.plan(PlanningRequest(jobs: [job], catalog: catalog, usableProviders: ["p"], now: moment))
    }
    let first = try plan(1, at: now)
    #expect(first.plan.entries.allSatisfy { $0.model == "p/cheap" })
    let second = try plan(2, at: now)
    #expect(second.jobs == [2] && second.plan.count == 5)
    #expect(second.plan.entries.allSatisfy { $0.model == "p/dear" }, "the first job's plan holds the cheap minute")
    let held = try PlanStore(database: database).heldCapacity(excludingJobs: [2])
    #expect(held.map(\.requests).reduce(0, +) == 5)
    #expect(LimitCheck(catalog: catalog, now: now).violations(second.plan, second.requests, held: held).isEmpty)
    // Thirty seconds later the first job's five calls no longer fit in what is left of its minute: planning the
    // second job then plans the first again with it, instead of counting on room that is gone.
    let later = try plan(2, at: now + 30_000)
    #expect(later.jobs == [1, 2])
    #expect(later.plan.count == 10)
    #expect(LimitCheck(catalog: catalog, now: now + 30_000).violations(later.plan, later.requests).isEmpty)
    #expect(later.plan.entries.filter { $0.model == "p/cheap" }.count <= 2, "half a minute of five a minute")
    #expect(try database.scalarInt("SELECT count(*) FROM request_plans WHERE queue = 1") == 10)
}

@Test func planningAgainKeepsTheWaitsThatStayAndEndsTheOthers() throws {
    // Half price every day from 02:00 to 06:00 UTC on "night"; now is midnight.
    let window = DiscountWindow(weekdays: Set(1...7), startMinute: 120, endMinute: 360, timeZoneIdentifier: "UTC", multiplierBasisPoints: 5_000)
    let night = Fixtures.model("night", input: 400_000, output: 400_000, quality: 50, windows: [window])
    let steady = Fixtures.model("steady", input: 300_000, output: 300_000, quality: 50)
    let directory = Fixtures.temporaryDirectory()
    let database = try PurserDatabase.open(path: directory.appendingPathComponent("purser.db").path)
    let midnight: Int64 = 1_795_478_400_000  // 2026-11-24T00:00:00Z
    // Three can wait for the window; the fourth is due before it opens.
    let lines = (1...4).map { #"{"custom_id": "r\#($0)", "prompt": "Name a river.", "max_tokens": 10, "quality": 50, "deadline": "\#($0 == 4 ? "1h" : "8h")"}"# }
    let file = Fixtures.write(lines.joined(separator: "\n") + "\n", to: "job.jsonl", in: directory)
    _ = try JobSubmitter(database: database, catalog: Fixtures.catalog([night, steady]), clock: .fixed(midnight)).submit(files: [file], options: SubmitOptions())
    func plan(_ models: [Model], at moment: Int64) throws {
        _ = try JobPlanning(database: database).plan(PlanningRequest(jobs: [1], catalog: Fixtures.catalog(models), usableProviders: ["p"], now: moment))
    }
    func states() throws -> [String] {
        try database.statement("""
            SELECT r.custom_id || ' ' || r.state || ' ' || coalesce(r.next_attempt_at - \(midnight), 'none') || ' ' || p.queue
            FROM requests r JOIN request_plans p ON p.request_id = r.id ORDER BY r.id
            """).rows { $0.text(0) }
    }
    let twoHours = 2 * 3_600_000
    let waiting = ["r1 waiting \(twoHours) 2", "r2 waiting \(twoHours) 2", "r3 waiting \(twoHours) 2", "r4 queued none 1"]
    try plan([night, steady], at: midnight)
    #expect(try states() == waiting)
    // A minute later the same plan: the same waits, the window's opening unchanged.
    try plan([night, steady], at: midnight + 60_000)
    #expect(try states() == waiting)
    // Without its window "night" is dearer than "steady": nothing waits any more, and every plan row is ready.
    var noWindow = night
    noWindow.discountWindows = []
    try plan([noWindow, steady], at: midnight + 120_000)
    #expect(try states() == ["r1 queued none 1", "r2 queued none 1", "r3 queued none 1", "r4 queued none 1"])
    #expect(try database.scalarInt("SELECT count(*) FROM requests WHERE state = 'waiting'") == 0)
}
