import Foundation

/// The process's limit on open files, which bounds the connections the HTTP engine can hold open at once: each holds a
/// socket. A run raises its soft limit to the hard one at start (the system's default soft limit, often 1,024, is far
/// below what the providers' rate limits let a run hold), and the engine opens no more connections than the limit
/// leaves room for. Calls beyond that are not refused: over HTTP/2 they share connections as streams, and over HTTP/1.1
/// they wait for one.
public enum OpenFileLimit {
    /// Descriptors kept for everything but connections: the database with its WAL and shared memory (per connection), the
    /// recovery file, batch input and result files, the standard streams, the HTTP engine's own, a serve's listener.
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

    /// The soft limit in force now (at most `ceiling`).
    public static func current() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1_024 }
        return Int(min(limit.rlim_cur, rlim_t(ceiling)))
    }

    /// How the HTTP engine shares `descriptors` (what a soft limit leaves beside `reserved` and a serve's own) among its
    /// shards: how many shards it makes at most, and how many connections each may hold open, beside the two descriptors
    /// each shard holds for itself (libcurl's wake-up pair in each multi handle). A process out of descriptors cannot
    /// be allowed: libdispatch stops the process when it cannot open a file.
    public static func shards(within descriptors: Int) -> (shards: Int, connectionsEach: Int) {
        let whole = HTTPEngine.transfersPerShard + HTTPEngine.descriptorsPerShard
        if descriptors >= whole { return (min(descriptors / whole, HTTPEngine.mostShards), HTTPEngine.transfersPerShard) }
        return (1, max(descriptors - HTTPEngine.descriptorsPerShard, 1))
    }

    /// The most connections the engine holds open at once within `descriptors`.
    public static func connections(within descriptors: Int) -> Int {
        let plan = shards(within: descriptors)
        return plan.shards * plan.connectionsEach
    }
}
