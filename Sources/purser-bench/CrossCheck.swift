import Foundation
import PurserCore
import PurserSQLite

/// Generated capacity-bound planning instances, planned by Purser and written as data with Purser's
/// figures, for `scripts/crosscheck-planner.sh` to solve exactly with an independent solver (HiGHS).
enum CrossCheck {
    /// The kinds of instance: `capacity` (six deadlines from ten minutes to a day, live calls and a night window),
    /// `wide` (eight deadlines from ten minutes to a week, with batch prices on three models: the kind issue 17 found
    /// furthest from the optimum), and `pinned` (wide, with one request in fifty pinned to the cheapest model, which is
    /// contested), and `spread` (wide, each request with a deadline of its own anywhere from ten minutes to a week, as
    /// lines with RFC 3339 deadlines have: too many latest starts to keep exactly, so they are rounded onto the grid).
    /// `two-jobs` (wide, half the requests planned first as one job, the other half planned beside what it holds, as a
    /// second job submitted later would be; the figures are the second job's). `cached` (wide, with the requests in
    /// eight prefix groups of 1,100 to 4,000 shared tokens (a job's few prompts), and three models caching them: the
    /// cheap-by-tokens one automatically, the night and middle ones at breakpoints with writes at 1.25×).
    enum Kind: String, CaseIterable {
        case capacity, wide, pinned, spread
        case twoJobs = "two-jobs"
        case cached
    }

    /// Five models (two cheap ones bound by requests/min or by tokens/min, one half price at night, one in the
    /// middle, one dear with room for everything), requests of log-uniform sizes with six deadlines from ten
    /// minutes to a day and three quality floors. `now` is 01:00 UTC, an hour before the night window.
    static func instance(
        requests count: Int, seed: UInt64, tiers: Tiers, kind: Kind = .capacity
    ) -> (catalog: PricingCatalog, requests: [PlannableRequest], now: Int64) {
        var random = SplitMix64(seed: seed)
        let now: Int64 = 1_795_478_400_000 + 3_600_000
        let night = DiscountWindow(weekdays: Set(1...7), startMinute: 120, endMinute: 360, timeZoneIdentifier: "UTC", multiplierBasisPoints: 5_000)
        // Limits grow with the instance so that capacity binds as much at every size as at 4,000 requests.
        func scaled(_ limit: Int) -> Int { max(Int((Int64(limit) * Int64(count) / 4_000)), 1) }
        func model(_ name: String, _ input: Int64, _ output: Int64, quality: Int, rpm: Int, tpm: Int, ttft: Int, speed: Int, windows: [DiscountWindow] = []) -> Model {
            Model(
                id: "x/\(name)", provider: "x", providerModel: name,
                prices: TokenPrices(input: TokenPrice(microUSDPerMillion: input), output: TokenPrice(microUSDPerMillion: output),
                                    cachedInput: TokenPrice(microUSDPerMillion: input / 10)),
                contextWindow: 100_000, maxOutputTokens: 16_000, quality: quality, qualitySource: "cross-check", capabilities: [.tools, .jsonMode, .vision],
                rateLimits: RateLimits(requestsPerMinute: scaled(rpm), tokensPerMinute: scaled(tpm)),
                speed: Speed(timeToFirstTokenMilliseconds: ttft, outputTokensPerSecond: speed), discountWindows: windows,
                priceDate: "2026-11-30", priceSource: "https://example.com/cross-check")
        }
        var models = [
            model("cheap-small", 50_000, 200_000, quality: 45, rpm: 6, tpm: 200_000, ttft: 300, speed: 200),
            model("cheap-tokens", 80_000, 300_000, quality: 50, rpm: 1_000, tpm: 4_000, ttft: 500, speed: 150),
            model("night", 90_000, 360_000, quality: 55, rpm: 10, tpm: 10_000, ttft: 800, speed: 100, windows: [night]),
            model("mid", 400_000, 1_600_000, quality: 55, rpm: 10, tpm: 10_000, ttft: 400, speed: 120),
            model("dear", 2_500_000, 10_000_000, quality: 70, rpm: 100_000, tpm: 1_000_000_000, ttft: 300, speed: 300),
        ]
        var provider = Provider(name: "x", dialect: .openai, baseURL: "https://example.com/v1", apiKeyEnvironmentVariable: "X_KEY")
        var deadlines: [Int64] = [600_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 86_400_000]
        if kind != .capacity {
            // Batch at half price on the cheap-by-requests, middle and dear models; deadlines out to a week.
            provider.batchDialect = .openai
            for index in [0, 3, 4] { models[index].batchPrices = models[index].prices.scaled(basisPoints: 5_000) }
            deadlines = [600_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 86_400_000, 259_200_000, 604_800_000]
        }
        var prefixes: [Int] = []
        if kind == .cached {
            models[1].caching = CachingRule(mode: .automatic, minimumPrefixTokens: 1_024, stepTokens: 128, batch: .halved, source: "https://example.com/caching")
            for index in [2, 3] {
                models[index].prices.cacheWrite5m = models[index].prices.input.scaled(basisPoints: 12_500)
                models[index].caching = CachingRule(mode: .explicit, minimumPrefixTokens: 1_024, batch: .bestEffort, source: "https://example.com/caching")
            }
            let write = models[3].prices.cacheWrite5m?.scaled(basisPoints: 5_000)
            models[3].batchPrices?.cacheWrite5m = write
            prefixes = (0..<8).map { _ in 1_100 + random.below(2_900) }
        }
        let requests = (0..<count).map { index in
            var input = Int(exp(Double(random.below(1_000)) / 1_000 * log(3_000.0))) + 20
            let pinned = kind == .pinned && index % 50 == 0
            let group = prefixes.isEmpty ? -1 : random.below(prefixes.count)
            if group >= 0 { input = input / 3 + prefixes[group] }
            return PlannableRequest(
                id: Int64(index + 1),
                needs: RequestNeeds(
                    qualityFloor: pinned ? 0 : [0, 45, 50][random.below(3)], qualityTier: "standard", inputTokens: input,
                    maxOutputTokens: [20, 100, 400][random.below(3)], capabilities: [], pinnedModel: pinned ? "x/cheap-small" : nil),
                referenceModel: nil,
                deadlineAt: now + (kind == .spread ? 600_000 + Int64(random.below(604_200_000)) : deadlines[random.below(deadlines.count)]),
                maxCost: nil, prefix: group >= 0 ? SharedPrefix(group: UInt64(group), tokens: prefixes[group]) : nil)
        }
        return (PricingCatalog(models: models, providers: ["x": provider], tiers: tiers), requests, now)
    }

    /// What a first job's plan holds on each model and mode, by latest start, as the store keeps it for later plans.
    static func heldCapacity(of plan: Plan, requests: [PlannableRequest]) -> [HeldCapacity] {
        struct Key: Hashable { var model: String; var mode: DispatchMode; var latest: Int64 }
        var groups: [Key: HeldCapacity] = [:]
        for (index, entry) in plan.entries.enumerated() {
            guard let model = entry.model, let mode = entry.mode, let latest = entry.latestStart else { continue }
            let tokens = Int64(requests[index].rateLimitTokens)
            let key = Key(model: model, mode: mode, latest: latest)
            var group = groups[key] ?? HeldCapacity(job: 1, model: model, mode: mode, latestStart: latest, requests: 0, tokens: 0, largestRequestTokens: 0)
            group.requests += 1
            group.tokens += tokens
            group.largestRequestTokens = max(group.largestRequestTokens, tokens)
            groups[key] = group
        }
        return groups.values.sorted { ($0.latestStart, $0.model, $0.mode.rawValue) < ($1.latestStart, $1.model, $1.mode.rawValue) }
    }

    /// Plans `instances` instances of each size and kind, prints Purser's figures and writes `instance-KIND-SIZE-SEED.json`
    /// files into `directory` for the exact solver.
    static func write(sizes: [Int], instances: Int, directory: String, tiers: Tiers, kinds: [Kind] = [.capacity]) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        print("kind      size      seed  purser cost      lower bound      gap      unplaced  plan time")
        for kind in kinds {
        for size in sizes {
            for seed in UInt64(1)...UInt64(instances) {
                let (catalog, generated, now) = instance(requests: size, seed: seed, tiers: tiers, kind: kind == .twoJobs ? .wide : kind)
                var requests = generated
                let planner = Planner(context: PlanningContext(catalog: catalog, now: now, usableProviders: ["x"]))
                var held: [HeldCapacity] = []
                if kind == .twoJobs {
                    let first = requests.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
                    held = heldCapacity(of: planner.plan(first), requests: first)
                    requests = requests.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
                }
                let started = DispatchTime.now().uptimeNanoseconds
                let plan = planner.plan(requests, held: held)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                let document = JSONValue.object(JSONObject([
                    "size": .number(String(size)), "seed": .number(String(seed)),
                    "purser": .object(JSONObject([
                        "cost_pico": .number(String(plan.estimatedCost.picoUSD)), "lower_bound_pico": .number(String(plan.lowerBound.picoUSD)),
                        "placed": .number(String(plan.count - plan.unplaced)), "seconds": .number(String(format: "%.3f", seconds)),
                    ])),
                    "problem": planner.problemDocument(requests),
                ]))
                // The exact solver's documents carry no held capacity and no cache writes, so those kinds are not written for it.
                if held.isEmpty && kind != .cached {
                    let path = "\(directory)/instance-\(kind.rawValue)-\(size)-\(seed).json"
                    try JSONWriter.string(document).write(toFile: path, atomically: true, encoding: .utf8)
                }
                let gap = plan.gapText
                print(kind.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0) + String(size).padding(toLength: 10, withPad: " ", startingAt: 0)
                    + String(seed).padding(toLength: 6, withPad: " ", startingAt: 0)
                    + plan.estimatedCost.exactUSD.padding(toLength: 17, withPad: " ", startingAt: 0)
                    + plan.lowerBound.exactUSD.padding(toLength: 17, withPad: " ", startingAt: 0) + gap.padding(toLength: 9, withPad: " ", startingAt: 0)
                    + String(plan.unplaced).padding(toLength: 10, withPad: " ", startingAt: 0) + String(format: "%.2f s", seconds))
            }
        }
        }
    }
}
