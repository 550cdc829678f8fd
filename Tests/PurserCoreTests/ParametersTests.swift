import Foundation
import Testing
@testable import PurserCore

/// Issue 16, item 4: what a model refuses it is not planned on; reasoning models get room for their reasoning; each model
/// gets its output limit under the name it takes; JSON schemas cross dialects.

private func body(_ text: String) throws -> JSONObject { try #require(try JSONParser.parse(text).objectValue) }

private func needs(_ capabilities: Capabilities, maxOutput: Int = 1_024) -> RequestNeeds {
    RequestNeeds(qualityFloor: 0, qualityTier: "basic", inputTokens: 50, maxOutputTokens: maxOutput, capabilities: capabilities, pinnedModel: nil)
}

@Test func aBodySettingSamplingAwayFromItsDefaultsNeedsAModelThatTakesIt() throws {
    #expect(ChatBody.parametersSet(try body(#"{"temperature": 1, "top_p": 1.0, "presence_penalty": 0, "logprobs": false}"#)) == [])
    #expect(ChatBody.parametersSet(try body(#"{"temperature": 0.2, "top_p": 0.9, "frequency_penalty": 0.5, "logit_bias": {"50256": -100}}"#))
        == [.temperature, .topP, .frequencyPenalty, .logitBias])
    #expect(ChatBody.parametersSet(try body(#"{"temperature": "hot", "top_logprobs": 3}"#)) == [.temperature, .logprobs])

    let catalog = try Fixtures.bundledCatalog()
    let nano = try #require(catalog.model(id: "openai/gpt-5-nano"))
    let mini4o = try #require(catalog.model(id: "openai/gpt-4o-mini"))
    #expect(Eligibility.staticExclusion(of: nano, for: needs([.temperature])) == .parameters(refused: .temperature))
    #expect(Eligibility.staticExclusion(of: nano, for: needs([.temperature]))?.description.contains("does not accept temperature") == true)
    #expect(Eligibility.staticExclusion(of: mini4o, for: needs([.temperature, .topP])) == nil)
    // A feature it lacks is said before a parameter it refuses.
    #expect(Eligibility.staticExclusion(of: try #require(catalog.model(id: "anthropic/claude-haiku-4-5")), for: needs([.jsonMode]))
        == .capabilities(missing: .jsonMode))
}

@Test func aReasoningModelIsSentItsRoomAndPricedOnIt() throws {
    let catalog = try Fixtures.bundledCatalog()
    let nano = try #require(catalog.model(id: "openai/gpt-5-nano"))
    let room = nano.parameters.reasoningRoomTokens
    #expect(room > 0 && nano.outputAllowance(2) == 2 + room)
    let openai = try #require(catalog.providers["openai"])
    let sent = try DialectTranslation.requestBody(
        stored: #"{"model": "gpt-4o-mini", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}"#, storedDialect: .openai,
        model: nano, provider: openai, mode: .sync)
    #expect(sent["max_tokens"] == nil && sent["max_completion_tokens"]?.intValue == 2 + room)
    // A line with no limit still goes out with the one it was planned and reserved with.
    let mini4o = try #require(catalog.model(id: "openai/gpt-4o-mini"))
    let unlimited = try DialectTranslation.requestBody(
        stored: #"{"messages": [{"role": "user", "content": "Hi"}]}"#, storedDialect: .openai, model: mini4o, provider: openai, mode: .sync)
    #expect(unlimited["max_completion_tokens"]?.intValue == TokenEstimator.defaultMaxOutputTokens)
    // Groq's gpt-oss takes max_completion_tokens by its tables; Mistral takes max_tokens.
    let oss = try #require(catalog.model(id: "groq/openai/gpt-oss-20b"))
    let fromAnthropic = try DialectTranslation.requestBody(
        stored: #"{"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}"#, storedDialect: .anthropic,
        model: oss, provider: try #require(catalog.providers["groq"]), mode: .sync)
    #expect(fromAnthropic["max_completion_tokens"]?.intValue == 100 + oss.parameters.reasoningRoomTokens && fromAnthropic["max_tokens"] == nil)
    let mistral = try #require(catalog.model(id: "mistral/mistral-small-latest"))
    let toMistral = try DialectTranslation.requestBody(
        stored: #"{"max_completion_tokens": 70, "messages": [{"role": "user", "content": "Hi"}]}"#, storedDialect: .openai, model: mistral,
        provider: try #require(catalog.providers["mistral"]), mode: .sync)
    #expect(toMistral["max_tokens"]?.intValue == 70 && toMistral["max_completion_tokens"] == nil)

    // The room is reserved (a charge never passes its reservation) and a limit that leaves none is not planned there.
    let withRoom = Charges.worstCase(model: nano, mode: .sync, inputTokens: 10, maxOutputTokens: 2)
    var roomless = nano
    roomless.parameters.reasoningRoomTokens = 0
    #expect(withRoom - Charges.worstCase(model: roomless, mode: .sync, inputTokens: 10, maxOutputTokens: 2) == nano.prices.output.cost(tokens: room))
    let huge = nano.maxOutputTokens - room + 1
    #expect(Eligibility.staticExclusion(of: nano, for: needs([], maxOutput: huge))
        == .reasoningRoom(requested: huge, room: room, limit: nano.maxOutputTokens))
}

@Test func theSimulatorSpendsReasoningInsideTheLimitAndATooSmallLimitGetsNoAnswer() throws {
    let catalog = try Fixtures.bundledCatalog()
    let nano = try #require(catalog.model(id: "openai/gpt-5-nano"))
    let openai = try #require(catalog.providers["openai"])
    func answer(limit: Int) throws -> JSONObject {
        let call = ProviderCall(
            requestID: 7, customID: "r", model: nano, provider: openai, mode: .sync,
            body: try body(#"{"max_completion_tokens": \#(limit), "messages": [{"role": "user", "content": "Hi"}]}"#), timeoutSeconds: 10)
        return try #require(try JSONParser.parse(Simulator.answer(call).body).objectValue)
    }
    func reasoning(_ answer: JSONObject) -> Int? {
        answer["usage"]?.objectValue?["completion_tokens_details"]?.objectValue?["reasoning_tokens"]?.intValue
    }
    let roomy = try answer(limit: nano.outputAllowance(100))
    let choice = roomy["choices"]?.arrayValue?.first?.objectValue
    #expect(choice?["finish_reason"]?.stringValue == "stop")
    #expect(choice?["message"]?.objectValue?["content"]?.stringValue?.isEmpty == false)
    let spent = try #require(reasoning(roomy))
    #expect(spent > 0 && spent <= nano.parameters.reasoningRoomTokens)
    #expect(try #require(roomy["usage"]?.objectValue?["completion_tokens"]?.intValue) <= nano.outputAllowance(100))
    // What gpt-5-nano does with max_tokens 2 passed through: all of it spent reasoning, an empty answer cut at the limit.
    let starved = try answer(limit: 2)
    let cut = starved["choices"]?.arrayValue?.first?.objectValue
    #expect(cut?["finish_reason"]?.stringValue == "length" && cut?["message"]?.objectValue?["content"]?.stringValue == "")
    #expect(starved["usage"]?.objectValue?["completion_tokens"]?.intValue == 2)
}

@Test func jsonSchemasAndParallelToolCallsCrossBothWays() throws {
    let schema = #"{"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"], "additionalProperties": false}"#
    let openai = try body(#"""
        {"messages": [{"role": "user", "content": "A colour"}], "max_tokens": 40, "parallel_tool_calls": false,
         "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
         "response_format": {"type": "json_schema", "json_schema": {"name": "colour", "strict": true, "schema": \#(schema)}}}
        """#)
    let schemaValue = try JSONParser.parse(schema)
    let anthropic = DialectTranslation.anthropicBody(fromOpenAI: openai)
    let format = anthropic["output_config"]?.objectValue?["format"]?.objectValue
    #expect(format?["type"]?.stringValue == "json_schema" && format?["schema"] == schemaValue)
    #expect(anthropic["tool_choice"]?.objectValue?["disable_parallel_tool_use"]?.boolValue == true)
    if case .success(let summary) = ChatBody.summarize(anthropic, dialect: .anthropic, fieldPrefix: "") {
        #expect(summary.capabilities.contains(.jsonSchema))
    } else {
        Issue.record("the translated body does not read")
    }

    let back = DialectTranslation.openAIBody(fromAnthropic: anthropic)
    let returned = back["response_format"]?.objectValue
    #expect(returned?["type"]?.stringValue == "json_schema")
    #expect(returned?["json_schema"]?.objectValue?["schema"] == schemaValue)
    #expect(back["parallel_tool_calls"]?.boolValue == false)
    // The beta's output_format is read as well.
    let beta = try body(#"{"messages": [], "output_format": {"type": "json_schema", "schema": \#(schema)}}"#)
    #expect(DialectTranslation.openAIBody(fromAnthropic: beta)["response_format"]?.objectValue?["type"]?.stringValue == "json_schema")

    // JSON mode without a schema has no Anthropic form: Claude's rows do not list it, so such a line is not planned there.
    let catalog = try Fixtures.bundledCatalog()
    let sonnet = try #require(catalog.model(id: "anthropic/claude-sonnet-4-5"))
    #expect(Eligibility.staticExclusion(of: sonnet, for: needs([.jsonMode])) == .capabilities(missing: .jsonMode))
    #expect(Eligibility.staticExclusion(of: sonnet, for: needs([.jsonSchema])) == nil)
}

@Test func theTablesSayWhatIsWrongWithParametersAndTheImportKeepsThem() throws {
    let directory = try Fixtures.openAITables { text in
        text.replacingOccurrences(of: #""output_limit": "max_completion_tokens""#, with: #""output_limit": "max_output""#)
            .replacingOccurrences(of: #""logit_bias""#, with: #""logit_biases""#)
            .replacingOccurrences(of: #""reasoning_room_tokens": 4096"#, with: #""reasoning_room_tokens": 999999"#)
    }
    do {
        _ = try PricingCatalog.load(directory: directory.path)
        Issue.record("expected the tables to be refused")
    } catch let error as PricingTablesInvalid {
        let said = "\(error)"
        #expect(said.contains("openai.json") && said.contains("parameters.output_limit") && said.contains("use max_tokens or max_completion_tokens"), "\(said)")
        #expect(said.contains("parameters.unsupported") && said.contains("unknown parameter \"logit_biases\""), "\(said)")
        #expect(said.contains("parameters.reasoning_room_tokens") && said.contains("leaves no room for an answer"), "\(said)")
    }
    // What the tables say of parameters survives being written back (as import-litellm writes its result).
    let catalog = try Fixtures.bundledCatalog()
    let models = catalog.models.filter { $0.provider == "openai" }
    let written = JSONWriter.string(PricingFileWriter.modelsDocument(models))
    let reread = try Fixtures.openAITables { _ in written }
    let again = try PricingCatalog.load(directory: reread.path)
    for model in models {
        #expect(again.model(id: model.id)?.parameters == model.parameters, "\(model.id)")
        #expect(again.model(id: model.id)?.capabilities == model.capabilities, "\(model.id)")
    }
}

@Test func anAnthropicTopKIsNotPlannedOnAModelSpokenToInTheOpenAIDialect() throws {
    #expect(ChatBody.parametersSet(try body(#"{"top_k": 5}"#)) == [.topK])
    #expect(ChatBody.parametersSet(try body(#"{"top_k": null}"#)) == [])
    let catalog = try Fixtures.bundledCatalog()
    let mini4o = try #require(catalog.model(id: "openai/gpt-4o-mini"))
    let haiku = try #require(catalog.model(id: "anthropic/claude-haiku-4-5"))
    let exclusion = Eligibility.staticExclusion(of: mini4o, for: needs([.topK]))
    #expect(exclusion == .parameters(refused: .topK))
    #expect(exclusion?.description.contains("OpenAI dialect, which has no top_k") == true)
    #expect(Eligibility.staticExclusion(of: haiku, for: needs([.topK])) == nil)
    // A line that keeps top_k is served by a Claude model, never silently without it.
    var parser = RequestLineParser(catalog: catalog, defaults: .init(), submittedAt: 0, history: OutputHistory())
    var line = #"{"custom_id": "k", "params": {"model": "claude-haiku-4-5", "max_tokens": 50, "top_k": 5, "messages": [{"role": "user", "content": "Hi"}]}}"#
    let draft = try line.withUTF8 { parser.parse($0, lineNumber: 1) }.get()
    let plan = Planner(context: PlanningContext(catalog: catalog, now: 0, usableProviders: Set(catalog.providers.keys))).plan([
        PlannableRequest(id: 1, needs: draft.needs, referenceModel: draft.referenceModel, deadlineAt: 86_400_000, maxCost: nil),
    ])
    let chosen = try #require(plan.entries[0].model)
    #expect(catalog.providers[try #require(catalog.model(id: chosen)).provider]?.dialect == .anthropic, "\(chosen)")
}
