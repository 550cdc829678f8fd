/// An exact amount of US dollars, counted in pico-USD (10⁻¹² USD).
///
/// Prices per million tokens are kept in micro-USD, which is the same unit as pico-USD per token,
/// so a cost is simply `tokens × price`. An `Int64` holds up to about 9.2 million USD.
public struct Money: Sendable, Hashable, Comparable, AdditiveArithmetic, CustomStringConvertible {
    public var picoUSD: Int64

    public init(picoUSD: Int64) { self.picoUSD = picoUSD }

    public static let zero = Money(picoUSD: 0)
    public static let picoPerUSD: Int64 = 1_000_000_000_000

    /// Parses a USD amount written in decimal (`"12.50"`, `"1e-3"`), exactly.
    public init(usd text: String) throws(DecimalText.Failure) {
        self.picoUSD = try DecimalText.scaled(text, decimals: 12)
    }

    // Sums saturate at about ±9.2 million USD instead of trapping: an amount past that is already more than any
    // cap, and a saturated sum still holds every request a cap would hold.
    public static func + (lhs: Money, rhs: Money) -> Money { Money(picoUSD: saturating(lhs.picoUSD.addingReportingOverflow(rhs.picoUSD))) }
    public static func - (lhs: Money, rhs: Money) -> Money { Money(picoUSD: saturating(lhs.picoUSD.subtractingReportingOverflow(rhs.picoUSD))) }

    /// This amount as a share of `whole` in basis points (10 000 is all of it), or nil when `whole` is not positive.
    public func basisPoints(of whole: Money) -> Int64? {
        whole.picoUSD > 0 ? Int64(clamping: Int128(picoUSD) * 10_000 / Int128(whole.picoUSD)) : nil
    }

    static func saturating(_ result: (partialValue: Int64, overflow: Bool)) -> Int64 {
        guard result.overflow else { return result.partialValue }
        // On overflow the wrapped value has the opposite sign of the true one.
        return result.partialValue < 0 ? .max : .min
    }
    public static func < (lhs: Money, rhs: Money) -> Bool { lhs.picoUSD < rhs.picoUSD }

    /// The exact decimal value in USD, e.g. `0.000125`.
    public var exactUSD: String { DecimalText.format(picoUSD, decimals: 12) }

    /// Rounded for display: cents for amounts of a dollar or more, more digits for small amounts.
    public var formatted: String {
        let magnitude = picoUSD.magnitude
        let digits: Int
        switch magnitude {
        case 1_000_000_000_000...: digits = 2
        case 10_000_000_000...: digits = 4
        default: digits = 6
        }
        // The sign goes before the dollar sign: -$0.0039, not $-0.0039 (and none when it rounds to zero).
        let text = Money.rounded(picoUSD.magnitude, toDecimals: digits)
        return (picoUSD < 0 && !Money.isZero(text) ? "-$" : "$") + text
    }

    public var description: String { formatted }

    /// `value` pico-USD rounded half away from zero to `decimals` places of a dollar, with thousands separators.
    static func rounded(_ value: Int64, toDecimals decimals: Int) -> String {
        let text = rounded(value.magnitude, toDecimals: decimals)
        return (value < 0 && !isZero(text) ? "-" : "") + text
    }

    private static func isZero(_ text: String) -> Bool { !text.contains { $0 >= "1" && $0 <= "9" } }

    /// A magnitude in pico-USD rounded half up to `decimals` places of a dollar, with thousands separators.
    static func rounded(_ magnitude: UInt64, toDecimals decimals: Int) -> String {
        var unit: UInt64 = 1
        for _ in 0..<(12 - decimals) { unit *= 10 }
        let units = (magnitude + unit / 2) / unit
        var scale: UInt64 = 1
        for _ in 0..<decimals { scale *= 10 }
        let whole = PurserCore.grouped(Int64(clamping: units / scale))
        var fraction = String(units % scale)
        fraction = String(repeating: "0", count: decimals - fraction.count) + fraction
        return whole + "." + fraction
    }
}

/// A price in micro-USD per million tokens (equivalently pico-USD per token).
public struct TokenPrice: Sendable, Hashable, Comparable {
    /// $10,000 per million tokens: far above any price sold, and low enough that a request of the largest
    /// context at it (times four, times the cache-write rate, for a worst case) still fits in an Int64.
    public static let maximum = TokenPrice(microUSDPerMillion: 10_000_000_000)

    public var microUSDPerMillion: Int64

    public init(microUSDPerMillion: Int64) { self.microUSDPerMillion = microUSDPerMillion }

    /// Parses a price written in USD per million tokens (`"0.15"`).
    public init(usdPerMillion text: String) throws(DecimalText.Failure) {
        self.microUSDPerMillion = try DecimalText.scaled(text, decimals: 6)
    }

    /// Parses a price written in USD per token (`"1.5e-07"`), as LiteLLM writes them.
    public init(usdPerToken text: String) throws(DecimalText.Failure) {
        self.microUSDPerMillion = try DecimalText.scaled(text, decimals: 12)
    }

    public func cost(tokens: Int) -> Money { Money(picoUSD: Money.saturating(Int64(tokens).multipliedReportingOverflow(by: microUSDPerMillion))) }

    /// This price times `basisPoints / 10 000`, rounded half up to a whole micro-USD.
    public func scaled(basisPoints: Int64) -> TokenPrice {
        TokenPrice(microUSDPerMillion: Int64(clamping: (Int128(microUSDPerMillion) * Int128(basisPoints) + 5_000) / 10_000))
    }

    /// USD per million tokens as exact decimal text, e.g. `"0.15"`.
    public var usdPerMillionText: String { DecimalText.format(microUSDPerMillion, decimals: 6) }

    public static func < (lhs: TokenPrice, rhs: TokenPrice) -> Bool { lhs.microUSDPerMillion < rhs.microUSDPerMillion }
}

/// A share in basis points as "12.3%" (rounded down to a tenth of a percent).
public func percentText(_ basisPoints: Int64) -> String {
    (basisPoints < 0 ? "-" : "") + "\(abs(basisPoints) / 100).\(abs(basisPoints) % 100 / 10)%"
}
