/// Exact conversion of decimal text (`0.15`, `1.5e-07`, `-3`) to a scaled integer,
/// with no floating point anywhere: `scaled("1.5e-07", decimals: 12)` is `150_000`.
public enum DecimalText {
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case notANumber(String)
        case tooPrecise(String, decimals: Int)
        case tooLarge(String)

        public var description: String {
            switch self {
            case .notANumber(let text): "'\(DecimalText.shown(text))' is not a decimal number"
            case .tooPrecise(let text, let decimals): "'\(DecimalText.shown(text))' has more precision than \(decimals) decimal places"
            case .tooLarge(let text): "'\(DecimalText.shown(text))' is too large"
            }
        }
    }

    /// A number's text as a message shows it: whole up to 40 characters, else its start and its length, so a
    /// 100 KB number cannot flood the screen.
    public static func shown(_ text: String) -> String {
        text.utf8.count <= 40 ? text : text.prefix(24) + "… (\(text.utf8.count) characters)"
    }

    /// The value of `text` times 10^`decimals`, which must be a whole number.
    public static func scaled(_ text: String, decimals: Int) throws(Failure) -> Int64 {
        var utf8 = Array(text.utf8)[...]
        var negative = false
        if utf8.first == UInt8(ascii: "-") { negative = true; utf8 = utf8.dropFirst() }
        else if utf8.first == UInt8(ascii: "+") { utf8 = utf8.dropFirst() }

        var digits: [UInt8] = []
        var fractionDigits = 0
        var seenPoint = false
        var exponent = 0
        var index = utf8.startIndex
        while index < utf8.endIndex {
            let byte = utf8[index]
            if byte >= 0x30 && byte <= 0x39 {
                digits.append(byte - 0x30)
                if seenPoint { fractionDigits += 1 }
            } else if byte == UInt8(ascii: "."), !seenPoint {
                seenPoint = true
            } else if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                let exponentText = String(decoding: utf8[(index + 1)...], as: UTF8.self)
                guard let value = Int(exponentText), abs(value) < 400 else { throw .notANumber(text) }
                exponent = value
                break
            } else {
                throw .notANumber(text)
            }
            index += 1
        }
        guard !digits.isEmpty else { throw .notANumber(text) }

        // value = digits × 10^(exponent − fractionDigits); we want value × 10^decimals.
        let shift = exponent - fractionDigits + decimals
        var significant = digits
        if shift < 0 {
            let dropped = min(-shift, significant.count)
            let tail = significant.suffix(dropped)
            guard tail.allSatisfy({ $0 == 0 }) else { throw .tooPrecise(text, decimals: decimals) }
            significant.removeLast(dropped)
        } else if significant.contains(where: { $0 != 0 }) {
            significant.append(contentsOf: repeatElement(0, count: shift))
        }
        var result: Int64 = 0
        for digit in significant {
            let (times10, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int64(digit))
            guard !overflow1, !overflow2 else { throw .tooLarge(text) }
            result = sum
        }
        return negative ? -result : result
    }

    /// Formats `value / 10^decimals` as plain decimal text, without trailing zeros.
    public static func format(_ value: Int64, decimals: Int) -> String {
        let negative = value < 0
        let magnitude = value.magnitude
        var scale: UInt64 = 1
        for _ in 0..<decimals { scale *= 10 }
        let whole = magnitude / scale
        var fraction = String(magnitude % scale)
        fraction = String(repeating: "0", count: decimals - fraction.count) + fraction
        while fraction.last == "0" { fraction.removeLast() }
        return (negative ? "-" : "") + String(whole) + (fraction.isEmpty ? "" : "." + fraction)
    }
}
