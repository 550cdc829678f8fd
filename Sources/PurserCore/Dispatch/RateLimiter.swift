/// Per-model token buckets for requests/min and tokens/min, and in-flight caps per model and provider.
/// Buckets hold five seconds' worth, so a burst cannot spend a whole minute's allowance at once.
public actor RateLimiter {
    struct Bucket {
        var capacity: Double
        var available: Double
        var perMillisecond: Double
        var updatedAt: Int64

        init(perMinute: Int, now: Int64) {
            capacity = max(1, Double(perMinute) / 12)
            available = capacity
            perMillisecond = Double(perMinute) / 60_000
            updatedAt = now
        }

        mutating func refill(_ now: Int64) {
            available = min(capacity, available + Double(now - updatedAt) * perMillisecond)
            updatedAt = now
        }

        /// Milliseconds until `amount` can be taken (a request larger than the bucket waits for a full bucket).
        func wait(for amount: Double) -> Int64 {
            let needed = min(amount, capacity) - available
            return needed <= 0 ? 0 : Int64((needed / perMillisecond).rounded(.up))
        }
    }

    public struct Limits: Sendable {
        public var requestsPerMinuteOverride: Int?
        public var tokensPerMinuteOverride: Int?
        public var inFlightPerModel: Int?
        public var inFlightPerProvider: Int?

        public init(requestsPerMinuteOverride: Int? = nil, tokensPerMinuteOverride: Int? = nil, inFlightPerModel: Int? = nil, inFlightPerProvider: Int? = nil) {
            self.requestsPerMinuteOverride = requestsPerMinuteOverride
            self.tokensPerMinuteOverride = tokensPerMinuteOverride
            self.inFlightPerModel = inFlightPerModel
            self.inFlightPerProvider = inFlightPerProvider
        }
    }

    private let limits: Limits
    private let clock: WallClock
    private var requestBuckets: [String: Bucket] = [:]
    private var tokenBuckets: [String: Bucket] = [:]
    private var inFlightByModel: [String: Int] = [:]
    private var inFlightByProvider: [String: Int] = [:]

    public init(limits: Limits, clock: WallClock) {
        self.limits = limits
        self.clock = clock
    }

    /// Waits until `model` may take one more call of about `tokens` tokens, then takes it.
    public func acquire(_ model: Model, tokens: Int) async throws {
        while true {
            try Task.checkCancellation()
            let now = clock.now()
            var requests = requestBuckets[model.id]
                ?? Bucket(perMinute: limits.requestsPerMinuteOverride ?? model.rateLimits.requestsPerMinute, now: now)
            var tokenBucket = tokenBuckets[model.id]
                ?? Bucket(perMinute: limits.tokensPerMinuteOverride ?? model.rateLimits.tokensPerMinute, now: now)
            requests.refill(now)
            tokenBucket.refill(now)
            let slotsFree = (inFlightByModel[model.id, default: 0] < (limits.inFlightPerModel ?? .max))
                && (inFlightByProvider[model.provider, default: 0] < (limits.inFlightPerProvider ?? .max))
            let wait = max(requests.wait(for: 1), tokenBucket.wait(for: Double(tokens)))
            if slotsFree && wait == 0 {
                requests.available -= 1
                tokenBucket.available -= Double(tokens)
                requestBuckets[model.id] = requests
                tokenBuckets[model.id] = tokenBucket
                inFlightByModel[model.id, default: 0] += 1
                inFlightByProvider[model.provider, default: 0] += 1
                return
            }
            requestBuckets[model.id] = requests
            tokenBuckets[model.id] = tokenBucket
            try await Task.sleep(nanoseconds: UInt64(max(wait, 5)) * 1_000_000)
        }
    }

    public func release(_ model: Model) {
        inFlightByModel[model.id, default: 1] -= 1
        inFlightByProvider[model.provider, default: 1] -= 1
    }
}

/// Which providers can be called now: a provider failing repeatedly is paused for a cooldown;
/// one that refused our key, or our quota, is disabled for the rest of the run.
public actor ProviderHealth {
    public enum Availability: Sendable, Equatable {
        case available
        case paused(until: Int64)
        case disabled(reason: String)
    }

    private let failuresBeforeCooldown: Int
    private let cooldownMilliseconds: Int64
    private var consecutiveFailures: [String: Int] = [:]
    private var pausedUntil: [String: Int64] = [:]
    private var disabled: [String: String] = [:]

    public init(failuresBeforeCooldown: Int = 5, cooldownMilliseconds: Int64 = 30_000) {
        self.failuresBeforeCooldown = failuresBeforeCooldown
        self.cooldownMilliseconds = cooldownMilliseconds
    }

    public func availability(_ provider: String, now: Int64) -> Availability {
        if let reason = disabled[provider] { return .disabled(reason: reason) }
        if let until = pausedUntil[provider], until > now { return .paused(until: until) }
        return .available
    }

    public func recordSuccess(_ provider: String) { consecutiveFailures[provider] = 0 }

    /// Counts a failure; true when it starts a cooldown.
    public func recordFailure(_ provider: String, now: Int64) -> Bool {
        consecutiveFailures[provider, default: 0] += 1
        guard consecutiveFailures[provider]! >= failuresBeforeCooldown else { return false }
        consecutiveFailures[provider] = 0
        pausedUntil[provider] = now + cooldownMilliseconds
        return true
    }

    /// True the first time a provider is disabled.
    public func disable(_ provider: String, reason: String) -> Bool {
        guard disabled[provider] == nil else { return false }
        disabled[provider] = reason
        return true
    }

    public func unavailableProviders(now: Int64) -> Set<String> {
        Set(disabled.keys).union(pausedUntil.filter { $0.value > now }.map(\.key))
    }

    public var disabledProviders: [String: String] { disabled }
}
