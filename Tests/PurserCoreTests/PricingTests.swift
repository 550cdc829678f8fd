import Foundation
import Testing
@testable import PurserCore

@Test func bundledTablesHoldCurrentDatedPricesFromFiveProviders() throws {
    let catalog = try Fixtures.bundledCatalog()
    #expect(catalog.models.count >= 15)
    #expect(Set(catalog.models.map(\.provider)).count >= 5)
    for model in catalog.models {
        #expect(model.priceSource.hasPrefix("https://"), "\(model.id) cites no URL")
        #expect(!model.qualitySource.isEmpty)
        #expect(model.prices.output.microUSDPerMillion > 0)
    }
    let mini = try #require(catalog.model(id: "openai/gpt-4o-mini"))
    #expect(mini.prices.input == (try TokenPrice(usdPerMillion: "0.15")))
    let deepseek = try #require(catalog.model(id: "deepseek/deepseek-flash"))
    #expect(deepseek.discountWindows.map(\.multiplierBasisPoints) == [5_000, 5_000, 5_000, 5_000])
}

/// Copies the bundled tables (the JSON files, not the opt-in `local/` folder) and lets a test damage one file.
private func damagedTables(_ file: String, _ edit: (String) -> String) -> String {
    let directory = Fixtures.temporaryDirectory()
    for name in try! FileManager.default.contentsOfDirectory(atPath: Fixtures.pricingDirectory) where name.hasSuffix(".json") {
        let text = try! String(contentsOfFile: Fixtures.pricingDirectory + "/" + name, encoding: .utf8)
        _ = Fixtures.write(name == file ? edit(text) : text, to: name, in: directory)
    }
    return directory.path
}

private func problems(_ directory: String) -> [String] {
    do {
        _ = try PricingCatalog.load(directory: directory)
        return []
    } catch let invalid as PricingTablesInvalid {
        return invalid.problems.map { $0.description.replacingOccurrences(of: directory + "/", with: "") }
    } catch {
        return ["\(error)"]
    }
}

@Test func validationNamesFileAndKeyOfEveryProblem() {
    let directory = damagedTables("mistral.json") { text in
        text.replacingOccurrences(of: #""input": "0.5""#, with: #""input": "-0.5""#)
            .replacingOccurrences(of: #""output": "7.5""#, with: #""outptu": "7.5""#)
            .replacingOccurrences(of: #""mistral/mistral-small-latest""#, with: #""mistral/mistral-large-latest""#)
    }
    #expect(problems(directory) == [
        "mistral.json: models[0].prices.input: negative price -0.5; prices are USD per million tokens, zero or more",
        "mistral.json: models[1].prices.output: missing; add it",
        "mistral.json: models[1].prices.outptu: unknown key; known keys here: cache_write_1h, cache_write_5m, cached_input, input, output",
        "mistral.json: models[2].id: duplicate id 'mistral/mistral-large-latest', already defined in \(directory)/mistral.json",
    ].map { $0.replacingOccurrences(of: directory + "/", with: "") })
}

@Test func aProvidersCertificateAuthoritiesAreReadBesideItsTablesAndCheckedWhenLoaded() throws {
    let broken = damagedTables("providers.json") { text in
        text.replacingOccurrences(of: #""api_key_env": "OPENAI_API_KEY","#, with: #""api_key_env": "OPENAI_API_KEY", "ca_file": "missing.pem","#)
            .replacingOccurrences(of: #""api_key_env": "ANTHROPIC_API_KEY","#, with: #""api_key_env": "ANTHROPIC_API_KEY", "ca_file": "notes.txt","#)
    }
    _ = Fixtures.write("not a certificate", to: "notes.txt", in: URL(fileURLWithPath: broken))
    #expect(problems(broken) == [
        "providers.json: providers[0].ca_file: cannot read missing.pem; give a readable PEM file of certificate authorities",
        "providers.json: providers[1].ca_file: notes.txt holds no PEM certificate (no -----BEGIN CERTIFICATE----- line)",
    ])

    let good = damagedTables("providers.json") { text in
        text.replacingOccurrences(of: #""api_key_env": "OPENAI_API_KEY","#, with: #""api_key_env": "OPENAI_API_KEY", "ca_file": "gateway-ca.pem","#)
    }
    let authorities = Fixtures.write("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", to: "gateway-ca.pem", in: URL(fileURLWithPath: good))
    let catalog = try PricingCatalog.load(directory: good)
    #expect(catalog.providers["openai"]?.certificateAuthorities == authorities)
    #expect(catalog.providers["anthropic"]?.certificateAuthorities == nil)
}

@Test func validationFindsTiersNamingNothing() {
    let directory = damagedTables("tiers.json") { text in
        text.replacingOccurrences(of: #""frontier": 62"#, with: #""frontier": 99"#)
            .replacingOccurrences(of: #""deadline": "day""#, with: #""deadline": "fortnight""#)
    }
    #expect(problems(directory) == [
        "tiers.json: defaults.deadline: names no deadline tier ('fortnight'); tiers: asap, day, hour, today, week",
        "tiers.json: quality.frontier: floor 99 is met by no model (the best scores 66)",
    ])
}

@Test func litellmImportConvertsTheExcerptExactly() throws {
    let document = try JSONParser.parse(Array(try #require(FileManager.default.contents(atPath: Fixtures.litellmExcerpt))))
    let result = try LiteLLMImport.convert(document, existing: try Fixtures.bundledCatalog().models, priceDate: "2026-11-24")
    #expect(result.models.count + result.skipped.count == 19)
    #expect(result.models.map(\.id) == [
        "openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-5", "openai/gpt-5-nano", "openai/gpt-4.1", "anthropic/claude-haiku-4-5",
        "anthropic/claude-sonnet-4-5", "anthropic/claude-opus-4-5", "google/gemini-2.5-flash", "deepseek/deepseek-flash",
        "mistral/mistral-small-latest", "groq/openai/gpt-oss-20b",
    ])
    let gpt5 = try #require(result.models.first { $0.id == "openai/gpt-5" })
    #expect(gpt5.prices == TokenPrices(
        input: try TokenPrice(usdPerMillion: "1.25"), output: try TokenPrice(usdPerMillion: "10"), cachedInput: try TokenPrice(usdPerMillion: "0.125")))
    #expect(gpt5.flexPrices?.input == (try TokenPrice(usdPerMillion: "0.625")))
    #expect(gpt5.quality == 66)
    #expect(result.skipped.map(\.reason).sorted() == [
        "documentation entry, not a model", "lacks input_cost_per_token or output_cost_per_token", "lacks max_input_tokens",
        "mode is audio_speech, not chat", "mode is audio_transcription, not chat", "mode is embedding, not chat",
        "mode is moderation, not chat",
    ].sorted())
}

@Test(.enabled(if: Fixtures.hasLiteLLMFile, "needs ../shared/data/litellm-model-prices.json"))
func litellmImportConvertsTheRealFileAndAccountsForEveryEntry() throws {
    let bytes = try #require(FileManager.default.contents(atPath: Fixtures.litellmFile))
    let document = try JSONParser.parse(Array(bytes))
    let existing = try Fixtures.bundledCatalog().models
    let result = try LiteLLMImport.convert(document, existing: existing, priceDate: "2026-11-24")
    #expect(result.models.count + result.skipped.count == document.objectValue!.members.count)
    let mini = try #require(result.models.first { $0.id == "openai/gpt-4o-mini" })
    #expect(mini.prices.input.microUSDPerMillion == 150_000)
    #expect(mini.prices.output.microUSDPerMillion == 600_000)
    #expect(mini.batchPrices?.input.microUSDPerMillion == 75_000)
    #expect(mini.quality == 24)  // kept from the bundled tables
    #expect(result.skipped.contains { $0.entry == "sample_spec" && $0.reason == "documentation entry, not a model" })
    #expect(result.skipped.contains { $0.reason == "mode is embedding, not chat" })
    #expect(result.models.contains { $0.quality == 0 && $0.qualitySource == LiteLLMImport.unratedSource })
    // What it writes reads back through the validating loader unchanged.
    let directory = Fixtures.temporaryDirectory()
    for name in ["providers.json", "tiers.json"] {
        _ = Fixtures.write(try String(contentsOfFile: Fixtures.pricingDirectory + "/" + name, encoding: .utf8), to: name, in: directory)
    }
    let openai = result.models.filter { $0.provider == "openai" }
    _ = Fixtures.write(JSONWriter.string(PricingFileWriter.modelsDocument(openai), pretty: true), to: "openai.json", in: directory)
    let reloaded = try PricingCatalog.load(directory: directory.path)
    #expect(reloaded.models.map(\.id) == openai.map(\.id))
    #expect(reloaded.models.map(\.prices) == openai.map(\.prices))
}

@Test func litellmImportSkipsEntriesWithoutPricesWithAReason() throws {
    let document = try JSONParser.parse(#"{"x/no-price": {"mode": "chat", "litellm_provider": "x", "max_input_tokens": 1000}, "y/embed": {"mode": "embedding", "litellm_provider": "y", "input_cost_per_token": 1e-7, "output_cost_per_token": 0}}"#)
    let result = try LiteLLMImport.convert(document, existing: [], priceDate: "2026-11-24")
    #expect(result.models.isEmpty)
    #expect(result.skipped == [
        .init(entry: "x/no-price", reason: "lacks input_cost_per_token or output_cost_per_token"),
        .init(entry: "y/embed", reason: "mode is embedding, not chat"),
    ])
}

@Test func discountWindowsFollowTheirTimeZone() {
    // Weekdays 00:00–09:00 in Beijing are 16:00–01:00 UTC the evening before.
    let window = DiscountWindow(weekdays: [2], startMinute: 0, endMinute: 540, timeZoneIdentifier: "Asia/Shanghai", multiplierBasisPoints: 5_000)
    let sunday = Int64(1_795_910_400_000)  // 2026-11-29T00:00:00Z, a Sunday
    let intervals = window.intervals(from: sunday, to: sunday + 2 * 86_400_000)
    #expect(intervals == [(sunday + 16 * 3_600_000)..<(sunday + 25 * 3_600_000)])
}

@Test func litellmDatedIdsBecomeAliasesOfTheirModelKeepingItsQuality() throws {
    let document = try JSONParser.parse("""
        {"gpt-4o": {"mode": "chat", "litellm_provider": "openai", "input_cost_per_token": 2.5e-6, "output_cost_per_token": 1e-5, "max_input_tokens": 128000},
         "gpt-4o-2024-08-06": {"mode": "chat", "litellm_provider": "openai", "input_cost_per_token": 2.5e-6, "output_cost_per_token": 1e-5, "max_input_tokens": 128000},
         "claude-sonnet-4-5-20250929": {"mode": "chat", "litellm_provider": "anthropic", "input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5, "max_input_tokens": 200000}}
        """)
    let catalog = try Fixtures.bundledCatalog()
    let result = try LiteLLMImport.convert(document, existing: catalog.models, priceDate: "2026-12-01")
    let byID = Dictionary(uniqueKeysWithValues: result.models.map { ($0.id, $0) })
    #expect(byID["openai/gpt-4o"]?.aliases == ["gpt-4o-2024-08-06"])
    #expect(byID["openai/gpt-4o"]?.quality == catalog.model(id: "openai/gpt-4o")?.quality)
    #expect(byID["openai/gpt-4o-2024-08-06"] == nil)
    // A snapshot whose model is not imported stays a row of its own.
    #expect(byID["anthropic/claude-sonnet-4-5-20250929"] != nil)
    #expect(result.skipped.contains { $0.entry == "gpt-4o-2024-08-06" && $0.reason == "a dated snapshot: kept as an alias of openai/gpt-4o" })
    // The aliases are written out, and read back.
    let written = JSONWriter.string(PricingFileWriter.modelsDocument(result.models))
    #expect(written.contains(#""aliases":["gpt-4o-2024-08-06"]"#) || written.contains(#""aliases": ["gpt-4o-2024-08-06"]"#), "\(written.prefix(300))")
}

/// Each bundled model's caching rule, as its provider documents it: Anthropic's explicit breakpoints with their
/// minimums and write prices (and best-effort hits, at half price, in batch), OpenAI's automatic 1,024-token prefixes
/// in 128-token steps (none in batch before GPT-5), Gemini's cached reads not halved in batch.
@Test func theBundledTablesCarryEachProvidersCachingRule() throws {
    let catalog = try Fixtures.bundledCatalog()
    func model(_ id: String) throws -> Model { try #require((catalog.models + catalog.references).first { $0.id == id }, "\(id)") }
    let sonnet = try model("anthropic/claude-sonnet-4-5")
    #expect(sonnet.caching == CachingRule(mode: .explicit, minimumPrefixTokens: 1_024, batch: .bestEffort, source: "https://platform.claude.com/docs/en/build-with-claude/prompt-caching"))
    #expect(sonnet.prices.cacheWrite5m?.usdPerMillionText == "3.75" && sonnet.prices.cacheWrite1h?.usdPerMillionText == "6")
    #expect(sonnet.batchPrices?.cacheWrite5m?.usdPerMillionText == "1.875" && sonnet.batchPrices?.cachedInput.usdPerMillionText == "0.15")
    #expect(try model("anthropic/claude-haiku-4-5").caching?.minimumPrefixTokens == 4_096)
    let gpt5 = try model("openai/gpt-5")
    #expect(gpt5.caching?.mode == .automatic && gpt5.caching?.minimumPrefixTokens == 1_024 && gpt5.caching?.stepTokens == 128)
    #expect(gpt5.caching?.batch == .halved && gpt5.caching?.flex == .halved && gpt5.prices.cacheWrite5m == nil)
    #expect(try model("openai/gpt-4.1").caching?.batch == CachingRule.InMode.none)
    #expect(try model("openai/gpt-3.5-turbo").caching == nil)
    #expect(try model("google/gemini-2.5-flash").caching?.batch == .full)
    #expect(try model("google/gemini-2.5-pro").caching?.minimumPrefixTokens == 4_096)
    #expect(try model("mistral/mistral-large-latest").caching == nil, "a rule nobody documented is not guessed")
}

@Test func validationRefusesCachingRulesTheirPricesContradict() {
    let directory = damagedTables("anthropic.json") { text in
        text.replacingOccurrences(of: #""cache_write_5m": "6.25""#, with: #""cache_write_5m": "4""#)  // a write below input
            .replacingOccurrences(of: #""mode": "explicit","#, with: #""mode": "sometimes","#)
            .replacingOccurrences(of: #""cached_input": "0.15","#, with: #""cached_input": "1.5","#)  // batch read not below its input
    }
    let found = problems(directory)
    #expect(found.contains("anthropic.json: models[0].prices.cache_write_5m: a cache write costs less than uncached input (5); check the provider's page"), "\(found)")
    #expect(found.contains { $0.hasPrefix("anthropic.json: models[0].caching.mode: 'sometimes' is not one of automatic, explicit") }, "\(found)")
    #expect(found.contains { $0.hasPrefix("anthropic.json: models[1].caching.batch: 'best_effort' caches in batch mode") }, "\(found)")

    let openai = damagedTables("openai.json") { text in
        // gpt-5's batch read no longer half its sync read, though the rule says halved.
        text.replacingOccurrences(of: #""cached_input": "0.0625""#, with: #""cached_input": "0.07""#)
    }
    #expect(problems(openai).contains { $0.contains("models[0].caching.batch: 'halved' reads at half the cached price") }, "\(problems(openai))")
}

/// LiteLLM's cache fields become the tables' caching: writes for five minutes and an hour (in batch too), the minimum
/// prefix, explicit for Anthropic; a write LiteLLM prices at zero or at input (DeepSeek, Databricks) is no fee.
@Test func litellmImportReadsTheCacheFields() throws {
    let document = try JSONParser.parse(Array(try #require(FileManager.default.contents(atPath: Fixtures.litellmExcerpt))))
    let result = try LiteLLMImport.convert(document, existing: [], priceDate: "2026-12-06")
    let haiku = try #require(result.models.first { $0.id == "anthropic/claude-haiku-4-5" })
    #expect(haiku.prices.cacheWrite5m?.usdPerMillionText == "1.25" && haiku.prices.cacheWrite1h?.usdPerMillionText == "2")
    #expect(haiku.batchPrices?.cacheWrite5m?.usdPerMillionText == "0.625")
    #expect(haiku.caching?.mode == .explicit && haiku.caching?.minimumPrefixTokens == 4_096 && haiku.caching?.batch == .bestEffort)
    let flash = try #require(result.models.first { $0.id == "deepseek/deepseek-flash" })
    #expect(flash.prices.cacheWrite5m == nil)
    // DeepSeek's minimum is in neither LiteLLM nor a current row: no rule is guessed.
    #expect(flash.caching == nil)
    // What it writes reads back as the same tables.
    let written = JSONWriter.string(PricingFileWriter.modelsDocument([haiku]))
    var problems: [PricingProblem] = []
    let reread = PricingCatalog.readModel(try JSONParser.parse(written).objectValue!["models"]!.arrayValue![0], file: "x", path: "models[0]", problems: &problems)
    #expect(problems.isEmpty, "\(problems)")
    #expect(reread?.caching == haiku.caching && reread?.prices == haiku.prices && reread?.batchPrices == haiku.batchPrices)
}
