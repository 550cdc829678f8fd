

/// A provider's answer to one request, paid for and ready to store. Live calls, batch result lines and the recovery file
/// each hand their successes to the store in this one shape, and `DispatchStore.storeAnswer` is the one write of it.
public struct PaidAnswer: Sendable {
    public var requestID: Int64
    public var jobID: Int64
    /// The request's quality tier, for the output history.
    public var tier: String
    /// The output the answer was allowed on its model (`Model.outputAllowance`), for the output history.
    public var maxOutputTokens: Int
    public var model: String
    public var provider: String
    public var dialect: Provider.Dialect
    public var mode: DispatchMode
    public var response: ProviderResponse
    public var cost: Money
    public var baseline: Money
    /// What caching saved on this answer: its cached reads at the input price less what they cost, less what its cache
    /// writes cost beyond the input price (`Charges.cacheSaving`); negative when writes were not paid back.
    public var cacheSaving = Money.zero
    public var attempt: AttemptRecord
    public var finishedAt: Int64

    public init(
        requestID: Int64, jobID: Int64, tier: String, maxOutputTokens: Int, model: String, provider: String,
        dialect: Provider.Dialect, mode: DispatchMode, response: ProviderResponse, cost: Money, baseline: Money,
        attempt: AttemptRecord, finishedAt: Int64
    ) {
        self.requestID = requestID
        self.jobID = jobID
        self.tier = tier
        self.maxOutputTokens = maxOutputTokens
        self.model = model
        self.provider = provider
        self.dialect = dialect
        self.mode = mode
        self.response = response
        self.cost = cost
        self.baseline = baseline
        self.attempt = attempt
        self.finishedAt = finishedAt
    }
}

/// What the answers stored in one transaction add to the ledger's running totals and to the output and input
/// histories: summed as they are stored and written once, at the end of the transaction.
package struct AnswerTotals {
    package var charges = ChargeTotals()
    package private(set) var outputs: [OutputKey: (samples: Int, output: Int, maxOutput: Int)] = [:]
    package private(set) var inputs: [InputKey: (results: Int, estimated: Int, reported: Int)] = [:]

    package init() {}

    package struct OutputKey: Hashable {
        package var model: String
        package var tier: String
    }

    package struct InputKey: Hashable {
        package var provider: String
        package var simulated: Bool
    }

    /// Counts `answer`, billed to `project` in the month of `billedAt`; its request was estimated at `estimatedInputTokens`.
    package mutating func add(_ answer: PaidAnswer, project: String, billedAt: Int64, estimatedInputTokens: Int) {
        let response = answer.response
        charges.add(answer.cost, job: answer.jobID, project: project, month: BudgetMonth(containing: billedAt), simulated: response.simulated)
        let output = OutputKey(model: answer.model, tier: answer.tier)
        outputs[output, default: (0, 0, 0)].samples += 1
        outputs[output]!.output += response.usage.outputTokens
        outputs[output]!.maxOutput += answer.maxOutputTokens
        let input = InputKey(provider: answer.provider, simulated: response.simulated)
        inputs[input, default: (0, 0, 0)].results += 1
        inputs[input]!.estimated += estimatedInputTokens
        inputs[input]!.reported += response.usage.allInputTokens
    }
}

/// A live call's paid answer on its way to the store (`RequestQueue.recordSuccesses`), with the input tokens its request
/// was estimated at, for the history that corrects the estimates, and its reservation as the claim made it, if known.
public struct StoringAnswer: Sendable {
    public var answer: PaidAnswer
    public var estimatedInputTokens: Int
    public var reservation: ClaimedRequest.Reservation?

    public init(answer: PaidAnswer, estimatedInputTokens: Int, reservation: ClaimedRequest.Reservation? = nil) {
        self.answer = answer
        self.estimatedInputTokens = estimatedInputTokens
        self.reservation = reservation
    }
}
