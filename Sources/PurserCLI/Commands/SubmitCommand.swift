import Foundation
import PurserCore
import PurserSQLite

/// `purser submit FILE...`: stores job files, all or nothing.
enum SubmitCommand {
    /// Its options, each declared once: the spec lists them and the command reads them through these keys.
    enum Options {
        static let name = OptionKey.text("name", value: "name", help: "The job's name (default: the file name).")
        static let project = OptionKey.text("project", value: "project", help: "The project whose budget the job uses (default: default).")
        static let quality = OptionKey.text("quality", value: "tier-or-score", help: "Default quality floor: a tier name or 0–100.")
        static let deadline = OptionKey.text("deadline", value: "deadline", help: "Default deadline: 15m, 6h, 3d, an RFC 3339 time or a tier.")
        static let maxCost = OptionKey.text("max-cost", value: "usd", help: "A spending cap for the job, in US dollars.")
        static let skipInvalid = OptionKey.flag("skip-invalid", help: "Store the good lines and keep the bad ones, with reasons, on the job.")
        static let force = OptionKey.flag("force", help: "Submit again even if the same bytes were submitted before.")
        static let maxLineBytes = OptionKey.integer("max-line-bytes", value: "bytes", in: 64...(64 << 20), help: "The longest line accepted (default: 1048576).")
        static let onlyProviders = OptionKey.text("only-providers", value: "names", help: "Send the requests only to these providers (comma-separated), for data policy.")
        static let ignoreProviders = OptionKey.text("ignore-providers", value: "names", help: "Never send the requests to these providers (comma-separated).")
    }

    static let spec = CommandSpec(
        name: "submit",
        overview: "Store JSONL job files as jobs (each file is one job).",
        arguments: [.init(name: "files", help: "Job files in OpenAI batch, Anthropic batch or minimal lines; - reads standard input.", repeating: true)],
        options: [
            Options.name.option,
            Options.project.option,
            Options.quality.option,
            Options.deadline.option,
            Options.maxCost.option,
            Options.onlyProviders.option, Options.ignoreProviders.option,
            Options.skipInvalid.option,
            Options.force.option,
            Options.maxLineBytes.option,
            SharedOptions.database.option, SharedOptions.pricing.option, SharedOptions.json.option,
        ])

    static func options(_ arguments: ParsedArguments, catalog: PricingCatalog, now: Int64) throws -> SubmitOptions {
        var options = SubmitOptions()
        let only = arguments[Options.onlyProviders].map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        let ignore = arguments[Options.ignoreProviders].map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if only != nil || ignore != nil {
            for (flag, names) in [("--only-providers", only ?? []), ("--ignore-providers", ignore ?? [])] {
                if let unknown = names.first(where: { catalog.providers[$0] == nil }) {
                    throw UsageError(
                        message: "\(flag): '\(unknown)' is not a provider of the tables; use \(catalog.providers.keys.sorted().joined(separator: ", ")).", spec: spec)
                }
            }
            options.providers = ProviderFilter(only: only, ignore: ignore ?? [])
        }
        options.name = arguments[Options.name]
        options.project = arguments[Options.project] ?? "default"
        options.skipInvalid = arguments[Options.skipInvalid]
        options.force = arguments[Options.force]
        if let text = arguments[Options.quality] {
            let value: JSONValue = Int(text).map { .number(String($0)) } ?? .string(text)
            if case .failure(let problem) = RoutingText.quality(value, tiers: catalog.tiers) {
                throw UsageError(message: "--quality: \(problem.message).", spec: spec)
            }
            options.quality = value
        }
        if let text = arguments[Options.deadline] {
            if case .failure(let problem) = RoutingText.deadline(text, submittedAt: now, tiers: catalog.tiers) {
                throw UsageError(message: "--deadline: \(problem.message).", spec: spec)
            }
            options.deadline = text
        }
        if let text = arguments[Options.maxCost] {
            guard case .success(let money) = RoutingText.usd(.string(text), field: "--max-cost"), money > .zero else {
                throw UsageError(message: "--max-cost: '\(DecimalText.shown(text))' is not an amount of US dollars above zero, such as 25 or 7.50.", spec: spec)
            }
            options.maxCost = money
        }
        if let bytes = try arguments[Options.maxLineBytes] { options.maximumLineBytes = bytes }
        return options
    }

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws -> Int32 {
        let catalog = try context.loadCatalog(arguments)
        let options = try options(arguments, catalog: catalog, now: context.clock.now())
        let submitted = try StoreFile.submit(
            files: arguments.positionals, options: options, catalog: catalog, clock: context.clock, path: context.databasePath(arguments))
        if arguments[SharedOptions.json] {
            context.printJSON(.array(submitted.map { item in
                .object(JSONObject([
                    "job": .number(String(item.job.id)), "name": .string(item.job.name), "project": .string(item.job.project),
                    "source": .string(item.job.source), "requests": .number(String(item.job.requestCount)),
                    "rejected": .number(String(item.job.rejectedCount)), "already_submitted": .bool(item.alreadySubmitted),
                ]))
            }))
            return 0
        }
        let console = context.console
        for item in submitted {
            let job = item.job
            if item.alreadySubmitted {
                console.print("job \(job.id) \"\(job.name)\" already holds these bytes (\(count(job.requestCount, "request"))); nothing new was stored. Pass --force to submit again.")
                continue
            }
            console.print("job \(job.id) \"\(job.name)\" (project \(job.project)): \(count(job.requestCount, "request")) stored from \(job.source)")
            if job.rejectedCount > 0 {
                console.print("  \(count(job.rejectedCount, "line")) rejected and kept on the job:")
                for problem in item.rejected { console.print("    \(problem)") }
                if job.rejectedCount > item.rejected.count { console.print("    … and \(job.rejectedCount - item.rejected.count) more") }
            }
        }
        if let last = submitted.last {
            let simulateHint = PlanningContext.usableProviders(catalog: catalog, environment: context.environment, simulate: false).isEmpty
                ? " --simulate" : ""
            console.print("next: purser plan \(last.job.id)\(simulateHint) to see the plan, or purser run --job \(last.job.id)\(simulateHint) to serve it")
        }
        return 0
    }
}
