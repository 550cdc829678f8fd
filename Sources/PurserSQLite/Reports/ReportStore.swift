import Foundation
import PurserCore
import SQLiteStore

/// Builds reports from the results table and the ledger.
public struct ReportStore {
    let database: Database

    public init(database: Database) { self.database = database }

    public func report(_ query: ReportQuery, now: Int64) throws -> SpendReport {
        try database.readTransaction {
            let lines = try groupedLines(query, grouping: query.grouping)
            let total = lines.reduce(SpendReport.Line(key: "total", requests: 0, inputTokens: 0, cachedTokens: 0, outputTokens: 0, cost: .zero, baseline: .zero), +)
            let daily = dailySpend(query, byDay: query.grouping == .day ? lines : try groupedLines(query, grouping: .day))
            let byModel = query.grouping == .model ? lines : try groupedLines(query, grouping: .model)
            var caps: [CapUse] = []
            var forecast: SpendReport.Forecast?
            if let month = query.month {
                let ledger = Ledger(database: database)
                let jobProject = try query.job.flatMap { try database.scalarText("SELECT project FROM jobs WHERE id = ?", [.integer($0)]) }
                caps = try ledger.capsInForce(month: month, simulated: query.simulated).filter { use in
                    switch use.scope {
                    case .project(let project, _): (query.project ?? jobProject).map { $0 == project } ?? true
                    case .job(let id, _): query.job.map { $0 == id } ?? (query.project == nil)
                    }
                }
                forecast = Self.forecast(spent: total.cost, month: month, now: now)
                forecast?.daysWithSpending = daily.filter { $0.cost.picoUSD > 0 }.count
            }
            var otherQuery = query
            otherQuery.simulated.toggle()
            let other = try groupedLines(otherQuery, grouping: .project).reduce(0) { $0 + $1.requests }
            var report = SpendReport(
                query: query, generatedAt: now, lines: lines, total: total, byModel: byModel, daily: daily, caps: caps, forecast: forecast, otherLedgerResults: other)
            report.unsettled = try database.statement("""
                SELECT count(*), coalesce(sum(amount_pico), 0) FROM unsettled_charges
                WHERE simulated = ?1 AND (?2 IS NULL OR month = ?2) AND (?3 IS NULL OR project = ?3) AND (?4 IS NULL OR job_id = ?4)
                """).firstRow([.int(query.simulated ? 1 : 0), .optionalText(query.month?.description), .optionalText(query.project), .optionalInt64(query.job)]) {
                ($0.int(0), Money(picoUSD: $0.int64(1)))
            } ?? (0, .zero)
            report.inputCalibration = try JobStore(database: database).inputCalibration(simulated: query.simulated)
            return report
        }
    }

    /// The month's spending so far carried on at the same pace to its end. Nil for a month that has not begun.
    static func forecast(spent: Money, month: BudgetMonth, now: Int64) -> SpendReport.Forecast? {
        guard now >= month.start else { return nil }
        let length = month.end - month.start
        let elapsed = min(now - month.start, length)
        guard elapsed > 0 else { return SpendReport.Forecast(spentSoFar: spent, atMonthEnd: spent, elapsedBasisPoints: 0) }
        // 128-bit: pico-USD times milliseconds overflows 64 bits from a few thousandths of a dollar.
        let projected = Int128(spent.picoUSD) * Int128(length) / Int128(elapsed)
        return SpendReport.Forecast(
            spentSoFar: spent, atMonthEnd: Money(picoUSD: Int64(clamping: projected)), elapsedBasisPoints: elapsed * 10_000 / length)
    }

    private func groupedLines(_ query: ReportQuery, grouping: ReportQuery.Grouping) throws -> [SpendReport.Line] {
        // The grouping picks one of these fixed expressions; nothing from the user is spliced into SQL.
        let key = switch grouping {
        case .model: "s.model"
        case .provider: "s.provider"
        case .project: "j.project"
        case .job: "j.id || ' ' || j.name"
        case .day: "strftime('%Y-%m-%d', s.billed_at / 1000, 'unixepoch')"
        case .month: "strftime('%Y-%m', s.billed_at / 1000, 'unixepoch')"
        case .tier: "r.quality_tier"
        case .mode: "s.mode"
        }
        return try database.statement("""
            SELECT \(key), count(*), sum(s.input_tokens + s.cache_write_tokens), sum(s.cached_input_tokens), sum(s.output_tokens),
                sum(s.cost_pico), sum(s.baseline_pico), sum(s.cache_write_tokens), sum(s.cache_saving_pico)
            FROM results s JOIN requests r ON r.id = s.request_id JOIN jobs j ON j.id = r.job_id
            WHERE s.simulated = ?1 AND s.billed_at >= ?2 AND s.billed_at < ?3 AND (?4 IS NULL OR j.project = ?4) AND (?5 IS NULL OR j.id = ?5)
            GROUP BY 1 ORDER BY \(grouping == .day || grouping == .month ? "1" : "6 DESC, 1")
            """).rows(bindings(query)) { row in
            var line = SpendReport.Line(
                key: row.text(0), requests: row.int64(1), inputTokens: row.int64(2), cachedTokens: row.int64(3), outputTokens: row.int64(4),
                cost: Money(picoUSD: row.int64(5)), baseline: Money(picoUSD: row.int64(6)))
            line.cacheWriteTokens = row.int64(7)
            line.cacheSaving = Money(picoUSD: row.int64(8))
            return line
        }
    }

    /// Every day of the month with what it spent (zero where nothing was), or for all time the days that spent.
    private func dailySpend(_ query: ReportQuery, byDay: [SpendReport.Line]) -> [(day: String, cost: Money)] {
        guard let month = query.month else { return byDay.map { ($0.key, $0.cost) } }
        let spent = Dictionary(uniqueKeysWithValues: byDay.map { ($0.key, $0.cost) })
        return (0..<month.days).map { day in
            let text = BudgetMonth.dayText(month.start + Int64(day) * BudgetMonth.millisecondsPerDay)
            return (text, spent[text] ?? .zero)
        }
    }

    private func bindings(_ query: ReportQuery) -> [SQLiteValue] {
        [
            .int(query.simulated ? 1 : 0), .integer(query.month?.start ?? Int64.min), .integer(query.month?.end ?? Int64.max),
            .optionalText(query.project), .optionalInt64(query.job),
        ]
    }
}
