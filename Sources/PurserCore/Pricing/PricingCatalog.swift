import Foundation

/// The pricing tables: models, providers and tiers, loaded from a folder of JSON files and validated whole.
///
/// The folder holds `providers.json`, `tiers.json`, and any number of model files (`openai.json`…),
/// each `{"models": [...]}`.
public struct PricingCatalog: Sendable {
    /// The models Purser serves.
    public var models: [Model] { didSet { modelIndex = PricingCatalog.index(models) } }
    /// Where each model's id is in `models` (the first, should one be named twice): a run looks models up for every call.
    private var modelIndex: [String: Int] = [:]
    /// Models a request may name as its reference but Purser does not serve (`reference_only`): for floors and baselines.
    public var references: [Model]
    public var providers: [String: Provider]
    public var tiers: Tiers

    public init(models: [Model], references: [Model] = [], providers: [String: Provider], tiers: Tiers) {
        func withDialect(_ model: Model) -> Model {
            var model = model
            model.parameters.dialectLacks = providers[model.provider]?.dialect == .openai ? .topK : []
            return model
        }
        self.models = models.map(withDialect)
        modelIndex = PricingCatalog.index(self.models)
        self.references = references.map(withDialect)
        self.providers = providers
        self.tiers = tiers
    }

    public func model(id: String) -> Model? { modelIndex[id].map { models[$0] } }

    private static func index(_ models: [Model]) -> [String: Int] {
        var index: [String: Int] = [:]
        for (position, model) in models.enumerated() where index[model.id] == nil { index[model.id] = position }
        return index
    }

    /// A served model or a reference row, by Purser id.
    public func modelOrReference(id: String) -> Model? { model(id: id) ?? references.first { $0.id == id } }

    /// The model a request body names, as users write it: a Purser id, the provider's model name, one of its
    /// aliases, or a dated snapshot of any of those; served models before reference rows, preferring a provider
    /// that speaks `dialect` and then the cheapest.
    public func referenceModel(named name: String, preferring dialect: Provider.Dialect?) -> Model? {
        if let exact = modelOrReference(id: name) { return exact }
        for candidate in [name] + ModelNames.undated(name) {
            for rows in [models, references] {
                let matches = rows.filter { $0.providerModel == candidate || $0.aliases.contains(candidate) }
                if let best = matches.min(by: { lhs, rhs in
                    let lhsPreferred = providers[lhs.provider]?.dialect == dialect
                    let rhsPreferred = providers[rhs.provider]?.dialect == dialect
                    if lhsPreferred != rhsPreferred { return lhsPreferred }
                    return (lhs.prices.input, lhs.id) < (rhs.prices.input, rhs.id)
                }) { return best }
            }
        }
        return nil
    }

    /// Loads and validates every file in `directory`; throws every problem found at once.
    public static func load(directory: String) throws -> PricingCatalog {
        let folder = URL(fileURLWithPath: directory)
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        } catch {
            throw PricingTablesInvalid(problems: [
                PricingProblem(file: directory, key: "", message: "cannot read the pricing folder; pass --pricing DIR or set PURSER_PRICING")
            ])
        }
        var files: [String: [UInt8]] = [:]
        for name in names { if let bytes = FileManager.default.contents(atPath: folder.appendingPathComponent(name).path) { files[name] = Array(bytes) } }
        return try load(files: files, names: names, origin: directory)
    }

    /// The tables built into the executable (`BundledPricing`, made from `pricing/` by scripts/bundle-pricing.sh):
    /// what Purser plans with when no folder is given and none is beside it.
    public static func bundled() throws -> PricingCatalog {
        var files: [String: [UInt8]] = [:]
        for (name, text) in BundledPricing.files { files[name] = Array(text.utf8) }
        return try load(files: files, names: BundledPricing.files.map(\.name).sorted(), origin: "(built-in tables)")
    }

    /// Loads and validates the files named `names` (their bytes in `files`); `origin` names where they came from in messages.
    static func load(files: [String: [UInt8]], names: [String], origin directory: String) throws -> PricingCatalog {
        var problems: [PricingProblem] = []
        func document(_ name: String) -> (file: String, value: JSONValue)? {
            let file = "\(directory.hasSuffix("/") ? directory : directory + "/")\(name)"
            guard let bytes = files[name] else {
                problems.append(PricingProblem(file: file, key: "", message: "missing or unreadable"))
                return nil
            }
            do {
                return (file, try JSONParser.parse(Array(bytes)))
            } catch {
                let line = Array(bytes.prefix(error.column - 1)).filter { $0 == 0x0A }.count + 1
                problems.append(PricingProblem(file: file, key: "", message: "invalid JSON at line \(line): \(error.reason)"))
                return nil
            }
        }

        var providers: [String: Provider] = [:]
        if let (file, value) = document("providers.json") {
            providers = readProviders(value, file: file, problems: &problems)
        }
        var tiers: Tiers?
        if let (file, value) = document("tiers.json") {
            tiers = readTiers(value, file: file, problems: &problems)
        }
        var models: [Model] = [], references: [Model] = []
        var firstDefinition: [String: String] = [:]
        for name in names where name != "providers.json" && name != "tiers.json" {
            guard let (file, value) = document(name) else { continue }
            for (index, id, model) in readModels(value, file: file, problems: &problems) {
                // Duplicates are found from the ids as written, even in entries with other problems.
                if let id {
                    if let earlier = firstDefinition[id] {
                        problems.append(PricingProblem(file: file, key: "models[\(index)].id", message: "duplicate id '\(id)', already defined in \(earlier)"))
                        continue
                    }
                    firstDefinition[id] = file
                }
                guard let model else { continue }
                if providers[model.provider] == nil, !providers.isEmpty {
                    problems.append(PricingProblem(
                        file: file, key: "models[\(index)].provider",
                        message: "provider '\(model.provider)' is not in providers.json; add it there"))
                }
                if model.referenceOnly { references.append(model) } else { models.append(model) }
            }
        }
        problems += checkNamesAreOnce(models + references, directory: directory)
        if models.isEmpty && problems.isEmpty {
            problems.append(PricingProblem(file: directory, key: "", message: "no models: add a file such as openai.json with {\"models\": [...]}"))
        }
        if let tiers {
            problems += checkTiersNameSomething(tiers, models: models, file: "\(directory.hasSuffix("/") ? directory : directory + "/")tiers.json")
        }
        guard problems.isEmpty, let tiers else {
            throw PricingTablesInvalid(problems: problems)
        }
        return PricingCatalog(models: models, references: references, providers: providers, tiers: tiers)
    }

    // MARK: - Files

    private static func readProviders(_ value: JSONValue, file: String, problems: inout [PricingProblem]) -> [String: Provider] {
        guard var root = PricingFieldReader.object(value, file: file, path: "", problems: &problems) else { return [:] }
        var result: [String: Provider] = [:]
        if let list = root.value("providers", required: true) {
            guard let entries = list.arrayValue else {
                root.problem("providers", "expected an array, found \(list.kindName)")
                root.finish(into: &problems)
                return [:]
            }
            for (index, entry) in entries.enumerated() {
                guard var reader = PricingFieldReader.object(entry, file: file, path: "providers[\(index)]", problems: &problems) else { continue }
                let name = reader.string("name")
                var dialect: Provider.Dialect?
                if let text = reader.string("dialect") {
                    dialect = Provider.Dialect(rawValue: text)
                    if dialect == nil { reader.problem("dialect", "unknown dialect '\(text)'; use openai or anthropic") }
                }
                let baseURL = reader.string("base_url")
                if let baseURL, URL(string: baseURL)?.scheme?.hasPrefix("http") != true {
                    reader.problem("base_url", "'\(baseURL)' is not an http(s) URL")
                }
                let keyVariable = reader.string("api_key_env")
                // true (the batch API speaks the provider's dialect), false, or the batch dialect by name.
                var batchDialect: Provider.Dialect?
                var batchKnown = false
                if let value = reader.value("batch_api", required: true) {
                    if let flag = value.boolValue {
                        batchKnown = true
                        batchDialect = flag ? dialect : nil
                    } else if let name = value.stringValue, let named = Provider.Dialect(rawValue: name) {
                        batchKnown = true
                        batchDialect = named
                    } else {
                        reader.problem("batch_api", "expected true, false, \"openai\" or \"anthropic\", found \(JSONWriter.string(value))")
                    }
                }
                _ = reader.string("notes", required: false)
                let authorities = reader.string("ca_file", required: false).map { caFile(path: $0, file: file, baseURL: baseURL, reader: &reader) } ?? nil
                if let name, result[name] != nil { reader.problem("name", "duplicate provider '\(name)'") }
                if let name, let dialect, let baseURL, let keyVariable, batchKnown {
                    result[name] = Provider(
                        name: name, dialect: dialect, baseURL: baseURL, apiKeyEnvironmentVariable: keyVariable, batchDialect: batchDialect,
                        certificateAuthorities: authorities)
                }
                reader.finish(into: &problems)
            }
        }
        root.finish(into: &problems)
        return result
    }

    /// A provider's `ca_file`, relative to the folder of `file` unless absolute: a readable PEM file of certificates, for
    /// an https `base_url`. Nil, with a problem said, when it is not.
    private static func caFile(path: String, file: String, baseURL: String?, reader: inout PricingFieldReader) -> String? {
        let resolved = path.hasPrefix("/") ? path : URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent(path).path
        if let baseURL, URL(string: baseURL)?.scheme?.lowercased() != "https" {
            reader.problem("ca_file", "names certificate authorities for a base_url that is not https; drop it or use https")
            return nil
        }
        let start: Data
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: resolved))
            defer { try? handle.close() }
            start = try handle.read(upToCount: 1 << 20) ?? Data()
        } catch {
            reader.problem("ca_file", "cannot read \(resolved); give a readable PEM file of certificate authorities")
            return nil
        }
        guard String(decoding: start, as: UTF8.self).contains("-----BEGIN CERTIFICATE-----") else {
            reader.problem("ca_file", "\(resolved) holds no PEM certificate (no -----BEGIN CERTIFICATE----- line)")
            return nil
        }
        return resolved
    }

    private static func readTiers(_ value: JSONValue, file: String, problems: inout [PricingProblem]) -> Tiers? {
        guard var root = PricingFieldReader.object(value, file: file, path: "", problems: &problems) else { return nil }
        var quality: [String: Int] = [:]
        var deadline: [String: Int64] = [:]
        if var reader = root.child("quality") {
            for member in reader.object.members {
                if let score = reader.integer(member.key), score > 100 { reader.problem(member.key, "quality scores run 0–100, found \(score)") }
                else if let score = member.value.intValue, score >= 0 { quality[member.key] = score }
            }
            root.absorb(&reader)
        }
        if var reader = root.child("deadline") {
            for member in reader.object.members {
                guard let text = reader.string(member.key) else { continue }
                if let milliseconds = DurationText.milliseconds(text), milliseconds > RoutingText.horizonMilliseconds {
                    reader.problem(member.key, "'\(text)' is beyond the horizon of \(DurationText.format(RoutingText.horizonMilliseconds)); deadlines are planned at most that far ahead")
                } else if let milliseconds = DurationText.milliseconds(text) {
                    deadline[member.key] = milliseconds
                }
                else { reader.problem(member.key, "'\(text)' is not a duration; write 15m, 6h, 3d…") }
            }
            root.absorb(&reader)
        }
        var batch = Tiers.BatchTiming()
        if var reader = root.child("batch", required: false) {
            for (key, keyPath) in [("margin", \Tiers.BatchTiming.marginMilliseconds), ("pull_back", \Tiers.BatchTiming.pullBackMilliseconds)] {
                guard let text = reader.string(key) else { continue }
                if let milliseconds = DurationText.milliseconds(text), milliseconds <= Tiers.BatchTiming.maximumMilliseconds {
                    batch[keyPath: keyPath] = milliseconds
                } else {
                    reader.problem(key, "'\(text)' is not a duration of at most \(DurationText.format(Tiers.BatchTiming.maximumMilliseconds)); write 30m, 2h…")
                }
            }
            root.absorb(&reader)
        }
        var defaultQuality = "", defaultDeadline = ""
        if var reader = root.child("defaults") {
            defaultQuality = reader.string("quality") ?? ""
            defaultDeadline = reader.string("deadline") ?? ""
            if !defaultQuality.isEmpty, quality[defaultQuality] == nil {
                reader.problem("quality", "names no quality tier ('\(defaultQuality)'); tiers: \(quality.keys.sorted().joined(separator: ", "))")
            }
            if !defaultDeadline.isEmpty, deadline[defaultDeadline] == nil {
                reader.problem("deadline", "names no deadline tier ('\(defaultDeadline)'); tiers: \(deadline.keys.sorted().joined(separator: ", "))")
            }
            root.absorb(&reader)
        }
        root.finish(into: &problems)
        return Tiers(quality: quality, deadline: deadline, defaultQuality: defaultQuality, defaultDeadline: defaultDeadline, batch: batch)
    }

    /// A quality tier no model reaches would leave every request of that tier unplannable.
    private static func checkTiersNameSomething(_ tiers: Tiers, models: [Model], file: String) -> [PricingProblem] {
        guard !models.isEmpty else { return [] }
        let best = models.map(\.quality).max() ?? 0
        return tiers.quality.sorted { $0.key < $1.key }.compactMap { name, score in
            score > best
                ? PricingProblem(file: file, key: "quality.\(name)", message: "floor \(score) is met by no model (the best scores \(best))")
                : nil
        }
    }

    private static func readModels(_ value: JSONValue, file: String, problems: inout [PricingProblem]) -> [(Int, String?, Model?)] {
        guard var root = PricingFieldReader.object(value, file: file, path: "", problems: &problems) else { return [] }
        var result: [(Int, String?, Model?)] = []
        if let list = root.value("models", required: true) {
            if let entries = list.arrayValue {
                for (index, entry) in entries.enumerated() {
                    let model = readModel(entry, file: file, path: "models[\(index)]", problems: &problems)
                    result.append((index, entry.objectValue?["id"]?.stringValue, model))
                }
            } else {
                root.problem("models", "expected an array, found \(list.kindName)")
            }
        }
        root.finish(into: &problems)
        return result
    }

    static func readModel(_ value: JSONValue, file: String, path: String, problems: inout [PricingProblem]) -> Model? {
        guard var reader = PricingFieldReader.object(value, file: file, path: path, problems: &problems) else { return nil }
        let id = reader.string("id")
        let provider = reader.string("provider")
        let providerModel = reader.string("model")
        let prices = readPrices(&reader, key: "prices", required: true)
        let batchPrices = readPrices(&reader, key: "batch_prices", required: false)
        let flexPrices = readPrices(&reader, key: "flex_prices", required: false)
        var batchEnqueuedTokens: Int?
        if var child = reader.child("batch_limits", required: false) {
            batchEnqueuedTokens = child.integer("enqueued_tokens", minimum: 1, maximum: RateLimits.maximumTokensPerMinute)
            reader.absorb(&child)
        }
        let batchPriceSource = reader.string("batch_price_source", required: false)
        if let batchPriceSource, !batchPriceSource.hasPrefix("https://") && !batchPriceSource.hasPrefix("http://") {
            reader.problem("batch_price_source", "'\(batchPriceSource)' is not a URL; cite the public page the batch price was read from")
        }
        let contextWindow = reader.integer("context_window", minimum: 1, maximum: Model.maximumContextTokens)
        let maxOutput = reader.integer("max_output_tokens", minimum: 1, maximum: Model.maximumContextTokens)
        var quality: Int?, qualitySource: String?
        if var child = reader.child("quality") {
            quality = child.integer("score")
            if let score = quality, score > 100 { child.problem("score", "quality scores run 0–100, found \(score)"); quality = nil }
            qualitySource = child.string("source")
            reader.absorb(&child)
        }
        var capabilities: Capabilities = []
        if let list = reader.value("capabilities", required: false) {
            if let names = list.arrayValue {
                for name in names {
                    if let match = Capabilities.named.first(where: { $0.name == name.stringValue }) { capabilities.insert(match.capability) }
                    else {
                        let known = Capabilities.named.map(\.name).joined(separator: ", ")
                        reader.problem("capabilities", "unknown capability \(JSONWriter.string(name)); use \(known)")
                    }
                }
            } else {
                reader.problem("capabilities", "expected an array of names")
            }
        }
        var rateLimits: RateLimits?
        if var child = reader.child("rate_limits") {
            // Both are read before either is judged, so a bad one never leaves its neighbour unread (and called unknown).
            let requests = child.integer("requests_per_minute", minimum: 1, maximum: RateLimits.maximumRequestsPerMinute)
            let tokens = child.integer("tokens_per_minute", minimum: 1, maximum: RateLimits.maximumTokensPerMinute)
            if let requests, let tokens {
                rateLimits = RateLimits(requestsPerMinute: requests, tokensPerMinute: tokens)
            }
            reader.absorb(&child)
        }
        var speed: Speed?
        if var child = reader.child("speed") {
            let ttft = child.integer("time_to_first_token_ms", maximum: Speed.maximumTimeToFirstTokenMilliseconds)
            let rate = child.integer("output_tokens_per_second", minimum: 1, maximum: Speed.maximumOutputTokensPerSecond)
            if let ttft, let rate {
                speed = Speed(timeToFirstTokenMilliseconds: ttft, outputTokensPerSecond: rate)
            }
            reader.absorb(&child)
        }
        var windows: [DiscountWindow] = []
        if let list = reader.value("discount_windows", required: false) {
            if let entries = list.arrayValue {
                for (index, entry) in entries.enumerated() {
                    if let window = readDiscountWindow(entry, file: file, path: reader.keyPath("discount_windows[\(index)]"), problems: &reader.problems) {
                        windows.append(window)
                    }
                }
            } else {
                reader.problem("discount_windows", "expected an array")
            }
        }
        let priceDate = reader.string("price_date")
        if let priceDate, !isISODate(priceDate) { reader.problem("price_date", "'\(priceDate)' is not a date; write YYYY-MM-DD") }
        let priceSource = reader.string("price_source")
        if let priceSource, !priceSource.hasPrefix("https://") && !priceSource.hasPrefix("http://") {
            reader.problem("price_source", "'\(priceSource)' is not a URL; cite the public page the price was read from")
        }
        _ = reader.string("notes", required: false)
        var aliases: [String] = []
        if let list = reader.value("aliases", required: false) {
            if let names = list.arrayValue, names.allSatisfy({ !($0.stringValue ?? "").isEmpty }) {
                aliases = names.compactMap(\.stringValue)
            } else {
                reader.problem("aliases", "expected an array of model names, such as [\"gpt-5-chat-latest\"]")
            }
        }
        let referenceOnly = reader.bool("reference_only", required: false) ?? false
        var parameters = ModelParameters()
        if var child = reader.child("parameters", required: false) {
            parameters = readParameters(&child)
            reader.absorb(&child)
        }
        var caching: CachingRule?
        if var child = reader.child("caching", required: false) {
            caching = readCaching(&child, prices: prices, batchPrices: batchPrices, flexPrices: flexPrices)
            reader.absorb(&child)
        }
        if let contextWindow, let maxOutput, maxOutput > contextWindow {
            reader.problem("max_output_tokens", "\(maxOutput) is more than the context window (\(contextWindow))")
        }
        if let maxOutput, parameters.reasoningRoomTokens >= maxOutput {
            reader.problem("parameters.reasoning_room_tokens", "\(parameters.reasoningRoomTokens) leaves no room for an answer in max_output_tokens \(maxOutput)")
        }
        reader.finish(into: &problems)
        guard let id, let provider, let providerModel, let prices, let contextWindow, let maxOutput, let quality, let qualitySource,
            let rateLimits, let speed, let priceDate, let priceSource
        else { return nil }
        var model = Model(
            id: id, provider: provider, providerModel: providerModel, prices: prices, batchPrices: batchPrices, flexPrices: flexPrices,
            contextWindow: contextWindow, maxOutputTokens: maxOutput, quality: quality, qualitySource: qualitySource,
            capabilities: capabilities, rateLimits: rateLimits, speed: speed, discountWindows: windows, priceDate: priceDate,
            priceSource: priceSource, batchEnqueuedTokens: batchEnqueuedTokens, batchPriceSource: batchPriceSource)
        model.aliases = aliases
        model.referenceOnly = referenceOnly
        model.parameters = parameters
        model.caching = caching
        return model
    }

    /// A model's `caching`: `mode`, `min_prefix_tokens`, `step_tokens`, `batch` and `flex` (what caching does in
    /// those modes) and the `source` they were read from, checked against the model's prices.
    private static func readCaching(_ reader: inout PricingFieldReader, prices: TokenPrices?, batchPrices: TokenPrices?, flexPrices: TokenPrices?) -> CachingRule? {
        func choice<Choice: RawRepresentable & CaseIterable>(_ key: String, _ type: Choice.Type, required: Bool = true) -> Choice? where Choice.RawValue == String {
            guard let text = reader.string(key, required: required) else { return nil }
            guard let value = Choice(rawValue: text) else {
                reader.problem(key, "'\(text)' is not one of \(Choice.allCases.map(\.rawValue).joined(separator: ", "))")
                return nil
            }
            return value
        }
        let mode = choice("mode", CachingRule.Mode.self)
        let minimum = reader.integer("min_prefix_tokens", minimum: 1, maximum: CachingRule.maximumTokens)
        let step = reader.integer("step_tokens", required: false, minimum: 1, maximum: CachingRule.maximumTokens) ?? 1
        let batch = choice("batch", CachingRule.InMode.self, required: batchPrices != nil) ?? CachingRule.InMode.none
        let flex = choice("flex", CachingRule.InMode.self, required: flexPrices != nil) ?? CachingRule.InMode.none
        let source = reader.string("source")
        if let source, !source.hasPrefix("https://") && !source.hasPrefix("http://") {
            reader.problem("source", "'\(source)' is not a URL; cite the public page the caching rule was read from")
        }
        if let minimum, step > minimum { reader.problem("step_tokens", "\(step) is more than min_prefix_tokens (\(minimum))") }
        if let prices, prices.cachedInput >= prices.input {
            reader.problem("mode", "a model that caches needs prices.cached_input below prices.input (\(prices.input.usdPerMillionText))")
        }
        if mode == .explicit, prices?.cacheWrite5m == nil && prices?.cacheWrite1h == nil {
            reader.problem("mode", "explicit caching bills its writes: give prices.cache_write_5m or cache_write_1h")
        }
        // What the discounted modes' prices must then say: a halved read is half the read's price, a full one the same,
        // none means the mode charges every input token as uncached.
        for (key, rule, discounted) in [("batch", batch, batchPrices), ("flex", flex, flexPrices)] {
            guard let discounted, let prices else { continue }
            switch rule {
            case .halved:
                if discounted.cachedInput.microUSDPerMillion * 2 != prices.cachedInput.microUSDPerMillion {
                    reader.problem(key, "'halved' reads at half the cached price: \(key)_prices.cached_input should be \(TokenPrice(microUSDPerMillion: prices.cachedInput.microUSDPerMillion / 2).usdPerMillionText), found \(discounted.cachedInput.usdPerMillionText)")
                }
            case .bestEffort:
                if discounted.cachedInput >= discounted.input {
                    reader.problem(key, "'best_effort' caches in \(key) mode: \(key)_prices.cached_input should be below its input")
                }
            case .full:
                if discounted.cachedInput != prices.cachedInput {
                    reader.problem(key, "'full' reads at the cached price itself: \(key)_prices.cached_input should be \(prices.cachedInput.usdPerMillionText), found \(discounted.cachedInput.usdPerMillionText)")
                }
            case .none:
                if discounted.cachedInput != discounted.input {
                    reader.problem(key, "'none' caches nothing in \(key) mode: \(key)_prices.cached_input should be left out (or equal its input)")
                }
            }
        }
        guard let mode, let minimum, let source else { return nil }
        return CachingRule(mode: mode, minimumPrefixTokens: minimum, stepTokens: step, batch: batch, flex: flex, source: source)
    }

    /// A model's `parameters`: `unsupported` (request parameters it refuses), `output_limit` (`max_tokens` or
    /// `max_completion_tokens`), `reasoning_room_tokens` and the `source` they were read from.
    private static func readParameters(_ reader: inout PricingFieldReader) -> ModelParameters {
        var parameters = ModelParameters()
        if let list = reader.value("unsupported", required: false) {
            if let names = list.arrayValue {
                for name in names {
                    if let match = Capabilities.parameterNamed.first(where: { $0.name == name.stringValue }) {
                        parameters.unsupported.insert(match.capability)
                    } else {
                        let known = Capabilities.parameterNamed.map(\.name).joined(separator: ", ")
                        reader.problem("unsupported", "unknown parameter \(JSONWriter.string(name)); use \(known)")
                    }
                }
            } else {
                reader.problem("unsupported", "expected an array of parameter names, such as [\"temperature\"]")
            }
        }
        if let name = reader.string("output_limit", required: false) {
            if ["max_tokens", "max_completion_tokens"].contains(name) { parameters.outputLimitName = name }
            else { reader.problem("output_limit", "'\(name)' is not an output limit; use max_tokens or max_completion_tokens") }
        }
        parameters.reasoningRoomTokens = reader.integer(
            "reasoning_room_tokens", required: false, minimum: 0, maximum: ModelParameters.maximumReasoningRoomTokens) ?? 0
        parameters.source = reader.string("source", required: !parameters.isDefault)
        if let source = parameters.source, !source.hasPrefix("https://") && !source.hasPrefix("http://") {
            reader.problem("source", "'\(source)' is not a URL; cite the public page the parameters were read from")
        }
        return parameters
    }

    /// An alias that is also another row's model name or alias would make a body's model ambiguous.
    private static func checkNamesAreOnce(_ rows: [Model], directory: String) -> [PricingProblem] {
        var owner: [String: String] = [:]
        for row in rows { owner[row.providerModel + "@" + row.provider] = row.id }
        var problems: [PricingProblem] = []
        for row in rows {
            for alias in row.aliases {
                let key = alias + "@" + row.provider
                if let other = owner[key], other != row.id {
                    problems.append(PricingProblem(
                        file: directory, key: "\(row.id).aliases",
                        message: "'\(alias)' already names \(other) at \(row.provider); an alias must name one model"))
                }
                owner[key] = row.id
            }
        }
        return problems
    }

    private static func readPrices(_ reader: inout PricingFieldReader, key: String, required: Bool) -> TokenPrices? {
        guard var child = reader.child(key, required: required) else { return nil }
        let input = child.price("input")
        let output = child.price("output")
        let cached = child.price("cached_input", required: false)
        let write5m = child.price("cache_write_5m", required: false)
        let write1h = child.price("cache_write_1h", required: false)
        if let input, let cached, cached > input { child.problem("cached_input", "a cached read costs more than uncached input (\(input.usdPerMillionText)); check the provider's page") }
        for (name, write) in [("cache_write_5m", write5m), ("cache_write_1h", write1h)] {
            if let input, let write, write < input { child.problem(name, "a cache write costs less than uncached input (\(input.usdPerMillionText)); check the provider's page") }
        }
        reader.absorb(&child)
        guard let input, let output else { return nil }
        var prices = TokenPrices(input: input, output: output, cachedInput: cached ?? input)
        (prices.cacheWrite5m, prices.cacheWrite1h) = (write5m, write1h)
        return prices
    }

    private static func readDiscountWindow(_ value: JSONValue, file: String, path: String, problems: inout [PricingProblem]) -> DiscountWindow? {
        guard var reader = PricingFieldReader.object(value, file: file, path: path, problems: &problems) else { return nil }
        var weekdays: Set<Int> = []
        if let list = reader.value("days", required: true) {
            for day in list.arrayValue ?? [] {
                if let index = DiscountWindow.weekdayNames.firstIndex(of: day.stringValue ?? "") { weekdays.insert(index + 1) }
                else { reader.problem("days", "unknown day \(JSONWriter.string(day)); use \(DiscountWindow.weekdayNames.joined(separator: ", "))") }
            }
            if list.arrayValue == nil { reader.problem("days", "expected an array of day names") }
        }
        let start = reader.string("start").flatMap { clockMinutes($0, reader: &reader, key: "start") }
        let end = reader.string("end").flatMap { clockMinutes($0, reader: &reader, key: "end") }
        let zone = reader.string("time_zone")
        if let zone, TimeZone(identifier: zone) == nil { reader.problem("time_zone", "unknown time zone '\(zone)'; use an IANA name such as Asia/Shanghai") }
        var multiplier: Int64?
        if let text = reader.decimalText("multiplier") {
            do {
                let basisPoints = try DecimalText.scaled(text, decimals: 4)
                if basisPoints <= 0 || basisPoints > 10_000 { reader.problem("multiplier", "must be above 0 and at most 1, found \(text)") }
                else { multiplier = basisPoints }
            } catch {
                reader.problem("multiplier", "\(error)")
            }
        }
        if let start, let end, start >= end { reader.problem("end", "must be after start (windows past midnight are written as two windows)") }
        reader.finish(into: &problems)
        guard let start, let end, let zone, let multiplier, !weekdays.isEmpty, TimeZone(identifier: zone) != nil else { return nil }
        return DiscountWindow(weekdays: weekdays, startMinute: start, endMinute: end, timeZoneIdentifier: zone, multiplierBasisPoints: multiplier)
    }

    private static func clockMinutes(_ text: String, reader: inout PricingFieldReader, key: String) -> Int? {
        let parts = text.split(separator: ":")
        if parts.count == 2, let hours = Int(parts[0]), let minutes = Int(parts[1]), (0...24).contains(hours), (0..<60).contains(minutes),
            hours * 60 + minutes <= 1440
        {
            return hours * 60 + minutes
        }
        reader.problem(key, "'\(text)' is not a time of day; write HH:MM (24:00 for the end of the day)")
        return nil
    }

    private static func isISODate(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let month = Int(parts[1]), let day = Int(parts[2]), Int(parts[0]) != nil
        else { return false }
        return (1...12).contains(month) && (1...31).contains(day)
    }
}
