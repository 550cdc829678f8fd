/// A strict RFC 8259 parser over UTF-8 bytes. It validates UTF-8 inside strings and reports
/// the byte column of the first problem, so ingestion can say exactly what is wrong on a line.
public struct JSONParser {
    public struct Failure: Error, Equatable, Sendable {
        /// 1-based byte column within the parsed text.
        public let column: Int
        public let reason: String
        /// True when the problem is invalid UTF-8 rather than JSON syntax.
        public let isInvalidUTF8: Bool
    }

    /// Parses one complete JSON text.
    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(Failure) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        return try parser.parseDocument(recordingTopLevelRanges: false).value
    }

    public static func parse(_ text: String) throws(Failure) -> JSONValue {
        try parse(Array(text.utf8))
    }

    public static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        try bytes.withUnsafeBufferPointer { buffer throws(Failure) in try parse(buffer) }
    }

    /// Parses one JSON text and, when it is an object, the byte range of each top-level member's value,
    /// so a caller can keep a member's exact original text.
    public static func parseRecordingTopLevelRanges(
        _ bytes: UnsafeBufferPointer<UInt8>
    ) throws(Failure) -> (value: JSONValue, ranges: [String: Range<Int>]) {
        var parser = JSONParser(bytes: bytes)
        return try parser.parseDocument(recordingTopLevelRanges: true)
    }

    // MARK: - Internals

    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0
    private var depth = 0
    private static let maximumDepth = 256

    private init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    private mutating func parseDocument(recordingTopLevelRanges: Bool) throws(Failure) -> (value: JSONValue, ranges: [String: Range<Int>]) {
        skipWhitespace()
        var ranges: [String: Range<Int>] = [:]
        let value: JSONValue
        if recordingTopLevelRanges, peek() == UInt8(ascii: "{") {
            value = try parseObject(ranges: &ranges)
        } else {
            value = try parseValue()
        }
        skipWhitespace()
        if position < bytes.count { throw fail("unexpected \(describeByte(bytes[position])) after the end of the JSON value") }
        return (value, ranges)
    }

    private func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    private func fail(_ reason: String, at column: Int? = nil, utf8: Bool = false) -> Failure {
        Failure(column: (column ?? position) + 1, reason: reason, isInvalidUTF8: utf8)
    }

    private func describeByte(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x\(String(byte, radix: 16, uppercase: true))"
    }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(Failure) -> JSONValue {
        skipWhitespace()
        guard let byte = peek() else { throw fail("unexpected end of input, expected a value") }
        switch byte {
        case UInt8(ascii: "{"):
            var ignored: [String: Range<Int>] = [:]
            return try parseObject(ranges: &ignored, record: false)
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw fail("unexpected \(describeByte(byte)), expected a value")
        }
    }

    private mutating func expectLiteral(_ literal: String) throws(Failure) {
        let start = position
        for expected in literal.utf8 {
            guard position < bytes.count, bytes[position] == expected else {
                throw fail("invalid literal, expected '\(literal)'", at: start)
            }
            position += 1
        }
    }

    private mutating func enter() throws(Failure) {
        depth += 1
        if depth > JSONParser.maximumDepth { throw fail("nesting deeper than \(JSONParser.maximumDepth) levels") }
    }

    private mutating func parseObject(ranges: inout [String: Range<Int>], record: Bool = true) throws(Failure) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        position += 1  // {
        var members: [JSONObject.Member] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { position += 1; return .object(JSONObject(members)) }
        // Room for the handful of members most objects have, made once rather than grown one by one.
        members.reserveCapacity(8)
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else {
                throw peek() == nil ? fail("unexpected end of input inside an object") : fail("expected a quoted member name")
            }
            let key = try parseString()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw fail("expected ':' after member name \(JSONWriter.quotedForMessage(key))") }
            position += 1
            skipWhitespace()
            let start = position
            let value = try parseValue()
            if record { ranges[key] = start..<position }
            members.append(JSONObject.Member(key: key, value: value))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return .object(JSONObject(members))
            case nil: throw fail("unexpected end of input inside an object")
            case let byte?: throw fail("unexpected \(describeByte(byte)), expected ',' or '}'")
            }
        }
    }

    private mutating func parseArray() throws(Failure) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        position += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") { position += 1; return .array(elements) }
        while true {
            elements.append(try parseValue())
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): position += 1; return .array(elements)
            case nil: throw fail("unexpected end of input inside an array")
            case let byte?: throw fail("unexpected \(describeByte(byte)), expected ',' or ']'")
            }
        }
    }

    private mutating func parseNumber() throws(Failure) -> String {
        let start = position
        if peek() == UInt8(ascii: "-") { position += 1 }
        guard let first = peek(), first >= 0x30, first <= 0x39 else { throw fail("invalid number", at: start) }
        if first == 0x30 {
            position += 1
        } else {
            while let byte = peek(), byte >= 0x30, byte <= 0x39 { position += 1 }
        }
        if peek() == UInt8(ascii: ".") {
            position += 1
            guard let byte = peek(), byte >= 0x30, byte <= 0x39 else { throw fail("invalid number: digits must follow '.'", at: start) }
            while let byte = peek(), byte >= 0x30, byte <= 0x39 { position += 1 }
        }
        if let byte = peek(), byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
            position += 1
            if let sign = peek(), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { position += 1 }
            guard let byte = peek(), byte >= 0x30, byte <= 0x39 else { throw fail("invalid number: digits must follow the exponent", at: start) }
            while let byte = peek(), byte >= 0x30, byte <= 0x39 { position += 1 }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
    }

    private mutating func parseString() throws(Failure) -> String {
        let openingQuote = position
        position += 1
        let start = position
        // Fast path: plain ASCII with no escapes becomes a String in one copy.
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
                position += 1
                return text
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { break }
            position += 1
        }
        var scalars: [UInt8] = Array(UnsafeBufferPointer(rebasing: bytes[start..<position]))
        while position < bytes.count {
            let byte = bytes[position]
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                return String(decoding: scalars, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &scalars)
            case 0..<0x20:
                throw fail("control character \(describeByte(byte)) inside a string; escape it")
            case 0x80...:
                let length = try validateUTF8Sequence()
                scalars.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[position..<position + length]))
                position += length
            default:
                scalars.append(byte)
                position += 1
            }
        }
        throw fail("unterminated string", at: openingQuote)
    }

    /// Checks one multi-byte UTF-8 sequence at `position` and returns its length.
    private func validateUTF8Sequence() throws(Failure) -> Int {
        let lead = bytes[position]
        let length: Int
        let minimum: UInt32
        switch lead {
        case 0xC2...0xDF: length = 2; minimum = 0x80
        case 0xE0...0xEF: length = 3; minimum = 0x800
        case 0xF0...0xF4: length = 4; minimum = 0x10000
        default: throw fail("invalid UTF-8 (\(describeByte(lead)))", utf8: true)
        }
        guard position + length <= bytes.count else { throw fail("invalid UTF-8 (truncated sequence)", utf8: true) }
        var scalar = UInt32(lead) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
        for offset in 1..<length {
            let continuation = bytes[position + offset]
            guard continuation & 0xC0 == 0x80 else { throw fail("invalid UTF-8 (\(describeByte(lead)) not followed by a continuation byte)", utf8: true) }
            scalar = scalar << 6 | UInt32(continuation & 0x3F)
        }
        if scalar < minimum { throw fail("invalid UTF-8 (overlong encoding)", utf8: true) }
        if scalar > 0x10FFFF || (0xD800...0xDFFF).contains(scalar) { throw fail("invalid UTF-8 (not a Unicode scalar)", utf8: true) }
        return length
    }

    private mutating func parseEscape(into output: inout [UInt8]) throws(Failure) {
        let escapeStart = position
        position += 1
        guard let byte = peek() else { throw fail("unterminated escape", at: escapeStart) }
        position += 1
        switch byte {
        case UInt8(ascii: "\""): output.append(0x22)
        case UInt8(ascii: "\\"): output.append(0x5C)
        case UInt8(ascii: "/"): output.append(0x2F)
        case UInt8(ascii: "b"): output.append(0x08)
        case UInt8(ascii: "f"): output.append(0x0C)
        case UInt8(ascii: "n"): output.append(0x0A)
        case UInt8(ascii: "r"): output.append(0x0D)
        case UInt8(ascii: "t"): output.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try parseHex4(escapeStart: escapeStart)
            if (0xD800...0xDBFF).contains(scalar) {
                guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                    throw fail("lone high surrogate in \\u escape", at: escapeStart)
                }
                position += 2
                let low = try parseHex4(escapeStart: escapeStart)
                guard (0xDC00...0xDFFF).contains(low) else { throw fail("invalid surrogate pair in \\u escape", at: escapeStart) }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw fail("lone low surrogate in \\u escape", at: escapeStart)
            }
            output.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
        default:
            throw fail("invalid escape '\\\(Character(Unicode.Scalar(byte)))'", at: escapeStart)
        }
    }

    private mutating func parseHex4(escapeStart: Int) throws(Failure) -> UInt32 {
        guard position + 4 <= bytes.count else { throw fail("truncated \\u escape", at: escapeStart) }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt32
            switch byte {
            case 0x30...0x39: digit = UInt32(byte - 0x30)
            case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
            default: throw fail("invalid hex digit in \\u escape", at: escapeStart)
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }
}
