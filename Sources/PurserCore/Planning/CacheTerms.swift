/// What prompt caching does to the cost of one way of serving a request of a prefix group (a model, and the prices of
/// one mode): how many of its input tokens are expected to be read from the provider's cache rather than processed,
/// at what price, and the write that the group's first call on that model pays.
///
/// A group placed on a model pays its write once and reads after that (a fixed charge beside a per-request price):
/// - live calls (sync, offpeak, and flex where its rule keeps the cache) send one primer first and the rest once its
///   answer has begun, so every call but the primer reads;
/// - a batch is cached only on a best-effort basis: each call reads with the hit rate seen in this database's batches
///   of the model (`CacheHitHistory`), else a conservative 30%, and a miss costs what a write does.
///
/// A prefix under the model's minimum, a group of one, a mode the rule does not cache, and an explicit-caching model's
/// batches (which Purser sends without breakpoints) are not cached: no terms.
struct CacheTerms: Sendable, Hashable {
    /// Prefix tokens priced at `price` rather than at the input price (the read part, in the model's steps).
    var tokens: Int32
    /// pico-USD per prefix token for each call but the group's first: a read, or the expected mix of reads and writes.
    var price: Int64
    /// pico-USD the group's first call on the model pays beyond `price` × `tokens`: its write.
    var write: Int64
    /// `write` shared over the group's members, rounded down: what each request is priced with in the linear program,
    /// so that a group placed whole costs exactly its write and a group split costs no more than its writes.
    var writeShare: Int64
    /// The share of calls but the first expected to read, in basis points.
    var hitBasisPoints: Int64

    /// The terms for a group of `groupSize` requests sharing `prefixTokens` on `model` in `mode` at `prices`, or nil
    /// when nothing would be cached.
    static func terms(
        model: Model, mode: DispatchMode, prices: TokenPrices, prefixTokens: Int, groupSize: Int, batchHitBasisPoints: Int64
    ) -> CacheTerms? {
        guard groupSize >= 2, let rule = model.caching, rule.keepsCache(in: mode), prefixTokens >= rule.minimumPrefixTokens else { return nil }
        // Explicit caching needs a breakpoint, and Purser marks them on live calls only.
        if rule.mode == .explicit && mode == .batch { return nil }
        let step = max(rule.stepTokens, 1)
        let cached = prefixTokens / step * step
        guard cached > 0 else { return nil }
        let read = prices.cachedInput.microUSDPerMillion
        // A miss is processed and kept: a write where the provider bills one, else the input price.
        let miss = max(prices.cacheWrite5m?.microUSDPerMillion ?? prices.input.microUSDPerMillion, read)
        let bestEffort = mode == .batch || (mode == .flex && rule.flex == .bestEffort)
        let hit = bestEffort ? min(max(batchHitBasisPoints, 0), 10_000) : 10_000
        // Rounded up: the expected price is never cheaper than the mix it stands for.
        let price = (read * hit + miss * (10_000 - hit) + 9_999) / 10_000
        let write = Int64(cached) * max(miss - price, 0)
        return CacheTerms(tokens: Int32(cached), price: price, write: write, writeShare: write / Int64(groupSize), hitBasisPoints: hit)
    }

    /// What the prefix part of a request costs beyond the input price (negative: a saving), for each call but the first.
    @inline(__always)
    func adjustment(inputPrice: Int64) -> Int64 { Int64(tokens) &* (price &- inputPrice) }
}

/// How often batches of each model read a shared prefix from the cache, from this database's results: a batch is
/// cached on a best-effort basis (Anthropic: "30% to 98%"), so a plan counts on what batches were seen to get.
public struct CacheHitHistory: Sendable, Hashable {
    /// Per model id: batch calls of a shared prefix long enough for the model to cache, and those that read some of it.
    public var calls: [String: Int]
    public var hits: [String: Int]

    /// Until a model has this many such batch calls, its batches are expected to read `defaultBatchHitBasisPoints`.
    public static let minimumCalls = 20
    /// The low end of Anthropic's "30% to 98%" for batches, kept for every provider until its own batches say more.
    public static let defaultBatchHitBasisPoints: Int64 = 3_000

    public init(calls: [String: Int] = [:], hits: [String: Int] = [:]) {
        self.calls = calls
        self.hits = hits
    }

    /// The share of a model's batch calls of a shared prefix expected to read it from the cache, in basis points.
    public func batchHitBasisPoints(model: String) -> Int64 {
        guard let calls = calls[model], calls >= CacheHitHistory.minimumCalls else { return CacheHitHistory.defaultBatchHitBasisPoints }
        return Int64(min(max(hits[model] ?? 0, 0), calls)) * 10_000 / Int64(calls)
    }
}
