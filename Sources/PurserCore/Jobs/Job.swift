/// A submitted job file as stored.
public struct Job: Sendable, Hashable {
    public var id: Int64
    public var name: String
    public var project: String
    public var source: String
    public var submittedAt: Int64
    public var maxCost: Money?
    public var requestCount: Int
    public var rejectedCount: Int
}
