import Synchronization

/// Per-model token buckets for requests/min and tokens/min, and in-flight caps per model and provider.
/// Buckets hold five seconds' worth, so a burst cannot spend a whole minute's allowance at once.
///
/// A 429 slows the model that answered it: its in-flight cap drops to seven tenths of what was in flight and
/// its rates to four fifths (at most once a second, so a burst of 429s counts once), and both climb back as
/// calls succeed. A provider is never stopped for 429s; that is `ProviderHealth`'s call, on failure rates.
///
/// Only calls that are answering count against a slowed cap: one in flight four times longer than the model's
/// calls take (and at least a second) is hung, waiting for its timeout, and is no load the provider asked us
/// to shed. Counted, a few hung calls would hold a cut cap full, and with no call left to succeed and raise it
/// the model would stand still until they timed out.
public final class RateLimiter: Sendable {
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

        mutating func refill(_ now: Int64, factor: Double) {
            available = min(capacity, available + Double(max(now - updatedAt, 0)) * perMillisecond * factor)
            updatedAt = now
        }

        /// Milliseconds until `amount` can be taken (a request larger than the bucket waits for a full bucket).
        func wait(for amount: Double, factor: Double) -> Int64 {
            let needed = min(amount, capacity) - available
            guard needed > 0 else { return 0 }
            return Int64(min((needed / (perMillisecond * factor)).rounded(.up), 60_000))
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

    /// A call in flight: taken by `acquire`, given back to `release`.
    public struct Slot: Sendable {
        let model: String
        let provider: String
        let ticket: Int
    }

    /// How a model has been slowed after 429s.
    struct Slowdown {
        /// In-flight cap while slowed.
        var inFlight: Double
        /// The share of the model's rates in force.
        var rateFactor: Double
        var lastCut: Int64?
    }

    private let clock: WallClock
    private let book: Mutex<Book>

    public init(limits: Limits, clock: WallClock) {
        self.clock = clock
        book = Mutex(Book(limits: limits))
    }

    /// How much of a model's limits calls claimed now may use: what its buckets hold now.
    public struct Allowance: Sendable, Hashable {
        public var requests: Int
        public var tokens: Int
        /// What its token bucket holds when full: a call larger than that waits for a full bucket, and takes it all.
        public var tokenBucketSize: Int
        /// Set while the provider's 429s hold the model below the rate its tables give (and so below what the plan
        /// counted on): the calls a minute it is allowed now.
        public var shortOfPlan: Double? = nil
        /// The calls a minute its request bucket refills at now, and the part of the next call it holds already: when
        /// the calls queued behind `requests` will be reached.
        public var callsPerMinute: Double = 0
        public var partialCall: Double = 0

        /// The calls a minute the model starts at now: its slowed rate while 429s hold it back, else its bucket's.
        public var presentRate: Double { shortOfPlan ?? callsPerMinute }
    }

    /// For each of `models`, the calls (and their tokens) that could start now: what its buckets hold at the rates in
    /// force, no more than its in-flight caps leave room for. A claim takes no more, so a request waiting on its model's
    /// limit never holds a worker that another model could use.
    public func allowances(_ models: [Model]) -> [String: Allowance] {
        let now = clock.now()
        return book.withLock { $0.allowances(models, now: now) }
    }

    /// Waits until `model` may take one more call of about `tokens` tokens, then takes it; nil, taking nothing, once it
    /// is clear the call could not start by `startBy` (epoch ms): its buckets refill too late, or its in-flight calls
    /// have not come back by then.
    public func acquire(_ model: Model, tokens: Int, startBy: Int64?) async throws -> Slot? {
        while true {
            try Task.checkCancellation()
            let now = clock.now()
            if let startBy, now > startBy { return nil }
            let attempt = book.withLock { $0.take(model, tokens: tokens, now: now) }
            if let slot = attempt.slot { return slot }
            if let startBy, let wait = attempt.rateWait, now + wait > startBy { return nil }
            let sleep = min(max(attempt.rateWait ?? 5, 5), startBy.map { max($0 - now, 5) } ?? .max)
            try await clock.sleep(milliseconds: sleep)
        }
    }

    /// Waits until `model` may take one more call of about `tokens` tokens, then takes it.
    @discardableResult
    public func acquire(_ model: Model, tokens: Int) async throws -> Slot {
        // With no latest start, the wait only ends in a slot (or cancellation).
        try await acquire(model, tokens: tokens, startBy: nil)!
    }

    /// The in-flight cap a 429 has put on `model`, if it is slowed.
    func slowedInFlightCap(_ model: Model) -> Int? { book.withLock { $0.slowdowns[model.id].map { max(Int($0.inFlight), 1) } } }

    /// Gives back a call's slot; `answeredAfter`, the milliseconds its call took when it succeeded, counts as
    /// `recovered` would, in the same step.
    public func release(_ slot: Slot, answeredAfter latencyMilliseconds: Int64? = nil) {
        let now = clock.now()
        book.withLock { $0.release(slot, answeredAfter: latencyMilliseconds, now: now) }
    }

    /// Calls of `model` in flight that are answering: all but those running four times longer than its calls
    /// take, and at least a second (before any call succeeded, all of them).
    func answering(_ model: String, now: Int64) -> Int { book.withLock { $0.answering(model, now: now) } }

    /// A 429 from `model`: fewer calls at once and slower, at most once a second.
    public func slowDown(_ model: Model) {
        let now = clock.now()
        book.withLock { $0.slowDown(model, now: now) }
    }

    /// A success from `model` that took `latencyMilliseconds`: a slowed model climbs back (one more call at
    /// once, and a hundredth of its rates, per success), until it is no longer slowed. Under a real overload
    /// successes are few and the cut holds; after a stray 429 among many answers it is undone within a moment.
    public func recovered(_ model: Model, latencyMilliseconds: Int64) {
        let now = clock.now()
        book.withLock { $0.recovered(model.id, latencyMilliseconds: latencyMilliseconds, now: now) }
    }

    /// The buckets, caps and calls in flight, behind a lock rather than in an actor: every call takes a slot before
    /// it starts and gives it back when it ends, and an actor's answer cost each call two hops between executors.
    private struct Book {
        let limits: Limits
        var requestBuckets: [String: Bucket] = [:]
        var tokenBuckets: [String: Bucket] = [:]
        var inFlightByModel: [String: Int] = [:]
        var inFlightByProvider: [String: Int] = [:]
        var slowdowns: [String: Slowdown] = [:]
        /// When each call in flight started, by model and ticket.
        var startedAt: [String: [Int: Int64]] = [:]
        var nextTicket = 0
        /// A moving average of how long a model's successful calls take, in milliseconds.
        var typicalLatency: [String: Double] = [:]

        func allowances(_ models: [Model], now: Int64) -> [String: Allowance] {
            var result: [String: Allowance] = [:]
            for model in models {
                let (requests, tokens, factor) = refilledBuckets(model, now: now)
                var calls = Int(requests.available)
                let inFlight = inFlightByModel[model.id, default: 0]
                if let cap = limits.inFlightPerModel { calls = min(calls, max(cap - inFlight, 0)) }
                if let slowdown = slowdowns[model.id] { calls = min(calls, max(max(Int(slowdown.inFlight), 1) - answering(model.id, now: now), 0)) }
                if let cap = limits.inFlightPerProvider { calls = min(calls, max(cap - inFlightByProvider[model.provider, default: 0], 0)) }
                let rate = Double(limits.requestsPerMinuteOverride ?? model.rateLimits.requestsPerMinute) * factor
                result[model.id] = Allowance(
                    requests: max(calls, 0), tokens: Int(min(tokens.available, Double(Int.max / 2))), tokenBucketSize: Int(min(tokens.capacity, Double(Int.max / 2))),
                    shortOfPlan: slowdowns[model.id].map { slowdown in
                        // Calls held to `slowdown.inFlight` at once, each taking about its typical latency.
                        guard let latency = typicalLatency[model.id], latency >= 1 else { return rate }
                        return min(rate, max(slowdown.inFlight, 1) * 60_000 / latency)
                    },
                    callsPerMinute: rate, partialCall: requests.available - requests.available.rounded(.down))
            }
            return result
        }

        /// `model`'s request and token buckets refilled to `now` at the rate factor in force (new ones start full), and that factor.
        private func refilledBuckets(_ model: Model, now: Int64) -> (requests: Bucket, tokens: Bucket, factor: Double) {
            let factor = slowdowns[model.id]?.rateFactor ?? 1
            var requests = requestBuckets[model.id]
                ?? Bucket(perMinute: limits.requestsPerMinuteOverride ?? model.rateLimits.requestsPerMinute, now: now)
            var tokens = tokenBuckets[model.id]
                ?? Bucket(perMinute: limits.tokensPerMinuteOverride ?? model.rateLimits.tokensPerMinute, now: now)
            requests.refill(now, factor: factor)
            tokens.refill(now, factor: factor)
            return (requests, tokens, factor)
        }

        /// Takes a call of `model` now if its buckets and in-flight caps allow; otherwise how long its buckets need to
        /// refill (nil when only an in-flight cap stands in the way: that frees when a call comes back).
        mutating func take(_ model: Model, tokens: Int, now: Int64) -> (slot: Slot?, rateWait: Int64?) {
            let slowdown = slowdowns[model.id]
            let (requests, tokenBucket, factor) = refilledBuckets(model, now: now)
            requestBuckets[model.id] = requests
            tokenBuckets[model.id] = tokenBucket
            let inFlight = inFlightByModel[model.id, default: 0]
            let slotsFree = inFlight < (limits.inFlightPerModel ?? .max)
                && slowdown.map { answering(model.id, now: now) < max(Int($0.inFlight), 1) } ?? true
                && inFlightByProvider[model.provider, default: 0] < (limits.inFlightPerProvider ?? .max)
            let wait = max(requests.wait(for: 1, factor: factor), tokenBucket.wait(for: Double(tokens), factor: factor))
            guard slotsFree && wait == 0 else { return (nil, wait > 0 ? wait : slotsFree ? 0 : nil) }
            requestBuckets[model.id]!.available -= 1
            tokenBuckets[model.id]!.available -= Double(tokens)
            inFlightByModel[model.id, default: 0] += 1
            inFlightByProvider[model.provider, default: 0] += 1
            nextTicket += 1
            startedAt[model.id, default: [:]][nextTicket] = now
            return (Slot(model: model.id, provider: model.provider, ticket: nextTicket), nil)
        }

        mutating func release(_ slot: Slot, answeredAfter latencyMilliseconds: Int64?, now: Int64) {
            guard startedAt[slot.model]?.removeValue(forKey: slot.ticket) != nil else { return }
            inFlightByModel[slot.model, default: 1] -= 1
            inFlightByProvider[slot.provider, default: 1] -= 1
            if let latencyMilliseconds { recovered(slot.model, latencyMilliseconds: latencyMilliseconds, now: now) }
        }

        func answering(_ model: String, now: Int64) -> Int {
            let calls = startedAt[model] ?? [:]
            guard let typical = typicalLatency[model] else { return calls.count }
            let hungBefore = now - Int64(max(4 * typical, 1_000))
            return calls.values.reduce(0) { $0 + ($1 > hungBefore ? 1 : 0) }
        }

        mutating func slowDown(_ model: Model, now: Int64) {
            let inFlight = Double(max(answering(model.id, now: now), 1))
            var slowdown = slowdowns[model.id] ?? Slowdown(inFlight: inFlight + 1, rateFactor: 1, lastCut: nil)
            if let lastCut = slowdown.lastCut, now - lastCut < 1_000 { return }
            slowdown.inFlight = max(min(slowdown.inFlight, inFlight + 1) * 0.7, 1)
            slowdown.rateFactor = max(slowdown.rateFactor * 0.8, 0.05)
            slowdown.lastCut = now
            slowdowns[model.id] = slowdown
        }

        mutating func recovered(_ model: String, latencyMilliseconds: Int64, now: Int64) {
            let latency = Double(min(max(latencyMilliseconds, 0), 3_600_000))
            typicalLatency[model] = typicalLatency[model].map { $0 * 0.9 + latency * 0.1 } ?? latency
            guard var slowdown = slowdowns[model] else { return }
            slowdown.inFlight += 1
            slowdown.rateFactor = min(slowdown.rateFactor + 0.01, 1)
            if slowdown.rateFactor >= 1 && slowdown.inFlight >= Double(answering(model, now: now) + 16) {
                slowdowns[model] = nil
            } else {
                slowdowns[model] = slowdown
            }
        }
    }
}
