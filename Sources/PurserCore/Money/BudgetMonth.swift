/// A calendar month in UTC, the period a budget caps. Written `YYYY-MM`.
public struct BudgetMonth: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var year: Int
    /// 1 to 12.
    public var month: Int

    public init(year: Int, month: Int) {
        self.year = year
        self.month = month
    }

    /// The month containing `milliseconds` since 1970, UTC.
    public init(containing milliseconds: Int64) {
        let (year, month, _) = BudgetMonth.civilDate(daysSince1970: BudgetMonth.floorDivide(milliseconds, BudgetMonth.millisecondsPerDay))
        self.init(year: year, month: month)
    }

    /// Parses `YYYY-MM`; nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, let year = Int(parts[0]), let month = Int(parts[1]),
            (1970...9999).contains(year), (1...12).contains(month)
        else { return nil }
        self.init(year: year, month: month)
    }

    public var description: String { "\(year)-\(month < 10 ? "0" : "")\(month)" }

    public var next: BudgetMonth { month == 12 ? BudgetMonth(year: year + 1, month: 1) : BudgetMonth(year: year, month: month + 1) }

    /// The first millisecond of the month.
    public var start: Int64 { BudgetMonth.daysSince1970(year: year, month: month, day: 1) * BudgetMonth.millisecondsPerDay }

    /// The first millisecond of the next month.
    public var end: Int64 { next.start }

    public var days: Int { Int((end - start) / BudgetMonth.millisecondsPerDay) }

    public static func < (lhs: BudgetMonth, rhs: BudgetMonth) -> Bool { (lhs.year, lhs.month) < (rhs.year, rhs.month) }

    package static let millisecondsPerDay: Int64 = 86_400_000

    /// `YYYY-MM-DD` of the UTC day containing `milliseconds`.
    public static func dayText(_ milliseconds: Int64) -> String {
        let (year, month, day) = civilDate(daysSince1970: floorDivide(milliseconds, millisecondsPerDay))
        return "\(BudgetMonth(year: year, month: month))-\(day < 10 ? "0" : "")\(day)"
    }

    // MARK: - Civil calendar (Howard Hinnant's days_from_civil / civil_from_days)

    package static func floorDivide(_ value: Int64, _ divisor: Int64) -> Int64 {
        value >= 0 ? value / divisor : (value - divisor + 1) / divisor
    }

    static func daysSince1970(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * Int64(month > 2 ? month - 3 : month + 9) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civilDate(daysSince1970 days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        return (Int(yearOfEra + era * 400 + (month <= 2 ? 1 : 0)), Int(month), Int(day))
    }
}
