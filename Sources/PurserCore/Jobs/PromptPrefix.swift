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
    /// The end of the body's leading content — everything before its last message: tools, the system prompt, the
    /// examples — which requests of one batch share when they share a prefix. Nil when the last message is all there is.
    public var leading: Boundary?

    /// The group a request's leading content puts it in (16 hex digits) and that content's estimated tokens: requests
    /// whose leading content is the same are one group. Nil when the body has no leading content.
    public var group: (id: String, tokens: Int)? {
        guard let leading else { return nil }
        let digits = String(leading.hash, radix: 16)
        return (String(repeating: "0", count: 16 - digits.count) + digits, leading.tokens)
    }

    /// With `leadingOnly`, the walk stops where the last message begins: `leading` and `group` are set, and the
    /// boundaries end there (what submit needs, at the least cost).
    public init(body: JSONObject, dialect: Provider.Dialect, leadingOnly: Bool = false) {
        var hasher = PrefixHasher()
        var messages = 0
        var stopped = false
        func boundary(marker: JSONValue?) {
            hasher.byte(0xFF)  // the boundary itself, so [ab] and [a][b] differ
            let control = marker?.objectValue?["cache_control"]?.objectValue
            let lifetime: Int64? = control?["ttl"]?.stringValue == "1h" ? 3_600_000 : nil
            boundaries.append(Boundary(
                tokens: TokenEstimator.inputTokens(textBytes: hasher.bytes, messages: messages, images: 0), hash: hasher.hash,
                breakpoint: control != nil, lifetimeMilliseconds: lifetime))
        }
        func add(_ block: JSONValue, marker: JSONValue? = nil) {
            hasher.feed(block)
            boundary(marker: marker ?? block)
        }
        func addMessages(_ list: [JSONValue]) {
            for (index, message) in list.enumerated() {
                if index == list.count - 1 {
                    leading = boundaries.last
                    if leadingOnly { stopped = true; return }
                }
                let object = message.objectValue ?? JSONObject()
                messages += 1
                hasher.text(object["role"]?.stringValue ?? "user")
                let content = object["content"] ?? .null
                if let parts = content.arrayValue {
                    for part in parts { add(part) }
                    if parts.isEmpty { boundary(marker: nil) }
                } else {
                    add(content)
                }
            }
        }
        if let tools = body["tools"]?.arrayValue, !tools.isEmpty {
            // The tools are one block; a breakpoint on the last tool marks its end.
            add(.array(tools), marker: tools.last)
        }
        if dialect == .anthropic, let system = body["system"] {
            hasher.text("system")
            if let blocks = system.arrayValue {
                for block in blocks { add(block) }
            } else {
                add(system)
            }
        }
        addMessages(body["messages"]?.arrayValue ?? [])
        totalTokens = stopped ? 0 : boundaries.last?.tokens ?? 0
    }
}

/// A 64-bit hash of a JSON value walked in order (no text is made), counting about the bytes its JSON takes: the same value
/// always hashes the same, and values that differ anywhere (a key, a string, a number's digits, the order of members)
/// hash apart.
struct PrefixHasher {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    var bytes = 0

    @inline(__always) mutating func byte(_ value: UInt8) { hash = (hash ^ UInt64(value)) &* 0x0000_0100_0000_01B3 }

    /// A string's bytes, eight at a time (a multiply-and-shift mix per word, then the tail a byte at a time): texts are
    /// most of a prompt, and hashing them a byte at a time cost a tenth of submit's time.
    mutating func text(_ string: String) {
        var string = string
        var current = hash
        string.withUTF8 { units in
            let raw = UnsafeRawBufferPointer(units)
            var offset = 0
            while offset + 8 <= raw.count {
                current = (current ^ raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0x9E37_79B9_7F4A_7C15
                current ^= current >> 29
                offset += 8
            }
            while offset < raw.count {
                current = (current ^ UInt64(raw[offset])) &* 0x0000_0100_0000_01B3
                offset += 1
            }
        }
        hash = (current ^ UInt64(truncatingIfNeeded: string.utf8.count)) &* 0x0000_0100_0000_01B3
        bytes += string.utf8.count + 2
    }

    mutating func feed(_ value: JSONValue) {
        switch value {
        case .string(let string):
            byte(1)
            text(string)
        case .number(let digits):
            byte(2)
            text(digits)
        case .bool(let flag):
            byte(flag ? 3 : 4)
            bytes += flag ? 4 : 5
        case .null:
            byte(5)
            bytes += 4
        case .array(let elements):
            byte(6)
            for element in elements { feed(element) }
            byte(7)
            bytes += 1 + elements.count
        case .object(let object):
            byte(8)
            for member in object.members {
                text(member.key)
                byte(9)
                feed(member.value)
            }
            byte(10)
            bytes += 1 + 2 * object.members.count
        }
    }
}
