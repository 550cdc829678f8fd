import Testing
@testable import PurserCore

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
    #expect(plan.provenOptimal)
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
        Fixtures.request(1, input: 5_000, output: 100, deadlineAt: 60_000),
        Fixtures.request(2, input: 100, output: 10, deadlineAt: 60_000),
        Fixtures.request(3, input: 8_000, output: 100, deadlineAt: 60_000),
    ]
    let plan = planner(models).plan(requests)
    #expect(plan.entries.map(\.model) == ["p/cheap", "p/backup", "p/cheap"])
    #expect(plan.unplaced == 0)
    #expect(plan.provenOptimal)
}

@Test func requestsWithNoRoomBeforeTheirDeadlineStayUnplaced() {
    let models = [Fixtures.model("only", input: 100_000, output: 100_000, quality: 50, requestsPerMinute: 1, ttft: 10, tokensPerSecond: 100_000)]
    let plan = planner(models).plan([Fixtures.request(1, deadlineAt: 60_000), Fixtures.request(2, deadlineAt: 60_000)])
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
}

// MARK: - Optimality against an exact solver

/// A small random assignment problem: a few resources with little room, requests with a few priced options.
private struct RandomProblem: AssignmentProblem {
    var requestCount: Int
    var capacities: [Int]
    var optionLists: [[AssignmentOption]]
    func options(for request: Int) -> [AssignmentOption] { optionLists[request] }

    init(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let resources = 2 + random.below(4)
        capacities = (0..<resources).map { _ in 1 + random.below(3) }
        requestCount = 3 + random.below(6)
        // Prices as real tables have them: a per-resource rate times a per-request size, plus noise.
        let rates = (0..<resources).map { _ in Int64(1 + random.below(40)) }
        optionLists = (0..<requestCount).map { _ in
            let size = Int64(1 + random.below(100))
            let choices = (0..<resources).filter { _ in random.below(4) != 0 }
            return choices.map { AssignmentOption(resource: $0, cost: rates[$0] * size + Int64(random.below(50))) }
                .sorted { $0.cost < $1.cost }
        }
    }
}

/// The exact optimum by exhaustive search: most requests placed first, then least cost.
private func exactOptimum<P: AssignmentProblem>(_ problem: P) -> (placed: Int, cost: Int64) {
    var loads = [Int](repeating: 0, count: problem.capacities.count)
    var best = (placed: -1, cost: Int64.max)
    let options = (0..<problem.requestCount).map { problem.options(for: $0) }
    func search(_ request: Int, placed: Int, cost: Int64) {
        if request == problem.requestCount {
            if placed > best.placed || (placed == best.placed && cost < best.cost) { best = (placed, cost) }
            return
        }
        for option in options[request] where loads[option.resource] < problem.capacities[option.resource] {
            loads[option.resource] += 1
            search(request + 1, placed: placed + 1, cost: cost + option.cost)
            loads[option.resource] -= 1
        }
        search(request + 1, placed: placed, cost: cost)
    }
    search(0, placed: 0, cost: 0)
    return best
}

@Test func solverMatchesTheExactOptimumOnRandomSmallInstances() {
    var worstRatio = 1.0
    for seed in UInt64(1)...400 {
        let problem = RandomProblem(seed: seed)
        let assignment = AssignmentSolver().solve(problem)
        let exact = exactOptimum(problem)
        #expect(problem.requestCount - assignment.unplaced == exact.placed, "seed \(seed): placed fewer than possible")
        #expect(assignment.provenOptimal, "seed \(seed)")
        let total = assignment.totalCost
        #expect(total * 100 <= exact.cost * 101, "seed \(seed): \(total) vs optimum \(exact.cost)")
        if exact.cost > 0 { worstRatio = max(worstRatio, Double(total) / Double(exact.cost)) }
    }
    #expect(worstRatio <= 1.01)
}

@Test func plannerMatchesTheExactOptimumOfItsOwnCapacityProblem() {
    // Real planning problems (rate limits × time before each deadline) small enough to search exhaustively.
    for seed in UInt64(1)...60 {
        var random = SplitMix64(seed: seed)
        let models = (0..<3).map { index in
            Fixtures.model(
                "m\(index)", input: Int64(50_000 + random.below(500_000)), output: Int64(100_000 + random.below(2_000_000)),
                quality: 40 + random.below(30), requestsPerMinute: 1 + random.below(3), ttft: 10, tokensPerSecond: 100_000)
        }
        let requests = (0..<(4 + random.below(4))).map { index in
            Fixtures.request(
                Int64(index), floor: random.below(2) == 0 ? 40 : 55, input: 100 + random.below(5_000), output: 10 + random.below(1_000),
                deadlineAt: Int64(60_000 * (1 + random.below(2))))
        }
        let catalog = Fixtures.catalog(models)
        let context = PlanningContext(catalog: catalog, now: 0, usableProviders: Set(catalog.providers.keys))
        let problem = PlanningProblem(requests: requests, context: context)
        let exact = exactOptimum(problem)
        let plan = Planner(context: context).plan(requests)
        #expect(requests.count - plan.unplaced == exact.placed, "seed \(seed)")
        #expect(plan.estimatedCost.picoUSD * 100 <= exact.cost * 101, "seed \(seed): \(plan.estimatedCost.picoUSD) vs \(exact.cost)")
    }
}
