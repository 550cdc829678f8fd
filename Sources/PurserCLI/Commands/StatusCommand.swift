import Foundation
import PurserCore
import PurserSQLite

/// `purser status [JOB]`: per job, requests by state and the plan's cost.
enum StatusCommand {
    static let spec = CommandSpec(
        name: "status",
        overview: "Show jobs: requests by state, what they spent, the estimate and baseline of their plans, and the budgets' use.",
        arguments: [.init(name: "job", help: "One job's number or name (default: every job).", optional: true)],
        options: [CommandContext.databaseOption, CommandContext.jsonOption])

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws -> Int32 {
        let database = try context.openDatabaseForReading(arguments)
        let store = database.jobs
        let jobs = try arguments.positionals.first.map { [try context.job($0, store: store)] } ?? store.jobs()
        let results = database.results
        let ledger = database.ledger
        let month = BudgetMonth(containing: context.clock.now())
        let caps = try ledger.capsInForce(month: month, simulated: false).filter { use in jobs.contains { use.applies(to: $0) } }
        let rehearsals = try ledger.hasSimulatedSpending()
            ? try ledger.capsInForce(month: month, simulated: true).filter { use in use.used > .zero && jobs.contains { use.applies(to: $0) } } : []
        var rows: [(job: Job, counts: [RequestState: Int], estimated: Money, baseline: Money, spent: Money, simulated: Int,
            modes: [(mode: String, requests: Int, done: Int)], batches: [JobStore.OpenBatch], unsettled: (calls: Int, amount: Money))] = []
        for job in jobs {
            let totals = try store.planTotals(job: job.id)
            let spend = try results.spend(job: job.id)
            rows.append((
                job, try store.stateCounts(job: job.id), totals.estimated, totals.baseline, spend.cost, spend.simulated, try store.modeCounts(job: job.id),
                try store.openBatches(job: job.id), try ledger.unsettled(job: job.id, simulated: false)))
        }
        if arguments.flag("json") {
            context.printJSON(.array(rows.map { row in
                .object(JSONObject([
                    "job": .number(String(row.job.id)), "name": .string(row.job.name), "project": .string(row.job.project),
                    "submitted_at": .string(timestamp(row.job.submittedAt)), "requests": .number(String(row.job.requestCount)),
                    "rejected": .number(String(row.job.rejectedCount)),
                    "states": .object(JSONObject(RequestState.allCases.compactMap { state in
                        row.counts[state].map { JSONObject.Member(key: state.rawValue, value: .number(String($0))) }
                    })),
                    "estimated_cost_usd": row.estimated.jsonUSD, "baseline_cost_usd": row.baseline.jsonUSD, "spent_usd": row.spent.jsonUSD,
                    "unsettled_usd": row.unsettled.amount.jsonUSD, "unsettled_calls": .number(String(row.unsettled.calls)),
                    "simulated_results": .number(String(row.simulated)),
                    "max_cost_usd": row.job.maxCost?.jsonUSD ?? .null,
                    "caps": .array(caps.filter { $0.applies(to: row.job) }.map { .object(JSONObject($0.jsonMembers)) }),
                    "modes": .object(JSONObject(row.modes.map { mode in
                        JSONObject.Member(key: mode.mode, value: .object(JSONObject(["requests": .number(String(mode.requests)), "done": .number(String(mode.done))])))
                    })),
                    "batches": .array(row.batches.map { batch in
                        .object(JSONObject([
                            "batch": .number(String(batch.id)), "provider": .string(batch.provider), "model": .string(batch.model),
                            "state": .string(batch.state), "provider_status": batch.providerStatus.map { .string($0) } ?? .null,
                            "provider_batch_id": batch.providerBatchID.map { .string($0) } ?? .null, "requests": .number(String(batch.requests)),
                            "submitted_at": batch.submittedAt.map { .string(timestamp($0)) } ?? .null,
                            "last_error": batch.lastError.map { .string($0) } ?? .null,
                        ]))
                    }),
                ]))
            }))
            return 0
        }
        guard !rows.isEmpty else {
            context.console.print("No jobs yet. Submit one with: purser submit jobs/quickstart.jsonl")
            return 0
        }
        var table = TextTable(headers: ["job", "name", "project", "requests", "states", "spent", "est. cost", "baseline"], rightAligned: [0, 3, 5, 6, 7])
        for row in rows {
            let states = RequestState.allCases.compactMap { state in row.counts[state].map { "\(state.rawValue) \($0)" } }.joined(separator: ", ")
            table.rows.append([
                String(row.job.id), row.job.name, row.job.project, String(row.job.requestCount), states,
                row.spent.formatted + (row.simulated > 0 ? " (simulated)" : ""), row.estimated.formatted, row.baseline.formatted,
            ])
        }
        context.console.print(table.render())
        let unsettledCalls = rows.reduce(0) { $0 + $1.unsettled.calls }
        if unsettledCalls > 0 {
            context.console.print(BudgetCommand.unsettledLine(calls: unsettledCalls, amount: rows.reduce(.zero) { $0 + $1.unsettled.amount }))
        }
        if !caps.isEmpty {
            context.console.print()
            for use in caps { context.console.print(BudgetCommand.line(use, simulated: false)) }
            for use in rehearsals { context.console.print(BudgetCommand.line(use, simulated: true)) }
        }
        if let only = rows.first, rows.count == 1 {
            context.console.print()
            context.console.print("submitted \(timestamp(only.job.submittedAt)) from \(only.job.source)"
                + (only.job.maxCost.map { "; capped at \($0.formatted)" } ?? ""))
            if !only.modes.isEmpty {
                context.console.print("by mode: " + only.modes.map { "\($0.mode) \($0.requests)" + ($0.done < $0.requests ? " (\($0.done) done)" : "") }.joined(separator: ", "))
            }
            for batch in only.batches {
                let at = batch.providerBatchID.map { " as \($0)" } ?? ""
                let since = batch.submittedAt.map { ", sent \(timestamp($0))" } ?? ", not sent yet"
                context.console.print("batch \(batch.id): \(count(batch.requests, "request")) for \(batch.model) at \(batch.provider)\(at)"
                    + " (\(batch.providerStatus ?? batch.state)\(since))" + (batch.lastError.map { "; last error: \($0)" } ?? ""))
            }
            if only.job.rejectedCount > 0 {
                context.console.print("\(count(only.job.rejectedCount, "line")) rejected at submit:")
                for problem in try store.rejections(job: only.job.id, limit: 20) { context.console.print("  \(problem)") }
            }
        }
        return 0
    }

    static func timestamp(_ milliseconds: Int64) -> String {
        Date(timeIntervalSince1970: Double(milliseconds / 1000)).formatted(.iso8601)
    }
}
