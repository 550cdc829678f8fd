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

    package init(
        id: Int64, name: String, project: String, source: String, submittedAt: Int64, maxCost: Money? = nil,
        requestCount: Int, rejectedCount: Int
    ) {
        self.id = id
        self.name = name
        self.project = project
        self.source = source
        self.submittedAt = submittedAt
        self.maxCost = maxCost
        self.requestCount = requestCount
        self.rejectedCount = rejectedCount
    }
}
