/// Writes realistic job lines deterministically from a seed: classification, extraction, summarising
/// and translation prompts over varied texts, in any of the three line shapes, with a spread of
/// reference models, quality tiers and deadlines. The same seed always gives the same bytes.
public struct JobFileGenerator {
    public enum ShapeMix: String, Sendable {
        /// OpenAI batch lines only, each with a deadline (six tiers from 15 minutes to a week) and a third with a
        /// quality tier: the benchmark's input.
        case openai
        /// All three shapes, with routing keys on some lines.
        case mixed
    }

    public var shapes: ShapeMix
    private var random: SplitMix64

    public init(seed: UInt64, shapes: ShapeMix) {
        self.shapes = shapes
        self.random = SplitMix64(seed: seed)
    }

    static let subjects = [
        "the quarterly sales report", "a customer complaint about late delivery", "a product review of wireless headphones",
        "an email asking for a refund", "a news article about a new railway line", "a support ticket about a login failure",
        "a contract clause on termination", "a recipe for lentil soup", "meeting notes from a design review",
        "a job posting for a data engineer", "a medical appointment reminder", "a press release about a merger",
    ]
    static let sentences = [
        "The shipment left the warehouse on Monday but has not arrived yet.",
        "Revenue grew eleven percent while costs stayed flat across the region.",
        "The battery lasts about thirty hours and the case charges over USB-C.",
        "I was charged twice for the same order and would like one payment returned.",
        "Trains will run every ten minutes at peak hours once the line opens in spring.",
        "After the last update the app rejects my password even though it is correct.",
        "Either party may end this agreement with ninety days of written notice.",
        "Simmer the lentils with cumin and lemon for twenty-five minutes.",
        "The team agreed to simplify onboarding and to measure drop-off weekly.",
        "We are looking for someone comfortable with SQL, Python and streaming systems.",
        "Please arrive fifteen minutes early and bring your insurance card.",
        "The combined company will keep both brands and its headquarters in Lyon.",
    ]
    static let tasks = [
        ("Classify the sentiment of the following text as positive, negative or neutral. Answer with one word.", 5, "basic"),
        ("Extract every date, amount and person named in the text below as JSON.", 200, "standard"),
        ("Summarise the following text in two sentences for a busy executive.", 120, "standard"),
        ("Translate the following text into French, keeping its tone.", 300, "basic"),
        ("List the three most important action items in the text below, with an owner for each.", 250, "premium"),
        ("Write a polite, specific reply to the message below.", 400, "premium"),
    ]
    static let referenceModels = [
        ("openai", "gpt-4.1"), ("openai", "gpt-4o"), ("openai", "gpt-5-mini"), ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-haiku-4-5"),
    ]
    static let deadlines = ["15m", "1h", "6h", "day", "3d", "week"]

    /// The line numbered `index` (0-based), without its newline.
    public mutating func line(_ index: Int) -> String {
        let task = JobFileGenerator.tasks[random.below(JobFileGenerator.tasks.count)]
        let subject = JobFileGenerator.subjects[random.below(JobFileGenerator.subjects.count)]
        var text = "Here is \(subject)."
        for _ in 0..<(2 + random.below(5)) { text += " " + JobFileGenerator.sentences[random.below(JobFileGenerator.sentences.count)] }
        let customID = "req-\(index + 1)"
        let maxTokens = task.1
        switch shapes {
        case .openai:
            let openaiModels = JobFileGenerator.referenceModels.filter { $0.0 == "openai" }
            let model = openaiModels[random.below(openaiModels.count)].1
            var routing = ", \"deadline\": \"\(JobFileGenerator.deadlines[random.below(JobFileGenerator.deadlines.count)])\""
            if random.below(3) == 0 { routing += ", \"quality\": \"\(task.2)\"" }
            return openaiLine(customID: customID, model: model, system: task.0, user: text, maxTokens: maxTokens, routing: routing)
        case .mixed:
            var routing = ""
            if random.below(3) == 0 { routing += ", \"quality\": \"\(task.2)\"" }
            if random.below(2) == 0 { routing += ", \"deadline\": \"\(JobFileGenerator.deadlines[random.below(JobFileGenerator.deadlines.count)])\"" }
            if random.below(6) == 0 { routing += ", \"tags\": {\"team\": \"\(["search", "support", "finance"][random.below(3)])\"}" }
            let reference = JobFileGenerator.referenceModels[random.below(JobFileGenerator.referenceModels.count)]
            switch random.below(3) {
            case 0:
                let model = reference.0 == "openai" ? reference.1 : "gpt-4.1"
                return openaiLine(customID: customID, model: model, system: task.0, user: text, maxTokens: maxTokens, routing: routing)
            case 1:
                let model = reference.0 == "anthropic" ? reference.1 : "claude-sonnet-4-5"
                return "{\"custom_id\": \(JSONWriter.quoted(customID)), \"params\": {\"model\": \"\(model)\", \"max_tokens\": \(maxTokens), "
                    + "\"system\": \(JSONWriter.quoted(task.0)), \"messages\": [{\"role\": \"user\", \"content\": \(JSONWriter.quoted(text))}]}\(routing)}"
            default:
                let quality = routing.contains("\"quality\"") ? "" : ", \"quality\": \"\(task.2)\""
                return "{\"custom_id\": \(JSONWriter.quoted(customID)), \"system\": \(JSONWriter.quoted(task.0)), \"prompt\": \(JSONWriter.quoted(text)), "
                    + "\"max_tokens\": \(maxTokens)\(quality)\(routing)}"
            }
        }
    }

    /// A line as OpenAI's batch files have it; a temperature only for models that take one (OpenAI's gpt-5 family refuses it,
    /// so files written for them leave it out).
    private func openaiLine(customID: String, model: String, system: String, user: String, maxTokens: Int, routing: String) -> String {
        "{\"custom_id\": \(JSONWriter.quoted(customID)), \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"model\": \"\(model)\", "
            + "\"messages\": [{\"role\": \"system\", \"content\": \(JSONWriter.quoted(system))}, {\"role\": \"user\", \"content\": \(JSONWriter.quoted(user))}], "
            + "\"max_tokens\": \(maxTokens)\(model.hasPrefix("gpt-5") ? "" : ", \"temperature\": 0.2")}\(routing)}"
    }
}

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64), so generated files are reproducible.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}
