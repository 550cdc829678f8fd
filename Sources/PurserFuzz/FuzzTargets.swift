import Foundation
import PurserCore

/// What the fuzzers feed: a job line to the job-file parser, or a provider's answer (status, headers, body)
/// to the code that reads it, in either dialect. Each target also checks what must hold of any answer it
/// gives, so the fuzzers find wrong results as well as crashes.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case jobLine = "job-line"
    case openAIResponse = "openai-response"
    case anthropicResponse = "anthropic-response"
    /// One line of a batch's results file, as each API writes them.
    case openAIBatchLine = "openai-batch-line"
    case anthropicBatchLine = "anthropic-batch-line"
}

/// Runs inputs through the targets. One harness parses many inputs; it is not shared between threads.
public struct FuzzHarness {
    /// 2026-11-24T00:00:00Z: the submit time of every fuzzed line and the "now" of every fuzzed answer.
    public static let now: Int64 = 1_795_478_400_000
    private var parser: RequestLineParser

    public init(pricingDirectory: String) throws {
        let catalog = try PricingCatalog.load(directory: pricingDirectory)
        parser = RequestLineParser(catalog: catalog, defaults: .init(), submittedAt: FuzzHarness.now, history: OutputHistory())
    }

    /// Runs one input; returns what was wrong with the answer, or nil when it was sound.
    public mutating func run(_ target: FuzzTarget, _ input: [UInt8]) -> String? {
        switch target {
        case .jobLine: return jobLine(input)
        case .openAIResponse: return response(input, dialect: .openai)
        case .anthropicResponse: return response(input, dialect: .anthropic)
        case .openAIBatchLine: return batchLine(input, dialect: .openai)
        case .anthropicBatchLine: return batchLine(input, dialect: .anthropic)
        }
    }

    private mutating func jobLine(_ input: [UInt8]) -> String? {
        FuzzHarness.wrongness(of: input.withUnsafeBufferPointer { parser.parse($0, lineNumber: 1) }, lineBytes: input.count)
    }

    /// What is wrong with the parser's answer for a line of `lineBytes` bytes, or nil.
    public static func wrongness(of result: Result<RequestDraft, LineProblem>, lineBytes: Int) -> String? {
        switch result {
        case .success(let draft):
            let needs = draft.needs
            if !(1...Model.maximumContextTokens).contains(needs.maxOutputTokens) { return "max output tokens \(needs.maxOutputTokens) out of range" }
            // Text counts at most a token a byte; each image counts a fixed amount whatever its size.
            if needs.inputTokens < 0 || needs.inputTokens > lineBytes + 2_000 * (lineBytes / 10 + 1) {
                return "input tokens \(needs.inputTokens) for a \(lineBytes)-byte line"
            }
            if !(0...100).contains(needs.qualityFloor) { return "quality floor \(needs.qualityFloor) out of range" }
            if draft.deadlineAt < FuzzHarness.now || draft.deadlineAt > FuzzHarness.now + RoutingText.horizonMilliseconds {
                return "deadline \(draft.deadlineAt) outside the horizon"
            }
            if let cost = draft.maxCost, cost.picoUSD < 0 { return "negative max cost" }
            if draft.customID.isEmpty { return "empty custom_id accepted" }
            if (try? JSONParser.parse(draft.body)) == nil { return "stored body is not JSON: \(draft.body.prefix(80))" }
        case .failure(let problem):
            if problem.description.count > 2_000 { return "a \(problem.description.count)-character error message" }
        }
        return nil
    }

    private func response(_ input: [UInt8], dialect: Provider.Dialect) -> String? {
        // The input is "STATUS\nname: value\n…\n\nBODY", read leniently so that every mutation still runs.
        let text = String(decoding: input, as: UTF8.self)
        let parts = text.components(separatedBy: "\n\n")
        let head = parts[0].split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(head.first.map { String($0.prefix(12)) } ?? "") ?? 200
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = Data(parts.dropFirst().joined(separator: "\n\n").utf8)
        let outcome = HTTPProviderClient.outcome(
            status: status, header: { headers[$0.lowercased()] }, body: body, dialect: dialect, now: Date(timeIntervalSince1970: Double(FuzzHarness.now) / 1000))
        return FuzzHarness.wrongness(of: outcome, status: status)
    }

    private func batchLine(_ input: [UInt8], dialect: Provider.Dialect) -> String? {
        guard let line = BatchResultFile.line(input, dialect: dialect) else { return nil }
        switch line.outcome {
        case .succeeded(let response): return FuzzHarness.wrongness(of: .success(response), status: response.statusCode)
        case .failed(let failure): return FuzzHarness.wrongness(of: .failure(failure), status: failure.status ?? 500)
        case .expired, .cancelled: return nil
        }
    }

    /// What is wrong with the reading of an answer with `status`, or nil.
    public static func wrongness(of outcome: Result<ProviderResponse, CallFailure>, status: Int) -> String? {
        switch outcome {
        case .success(let response):
            guard (200..<300).contains(status) else { return "status \(status) taken as success" }
            let usage = response.usage
            for count in [usage.inputTokens, usage.cachedInputTokens, usage.cacheWriteTokens, usage.outputTokens] where !(0...1_000_000_000).contains(count) {
                return "usage count \(count) out of range"
            }
            if (response.providerRequestID?.count ?? 0) > 100_000 { return "request id longer than the body" }
        case .failure(let failure):
            if let wait = failure.retryAfterMilliseconds, !(0...RetryAfter.maximumMilliseconds).contains(wait) { return "retry-after \(wait) ms out of range" }
            if failure.message.count > 600 { return "a \(failure.message.count)-character failure message" }
        }
        return nil
    }
}

/// A target's corpus: the hand-written seeds, one file each in `directory/<target>/`, and the inputs libFuzzer
/// grew and minimized, one base64 line each in `directory/<target>.corpus` (`scripts/fuzz.sh --keep` writes it).
public enum FuzzCorpus {
    public static func load(_ target: FuzzTarget, from directory: String) -> [[UInt8]] {
        let folder = URL(fileURLWithPath: directory).appendingPathComponent(target.rawValue)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path))?.sorted() ?? []
        let seeds = names.compactMap { try? Array(Data(contentsOf: folder.appendingPathComponent($0))) }
        let packed = (try? String(contentsOfFile: folder.path + ".corpus", encoding: .utf8))?.split(separator: "\n")
            .compactMap { Data(base64Encoded: String($0)).map(Array.init) } ?? []
        return seeds + packed
    }
}
