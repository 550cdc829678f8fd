/// What Purser needs to know about a chat body, read once at submit: its size in tokens,
/// the capabilities it uses, and whether it is well formed.
struct ChatBodySummary {
    var textBytes = 0
    var messages = 0
    var images = 0
    var capabilities: Capabilities = []

    var inputTokens: Int { TokenEstimator.inputTokens(textBytes: textBytes, messages: messages, images: images) }
}

enum ChatBody {
    /// Reads an OpenAI chat-completions body or an Anthropic messages body.
    /// Returns the problem as a sentence (naming the field) when it is not usable.
    static func summarize(_ body: JSONObject, dialect: Provider.Dialect, fieldPrefix: String) -> Result<ChatBodySummary, Problem> {
        var summary = ChatBodySummary()
        guard let messagesValue = body["messages"] else { return .failure(Problem("missing \(fieldPrefix)messages")) }
        guard let messages = messagesValue.arrayValue else {
            return .failure(Problem("\(fieldPrefix)messages must be an array, found \(messagesValue.kindName)"))
        }
        guard !messages.isEmpty else { return .failure(Problem("\(fieldPrefix)messages is empty; give at least one message")) }
        for (index, message) in messages.enumerated() {
            let field = "\(fieldPrefix)messages[\(index)]"
            guard let object = message.objectValue else { return .failure(Problem("\(field) must be an object")) }
            guard let role = object["role"]?.stringValue else { return .failure(Problem("missing \(field).role")) }
            let roles = dialect == .openai ? ["system", "developer", "user", "assistant", "tool"] : ["user", "assistant"]
            guard roles.contains(role) else {
                return .failure(Problem("\(field).role \(JSONWriter.quotedForMessage(role)) is not one of \(roles.joined(separator: ", "))"))
            }
            summary.messages += 1
            switch object["content"] {
            case nil, .null?:
                // An assistant message may carry only tool calls.
                guard role == "assistant", object["tool_calls"] != nil else { return .failure(Problem("missing \(field).content")) }
                summary.textBytes += JSONWriter.bytes(object["tool_calls"]!).count
            case .string(let text)?:
                summary.textBytes += text.utf8.count
            case .array(let parts)?:
                for part in parts { addContentPart(part, to: &summary) }
            case let other?:
                return .failure(Problem("\(field).content must be a string or an array of parts, found \(other.kindName)"))
            }
        }
        if let system = body["system"] {
            switch system {
            case .string(let text): summary.textBytes += text.utf8.count
            case .array(let parts): for part in parts { addContentPart(part, to: &summary) }
            default: return .failure(Problem("\(fieldPrefix)system must be a string or an array of text blocks"))
            }
        }
        if let tools = body["tools"], case .array(let list) = tools, !list.isEmpty {
            summary.capabilities.insert(.tools)
            summary.textBytes += JSONWriter.bytes(tools).count
        }
        switch body["response_format"]?.objectValue?["type"]?.stringValue {
        case "json_object"?: summary.capabilities.insert(.jsonMode)
        case "json_schema"?: summary.capabilities.insert(.jsonSchema)
        default: break
        }
        if DialectTranslation.anthropicStructuredOutput(body) != nil { summary.capabilities.insert(.jsonSchema) }
        summary.capabilities.formUnion(parametersSet(body))
        return .success(summary)
    }

    /// The request parameters a body sets away from their defaults (temperature and top_p 1, penalties 0, no logprobs,
    /// no logit bias; Anthropic's `top_k` whenever given): a model that refuses one is not planned on. A value that is
    /// not a number counts as set.
    static func parametersSet(_ body: JSONObject) -> Capabilities {
        var set: Capabilities = []
        func differs(_ key: String, from standard: Double) -> Bool {
            guard let value = body[key], !value.isNull else { return false }
            guard let text = value.numberText, let number = Double(text) else { return true }
            return number != standard
        }
        if differs("temperature", from: 1) { set.insert(.temperature) }
        if differs("top_p", from: 1) { set.insert(.topP) }
        if differs("presence_penalty", from: 0) { set.insert(.presencePenalty) }
        if differs("frequency_penalty", from: 0) { set.insert(.frequencyPenalty) }
        if body["logprobs"]?.boolValue == true || (body["top_logprobs"].map { !$0.isNull } ?? false) { set.insert(.logprobs) }
        if let bias = body["logit_bias"]?.objectValue, !bias.members.isEmpty { set.insert(.logitBias) }
        if let topK = body["top_k"], !topK.isNull { set.insert(.topK) }
        return set
    }

    private static func addContentPart(_ part: JSONValue, to summary: inout ChatBodySummary) {
        guard let object = part.objectValue else {
            if let text = part.stringValue { summary.textBytes += text.utf8.count }
            return
        }
        switch object["type"]?.stringValue {
        case "image_url"?, "image"?, "input_image"?:
            summary.images += 1
            summary.capabilities.insert(.vision)
        default:
            if let text = object["text"]?.stringValue { summary.textBytes += text.utf8.count }
            else if let content = object["content"] { summary.textBytes += JSONWriter.bytes(content).count }
        }
    }

    /// `max_tokens` (or OpenAI's `max_completion_tokens`) when present.
    static func maxTokens(_ body: JSONObject, fieldPrefix: String) -> Result<Int?, Problem> {
        for key in ["max_completion_tokens", "max_tokens"] {
            guard let value = body[key], !value.isNull else { continue }
            guard let number = value.intValue, number > 0 else {
                return .failure(Problem("\(fieldPrefix)\(key) must be a whole number above 0, found \(JSONWriter.string(value).prefix(40))"))
            }
            guard number <= Model.maximumContextTokens else {
                return .failure(Problem("\(fieldPrefix)\(key) \(number) is more than any model can produce; use at most \(Model.maximumContextTokens)"))
            }
            return .success(number)
        }
        return .success(nil)
    }
}
