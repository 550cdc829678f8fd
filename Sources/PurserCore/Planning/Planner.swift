/// Picks, for every request, the cheapest model and dispatch mode that meets its quality and deadline,
/// within the models' capacity before each deadline.
public struct Planner {
    public let context: PlanningContext
    public var solver: AssignmentSolver

    public init(context: PlanningContext, solver: AssignmentSolver = AssignmentSolver()) {
        self.context = context
        self.solver = solver
    }

    public func plan(_ requests: [PlannableRequest]) -> Plan {
        let problem = PlanningProblem(requests: requests, context: context)
        let assignment = solver.solve(problem)
        let baseline = BaselinePricer(context: context)
        let models = context.catalog.models
        var entries: [Plan.Entry] = []
        entries.reserveCapacity(requests.count)
        var estimated = Money.zero, baselineTotal = Money.zero
        // The mix, by model index and mode, summed as entries are made.
        var mixRequests = [[Int]](repeating: [Int](repeating: 0, count: DispatchMode.allCases.count), count: models.count)
        var mixCost = [[Money]](repeating: [Money](repeating: .zero, count: DispatchMode.allCases.count), count: models.count)
        for (index, request) in requests.enumerated() {
            let baselineCost = baseline.cost(of: request)
            baselineTotal += baselineCost
            let resource = Int(assignment.resourceOfRequest[index])
            guard resource >= 0 else {
                entries.append(Plan.Entry(requestID: request.id, model: nil, mode: nil, startAt: nil, estimatedCost: .zero, baselineCost: baselineCost))
                continue
            }
            let (model, mode, startAt) = problem.describe(resource: resource, request: index)
            let cost = Money(picoUSD: assignment.costOfRequest[index])
            estimated += cost
            let modeIndex = DispatchMode.allCases.firstIndex(of: mode)!
            mixRequests[model][modeIndex] += 1
            mixCost[model][modeIndex] += cost
            entries.append(Plan.Entry(
                requestID: request.id, model: models[model].id, mode: mode, startAt: startAt, estimatedCost: cost, baselineCost: baselineCost))
        }
        var mix: [Plan.MixLine] = []
        for (model, counts) in mixRequests.enumerated() {
            for (modeIndex, count) in counts.enumerated() where count > 0 {
                mix.append(Plan.MixLine(
                    model: models[model].id, mode: DispatchMode.allCases[modeIndex], requests: count, estimatedCost: mixCost[model][modeIndex]))
            }
        }
        mix.sort { ($0.estimatedCost, $0.model, $0.mode.rawValue) > ($1.estimatedCost, $1.model, $1.mode.rawValue) }
        return Plan(
            entries: entries, estimatedCost: estimated, baselineCost: baselineTotal, mix: mix, unplaced: assignment.unplaced,
            provenOptimal: assignment.provenOptimal)
    }

    public func baselineCost(of request: PlannableRequest) -> Money { BaselinePricer(context: context).cost(of: request) }

    /// Every model's standing for the request at `index` within the whole plan of `requests`.
    public func explain(_ requests: [PlannableRequest], index: Int, plan: Plan) -> PlanExplanation {
        let problem = PlanningProblem(requests: requests, context: context)
        var best: [String: (cost: Money, mode: DispatchMode)] = [:]
        var exclusions: [String: Exclusion] = [:]
        problem.enumerateOptions(for: index, exclusions: { model, exclusion in exclusions[model.id] = exclusion }) { option, resource in
            let model = problem.models[resource.model]
            let cost = Money(picoUSD: option.cost)
            if best[model.id] == nil || cost < best[model.id]!.cost {
                best[model.id] = (cost, problem.describe(resource: option.resource, request: index).mode)
            }
        }
        let chosen = plan.entries[index].model
        let candidates = context.catalog.models.map { model in
            PlanExplanation.Candidate(
                model: model.id, quality: model.quality, bestCost: best[model.id]?.cost, bestMode: best[model.id]?.mode,
                exclusion: exclusions[model.id], chosen: model.id == chosen)
        }.sorted { lhs, rhs in
            switch (lhs.bestCost, rhs.bestCost) {
            case let (l?, r?): return (l, rhs.quality, lhs.model) < (r, lhs.quality, rhs.model)
            case (.some, nil): return true
            case (nil, .some): return false
            case (nil, nil): return lhs.model < rhs.model
            }
        }
        return PlanExplanation(request: requests[index], candidates: candidates, baselineCost: plan.entries[index].baselineCost)
    }
}

/// What a request would cost on its reference model, sync, at list price. A request that names no
/// model is measured against the cheapest model meeting its needs at list price, which is what a
/// router choosing one request at a time would pay.
struct BaselinePricer {
    let models: [Model]
    let facts: [ModelFacts]
    let indexByID: [String: Int]
    let history: OutputHistoryByTier

    init(context: PlanningContext) {
        models = context.catalog.models
        facts = models.map(ModelFacts.init)
        indexByID = Dictionary(uniqueKeysWithValues: models.enumerated().map { ($1.id, $0) })
        history = context.history.byTier(models: models)
    }

    func cost(of request: PlannableRequest) -> Money {
        guard let index = baselineModelIndex(for: request) else { return .zero }
        return listCost(index, request, samples: history.samples(tier: request.needs.qualityTier))
    }

    /// The model the baseline prices the request on: its reference model, or the cheapest that meets its needs at list price.
    func baselineModel(for request: PlannableRequest) -> Model? { baselineModelIndex(for: request).map { models[$0] } }

    private func listCost(_ index: Int, _ request: PlannableRequest, samples: [OutputHistory.Sample?]?) -> Money {
        let output = OutputHistoryByTier.expectedOutputTokens(samples, model: index, maxOutputTokens: request.needs.maxOutputTokens)
        return facts[index].prices.cost(inputTokens: request.needs.inputTokens, outputTokens: output)
    }

    private func baselineModelIndex(for request: PlannableRequest) -> Int? {
        if let reference = request.referenceModel, let index = indexByID[reference] { return index }
        let samples = history.samples(tier: request.needs.qualityTier)
        var cheapest: (index: Int, cost: Money)?
        for index in facts.indices
        where Eligibility.staticExclusion(of: facts[index], isPinnedModel: request.needs.pinnedModel == models[index].id, for: request.needs) == nil {
            let cost = listCost(index, request, samples: samples)
            if cheapest == nil || cost < cheapest!.cost { cheapest = (index, cost) }
        }
        return cheapest?.index
    }
}
