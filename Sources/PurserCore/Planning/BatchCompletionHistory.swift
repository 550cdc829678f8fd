/// How long the providers' batches have taken to finish, per provider and model, from the batches this database
/// has sent: what a *speculative* batch (one whose deadline is shorter than the 24-hour window) is priced on.
///
/// Batches usually finish far sooner than their window, but nothing promises it, so until Purser has seen
/// `minimumSamples` batches of a model finish it assumes none will in time, and afterwards it counts the share
/// that finished within the time allowed as if four more had not: a batch is tried early only on evidence.
public struct BatchCompletionHistory: Sendable {
    /// Milliseconds each finished batch took, by `provider/model` id.
    public var durations: [String: [Int64]]

    public static let minimumSamples = 5

    public init(durations: [String: [Int64]] = [:]) {
        self.durations = durations.mapValues { $0.sorted() }
    }

    /// How long a batch of `model` takes, as the median of those seen, once enough have been; nil before.
    public func typicalDuration(model: String) -> Int64? {
        guard let samples = durations[model], samples.count >= BatchCompletionHistory.minimumSamples else { return nil }
        return samples[samples.count / 2]
    }

    /// The chance, in basis points, that a batch of `model` sent now finishes within `milliseconds`.
    public func chance(model: String, within milliseconds: Int64) -> Int64 {
        guard let samples = durations[model], samples.count >= BatchCompletionHistory.minimumSamples, milliseconds > 0 else { return 0 }
        var finished = 0
        for duration in samples {
            guard duration <= milliseconds else { break }
            finished += 1
        }
        return Int64(finished) * 10_000 / Int64(samples.count + 4)
    }
}
