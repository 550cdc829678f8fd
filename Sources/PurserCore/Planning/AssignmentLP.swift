import Foundation

/// The linear program behind a plan, over classes of interchangeable requests.
///
/// A class holds `count` requests of about `tokens` tokens each. Each of its columns puts requests on one
/// *family* of capacity (a model's list-price time, its discount-window time, or its batch API) with a
/// latest start: the column counts against every prefix row of that family from its boundary on, where a
/// prefix row says how many requests, or how many tokens, may start by that boundary. That is exactly the
/// condition for the requests to be startable in deadline order under both rate limits. Every class also has
/// an unplaced column at a penalty, so the program is always feasible.
///
/// The class equations (the columns of a class sum to its count) are generalized upper bounds: each class
/// keeps one *key* column in the basis and the simplex only inverts the working basis over the capacity
/// rows (Dantzig and Van Slyke, 1967), whose size is the number of rows that can bind, not the number of
/// classes. The method is the bounded primal simplex with Dantzig pricing, a Harris ratio test and a
/// slightly perturbed right-hand side against cycling. It works in floating point: its answer guides the
/// plan and supplies prices, while the plan's feasibility and its lower bound are computed afterwards in
/// exact integers, so a rounding error here can cost optimality but never honesty.
struct AssignmentLP {
    struct Family {
        /// Per boundary, the global index of its request row and of its token row, or -1 when the row cannot bind.
        var countRows: [Int32]
        var tokenRows: [Int32]
    }

    struct Column {
        var lpClass: Int32
        var family: Int32
        /// The first boundary the column counts against (its latest start).
        var first: Int32
        /// Cost per request, scaled (the program's costs are around 1).
        var cost: Double
    }

    struct LPClass {
        var count: Double
        /// Tokens per request, in the token rows' units.
        var tokens: Double
        /// The cost per request of leaving it unplaced.
        var penalty: Double
        var columns: Range<Int>
    }

    var families: [Family] = []
    var classes: [LPClass] = []
    /// Option columns, each class's contiguous (see `LPClass.columns`).
    var columns: [Column] = []
    var rowCapacity: [Double] = []

    struct Solution {
        /// Requests per option column.
        var amounts: [Double]
        /// Requests left unplaced per class.
        var unplaced: [Double]
        /// The price of each row (cost per request or per token unit), never negative.
        var rowPrices: [Double]
        var optimal: Bool
        var iterations: Int
    }

    struct Limits {
        var maximumIterations: Int
        var deadline: DispatchTime
        /// Asked now and then; true stops the solve (a signal arrived).
        var shouldStop: () -> Bool
    }

    func solve(limits: Limits) -> Solution {
        let simplex = GUBSimplex(self)
        return simplex.run(limits: limits)
    }
}

/// The solver's state. Structural variables are the option columns followed by one unplaced column per
/// class; slack variables belong to rows. The working basis has one position per row, each holding a slack
/// or a structural that is not its class's key.
private final class GUBSimplex {
    let lp: AssignmentLP
    let rows: Int
    let optionColumns: Int
    let structurals: Int
    /// Right-hand side, perturbed.
    var capacity: [Double]
    var cost: [Double]
    var classOf: [Int32]

    /// The key structural of each class.
    var key: [Int]
    /// What each working-basis position holds: a structural index, or -1 - row for a slack.
    var working: [Int]
    /// Position of each structural in the working basis, or -1.
    var positionOfStructural: [Int32]
    var positionOfSlack: [Int32]
    /// The working basis inverse, column-major: `inverse[row * rows + position]` is (W⁻¹)[position, row].
    var inverse: [Double]
    var positionValue: [Double]
    var keyValue: [Double]
    var duals: [Double]
    var reduced: [Double]
    var slackReduced: [Double]
    /// Per family, suffix sums of the duals of its request rows and token rows.
    var countSuffix: [[Double]]
    var tokenSuffix: [[Double]]
    var keyRate: [Double]
    var changesSinceRefactor = 0

    static let optimalityTolerance = 1e-9
    static let pivotTolerance = 1e-9
    static let feasibilityTolerance = 1e-7
    static let refactorEvery = 50

    init(_ lp: AssignmentLP) {
        self.lp = lp
        rows = lp.rowCapacity.count
        optionColumns = lp.columns.count
        structurals = optionColumns + lp.classes.count
        capacity = lp.rowCapacity.enumerated().map { index, value in
            // A tiny, deterministic, positive perturbation breaks the ties that make prefix rows degenerate.
            let fraction = Double((UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15) >> 11) / Double(1 << 53)
            return max(value, 0) + 1e-6 * (1 + fraction)
        }
        cost = lp.columns.map(\.cost) + lp.classes.map(\.penalty)
        classOf = lp.columns.map(\.lpClass) + lp.classes.indices.map { Int32($0) }
        key = lp.classes.indices.map { lp.optionColumnsCount + $0 }
        working = (0..<rows).map { -1 - $0 }
        positionOfStructural = [Int32](repeating: -1, count: structurals)
        positionOfSlack = (0..<rows).map { Int32($0) }
        inverse = [Double](repeating: 0, count: rows * rows)
        for row in 0..<rows { inverse[row * rows + row] = 1 }
        positionValue = [Double](repeating: 0, count: rows)
        keyValue = lp.classes.map(\.count)
        duals = [Double](repeating: 0, count: rows)
        reduced = [Double](repeating: 0, count: structurals)
        slackReduced = [Double](repeating: 0, count: rows)
        countSuffix = lp.families.map { [Double](repeating: 0, count: $0.countRows.count + 1) }
        tokenSuffix = lp.families.map { [Double](repeating: 0, count: $0.tokenRows.count + 1) }
        keyRate = [Double](repeating: 0, count: lp.classes.count)
    }

    // MARK: - Columns

    /// Calls `body` with each (row, coefficient) of a structural's column over the capacity rows.
    @inline(__always)
    func forEachEntry(_ structural: Int, _ body: (Int, Double) -> Void) {
        guard structural < optionColumns else { return }
        let column = lp.columns[structural]
        let family = lp.families[Int(column.family)]
        let tokens = lp.classes[Int(column.lpClass)].tokens
        for boundary in Int(column.first)..<family.countRows.count {
            let countRow = family.countRows[boundary], tokenRow = family.tokenRows[boundary]
            if countRow >= 0 { body(Int(countRow), 1) }
            if tokenRow >= 0 { body(Int(tokenRow), tokens) }
        }
    }

    /// yᵀa for a structural, from the suffix sums.
    @inline(__always)
    func pricedUse(_ structural: Int) -> Double {
        guard structural < optionColumns else { return 0 }
        let column = lp.columns[structural]
        let family = Int(column.family), first = Int(column.first)
        return countSuffix[family][first] + lp.classes[Int(column.lpClass)].tokens * tokenSuffix[family][first]
    }

    /// W⁻¹ times the reduced column of `entering` (its column minus its class key's), or W⁻¹ e_row for a slack.
    func transformed(_ entering: Int) -> [Double] {
        var alpha = [Double](repeating: 0, count: rows)
        func add(_ row: Int, _ value: Double) {
            let base = row * rows
            inverse.withUnsafeBufferPointer { inverse in
                alpha.withUnsafeMutableBufferPointer { alpha in
                    for position in 0..<rows { alpha[position] += value * inverse[base + position] }
                }
            }
        }
        if entering < 0 {
            add(-1 - entering, 1)
        } else {
            forEachEntry(entering) { add($0, $1) }
            forEachEntry(key[Int(classOf[entering])]) { add($0, -$1) }
        }
        return alpha
    }

    // MARK: - Values and prices

    func computeValues() {
        var adjusted = capacity
        for (lpClass, keyColumn) in key.enumerated() {
            let count = lp.classes[lpClass].count
            forEachEntry(keyColumn) { adjusted[$0] -= count * $1 }
        }
        positionValue = [Double](repeating: 0, count: rows)
        inverse.withUnsafeBufferPointer { inverse in
            positionValue.withUnsafeMutableBufferPointer { values in
                for row in 0..<rows where adjusted[row] != 0 {
                    let value = adjusted[row], base = row * rows
                    for position in 0..<rows { values[position] += value * inverse[base + position] }
                }
            }
        }
        keyValue = lp.classes.map(\.count)
        for position in 0..<rows where working[position] >= 0 {
            keyValue[Int(classOf[working[position]])] -= positionValue[position]
        }
    }

    func computePrices() {
        var basicCost = [Double](repeating: 0, count: rows)
        for position in 0..<rows where working[position] >= 0 {
            let structural = working[position]
            basicCost[position] = cost[structural] - cost[key[Int(classOf[structural])]]
        }
        inverse.withUnsafeBufferPointer { inverse in
            for row in 0..<rows {
                var sum = 0.0
                let base = row * rows
                for position in 0..<rows where basicCost[position] != 0 { sum += inverse[base + position] * basicCost[position] }
                duals[row] = sum
            }
        }
        for (index, family) in lp.families.enumerated() {
            var countSum = 0.0, tokenSum = 0.0
            for boundary in stride(from: family.countRows.count - 1, through: 0, by: -1) {
                if family.countRows[boundary] >= 0 { countSum += duals[Int(family.countRows[boundary])] }
                if family.tokenRows[boundary] >= 0 { tokenSum += duals[Int(family.tokenRows[boundary])] }
                countSuffix[index][boundary] = countSum
                tokenSuffix[index][boundary] = tokenSum
            }
        }
        var keyPriced = [Double](repeating: 0, count: lp.classes.count)
        for (lpClass, keyColumn) in key.enumerated() { keyPriced[lpClass] = cost[keyColumn] - pricedUse(keyColumn) }
        for structural in 0..<structurals {
            reduced[structural] = cost[structural] - pricedUse(structural) - keyPriced[Int(classOf[structural])]
        }
        for row in 0..<rows { slackReduced[row] = -duals[row] }
    }

    func isBasic(_ structural: Int) -> Bool {
        positionOfStructural[structural] >= 0 || key[Int(classOf[structural])] == structural
    }

    // MARK: - The starting basis

    /// Every class on its cheapest column that still fits whole, most to lose first; the rest unplaced.
    /// All slacks are basic, so the working basis starts as the identity.
    func crash() {
        var room = capacity
        let order = lp.classes.indices.sorted { regret($0) > regret($1) }
        for lpClass in order {
            let range = lp.classes[lpClass].columns
            let count = lp.classes[lpClass].count
            let candidates = range.sorted { (cost[$0], $0) < (cost[$1], $1) }
            for column in candidates where cost[column] < lp.classes[lpClass].penalty {
                var fits = true
                forEachEntry(column) { row, coefficient in if room[row] < count * coefficient { fits = false } }
                guard fits else { continue }
                forEachEntry(column) { row, coefficient in room[row] -= count * coefficient }
                key[lpClass] = column
                break
            }
        }
    }

    private func regret(_ lpClass: Int) -> Double {
        let costs = lp.classes[lpClass].columns.map { cost[$0] }.sorted()
        guard let first = costs.first else { return 0 }
        return (costs.count > 1 ? costs[1] : lp.classes[lpClass].penalty) - first
    }

    // MARK: - Factorization

    /// Rebuilds W⁻¹ from the basis: the identity (every slack), then each structural brought in by a
    /// pivot on the row, among those whose slack is not basic, where its entry is largest.
    func refactor() -> Bool {
        let basicStructurals = working.filter { $0 >= 0 }
        var slackIsBasic = [Bool](repeating: false, count: rows)
        for position in working where position < 0 { slackIsBasic[-1 - position] = true }
        inverse = [Double](repeating: 0, count: rows * rows)
        for row in 0..<rows { inverse[row * rows + row] = 1 }
        working = (0..<rows).map { -1 - $0 }
        for index in positionOfStructural.indices { positionOfStructural[index] = -1 }
        for row in 0..<rows { positionOfSlack[row] = Int32(row) }
        for structural in basicStructurals {
            let alpha = transformed(structural)
            var best = -1
            var largest = 1e-11
            for position in 0..<rows where working[position] < 0 && !slackIsBasic[-1 - working[position]] && abs(alpha[position]) > largest {
                largest = abs(alpha[position])
                best = position
            }
            guard best >= 0 else { return false }
            positionOfSlack[-1 - working[best]] = -1
            pivot(at: best, alpha: alpha)
            working[best] = structural
            positionOfStructural[structural] = Int32(best)
        }
        changesSinceRefactor = 0
        return true
    }

    /// W⁻¹ ← E W⁻¹, where E makes `alpha` the unit vector at `position`.
    func pivot(at position: Int, alpha: [Double]) {
        let pivotValue = alpha[position]
        inverse.withUnsafeMutableBufferPointer { inverse in
            alpha.withUnsafeBufferPointer { alpha in
                for row in 0..<rows {
                    let base = row * rows
                    let scaled = inverse[base + position] / pivotValue
                    if scaled != 0 {
                        for other in 0..<rows { inverse[base + other] -= alpha[other] * scaled }
                    }
                    inverse[base + position] = scaled
                }
            }
        }
    }

    // MARK: - The simplex

    func run(limits: AssignmentLP.Limits) -> AssignmentLP.Solution {
        crash()
        computeValues()
        computePrices()
        var iterations = 0
        var optimal = false
        while iterations < limits.maximumIterations {
            if iterations % 64 == 0, DispatchTime.now() > limits.deadline || limits.shouldStop() { break }
            // Dantzig: the most negative reduced cost.
            var entering = Int.min
            var best = -GUBSimplex.optimalityTolerance
            for structural in 0..<structurals where reduced[structural] < best && !isBasic(structural) {
                best = reduced[structural]
                entering = structural
            }
            for row in 0..<rows where slackReduced[row] < best && positionOfSlack[row] < 0 {
                best = slackReduced[row]
                entering = -1 - row
            }
            if entering == Int.min {
                optimal = true
                break
            }
            iterations += 1
            let alpha = transformed(entering)
            guard let leaving = ratioTest(entering: entering, alpha: alpha) else { break }
            switch leaving {
            case .position(let position):
                replace(position: position, with: entering, alpha: alpha)
            case .key(let lpClass):
                swapKey(of: lpClass, entering: entering)
            }
            if changesSinceRefactor >= GUBSimplex.refactorEvery, !refactor() { break }
            computeValues()
            computePrices()
        }
        var amounts = [Double](repeating: 0, count: optionColumns)
        var unplaced = [Double](repeating: 0, count: lp.classes.count)
        func record(_ structural: Int, _ value: Double) {
            if structural < optionColumns { amounts[structural] = max(value, 0) } else { unplaced[structural - optionColumns] = max(value, 0) }
        }
        for (lpClass, keyColumn) in key.enumerated() { record(keyColumn, keyValue[lpClass]) }
        for position in 0..<rows where working[position] >= 0 { record(working[position], positionValue[position]) }
        return AssignmentLP.Solution(
            amounts: amounts, unplaced: unplaced, rowPrices: duals.map { max(-$0, 0) }, optimal: optimal, iterations: iterations)
    }

    enum Leaving {
        case position(Int)
        case key(Int)
    }

    /// The first basic variable to reach zero as the entering one grows (Harris's two passes: the largest
    /// step within tolerance, then the largest pivot among the variables that block it).
    func ratioTest(entering: Int, alpha: [Double]) -> Leaving? {
        var touched: [Int] = []
        for position in 0..<rows where working[position] >= 0 && alpha[position] != 0 {
            let lpClass = Int(classOf[working[position]])
            if keyRate[lpClass] == 0 { touched.append(lpClass) }
            keyRate[lpClass] += alpha[position]
        }
        if entering >= 0 {
            let lpClass = Int(classOf[entering])
            if keyRate[lpClass] == 0 { touched.append(lpClass) }
            keyRate[lpClass] -= 1
        }
        defer { for lpClass in touched { keyRate[lpClass] = 0 } }
        let tolerance = GUBSimplex.pivotTolerance, slack = GUBSimplex.feasibilityTolerance
        var bound = Double.infinity
        for position in 0..<rows where alpha[position] > tolerance {
            bound = min(bound, (max(positionValue[position], 0) + slack) / alpha[position])
        }
        for lpClass in touched where keyRate[lpClass] < -tolerance {
            bound = min(bound, (max(keyValue[lpClass], 0) + slack) / -keyRate[lpClass])
        }
        guard bound.isFinite else { return nil }
        var chosen: Leaving?
        var largest = 0.0
        for position in 0..<rows where alpha[position] > tolerance && max(positionValue[position], 0) / alpha[position] <= bound {
            if alpha[position] > largest { largest = alpha[position]; chosen = .position(position) }
        }
        for lpClass in touched where keyRate[lpClass] < -tolerance && max(keyValue[lpClass], 0) / -keyRate[lpClass] <= bound {
            if -keyRate[lpClass] > largest { largest = -keyRate[lpClass]; chosen = .key(lpClass) }
        }
        return chosen
    }

    func replace(position: Int, with entering: Int, alpha: [Double]) {
        let leaving = working[position]
        if leaving >= 0 { positionOfStructural[leaving] = -1 } else { positionOfSlack[-1 - leaving] = -1 }
        pivot(at: position, alpha: alpha)
        working[position] = entering
        if entering >= 0 { positionOfStructural[entering] = Int32(position) } else { positionOfSlack[-1 - entering] = Int32(position) }
        changesSinceRefactor += 1
    }

    /// The key of `lpClass` leaves. If the class has other basic columns, one of them becomes its key (the
    /// working basis is rewritten relative to it) and the entering variable takes its position; otherwise
    /// the entering column, which then belongs to the same class, becomes the key.
    func swapKey(of lpClass: Int, entering: Int) {
        let positions = (0..<rows).filter { working[$0] >= 0 && Int(classOf[working[$0]]) == lpClass }
        guard let newKeyPosition = positions.first else {
            key[lpClass] = entering
            return
        }
        // Columns of this class were stored relative to the old key; relative to the new key they are
        // (a_j - a_old) - (a_new - a_old): row `newKeyPosition` of W⁻¹ gains the others' rows.
        let others = positions.dropFirst()
        if !others.isEmpty {
            inverse.withUnsafeMutableBufferPointer { inverse in
                for row in 0..<rows {
                    let base = row * rows
                    var sum = 0.0
                    for position in others { sum += inverse[base + position] }
                    inverse[base + newKeyPosition] += sum
                }
            }
        }
        let newKey = working[newKeyPosition]
        key[lpClass] = newKey
        positionOfStructural[newKey] = -1
        let realigned = transformed(entering)
        pivot(at: newKeyPosition, alpha: realigned)
        working[newKeyPosition] = entering
        if entering >= 0 { positionOfStructural[entering] = Int32(newKeyPosition) } else { positionOfSlack[-1 - entering] = Int32(newKeyPosition) }
        changesSinceRefactor += 1
    }
}

extension AssignmentLP {
    /// Option columns, for the solver's indexing of unplaced columns after them.
    var optionColumnsCount: Int { columns.count }
}
