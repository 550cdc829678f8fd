import PurserCore
import PurserSQLite

/// `purser plan JOB`: chooses a model and mode for every request and shows the mix and the saving.
enum PlanCommand {
    /// Its options, each declared once: the spec lists them and the command reads them through these keys.
    enum Options {
        static let explain = OptionKey.text("explain", value: "custom-id", help: "Show every candidate model for one request, with its cost or why it was excluded.")
    }

    static let spec = CommandSpec(
        name: "plan",
        overview: "Plan a job: the cheapest model and mode for each request, with cost, baseline and saving.",
        arguments: [.init(name: "job", help: "The job's number or name.")],
        options: [
            Options.explain.option,
            SharedOptions.simulate.option, SharedOptions.database.option, SharedOptions.pricing.option, SharedOptions.json.option,
        ])

    static func run(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let catalog = try context.loadCatalog(arguments)
        let workspace = try context.openExistingDatabase(arguments).workspace
        let simulated = arguments[SharedOptions.simulate]
        let usable = PlanningContext.usableProviders(catalog: catalog, environment: context.environment, simulate: simulated)
        let job = arguments.positionals[0], now = context.clock.now()
        if let customID = arguments[Options.explain] {
            let explanation = try await workspace.explain(
                job: job, customID: customID, catalog: catalog, usableProviders: usable, now: now, simulated: simulated)
            PlanOutput.explanation(explanation, customID: customID, context: context, json: arguments[SharedOptions.json])
            return 0
        }
        let plan = try await workspace.plan(job: job, catalog: catalog, usableProviders: usable, now: now, simulated: simulated)
        PlanOutput.summary(
            plan.outcome.plan,
            title: "job \(plan.job.id) \"\(plan.job.name)\""
                + (plan.others.isEmpty ? "" : " and jobs \(plan.others.map(String.init).joined(separator: ", ")), whose plans no longer fitted"),
            catalog: catalog, arguments: arguments, context: context)
        if !arguments[SharedOptions.json] {
            for cap in plan.caps { context.console.print(budgetFit(plan.outcome.plan.estimatedCost, cap: cap, simulated: simulated)) }
        }
        return 0
    }

    /// Whether the plan's estimate fits in what a cap has left; requests past it would be held.
    static func budgetFit(_ estimate: Money, cap: CapUse, simulated: Bool) -> String {
        let ledger = simulated ? " (simulated ledger)" : ""
        return estimate <= cap.left
            ? "budget: \(cap.scopeText)\(ledger) has \(cap.left.formatted) left of \(cap.cap.formatted); the estimate fits"
            : "budget: \(cap.scopeText)\(ledger) has \(cap.left.formatted) left of \(cap.cap.formatted), less than the estimate: requests past it will be held until the cap is raised"
                + (cap.scope.isProject ? " or the month ends" : "")
    }

    static func planningContext(catalog: PricingCatalog, arguments: ParsedArguments, context: CommandContext) -> PlanningContext {
        PlanningContext(
            catalog: catalog, now: context.clock.now(),
            usableProviders: PlanningContext.usableProviders(catalog: catalog, environment: context.environment, simulate: arguments[SharedOptions.simulate]))
    }
}

/// How plans are shown, shared by `plan` and `estimate`.
enum PlanOutput {
    static func summary(_ plan: Plan, title: String, catalog: PricingCatalog, arguments: ParsedArguments, context: CommandContext) {
        let requests = plan.count
        if arguments[SharedOptions.json] {
            context.printJSON(.object(JSONObject([
                "requests": .number(String(requests)), "planned": .number(String(requests - plan.unplaced)),
                "unplaced": .number(String(plan.unplaced)),
                "mix": .array(plan.mix.map { line in
                    .object(JSONObject([
                        "model": .string(line.model), "mode": .string(line.mode.rawValue), "requests": .number(String(line.requests)),
                        "estimated_cost_usd": line.estimatedCost.jsonUSD,
                    ]))
                }),
                "estimated_cost_usd": plan.estimatedCost.jsonUSD, "lower_bound_usd": plan.lowerBound.jsonUSD,
                "gap_percent": plan.gapBasisPoints.map { .string(DecimalText.format($0, decimals: 2)) } ?? .null,
                "optimal": .bool(plan.isOptimal && !plan.placesNothing), "baseline_cost_usd": plan.baselineCost.jsonUSD,
                "placed_baseline_cost_usd": plan.placedBaselineCost.jsonUSD,
                "baseline_feasible": .bool(plan.baseline.isFeasible), "baseline_requests_over": .number(String(plan.baseline.requestsOver)),
                "saving_usd": plan.baseline.isFeasible && !plan.placesNothing ? plan.saving.jsonUSD : .null,
                "routing_saving_usd": plan.baseline.isFeasible && !plan.placesNothing ? plan.routingSaving.jsonUSD : .null,
                "caching": .object(JSONObject([
                    "requests": .number(String(plan.cachingRequests)), "cached_tokens": .number(String(plan.expectedCachedTokens)),
                    "saving_usd": plan.cacheSaving.jsonUSD,
                ])),
                "solver": .object(JSONObject([
                    "request_rows": .number(String(plan.solver.requestRows)), "token_rows": .number(String(plan.solver.tokenRows)),
                    "contested_classes": .number(String(plan.solver.contestedClasses)), "iterations": .number(String(plan.solver.iterations)),
                    "finished": .bool(plan.solver.linearProgramOptimal), "exhaustive": .bool(plan.solver.exhaustive),
                ])),
            ])))
            return
        }
        let console = context.console
        console.print("Plan for \(title): \(count(requests, "request"))")
        console.print()
        var table = TextTable(headers: ["model", "mode", "requests", "est. cost"], rightAligned: [2, 3])
        for line in plan.mix { table.rows.append([line.model, line.mode.rawValue, String(line.requests), line.estimatedCost.formatted]) }
        table.rows.append(["total", "", String(requests - plan.unplaced), plan.estimatedCost.formatted])
        console.print(table.render())
        console.print()
        for line in summaryLines(plan) { console.print(line) }
        let missing = catalog.providers.values.filter { !$0.hasKey(in: context.environment) }.map(\.name).sorted()
        if plan.unplaced > 0 {
            let why = !arguments[SharedOptions.simulate] && missing.count == catalog.providers.count
                ? "no provider has its key set" : "no eligible model has room before the deadline"
            console.print("\(count(plan.unplaced, "request")) cannot be placed: \(why); they stay queued. 'purser plan JOB --explain CUSTOM_ID' shows why.")
        }
        if !arguments[SharedOptions.simulate], !missing.isEmpty {
            console.print("not considered (no key set): \(missing.joined(separator: ", ")); set their keys or pass --simulate")
        }
    }

    /// The baseline, the saving, the lower bound and the gap, in words.
    static func summaryLines(_ plan: Plan) -> [String] {
        var lines: [String] = []
        if plan.placesNothing {
            return ["baseline (each request on its reference model, sync): \(plan.baselineCost.formatted); this plan places nothing, so it claims no saving and no optimality"]
        }
        if plan.baseline.isFeasible && plan.unplaced > 0 {
            lines.append("baseline of the \(count(plan.count - plan.unplaced, "placed request")) (each on its reference model, sync): \(plan.placedBaselineCost.formatted)")
            lines.append("saving on them: \(plan.saving.formatted) (\(percentText(plan.savingBasisPoints)))")
        } else if plan.baseline.isFeasible {
            lines.append("baseline (each request on its reference model, sync, within the same limits): \(plan.baselineCost.formatted)")
            lines.append("saving: \(plan.saving.formatted) (\(percentText(plan.savingBasisPoints)))")
        } else {
            lines.append("baseline (each request on its reference model, sync): \(plan.baselineCost.formatted), but not achievable: "
                + "\(count(plan.baseline.requestsOver, "request")) could not start on \(plan.baseline.requestsOver == 1 ? "its" : "their") reference model before \(plan.baseline.requestsOver == 1 ? "its" : "their") deadline within its rate limits, so no saving is claimed")
        }
        if plan.cachingRequests > 0 || plan.cacheSaving != .zero {
            let routing = !plan.baseline.isFeasible ? ""
                : plan.routingSaving > .zero ? "; routing saves the rest, \(plan.routingSaving.formatted)" : "; routing saves nothing more"
            lines.append("prompt caching: \(count(plan.cachingRequests, "request")) expected to read a shared prefix from the cache "
                + "(\(grouped(plan.expectedCachedTokens)) tokens), saving \(plan.cacheSaving.formatted) against the same plan uncached\(routing)")
        }
        let bound = "lower bound: \(plan.lowerBound.formatted) (no plan within these limits that places as many requests costs less)"
        if plan.isOptimal {
            lines.append(bound + "; this plan costs exactly that: optimal")
        } else if plan.gapBasisPoints != nil {
            lines.append(bound + "; gap \(plan.gapText)")
        } else {
            lines.append(bound + "; no useful bound, so the gap is unknown")
        }
        if !plan.solver.linearProgramOptimal {
            lines.append("note: the solver stopped at its time budget before proving its prices; the plan is feasible and the gap above is honest")
        }
        return lines
    }

    static func explanation(_ explanation: PlanExplanation, customID: String, context: CommandContext, json: Bool) {
        let request = explanation.request
        if json {
            context.printJSON(.object(JSONObject([
                "custom_id": .string(customID), "quality_floor": .number(String(request.needs.qualityFloor)),
                "input_tokens": .number(String(request.needs.inputTokens)), "max_output_tokens": .number(String(request.needs.maxOutputTokens)),
                "baseline_cost_usd": explanation.baselineCost.jsonUSD, "batch_note": explanation.batchNote.map { .string($0) } ?? .null,
                "prefix_group": explanation.prefixGroup.map { group in
                    .object(JSONObject(["tokens": .number(String(group.tokens)), "requests": .number(String(group.requests))]))
                } ?? .null,
                "candidates": .array(explanation.candidates.map { candidate in
                    var object = JSONObject(["model": .string(candidate.model), "quality": .number(String(candidate.quality))])
                    if let cost = candidate.bestCost { object["cost_usd"] = cost.jsonUSD }
                    if let mode = candidate.bestMode { object["mode"] = .string(mode.rawValue) }
                    if let exclusion = candidate.exclusion { object["excluded"] = .string(exclusion.description) }
                    if let cache = candidate.cache {
                        object["cache"] = .object(JSONObject([
                            "cached_tokens": .number(String(cache.tokens)), "hit_percent": .string(DecimalText.format(cache.hitBasisPoints, decimals: 2)),
                            "cached_price_per_million_usd": .string(cache.pricePerMillion.usdPerMillionText), "group_write_usd": cache.write.jsonUSD,
                        ]))
                    }
                    object["chosen"] = .bool(candidate.chosen)
                    return .object(object)
                }),
            ])))
            return
        }
        let console = context.console
        console.print("Request \(JSONWriter.quoted(customID)): quality floor \(request.needs.qualityFloor) (\(request.needs.qualityTier)), ~\(request.needs.inputTokens) input tokens, max_tokens \(request.needs.maxOutputTokens)"
            + (request.referenceModel.map { ", reference \($0)" } ?? ""))
        if let group = explanation.prefixGroup {
            console.print("prefix group: ~\(grouped(Int64(group.tokens))) tokens of leading content shared by \(count(group.requests, "request")) of this plan; "
                + "a model that caches it prices them as cached reads, and its cost carries a share of the one write the group pays there")
        }
        console.print()
        let caching = explanation.candidates.contains { $0.cache != nil }
        var table = TextTable(
            headers: ["", "model", "quality", "est. cost", "mode"] + (caching ? ["cache"] : []) + ["why not"], rightAligned: [2, 3])
        let chosenCost = explanation.candidates.first { $0.chosen }?.bestCost
        for candidate in explanation.candidates {
            table.rows.append([
                candidate.chosen ? "*" : "", candidate.model, String(candidate.quality), candidate.bestCost?.formatted ?? "-",
                candidate.bestMode?.rawValue ?? "-",
            ] + (caching ? [candidate.cache.map(cacheText) ?? "-"] : []) + [
                candidate.exclusion?.description ?? reason(candidate, chosenCost: chosenCost),
            ])
        }
        console.print(table.render())
        console.print()
        if let note = explanation.batchNote { console.print(note) }
        console.print("baseline: \(explanation.baselineCost.formatted)")
    }

    /// A model's cache terms in a few words: `2,944 at $0.30/M, group write $0.0110`, with the hit rate when not every call reads.
    static func cacheText(_ cache: PlanExplanation.CacheUse) -> String {
        let hits = cache.hitBasisPoints < 10_000 ? " (\(DecimalText.format(cache.hitBasisPoints, decimals: 2))% read)" : ""
        return "\(grouped(Int64(cache.tokens))) at $\(cache.pricePerMillion.usdPerMillionText)/M\(hits), group write \(cache.write.formatted)"
    }

    /// Why a model that could serve the request was not chosen, against the chosen one's cost.
    static func reason(_ candidate: PlanExplanation.Candidate, chosenCost: Money?) -> String {
        if candidate.chosen { return "chosen" }
        guard let cost = candidate.bestCost else { return "" }
        guard let chosenCost else { return "no room left before the deadline" }
        if cost > chosenCost { return "costs more" }
        if cost == chosenCost { return "same cost; ties go to higher quality, then faster, then the name" }
        return "cheaper, but its room before the deadline went to requests that save more there"
    }
}
