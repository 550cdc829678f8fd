import Foundation

/// Solves a `PlanningProblem`: held groups are placed first; settled signatures go to their cheapest option;
/// the contested classes go through the linear program, whose answer is rounded to requests under the
/// exact integer limits, after which requests left over or not on their cheapest option try again where
/// room remains. Plans of a few requests are searched exhaustively. Finally a lower bound on the cost of
/// any plan is computed exactly from the program's prices.
struct PlanSolver {
    struct Outcome {
        /// Per request: the index of its option in its signature, or -1 when it could not be placed.
        var optionOfRequest: [Int32]
        var costOfRequest: [Int64]
        /// No plan placing as many requests (and every held one) costs less than this, in pico-USD.
        var lowerBound: Int64
        var unplaced: Int
        /// Held groups (indexes into the problem's `held`) that no longer fit: their plans must be made again.
        var unfitHeld: [Int]
        var linearProgramOptimal: Bool
        var iterations: Int
        /// Rows of the program: request rows and token rows that could bind.
        var requestRows: Int
        var tokenRows: Int
        var contestedClasses: Int
        /// True when the plan was found by exhaustive search (so it is optimal and the bound is its cost).
        var exhaustive: Bool
    }

    struct Limits {
        var timeBudgetSeconds: Double = 10
        var shouldStop: @Sendable () -> Bool = { false }
    }

    /// The penalties of the program, relative to the costliest option (so placing a request always wins).
    static let unplacedPenalty = 1e4
    static let heldPenalty = 1e6
    /// Fixed-point scale of the prices in the exact lower bound.
    static let priceScale: Int128 = 1 << 20
    /// Plans of at most this many requests are searched exhaustively.
    static let exhaustiveLimit = 10
    /// Exchanges are tried when at most this many requests are contested (beyond, rounding's share of the cost is tiny).
    static let exchangeLimit = 20_000

    let problem: PlanningProblem
    var limits = Limits()
    /// Whether plans of a few requests are searched exhaustively (tests switch it off to check the program alone).
    var searchSmallPlansExhaustively = true

    init(problem: PlanningProblem, limits: Limits = Limits()) {
        self.problem = problem
        self.limits = limits
    }

    func solve() -> Outcome {
        var residuals = Residuals(problem.families)
        var assignment = Assignment(requestCount: problem.requests.count)
        var unfitHeld = problem.unfitHeld
        // Held groups first, whole or not at all, earliest first.
        for index in problem.classes.indices.sorted(by: { heldOrder($0) < heldOrder($1) }) where problem.classes[index].held >= 0 {
            let requestClass = problem.classes[index]
            let option = problem.option(requestClass, requestClass.options[0])
            if residuals.fits(option, requests: Int64(requestClass.count), tokens: requestClass.tokenSum) {
                residuals.add(option, requests: Int64(requestClass.count), tokens: requestClass.tokenSum)
            } else {
                unfitHeld.append(Int(requestClass.held))
            }
        }
        // Settled classes: their cheapest option can never run out.
        for requestClass in problem.classes where requestClass.held < 0 && !requestClass.contested {
            guard let first = requestClass.options.first else { continue }
            for position in requestClass.members { assignment.place(Int(problem.members[position]), problem.option(requestClass, first), first, problem: problem) }
        }
        let contested = problem.classes.indices.filter { problem.classes[$0].held < 0 && problem.classes[$0].contested }
        var program = ProgramIndex(problem: problem)
        var solution: AssignmentLP.Solution?
        if !contested.isEmpty || problem.classes.contains(where: { $0.held >= 0 && $0.contested }) {
            let lp = program.build()
            solution = lp.solve(limits: AssignmentLP.Limits(
                maximumIterations: 30 * (lp.rowCapacity.count + lp.classes.count) + 5_000,
                deadline: .now() + limits.timeBudgetSeconds, shouldStop: limits.shouldStop))
        }
        var leftovers: [Int] = []
        if let solution {
            for (lpClass, classIndex) in program.lpClasses.enumerated() where problem.classes[classIndex].held < 0 {
                round(classIndex, columns: program.columnsOfLPClass[lpClass], solution: solution, program: program, residuals: &residuals,
                      assignment: &assignment, leftovers: &leftovers)
            }
        }
        // Leftovers go through the program again, alone, over the room that is left; what still does not fit goes,
        // the requests with the most to lose first, to its cheapest option with room.
        leftovers = dive(leftovers, residuals: &residuals, assignment: &assignment)
        leftovers.sort { regret($0) > regret($1) }
        for request in leftovers { placeCheapest(request, residuals: &residuals, assignment: &assignment) }
        // Anything contested may still find a cheaper option where rounding left room.
        for classIndex in contested {
            for position in problem.classes[classIndex].members {
                improve(Int(problem.members[position]), classIndex: classIndex, residuals: &residuals, assignment: &assignment)
            }
        }
        let contestedRequests = contested.reduce(0) { $0 + problem.classes[$1].count }
        if contestedRequests <= PlanSolver.exchangeLimit {
            let members = contested.flatMap { problem.classes[$0].members.map { Int(problem.members[$0]) } }
            exchange(members, residuals: &residuals, assignment: &assignment)
        }
        var exhaustive = false
        if searchSmallPlansExhaustively, problem.requests.count <= PlanSolver.exhaustiveLimit, !problem.requests.isEmpty {
            exhaustive = searchExhaustively(residuals: &residuals, assignment: &assignment)
        }
        let unplaced = assignment.option.lazy.filter { $0 < 0 }.count
        // Prefix groups pay their writes where they fall: the plan's cost is never less than the program's shared writes.
        let costs = problem.groups.isEmpty ? assignment.cost : problem.exactCosts(optionOfRequest: assignment.option)
        let cost = costs.reduce(0, &+)
        // A few requests: the real problem's own optimum where the search finds it, else the program's bound.
        var bound = (exhaustive ? relaxedOptimum(placed: problem.requests.count - unplaced, unfitHeld: unfitHeld) : nil)
            ?? lowerBound(solution: solution, program: program, unplaced: unplaced, planCost: cost)
        bound = min(bound, cost)
        return Outcome(
            optionOfRequest: assignment.option, costOfRequest: costs, lowerBound: bound, unplaced: unplaced, unfitHeld: unfitHeld,
            linearProgramOptimal: solution?.optimal ?? true, iterations: solution?.iterations ?? 0, requestRows: program.requestRows,
            tokenRows: program.tokenRows, contestedClasses: contested.count, exhaustive: exhaustive)
    }

    private func heldOrder(_ index: Int) -> Int64 {
        let requestClass = problem.classes[index]
        guard requestClass.held >= 0 else { return .max }
        return problem.latestStart(problem.option(requestClass, requestClass.options[0]))
    }

    // MARK: - Rounding

    /// Gives a class's members to the program's columns: whole requests per column (rounded down), the
    /// smallest requests to the columns whose tokens are dearest; what does not fit exactly is left over.
    private func round(
        _ classIndex: Int, columns: Range<Int>, solution: AssignmentLP.Solution, program: ProgramIndex, residuals: inout Residuals,
        assignment: inout Assignment, leftovers: inout [Int]
    ) {
        let requestClass = problem.classes[classIndex]
        let order = columns.sorted { program.tokenPrice(of: $0, prices: solution.rowPrices) > program.tokenPrice(of: $1, prices: solution.rowPrices) }
        var position = requestClass.members.lowerBound
        for column in order {
            var quota = Int((solution.amounts[column] + 1e-6).rounded(.down))
            let optionIndex = program.optionOfColumn[column]
            let option = problem.option(requestClass, optionIndex)
            while quota > 0 && position < requestClass.members.upperBound {
                let request = Int(problem.members[position])
                let tokens = Int64(problem.requests[request].rateLimitTokens)
                if residuals.fits(option, requests: 1, tokens: tokens) {
                    residuals.add(option, requests: 1, tokens: tokens)
                    assignment.place(request, option, optionIndex, problem: problem)
                } else {
                    leftovers.append(request)
                }
                quota -= 1
                position += 1
            }
        }
        while position < requestClass.members.upperBound {
            leftovers.append(Int(problem.members[position]))
            position += 1
        }
    }

    /// Places leftover requests by diving: the linear program of just these requests, each its own class, over
    /// the room left in every binding row; requests it puts wholly on one option are placed there, then the
    /// surest of the others (largest share on one option; a tenth of them while many are left), and the program
    /// is solved again for the rest.
    /// Returns the requests it could not place.
    private func dive(_ leftovers: [Int], residuals: inout Residuals, assignment: inout Assignment) -> [Int] {
        var remaining = leftovers
        var rounds = 0
        let started = DispatchTime.now()
        while !remaining.isEmpty && rounds < 400 && !limits.shouldStop() {
            rounds += 1
            let (lp, optionOfColumn) = residualProgram(remaining, residuals: residuals)
            let solution = lp.solve(limits: AssignmentLP.Limits(
                maximumIterations: 30 * (lp.rowCapacity.count + lp.classes.count) + 1_000,
                deadline: started + limits.timeBudgetSeconds, shouldStop: limits.shouldStop))
            var sure: [(request: Int, share: Double, columns: [Int])] = []
            for (index, request) in remaining.enumerated() {
                let columns = lp.classes[index].columns.filter { solution.amounts[$0] > 1e-6 }.sorted { solution.amounts[$0] > solution.amounts[$1] }
                sure.append((request, columns.first.map { solution.amounts[$0] } ?? 0, columns))
            }
            sure.sort { $0.share > $1.share }
            let whole = sure.prefix { $0.share >= 1 - 1e-6 }.count
            // One at a time while few are left (each choice then sees the others' answers); a tenth at a time otherwise.
            let taking = max(whole, min(sure.count, remaining.count <= 200 ? 1 : max(1, sure.count / 10)))
            var placed = Set<Int>()
            for item in sure.prefix(taking) {
                let tokens = Int64(problem.requests[item.request].rateLimitTokens)
                for column in item.columns {
                    let (index, option) = optionOfColumn[column]
                    guard residuals.fits(option, requests: 1, tokens: tokens) else { continue }
                    residuals.add(option, requests: 1, tokens: tokens)
                    assignment.place(item.request, option, index, problem: problem)
                    placed.insert(item.request)
                    break
                }
                // The program gave it only part of a row's room: it goes where it fits whole, at the least cost.
                if !placed.contains(item.request) {
                    placeCheapest(item.request, residuals: &residuals, assignment: &assignment)
                    placed.insert(item.request)
                }
            }
            remaining.removeAll { placed.contains($0) }
        }
        return remaining
    }

    /// The program of `requests` alone, each its own class, over the room `residuals` leaves in the binding rows.
    private func residualProgram(_ requests: [Int], residuals: Residuals) -> (AssignmentLP, [(Int32, PlanningProblem.Option)]) {
        var lp = AssignmentLP()
        var capacities: [Double] = []
        var largestCost = 1.0, largestTokens = 1.0
        for request in requests {
            largestTokens = max(largestTokens, Double(problem.requests[request].rateLimitTokens))
            for ranked in rankedOptions(request) { largestCost = max(largestCost, Double(ranked.cost)) }
        }
        for (index, family) in problem.families.enumerated() {
            var countRows = [Int32](repeating: -1, count: family.boundaries.count)
            var tokenRows = countRows
            for (boundary, room) in residuals.rooms(family: index) {
                if family.requestRowBinds[boundary] {
                    countRows[boundary] = Int32(capacities.count)
                    capacities.append(Double(room.requests))
                }
                if family.tokenRowBinds[boundary] {
                    tokenRows[boundary] = Int32(capacities.count)
                    capacities.append(Double(room.tokens) / largestTokens)
                }
            }
            lp.families.append(AssignmentLP.Family(countRows: countRows, tokenRows: tokenRows))
        }
        lp.rowCapacity = capacities
        var optionOfColumn: [(Int32, PlanningProblem.Option)] = []
        for (lpClass, request) in requests.enumerated() {
            let start = lp.columns.count
            for ranked in rankedOptions(request) {
                lp.columns.append(AssignmentLP.Column(
                    lpClass: Int32(lpClass), family: ranked.option.family, first: ranked.option.boundary, cost: Double(ranked.cost) / largestCost))
                optionOfColumn.append((ranked.index, ranked.option))
            }
            lp.classes.append(AssignmentLP.LPClass(
                count: 1, tokens: Double(problem.requests[request].rateLimitTokens) / largestTokens, penalty: PlanSolver.unplacedPenalty,
                columns: start..<lp.columns.count))
        }
        return (lp, optionOfColumn)
    }

    /// The request's options with their exact costs, cheapest (then most preferred) first.
    private func rankedOptions(_ request: Int) -> [(index: Int32, option: PlanningProblem.Option, cost: Int64)] {
        let signature = problem.signatures[Int(problem.signatureOfRequest[request])]
        let input = problem.requests[request].needs.inputTokens
        return signature.options.enumerated().map { (Int32($0.offset), $0.element, $0.element.cost(input: input).cost) }
            .sorted { ($0.cost, $0.option.preference) < ($1.cost, $1.option.preference) }
    }

    private func regret(_ request: Int) -> Int64 {
        let ranked = rankedOptions(request)
        guard ranked.count > 1 else { return .max }
        return ranked[1].cost - ranked[0].cost
    }

    private func placeCheapest(_ request: Int, residuals: inout Residuals, assignment: inout Assignment) {
        let tokens = Int64(problem.requests[request].rateLimitTokens)
        for candidate in rankedOptions(request) where residuals.fits(candidate.option, requests: 1, tokens: tokens) {
            residuals.add(candidate.option, requests: 1, tokens: tokens)
            assignment.place(request, candidate.option, candidate.index, problem: problem)
            return
        }
    }

    /// Moves a request to a cheaper (or equally cheap and preferred) option that has room, if any.
    private func improve(_ request: Int, classIndex: Int, residuals: inout Residuals, assignment: inout Assignment) {
        let tokens = Int64(problem.requests[request].rateLimitTokens)
        let signature = problem.signatures[Int(problem.signatureOfRequest[request])]
        let current = assignment.option[request]
        let input = problem.requests[request].needs.inputTokens
        let currentKey = current >= 0 ? (signature.options[Int(current)].cost(input: input).cost, signature.options[Int(current)].preference) : (Int64.max, Int64.max)
        for candidate in rankedOptions(request) {
            guard (candidate.cost, candidate.option.preference) < currentKey else { return }
            if residuals.fits(candidate.option, requests: 1, tokens: tokens) {
                if current >= 0 { residuals.add(signature.options[Int(current)], requests: -1, tokens: -tokens) }
                residuals.add(candidate.option, requests: 1, tokens: tokens)
                assignment.place(request, candidate.option, candidate.index, problem: problem)
                return
            }
        }
    }

    // MARK: - Exchanges

    /// Pairs of moves that lower the cost: a request whose cheaper option is full takes it, and one request
    /// already there moves to its own cheapest option with room, when the first saves more than the second
    /// loses. Repeats while anything improves (a few rounds).
    private func exchange(_ requests: [Int], residuals: inout Residuals, assignment: inout Assignment) {
        let signatureOptions = { (request: Int) in self.problem.signatures[Int(self.problem.signatureOfRequest[request])].options }
        var ranked: [Int: [(index: Int32, option: PlanningProblem.Option, cost: Int64)]] = [:]
        for request in requests { ranked[request] = rankedOptions(request) }
        // Per family, the requests on it, those that lose least by moving to their next option first.
        var onFamily: [Int: [Int]] = [:]
        for request in requests where assignment.option[request] >= 0 {
            onFamily[Int(signatureOptions(request)[Int(assignment.option[request])].family), default: []].append(request)
        }
        func regret(_ request: Int) -> Int64 {
            let options = ranked[request] ?? []
            return options.first { $0.index != assignment.option[request] }.map { $0.cost - assignment.cost[request] } ?? Int64.max
        }
        for family in onFamily.keys { onFamily[family]!.sort { regret($0) < regret($1) } }
        func currentCost(_ request: Int) -> Int64 { assignment.option[request] >= 0 ? assignment.cost[request] : Int64.max / 4 }
        // Small plans can afford to look further for a request to move out of the way.
        let breadth = requests.count <= 2_000 ? 400 : 100
        func excess(_ request: Int) -> Int64 { currentCost(request) - (ranked[request]?.first?.cost ?? currentCost(request)) }
        for _ in 0..<8 {
            var improved = false
            let candidates = requests.filter { excess($0) > 0 }.sorted { excess($0) > excess($1) }
            for request in candidates {
                let tokens = Int64(problem.requests[request].rateLimitTokens)
                let current = assignment.option[request]
                let currentOption = current >= 0 ? signatureOptions(request)[Int(current)] : nil
                for target in ranked[request] ?? [] where target.cost < currentCost(request) {
                    // Out of the way first, so its own room does not count against it.
                    if let currentOption { residuals.add(currentOption, requests: -1, tokens: -tokens) }
                    if residuals.fits(target.option, requests: 1, tokens: tokens) {
                        residuals.add(target.option, requests: 1, tokens: tokens)
                        move(request, from: currentOption, to: target, onFamily: &onFamily, assignment: &assignment)
                        improved = true
                        break
                    }
                    let saving = currentCost(request) - target.cost
                    var done = false
                    for other in (onFamily[Int(target.option.family)] ?? []).prefix(breadth) where other != request {
                        let otherOption = signatureOptions(other)[Int(assignment.option[other])]
                        let otherTokens = Int64(problem.requests[other].rateLimitTokens)
                        residuals.add(otherOption, requests: -1, tokens: -otherTokens)
                        if residuals.fits(target.option, requests: 1, tokens: tokens) {
                            residuals.add(target.option, requests: 1, tokens: tokens)
                            let otherCost = assignment.cost[other]
                            if let alternative = (ranked[other] ?? []).first(where: { $0.index != assignment.option[other]
                                && $0.cost - otherCost < saving && residuals.fits($0.option, requests: 1, tokens: otherTokens) })
                            {
                                residuals.add(alternative.option, requests: 1, tokens: otherTokens)
                                move(other, from: otherOption, to: alternative, onFamily: &onFamily, assignment: &assignment)
                                move(request, from: currentOption, to: target, onFamily: &onFamily, assignment: &assignment)
                                improved = true
                                done = true
                                break
                            }
                            residuals.add(target.option, requests: -1, tokens: -tokens)
                        }
                        residuals.add(otherOption, requests: 1, tokens: otherTokens)
                    }
                    if done { break }
                    if let currentOption { residuals.add(currentOption, requests: 1, tokens: tokens) }
                }
            }
            if !improved || limits.shouldStop() { return }
        }
    }

    private func move(
        _ request: Int, from old: PlanningProblem.Option?, to new: (index: Int32, option: PlanningProblem.Option, cost: Int64),
        onFamily: inout [Int: [Int]], assignment: inout Assignment
    ) {
        if let old { onFamily[Int(old.family)]?.removeAll { $0 == request } }
        onFamily[Int(new.option.family), default: []].append(request)
        assignment.place(request, new.option, new.index, problem: problem)
    }

    // MARK: - Exhaustive search

    /// Tries every assignment of a few requests (most placed first, then least cost, then preference) and
    /// keeps the best. Returns false, changing nothing, if it gave up.
    private func searchExhaustively(residuals: inout Residuals, assignment: inout Assignment) -> Bool {
        let count = problem.requests.count
        var base = residuals
        for request in 0..<count where assignment.option[request] >= 0 {
            let signature = problem.signatures[Int(problem.signatureOfRequest[request])]
            base.add(signature.options[Int(assignment.option[request])], requests: -1, tokens: -Int64(problem.requests[request].rateLimitTokens))
        }
        let start = (
            placed: count - assignment.option.filter { $0 < 0 }.count, cost: problem.exactCosts(optionOfRequest: assignment.option).reduce(0, &+),
            choice: assignment.option)
        guard let best = bestAssignment(room: base, start: start) else { return false }
        residuals = base
        for request in 0..<count {
            assignment.unplace(request)
            let index = best.choice[request]
            guard index >= 0 else { continue }
            let option = problem.signatures[Int(problem.signatureOfRequest[request])].options[Int(index)]
            residuals.add(option, requests: 1, tokens: Int64(problem.requests[request].rateLimitTokens))
            assignment.place(request, option, index, problem: problem)
        }
        return true
    }

    /// The real problem's optimum for a few requests, found the same way over the real capacities (`Residuals(relaxed:)`,
    /// every boundary's latest unrounded moment): a lower bound for plans placing as many requests as `placed`, or nil
    /// when the search gave up or the real problem places more (then this says nothing of plans placing fewer).
    private func relaxedOptimum(placed: Int, unfitHeld: [Int]) -> Int64? {
        var room = Residuals(problem.families, relaxed: true)
        // Other jobs' plans hold what they held in the plan: those that no longer fit are planned again, not held.
        for requestClass in problem.classes where requestClass.held >= 0 && !unfitHeld.contains(Int(requestClass.held)) {
            room.add(problem.option(requestClass, requestClass.options[0]), requests: Int64(requestClass.count), tokens: requestClass.tokenSum)
        }
        let count = problem.requests.count
        guard let best = bestAssignment(room: room, start: (0, 0, [Int32](repeating: -1, count: count))), best.placed == placed else { return nil }
        return best.cost
    }

    /// Every assignment of the problem's requests within `room` (most placed first, then least cost, then preference),
    /// starting from `start` as the best known; nil if it gave up.
    private func bestAssignment(room: Residuals, start: (placed: Int, cost: Int64, choice: [Int32])) -> (placed: Int, cost: Int64, choice: [Int32])? {
        let count = problem.requests.count
        var base = room
        // Costs as they fall: each call's own price, and a prefix group's write on the first of its calls on a family.
        let ranked = (0..<count).map { request in
            rankedOptions(request).map { candidate -> (index: Int32, option: PlanningProblem.Option, cost: Int64, write: Int64, primer: Int64) in
                guard let cache = candidate.option.cost(input: problem.requests[request].needs.inputTokens).cache else {
                    return (candidate.index, candidate.option, candidate.cost, 0, -1)
                }
                return (candidate.index, candidate.option, candidate.cost - cache.writeShare, cache.write,
                        problem.writeKey(request: request, family: candidate.option.family))
            }
        }
        var primed: [Int64: Int] = [:]
        let cheapest = ranked.map { $0.map(\.cost).min() ?? 0 }
        var suffixCheapest = [Int64](repeating: 0, count: count + 1)
        for request in stride(from: count - 1, through: 0, by: -1) { suffixCheapest[request] = suffixCheapest[request + 1] + cheapest[request] }
        var best = (placed: start.placed, cost: start.cost, preference: Int64.max)
        var bestChoice = start.choice
        var choice = [Int32](repeating: -1, count: count)
        var nodes = 0
        var completed = true
        func search(_ request: Int, placed: Int, cost: Int64, preference: Int64) {
            nodes += 1
            if nodes > 2_000_000 { completed = false; return }
            if request == count {
                if (placed, -cost, -preference) > (best.placed, -best.cost, -best.preference) {
                    best = (placed, cost, preference)
                    bestChoice = choice
                }
                return
            }
            let possible = placed + (count - request)
            if possible < best.placed { return }
            if possible == best.placed && cost + suffixCheapest[request] > best.cost { return }
            let tokens = Int64(problem.requests[request].rateLimitTokens)
            for candidate in ranked[request] where base.fits(candidate.option, requests: 1, tokens: tokens) {
                base.add(candidate.option, requests: 1, tokens: tokens)
                choice[request] = candidate.index
                var write: Int64 = 0
                if candidate.primer >= 0 {
                    if primed[candidate.primer, default: 0] == 0 { write = candidate.write }
                    primed[candidate.primer, default: 0] += 1
                }
                search(request + 1, placed: placed + 1, cost: cost + candidate.cost + write, preference: preference &+ candidate.option.preference)
                if candidate.primer >= 0 { primed[candidate.primer]! -= 1 }
                base.add(candidate.option, requests: -1, tokens: -tokens)
                if !completed { return }
            }
            choice[request] = -1
            search(request + 1, placed: placed, cost: cost, preference: preference)
        }
        search(0, placed: 0, cost: 0, preference: 0)
        return completed ? (best.placed, best.cost, bestChoice) : nil
    }

    // MARK: - The lower bound

    /// Lagrangian duality: for any prices λ ≥ 0 on the rows, Σ over requests of min over its options of
    /// (cost + the prices of the rows it would use), minus Σ λ × capacity, is at most the cost of any plan
    /// placing every request. The capacities are the real problem's (each boundary's latest unrounded moment, not the
    /// rounded-down grid the program keeps to), so the bound holds for every real plan, not only for those on the
    /// grid. The prices come from the program, rounded to a fixed point; everything else is exact integers, so the
    /// bound holds whatever the floating-point solve did.
    /// `planCost`: the plan's own cost; the bound that counts prefix groups' writes whole is worked out only when the
    /// shared writes' bound leaves it more than a basis point above (on a million requests it is a pass over every option).
    private func lowerBound(solution: AssignmentLP.Solution?, program: ProgramIndex, unplaced: Int, planCost: Int64) -> Int64 {
        let scale = PlanSolver.priceScale
        // The held penalty is relative to the dearest option of any request, so no real cost is cut short by it.
        var dearest = program.costScale
        for signature in problem.signatures where !signature.members.isEmpty {
            let input = problem.requests[Int(problem.members[signature.members.upperBound - 1])].needs.inputTokens
            for option in signature.options { dearest = max(dearest, Double(option.cost(input: input).cost)) }
        }
        let heldPenalty = Int128(dearest * PlanSolver.heldPenalty) * scale
        let penalty = Int128(dearest * PlanSolver.unplacedPenalty) * scale
        // Per family and boundary, suffix sums of the rows' prices: per request, and per token.
        var requestPrice = problem.families.map { [Int128](repeating: 0, count: $0.boundaries.count + 1) }
        var tokenPrice = requestPrice
        var subtracted: Int128 = 0
        if let solution {
            for (family, value) in problem.families.enumerated() {
                var requestSum: Int128 = 0, tokenSum: Int128 = 0
                for boundary in stride(from: value.boundaries.count - 1, through: 0, by: -1) {
                    let requestRow = program.requestRow[family][boundary], tokenRow = program.tokenRow[family][boundary]
                    if requestRow >= 0 {
                        let price = PlanSolver.fixedPoint(solution.rowPrices[Int(requestRow)] * program.costScale, scale: scale)
                        requestSum += price
                        subtracted += price * Int128(value.relaxedRequestCapacity[boundary])
                    }
                    if tokenRow >= 0 {
                        let price = PlanSolver.fixedPoint(solution.rowPrices[Int(tokenRow)] * program.costScale / program.tokenScale, scale: scale)
                        tokenSum += price
                        subtracted += price * Int128(value.relaxedTokenCapacity[boundary])
                    }
                    requestPrice[family][boundary] = requestSum
                    tokenPrice[family][boundary] = tokenSum
                }
            }
        }
        // Each request's cheapest option at those prices. Two bounds for plans placing as many requests, both valid,
        // the larger kept: leaving out the dearest terms (requests with no option at all are never placed), or, as the
        // program does, letting any request go unplaced at the penalty and taking the penalties off again.
        var total: Int128 = 0
        var penalized: Int128 = 0
        var terms: [Int128] = []
        var unplaceable = 0
        for (request, value) in problem.requests.enumerated() {
            let options = problem.signatures[Int(problem.signatureOfRequest[request])].options
            let tokens = Int128(value.rateLimitTokens)
            var best: Int128?
            for option in options {
                let family = Int(option.family), boundary = Int(option.boundary)
                let term = Int128(option.cost(input: value.needs.inputTokens).cost) * scale + requestPrice[family][boundary]
                    + tokenPrice[family][boundary] * tokens
                if best == nil || term < best! { best = term }
            }
            penalized += min(best ?? penalty, penalty)
            guard let best else {
                unplaceable += 1
                continue
            }
            total += best
            if unplaced > 0 { terms.append(best) }
        }
        let leftOut = min(max(unplaced - unplaceable, 0), terms.count)
        if leftOut > 0 {
            terms.sort(by: >)
            total -= terms.prefix(leftOut).reduce(0, +)
        }
        var heldTerms: Int128 = 0
        for requestClass in problem.classes where requestClass.held >= 0 {
            let option = problem.option(requestClass, requestClass.options[0])
            let family = Int(option.family), boundary = Int(option.boundary)
            let largest = requestPrice[family][boundary] + tokenPrice[family][boundary] * Int128(requestClass.tokenMax)
            let held = largest <= heldPenalty
                ? requestPrice[family][boundary] * Int128(requestClass.count) + tokenPrice[family][boundary] * Int128(requestClass.tokenSum)
                : heldPenalty * Int128(requestClass.count)
            heldTerms += held
            penalized += held
        }
        var bound = max(total + heldTerms - subtracted, penalized - subtracted - penalty * Int128(unplaced)) / scale
        if unplaced == 0, !problem.groups.isEmpty, (Int128(planCost) - bound) * 10_000 > Int128(planCost),
           let whole = groupedTotal(requestPrice: requestPrice, tokenPrice: tokenPrice, scale: scale)
        {
            bound = max(bound, (whole + heldTerms - subtracted) / scale)
        }
        return Int64(clamping: max(bound, 0))
    }

    /// The same sum with prefix groups' writes counted whole, for plans placing every request: each request outside a
    /// group at its cheapest priced option, and each group at the least it can pay at those prices, where a call's own
    /// price leaves the write out and every family a group uses costs its write once (a small facility-location problem,
    /// bounded below by its best plan on no cached family, on one, or its cheapest calls and two writes). The shared
    /// writes of the program count a split group's writes only in part; this counts them as a plan pays them.
    private func groupedTotal(requestPrice: [[Int128]], tokenPrice: [[Int128]], scale: Int128) -> Int128? {
        struct Family {
            var write: Int128
            /// Over members with an option here: the least they pay using it or an uncached option, less what they would
            /// pay on their uncached options alone (members with none of those pay their option here in full).
            var saving: Int128 = 0
            var membersWithoutUncached = 0
        }
        struct Group {
            var uncached: Int128 = 0
            var membersWithoutUncached = 0
            var cheapest: Int128 = 0
            var families: [Int32: Family] = [:]
        }
        var groups = [Group](repeating: Group(), count: problem.groups.count)
        var total: Int128 = 0
        // One request's cheapest term and write per cached family, reused from request to request (a handful of families).
        var cached: [(family: Int32, term: Int128, write: Int128)] = []
        for (request, value) in problem.requests.enumerated() {
            let tokens = Int128(value.rateLimitTokens)
            let group = Int(problem.groupOfRequest[request])
            var uncached: Int128?, cheapest: Int128?
            cached.removeAll(keepingCapacity: true)
            for option in problem.unprunedOptions[Int(problem.signatureOfRequest[request])] {
                let family = Int(option.family), boundary = Int(option.boundary)
                let priced = option.cost(input: value.needs.inputTokens)
                let write = group >= 0 ? priced.cache.map { Int128($0.write) } ?? 0 : 0
                let own = Int128(priced.cost) - (write > 0 ? Int128(priced.cache!.writeShare) : 0)
                let term = own * scale + requestPrice[family][boundary] + tokenPrice[family][boundary] * tokens
                cheapest = min(cheapest ?? term, term)
                if write > 0 {
                    if let known = cached.firstIndex(where: { $0.family == option.family }) {
                        cached[known] = (option.family, min(cached[known].term, term), min(cached[known].write, write))
                    } else {
                        cached.append((option.family, term, write))
                    }
                } else {
                    uncached = min(uncached ?? term, term)
                }
            }
            guard let cheapest else { return nil }
            guard group >= 0 else {
                total += cheapest
                continue
            }
            groups[group].cheapest += cheapest
            if let uncached { groups[group].uncached += uncached } else { groups[group].membersWithoutUncached += 1 }
            for option in cached {
                let family = option.family
                var entry = groups[group].families[family] ?? Family(write: option.write * scale)
                entry.write = min(entry.write, option.write * scale)
                if let uncached { entry.saving += min(option.term - uncached, 0) } else {
                    entry.saving += option.term
                    entry.membersWithoutUncached += 1
                }
                groups[group].families[family] = entry
            }
        }
        for group in groups {
            var least: Int128? = group.membersWithoutUncached == 0 ? group.uncached : nil
            for family in group.families.values where family.membersWithoutUncached == group.membersWithoutUncached {
                let one = family.write + group.uncached + family.saving
                least = min(least ?? one, one)
            }
            let writes = group.families.values.map(\.write).sorted()
            if writes.count >= 2 {
                let several = writes[0] + writes[1] + group.cheapest
                least = min(least ?? several, several)
            }
            guard let least else { return nil }
            total += least
        }
        return total
    }

    static func fixedPoint(_ value: Double, scale: Int128) -> Int128 {
        guard value.isFinite, value > 0 else { return 0 }
        let scaled = (value * Double(scale)).rounded(.down)
        return scaled >= 1e36 ? Int128(1e36) : Int128(scaled)
    }
}

// MARK: - Exact room left

/// What is left of every family's binding rows, in exact integers. Adding a request at a boundary uses one
/// request and its tokens in every binding row from that boundary on.
struct Residuals {
    /// Per family: the boundaries with a binding row, and the room left at each.
    private var bindingBoundaries: [[Int32]]
    private var requestRoom: [[Int64]]
    private var tokenRoom: [[Int64]]
    /// Per family and boundary: the first binding position at or after it.
    private var firstBinding: [[Int32]]

    /// `relaxed`: the real problem's capacities (each boundary's latest unrounded moment), for bounds, not plans.
    init(_ families: [PlanningProblem.Family], relaxed: Bool = false) {
        bindingBoundaries = families.map { family in
            family.boundaries.indices.filter { family.requestRowBinds[$0] || family.tokenRowBinds[$0] }.map { Int32($0) }
        }
        requestRoom = zip(families, bindingBoundaries).map { family, binding in
            binding.map { relaxed ? family.relaxedRequestCapacity[Int($0)] : family.requestCapacity[Int($0)] }
        }
        tokenRoom = zip(families, bindingBoundaries).map { family, binding in
            binding.map { relaxed ? family.relaxedTokenCapacity[Int($0)] : family.tokenCapacity[Int($0)] }
        }
        firstBinding = zip(families, bindingBoundaries).map { family, binding in
            var result = [Int32](repeating: Int32(binding.count), count: family.boundaries.count + 1)
            var position = binding.count
            for boundary in stride(from: family.boundaries.count - 1, through: 0, by: -1) {
                while position > 0 && Int(binding[position - 1]) >= boundary { position -= 1 }
                result[boundary] = Int32(position)
            }
            return result
        }
    }

    /// The room left at each binding boundary of a family: (boundary index, requests, tokens).
    func rooms(family: Int) -> [(boundary: Int, room: (requests: Int64, tokens: Int64))] {
        bindingBoundaries[family].enumerated().map { position, boundary in
            (Int(boundary), (max(requestRoom[family][position], 0), max(tokenRoom[family][position], 0)))
        }
    }

    func fits(_ option: PlanningProblem.Option, requests: Int64, tokens: Int64) -> Bool {
        let family = Int(option.family)
        let rooms = requestRoom[family], tokenRooms = tokenRoom[family]
        for position in Int(firstBinding[family][Int(option.boundary)])..<rooms.count
        where rooms[position] < requests || tokenRooms[position] < tokens {
            return false
        }
        return true
    }

    /// Uses (or, with negative amounts, gives back) room from the option's boundary on.
    mutating func add(_ option: PlanningProblem.Option, requests: Int64, tokens: Int64) {
        let family = Int(option.family)
        for position in Int(firstBinding[family][Int(option.boundary)])..<requestRoom[family].count {
            requestRoom[family][position] -= requests
            tokenRoom[family][position] -= tokens
        }
    }
}

/// Each request's chosen option and its exact cost.
struct Assignment {
    var option: [Int32]
    var cost: [Int64]

    init(requestCount: Int) {
        option = [Int32](repeating: -1, count: requestCount)
        cost = [Int64](repeating: 0, count: requestCount)
    }

    mutating func place(_ request: Int, _ chosen: PlanningProblem.Option, _ index: Int32, problem: PlanningProblem) {
        option[request] = index
        cost[request] = chosen.cost(input: problem.requests[request].needs.inputTokens).cost
    }

    mutating func unplace(_ request: Int) {
        option[request] = -1
        cost[request] = 0
    }

    var totalCost: Int64 { cost.reduce(0, &+) }
}

/// The linear program's view of the problem: its rows, classes and columns, and how they map back.
struct ProgramIndex {
    let problem: PlanningProblem
    /// Per family and boundary: the program's request row and token row, or -1.
    var requestRow: [[Int32]]
    var tokenRow: [[Int32]]
    var requestRows = 0
    var tokenRows = 0
    /// Problem classes in the program, by program class.
    var lpClasses: [Int] = []
    var columnsOfLPClass: [Range<Int>] = []
    var optionOfColumn: [Int32] = []
    var columnFamily: [Int32] = []
    var columnBoundary: [Int32] = []
    /// Costs are divided by this (the costliest option per request) and token rows by `tokenScale`.
    var costScale = 1.0
    var tokenScale = 1.0

    init(problem: PlanningProblem) {
        self.problem = problem
        requestRow = problem.families.map { [Int32](repeating: -1, count: $0.boundaries.count) }
        tokenRow = requestRow
    }

    mutating func build() -> AssignmentLP {
        var lp = AssignmentLP()
        var capacities: [Double] = []
        lpClasses = problem.classes.indices.filter { problem.classes[$0].contested }
        var largestCost = 0.0, largestTokens = 1.0
        for classIndex in lpClasses {
            let requestClass = problem.classes[classIndex]
            largestTokens = max(largestTokens, Double(requestClass.tokenSum) / Double(max(requestClass.count, 1)))
            for optionIndex in requestClass.options {
                largestCost = max(largestCost, problem.averageCost(requestClass, problem.option(requestClass, optionIndex)))
            }
        }
        costScale = max(largestCost, 1)
        tokenScale = largestTokens
        for (index, family) in problem.families.enumerated() {
            for boundary in family.boundaries.indices {
                if family.requestRowBinds[boundary] {
                    requestRow[index][boundary] = Int32(capacities.count)
                    capacities.append(Double(family.requestCapacity[boundary]))
                    requestRows += 1
                }
                if family.tokenRowBinds[boundary] {
                    tokenRow[index][boundary] = Int32(capacities.count)
                    capacities.append(Double(family.tokenCapacity[boundary]) / tokenScale)
                    tokenRows += 1
                }
            }
            lp.families.append(AssignmentLP.Family(countRows: requestRow[index], tokenRows: tokenRow[index]))
        }
        lp.rowCapacity = capacities
        for (lpClass, classIndex) in lpClasses.enumerated() {
            let requestClass = problem.classes[classIndex]
            let start = lp.columns.count
            for optionIndex in requestClass.options {
                let option = problem.option(requestClass, optionIndex)
                lp.columns.append(AssignmentLP.Column(
                    lpClass: Int32(lpClass), family: option.family, first: option.boundary,
                    cost: problem.averageCost(requestClass, option) / costScale))
                optionOfColumn.append(optionIndex)
                columnFamily.append(option.family)
                columnBoundary.append(option.boundary)
            }
            columnsOfLPClass.append(start..<lp.columns.count)
            lp.classes.append(AssignmentLP.LPClass(
                count: Double(requestClass.count), tokens: Double(requestClass.tokenSum) / Double(max(requestClass.count, 1)) / tokenScale,
                penalty: requestClass.held >= 0 ? PlanSolver.heldPenalty : PlanSolver.unplacedPenalty, columns: start..<lp.columns.count))
        }
        return lp
    }

    /// The price of one more token on a column's rows: how scarce tokens are where it would go.
    func tokenPrice(of column: Int, prices: [Double]) -> Double {
        let family = Int(columnFamily[column])
        var sum = 0.0
        for boundary in Int(columnBoundary[column])..<tokenRow[family].count where tokenRow[family][boundary] >= 0 {
            sum += prices[Int(tokenRow[family][boundary])]
        }
        return sum
    }
}
