/// Durations written as a whole number and a unit: `90s`, `15m`, `6h`, `3d`, `2w`.
public enum DurationText {
    /// Milliseconds, or nil when `text` is not such a duration.
    public static func milliseconds(_ text: String) -> Int64? {
        guard let unit = text.last, let count = Int64(text.dropLast()), count > 0 else { return nil }
        let unitMilliseconds: Int64
        switch unit {
        case "s": unitMilliseconds = 1_000
        case "m": unitMilliseconds = 60_000
        case "h": unitMilliseconds = 3_600_000
        case "d": unitMilliseconds = 86_400_000
        case "w": unitMilliseconds = 604_800_000
        default: return nil
        }
        let (product, overflow) = count.multipliedReportingOverflow(by: unitMilliseconds)
        return overflow ? nil : product
    }

    /// The shortest exact spelling: 900000 → `15m`.
    public static func format(_ milliseconds: Int64) -> String {
        for (unit, size) in [("w", Int64(604_800_000)), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)]
        where milliseconds >= size && milliseconds % size == 0 {
            return "\(milliseconds / size)\(unit)"
        }
        return "\(milliseconds)ms"
    }

    /// A rounded human reading for progress and plans: `2h 05m`, `3d 4h`, `45s`.
    public static func approximate(_ milliseconds: Int64) -> String {
        let seconds = max(milliseconds, 0) / 1000
        if seconds < 60 { return "\(seconds)s" }
        let minutes = seconds / 60
        if minutes < 60 { return "\(minutes)m" }
        let hours = minutes / 60
        if hours < 48 { return "\(hours)h \(minutes % 60 < 10 ? "0" : "")\(minutes % 60)m" }
        return "\(hours / 24)d \(hours % 24)h"
    }
}
