import Foundation

/// What a report covers and how it groups its lines.
public struct ReportQuery: Sendable {
    public enum Grouping: String, Sendable, CaseIterable {
        case model, provider, project, job, day, month, tier, mode
    }

    /// The month whose charges it counts; nil for all time (a job's whole life).
    public var month: BudgetMonth?
    public var project: String?
    public var job: Int64?
    public var grouping: Grouping = .model
    /// Rehearsals on the simulator instead of real spending; the two ledgers never mix.
    public var simulated = false

    public init(
        month: BudgetMonth?, project: String? = nil, job: Int64? = nil, grouping: Grouping = .model,
        simulated: Bool = false
    ) {
        self.month = month
        self.project = project
        self.job = job
        self.grouping = grouping
        self.simulated = simulated
    }
}

/// Where the money went: one line per group, their exact total, the budgets in force and a forecast.
/// Every amount is exact (pico-USD); the total is the sum of the lines, computed here rather than in SQL.
public struct SpendReport: Sendable {
    public struct Line: Sendable, Hashable {
        public var key: String
        public var requests: Int64
        /// Input tokens billed at the input rate (cache writes included).
        public var inputTokens: Int64
        public var cachedTokens: Int64
        /// Of `inputTokens`, those written to a provider's prompt cache (billed at its write rate).
        public var cacheWriteTokens: Int64 = 0
        /// What caching saved (`PaidAnswer.cacheSaving`, summed).
        public var cacheSaving = Money.zero
        public var outputTokens: Int64
        public var cost: Money
        /// What the same usage would have cost on each request's reference model, sync, at list price.
        public var baseline: Money

        public var savings: Money { baseline - cost }

        package static func + (lhs: Line, rhs: Line) -> Line {
            var sum = Line(
                key: lhs.key, requests: lhs.requests + rhs.requests, inputTokens: lhs.inputTokens + rhs.inputTokens,
                cachedTokens: lhs.cachedTokens + rhs.cachedTokens, outputTokens: lhs.outputTokens + rhs.outputTokens, cost: lhs.cost + rhs.cost,
                baseline: lhs.baseline + rhs.baseline)
            sum.cacheWriteTokens = lhs.cacheWriteTokens + rhs.cacheWriteTokens
            sum.cacheSaving = lhs.cacheSaving + rhs.cacheSaving
            return sum
        }

        package init(
            key: String, requests: Int64, inputTokens: Int64, cachedTokens: Int64, outputTokens: Int64, cost: Money,
            baseline: Money
        ) {
            self.key = key
            self.requests = requests
            self.inputTokens = inputTokens
            self.cachedTokens = cachedTokens
            self.outputTokens = outputTokens
            self.cost = cost
            self.baseline = baseline
        }
    }

    /// Where spending is heading by the end of the month, at the pace so far.
    public struct Forecast: Sendable, Hashable {
        public var spentSoFar: Money
        public var atMonthEnd: Money
        /// The fraction of the month gone, in basis points.
        public var elapsedBasisPoints: Int64
        /// Days of the month so far with any spending: what the pace is drawn from.
        public var daysWithSpending = 0

        /// Fewer days of spending than this and the forecast says it has little to go on.
        public static let daysForASteadyPace = 7
        public var hasLittleToGoOn: Bool { daysWithSpending < Forecast.daysForASteadyPace }

        /// "5.3% of the month gone, spending on 1 day: little to go on".
        public var basisText: String {
            let days = daysWithSpending == 1 ? "1 day" : "\(daysWithSpending) days"
            return "\(percentText(elapsedBasisPoints)) of the month gone, spending on \(days)" + (hasLittleToGoOn ? ": little to go on" : "")
        }

        package init(spentSoFar: Money, atMonthEnd: Money, elapsedBasisPoints: Int64) {
            self.spentSoFar = spentSoFar
            self.atMonthEnd = atMonthEnd
            self.elapsedBasisPoints = elapsedBasisPoints
        }
    }

    public var query: ReportQuery
    public var generatedAt: Int64
    public var lines: [Line]
    public var total: Line
    /// The same spending by model, for the chart (the lines themselves when grouped by model).
    public var byModel: [Line]
    /// Spending per UTC day of the period, for the chart (every day of the month, zero where nothing was spent).
    public var daily: [(day: String, cost: Money)]
    /// Caps in force for the month in the report's scope, with what counts against them.
    public var caps: [CapUse]
    public var forecast: Forecast?
    /// Results of the other ledger in the same scope, so an empty report can say where the spending is.
    public var otherLedgerResults: Int64
    /// Calls in the report's scope that may have been billed with no answer stored (cut off by a crash, lines a
    /// batch did not give back), at their worst case: not in the lines, but counted against the caps.
    public var unsettled: (calls: Int, amount: Money) = (0, .zero)
    /// Input estimates against providers' counts over the ledger's whole history (not only this report's scope): what
    /// plans price input at (`InputCalibration`).
    public var inputCalibration = InputCalibration()

    /// Each line's share of the total cost, in basis points, apportioned so that they add up to exactly 100%.
    public var shares: [Int64] {
        guard total.cost.picoUSD > 0 else { return lines.map { _ in 0 } }
        return Apportion.largestRemainder(lines.map { Int128($0.cost.picoUSD) * 10_000 }, unit: Int128(total.cost.picoUSD)).map { Int64($0) }
    }

    package init(
        query: ReportQuery, generatedAt: Int64, lines: [Line], total: Line, byModel: [Line],
        daily: [(day: String, cost: Money)], caps: [CapUse], forecast: Forecast? = nil, otherLedgerResults: Int64,
        unsettled: (calls: Int, amount: Money) = (0, .zero)
    ) {
        self.query = query
        self.generatedAt = generatedAt
        self.lines = lines
        self.total = total
        self.byModel = byModel
        self.daily = daily
        self.caps = caps
        self.forecast = forecast
        self.otherLedgerResults = otherLedgerResults
        self.unsettled = unsettled
    }
}
