import Foundation

/// Reads the routing values users write: quality tiers or scores, deadlines as durations,
/// RFC 3339 times or tier names, and USD ceilings.
public enum RoutingText {
    /// A quality tier name or a number 0–100 → (floor, tier label for reports).
    public static func quality(_ value: JSONValue, tiers: Tiers) -> Result<(floor: Int, tier: String), Problem> {
        switch value {
        case .string(let name):
            if let floor = tiers.quality[name] { return .success((floor, name)) }
            if let number = Int(name) { return quality(.number(String(number)), tiers: tiers) }
            return .failure(Problem("unknown quality tier \(JSONWriter.quotedForMessage(name)); use one of \(describeQualityTiers(tiers)) or a number 0–100"))
        case .number(let text):
            guard let number = Int(text), (0...100).contains(number) else {
                return .failure(Problem("quality \(DecimalText.shown(text)) is not a whole number from 0 to 100"))
            }
            return .success((number, tiers.tierName(forScore: number)))
        default:
            return .failure(Problem("quality must be a tier name or a number 0–100, found \(value.kindName)"))
        }
    }

    public static func describeQualityTiers(_ tiers: Tiers) -> String {
        tiers.qualityNamesByScore.map { "\($0) (\(tiers.quality[$0]!))" }.joined(separator: ", ")
    }

    /// How far ahead a deadline may be: planning looks no further, which bounds its work.
    public static let horizonMilliseconds = PlanningContext.defaultHorizonMilliseconds

    /// A deadline: a duration from `submittedAt` (`15m`), an RFC 3339 time, or a deadline tier name, at most
    /// the horizon away.
    public static func deadline(_ text: String, submittedAt: Int64, tiers: Tiers) -> Result<Int64, Problem> {
        let shown = text.count > 40 ? String(text.prefix(40)) + "…" : text
        func within(_ duration: Int64) -> Result<Int64, Problem> {
            guard duration <= horizonMilliseconds else {
                return .failure(Problem("deadline '\(shown)' is beyond the horizon of \(DurationText.format(horizonMilliseconds)); give one within it"))
            }
            return .success(submittedAt + duration)
        }
        if let tier = tiers.deadline[text] { return within(tier) }
        if let duration = DurationText.milliseconds(text) { return within(duration) }
        if let date = rfc3339Date(text) {
            let seconds = date.timeIntervalSince1970
            guard seconds.isFinite, abs(seconds) < 1e12 else { return .failure(Problem("deadline '\(shown)' is not a usable time")) }
            let milliseconds = Int64((seconds * 1000).rounded())
            guard milliseconds > submittedAt else { return .failure(Problem("deadline \(shown) is already past")) }
            return within(milliseconds - submittedAt)
        }
        let names = tiers.deadlineNamesByDuration.map { "\($0) (\(DurationText.format(tiers.deadline[$0]!)))" }.joined(separator: ", ")
        return .failure(Problem("deadline '\(shown)' is not a duration (15m, 6h, 3d), an RFC 3339 time or a tier (\(names))"))
    }

    public static func rfc3339Date(_ text: String) -> Date? {
        guard text.count >= 20, text.contains("T") || text.contains("t") else { return nil }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle())
    }

    /// A USD amount written as a number or a string, at least zero.
    public static func usd(_ value: JSONValue, field: String) -> Result<Money, Problem> {
        guard let text = value.numberText ?? value.stringValue else {
            return .failure(Problem("\(field) must be a number of US dollars, found \(value.kindName)"))
        }
        do {
            let money = try Money(usd: text)
            guard money >= .zero else { return .failure(Problem("\(field) must not be negative, found \(DecimalText.shown(text))")) }
            return .success(money)
        } catch {
            return .failure(Problem("\(field): \(error)"))
        }
    }
}
