/// What `purser run` was asked to do.
public struct RunOptions: Sendable {
    public var job: Int64?
    public var concurrency = 16
    public var simulate = false
    /// Simulated calls take their modelled latency divided by this.
    public var simulationSpeedup = 1.0
    public var watch = false
    public var graceSeconds = 10.0
    public var timeoutSeconds = 120.0
    /// A lease outlives a call's timeout, and is renewed every third of it while the call runs.
    public var leaseSeconds = 180.0
    public var allowLate = false
    public var limits = RateLimiter.Limits()
    public var retry = RetryPolicy()
    public var failuresBeforeCooldown = 5
    public var cooldownSeconds = 30.0
    /// Names this process's leases; unique per run.
    public var worker: String

    public init(worker: String) { self.worker = worker }
}

/// What a run reports while it works and when it ends. The CLI decides how to show it.
public enum RunEvent: Sendable {
    case started(total: Int, planned: Int)
    case progress(RunProgress)
    case notice(String)
    case finished(RunSummary)
}

public struct RunProgress: Sendable {
    public var succeeded: Int
    public var failed: Int
    public var expired: Int
    public var inFlight: Int
    /// Requests this run may still serve.
    public var remaining: Int
    public var spend: Money
    public var elapsedMilliseconds: Int64
}

public struct RunSummary: Sendable {
    public var succeeded: Int
    public var failed: Int
    public var expired: Int
    public var retried: Int
    public var fellBack: Int
    /// Requests in scope held by a budget cap when the run ended.
    public var held: Int
    public var spend: Money
    public var simulated: Bool
    public var elapsedMilliseconds: Int64
    /// Requests left queued, and why (providers disabled, no plan, stopped early).
    public var leftQueued: [String]
}
