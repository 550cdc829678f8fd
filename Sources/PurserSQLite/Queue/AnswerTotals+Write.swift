import PurserCore
import SQLiteStore

extension AnswerTotals {
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
