import Foundation
import PurserCore
import PurserSQLite

/// `purser status [JOB]`: per job, requests by state and the plan's cost.
enum StatusCommand {
    static let spec = CommandSpec(
        name: "status",
        overview: "Show jobs: requests by state, what they spent, the estimate and baseline of their plans, and the budgets' use.",
        arguments: [.init(name: "job", help: "One job's number or name (default: every job).", optional: true)],
        options: [SharedOptions.database.option, SharedOptions.json.option])

    static func run(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let report = try await context.openDatabaseForReading(arguments).workspace.status(job: arguments.positionals.first, now: context.clock.now())
        if arguments[SharedOptions.json] {
            context.printJSON(.array(report.jobs.map { json($0, caps: report.caps) }))
        } else {
            render(report, console: context.console)
        }
        return 0
    }

    static func json(_ row: JobStatus, caps: [CapUse]) -> JSONValue {
        .object(JSONObject([
            "job": .number(String(row.job.id)), "name": .string(row.job.name), "project": .string(row.job.project),
            "submitted_at": .string(timestampText(row.job.submittedAt)), "requests": .number(String(row.job.requestCount)),
            "rejected": .number(String(row.job.rejectedCount)),
            "states": .object(JSONObject(RequestState.allCases.compactMap { state in
                row.counts[state].map { JSONObject.Member(key: state.rawValue, value: .number(String($0))) }
            })),
            "estimated_cost_usd": row.estimated.jsonUSD, "baseline_cost_usd": row.baseline.jsonUSD, "spent_usd": row.spent.jsonUSD,
            "unsettled_usd": row.unsettled.amount.jsonUSD, "unsettled_calls": .number(String(row.unsettled.calls)),
            "simulated_results": .number(String(row.simulatedResults)),
            "max_cost_usd": row.job.maxCost?.jsonUSD ?? .null,
            "caps": .array(caps.filter { $0.applies(to: row.job) }.map { .object(JSONObject($0.jsonMembers)) }),
            "modes": .object(JSONObject(row.modes.map { mode in
                JSONObject.Member(key: mode.mode, value: .object(JSONObject(["requests": .number(String(mode.requests)), "done": .number(String(mode.done))])))
            })),
            "batches": .array(row.batches.map(json)),
        ]))
    }

    static func json(_ batch: BatchSummary) -> JSONValue {
        .object(JSONObject([
            "batch": .number(String(batch.id)), "provider": .string(batch.provider), "model": .string(batch.model),
            "state": .string(batch.state), "provider_status": batch.providerStatus.map { .string($0) } ?? .null,
            "provider_batch_id": batch.providerBatchID.map { .string($0) } ?? .null, "requests": .number(String(batch.requests)),
            "submitted_at": batch.submittedAt.map { .string(timestampText($0)) } ?? .null,
            "last_error": batch.lastError.map { .string($0) } ?? .null,
        ]))
    }

    static func render(_ report: StatusReport, console: Console) {
        guard !report.jobs.isEmpty else {
            console.print("No jobs yet. Submit one with: purser submit jobs/quickstart.jsonl")
            return
        }
        var table = TextTable(headers: ["job", "name", "project", "requests", "states", "spent", "est. cost", "baseline"], rightAligned: [0, 3, 5, 6, 7])
        for row in report.jobs {
            let states = RequestState.allCases.compactMap { state in row.counts[state].map { "\(state.rawValue) \($0)" } }.joined(separator: ", ")
            table.rows.append([
                String(row.job.id), row.job.name, row.job.project, String(row.job.requestCount), states,
                row.spent.formatted + (row.simulatedResults > 0 ? " (simulated)" : ""), row.estimated.formatted, row.baseline.formatted,
            ])
        }
        console.print(table.render())
        let unsettledCalls = report.jobs.reduce(0) { $0 + $1.unsettled.calls }
        if unsettledCalls > 0 {
            console.print(BudgetCommand.unsettledLine(calls: unsettledCalls, amount: report.jobs.reduce(Money.zero) { $0 + $1.unsettled.amount }))
        }
        if !report.caps.isEmpty {
            console.print()
            for use in report.caps { console.print(BudgetCommand.line(use, simulated: false)) }
            for use in report.rehearsals { console.print(BudgetCommand.line(use, simulated: true)) }
        }
        if let only = report.jobs.first, report.jobs.count == 1 { render(only, console: console) }
    }

    /// What `status JOB` adds for one job: where it came from, its modes, its batches and its rejected lines.
    static func render(_ only: JobStatus, console: Console) {
        console.print()
        console.print("submitted \(timestampText(only.job.submittedAt)) from \(only.job.source)" + (only.job.maxCost.map { "; capped at \($0.formatted)" } ?? ""))
        if !only.modes.isEmpty {
            console.print("by mode: " + only.modes.map { "\($0.mode) \($0.requests)" + ($0.done < $0.requests ? " (\($0.done) done)" : "") }.joined(separator: ", "))
        }
        for batch in only.batches {
            let at = batch.providerBatchID.map { " as \($0)" } ?? ""
            let since = batch.submittedAt.map { ", sent \(timestampText($0))" } ?? ", not sent yet"
            console.print("batch \(batch.id): \(count(batch.requests, "request")) for \(batch.model) at \(batch.provider)\(at)"
                + " (\(batch.providerStatus ?? batch.state)\(since))" + (batch.lastError.map { "; last error: \($0)" } ?? ""))
        }
        if only.job.rejectedCount > 0 {
            console.print("\(count(only.job.rejectedCount, "line")) rejected at submit:")
            for problem in only.rejections { console.print("  \(problem)") }
        }
    }
}
