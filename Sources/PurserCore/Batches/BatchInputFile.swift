import Foundation

/// A batch's input file, written from its members page by page outside the store, so that claims and commits go on
/// while a file of hundreds of megabytes is written: JSONL lines for OpenAI-style APIs, the `{"requests": [...]}` body
/// for Anthropic's. Bodies are translated to the batch dialect and named for the batch's model.
enum BatchInputFile {
    /// Members read from the store at a time.
    static let pageLines = 2_000

    /// Writes the input of `batch` to `file` (readable by its owner only: it holds the users' prompts); returns its bytes.
    static func write(_ batch: BatchRow, to file: URL, catalog: PricingCatalog, book: any BatchBook, pageLines: Int = pageLines) async throws -> Int {
        guard let model = catalog.model(id: batch.model), let provider = catalog.providers[batch.provider] else {
            throw Problem("batch \(batch.id): its model \(batch.model) is no longer in the pricing tables")
        }
        let batchProvider = BatchInput.batchProvider(provider)
        let descriptor = open(file.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw Problem("cannot create \(file.path): \(String(cString: strerror(errno)))") }
        close(descriptor)
        // Closed at the end, where a failure to flush is an error; on an earlier error the handle closes as it goes.
        let handle = try FileHandle(forWritingTo: file)
        var buffer = batch.dialect == .anthropic ? "{\"requests\": [\n" : ""
        var written = 0
        var first = true
        var afterLine: Int64 = -1
        while true {
            let page = try await book.batchInputPage(batch.id, afterLine: afterLine, limit: pageLines)
            for member in page {
                let body = try DialectTranslation.requestBody(
                    stored: member.body, storedDialect: member.shape.bodyDialect, model: model, provider: batchProvider, mode: .batch)
                let customID = JSONValue.string(member.providerCustomID)
                switch batch.dialect {
                case .openai:
                    buffer += JSONWriter.string(.object(JSONObject([
                        "custom_id": customID, "method": .string("POST"), "url": .string("/v1/chat/completions"), "body": .object(body),
                    ]))) + "\n"
                case .anthropic:
                    buffer += (first ? "" : ",\n") + JSONWriter.string(.object(JSONObject(["custom_id": customID, "params": .object(body)])))
                }
                first = false
                if buffer.utf8.count >= 4 << 20 {
                    written += buffer.utf8.count
                    try handle.write(contentsOf: Data(buffer.utf8))
                    buffer = ""
                }
            }
            guard let last = page.last, page.count == pageLines else { break }
            afterLine = last.line
        }
        if batch.dialect == .anthropic { buffer += "\n]}\n" }
        written += buffer.utf8.count
        try handle.write(contentsOf: Data(buffer.utf8))
        try handle.close()
        return written
    }
}
