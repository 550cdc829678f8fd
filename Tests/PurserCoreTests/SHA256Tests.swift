import Testing
@testable import PurserCore

/// SHA-256 against FIPS 180-4's examples, fed whole and in uneven pieces.
@Test func sha256MatchesTheStandardsExamples() {
    #expect(SHA256.hex(of: Array("".utf8)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(SHA256.hex(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(SHA256.hex(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
        == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
    #expect(SHA256.hex(of: million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    var pieces = SHA256()
    var offset = 0
    for size in [1, 63, 64, 65, 127, 1000, 3] where offset < million.count {
        pieces.update(million[offset..<offset + size])
        offset += size
    }
    pieces.update(million[offset...])
    #expect(pieces.hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
}

@Test func projectTokensAreWellFormedAndComparedWhole() {
    let token = ProjectToken.make()
    #expect(token.isWellFormed && token.text.count == 51 && token.prefix.count == ProjectToken.prefixLength)
    #expect(ProjectToken.make().text != token.text)
    #expect(!ProjectToken(text: "pk_" + String(repeating: "g", count: 48)).isWellFormed)
    #expect(!ProjectToken(text: token.text + "0").isWellFormed)
    #expect(SHA256.constantTimeEqual(token.sha256, token.sha256))
    #expect(!SHA256.constantTimeEqual(token.sha256, String(token.sha256.dropLast()) + "x"))
    #expect(!SHA256.constantTimeEqual("abc", "abcd"))
}
