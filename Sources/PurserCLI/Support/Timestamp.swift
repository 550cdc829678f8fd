import PurserCore

/// A moment as the CLI writes it: `2026-11-24T10:00:00Z` (UTC, whole seconds).
func timestampText(_ milliseconds: Int64) -> String {
    let seconds = BudgetMonth.floorDivide(milliseconds, 1_000)
    let day = BudgetMonth.dayText(milliseconds)
    let second = seconds - BudgetMonth.floorDivide(milliseconds, BudgetMonth.millisecondsPerDay) * 86_400
    func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
    return "\(day)T\(two(second / 3600)):\(two(second / 60 % 60)):\(two(second % 60))Z"
}
