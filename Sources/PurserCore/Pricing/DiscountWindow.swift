import Foundation

/// Hours on given weekdays, in a named time zone, when a model is billed at `multiplierBasisPoints / 10 000`
/// of its list price (DeepSeek bills off-peak hours at half the peak rate).
public struct DiscountWindow: Sendable, Hashable {
    /// Weekdays as Foundation numbers them: 1 = Sunday … 7 = Saturday.
    public var weekdays: Set<Int>
    /// Minutes after local midnight; `endMinute` may be 1440 (the end of the day).
    public var startMinute: Int
    public var endMinute: Int
    public var timeZoneIdentifier: String
    public var multiplierBasisPoints: Int64

    public static let weekdayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    public init(weekdays: Set<Int>, startMinute: Int, endMinute: Int, timeZoneIdentifier: String, multiplierBasisPoints: Int64) {
        self.weekdays = weekdays
        self.startMinute = startMinute
        self.endMinute = endMinute
        self.timeZoneIdentifier = timeZoneIdentifier
        self.multiplierBasisPoints = multiplierBasisPoints
    }

    /// The stretches of time (epoch milliseconds) this window covers between `start` and `end`.
    public func intervals(from start: Int64, to end: Int64) -> [Range<Int64>] {
        guard start < end, let timeZone = TimeZone(identifier: timeZoneIdentifier) else { return [] }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        var day = calendar.startOfDay(for: Date(timeIntervalSince1970: Double(start / 1000) - 86_400))
        var result: [Range<Int64>] = []
        while Int64(day.timeIntervalSince1970) * 1000 < end {
            let weekday = calendar.component(.weekday, from: day)
            if weekdays.contains(weekday) {
                // Minutes are added through the calendar so that daylight-saving days stay correct.
                let opens = calendar.date(byAdding: .minute, value: startMinute, to: day)!
                let closes = calendar.date(byAdding: .minute, value: endMinute, to: day)!
                let lower = max(start, Int64(opens.timeIntervalSince1970 * 1000))
                let upper = min(end, Int64(closes.timeIntervalSince1970 * 1000))
                if lower < upper {
                    if let last = result.last, last.upperBound >= lower {
                        result[result.count - 1] = last.lowerBound..<max(last.upperBound, upper)
                    } else {
                        result.append(lower..<upper)
                    }
                }
            }
            guard let next = calendar.date(byAdding: .day, value: 1, to: day) else { break }
            day = next
        }
        return result
    }
}
