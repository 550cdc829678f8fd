import Foundation

/// Picks, for every request, the cheapest model and dispatch mode that meets its quality and deadline,
/// within every model's requests/min and tokens/min before each deadline, beside what other plans hold.
public struct Planner {
    public let context: PlanningContext
    /// How long the linear program may run before the plan is taken as it stands (its gap is then printed as is).
    public var timeBudgetSeconds: Double
    /// Asked while solving; true stops early (a signal arrived).
    public var shouldStop: @Sendable () -> Bool

    public init(context: PlanningContext, timeBudgetSeconds: Double = 10, shouldStop: @escaping @Sendable () -> Bool = { false }) {
        self.context = context
        self.timeBudgetSeconds = timeBudgetSeconds
        self.shouldStop = shouldStop
    }

    public func plan(_ requests: [PlannableRequest], held: [HeldCapacity] = []) -> Plan {
        let problem = PlanningProblem(requests: requests, held: held, context: context)
        let outcome = PlanSolver(problem: problem, limits: .init(timeBudgetSeconds: timeBudgetSeconds, shouldStop: shouldStop)).solve()
        let count = requests.count
        var modelOfRequest = [Int32](repeating: -1, count: count)
        var modeOfRequest = [DispatchMode](repeating: .sync, count: count)
        var startOfRequest = [Int64](repeating: 0, count: count)
        var latestStartOfRequest = [Int64](repeating: 0, count: count)
        var openings: [Int: [Range<Int64>]] = [:]
        let models = context.catalog.models
        var mixRequests = [[Int]](repeating: [Int](repeating: 0, count: DispatchMode.allCases.count), count: models.count)
        var mixCost = [[Money]](repeating: [Money](repeating: .zero, count: DispatchMode.allCases.count), count: models.count)
        var estimated = Money.zero
        var uncached = Money.zero
        var cachingRequests = 0
        var cachedTokens: Int64 = 0
        for request in 0..<count {
            let optionIndex = outcome.optionOfRequest[request]
            guard optionIndex >= 0 else { continue }
            let option = problem.signatures[Int(problem.signatureOfRequest[request])].options[Int(optionIndex)]
            let priced = option.cost(input: requests[request].needs.inputTokens)
            let mode = priced.mode
            if let cache = priced.cache {
                uncached += Money(picoUSD: option.uncachedCost(input: requests[request].needs.inputTokens))
                // The primer (whose cost carries the write) reads nothing; the others read at the expected hit rate.
                let primer = cache.write > 0 && outcome.costOfRequest[request] > priced.cost - cache.writeShare
                if !primer && cache.hitBasisPoints > 0 {
                    cachingRequests += 1
                    cachedTokens += Int64(cache.tokens) * cache.hitBasisPoints / 10_000
                }
            } else {
                uncached += Money(picoUSD: outcome.costOfRequest[request])
            }
            let latest = problem.latestStart(option)
            var start = context.now
            if mode == .offpeak {
                let family = Int(option.family)
                if openings[family] == nil {
                    if case .window(let basisPoints) = problem.families[family].kind {
                        openings[family] = problem.mergedWindows(models[Int(option.model)], basisPoints: basisPoints)
                    }
                }
                start = problem.windowOpening(openings[family] ?? [], atOrAfter: context.now) ?? context.now
            }
            modelOfRequest[request] = option.model
            modeOfRequest[request] = mode
            startOfRequest[request] = min(start, latest)
            latestStartOfRequest[request] = latest
            let modeIndex = DispatchMode.allCases.firstIndex(of: mode)!
            mixRequests[Int(option.model)][modeIndex] += 1
            mixCost[Int(option.model)][modeIndex] += Money(picoUSD: outcome.costOfRequest[request])
            estimated += Money(picoUSD: outcome.costOfRequest[request])
        }
        var mix: [Plan.MixLine] = []
        for (model, counts) in mixRequests.enumerated() {
            for (modeIndex, requestCount) in counts.enumerated() where requestCount > 0 {
                mix.append(Plan.MixLine(
                    model: models[model].id, mode: DispatchMode.allCases[modeIndex], requests: requestCount,
                    estimatedCost: mixCost[model][modeIndex]))
            }
        }
        mix.sort { ($0.estimatedCost, $0.model, $0.mode.rawValue) > ($1.estimatedCost, $1.model, $1.mode.rawValue) }
        let baseline = Baseline(context: context)
        let baselineOfRequest = requests.map { baseline.cost(of: $0).picoUSD }
        return Plan(
            requestIDs: requests.map(\.id), modelOfRequest: modelOfRequest, modeOfRequest: modeOfRequest, startOfRequest: startOfRequest,
            latestStartOfRequest: latestStartOfRequest, costOfRequest: outcome.costOfRequest, baselineOfRequest: baselineOfRequest,
            modelIDs: models.map(\.id), estimatedCost: estimated,
            baselineCost: Money(picoUSD: baselineOfRequest.reduce(0, &+)), lowerBound: Money(picoUSD: outcome.lowerBound), mix: mix,
            unplaced: outcome.unplaced, unfitHeld: outcome.unfitHeld.map { held[$0] },
            baseline: baseline.check(requests, held: held),
            solver: Plan.SolverFigures(
                requestRows: outcome.requestRows, tokenRows: outcome.tokenRows, contestedClasses: outcome.contestedClasses,
                iterations: outcome.iterations, linearProgramOptimal: outcome.linearProgramOptimal, exhaustive: outcome.exhaustive),
            cachingRequests: cachingRequests, expectedCachedTokens: cachedTokens, cacheSaving: uncached - estimated)
    }

    public func baselineCost(of request: PlannableRequest) -> Money { Baseline(context: context).cost(of: request) }

    /// Every model's standing for the request at `index`: its cheapest way to serve it, or why it cannot.
    public func explain(_ requests: [PlannableRequest], index: Int, plan: Plan) -> PlanExplanation {
        let request = requests[index]
        // Counted with the rest of its prefix group, as the plan counts it.
        let groupSize = request.prefix.map { prefix in requests.lazy.filter { $0.prefix?.group == prefix.group }.count } ?? 0
        let single = PlanningProblem(
            requests: [request], context: context, pruneDominated: false, groupSizes: request.prefix.map { [$0.group: groupSize] })
        let options = single.signatures.first?.options ?? []
        let models = context.catalog.models
        let chosen = plan.entry(index).model
        let candidates = models.enumerated().map { modelIndex, model -> PlanExplanation.Candidate in
            var candidate = PlanExplanation.Candidate(
                model: model.id, quality: model.quality, bestCost: nil, bestMode: nil, exclusion: nil, chosen: model.id == chosen)
            if let exclusion = Eligibility.staticExclusion(of: model, for: request.needs) {
                candidate.exclusion = exclusion
            } else if let provider = context.catalog.providers[model.provider] {
                if !context.usableProviders.contains(provider.name) {
                    candidate.exclusion = .noKey(provider: provider.name, variable: provider.apiKeyEnvironmentVariable)
                } else if let best = options.filter({ Int($0.model) == modelIndex })
                    .map({ $0.cost(input: request.needs.inputTokens) }).min(by: { $0.cost < $1.cost })
                {
                    candidate.bestCost = Money(picoUSD: best.cost)
                    candidate.bestMode = best.mode
                    candidate.cache = best.cache.map { cache in
                        PlanExplanation.CacheUse(
                            tokens: Int(cache.tokens), hitBasisPoints: cache.hitBasisPoints,
                            pricePerMillion: TokenPrice(microUSDPerMillion: cache.price), write: Money(picoUSD: cache.write))
                    }
                } else {
                    candidate.exclusion = single.whyNoOption(model: modelIndex, request: request)
                }
            } else {
                candidate.exclusion = .unknownProvider(model.provider)
            }
            return candidate
        }.sorted { lhs, rhs in
            switch (lhs.bestCost, rhs.bestCost) {
            case let (l?, r?): return (l, rhs.quality, lhs.model) < (r, lhs.quality, rhs.model)
            case (.some, nil): return true
            case (nil, .some): return false
            case (nil, nil): return lhs.model < rhs.model
            }
        }
        var explanation = PlanExplanation(request: request, candidates: candidates, baselineCost: plan.entry(index).estimatedCost == .zero && chosen == nil
            ? Baseline(context: context).cost(of: request) : Money(picoUSD: plan.baselineOfRequest[index]))
        if let prefix = request.prefix, groupSize >= 2 {
            explanation.prefixGroup = (tokens: min(Int(prefix.tokens), request.needs.inputTokens), requests: groupSize)
        }
        explanation.batchNote = batchNote(request, candidates: candidates)
        return explanation
    }

    /// Why batch mode is not among a request's options, when some eligible model sells batches.
    private func batchNote(_ request: PlannableRequest, candidates: [PlanExplanation.Candidate]) -> String? {
        let batchable = candidates.filter { candidate in
            guard candidate.exclusion == nil, let model = context.catalog.model(id: candidate.model) else { return false }
            return model.batchPrices != nil && context.catalog.providers[model.provider]?.batchDialect != nil
        }
        guard !batchable.isEmpty, !candidates.contains(where: { $0.bestMode == .batch }) else { return nil }
        if request.liveOnly { return "no batch: a batch already expired on it or was cancelled to meet its deadline, so it is served live" }
        let timing = context.catalog.tiers.batch
        let left = request.deadlineAt - context.now
        return "no batch: its deadline leaves \(DurationText.approximate(max(left, 0))), less than the batch window "
            + "(\(DurationText.format(Tiers.BatchTiming.windowMilliseconds))) plus the margin (\(DurationText.format(timing.marginMilliseconds))); "
            + "a batch sent now is tried only once enough batches of the model have been seen finishing in time"
    }

    /// The cheapest model and mode that can serve `request` now (for a fallback at dispatch), ignoring capacity:
    /// a live one, or by batch too when `allowingBatch` (and the deadline leaves the batch window).
    public func cheapestOption(for request: PlannableRequest, allowingBatch: Bool = false) -> (model: Model, mode: DispatchMode, cost: Money)? {
        // Every option kept: the batch options that would prune the live ones are candidates only when allowed.
        let single = PlanningProblem(requests: [request], context: context, pruneDominated: false)
        guard let signature = single.signatures.first else { return nil }
        let input = request.needs.inputTokens
        guard let best = signature.options.filter({ allowingBatch || $0.mode != .batch })
            .min(by: { ($0.cost(input: input).cost, $0.preference) < ($1.cost(input: input).cost, $1.preference) })
        else { return nil }
        let priced = best.cost(input: input)
        return (context.catalog.models[Int(best.model)], priced.mode, Money(picoUSD: priced.cost))
    }
}

extension Planner {
    /// The assignment this planner solves for `requests`, as data, so a plan can be checked against an
    /// independent solver: each request's tokens and every option it has (family, latest-start boundary,
    /// exact cost in pico-USD), and each family's model, kind, boundaries and cumulative limits. A request
    /// may use an option's family from its boundary on: at every boundary, the requests and the tokens of
    /// the options due by it must fit the family's limits there. Each request takes at most one option.
    public func problemDocument(_ requests: [PlannableRequest]) -> JSONValue {
        let problem = PlanningProblem(requests: requests, context: context, pruneDominated: false)
        let families: [JSONValue] = problem.families.map { family in
            let kind: String
            switch family.kind {
            case .list: kind = "list"
            case .window(let basisPoints): kind = "window \(basisPoints)"
            case .batch: kind = "batch"
            }
            return .object(JSONObject([
                "model": .string(problem.models[family.model].id), "kind": .string(kind),
                "boundaries": .array(family.boundaries.map { .number(String($0)) }),
                "requests": .array(family.requestCapacity.map { .number(String($0)) }),
                "tokens": .array(family.tokenCapacity.map { .number(String($0)) }),
            ]))
        }
        let entries: [JSONValue] = requests.indices.map { index in
            let input = requests[index].needs.inputTokens
            let options = problem.signatures[Int(problem.signatureOfRequest[index])].options.map { option -> JSONValue in
                .array([.number(String(option.family)), .number(String(option.boundary)), .number(String(option.cost(input: input).cost))])
            }
            return .object(JSONObject(["tokens": .number(String(requests[index].rateLimitTokens)), "options": .array(options)]))
        }
        return .object(JSONObject(["families": .array(families), "requests": .array(entries)]))
    }
}
