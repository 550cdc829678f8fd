import Testing
@testable import PurserCore

@Test func parsesNestedValuesAndKeepsNumberText() throws {
    let value = try JSONParser.parse(#"{"a": [1.50, -2e-7, true, null], "b": "x\u00e9\n", "c": {}}"#)
    let object = try #require(value.objectValue)
    #expect(object.keys == ["a", "b", "c"])
    #expect(object["a"] == .array([.number("1.50"), .number("-2e-7"), .bool(true), .null]))
    #expect(object["b"] == .string("xé\n"))
}

@Test func reportsTheColumnOfASyntaxError() {
    #expect(throws: JSONParser.Failure(column: 9, reason: "expected a quoted member name", isInvalidUTF8: false)) {
        try JSONParser.parse(#"{"a": 1,}"#)
    }
    #expect(throws: JSONParser.Failure(column: 10, reason: "unexpected 'x' after the end of the JSON value", isInvalidUTF8: false)) {
        try JSONParser.parse(#"{"a": 1} x"#)
    }
}

@Test func rejectsInvalidUTF8InsideStrings() {
    let bytes: [UInt8] = Array(#"{"a": ""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
    #expect(throws: JSONParser.Failure(column: 8, reason: "invalid UTF-8 (byte 0xC3 not followed by a continuation byte)", isInvalidUTF8: true)) {
        try JSONParser.parse(bytes)
    }
}

@Test func decodesSurrogatePairsAndRejectsLoneSurrogates() throws {
    #expect(try JSONParser.parse(#""\ud83d\ude00""#) == .string("😀"))
    #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(#""\ude00""#) }
}

@Test func writerRoundTripsEscapes() throws {
    let value = JSONValue.object(JSONObject(["k": .string("quote \" backslash \\ tab \t bell \u{07}")]))
    #expect(try JSONParser.parse(JSONWriter.string(value)) == value)
    #expect(JSONWriter.string(value) == #"{"k":"quote \" backslash \\ tab \t bell \u0007"}"#)
}

@Test func writerKeepsCombiningMarksAndEmojiBesideEscapes() throws {
    // A combining accent right after an escaped quote or newline starts a run in the middle of a character.
    let text = "\"\u{301}é\n\u{301}😀\\\u{1F3FD}end"
    let value = JSONValue.string(text)
    // Bytes, not String ==, which would forgive a lost scalar that changes nothing canonically.
    #expect(Array(JSONWriter.string(value).utf8) == Array("\"\\\"\u{301}é\\n\u{301}😀\\\\\u{1F3FD}end\"".utf8))
    #expect(try Array(JSONParser.parse(JSONWriter.string(value)).stringValue?.utf8 ?? "".utf8) == Array(text.utf8))
}
