import Foundation

/// The process's limit on open files, which bounds the calls a run can hold in flight: each call holds a socket. A run
/// raises its soft limit to the hard one at start (the system's default soft limit, often 1,024, is far below what the
/// providers' rate limits let a run hold), and holds no more calls than the limit leaves room for.
public enum OpenFileLimit {
    /// Descriptors kept for everything but calls: the database with its WAL and shared memory (per connection), the
    /// recovery file, batch input and result files, the standard streams, the HTTP client's own, a serve's listener.
    public static let reserved = 64
    /// The most the soft limit is raised to, however high the hard limit (some systems say unlimited).
    public static let ceiling = 1 << 20

    /// Raises the soft limit on open files as far as the hard limit allows (at most `ceiling`); returns the soft limit
    /// then in force. A system that refuses leaves it as it was.
    public static func raised() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return ceiling }
        let target = min(limit.rlim_max, rlim_t(ceiling))
        if limit.rlim_cur < target {
            var wanted = limit
            wanted.rlim_cur = target
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &wanted) == 0 { limit = wanted }
        }
        return Int(min(limit.rlim_cur, rlim_t(ceiling)))
    }

    /// The calls in flight a soft limit of `openFiles` leaves room for, beside the descriptors kept for the rest: a
    /// socket each, and the HTTP engine's two per shard of calls (libcurl's wake-up pair in each multi handle). A
    /// process out of descriptors cannot be allowed: libdispatch stops the process when it cannot open a file.
    public static func callsInFlight(allowedBy openFiles: Int) -> Int {
        let available = openFiles - reserved
        let perShard = HTTPEngine.transfersPerShard
        return max(available * perShard / (perShard + HTTPEngine.descriptorsPerShard), 1)
    }
}
