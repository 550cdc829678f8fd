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
    /// The request's prefix group: its leading content's estimated tokens and how many requests of its job share it.
    public var prefixGroup: PrefixGroup?
    /// Its worst case's reservation as the claim made it, handed back with the answer so that storing it need not read
    /// the reservation again (`StoringAnswer`); nil where the store does not say.
    public var reservation: Reservation?

    /// When a claimed request's worst case was reserved, and under which project: the month and project its answer is
    /// billed to. A reservation moved to another model keeps both (`RequestQueue.moveReservation`).
    public struct Reservation: Sendable, Equatable {
        public var reservedAt: Int64
        public var project: String

        public init(reservedAt: Int64, project: String) {
            self.reservedAt = reservedAt
            self.project = project
        }
    }

    public var plannable: PlannableRequest {
        PlannableRequest(id: id, needs: needs, referenceModel: referenceModel, deadlineAt: deadlineAt, maxCost: maxCost)
    }

    public init(
        id: Int64, jobID: Int64, customID: String, shape: RequestShape, needs: RequestNeeds, referenceModel: String? = nil, deadlineAt: Int64, maxCost: Money? = nil, attempts: Int, plannedModel: String, plannedMode: DispatchMode, body: String, latestStart: Int64,
        spillsOver: Bool = false
    ) {
        self.id = id
        self.jobID = jobID
        self.customID = customID
        self.shape = shape
        self.needs = needs
        self.referenceModel = referenceModel
        self.deadlineAt = deadlineAt
        self.maxCost = maxCost
        self.attempts = attempts
        self.plannedModel = plannedModel
        self.plannedMode = plannedMode
        self.body = body
        self.latestStart = latestStart
        self.spillsOver = spillsOver
    }
}

/// One call as recorded in `attempts`.
public struct AttemptRecord: Sendable {
    public var model: String
    public var provider: String
    public var mode: DispatchMode
    public var startedAt: Int64
    public var latencyMilliseconds: Int64
    public var status: Int?
    public var outcome: String
    public var error: String?
    public var usage: Usage?
    public var simulated: Bool

    public init(
        model: String, provider: String, mode: DispatchMode, startedAt: Int64, latencyMilliseconds: Int64,
        status: Int? = nil, outcome: String, error: String? = nil, usage: Usage? = nil, simulated: Bool
    ) {
        self.model = model
        self.provider = provider
        self.mode = mode
        self.startedAt = startedAt
        self.latencyMilliseconds = latencyMilliseconds
        self.status = status
        self.outcome = outcome
        self.error = error
        self.usage = usage
        self.simulated = simulated
    }
}

/// A request's place among its job's requests that begin with the same content (`PromptPrefix.group`).
public struct PrefixGroup: Sendable, Hashable {
    public var id: String
    /// The shared content's estimated tokens.
    public var tokens: Int
    /// Requests of the job in the group, this one among them.
    public var requests: Int

    public init(id: String, tokens: Int, requests: Int) {
        self.id = id
        self.tokens = tokens
        self.requests = requests
    }
}
