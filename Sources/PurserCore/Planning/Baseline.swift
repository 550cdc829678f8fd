/// What a request would cost on its reference model, sync, at list price, and whether every request could
/// have been served that way within the same limits. A request that names no model is measured against
/// the cheapest model meeting its needs at list price, which is what a router choosing one request at a
/// time would pay.
struct Baseline {
    let context: PlanningContext
    let models: [Model]
    let facts: [ModelFacts]
    let indexByID: [String: Int]
    let history: OutputHistoryByTier

    /// How many of `models` are served; the rest are reference rows, priced only when a request names them.
    let servedCount: Int

    init(context: PlanningContext) {
        self.context = context
        // Reference rows (models Purser does not serve) come last.
        models = (context.catalog.models + context.catalog.references).map(context.inputCalibration.expected)
        servedCount = context.catalog.models.count
        facts = models.map(ModelFacts.init)
        indexByID = Dictionary(models.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first })
        history = context.history.byTier(models: models)
    }

    func cost(of request: PlannableRequest) -> Money {
        guard let index = modelIndex(for: request) else { return .zero }
        return facts[index].prices.cost(inputTokens: request.needs.inputTokens, outputTokens: expectedOutput(index, request))
    }

    /// The model the baseline prices the request on: its reference model, or the cheapest that meets its needs at list price.
    func model(for request: PlannableRequest) -> Model? { modelIndex(for: request).map { models[$0] } }

    private func expectedOutput(_ index: Int, _ request: PlannableRequest) -> Int {
        OutputHistoryByTier.expectedOutputTokens(
            history.samples(tier: request.needs.qualityTier), model: index, maxOutputTokens: facts[index].outputAllowance(request.needs.maxOutputTokens))
    }

    private func modelIndex(for request: PlannableRequest) -> Int? {
        if let reference = request.referenceModel, let index = indexByID[reference] { return index }
        var cheapest: (index: Int, cost: Money)?
        for index in facts.indices.prefix(servedCount)
        where Eligibility.staticExclusion(of: facts[index], isPinnedModel: request.needs.pinnedModel == models[index].id, for: request.needs) == nil {
            let cost = facts[index].prices.cost(inputTokens: request.needs.inputTokens, outputTokens: expectedOutput(index, request))
            if cheapest == nil || cost < cheapest!.cost { cheapest = (index, cost) }
        }
        return cheapest?.index
    }

    /// Serves every request on its baseline model in deadline order, as fast as that model's requests/min and
    /// tokens/min allow beside the plans other jobs hold there, and counts the requests that would start too late.
    func check(_ requests: [PlannableRequest], held: [HeldCapacity]) -> Plan.BaselineCheck {
        let now = context.now
        let horizonEnd = now + context.horizonMilliseconds
        var byModel: [Int: [(latest: Int64, tokens: Int64)]] = [:]
        var over = 0
        for request in requests {
            guard let index = modelIndex(for: request) else { over += 1; continue }
            let latest = min(request.deadlineAt, horizonEnd) - facts[index].speed.callDuration(outputTokens: expectedOutput(index, request))
            guard latest > now else { over += 1; continue }
            byModel[index, default: []].append((latest, Int64(request.rateLimitTokens)))
        }
        for (index, demand) in byModel {
            let model = models[index]
            let heldHere = held.filter { $0.model == model.id && $0.mode != .batch }.sorted { $0.latestStart < $1.latestStart }
            var nextHeld = 0
            var requests: Int64 = 0, tokens: Int64 = 0
            for item in demand.sorted(by: { $0.latest < $1.latest }) {
                while nextHeld < heldHere.count && heldHere[nextHeld].latestStart <= item.latest {
                    requests &+= Int64(heldHere[nextHeld].requests)
                    tokens &+= heldHere[nextHeld].tokens
                    nextHeld += 1
                }
                let elapsed = item.latest - now
                let fits = requests + 1 <= PlanningProblem.allowance(perMinute: model.rateLimits.requestsPerMinute, milliseconds: elapsed)
                    && tokens + item.tokens <= PlanningProblem.allowance(perMinute: model.rateLimits.tokensPerMinute, milliseconds: elapsed)
                if fits {
                    requests += 1
                    tokens += item.tokens
                } else {
                    over += 1
                }
            }
        }
        return Plan.BaselineCheck(requestsOver: over)
    }
}
