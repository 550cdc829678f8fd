import Foundation
@testable import PurserCore
import SQLiteStore
import TestSupport

/// Paths and small builders shared by the core tests.
enum Fixtures {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let pricingDirectory = repository.appendingPathComponent("pricing").path
    /// LiteLLM's whole price file, present beside the repository on developers' machines and in CI.
    static let litellmFile = repository.deletingLastPathComponent().appendingPathComponent("shared/data/litellm-model-prices.json").path
    static var hasLiteLLMFile: Bool { FileManager.default.fileExists(atPath: litellmFile) }
    /// A committed excerpt of that file (see Tests/Fixtures/README.md).
    static let litellmExcerpt = repository.appendingPathComponent("Tests/Fixtures/litellm-excerpt.json").path

    static func temporaryDirectory() -> URL {
        let url = testFiles.appendingPathComponent("purser-test-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A copy of the bundled OpenAI tables (with providers and tiers), its models file changed by `edit`.
    static func openAITables(_ edit: (String) -> String) throws -> URL {
        let directory = temporaryDirectory()
        for name in ["providers.json", "tiers.json", "openai.json"] {
            try FileManager.default.copyItem(atPath: pricingDirectory + "/" + name, toPath: directory.appendingPathComponent(name).path)
        }
        let path = directory.appendingPathComponent("openai.json").path
        try edit(try String(contentsOfFile: path, encoding: .utf8)).write(toFile: path, atomically: true, encoding: .utf8)
        return directory
    }

    static func write(_ text: String, to name: String, in directory: URL) -> String {
        let path = directory.appendingPathComponent(name).path
        precondition(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)), "cannot write \(path)")
        return path
    }

    static func bundledCatalog() throws -> PricingCatalog { try PricingCatalog.load(directory: pricingDirectory) }

    /// The same tables with no provider taking batches: every plan is for live calls.
    static func withoutBatches(_ catalog: PricingCatalog) -> PricingCatalog {
        var live = catalog
        for name in live.providers.keys { live.providers[name]?.batchDialect = nil }
        return live
    }

    static let tiers = Tiers(
        quality: ["basic": 30, "standard": 45, "premium": 55], deadline: ["hour": 3_600_000, "day": 86_400_000],
        defaultQuality: "standard", defaultDeadline: "day")

    /// A model with round numbers; prices in micro-USD per million tokens.
    static func model(
        _ name: String, provider: String = "p", input: Int64, output: Int64, quality: Int, requestsPerMinute: Int = 1_000,
        tokensPerMinute: Int = 100_000_000, ttft: Int = 500, tokensPerSecond: Int = 100, context: Int = 100_000,
        capabilities: Capabilities = [.tools, .jsonMode, .vision], flex: TokenPrices? = nil, windows: [DiscountWindow] = []
    ) -> Model {
        let prices = TokenPrices(
            input: TokenPrice(microUSDPerMillion: input), output: TokenPrice(microUSDPerMillion: output),
            cachedInput: TokenPrice(microUSDPerMillion: input / 10))
        return Model(
            id: "\(provider)/\(name)", provider: provider, providerModel: name, prices: prices, flexPrices: flex, contextWindow: context,
            maxOutputTokens: min(16_000, context), quality: quality, qualitySource: "test", capabilities: capabilities,
            rateLimits: RateLimits(requestsPerMinute: requestsPerMinute, tokensPerMinute: tokensPerMinute),
            speed: Speed(timeToFirstTokenMilliseconds: ttft, outputTokensPerSecond: tokensPerSecond), discountWindows: windows,
            priceDate: "2026-11-24", priceSource: "https://example.com/prices")
    }

    static func catalog(_ models: [Model]) -> PricingCatalog {
        let providers = Set(models.map(\.provider)).map {
            Provider(name: $0, dialect: .openai, baseURL: "https://example.com/v1", apiKeyEnvironmentVariable: "\($0.uppercased())_KEY")
        }
        return PricingCatalog(models: models, providers: Dictionary(uniqueKeysWithValues: providers.map { ($0.name, $0) }), tiers: tiers)
    }

    static func request(
        _ id: Int64, floor: Int = 0, input: Int = 1_000, output: Int = 500, deadlineAt: Int64 = 86_400_000, reference: String? = nil,
        pinned: String? = nil, capabilities: Capabilities = [], maxCost: Money? = nil
    ) -> PlannableRequest {
        PlannableRequest(
            id: id,
            needs: RequestNeeds(
                qualityFloor: floor, qualityTier: "standard", inputTokens: input, maxOutputTokens: output, capabilities: capabilities,
                pinnedModel: pinned),
            referenceModel: reference, deadlineAt: deadlineAt, maxCost: maxCost)
    }
}
