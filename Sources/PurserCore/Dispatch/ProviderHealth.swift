import Synchronization

/// Which providers can be called now, judged by the *rate* of recent failures, not by streaks: a handful of
/// failures among hundreds of successes is normal at scale. A provider is paused when most of its calls in
/// a recent window failed (with enough calls to tell), probed with one call when the pause ends, and
/// resumed if the probe succeeds; pauses grow while probes fail, but never past what the caller allows
/// (the nearest deadline). A provider whose every call has failed to connect for long enough is
/// unreachable, and one that refused our key or quota is disabled; both stay so for the run.
public final class ProviderHealth: Sendable {
    public struct Settings: Sendable {
        /// How far back outcomes count.
        public var windowMilliseconds: Int64 = 30_000
        /// Outcomes needed in the window before a rate means anything.
        public var minimumCalls = 20
        /// The share of failed calls, in percent, that pauses a provider.
        public var failurePercent = 50
        /// The first pause; each failed probe doubles it, up to `longestPauseMilliseconds`.
        public var pauseMilliseconds: Int64 = 30_000
        public var longestPauseMilliseconds: Int64 = 300_000
        /// A provider none of whose calls has connected for this long (at least three tried) is unreachable.
        public var unreachableAfterMilliseconds: Int64 = 30_000

        public init() {}
    }

    public enum Permit: Sendable, Equatable {
        case go
        /// The one call that tests a paused provider.
        case probe
        case wait(until: Int64)
        case disabled(reason: String)
    }

    /// What a recorded outcome changed, for the run to say.
    public enum Change: Sendable, Equatable {
        case paused(until: Int64, failurePercent: Int, lastError: String)
        case resumed
        case unreachable(reason: String)
    }

    /// The outcomes of a provider's recent calls, oldest first, and how many of them failed. Old ones are dropped by
    /// moving a start index, and the storage compacted only once most of it is dropped: every call records an
    /// outcome, and shifting or copying a thousand entries each time was a tenth of a busy run's work per call.
    struct OutcomeWindow {
        private var entries: [(at: Int64, failed: Bool)] = []
        private var start = 0
        private(set) var failures = 0

        var count: Int { entries.count - start }

        /// Records an outcome at `now`, then drops those before `oldest` and any beyond the newest `limit`.
        mutating func append(at now: Int64, failed: Bool, keepingFrom oldest: Int64, limit: Int) {
            entries.append((now, failed))
            if failed { failures += 1 }
            while start < entries.count, entries[start].at < oldest || entries.count - start > limit {
                if entries[start].failed { failures -= 1 }
                start += 1
            }
            if start >= 64 && start * 2 >= entries.count {
                entries.removeFirst(start)
                start = 0
            }
        }
    }

    private struct Record {
        var outcomes = OutcomeWindow()
        var pausedUntil: Int64?
        var pause: Int64 = 0
        var probing = false
        var probeStarted: Int64 = 0
        var lastSuccess: Int64?
        /// When the run of connection failures (with no success since) began, and how many calls it holds.
        var unreachableSince: Int64?
        var unreachableCalls = 0
        var lastError = ""
    }

    /// What the health knows, behind a lock rather than in an actor: every call asks it before it starts and tells it
    /// how it ended, and an actor's answer cost each call two hops between executors.
    private struct Book {
        let settings: Settings
        var records: [String: Record] = [:]
        var disabled: [String: String] = [:]

        mutating func permit(_ provider: String, now: Int64) -> Permit {
            if let reason = disabled[provider] { return .disabled(reason: reason) }
            guard var record = records[provider], let until = record.pausedUntil else { return .go }
            if now < until { return .wait(until: until) }
            // One probe at a time; a probe that never reported (its run stopped) is replaced after two minutes.
            if record.probing && now - record.probeStarted < 120_000 { return .wait(until: now + 1_000) }
            record.probing = true
            record.probeStarted = now
            records[provider] = record
            return .probe
        }

        mutating func recordSuccess(_ provider: String, now: Int64) -> Change? {
            // Taken out while it changes, so that its outcomes are not copied to be appended to.
            var record = records.removeValue(forKey: provider) ?? Record()
            record.lastSuccess = now
            record.unreachableSince = nil
            record.unreachableCalls = 0
            append(&record, now: now, failed: false)
            let wasPaused = record.pausedUntil != nil
            record.pausedUntil = nil
            record.probing = false
            record.pause = 0
            records[provider] = record
            return wasPaused ? .resumed : nil
        }

        mutating func recordFailure(_ provider: String, now: Int64, unreachable: Bool, message: String, longestPause: Int64) -> Change? {
            guard disabled[provider] == nil else { return nil }
            var record = records.removeValue(forKey: provider) ?? Record()
            record.lastError = message
            append(&record, now: now, failed: true)
            defer { records[provider] = record }
            if unreachable {
                record.unreachableSince = record.unreachableSince ?? now
                record.unreachableCalls += 1
                if record.unreachableCalls >= 3, now - record.unreachableSince! >= settings.unreachableAfterMilliseconds {
                    let reason = "unreachable for \(DurationText.approximate(now - record.unreachableSince!)): \(message)"
                    disabled[provider] = reason
                    return .unreachable(reason: reason)
                }
            } else {
                record.unreachableSince = nil
                record.unreachableCalls = 0
            }
            // A failed probe pauses again, longer; otherwise a pause starts only when the rate is high.
            let failedProbe = record.probing
            let failures = record.outcomes.failures
            let percent = record.outcomes.count == 0 ? 0 : failures * 100 / record.outcomes.count
            guard failedProbe || (record.pausedUntil == nil && record.outcomes.count >= settings.minimumCalls && percent >= settings.failurePercent)
            else { return nil }
            record.pause = min(max(record.pause * 2, settings.pauseMilliseconds), settings.longestPauseMilliseconds)
            var pause = max(min(record.pause, longestPause), 1_000)
            // A provider that has only refused to connect is probed again when its give-up time comes, which then decides.
            if let since = record.unreachableSince { pause = min(pause, max(since + settings.unreachableAfterMilliseconds - now, 1_000)) }
            record.pausedUntil = now + pause
            record.probing = false
            return .paused(until: now + pause, failurePercent: percent, lastError: message)
        }

        mutating func disable(_ provider: String, reason: String) -> Bool {
            guard disabled[provider] == nil else { return false }
            disabled[provider] = reason
            return true
        }

        func unavailableProviders(now: Int64) -> Set<String> {
            Set(disabled.keys).union(records.filter { ($0.value.pausedUntil ?? 0) > now }.map(\.key))
        }

        func lastError(_ provider: String) -> String? { records[provider].flatMap { $0.lastError.isEmpty ? nil : $0.lastError } }

        private func append(_ record: inout Record, now: Int64, failed: Bool) {
            record.outcomes.append(at: now, failed: failed, keepingFrom: now - settings.windowMilliseconds, limit: 1_000)
        }
    }

    private let book: Mutex<Book>

    public init(settings: Settings = Settings()) { book = Mutex(Book(settings: settings)) }

    /// Whether a call to `provider` may start now.
    public func permit(_ provider: String, now: Int64) -> Permit { book.withLock { $0.permit(provider, now: now) } }

    /// Counts a successful call; `.resumed` when it ends a pause.
    public func recordSuccess(_ provider: String, now: Int64) -> Change? { book.withLock { $0.recordSuccess(provider, now: now) } }

    /// Counts a failed call; `unreachable` when it could not connect at all. `longestPause` is how long the caller can
    /// afford to wait (its nearest deadline).
    public func recordFailure(_ provider: String, now: Int64, unreachable: Bool, message: String, longestPause: Int64) -> Change? {
        book.withLock { $0.recordFailure(provider, now: now, unreachable: unreachable, message: message, longestPause: longestPause) }
    }

    /// True the first time a provider is disabled (its key or quota was refused).
    public func disable(_ provider: String, reason: String) -> Bool { book.withLock { $0.disable(provider, reason: reason) } }

    public func unavailableProviders(now: Int64) -> Set<String> { book.withLock { $0.unavailableProviders(now: now) } }

    public var disabledProviders: [String: String] { book.withLock { $0.disabled } }

    /// The last error a provider answered with, for requests that wait on it to say why.
    public func lastError(_ provider: String) -> String? { book.withLock { $0.lastError(provider) } }
}
