/// A sentence telling the user what is wrong with something they wrote and what to do.
public struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
