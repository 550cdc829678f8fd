/// One request of a job as results show it: its outcome and, when it succeeded, the answer.
public struct ResultRow: Sendable {
    public var requestID: Int64
    public var customID: String
    public var state: RequestState
    public var lastError: String?
    public var attempts: Int
    public var answer: Answer?
    /// The last attempt's HTTP status and outcome (`retryable`, `timeout`…), for a request that did not succeed.
    public var lastStatus: Int?
    public var lastOutcome: String?

    public struct Answer: Sendable {
        public var model: String
        public var provider: String
        public var dialect: Provider.Dialect
        public var mode: String
        public var statusCode: Int
        public var providerRequestID: String?
        public var body: String
        public var usage: Usage
        public var cost: Money
        public var simulated: Bool
        /// When the answer was stored (epoch milliseconds).
        public var finishedAt: Int64 = 0

        package init(
            model: String, provider: String, dialect: Provider.Dialect, mode: String, statusCode: Int,
            providerRequestID: String? = nil, body: String, usage: Usage, cost: Money, simulated: Bool,
            finishedAt: Int64 = 0
        ) {
            self.model = model
            self.provider = provider
            self.dialect = dialect
            self.mode = mode
            self.statusCode = statusCode
            self.providerRequestID = providerRequestID
            self.body = body
            self.usage = usage
            self.cost = cost
            self.simulated = simulated
            self.finishedAt = finishedAt
        }
    }

    package init(
        requestID: Int64, customID: String, state: RequestState, lastError: String? = nil, attempts: Int,
        answer: Answer? = nil, lastStatus: Int? = nil, lastOutcome: String? = nil
    ) {
        self.requestID = requestID
        self.customID = customID
        self.state = state
        self.lastError = lastError
        self.attempts = attempts
        self.answer = answer
        self.lastStatus = lastStatus
        self.lastOutcome = lastOutcome
    }
}
