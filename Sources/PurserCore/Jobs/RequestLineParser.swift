/// Turns one line of a job file into a `RequestDraft`, or says exactly what is wrong with it.
///
/// Three shapes are accepted, detected line by line: OpenAI Batch (`body`), Anthropic Message
/// Batches (`params`) and minimal (`prompt`). Routing keys at the top level override the defaults.
public struct RequestLineParser {
    public struct Defaults: Sendable {
        public var quality: JSONValue?
        public var deadline: String?
        /// The providers every line may go to (a line's own `providers` narrows them further).
        public var providers: ProviderFilter?

        public init(quality: JSONValue? = nil, deadline: String? = nil, providers: ProviderFilter? = nil) {
            self.quality = quality
            self.deadline = deadline
            self.providers = providers
        }
    }

    public static let routingKeys = ["quality", "deadline", "max_cost_usd", "pin", "tags", "providers"]
    static let minimalBodyKeys = ["model", "temperature", "top_p", "stop", "seed", "response_format", "metadata"]
    static let maximumCustomIDBytes = 256

    let catalog: PricingCatalog
    let defaults: Defaults
    let submittedAt: Int64
    let history: OutputHistory
    private let historyByTier: OutputHistoryByTier
    private let cheapestSyncPrices: [TokenPrices]
    private let facts: [ModelFacts]
    private var deadlineCache: [String: Result<Int64, Problem>] = [:]
    private var referenceCache: [String: Model?] = [:]
    private let defaultDeadline: Result<Int64, Problem>
    private let defaultQuality: Result<(floor: Int, tier: String), Problem>?

    /// `inputCalibration` prices the submit check's estimates as plans will (`InputCalibration`).
    public init(
        catalog: PricingCatalog, defaults: Defaults, submittedAt: Int64, history: OutputHistory, inputCalibration: InputCalibration = InputCalibration()
    ) {
        self.catalog = catalog
        self.defaults = defaults
        self.submittedAt = submittedAt
        self.history = history
        self.historyByTier = history.byTier(models: catalog.models)
        self.cheapestSyncPrices = catalog.models.map { Eligibility.cheapestSyncPrices(of: inputCalibration.expected($0)) }
        self.facts = catalog.models.map(ModelFacts.init)
        self.defaultDeadline = RoutingText.deadline(
            defaults.deadline ?? catalog.tiers.defaultDeadline, submittedAt: submittedAt, tiers: catalog.tiers)
        self.defaultQuality = defaults.quality.map { RoutingText.quality($0, tiers: catalog.tiers) }
    }

    public mutating func parse(_ bytes: UnsafeBufferPointer<UInt8>, lineNumber: Int) -> Result<RequestDraft, LineProblem> {
        let parsed: (value: JSONValue, ranges: [String: Range<Int>])
        do {
            parsed = try JSONParser.parseRecordingTopLevelRanges(bytes)
        } catch {
            let what = error.isInvalidUTF8 ? "invalid UTF-8" : "invalid JSON"
            return .failure(LineProblem(lineNumber: lineNumber, customID: nil, message: "\(what) at column \(error.column): \(error.reason)"))
        }
        guard let line = parsed.value.objectValue else {
            return .failure(LineProblem(lineNumber: lineNumber, customID: nil, message: "a line must be a JSON object, found \(parsed.value.kindName)"))
        }
        let customIDValue = line["custom_id"]
        let knownCustomID = customIDValue?.stringValue
        func problem(_ message: String) -> Result<RequestDraft, LineProblem> {
            .failure(LineProblem(lineNumber: lineNumber, customID: knownCustomID, message: message))
        }

        // Shape.
        let shape: RequestShape
        let allowed: [String]
        if line["body"] != nil {
            shape = .openaiBatch
            allowed = ["custom_id", "method", "url", "body"]
        } else if line["params"] != nil {
            shape = .anthropicBatch
            allowed = ["custom_id", "params"]
        } else if line["prompt"] != nil {
            shape = .minimal
            allowed = ["custom_id", "prompt", "system", "max_tokens"] + RequestLineParser.minimalBodyKeys
        } else {
            return problem("unrecognised line: expected \"body\" (OpenAI batch), \"params\" (Anthropic batch) or \"prompt\" (minimal)")
        }
        for key in line.keys where !allowed.contains(key) && !RequestLineParser.routingKeys.contains(key) {
            return problem("unknown key \(JSONWriter.quotedForMessage(key)); routing keys are \(RequestLineParser.routingKeys.joined(separator: ", "))")
        }

        // custom_id.
        let customID: String
        switch customIDValue {
        case nil:
            guard shape == .minimal else { return problem("missing custom_id") }
            customID = "line-\(lineNumber)"
        case .string(let text)?:
            guard !text.isEmpty else { return problem("custom_id is empty") }
            guard text.utf8.count <= RequestLineParser.maximumCustomIDBytes else {
                return problem("custom_id is longer than \(RequestLineParser.maximumCustomIDBytes) bytes")
            }
            customID = text
        case let other?:
            return problem("custom_id must be a string, found \(other.kindName)")
        }

        // Body.
        let body: JSONObject
        let bodyText: String
        let fieldPrefix: String
        switch shape {
        case .openaiBatch:
            if let method = line["method"], method.stringValue != "POST" { return problem("method must be \"POST\", found \(JSONWriter.string(method))") }
            if let url = line["url"], url.stringValue != "/v1/chat/completions" {
                return problem("url \(JSONWriter.string(url)) is not supported; Purser serves \"/v1/chat/completions\"")
            }
            guard let object = line["body"]?.objectValue else { return problem("body must be an object") }
            body = object
            bodyText = String(decoding: UnsafeBufferPointer(rebasing: bytes[parsed.ranges["body"]!]), as: UTF8.self)
            fieldPrefix = "body."
        case .anthropicBatch:
            guard let object = line["params"]?.objectValue else { return problem("params must be an object") }
            body = object
            bodyText = String(decoding: UnsafeBufferPointer(rebasing: bytes[parsed.ranges["params"]!]), as: UTF8.self)
            fieldPrefix = "params."
        case .minimal:
            guard let prompt = line["prompt"]?.stringValue else { return problem("prompt must be a string") }
            guard !prompt.isEmpty else { return problem("prompt is empty") }
            var messages: [JSONValue] = []
            if let system = line["system"] {
                guard let text = system.stringValue else { return problem("system must be a string, found \(system.kindName)") }
                messages.append(.object(JSONObject(["role": .string("system"), "content": .string(text)])))
            }
            messages.append(.object(JSONObject(["role": .string("user"), "content": .string(prompt)])))
            var object = JSONObject(["messages": .array(messages)])
            for key in RequestLineParser.minimalBodyKeys { if let value = line[key] { object[key] = value } }
            if let maxTokens = line["max_tokens"] { object["max_tokens"] = maxTokens }
            body = object
            bodyText = JSONWriter.string(.object(object))
            fieldPrefix = ""
        }
        let summary: ChatBodySummary
        switch ChatBody.summarize(body, dialect: shape.bodyDialect, fieldPrefix: fieldPrefix) {
        case .success(let value): summary = value
        case .failure(let failure): return problem(failure.message)
        }
        let maxOutputTokens: Int
        switch ChatBody.maxTokens(body, fieldPrefix: fieldPrefix) {
        case .failure(let failure): return problem(failure.message)
        case .success(let value?): maxOutputTokens = value
        case .success(nil):
            if shape == .anthropicBatch { return problem("missing params.max_tokens (the Messages API requires it)") }
            maxOutputTokens = TokenEstimator.defaultMaxOutputTokens
        }

        // Reference model.
        var reference: Model?
        if let modelValue = body["model"] {
            guard let name = modelValue.stringValue, !name.isEmpty else { return problem("\(fieldPrefix)model must be a string") }
            let cacheKey = shape.rawValue + "|" + name
            let cached = referenceCache[cacheKey] ?? catalog.referenceModel(named: name, preferring: shape.bodyDialect)
            referenceCache[cacheKey] = cached
            if let model = cached {
                reference = model
            } else if line["quality"] == nil && defaultQuality == nil {
                // Never a silent floor: a model nobody knows says nothing about the quality the line needs.
                return problem("unknown model \(JSONWriter.quotedForMessage(name)) in \(fieldPrefix)model: it is not in the pricing tables, nor an alias or "
                    + "dated snapshot of a model there; give the line a \"quality\" (a tier such as \"standard\", or a score 0–100) or pass --quality, "
                    + "or add the model to the tables")
            }
        } else if shape != .minimal {
            return problem("missing \(fieldPrefix)model")
        }

        // Routing keys.
        var pinned = false
        if let pin = line["pin"] {
            guard let flag = pin.boolValue else { return problem("pin must be true or false, found \(pin.kindName)") }
            pinned = flag
            if pinned && reference == nil {
                if let name = body["model"]?.stringValue {
                    return problem("pin is true but its model \(JSONWriter.quotedForMessage(name)) is not in the pricing tables; add it there, or drop pin")
                }
                return problem("pin is true but the line names no model to pin to")
            }
        }
        let floor: Int, tier: String
        if let value = line["quality"] {
            switch RoutingText.quality(value, tiers: catalog.tiers) {
            case .success(let resolved): (floor, tier) = resolved
            case .failure(let failure): return problem(failure.message)
            }
        } else if let resolved = defaultQuality {
            switch resolved {
            case .success(let value): (floor, tier) = value
            case .failure(let failure): return problem(failure.message)
            }
        } else if let reference {
            (floor, tier) = (reference.quality, catalog.tiers.tierName(forScore: reference.quality))
        } else {
            let name = catalog.tiers.defaultQuality
            (floor, tier) = (catalog.tiers.quality[name] ?? 0, name)
        }
        let deadlineAt: Int64
        if let value = line["deadline"] {
            guard let text = value.stringValue else { return problem("deadline must be a string such as \"6h\", found \(value.kindName)") }
            let resolved = deadlineCache[text] ?? RoutingText.deadline(text, submittedAt: submittedAt, tiers: catalog.tiers)
            deadlineCache[text] = resolved
            switch resolved {
            case .success(let value): deadlineAt = value
            case .failure(let failure): return problem(failure.message)
            }
        } else {
            switch defaultDeadline {
            case .success(let value): deadlineAt = value
            case .failure(let failure): return problem(failure.message)
            }
        }
        var maxCost: Money?
        if let value = line["max_cost_usd"] {
            switch RoutingText.usd(value, field: "max_cost_usd") {
            case .success(let money): maxCost = money
            case .failure(let failure): return problem(failure.message)
            }
        }
        var tags: String?
        if let value = line["tags"] {
            guard let object = value.objectValue, object.members.allSatisfy({ $0.value.stringValue != nil }) else {
                return problem("tags must be an object of strings, such as {\"team\": \"search\"}")
            }
            tags = JSONWriter.string(value)
        }

        let providers: ProviderFilter?
        switch ProviderFilter.parse(line["providers"], submitted: defaults.providers, known: Set(catalog.providers.keys)) {
        case .success(let filter): providers = filter
        case .failure(let failure): return problem(failure.message)
        }
        if pinned, let reference, let providers, !providers.allows(reference.provider) {
            return problem("pin is true but its model \(reference.id) is at provider \(reference.provider), which its providers exclude")
        }
        let needs = RequestNeeds(
            qualityFloor: floor, qualityTier: tier, inputTokens: summary.inputTokens, maxOutputTokens: maxOutputTokens,
            capabilities: summary.capabilities, pinnedModel: pinned ? reference?.id : nil, providers: providers)
        if let message = checkSomeModelFits(needs, maxCost: maxCost) { return problem(message) }
        var draft = RequestDraft(
            lineNumber: lineNumber, customID: customID, shape: shape, body: bodyText, referenceModel: reference?.id, needs: needs,
            deadlineAt: deadlineAt, maxCost: maxCost, tags: tags)
        if let group = PromptPrefix(body: body, dialect: shape.bodyDialect, leadingOnly: true).group { (draft.prefixGroup, draft.prefixTokens) = (group.id, group.tokens) }
        return .success(draft)
    }

    /// A request no model could ever serve is rejected now rather than left to fail later.
    private func checkSomeModelFits(_ needs: RequestNeeds, maxCost: Money?) -> String? {
        var cheapest: Money?
        let samples = historyByTier.samples(tier: needs.qualityTier)
        func exclusion(_ index: Int) -> Exclusion? {
            let isPinned = needs.pinnedModel != nil && needs.pinnedModel == catalog.models[index].id
            return Eligibility.staticExclusion(of: facts[index], isPinnedModel: isPinned, for: needs)
        }
        for index in facts.indices where exclusion(index) == nil {
            let output = OutputHistoryByTier.expectedOutputTokens(
                samples, model: index, maxOutputTokens: facts[index].outputAllowance(needs.maxOutputTokens))
            let cost = cheapestSyncPrices[index].cost(inputTokens: needs.inputTokens, outputTokens: output)
            if cheapest == nil || cost < cheapest! { cheapest = cost }
        }
        guard let cheapest else {
            let total = needs.inputTokens + needs.maxOutputTokens
            let largest = catalog.models.map(\.contextWindow).max() ?? 0
            if total > largest {
                return "prompt of ~\(needs.inputTokens) tokens plus max_tokens \(needs.maxOutputTokens) fits no model's context (the largest is \(largest))"
            }
            // Why, read only now that no model is left.
            let exclusions = facts.indices.compactMap(exclusion)
            let reasons = Set(exclusions.filter { if case .pinnedElsewhere = $0 { false } else { true } }.map(\.description)).sorted()
            return "no model can serve this request: " + reasons.prefix(3).joined(separator: "; ")
        }
        if let maxCost, cheapest > maxCost {
            return "max_cost_usd \(maxCost.exactUSD) is below every eligible model's estimate (the cheapest is \(cheapest.exactUSD) USD)"
        }
        return nil
    }
}
