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
        "mistral.json: models[1].prices.outptu: unknown key; known keys here: cached_input, input, output",
        "mistral.json: models[2].id: duplicate id 'mistral/mistral-large-latest', already defined in \(directory)/mistral.json",
    ].map { $0.replacingOccurrences(of: directory + "/", with: "") })
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
