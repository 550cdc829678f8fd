/// What Purser adds to a call so that the provider's cache earns what a shared prefix can save.
public enum PromptCaching {
    /// The body as it is sent: with whatever its provider's cache needs to keep the group's shared prefix.
    public static func prepared(_ body: JSONObject, requestID: Int64, model: Model, provider: Provider, group: PrefixGroup?) -> JSONObject {
        withCacheKey(withBreakpoint(body, model: model, provider: provider, group: group), requestID: requestID, model: model, provider: provider, group: group)
    }

    /// An Anthropic call gets a five-minute breakpoint (`cache_control`) at the end of its leading content when the
    /// model caches only at breakpoints, others of its job share that content, and it is long enough to be cached:
    /// without one, Anthropic caches nothing. A body that marks its own breakpoints is sent as it is, and so is one
    /// whose prefix no other request shares (a write costs 1.25× the input it would save nothing on).
    public static func withBreakpoint(_ body: JSONObject, model: Model, provider: Provider, group: PrefixGroup?) -> JSONObject {
        guard provider.dialect == .anthropic, let rule = model.caching, rule.mode == .explicit, let group, group.requests >= 2,
              group.tokens >= rule.minimumPrefixTokens, !marksBreakpoints(.object(body))
        else { return body }
        let marker = JSONValue.object(JSONObject(["type": .string("ephemeral")]))
        func marked(_ block: JSONValue) -> JSONValue {
            guard var object = block.objectValue else { return block }
            object["cache_control"] = marker
            return .object(object)
        }
        func markedContent(_ content: JSONValue) -> JSONValue {
            if var blocks = content.arrayValue, let last = blocks.last {
                blocks[blocks.count - 1] = marked(last)
                return .array(blocks)
            }
            guard let text = content.stringValue else { return content }
            return .array([.object(JSONObject(["type": .string("text"), "text": .string(text), "cache_control": marker]))])
        }
        var body = body
        // The last block before the request's own final message: the message before it, else the system prompt, else the tools.
        if var messages = body["messages"]?.arrayValue, messages.count >= 2, var message = messages[messages.count - 2].objectValue,
           let content = message["content"] {
            message["content"] = markedContent(content)
            messages[messages.count - 2] = .object(message)
            body["messages"] = .array(messages)
        } else if let system = body["system"] {
            body["system"] = markedContent(system)
        } else if var tools = body["tools"]?.arrayValue, let last = tools.last {
            tools[tools.count - 1] = marked(last)
            body["tools"] = .array(tools)
        }
        return body
    }

    /// An OpenAI call of a group gets a `prompt_cache_key` naming the group, so that its requests reach the machines
    /// that hold its prefix; the group is spread over buckets of about 150 requests each, as OpenAI advises keeping a
    /// prefix and key under about 15 requests a minute (a bucket's share of a group served over ten minutes). Only
    /// OpenAI itself is sent the field (other OpenAI-dialect providers may refuse a parameter they do not know), and a
    /// body that names its own key keeps it.
    public static func withCacheKey(_ body: JSONObject, requestID: Int64, model: Model, provider: Provider, group: PrefixGroup?) -> JSONObject {
        guard provider.name == "openai", provider.dialect == .openai, let rule = model.caching, rule.mode == .automatic, let group,
              group.requests >= 2, group.tokens >= rule.minimumPrefixTokens, body["prompt_cache_key"] == nil
        else { return body }
        let buckets = Int64(max(1, (group.requests + bucketRequests - 1) / bucketRequests))
        var body = body
        body["prompt_cache_key"] = .string("purser-\(group.id)-\(requestID % buckets)")
        return body
    }

    /// Requests of a group per `prompt_cache_key` bucket.
    public static let bucketRequests = 150

    /// Whether any block of the body already carries `cache_control`.
    static func marksBreakpoints(_ value: JSONValue) -> Bool {
        switch value {
        case .object(let object): object.members.contains { $0.key == "cache_control" || marksBreakpoints($0.value) }
        case .array(let elements): elements.contains(where: marksBreakpoints)
        default: false
        }
    }
}
