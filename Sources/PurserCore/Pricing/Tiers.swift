/// Named quality floors and named deadlines, with the defaults used when a request names neither.
public struct Tiers: Sendable {
    public var quality: [String: Int]
    /// Deadline tier name → milliseconds after submission.
    public var deadline: [String: Int64]
    public var defaultQuality: String
    public var defaultDeadline: String
    public var batch: BatchTiming

    /// How much time batch work is given beyond the providers' window (`"batch"` in tiers.json).
    public struct BatchTiming: Sendable, Hashable {
        /// The batch APIs' completion window: OpenAI and Anthropic both finish (or expire) a batch within 24 hours.
        public static let windowMilliseconds: Int64 = 86_400_000
        public static let maximumMilliseconds: Int64 = 7 * 86_400_000

        /// A request goes by batch only when its deadline leaves the window plus this margin (default 1 h): time to
        /// notice an expired batch and still serve its requests live.
        public var marginMilliseconds: Int64 = 3_600_000
        /// A batch still running when a request's deadline is this close, plus the time a live call takes, is
        /// cancelled for it and the request is served live (default 15 min: OpenAI takes up to 10 to cancel).
        public var pullBackMilliseconds: Int64 = 900_000

        public init() {}
    }

    public init(quality: [String: Int], deadline: [String: Int64], defaultQuality: String, defaultDeadline: String, batch: BatchTiming = BatchTiming()) {
        self.quality = quality
        self.deadline = deadline
        self.defaultQuality = defaultQuality
        self.defaultDeadline = defaultDeadline
        self.batch = batch
    }

    public var qualityNamesByScore: [String] { quality.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map(\.key) }
    public var deadlineNamesByDuration: [String] { deadline.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map(\.key) }

    /// The tier whose floor is the highest one `score` meets, for reports by tier.
    public func tierName(forScore score: Int) -> String {
        quality.filter { $0.value <= score }.max { ($0.value, $0.key) < ($1.value, $1.key) }?.key ?? "\(score)"
    }
}
