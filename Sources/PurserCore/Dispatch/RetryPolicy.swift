/// When to try again: exponential backoff with full jitter, never sooner than the provider asked,
/// a few tries per model before moving to the next, and a limit on tries in all.
public struct RetryPolicy: Sendable {
    public var baseDelayMilliseconds: Int64 = 100
    public var maximumDelayMilliseconds: Int64 = 30_000
    public var attemptsPerModel = 3
    public var maximumAttempts = 8

    public init() {}

    /// The wait before try number `attempt + 1`, given `attempt` tries so far.
    public func delay(afterAttempt attempt: Int, retryAfterMilliseconds: Int64?, random: inout some RandomNumberGenerator) -> Int64 {
        let exponent = min(max(attempt - 1, 0), 20)
        let ceiling = min(maximumDelayMilliseconds, baseDelayMilliseconds << exponent)
        let jittered = Int64.random(in: 0...ceiling, using: &random)
        return max(jittered, retryAfterMilliseconds ?? 0)
    }
}
