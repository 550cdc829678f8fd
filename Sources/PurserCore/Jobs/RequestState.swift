/// Where a request is in its life: `queued → planned → running → succeeded | failed | cancelled | expired`,
/// with `held` (budget) and `waiting` (retry backoff or discount window) in between.
/// `planned` is reported, not stored: it is a queued request that has a plan.
public enum RequestState: String, Sendable, CaseIterable {
    case queued, planned, held, waiting, running, succeeded, failed, cancelled, expired

    public var isFinished: Bool { [.succeeded, .failed, .cancelled, .expired].contains(self) }
}
