import Foundation
import Testing
@testable import PurserCore

/// A batch's input file is written outside the store, page by page: every member once, in line order, in the
/// batch's dialect, however the pages fall.
@Suite struct BatchInputFileTests {
    let catalog: PricingCatalog = {
        var catalog = Fixtures.catalog([Fixtures.model("cheap", input: 1_000_000, output: 2_000_000, quality: 50)])
        catalog.providers["p"]?.batchDialect = .openai
        return catalog
    }()

    func members(_ count: Int) -> [StoredBatchLine] {
        (0..<count).map { index in
            let openai = index % 2 == 0
            let body = openai
                ? #"{"model": "x", "messages": [{"role": "user", "content": "Question \#(index)"}], "max_tokens": 20}"#
                : #"{"model": "x", "max_tokens": 20, "messages": [{"role": "user", "content": "Question \#(index)"}]}"#
            return StoredBatchLine(
                line: Int64(index), providerCustomID: "db_7_\(100 + index)", shape: openai ? .openaiBatch : .anthropicBatch, body: body)
        }
    }

    func batch(dialect: Provider.Dialect) -> BatchRow {
        BatchRow(
            id: 7, key: "k", provider: "p", model: "p/cheap", dialect: dialect, simulated: false, state: .planned, requestCount: 7, plannedAt: 0,
            pullBackAt: 0)
    }

    @Test(arguments: [1, 3, 7, 50]) func everyMemberIsWrittenOnceInLineOrderWhateverThePageSize(pageLines: Int) async throws {
        let store = MemoryStorage(owner: "test")
        // Stored out of order: the file follows the lines, not the order rows come in.
        await store.setBatchLines(7, members(7).reversed())
        let file = Fixtures.temporaryDirectory().appendingPathComponent("input.jsonl")
        let bytes = try await BatchInputFile.write(batch(dialect: .openai), to: file, catalog: catalog, book: store, pageLines: pageLines)
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(bytes == text.utf8.count)
        let lines = try text.split(separator: "\n").compactMap { try JSONParser.parse(String($0)).objectValue }
        try #require(lines.count == 7)
        #expect(lines.map { $0["custom_id"]?.stringValue } == (0..<7).map { "db_7_\(100 + $0)" })
        // Both stored dialects become OpenAI chat bodies named for the batch's model.
        #expect(lines.allSatisfy { $0["url"]?.stringValue == "/v1/chat/completions" && $0["body"]?.objectValue?["model"]?.stringValue == "cheap" })
        #expect(lines[1]["body"]?.objectValue?["messages"]?.arrayValue?.first?.objectValue?["content"]?.stringValue == "Question 1")
        // Pages of `pageLines`, and one more read that finds the end when the last page is full.
        #expect(await store.batchPagesRead == 7 / pageLines + 1)
        let attributes = try FileManager.default.attributesOfItem(atPath: file.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600, "the file holds the users' prompts")
    }

    @Test func anAnthropicBatchIsOneRequestsDocument() async throws {
        let store = MemoryStorage(owner: "test")
        await store.setBatchLines(7, members(5))
        var catalog = catalog
        catalog.providers["p"]?.batchDialect = .anthropic
        let file = Fixtures.temporaryDirectory().appendingPathComponent("input.json")
        _ = try await BatchInputFile.write(batch(dialect: .anthropic), to: file, catalog: catalog, book: store, pageLines: 2)
        let text = try String(contentsOf: file, encoding: .utf8)
        let document = try #require(try JSONParser.parse(text).objectValue)
        let requests = try #require(document["requests"]?.arrayValue).compactMap(\.objectValue)
        #expect(requests.map { $0["custom_id"]?.stringValue } == (0..<5).map { "db_7_\(100 + $0)" })
        #expect(requests.allSatisfy { $0["params"]?.objectValue?["max_tokens"]?.intValue == 20 })
    }
}
