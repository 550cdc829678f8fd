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
        var entries: [Plan.Entry] = []
        entries.reserveCapacity(requests.count)
        var estimated = Money.zero, baseline = Money.zero
        for (index, request) in requests.enumerated() {
            let baselineCost = baselineCost(of: request)
            baseline += baselineCost
            let resource = Int(assignment.resourceOfRequest[index])
            guard resource >= 0 else {
                entries.append(Plan.Entry(requestID: request.id, model: nil, mode: nil, startAt: nil, estimatedCost: .zero, baselineCost: baselineCost))
                continue
            }
            let (model, mode, startAt) = problem.describe(resource: resource, request: index)
            let cost = Money(picoUSD: assignment.costOfRequest[index])
            estimated += cost
            entries.append(Plan.Entry(requestID: request.id, model: model.id, mode: mode, startAt: startAt, estimatedCost: cost, baselineCost: baselineCost))
        }
        return Plan(
            entries: entries, estimatedCost: estimated, baselineCost: baseline, mix: Plan.mix(of: entries), unplaced: assignment.unplaced,
            provenOptimal: assignment.provenOptimal)
    }

    /// What the request would cost on its reference model, sync, at list price. A request that names
    /// no model is measured against the cheapest model meeting its needs at list price, which is what
    /// a router choosing one request at a time would pay.
    public func baselineCost(of request: PlannableRequest) -> Money {
        let catalog = context.catalog
        if let reference = request.referenceModel.flatMap(catalog.model(id:)) {
            let output = context.history.expectedOutputTokens(
                model: reference.id, tier: request.needs.qualityTier, maxOutputTokens: request.needs.maxOutputTokens)
            return reference.prices.cost(inputTokens: request.needs.inputTokens, outputTokens: output)
        }
        return catalog.models.filter { Eligibility.staticExclusion(of: $0, for: request.needs) == nil }.map { model in
            let output = context.history.expectedOutputTokens(model: model.id, tier: request.needs.qualityTier, maxOutputTokens: request.needs.maxOutputTokens)
            return model.prices.cost(inputTokens: request.needs.inputTokens, outputTokens: output)
        }.min() ?? .zero
    }

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
