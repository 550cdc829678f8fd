import Foundation
import Testing
@testable import PurserCore

/// Issue 16, item 7: input estimates from the message text (not the serialized body), calibrated per provider from the
/// counts providers report, for expected costs only.

private func parse(_ line: String, catalog: PricingCatalog) throws -> RequestDraft {
    var parser = RequestLineParser(catalog: catalog, defaults: .init(), submittedAt: 0, history: OutputHistory())
    var text = line
    let parsed = text.withUTF8 { parser.parse($0, lineNumber: 1) }
    return try parsed.get()
}

@Test func theProvidersDocumentedExamplesAreEstimatedNearWhatTheyReported() throws {
    let catalog = try Fixtures.bundledCatalog()
    // OpenAI's batch guide (https://platform.openai.com/docs/guides/batch) shows this request answered with
    // "prompt_tokens": 22. The estimate from the whole serialized body was 54.
    let openai = try parse(
        #"{"custom_id": "request-2", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-3.5-turbo-0125", "messages": [{"role": "system", "content": "You are an unhelpful assistant."},{"role": "user", "content": "Hello world!"}],"max_tokens": 1000}}"#,
        catalog: catalog)
    #expect(abs(openai.needs.inputTokens - 22) <= 2, "\(openai.needs.inputTokens)")
    // Anthropic's Message Batches example ("Hello, world"), answered with input_tokens 10.
    let anthropic = try parse(
        #"{"custom_id": "my-first-request", "params": {"model": "claude-haiku-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello, world"}]}}"#,
        catalog: catalog)
    #expect(abs(anthropic.needs.inputTokens - 10) <= 2, "\(anthropic.needs.inputTokens)")
}

@Test func aProviderWhoseCountsRunHighCostsMoreInPlansOnceItHasEnoughResults() throws {
    let a = Fixtures.model("a", provider: "a", input: 1_000_000, output: 0, quality: 50)
    let b = Fixtures.model("b", provider: "b", input: 1_100_000, output: 0, quality: 50)
    let catalog = Fixtures.catalog([a, b])
    let request = Fixtures.request(1, input: 1_000, output: 1, reference: "a/a")
    func plan(_ calibration: InputCalibration) -> Plan {
        Planner(context: PlanningContext(catalog: catalog, now: 0, usableProviders: ["a", "b"], inputCalibration: calibration)).plan([request])
    }
    let uncalibrated = plan(InputCalibration())
    #expect(uncalibrated.entries[0].model == "a/a" && uncalibrated.estimatedCost.picoUSD == 1_000 * 1_000_000)

    // a's provider counted 1.2 times the estimate over 30 results: a now costs 1.2 × 10⁹ against b's 1.1 × 10⁹.
    let high = InputCalibration(byProvider: ["a": .init(results: 30, estimatedTokens: 10_000, reportedTokens: 12_000)])
    let calibrated = plan(high)
    #expect(calibrated.entries[0].model == "b/b" && calibrated.estimatedCost.picoUSD == 1_000 * 1_100_000)
    // The baseline (its reference model, a) is priced on the same calibrated input.
    #expect(calibrated.baselineCost.picoUSD == 1_000 * 1_200_000)

    // Nineteen results are not enough to move a plan.
    let few = InputCalibration(byProvider: ["a": .init(results: 19, estimatedTokens: 10_000, reportedTokens: 12_000)])
    #expect(plan(few).entries[0].model == "a/a")

}

@Test func aScaleIsHeldBetweenAQuarterAndFourTimes() {
    #expect(InputCalibration.Family(results: 50, estimatedTokens: 100, reportedTokens: 1_000).scaleBasisPoints == 40_000)
    #expect(InputCalibration.Family(results: 50, estimatedTokens: 100, reportedTokens: 0).scaleBasisPoints == 2_500)
    #expect(InputCalibration.Family(results: 50, estimatedTokens: 0, reportedTokens: 10).scaleBasisPoints == 10_000)
    #expect(InputCalibration.Family(results: 50, estimatedTokens: Int64.max, reportedTokens: Int64.max).scaleBasisPoints == 10_000)
}
