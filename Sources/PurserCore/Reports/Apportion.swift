/// Rounds parts of a whole so that the rounded parts still add up to the rounded whole.
enum Apportion {
    /// Each `value / unit` as a whole number, such that they add up to `sum(values) / unit` rounded half up:
    /// every value is rounded down, then those with the largest remainders get one more until the sum is
    /// reached (ties go to the earlier value). No part moves by a whole unit or more.
    static func largestRemainder(_ values: [Int128], unit: Int128) -> [Int128] {
        precondition(unit > 0)
        func floorDivide(_ value: Int128) -> Int128 { value >= 0 ? value / unit : -((-value + unit - 1) / unit) }
        var parts = values.map(floorDivide)
        let remainders = values.indices.map { values[$0] - parts[$0] * unit }
        let target = floorDivide(values.reduce(0, +) + unit / 2)
        let extra = Int(target - parts.reduce(0, +))
        let order = values.indices.sorted { (remainders[$1], $0) < (remainders[$0], $1) }
        for index in order.prefix(extra) { parts[index] += 1 }
        return parts
    }
}
