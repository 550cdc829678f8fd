/// A report's figures as text for people, rounded once, at the end, to one precision for the whole
/// report, and apportioned so that every column's lines add up to its total exactly as shown.
public struct ReportDisplay: Sendable {
    public struct Row: Sendable, Hashable {
        public var key: String
        public var requests: String
        public var inputTokens: String
        public var cachedTokens: String
        public var outputTokens: String
        public var cost: String
        public var share: String
        public var baseline: String
        public var savings: String
    }

    public var rows: [Row]
    public var total: Row
    /// Dollar decimals shown: cents from $100, four places from $1, six below.
    public var decimals: Int

    public init(_ report: SpendReport) {
        let largest = ([report.total.cost, report.total.baseline] + report.lines.map(\.baseline)).map(\.picoUSD.magnitude).max() ?? 0
        decimals = largest >= 100_000_000_000_000 ? 2 : largest >= 1_000_000_000_000 ? 4 : 6
        var unit: Int128 = 1
        for _ in 0..<(12 - decimals) { unit *= 10 }
        let places = decimals
        func column(_ amounts: [Money]) -> [String] {
            Apportion.largestRemainder(amounts.map { Int128($0.picoUSD) }, unit: unit).map { Money.dollars(units: $0, decimals: places) }
        }
        func totalText(_ amount: Money) -> String { column([amount])[0] }
        let costs = column(report.lines.map(\.cost)), baselines = column(report.lines.map(\.baseline)), savings = column(report.lines.map(\.savings))
        // Shares are shown to a tenth of a percent, apportioned like the amounts so that they add up to 100.0%.
        let shares = report.total.cost.picoUSD > 0
            ? Apportion.largestRemainder(report.lines.map { Int128($0.cost.picoUSD) * 1_000 }, unit: Int128(report.total.cost.picoUSD)).map { Int64($0) * 10 }
            : report.lines.map { _ in 0 }
        rows = report.lines.indices.map { index in
            let line = report.lines[index]
            return Row(
                key: line.key, requests: grouped(line.requests), inputTokens: grouped(line.inputTokens), cachedTokens: grouped(line.cachedTokens),
                outputTokens: grouped(line.outputTokens), cost: costs[index], share: percentText(shares[index]), baseline: baselines[index],
                savings: savings[index])
        }
        let total = report.total
        self.total = Row(
            key: "total", requests: grouped(total.requests), inputTokens: grouped(total.inputTokens), cachedTokens: grouped(total.cachedTokens),
            outputTokens: grouped(total.outputTokens), cost: totalText(total.cost), share: report.lines.isEmpty ? "0.0%" : "100.0%",
            baseline: totalText(total.baseline), savings: totalText(total.savings))
    }
}

/// 1234567 → "1,234,567".
public func grouped(_ value: Int64) -> String {
    let digits = String(value.magnitude)
    var text = ""
    for (index, character) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 { text.append(",") }
        text.append(character)
    }
    return (value < 0 ? "-" : "") + text
}

extension Money {
    /// `units` of 10^-decimals USD as "$1,234.56" (or "-$0.0012").
    static func dollars(units: Int128, decimals: Int) -> String {
        var scale: Int128 = 1
        for _ in 0..<decimals { scale *= 10 }
        let magnitude = units.magnitude
        let whole = grouped(Int64(clamping: magnitude / UInt128(scale)))
        var fraction = String(magnitude % UInt128(scale))
        fraction = String(repeating: "0", count: decimals - fraction.count) + fraction
        return (units < 0 ? "-" : "") + "$" + whole + (decimals > 0 ? "." + fraction : "")
    }
}
