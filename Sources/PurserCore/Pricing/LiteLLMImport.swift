/// Converts LiteLLM's `model_prices_and_context_window.json` (per-token USD prices) into Purser's
/// model tables, so prices can be refreshed from the file that community maintains.
///
/// Quality scores, rate limits and speeds are not in LiteLLM's file: they are kept from `existing`
/// when the model is already in the tables, and otherwise set to quality 0 ("unrated", so the model is
/// only chosen for requests that ask for nothing better) and conservative defaults.
public struct LiteLLMImport {
    public struct Skipped: Sendable, Hashable {
        public var entry: String
        public var reason: String
    }

    public struct Result: Sendable {
        public var models: [Model]
        public var skipped: [Skipped]
    }

    /// LiteLLM provider names that differ from Purser's.
    public static let providerNames = ["gemini": "google", "together_ai": "together", "fireworks_ai": "fireworks"]

    public static let unratedSource = "unrated: imported from LiteLLM, which carries no quality score; set one from your evals"

    public static func convert(
        _ document: JSONValue, existing: [Model], priceDate: String, onlyProviders: Set<String>? = nil
    ) throws -> Result {
        guard let entries = document.objectValue else {
            throw Problem("expected a JSON object of model entries, found \(document.kindName)")
        }
        var models: [Model] = []
        var skipped: [Skipped] = []
        var seen: Set<String> = []
        func skip(_ entry: String, _ reason: String) { skipped.append(Skipped(entry: entry, reason: reason)) }
        for member in entries.members {
            let name = member.key
            guard name != "sample_spec" else { skip(name, "documentation entry, not a model"); continue }
            guard let entry = member.value.objectValue else { skip(name, "not an object"); continue }
            let mode = entry["mode"]?.stringValue ?? "unknown"
            guard mode == "chat" else { skip(name, "mode is \(mode), not chat"); continue }
            guard let litellmProvider = entry["litellm_provider"]?.stringValue else { skip(name, "no litellm_provider"); continue }
            let provider = providerNames[litellmProvider] ?? litellmProvider
            if let onlyProviders, !onlyProviders.contains(provider) { skip(name, "provider \(provider) not selected"); continue }
            let inputText: String, outputText: String
            switch (priceText(entry, "input_cost_per_token"), priceText(entry, "output_cost_per_token")) {
            case (.success(let input?), .success(let output?)):
                (inputText, outputText) = (input, output)
            case (.failure(let problem), _), (_, .failure(let problem)):
                skip(name, problem.message)
                continue
            default:
                skip(name, "lacks input_cost_per_token or output_cost_per_token")
                continue
            }
            var prices: TokenPrices
            do {
                prices = try tokenPrices(input: inputText, output: outputText, cached: entry["cache_read_input_token_cost"]?.numberText)
                try addWrites(&prices, entry, suffix: "")
            } catch {
                skip(name, "price not representable: \(error)")
                continue
            }
            guard prices.input.microUSDPerMillion >= 0, prices.output.microUSDPerMillion >= 0 else { skip(name, "negative price"); continue }
            guard prices.input <= TokenPrice.maximum, prices.output <= TokenPrice.maximum else {
                skip(name, "price above \(TokenPrice.maximum.usdPerMillionText) USD per million tokens, the most Purser accepts")
                continue
            }
            let contextKey = entry["max_input_tokens"] == nil ? "max_tokens" : "max_input_tokens"
            guard let contextValue = entry[contextKey], !contextValue.isNull else {
                skip(name, "lacks max_input_tokens")
                continue
            }
            guard let context = contextValue.intValue, context > 0 else {
                let shown = contextValue.numberText.map(DecimalText.shown) ?? contextValue.kindName
                skip(name, "\(contextKey) \(shown) is not a whole number from 1 to \(Model.maximumContextTokens)")
                continue
            }
            guard context <= Model.maximumContextTokens else {
                skip(name, "max_input_tokens \(context) is above \(Model.maximumContextTokens), the most Purser accepts")
                continue
            }
            let providerModel = name.hasPrefix(litellmProvider + "/") ? String(name.dropFirst(litellmProvider.count + 1)) : name
            let id = "\(provider)/\(providerModel)"
            guard !seen.contains(id) else { skip(name, "duplicate of \(id)"); continue }
            seen.insert(id)
            var batch: TokenPrices?
            if let batchInput = entry["input_cost_per_token_batches"]?.numberText, let batchOutput = entry["output_cost_per_token_batches"]?.numberText {
                // A batch price (or batch write price) that cannot be represented leaves the model without batch prices, as
                // the current row's are then kept (below): never half a mode's prices.
                do {
                    var priced = try tokenPrices(input: batchInput, output: batchOutput, cached: entry["cache_read_input_token_cost_batches"]?.numberText)
                    try addWrites(&priced, entry, suffix: "_batches")
                    batch = priced
                } catch {
                    batch = nil
                }
            }
            var flex: TokenPrices?
            if provider == "openai", let flexInput = entry["input_cost_per_token_flex"]?.numberText,
                let flexOutput = entry["output_cost_per_token_flex"]?.numberText
            {
                flex = try? tokenPrices(input: flexInput, output: flexOutput, cached: entry["cache_read_input_token_cost_flex"]?.numberText)
            }
            let maxOutput = min(max(entry["max_output_tokens"]?.intValue ?? 4096, 1), context)
            var capabilities: Capabilities = []
            if entry["supports_function_calling"]?.boolValue == true { capabilities.insert(.tools) }
            let known = existing.first { $0.id == id }
            // LiteLLM says whether a model takes a JSON schema; JSON mode without one is the current row's to say, and
            // otherwise what OpenAI-dialect providers offer beside schemas (Anthropic has no schema-less JSON mode).
            if entry["supports_response_schema"]?.boolValue == true {
                capabilities.insert(.jsonSchema)
                if known.map({ $0.capabilities.contains(.jsonMode) }) ?? (provider != "anthropic") { capabilities.insert(.jsonMode) }
            }
            if entry["supports_vision"]?.boolValue == true { capabilities.insert(.vision) }
            let source = entry["source"]?.stringValue.flatMap { $0.hasPrefix("http") ? $0 : nil }
                ?? known?.priceSource
                ?? "https://github.com/BerriAI/litellm/blob/main/model_prices_and_context_window.json"
            var model = Model(
                id: id, provider: provider, providerModel: providerModel, prices: prices, batchPrices: batch ?? known?.batchPrices,
                flexPrices: flex ?? known?.flexPrices, contextWindow: context, maxOutputTokens: maxOutput, quality: known?.quality ?? 0,
                qualitySource: known?.qualitySource ?? unratedSource, capabilities: capabilities,
                rateLimits: known?.rateLimits ?? RateLimits(
                    requestsPerMinute: min(max(entry["rpm"]?.intValue ?? 60, 1), RateLimits.maximumRequestsPerMinute),
                    tokensPerMinute: min(max(entry["tpm"]?.intValue ?? 100_000, 1), RateLimits.maximumTokensPerMinute)),
                speed: known?.speed ?? Speed(timeToFirstTokenMilliseconds: 1_000, outputTokensPerSecond: 50),
                discountWindows: known?.discountWindows ?? [], priceDate: priceDate, priceSource: source)
            // What a model refuses and how it takes its limit are not in LiteLLM's file: the current row's are kept.
            model.parameters = known?.parameters ?? ModelParameters()
            model.caching = cachingRule(entry, provider: provider, prices: prices, batch: model.batchPrices, flex: model.flexPrices, known: known?.caching)
            models.append(model)
        }
        return Result(models: foldSnapshots(models, skipped: &skipped), skipped: skipped)
    }

    /// Dated snapshots (`gpt-4o-2024-08-06`) become aliases of their base model (`gpt-4o`) at the same provider,
    /// keeping its quality and everything else, rather than rows of their own at quality 0; a snapshot whose base
    /// is not imported stays a row.
    static func foldSnapshots(_ models: [Model], skipped: inout [Skipped]) -> [Model] {
        var indexByName: [String: Int] = [:]
        for (index, model) in models.enumerated() { indexByName[model.provider + "/" + model.providerModel] = index }
        var folded = models
        var dropped: Set<Int> = []
        for (index, model) in models.enumerated() {
            guard let base = ModelNames.undated(model.providerModel).lazy.compactMap({ indexByName[model.provider + "/" + $0] }).first,
                base != index
            else { continue }
            folded[base].aliases.append(model.providerModel)
            dropped.insert(index)
            skipped.append(Skipped(entry: model.providerModel, reason: "a dated snapshot: kept as an alias of \(models[base].id)"))
        }
        return folded.enumerated().filter { !dropped.contains($0.offset) }.map(\.element)
    }

    /// A per-token price field: its number text, nil when absent, or why it cannot be read.
    private static func priceText(_ entry: JSONObject, _ key: String) -> Swift.Result<String?, Problem> {
        guard let value = entry[key], !value.isNull else { return .success(nil) }
        if let text = value.numberText { return .success(text) }
        if let text = value.stringValue { return .failure(Problem("\(key) is a string (\(JSONWriter.quoted(String(text.prefix(40))))), not a number")) }
        return .failure(Problem("\(key) is \(value.kindName), not a number"))
    }

    /// LiteLLM's cache write prices (`cache_creation_input_token_cost` for five minutes, `…_above_1hr` for an hour, with
    /// `suffix` for a mode's own): a write at or below the input price is no fee, and is left out.
    private static func addWrites(_ prices: inout TokenPrices, _ entry: JSONObject, suffix: String) throws(DecimalText.Failure) {
        func write(_ key: String) throws(DecimalText.Failure) -> TokenPrice? {
            guard let text = entry[key]?.numberText else { return nil }
            let price = try TokenPrice(usdPerToken: text)
            return price > prices.input && price <= TokenPrice.maximum ? price : nil
        }
        prices.cacheWrite5m = try write("cache_creation_input_token_cost" + suffix)
        prices.cacheWrite1h = try write("cache_creation_input_token_cost_above_1hr" + suffix)
    }

    /// The caching rule an entry implies: where its cached read is dearer than nothing and cheaper than input.
    /// Anthropic's is explicit (a breakpoint), the others automatic; the minimum is `prompt_cache_min_tokens`, else the
    /// current row's, else OpenAI's documented 1,024 (other providers' minimums are not guessed: no rule); how batch and
    /// flex treat caching is read off their prices.
    static func cachingRule(_ entry: JSONObject, provider: String, prices: TokenPrices, batch: TokenPrices?, flex: TokenPrices?, known: CachingRule?) -> CachingRule? {
        guard prices.cachedInput < prices.input else { return nil }
        let stated = entry["prompt_cache_min_tokens"]?.intValue.flatMap { (1...CachingRule.maximumTokens).contains($0) ? $0 : nil }
        guard let minimum = stated ?? known?.minimumPrefixTokens ?? (provider == "openai" ? 1_024 : nil) else { return nil }
        func inMode(_ discounted: TokenPrices?) -> CachingRule.InMode {
            guard let discounted, discounted.cachedInput < discounted.input else { return .none }
            if discounted.cachedInput.microUSDPerMillion * 2 == prices.cachedInput.microUSDPerMillion { return provider == "anthropic" ? .bestEffort : .halved }
            return discounted.cachedInput == prices.cachedInput ? .full : .bestEffort
        }
        return CachingRule(
            mode: provider == "anthropic" ? .explicit : .automatic, minimumPrefixTokens: minimum,
            stepTokens: min(known?.stepTokens ?? (provider == "openai" ? 128 : 1), minimum), batch: inMode(batch), flex: inMode(flex),
            source: known?.source ?? "https://github.com/BerriAI/litellm/blob/main/model_prices_and_context_window.json")
    }

    private static func tokenPrices(input: String, output: String, cached: String?) throws(DecimalText.Failure) -> TokenPrices {
        let inputPrice = try TokenPrice(usdPerToken: input)
        return TokenPrices(
            input: inputPrice, output: try TokenPrice(usdPerToken: output), cachedInput: try cached.map { text throws(DecimalText.Failure) in try TokenPrice(usdPerToken: text) } ?? inputPrice)
    }
}

/// Writes models in the pricing files' format (the inverse of `PricingCatalog`'s reader).
public enum PricingFileWriter {
    public static func modelsDocument(_ models: [Model]) -> JSONValue {
        .object(JSONObject(["models": .array(models.map(modelValue))]))
    }

    static func pricesValue(_ prices: TokenPrices) -> JSONValue {
        var object = JSONObject([
            "input": .string(prices.input.usdPerMillionText), "output": .string(prices.output.usdPerMillionText),
            "cached_input": .string(prices.cachedInput.usdPerMillionText),
        ])
        if let write = prices.cacheWrite5m { object["cache_write_5m"] = .string(write.usdPerMillionText) }
        if let write = prices.cacheWrite1h { object["cache_write_1h"] = .string(write.usdPerMillionText) }
        return .object(object)
    }

    static func modelValue(_ model: Model) -> JSONValue {
        var object = JSONObject([
            "id": .string(model.id), "provider": .string(model.provider), "model": .string(model.providerModel),
            "prices": pricesValue(model.prices),
        ])
        if let batch = model.batchPrices { object["batch_prices"] = pricesValue(batch) }
        if let flex = model.flexPrices { object["flex_prices"] = pricesValue(flex) }
        object["context_window"] = .number(String(model.contextWindow))
        object["max_output_tokens"] = .number(String(model.maxOutputTokens))
        object["quality"] = .object(JSONObject(["score": .number(String(model.quality)), "source": .string(model.qualitySource)]))
        object["capabilities"] = .array(model.capabilities.featureNames.map { .string($0) })
        object["rate_limits"] = .object(JSONObject([
            "requests_per_minute": .number(String(model.rateLimits.requestsPerMinute)),
            "tokens_per_minute": .number(String(model.rateLimits.tokensPerMinute)),
        ]))
        object["speed"] = .object(JSONObject([
            "time_to_first_token_ms": .number(String(model.speed.timeToFirstTokenMilliseconds)),
            "output_tokens_per_second": .number(String(model.speed.outputTokensPerSecond)),
        ]))
        if !model.discountWindows.isEmpty {
            object["discount_windows"] = .array(model.discountWindows.map { window in
                .object(JSONObject([
                    "days": .array(window.weekdays.sorted().map { .string(DiscountWindow.weekdayNames[$0 - 1]) }),
                    "start": .string(clock(window.startMinute)), "end": .string(clock(window.endMinute)),
                    "time_zone": .string(window.timeZoneIdentifier),
                    "multiplier": .string(DecimalText.format(window.multiplierBasisPoints, decimals: 4)),
                ]))
            })
        }
        if !model.aliases.isEmpty { object["aliases"] = .array(model.aliases.map { .string($0) }) }
        if model.referenceOnly { object["reference_only"] = .bool(true) }
        if !model.parameters.isDefault {
            var parameters = JSONObject()
            let refused = model.parameters.unsupported.names
            if !refused.isEmpty { parameters["unsupported"] = .array(refused.map { .string($0) }) }
            if let name = model.parameters.outputLimitName { parameters["output_limit"] = .string(name) }
            if model.parameters.reasoningRoomTokens > 0 {
                parameters["reasoning_room_tokens"] = .number(String(model.parameters.reasoningRoomTokens))
            }
            if let source = model.parameters.source { parameters["source"] = .string(source) }
            object["parameters"] = .object(parameters)
        }
        if let caching = model.caching {
            var rule = JSONObject(["mode": .string(caching.mode.rawValue), "min_prefix_tokens": .number(String(caching.minimumPrefixTokens))])
            if caching.stepTokens != 1 { rule["step_tokens"] = .number(String(caching.stepTokens)) }
            if model.batchPrices != nil || caching.batch != .none { rule["batch"] = .string(caching.batch.rawValue) }
            if model.flexPrices != nil || caching.flex != .none { rule["flex"] = .string(caching.flex.rawValue) }
            rule["source"] = .string(caching.source)
            object["caching"] = .object(rule)
        }
        object["price_date"] = .string(model.priceDate)
        object["price_source"] = .string(model.priceSource)
        return .object(object)
    }

    private static func clock(_ minutes: Int) -> String {
        let hours = minutes / 60, rest = minutes % 60
        return (hours < 10 ? "0" : "") + String(hours) + ":" + (rest < 10 ? "0" : "") + String(rest)
    }
}
