/// A request this worker holds a lease on, with everything needed to call for it.
public struct ClaimedRequest: Sendable {
    public var id: Int64
    public var jobID: Int64
    public var customID: String
    public var shape: RequestShape
    public var needs: RequestNeeds
    public var referenceModel: String?
    public var deadlineAt: Int64
    public var maxCost: Money?
    /// Tries so far, this one included (counted at claim).
    public var attempts: Int
    public var plannedModel: String
    public var plannedMode: DispatchMode
    public var body: String
    /// The latest moment the call may start and still finish by the deadline, as planned.
    public var latestStart: Int64
    /// Claimed to move off its planned model, whose present rate would not reach this request by its latest start (its
    /// provider's 429s hold it below the rate the plan counted on, or the plan was made a while before the run): a
    /// model with room now serves it instead.
    public var spillsOver = false

    var plannable: PlannableRequest {
        PlannableRequest(id: id, needs: needs, referenceModel: referenceModel, deadlineAt: deadlineAt, maxCost: maxCost)
    }
}

/// One call as recorded in `attempts`.
struct AttemptRecord: Sendable {
    var model: String
    var provider: String
    var mode: DispatchMode
    var startedAt: Int64
    var latencyMilliseconds: Int64
    var status: Int?
    var outcome: String
    var error: String?
    var usage: Usage?
    var simulated: Bool
}
