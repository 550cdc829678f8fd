import Foundation

/// The one clock of a run: where "now" comes from, as integer milliseconds since 1970, and how long a wait lasts.
/// Every reading and every sleep in dispatch goes through it, so a test can run the dispatcher on virtual time
/// (`accelerated`), where a minute of rate limits, backoffs and leases passes in a fraction of a second.
public struct WallClock: Sendable {
    private let read: @Sendable () -> Int64
    /// How many of the clock's milliseconds pass in a real one: 1 but for virtual time.
    private let speed: Int64

    public init(_ read: @escaping @Sendable () -> Int64) {
        self.read = read
        speed = 1
    }

    private init(read: @escaping @Sendable () -> Int64, speed: Int64) {
        self.read = read
        self.speed = speed
    }

    public func now() -> Int64 { read() }

    /// Waits `milliseconds` of this clock's time; throws `CancellationError` when the task is cancelled first.
    public func sleep(milliseconds: Int64) async throws {
        let milliseconds = min(max(milliseconds, 0), WallClock.longestSleep)
        try await Task.sleep(nanoseconds: UInt64(milliseconds) * 1_000_000 / UInt64(speed))
    }

    /// Waits `milliseconds` of the clock's time and returns early, without an error, when the task is cancelled:
    /// for the loops that check for cancellation themselves.
    public func pause(milliseconds: Int64) async {
        do { try await sleep(milliseconds: milliseconds) } catch {}
    }

    /// No single wait is longer than a day; a loop that must wait longer wakes and looks again.
    static let longestSleep: Int64 = 86_400_000

    public static let system = WallClock { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// A clock whose readings stand still at `milliseconds`; its sleeps take real time.
    public static func fixed(_ milliseconds: Int64) -> WallClock { WallClock { milliseconds } }

    /// Virtual time from `origin`, running `factor` times faster than real time: readings and sleeps scale together,
    /// so everything timed against the clock (rate-limit windows, backoffs, leases, deadlines, modelled latency)
    /// keeps its proportions while a test waits only 1/`factor` of it.
    public static func accelerated(from origin: Int64, by factor: Int64) -> WallClock {
        let factor = min(max(factor, 1), 1_000_000)
        let start = DispatchTime.now().uptimeNanoseconds
        return WallClock(
            read: { origin &+ Int64(clamping: (DispatchTime.now().uptimeNanoseconds &- start) / 1_000_000) &* factor }, speed: factor)
    }
}
