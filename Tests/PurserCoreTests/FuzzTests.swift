import Foundation
@testable import PurserCore
import PurserFuzz
import Testing

// A fixed number of seeded mutations of the committed corpus through each fuzz target, on every test run.
// Longer runs (and coverage-guided ones with libFuzzer) are scripts/fuzz.sh's.

private let corpusDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("fuzz-corpus").path

@Test(arguments: [
    (FuzzTarget.jobLine, 20_000), (.openAIResponse, 8_000), (.anthropicResponse, 8_000), (.openAIBatchLine, 8_000), (.anthropicBatchLine, 8_000),
])
func mutatedInputsNeitherCrashNorGiveWrongAnswers(target: FuzzTarget, inputs: Int) throws {
    var harness = try FuzzHarness(pricingDirectory: Fixtures.pricingDirectory)
    let corpus = FuzzCorpus.load(target, from: corpusDirectory)
    try #require(corpus.count >= 5, "the committed corpus for \(target.rawValue)")
    // The corpus itself first: each seed is sound.
    for input in corpus { #expect(harness.run(target, input) == nil, "\(String(decoding: input, as: UTF8.self))") }
    var mutator = Mutator(seed: 20_261_130)
    var pool = corpus
    var wrong: [String] = []
    for _ in 0..<inputs {
        let input = mutator.mutate(pool[mutator.below(pool.count)], corpus: corpus)
        if let problem = harness.run(target, input) { wrong.append("\(problem): \(String(decoding: input.prefix(200), as: UTF8.self))") }
        if pool.count < 512 { pool.append(input) } else { pool[mutator.below(pool.count)] = input }
    }
    #expect(wrong.isEmpty, "\(wrong.count) wrong answers, first: \(wrong.first ?? "")")
}

@Test func theFuzzChecksReportWrongAnswers() throws {
    // The checks can fail: answers no input may give are reported.
    let response = ProviderResponse(statusCode: 200, providerRequestID: nil, body: "{}", usage: Usage(inputTokens: -1, outputTokens: 1), simulated: false)
    #expect(FuzzHarness.wrongness(of: .success(response), status: 200) == "usage count -1 out of range")
    #expect(FuzzHarness.wrongness(of: .success(response), status: 500) == "status 500 taken as success")
    let wait = CallFailure(kind: .retryable, status: 429, message: "slow down", retryAfterMilliseconds: RetryAfter.maximumMilliseconds + 1)
    #expect(FuzzHarness.wrongness(of: .failure(wait), status: 429) == "retry-after 86400001 ms out of range")
    let flood = CallFailure(kind: .permanent, status: 400, message: String(repeating: "x", count: 601))
    #expect(FuzzHarness.wrongness(of: .failure(flood), status: 400) == "a 601-character failure message")
    let problem = LineProblem(lineNumber: 1, customID: nil, message: String(repeating: "x", count: 2_001))
    #expect(FuzzHarness.wrongness(of: .failure(problem), lineBytes: 10)?.hasSuffix("-character error message") == true)

    // And the sound answers to such inputs pass them: a usage count over a billion is a malformed answer, and a
    // provider's 20,000-character error message is cut.
    var harness = try FuzzHarness(pricingDirectory: Fixtures.pricingDirectory)
    let huge = #"{"choices": [], "usage": {"prompt_tokens": 1000000001, "completion_tokens": 1}}"#
    guard case .failure(let malformed) = HTTPProviderClient.outcome(status: 200, header: { _ in nil }, body: Data(huge.utf8), dialect: .openai, now: Date())
    else {
        Issue.record("a usage count over a billion must not be accepted")
        return
    }
    #expect(malformed.message.contains("malformed"))
    let message = String(repeating: "x", count: 20_000)
    #expect(harness.run(.openAIResponse, Array(("500\n\n" + #"{"error": {"message": ""# + message + #""}}"#).utf8)) == nil)
}

@Test func batchLinesWithHugeErrorCodesAndMessagesAreCut() throws {
    // Found by fuzzing: an error line's code was kept whole in the failure's message.
    let code = String(repeating: "c", count: 1_000), message = String(repeating: "m", count: 2_000)
    let openai = #"{"custom_id":"r1","response":null,"error":{"code":"\#(code)","message":"\#(message)"}}"#
    guard case .failed(let failure)? = BatchResultFile.line(Array(openai.utf8), dialect: .openai)?.outcome else {
        Issue.record("an error line is a failure")
        return
    }
    #expect(failure.message.count <= 600, "\(failure.message.count) characters")
    #expect(failure.message.hasPrefix(String(repeating: "c", count: 64) + ": mmm"))
    let anthropic = #"{"custom_id":"r1","result":{"type":"errored","error":{"type":"error","error":{"type":"api_error","message":"\#(message)"}}}}"#
    guard case .failed(let refused)? = BatchResultFile.line(Array(anthropic.utf8), dialect: .anthropic)?.outcome else {
        Issue.record("an errored line is a failure")
        return
    }
    #expect(refused.message.count <= 600)
}
