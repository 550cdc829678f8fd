/// Serialises `JSONValue`s compactly (one line) or indented, keeping member order.
public enum JSONWriter {
    public static func string(_ value: JSONValue, pretty: Bool = false) -> String {
        String(decoding: bytes(value, pretty: pretty), as: UTF8.self)
    }

    /// The UTF-8 bytes of `value`'s JSON text, written as bytes: a request body goes out on every call, and a `String`
    /// grown piece by piece then copied to bytes cost twice as much (1.8% of a 0 ms run's CPU).
    public static func bytes(_ value: JSONValue, pretty: Bool = false) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(256)
        write(value, into: &output, pretty: pretty, indent: 0)
        return output
    }

    public static func write(_ value: JSONValue, into output: inout String, pretty: Bool = false, indent: Int = 0) {
        var bytes: [UInt8] = []
        write(value, into: &bytes, pretty: pretty, indent: indent)
        output += String(decoding: bytes, as: UTF8.self)
    }

    static func write(_ value: JSONValue, into output: inout [UInt8], pretty: Bool, indent: Int) {
        func newLine(_ depth: Int) {
            output.append(UInt8(ascii: "\n"))
            output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * depth))
        }
        switch value {
        case .null: output.append(contentsOf: "null".utf8)
        case .bool(let flag): output.append(contentsOf: (flag ? "true" : "false").utf8)
        case .number(let text): output.append(contentsOf: text.utf8)
        case .string(let text): appendQuoted(text, to: &output)
        case .array(let elements):
            guard !elements.isEmpty else { return output.append(contentsOf: "[]".utf8) }
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                if pretty { newLine(indent + 1) }
                write(element, into: &output, pretty: pretty, indent: indent + 1)
            }
            if pretty { newLine(indent) }
            output.append(UInt8(ascii: "]"))
        case .object(let object):
            guard !object.members.isEmpty else { return output.append(contentsOf: "{}".utf8) }
            output.append(UInt8(ascii: "{"))
            for (index, member) in object.members.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                if pretty { newLine(indent + 1) }
                appendQuoted(member.key, to: &output)
                output.append(UInt8(ascii: ":"))
                if pretty { output.append(UInt8(ascii: " ")) }
                write(member.value, into: &output, pretty: pretty, indent: indent + 1)
            }
            if pretty { newLine(indent) }
            output.append(UInt8(ascii: "}"))
        }
    }

    /// Text from a file or an answer as a message shows it: quoted, and cut after 64 characters so a huge one
    /// cannot flood the screen.
    public static func quotedForMessage(_ text: String) -> String {
        text.count <= 64 ? quoted(text) : quoted(String(text.prefix(64))) + "… (\(text.utf8.count) bytes)"
    }

    public static func quoted(_ text: String) -> String {
        var output: [UInt8] = []
        appendQuoted(text, to: &output)
        return String(decoding: output, as: UTF8.self)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Appends `text` as a JSON string. Runs of bytes that need no escape are copied whole, which
    /// matters: results and request bodies are written on every call.
    static func appendQuoted(_ text: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { utf8 in
            var runStart = 0
            for index in utf8.indices {
                let byte = utf8[index]
                if byte >= 0x20 && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") { continue }
                output.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                output.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): output.append(byte)
                case UInt8(ascii: "\n"): output.append(UInt8(ascii: "n"))
                case UInt8(ascii: "\r"): output.append(UInt8(ascii: "r"))
                case UInt8(ascii: "\t"): output.append(UInt8(ascii: "t"))
                default:
                    output.append(contentsOf: "u00".utf8)
                    output.append(hexDigits[Int(byte >> 4)])
                    output.append(hexDigits[Int(byte & 0x0F)])
                }
                runStart = index + 1
            }
            output.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        output.append(UInt8(ascii: "\""))
    }
}
