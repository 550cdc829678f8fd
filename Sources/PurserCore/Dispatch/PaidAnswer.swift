import SQLiteStore

/// A provider's answer to one request, paid for and ready to store. Live calls, batch result lines and the recovery file
/// each hand their successes to the store in this one shape, and `DispatchStore.storeAnswer` is the one write of it.
struct PaidAnswer: Sendable {
    var requestID: Int64
    var jobID: Int64
    /// The request's quality tier, for the output history.
    var tier: String
    /// The output the answer was allowed on its model (`Model.outputAllowance`), for the output history.
    var maxOutputTokens: Int
    var model: String
    var provider: String
    var dialect: Provider.Dialect
    var mode: DispatchMode
    var response: ProviderResponse
    var cost: Money
    var baseline: Money
    var attempt: AttemptRecord
    var finishedAt: Int64
}

/// What the answers stored in one transaction add to the ledger's running totals and to the output and input
/// histories: summed as they are stored and written once, at the end of the transaction.
struct AnswerTotals {
    var charges = ChargeTotals()
    private var outputs: [OutputKey: (samples: Int, output: Int, maxOutput: Int)] = [:]
    private var inputs: [InputKey: (results: Int, estimated: Int, reported: Int)] = [:]

    private struct OutputKey: Hashable {
        var model: String
        var tier: String
    }

    private struct InputKey: Hashable {
        var provider: String
        var simulated: Bool
    }

    /// Counts `answer`, billed to `project` in the month of `billedAt`; its request was estimated at `estimatedInputTokens`.
    mutating func add(_ answer: PaidAnswer, project: String, billedAt: Int64, estimatedInputTokens: Int) {
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

    /// Adds the totals to the ledger and the histories, inside the caller's transaction.
    func write(to database: Database) throws {
        try Ledger(database: database).add(charges)
        let history = JobStore(database: database)
        for (key, output) in outputs {
            try history.recordOutput(model: key.model, tier: key.tier, samples: output.samples, outputTokens: output.output, maxOutputTokens: output.maxOutput)
        }
        for (key, input) in inputs {
            try history.recordInput(
                provider: key.provider, simulated: key.simulated, results: input.results, estimatedTokens: input.estimated, reportedTokens: input.reported)
        }
    }
}
