/// One thing wrong in the pricing tables, located by file and key path.
public struct PricingProblem: Error, Sendable, Hashable, CustomStringConvertible {
    public let file: String
    public let key: String
    public let message: String

    public init(file: String, key: String, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String { key.isEmpty ? "\(file): \(message)" : "\(file): \(key): \(message)" }
}

/// Everything wrong with a set of pricing tables.
public struct PricingTablesInvalid: Error, Sendable, CustomStringConvertible {
    public let problems: [PricingProblem]
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}
