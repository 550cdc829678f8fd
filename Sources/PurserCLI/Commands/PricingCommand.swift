import Foundation
import PurserCore
import PurserSQLite

/// `purser pricing list | validate | import-litellm FILE`.
enum PricingCommand {
    /// Its options, each declared once: the spec lists them and the command reads them through these keys.
    enum Options {
        static let output = OptionKey.text("output", value: "file", help: "Write the models file here (default: standard output).")
        static let providers = OptionKey.text("providers", value: "names", help: "Only these providers, comma-separated (e.g. openai,anthropic).")
        static let priceDate = OptionKey.text("price-date", value: "date", help: "The date the prices were read (default: today, UTC).")
        static let listSkipped = OptionKey.flag("list-skipped", help: "List every skipped entry with its reason.")
    }

    static let spec = CommandSpec(name: "pricing", overview: "List, check or import the pricing tables.")

    static let listSpec = CommandSpec(
        name: "pricing list", overview: "List the tables' models: quality, prices per million tokens, modes, context, whether a key is set.",
        options: [SharedOptions.pricing.option, SharedOptions.json.option])

    static let validateSpec = CommandSpec(
        name: "pricing validate", overview: "Check the tables: every problem, with its file and key.", options: [SharedOptions.pricing.option])

    static let importSpec = CommandSpec(
        name: "pricing import-litellm",
        overview: "Convert LiteLLM's price list into a models file, keeping quality, limits and speed from the current tables.",
        arguments: [.init(name: "file", help: "LiteLLM's model_prices_and_context_window.json.")],
        options: [
            Options.output.option,
            Options.providers.option,
            Options.priceDate.option,
            Options.listSkipped.option,
            SharedOptions.pricing.option,
        ])

    static var subcommand: Subcommand {
        Subcommand(spec: spec, children: [
            Subcommand(spec: listSpec, run: list), Subcommand(spec: validateSpec, run: validate), Subcommand(spec: importSpec, run: importLiteLLM),
        ])
    }

    static func list(_ arguments: ParsedArguments, context: CommandContext) throws -> Int32 {
        let catalog = try context.loadCatalog(arguments)
        let models = catalog.models.sorted { ($0.quality, $1.id) > ($1.quality, $0.id) }
        if arguments[SharedOptions.json] {
            context.printJSON(PricingFileWriter.modelsDocument(models))
            return 0
        }
        var table = TextTable(
            headers: ["model", "quality", "input $/M", "output $/M", "cached $/M", "modes", "context", "key"], rightAligned: [1, 2, 3, 4, 6])
        for model in models {
            var modes = ["sync"]
            if model.flexPrices != nil { modes.append("flex") }
            if !model.discountWindows.isEmpty { modes.append("offpeak") }
            if model.batchPrices != nil { modes.append("batch") }
            let provider = catalog.providers[model.provider]
            table.rows.append([
                model.id, String(model.quality), model.prices.input.usdPerMillionText, model.prices.output.usdPerMillionText,
                model.prices.cachedInput.usdPerMillionText, modes.joined(separator: ","), String(model.contextWindow),
                provider.map { $0.hasKey(in: context.environment) ? "set" : "no \($0.apiKeyEnvironmentVariable)" } ?? "?",
            ])
        }
        context.console.print(table.render())
        let dates = Set(catalog.models.map(\.priceDate)).sorted()
        context.console.print()
        context.console.print("\(count(catalog.models.count, "model")) from \(count(Set(catalog.models.map(\.provider)).count, "provider")); prices read \(dates.joined(separator: ", ")); batch goes through the provider's batch API (24-hour window) for requests whose deadline allows it")
        return 0
    }

    static func validate(_ arguments: ParsedArguments, context: CommandContext) throws -> Int32 {
        let catalog = try context.loadCatalog(arguments)
        context.console.print(
            "ok: \(count(catalog.models.count, "model")) from \(count(catalog.providers.count, "provider")), "
                + (catalog.references.isEmpty ? "" : "\(count(catalog.references.count, "reference row")) (named by lines, never served), ")
                + "\(count(catalog.tiers.quality.count, "quality tier")), \(count(catalog.tiers.deadline.count, "deadline tier"))")
        return 0
    }

    static func importLiteLLM(_ arguments: ParsedArguments, context: CommandContext) throws -> Int32 {
        let path = arguments.positionals[0]
        let document = try readJSON(path)
        // Quality, limits and speed are kept from the current tables, reference rows included; when they cannot be
        // read the import still runs, and says that nothing was kept.
        var existing: [Model] = []
        do {
            let catalog = try context.loadCatalog(arguments)
            existing = catalog.models + catalog.references
        } catch {
            context.console.error("note: the current tables could not be read, so no quality, limit or speed is kept from them: \(error)")
        }
        let priceDate = arguments[Options.priceDate] ?? Date().formatted(.iso8601.year().month().day())
        let providers = arguments[Options.providers].map { Set($0.split(separator: ",").map { String($0) }) }
        let result: LiteLLMImport.Result
        do {
            result = try LiteLLMImport.convert(document, existing: existing, priceDate: priceDate, onlyProviders: providers)
        } catch let problem as Problem {
            throw Problem("\(path): \(problem.message)")
        }
        guard !result.models.isEmpty else {
            if arguments[Options.listSkipped] { for skipped in result.skipped { context.console.error("  \(skipped.entry): \(skipped.reason)") } }
            let reasons = Set(result.skipped.map { LiteLLMImportSummary.category($0.reason) }).sorted().prefix(5).joined(separator: "; ")
            throw Problem("\(path): none of its \(count(result.skipped.count, "entry", plural: "entries")) could be imported (\(reasons))"
                + (arguments[Options.output].map { "; \($0) was left as it was" } ?? "") + "; pass --list-skipped to see each entry's reason")
        }
        let text = JSONWriter.string(PricingFileWriter.modelsDocument(result.models), pretty: true) + "\n"
        if let output = arguments[Options.output] {
            guard FileManager.default.createFile(atPath: output, contents: Data(text.utf8)) else { throw Problem("cannot write \(output)") }
        } else {
            context.console.print(text.trimmingTrailingNewline())
        }
        reportImport(result, from: path, listSkipped: arguments[Options.listSkipped], console: context.console)
        return 0
    }

    static func readJSON(_ path: String) throws -> JSONValue {
        guard let bytes = FileManager.default.contents(atPath: path) else { throw Problem("cannot read \(path)") }
        do {
            return try JSONParser.parse(Array(bytes))
        } catch {
            throw Problem("\(path): invalid JSON at byte \(error.column): \(error.reason)")
        }
    }

    /// What an import took and what it skipped, grouped by reason (each entry with `listSkipped`).
    static func reportImport(_ result: LiteLLMImport.Result, from path: String, listSkipped: Bool, console: Console) {
        let rated = result.models.filter { $0.quality > 0 }.count
        console.error("imported \(count(result.models.count, "chat model")) from \(path) (\(rated) with quality kept from the current tables, \(result.models.count - rated) unrated)")
        var reasons: [String: Int] = [:]
        for skipped in result.skipped { reasons[LiteLLMImportSummary.category(skipped.reason), default: 0] += 1 }
        console.error("skipped \(count(result.skipped.count, "entry", plural: "entries"))" + (listSkipped ? ":" : " (--list-skipped lists each):"))
        for (reason, number) in reasons.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) { console.error("  \(number)  \(reason)") }
        if listSkipped {
            for skipped in result.skipped { console.error("  \(skipped.entry): \(skipped.reason)") }
        }
    }
}

enum LiteLLMImportSummary {
    /// Groups reasons such as "mode is embedding, not chat" under "mode is not chat".
    static func category(_ reason: String) -> String {
        if reason.hasPrefix("mode is ") { return "not a chat model (mode is not chat)" }
        if reason.hasPrefix("provider ") && reason.hasSuffix("not selected") { return "provider not selected" }
        if reason.hasPrefix("duplicate of ") { return "duplicate of an entry already imported" }
        if reason.hasPrefix("a dated snapshot") { return "a dated snapshot, kept as an alias of its model" }
        return reason
    }
}
