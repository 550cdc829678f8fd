import Testing
@testable import PurserCore

/// The simulator caches as its providers document: nothing below the minimum, Anthropic only at breakpoints with
/// writes billed, parallel first calls all missing until the first answer has begun, OpenAI in 128-token steps, and
/// nothing by chance.
struct SimulatedCacheTests {
    let catalog: PricingCatalog
    init() throws { catalog = try Fixtures.bundledCatalog() }

    /// A body with a shared prefix of about `prefixTokens` and a unique part; Anthropic's with a breakpoint after the system prompt.
    func call(_ id: Int64, model: String, prefixTokens: Int, breakpoint: Bool = true, ttl: String? = nil) throws -> ProviderCall {
        let model = try #require(catalog.model(id: model))
        let provider = try #require(catalog.providers[model.provider])
        let shared = String(repeating: "Follow these instructions with care. ", count: prefixTokens * 4 / 37)
        let text: String
        if provider.dialect == .anthropic {
            let control = breakpoint ? #", "cache_control": {"type": "ephemeral"\#(ttl.map { #", "ttl": "\#($0)""# } ?? "")}"# : ""
            text = #"{"model": "m", "max_tokens": 50, "system": [{"type": "text", "text": "\#(shared)"\#(control)}], "messages": [{"role": "user", "content": "Item \#(id)"}]}"#
        } else {
            text = #"{"model": "m", "max_tokens": 50, "messages": [{"role": "system", "content": "\#(shared)"}, {"role": "user", "content": "Item \#(id)"}]}"#
        }
        let body = try #require(try JSONParser.parse(text).objectValue)
        return ProviderCall(requestID: id, customID: "r\(id)", model: model, provider: provider, mode: .sync, body: body, timeoutSeconds: 10)
    }

    func usage(_ call: ProviderCall, cache: SimulatedCache, at now: Int64) -> Usage {
        let read = cache.use(
            model: call.model, provider: call.provider.name, prefix: PromptPrefix(body: call.body, dialect: call.provider.dialect), now: now,
            answerBegins: now + 2_000, speedup: 1)
        return Simulator.answer(call, cached: read).usage
    }

    @Test func anthropicWritesAtTheBreakpointThenReadsOnceTheFirstAnswerHasBegun() throws {
        let cache = SimulatedCache()
        let first = usage(try call(1, model: "anthropic/claude-sonnet-4-5", prefixTokens: 3_000), cache: cache, at: 0)
        #expect(first.cachedInputTokens == 0 && first.cacheWriteTokens > 3_000)
        // Sent before the first answer began: a miss, written again.
        let parallel = usage(try call(2, model: "anthropic/claude-sonnet-4-5", prefixTokens: 3_000), cache: cache, at: 500)
        #expect(parallel.cachedInputTokens == 0 && parallel.cacheWriteTokens > 3_000)
        let after = usage(try call(3, model: "anthropic/claude-sonnet-4-5", prefixTokens: 3_000), cache: cache, at: 5_000)
        // The same prefix, counted by each request's tokenizer reading (which varies a few percent from request to request).
        #expect(abs(after.cachedInputTokens - first.cacheWriteTokens) <= first.cacheWriteTokens / 10 && after.cacheWriteTokens == 0, "\(after) after \(first)")
        #expect(after.inputTokens < 30, "only the unique part is uncached: \(after)")
        // Five minutes after its last use the entry is gone.
        let late = usage(try call(4, model: "anthropic/claude-sonnet-4-5", prefixTokens: 3_000), cache: cache, at: 5_000 + 300_001)
        #expect(late.cachedInputTokens == 0 && late.cacheWriteTokens > 0)
        // An hour's breakpoint outlives that.
        _ = usage(try call(5, model: "anthropic/claude-sonnet-4-5", prefixTokens: 2_000, ttl: "1h"), cache: cache, at: 0)
        #expect(usage(try call(6, model: "anthropic/claude-sonnet-4-5", prefixTokens: 2_000, ttl: "1h"), cache: cache, at: 1_800_000).cachedInputTokens > 0)
    }

    @Test func anthropicCachesNothingWithoutABreakpointOrBelowItsMinimum() throws {
        let cache = SimulatedCache()
        for id in 1...3 {
            let unmarked = usage(try call(Int64(id), model: "anthropic/claude-sonnet-4-5", prefixTokens: 3_000, breakpoint: false), cache: cache, at: Int64(id) * 10_000)
            #expect(unmarked.cachedInputTokens == 0 && unmarked.cacheWriteTokens == 0)
            // Haiku 4.5 caches from 4,096 tokens: 3,000 is processed uncached, with no error.
            let short = usage(try call(Int64(id + 10), model: "anthropic/claude-haiku-4-5", prefixTokens: 3_000), cache: cache, at: Int64(id) * 10_000)
            #expect(short.cachedInputTokens == 0 && short.cacheWriteTokens == 0)
        }
    }

    @Test func openAIReadsAutomaticallyInStepsAndBillsNoWrites() throws {
        let cache = SimulatedCache()
        let first = usage(try call(1, model: "openai/gpt-5-mini", prefixTokens: 3_000), cache: cache, at: 0)
        #expect(first.cachedInputTokens == 0 && first.cacheWriteTokens == 0)
        let second = usage(try call(2, model: "openai/gpt-5-mini", prefixTokens: 3_000), cache: cache, at: 10_000)
        #expect(second.cachedInputTokens > 2_500 && second.cachedInputTokens % 128 == 0 && second.cacheWriteTokens == 0, "\(second)")
        // Under 1,024 tokens nothing is cached; another model has a cache of its own.
        _ = usage(try call(3, model: "openai/gpt-5-mini", prefixTokens: 600), cache: cache, at: 0)
        #expect(usage(try call(4, model: "openai/gpt-5-mini", prefixTokens: 600), cache: cache, at: 10_000).cachedInputTokens == 0)
        #expect(usage(try call(5, model: "openai/gpt-5-nano", prefixTokens: 3_000), cache: cache, at: 10_000).cachedInputTokens == 0)
    }

    @Test func theSameCallAlwaysGetsTheSameUsageWithoutACache() throws {
        // No more cache hits drawn at random: without a cache, nothing is cached.
        for id in 1...40 {
            let answer = Simulator.answer(try call(Int64(id), model: "openai/gpt-5-mini", prefixTokens: 2_000))
            #expect(answer.usage.cachedInputTokens == 0)
        }
    }

    @Test func aBatchReadsWhatItsEarlierCallsLeftOnceItsFirstWaveHasBegun() throws {
        func uses(_ model: String, count: Int, breakpoint: Bool = true) throws -> [SimulatedCache.Use] {
            let calls = try (1...count).map { try call(Int64($0), model: model, prefixTokens: 3_000, breakpoint: breakpoint) }
            return SimulatedCache.batch(calls.map { ($0.model, $0.provider.name, PromptPrefix(body: $0.body, dialect: $0.provider.dialect)) }, parallel: 32)
        }
        // gpt-5-mini caches batches (halved): the first 32 calls are worked at once and miss, the later ones read.
        let gpt = try uses("openai/gpt-5-mini", count: 100)
        #expect(gpt.prefix(32).allSatisfy { $0.read == 0 } && gpt.dropFirst(32).allSatisfy { $0.read >= 2_944 })
        // A batch read twice caches the same way; a batch of one wave reads nothing.
        #expect(try uses("openai/gpt-5-mini", count: 100).map(\.read) == gpt.map(\.read))
        #expect(try uses("openai/gpt-5-mini", count: 20).allSatisfy { $0.read == 0 })
        // gpt-4.1 does not cache in batches; Claude caches only at breakpoints, which Purser's batches do not carry.
        #expect(try uses("openai/gpt-4.1", count: 100).allSatisfy { $0.read == 0 && $0.written == 0 })
        #expect(try uses("anthropic/claude-sonnet-4-5", count: 100, breakpoint: false).allSatisfy { $0.read == 0 && $0.written == 0 })
    }
}

/// Submit puts requests whose leading content (tools, system prompt, all but the last message) is the same in one
/// prefix group, with that content's estimated tokens, whatever the unique last message says.
@Test func requestsWithTheSameLeadingContentShareAPrefixGroup() throws {
    func group(_ text: String, _ dialect: Provider.Dialect = .openai) throws -> (id: String, tokens: Int)? {
        PromptPrefix(body: try #require(try JSONParser.parse(text).objectValue), dialect: dialect, leadingOnly: true).group
    }
    let system = String(repeating: "Classify the ticket. ", count: 200)
    let first = try #require(try group(#"{"messages": [{"role": "system", "content": "\#(system)"}, {"role": "user", "content": "Ticket 1"}]}"#))
    let second = try #require(try group(#"{"max_tokens": 9, "messages": [{"role": "system", "content": "\#(system)"}, {"role": "user", "content": "Ticket 2, longer"}]}"#))
    #expect(first.id == second.id && first.tokens == second.tokens && first.tokens > 1_000)
    let other = try #require(try group(#"{"messages": [{"role": "system", "content": "\#(system)!"}, {"role": "user", "content": "Ticket 1"}]}"#))
    #expect(other.id != first.id)
    #expect(try group(#"{"messages": [{"role": "user", "content": "Only this"}]}"#) == nil)
    // Anthropic: the system prompt and tools lead; the same group whatever the request's own message.
    let tools = #"[{"name": "route", "input_schema": {"type": "object"}}]"#
    let a = try group(#"{"system": "\#(system)", "tools": \#(tools), "messages": [{"role": "user", "content": "A"}]}"#, .anthropic)
    let b = try group(#"{"system": "\#(system)", "tools": \#(tools), "messages": [{"role": "user", "content": [{"type": "text", "text": "B"}]}]}"#, .anthropic)
    #expect(a != nil && a?.id == b?.id)
    // The group's hash is the simulator's boundary hash at the same place: one definition of a shared prefix.
    let full = PromptPrefix(body: try #require(try JSONParser.parse(#"{"messages": [{"role": "system", "content": "\#(system)"}, {"role": "user", "content": "Ticket 1"}]}"#).objectValue), dialect: .openai)
    #expect(full.group?.id == first.id && full.boundaries.count == 2)
}

/// What the dispatcher adds for caching: an Anthropic breakpoint at the end of a shared prefix, an OpenAI
/// `prompt_cache_key` naming the group in buckets of about 150 requests; nothing where the prefix is not shared or
/// too short, where the request set its own, or for a provider that may not know the field.
@Test func dispatchMarksSharedPrefixesForEachProvidersCache() throws {
    let catalog = try Fixtures.bundledCatalog()
    let sonnet = try #require(catalog.model(id: "anthropic/claude-sonnet-4-5")), gpt = try #require(catalog.model(id: "openai/gpt-5-mini"))
    let oss = try #require(catalog.model(id: "groq/openai/gpt-oss-120b"))
    let anthropic = try #require(catalog.providers["anthropic"]), openai = try #require(catalog.providers["openai"]), groq = try #require(catalog.providers["groq"])
    let system = String(repeating: "Shared instructions. ", count: 400)
    let group = PrefixGroup(id: "00000000000000ab", tokens: 2_100, requests: 400)
    func object(_ text: String) throws -> JSONObject { try #require(try JSONParser.parse(text).objectValue) }

    let claude = try object(#"{"model": "claude-sonnet-4-5", "max_tokens": 9, "system": "\#(system)", "messages": [{"role": "user", "content": "Q"}]}"#)
    let marked = PromptCaching.withBreakpoint(claude, model: sonnet, provider: anthropic, group: group)
    let block = marked["system"]?.arrayValue?.first?.objectValue
    #expect(block?["text"]?.stringValue == system && block?["cache_control"]?.objectValue?["type"]?.stringValue == "ephemeral")
    #expect(marked["messages"] == claude["messages"], "the request's own message is left as it was")
    #expect(PromptCaching.withBreakpoint(claude, model: sonnet, provider: anthropic, group: PrefixGroup(id: "x", tokens: 2_100, requests: 1)) == claude)
    #expect(PromptCaching.withBreakpoint(claude, model: sonnet, provider: anthropic, group: PrefixGroup(id: "x", tokens: 800, requests: 50)) == claude)
    #expect(PromptCaching.withBreakpoint(marked, model: sonnet, provider: anthropic, group: group) == marked, "its own breakpoints are kept")
    // A multi-turn request: the breakpoint ends the turn before its last message.
    let turns = try object(#"{"system": "s", "messages": [{"role": "user", "content": "\#(system)"}, {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q"}]}"#)
    let markedTurns = PromptCaching.withBreakpoint(turns, model: sonnet, provider: anthropic, group: group)
    #expect(markedTurns["messages"]?.arrayValue?[1].objectValue?["content"]?.arrayValue?.first?.objectValue?["cache_control"] != nil)

    let chat = try object(#"{"model": "gpt-5-mini", "messages": [{"role": "system", "content": "\#(system)"}, {"role": "user", "content": "Q"}]}"#)
    let keys = Set((0..<400).compactMap { PromptCaching.withCacheKey(chat, requestID: Int64($0), model: gpt, provider: openai, group: group)["prompt_cache_key"]?.stringValue })
    #expect(keys.count == 3 && keys.allSatisfy { $0.hasPrefix("purser-00000000000000ab-") }, "\(keys)")
    #expect(PromptCaching.withCacheKey(chat, requestID: 1, model: oss, provider: groq, group: group)["prompt_cache_key"] == nil)
    var own = chat
    own["prompt_cache_key"] = .string("mine")
    #expect(PromptCaching.withCacheKey(own, requestID: 1, model: gpt, provider: openai, group: group)["prompt_cache_key"]?.stringValue == "mine")
}
