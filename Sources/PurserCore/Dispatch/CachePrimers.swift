/// One primer per prefix group and model: the first call of a group that can be cached goes alone, and the others wait
/// until its answer has come, since a provider's cache entry exists only once the answer that writes it has begun
/// (Anthropic: "a cache entry only becomes available after the first response begins"; without streaming, its end is
/// the first moment Purser knows it began). Parallel first calls would all miss and, on Anthropic, all pay for the
/// write. A primed group stands for its cache's lifetime; a primer that fails hands the turn to the next call.
actor CachePrimers {
    enum Turn: Equatable {
        /// This call primes the group: it goes now and reports its end.
        case prime
        /// Another call is priming: wait a little and ask again.
        case wait
        /// The group is primed: go.
        case go
    }

    private var groups: [String: (primed: Bool, until: Int64)] = [:]

    static func key(group: String, model: String) -> String { model + "|" + group }

    func turn(_ key: String, now: Int64, lifetime: Int64) -> Turn {
        if let state = groups[key], state.until > now { return state.primed ? .go : .wait }
        if groups.count > 100_000 { groups = groups.filter { $0.value.until > now } }
        groups[key] = (false, now + lifetime)
        return .prime
    }

    /// The primer's answer came: the group's cache is warm for `lifetime`.
    func primed(_ key: String, now: Int64, lifetime: Int64) { groups[key] = (true, now + lifetime) }

    /// The primer failed or never called: the next call primes.
    func failed(_ key: String) { groups[key] = nil }
}
