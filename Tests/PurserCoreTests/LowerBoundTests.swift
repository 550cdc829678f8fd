import Foundation
import Testing
@testable import PurserCore

/// Issue 17: the printed lower bound bounds the real problem, not only the planner's rounded one. The real limits: on
/// each model, the requests started by each latest start fit what requests/min and tokens/min allow from now to then.

/// The cheapest plan of `requests` on `models` under the real (unrounded) limits, by trying every assignment, and how
/// many requests it places: the most any plan places, then the least cost.
private func exhaustiveOptimum(_ requests: [PlannableRequest], _ models: [Model], now: Int64) -> (placed: Int, cost: Int64) {
    var best = (placed: -1, cost: Int64.max)
    var choice = [Int](repeating: -1, count: requests.count)
    func latestStart(_ request: PlannableRequest, _ model: Model) -> Int64 {
        request.deadlineAt - model.speed.callDuration(outputTokens: request.needs.maxOutputTokens)
    }
    func feasible() -> Bool {
        for (index, model) in models.enumerated() {
            let starts = requests.indices.filter { choice[$0] == index }.map { (latestStart(requests[$0], model), requests[$0].rateLimitTokens) }.sorted { $0.0 < $1.0 }
            var tokens: Int64 = 0
            for (position, start) in starts.enumerated() {
                tokens += Int64(start.1)
                let time = start.0 - now
                if time <= 0 || Int64(position + 1) > PlanningProblem.allowance(perMinute: model.rateLimits.requestsPerMinute, milliseconds: time)
                    || tokens > PlanningProblem.allowance(perMinute: model.rateLimits.tokensPerMinute, milliseconds: time)
                {
                    return false
                }
            }
        }
        return true
    }
    func visit(_ request: Int) {
        guard request < requests.count else {
            guard feasible() else { return }
            let placed = choice.filter { $0 >= 0 }.count
            var cost: Int64 = 0
            for (index, model) in choice.enumerated() where model >= 0 {
                cost += models[model].prices.cost(inputTokens: requests[index].needs.inputTokens, outputTokens: requests[index].needs.maxOutputTokens).picoUSD
            }
            if placed > best.placed || (placed == best.placed && cost < best.cost) { best = (placed, cost) }
            return
        }
        for model in -1..<models.count {
            choice[request] = model
            visit(request + 1)
        }
        choice[request] = -1
    }
    visit(0)
    return best
}

@Test func theBoundHoldsWhereRoundingLatestStartsDownCostsCapacity() {
    // 2,100 requests with latest starts a millisecond apart from 601 s on: more distinct latest starts than the planner keeps
    // exactly, so they are rounded down onto its grid, all to 600 s (4 s steps there). A's 40 requests a minute allow 400
    // starts by 600 s but 402 by the last real latest start, 603.099 s: the rounded problem gives up two of A's starts.
    let a = Fixtures.model("a", input: 1_000_000, output: 0, quality: 50, requestsPerMinute: 40)
    let b = Fixtures.model("b", input: 2_000_000, output: 0, quality: 50)
    let duration = a.speed.callDuration(outputTokens: 1)
    let count = 2_100
    let latestStarts = (0..<count).map { 601_000 + Int64($0) }
    let requests = latestStarts.enumerated().map { Fixtures.request(Int64($0.offset + 1), input: 1_000, output: 1, deadlineAt: $0.element + duration) }
    // The real optimum: as many as possible on A (identical requests, so deadline order decides), the rest on B.
    var onA = 0
    for latest in latestStarts where onA + 1 <= PlanningProblem.allowance(perMinute: 40, milliseconds: latest) { onA += 1 }
    let optimum = Int64(onA) * 1_000 * 1_000_000 + Int64(count - onA) * 1_000 * 2_000_000
    let plan = Planner(context: PlanningContext(catalog: Fixtures.catalog([a, b]), now: 0, usableProviders: ["p"])).plan(requests)
    #expect(plan.unplaced == 0)
    #expect(plan.lowerBound.picoUSD <= optimum, "bound \(plan.lowerBound.picoUSD) above the real optimum \(optimum)")
    #expect(onA == 402 && plan.estimatedCost.picoUSD >= optimum)
}

@Test func theBoundNeverExceedsTheExhaustiveOptimumOfTheRealProblem() {
    var random = SplitMix64(seed: 17)
    for instance in 0..<60 {
        // Two or three models whose limits bind (5 to 13 requests a minute: a start every 4.6 to 12 s, off whole
        // seconds), and six requests due within 5 to 60 seconds.
        let count = 2 + random.below(2)
        let models = (0..<count).map { index in
            Fixtures.model(
                "m\(index)", input: Int64(1 + random.below(9)) * 100_000, output: 0, quality: 50, requestsPerMinute: 5 + random.below(9),
                tokensPerMinute: 5_000 + random.below(4) * 2_000, ttft: 100 + random.below(900))
        }
        let requests = (1...6).map { id in
            Fixtures.request(Int64(id), input: 100 + random.below(900), output: 1, deadlineAt: Int64(5_000 + random.below(55_000)))
        }
        let catalog = Fixtures.catalog(models)
        let plan = Planner(context: PlanningContext(catalog: catalog, now: 0, usableProviders: ["p"])).plan(requests)
        let optimum = exhaustiveOptimum(requests, models, now: 0)
        // Few latest starts are kept exactly, so the plan is the real optimum, and the bound at most that.
        #expect(plan.count - plan.unplaced == optimum.placed, "instance \(instance)")
        #expect(plan.estimatedCost.picoUSD == optimum.cost, "instance \(instance): plan \(plan.estimatedCost.picoUSD), real optimum \(optimum.cost)")
        #expect(plan.lowerBound.picoUSD <= optimum.cost, "instance \(instance): bound \(plan.lowerBound.picoUSD) above the real optimum \(optimum.cost)")
    }
}

@Test func aPlanLeavingARequestOutStillHasABoundAboveZero() {
    // One model with room for 10 of 12 requests (more than the planner searches exhaustively): the bound is what placing
    // the ten cheapest could cost, not $0.
    let a = Fixtures.model("a", input: 1_000_000, output: 0, quality: 50, requestsPerMinute: 5)
    let deadline = 120_000 + a.speed.callDuration(outputTokens: 1)
    let requests = (1...12).map { Fixtures.request(Int64($0), input: 1_000 * $0, output: 1, deadlineAt: deadline) }
    let plan = Planner(context: PlanningContext(catalog: Fixtures.catalog([a]), now: 0, usableProviders: ["p"])).plan(requests)
    #expect(plan.unplaced == 2)
    let cheapestTen = Int64((1...10).reduce(0, +)) * 1_000 * 1_000_000
    #expect(plan.lowerBound.picoUSD > 0 && plan.lowerBound.picoUSD <= cheapestTen, "\(plan.lowerBound.picoUSD) against \(cheapestTen)")
}

@Test func aPinnedRequestGetsItsOnlyModelBeforeRequestsThatHaveOthers() {
    // A allows 60 starts in ten minutes and is the cheapest; 200 unpinned requests of mixed sizes want it, and one
    // request is pinned to it. The optimum places the pinned one on A and one fewer unpinned: nothing is left unplaced.
    let a = Fixtures.model("a", input: 100_000, output: 0, quality: 50, requestsPerMinute: 6)
    let b = Fixtures.model("b", input: 2_000_000, output: 0, quality: 50)
    let deadline = 600_000 + a.speed.callDuration(outputTokens: 1) + 500
    var random = SplitMix64(seed: 5)
    var requests = (1...200).map { Fixtures.request(Int64($0), input: 200 + random.below(4_000), output: 1, deadlineAt: deadline) }
    requests.append(Fixtures.request(201, input: 100, output: 1, deadlineAt: deadline, pinned: "p/a"))
    let plan = Planner(context: PlanningContext(catalog: Fixtures.catalog([a, b]), now: 0, usableProviders: ["p"])).plan(requests)
    #expect(plan.unplaced == 0)
    #expect(plan.entries[200].model == "p/a")
    #expect(plan.entries.filter { $0.model == "p/a" }.count == 60)
}
