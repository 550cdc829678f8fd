import Foundation

/// One way to serve one request: a resource (a model's capacity in a stretch of time) and its cost.
public struct AssignmentOption: Sendable, Hashable {
    public var resource: Int
    public var cost: Int64
    /// Orders options of equal cost: lower is preferred (higher quality, then faster, then name, then sooner).
    public var preference: Int64

    public init(resource: Int, cost: Int64, preference: Int64 = 0) {
        self.resource = resource
        self.cost = cost
        self.preference = preference
    }
}

/// A capacity-constrained assignment problem: every request takes one unit of one resource.
public protocol AssignmentProblem {
    var requestCount: Int { get }
    /// Requests each resource can take.
    var capacities: [Int] { get }
    /// The request's options, cheapest (then most preferred) first.
    func options(for request: Int) -> [AssignmentOption]
    /// The first of `options(for:)`; problems may answer it without building the list.
    func cheapestOption(for request: Int) -> AssignmentOption?
}

extension AssignmentProblem {
    public func cheapestOption(for request: Int) -> AssignmentOption? { options(for: request).first }
}

/// The solver's answer: a resource per request (nil when no option had room) and whether it is proven optimal.
public struct Assignment: Sendable {
    public var resourceOfRequest: [Int32]
    public var costOfRequest: [Int64]
    /// Requests that found no room anywhere before their deadline.
    public var unplaced: Int
    /// True when no cost-lowering exchange remains: the total is the exact optimum of the problem.
    public var provenOptimal: Bool
    public var improvementRounds: Int

    public static let unplacedResource: Int32 = -1

    public var totalCost: Int64 { zip(resourceOfRequest, costOfRequest).reduce(0) { $0 + ($1.0 >= 0 ? $1.1 : 0) } }
}

/// Solves an `AssignmentProblem`: every request on its cheapest option; where a resource overflows, the
/// requests whose move costs least move to their next option with room; then negative cycles in the
/// graph of possible moves are cancelled until none is left (the optimality condition of min-cost flow)
/// or the time budget runs out.
public struct AssignmentSolver {
    /// The cost charged for a request left without room, far above any real cost, so the improvement
    /// step always prefers placing a request to any saving elsewhere.
    static let unplacedCost: Int64 = 1 << 50
    public var improvementBudgetSeconds: Double

    public init(improvementBudgetSeconds: Double = 2) { self.improvementBudgetSeconds = improvementBudgetSeconds }

    public func solve<P: AssignmentProblem>(_ problem: P) -> Assignment {
        let count = problem.requestCount
        let capacities = problem.capacities
        var loads = [Int](repeating: 0, count: capacities.count)
        var resource = [Int32](repeating: Assignment.unplacedResource, count: count)
        var cost = [Int64](repeating: AssignmentSolver.unplacedCost, count: count)

        // 1. Everyone on their cheapest option.
        for request in 0..<count {
            if let best = problem.cheapestOption(for: request) {
                resource[request] = Int32(best.resource)
                cost[request] = best.cost
                loads[best.resource] += 1
            }
        }

        // 2. Repair overflow: evict the cheapest-to-move requests to their best option with room.
        var everOverfull = false
        var overfull = Set((0..<capacities.count).filter { loads[$0] > capacities[$0] })
        while let full = overfull.min() {
            overfull.remove(full)
            everOverfull = true
            var movers: [(delta: Int64, preference: Int64, request: Int)] = []
            for request in 0..<count where resource[request] == Int32(full) {
                if let alternative = bestOption(problem.options(for: request), excluding: full, loads: loads, capacities: capacities) {
                    movers.append((alternative.cost - cost[request], alternative.preference, request))
                } else {
                    movers.append((AssignmentSolver.unplacedCost, 0, request))
                }
            }
            movers.sort { ($0.delta, $0.preference, $0.request) < ($1.delta, $1.preference, $1.request) }
            var excess = loads[full] - capacities[full]
            for mover in movers where excess > 0 {
                let request = mover.request
                loads[full] -= 1
                excess -= 1
                if let alternative = bestOption(problem.options(for: request), excluding: full, loads: loads, capacities: capacities) {
                    resource[request] = Int32(alternative.resource)
                    cost[request] = alternative.cost
                    loads[alternative.resource] += 1
                } else {
                    resource[request] = Assignment.unplacedResource
                    cost[request] = AssignmentSolver.unplacedCost
                }
            }
        }
        // Requests with no option at all stay unplaced too.

        // 3. Improve: cancel negative cycles. Needless when nothing ever overflowed, since every
        //    request then sits on its own cheapest option.
        var rounds = 0
        var proven = !everOverfull
        if everOverfull {
            let started = Date()
            while true {
                if Date().timeIntervalSince(started) > improvementBudgetSeconds { break }
                guard let cycle = findNegativeCycle(problem, resource: resource, cost: cost, loads: loads, capacities: capacities) else {
                    proven = true
                    break
                }
                rounds += 1
                for move in cycle {
                    let from = Int(resource[move.request])
                    if from >= 0 { loads[from] -= 1 }
                    resource[move.request] = Int32(move.to)
                    cost[move.request] = move.cost
                    if move.to >= 0 { loads[move.to] += 1 }
                }
            }
        }
        let unplaced = resource.filter { $0 < 0 }.count
        for request in 0..<count where resource[request] < 0 { cost[request] = 0 }
        return Assignment(resourceOfRequest: resource, costOfRequest: cost, unplaced: unplaced, provenOptimal: proven, improvementRounds: rounds)
    }

    private func bestOption(_ options: [AssignmentOption], excluding: Int, loads: [Int], capacities: [Int]) -> AssignmentOption? {
        options.first { $0.resource != excluding && loads[$0.resource] < capacities[$0.resource] }
    }

    private struct Move {
        var request: Int
        var to: Int
        var cost: Int64
    }

    /// Bellman–Ford over resources plus two virtual nodes: `unplaced` (infinite room, huge cost) and
    /// `slack`, linked from every resource with room and to every resource holding a request, so that
    /// chains of moves ending in free room are cycles too.
    private func findNegativeCycle<P: AssignmentProblem>(
        _ problem: P, resource: [Int32], cost: [Int64], loads: [Int], capacities: [Int]
    ) -> [Move]? {
        let resources = capacities.count
        let unplacedNode = resources
        let slack = resources + 1
        let nodes = resources + 2
        // Cheapest single move between each pair of nodes.
        var edgeCost = [Int64](repeating: .max, count: nodes * nodes)
        var edgeMove = [Move?](repeating: nil, count: nodes * nodes)
        func offer(from: Int, to: Int, delta: Int64, move: Move) {
            let index = from * nodes + to
            if delta < edgeCost[index] {
                edgeCost[index] = delta
                edgeMove[index] = move
            }
        }
        for request in 0..<problem.requestCount {
            let from = resource[request] >= 0 ? Int(resource[request]) : unplacedNode
            for option in problem.options(for: request) where option.resource != from {
                offer(from: from, to: option.resource, delta: option.cost - cost[request], move: Move(request: request, to: option.resource, cost: option.cost))
            }
            // A placed request may give its place up, so that another can take it.
            if from != unplacedNode {
                offer(
                    from: from, to: unplacedNode, delta: AssignmentSolver.unplacedCost - cost[request],
                    move: Move(request: request, to: Int(Assignment.unplacedResource), cost: AssignmentSolver.unplacedCost))
            }
        }
        for node in 0..<resources {
            if loads[node] < capacities[node] { edgeCost[node * nodes + slack] = 0 }
            if loads[node] > 0 { edgeCost[slack * nodes + node] = 0 }
        }
        // The unplaced pool can always give a request up or take one in.
        edgeCost[slack * nodes + unplacedNode] = 0
        edgeCost[unplacedNode * nodes + slack] = 0
        let edges = (0..<(nodes * nodes)).filter { edgeCost[$0] != .max }

        var distance = [Int64](repeating: 0, count: nodes)
        var predecessor = [Int](repeating: -1, count: nodes)
        var updated = -1
        for _ in 0..<nodes {
            updated = -1
            for edge in edges {
                let from = edge / nodes, to = edge % nodes
                // Clamped, so long chains of huge unplaced-request gains cannot overflow.
                let candidate = max(distance[from] + edgeCost[edge], Int64.min / 4)
                if candidate < distance[to] {
                    distance[to] = candidate
                    predecessor[to] = from
                    updated = to
                }
            }
            if updated < 0 { return nil }
        }
        // A node updated in the last round leads back into a negative cycle.
        var node = updated
        for _ in 0..<nodes { node = predecessor[node] }
        var cycleNodes = [node]
        var cursor = predecessor[node]
        while cursor != node {
            cycleNodes.append(cursor)
            cursor = predecessor[cursor]
        }
        cycleNodes.reverse()
        var moves: [Move] = []
        for (index, from) in cycleNodes.enumerated() {
            let to = cycleNodes[(index + 1) % cycleNodes.count]
            if let move = edgeMove[from * nodes + to] { moves.append(move) }
        }
        return moves.isEmpty ? nil : moves
    }
}
