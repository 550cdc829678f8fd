import Testing
@testable import PurserCore

@Test func decimalTextBecomesExactIntegers() throws {
    #expect(try DecimalText.scaled("1.5e-07", decimals: 12) == 150_000)
    #expect(try DecimalText.scaled("0.15", decimals: 6) == 150_000)
    #expect(try DecimalText.scaled("2.5E-6", decimals: 12) == 2_500_000)
    #expect(try DecimalText.scaled("-3", decimals: 2) == -300)
    #expect(try DecimalText.scaled("0.0000", decimals: 2) == 0)
    #expect(throws: DecimalText.Failure.tooPrecise("0.0000001", decimals: 6)) { try DecimalText.scaled("0.0000001", decimals: 6) }
    #expect(throws: DecimalText.Failure.notANumber("1.2.3")) { try DecimalText.scaled("1.2.3", decimals: 6) }
    #expect(throws: DecimalText.Failure.tooLarge("99999999999")) { try DecimalText.scaled("99999999999", decimals: 12) }
}

@Test func perTokenAndPerMillionPricesAgree() throws {
    #expect(try TokenPrice(usdPerToken: "1.5e-07") == TokenPrice(usdPerMillion: "0.15"))
    let price = try TokenPrice(usdPerMillion: "2.50")
    #expect(price.cost(tokens: 1_000).exactUSD == "0.0025")
    #expect(price.usdPerMillionText == "2.5")
}

@Test func moneyDisplayRoundsOnlyAtTheEnd() throws {
    #expect(try Money(usd: "1234.565").formatted == "$1,234.57")
    #expect(try Money(usd: "0.0123449").formatted == "$0.0123")
    #expect(try Money(usd: "0.00000049").formatted == "$0.000000")
    #expect(try Money(usd: "0.0000005").formatted == "$0.000001")
    #expect(try Money(usd: "-2").formatted == "-$2.00")
    #expect(try Money(usd: "-0.003925").formatted == "-$0.003925", "the sign goes before the dollar sign")
    #expect(try Money(usd: "-0.0000000001").formatted == "$0.000000", "no sign on what rounds to zero")
}
