/// Named quality floors and named deadlines, with the defaults used when a request names neither.
public struct Tiers: Sendable {
    public var quality: [String: Int]
    /// Deadline tier name → milliseconds after submission.
    public var deadline: [String: Int64]
    public var defaultQuality: String
    public var defaultDeadline: String

    public init(quality: [String: Int], deadline: [String: Int64], defaultQuality: String, defaultDeadline: String) {
        self.quality = quality
        self.deadline = deadline
        self.defaultQuality = defaultQuality
        self.defaultDeadline = defaultDeadline
    }

    public var qualityNamesByScore: [String] { quality.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map(\.key) }
    public var deadlineNamesByDuration: [String] { deadline.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map(\.key) }

    /// The tier whose floor is the highest one `score` meets, for reports by tier.
    public func tierName(forScore score: Int) -> String {
        quality.filter { $0.value <= score }.max { ($0.value, $0.key) < ($1.value, $1.key) }?.key ?? "\(score)"
    }
}
