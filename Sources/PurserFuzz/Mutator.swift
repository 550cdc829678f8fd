import PurserCore

/// Seeded mutations of inputs for the fuzz targets: byte-level changes plus JSON-aware ones (numbers and
/// strings swapped for the values that break parsers, known keys spliced in). The same seed gives the same
/// inputs, so a failure found once is found again.
public struct Mutator {
    private var random: SplitMix64

    public init(seed: UInt64) { random = SplitMix64(seed: seed) }

    public mutating func below(_ bound: Int) -> Int { bound <= 1 ? 0 : random.below(bound) }

    static let numbers = [
        "0", "-0", "-1", "1", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551616",
        "9223372036854775800", "4294967296", "2147483648", "1e30", "1e-30", "1e400", "-1e400", "1.5", "0.0000001", "99999999999999999999999",
        "1e9", "1000000001", "10000001", "NaN", "Infinity", "-", "1e", "00", "0x10",
    ]
    static let strings = [
        "\"\"", "\"106751991167d\"", "\"106751991d\"", "\"366d\"", "\"367d\"", "\"1e30s\"", "\"9999-12-31T00:00:00Z\"", "\"1970-01-01T00:00:00Z\"",
        "\"week\"", "\"hour\"", "\"frontier\"", "\"ultra\"", "\"-5\"", "\"\\u0000\"", "\"\\ud800\"", "\"é\"", "\"=cmd\"", "\"6m0s\"", "\"1e30\"",
        "\"Fri, 31 Dec 9999 23:59:59 GMT\"", "\"insufficient_quota\"", "\"context_length_exceeded\"",
        "\"" + String(repeating: "x", count: 5_000) + "\"",
    ]
    static let keys = [
        "custom_id", "method", "url", "body", "params", "prompt", "messages", "model", "max_tokens", "max_completion_tokens", "deadline",
        "quality", "max_cost_usd", "tags", "tools", "response_format", "content", "role", "usage", "prompt_tokens", "completion_tokens",
        "prompt_tokens_details", "cached_tokens", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
        "choices", "error", "message", "type", "id",
    ]
    static let headers = [
        "retry-after: 1e30", "retry-after: -5", "retry-after: 120", "retry-after: Fri, 31 Dec 9999 23:59:59 GMT", "retry-after-ms: 1e300",
        "retry-after-ms: -1", "retry-after-ms: NaN", "x-ratelimit-reset-requests: 6m0s", "x-ratelimit-reset-tokens: 99999999999h",
        "x-ratelimit-reset-tokens: 1.5ms", "anthropic-ratelimit-requests-reset: 9999-12-31T23:59:59Z",
        "anthropic-ratelimit-tokens-reset: 1970-01-01T00:00:00Z", "x-request-id: " + String(repeating: "r", count: 3_000),
    ]
    static let bytes: [UInt8] = Array("\"{}[],:\\-09eE. \n\t".utf8) + [0x00, 0x7F, 0x80, 0xC0, 0xFF, 0xED, 0xF4]

    /// `input` changed by one to four stacked mutations; `corpus` feeds splicing.
    public mutating func mutate(_ input: [UInt8], corpus: [[UInt8]]) -> [UInt8] {
        var data = input
        for _ in 0...below(4) { data = mutateOnce(data, corpus: corpus) }
        // Inputs stay small enough to run fast; the parsers' own limits are tested by the unit tests.
        return data.count > 64_000 ? Array(data.prefix(64_000)) : data
    }

    private mutating func mutateOnce(_ input: [UInt8], corpus: [[UInt8]]) -> [UInt8] {
        var data = input
        let position = below(data.count + 1)
        switch below(11) {
        case 0 where !data.isEmpty:
            data[below(data.count)] ^= UInt8(1 << below(8))
        case 1 where !data.isEmpty:
            data[below(data.count)] = Mutator.bytes[below(Mutator.bytes.count)]
        case 2:
            data.insert(Mutator.bytes[below(Mutator.bytes.count)], at: position)
        case 3 where !data.isEmpty:
            let start = below(data.count)
            data.removeSubrange(start..<min(data.count, start + 1 + below(16)))
        case 4 where !data.isEmpty:
            let start = below(data.count)
            let piece = data[start..<min(data.count, start + 1 + below(64))]
            data.insert(contentsOf: piece, at: below(data.count + 1))
        case 5:
            data = replaceToken(data, isNumber: true, with: Mutator.numbers[below(Mutator.numbers.count)])
        case 6:
            data = replaceToken(data, isNumber: false, with: Mutator.strings[below(Mutator.strings.count)])
        case 7:
            data.insert(contentsOf: Array("\"\(Mutator.keys[below(Mutator.keys.count)])\":".utf8), at: position)
        case 8 where !corpus.isEmpty:
            let other = corpus[below(corpus.count)]
            let cut = below(other.count + 1)
            data = Array(data.prefix(position)) + Array(other.suffix(from: cut))
        case 9:
            // A header line, for the response targets (their headers come before the first blank line).
            if let blank = firstBlankLine(data) { data.insert(contentsOf: Array((Mutator.headers[below(Mutator.headers.count)] + "\n").utf8), at: blank) }
        default:
            // Nesting: wrap a piece in brackets, or open many.
            data.insert(contentsOf: Array(repeating: UInt8(ascii: below(2) == 0 ? "[" : "{"), count: 1 + below(300)), at: position)
        }
        return data
    }

    private func firstBlankLine(_ data: [UInt8]) -> Int? {
        guard data.count >= 2 else { return nil }
        for index in 1..<data.count where data[index] == 0x0A && data[index - 1] == 0x0A { return index }
        return nil
    }

    /// Replaces one number (or quoted string) found in `data` with `replacement`.
    private mutating func replaceToken(_ data: [UInt8], isNumber: Bool, with replacement: String) -> [UInt8] {
        var spans: [Range<Int>] = []
        var index = 0
        while index < data.count {
            let byte = data[index]
            if isNumber, byte == UInt8(ascii: "-") || (byte >= 0x30 && byte <= 0x39) {
                let start = index
                while index < data.count, Array("+-.eE0123456789".utf8).contains(data[index]) { index += 1 }
                spans.append(start..<index)
            } else if !isNumber, byte == UInt8(ascii: "\"") {
                let start = index
                index += 1
                while index < data.count, data[index] != UInt8(ascii: "\"") { index += data[index] == UInt8(ascii: "\\") ? 2 : 1 }
                index = min(index + 1, data.count)
                spans.append(start..<index)
            } else {
                index += 1
            }
        }
        guard !spans.isEmpty else { return data + Array(replacement.utf8) }
        var changed = data
        changed.replaceSubrange(spans[below(spans.count)], with: Array(replacement.utf8))
        return changed
    }
}
