/// A request body's leading content cut at its content-block boundaries — tools, the system prompt, then each
/// message's blocks — with, at each boundary, the estimated tokens up to it, a hash of everything up to it (two
/// bodies with the same hash at a boundary begin with the same bytes), and whether the request marks a cache
/// breakpoint there (Anthropic's `cache_control`). What prompt caching matches on.
public struct PromptPrefix: Sendable {
    public struct Boundary: Sendable, Hashable {
        /// Estimated tokens from the start of the body to this boundary.
        public var tokens: Int
        public var hash: UInt64
        public var breakpoint: Bool
        /// The lifetime a breakpoint here asks for (`"ttl": "1h"`), in milliseconds; nil for the default.
        public var lifetimeMilliseconds: Int64?
    }

    public var boundaries: [Boundary] = []
    /// Estimated tokens of the whole body's input.
    public var totalTokens = 0

    public init(body: JSONObject, dialect: Provider.Dialect) {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        var bytes = 0
        var messages = 0
        func add(_ block: JSONValue, marker: JSONValue? = nil) {
            let text = JSONWriter.string(block)
            for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
            hash = (hash ^ 0xFF) &* 0x0000_0100_0000_01B3  // the boundary itself, so [ab] and [a][b] differ
            bytes += text.utf8.count
            let control = (marker ?? block).objectValue?["cache_control"]?.objectValue
            let lifetime: Int64? = control?["ttl"]?.stringValue == "1h" ? 3_600_000 : nil
            boundaries.append(Boundary(
                tokens: TokenEstimator.inputTokens(textBytes: bytes, messages: messages, images: 0), hash: hash, breakpoint: control != nil,
                lifetimeMilliseconds: lifetime))
        }
        func addContent(_ content: JSONValue?, role: String) {
            messages += 1
            if let parts = content?.arrayValue {
                for (index, part) in parts.enumerated() { add(index == 0 ? .object(JSONObject(["role": .string(role), "part": part])) : part, marker: part) }
            } else if let content {
                add(.object(JSONObject(["role": .string(role), "content": content])))
            }
        }
        if let tools = body["tools"]?.arrayValue, !tools.isEmpty {
            // The tools are one block; a breakpoint on the last tool marks its end.
            add(.array(tools), marker: tools.last)
        }
        switch dialect {
        case .openai:
            for message in body["messages"]?.arrayValue ?? [] {
                let object = message.objectValue ?? JSONObject()
                addContent(object["content"] ?? .null, role: object["role"]?.stringValue ?? "user")
            }
        case .anthropic:
            if let system = body["system"] {
                if let blocks = system.arrayValue {
                    for block in blocks { add(block) }
                } else {
                    add(.object(JSONObject(["system": system])))
                }
            }
            for message in body["messages"]?.arrayValue ?? [] {
                let object = message.objectValue ?? JSONObject()
                addContent(object["content"], role: object["role"]?.stringValue ?? "user")
            }
        }
        totalTokens = boundaries.last?.tokens ?? 0
    }
}
