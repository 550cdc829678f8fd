import Foundation
import Testing
@testable import PurserCore
@testable import PurserSQLite

@Test func monthsAreCalendarMonthsInUTC() throws {
    let formatter = ISO8601DateFormatter()
    func milliseconds(_ text: String) -> Int64 { Int64(formatter.date(from: text)!.timeIntervalSince1970 * 1000) }
    #expect(BudgetMonth(containing: milliseconds("2026-11-30T23:59:59Z") + 999).description == "2026-11")
    #expect(BudgetMonth(containing: milliseconds("2026-12-01T00:00:00Z")).description == "2026-12")
    #expect(BudgetMonth(containing: milliseconds("2028-02-29T12:00:00Z")).description == "2028-02")
    #expect(BudgetMonth(containing: milliseconds("1969-12-31T23:59:59Z")).description == "1969-12")
    #expect(BudgetMonth("2026-12")!.start == milliseconds("2026-12-01T00:00:00Z"))
    #expect(BudgetMonth("2026-12")!.end == milliseconds("2027-01-01T00:00:00Z"))
    #expect(BudgetMonth("2028-02")!.days == 29)
    #expect(BudgetMonth("2100-02")!.days == 28)
    #expect(BudgetMonth.dayText(milliseconds("2027-03-09T23:00:00Z")) == "2027-03-09")
    for text in ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "2026-11-01", ""] { #expect(BudgetMonth(text) == nil, "\(text)") }
    // Every day of four years, against Foundation's Gregorian calendar.
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    for day in 0..<1461 {
        let moment = milliseconds("2026-01-01T12:00:00Z") + Int64(day) * 86_400_000
        let parts = calendar.dateComponents([.year, .month], from: Date(timeIntervalSince1970: Double(moment) / 1000))
        #expect(BudgetMonth(containing: moment) == BudgetMonth(year: parts.year!, month: parts.month!))
    }
}

@Test func theWorstCaseBoundsWhatAnyReportedUsageCanCost() {
    let model = Fixtures.model("m", input: 3_000_000, output: 15_000_000, quality: 80)
    let worst = Charges.worstCase(model: model, mode: .sync, inputTokens: 100, maxOutputTokens: 50)
    // 400 input tokens at the cache-write rate (3.75 $/M) and 50 output tokens at 15 $/M.
    #expect(worst == Money(picoUSD: 400 * 3_750_000 + 50 * 15_000_000))
    let heaviest = Usage(inputTokens: 0, cachedInputTokens: 0, cacheWriteTokens: 400, outputTokens: 50)
    #expect(Charges.cost(of: heaviest, prices: model.prices) <= worst)
}

@Test func theForecastCarriesTheMonthsPaceToItsEnd() throws {
    let november = try #require(BudgetMonth("2026-11"))
    let tenDaysIn = november.start + 10 * 86_400_000
    let forecast = try #require(ReportStore.forecast(spent: Money(picoUSD: 1_000_000_000_000), month: november, now: tenDaysIn))
    #expect(forecast.atMonthEnd == Money(picoUSD: 3_000_000_000_000))
    #expect(forecast.elapsedBasisPoints == 3_333)
    // A month that is over forecasts what it spent; one not begun has no forecast.
    #expect(ReportStore.forecast(spent: Money(picoUSD: 5), month: november, now: november.end + 1)?.atMonthEnd == Money(picoUSD: 5))
    #expect(ReportStore.forecast(spent: .zero, month: november.next, now: tenDaysIn) == nil)
    // Millions of dollars times a month of milliseconds does not overflow.
    let large = ReportStore.forecast(spent: Money(picoUSD: 2_000_000 * Money.picoPerUSD), month: november, now: november.start + (november.end - november.start) / 2)
    #expect(large?.atMonthEnd == Money(picoUSD: 4_000_000 * Money.picoPerUSD))
}

@Test func roundedPartsStillAddUpToTheRoundedWhole() {
    // Three equal thirds of 100% round to 33.3% each; one of them takes the missing tenth.
    #expect(Apportion.largestRemainder([1, 1, 1].map { Int128($0) * 1000 }, unit: 3) == [334, 333, 333])
    #expect(Apportion.largestRemainder([149, 149, 2], unit: 100) == [2, 1, 0])
    #expect(Apportion.largestRemainder([-150, 250, 49], unit: 100) == [-1, 2, 0].map { Int128($0) })
    var random = SplitMix64(seed: 7)
    for _ in 0..<200 {
        let values = (0..<Int(random.below(8) + 1)).map { _ in Int128(random.below(2_000_000)) - 500_000 }
        let parts = Apportion.largestRemainder(values, unit: 1_000)
        let whole = values.reduce(0, +)
        #expect(parts.reduce(0, +) == (whole >= -500 ? (whole + 500) / 1_000 : -((-whole - 500 + 999) / 1_000)))
        for (part, value) in zip(parts, values) { #expect(abs(part * 1_000 - value) < 1_000) }
    }
}
