import Foundation

/// The batches of one database: formed from ready requests (their money reserved as for a live call), then each step
/// recorded once — uploaded, created, polled, ended, results stored — or closed, with its requests planned again.
/// Every write is one atomic step, and every step's write is made only by the run holding the batch's lease (else it
/// throws `BatchLeaseLost` and writes nothing).
public protocol BatchBook: Sendable {
    /// The database's own random id, in every batch's custom ids and metadata.
    var databaseID: String { get }

    /// Puts ready requests planned for batch mode into new batches, reserving their worst case.
    func formBatches(now: Int64, job: Int64?, excludedModels: [String], simulated: Bool, catalog: PricingCatalog) async throws -> FormedBatches
    /// Batches with a step due now, leased to this run until `leaseUntil`.
    func batchesToAdvance(now: Int64, leaseUntil: Int64) async throws -> [BatchRow]
    /// When the next batch step falls due.
    func nextBatchStep() async throws -> Int64?
    func openBatchProgress(job: Int64?, now: Int64, window: Int64) async throws -> [OpenBatchProgress]
    func openBatches() async throws -> (batches: Int, requests: Int)
    func releaseBatchLeases() async throws
    func extendBatchLeases(until: Int64) async throws

    /// Up to `limit` of a batch's members after line `afterLine`, in line order, each with its body as stored: what its
    /// input file is written from (`BatchInputFile`), page by page, so the store is never held by file I/O.
    func batchInputPage(_ batch: Int64, afterLine: Int64, limit: Int) async throws -> [StoredBatchLine]
    /// The calls a provider batch holds, by custom id (the simulator serves them).
    func batchCalls(providerBatchID: String, catalog: PricingCatalog) async throws -> [(customID: String, call: ProviderCall)]
    func knownProviderBatchIDs(provider: String) async throws -> Set<String>
    func recordForeignCandidate(_ id: Int64, providerBatchID: String) async throws
    func recordBatchUploadStarted(_ id: Int64, now: Int64) async throws
    func recordBatchUpload(_ id: Int64, fileID: String) async throws
    func recordBatchCreateStarted(_ id: Int64, now: Int64) async throws
    func recordBatchCreated(_ id: Int64, providerBatchID: String, now: Int64, nextPoll: Int64) async throws
    func recordBatchPoll(_ id: Int64, status: BatchStatus, now: Int64, nextPoll: Int64) async throws
    func recordBatchCancelRequested(_ id: Int64, now: Int64) async throws
    func recordBatchError(_ id: Int64, message: String, retryAt: Int64) async throws

    /// The batch's requests named by these provider custom ids.
    func batchMembers(_ batch: Int64, providerCustomIDs: [String]) async throws -> [String: BatchMember]
    /// Stores one chunk of a batch's result lines (successes through the one success write).
    func applyBatchResults(
        _ batch: BatchRow, lines: [(line: BatchResultLine, member: BatchMember?, decision: BatchDecision?)], now: Int64, catalog: PricingCatalog
    ) async throws -> BatchResultCounts
    /// The per-line errors of a batch's error file, by line.
    func batchErrors(_ id: Int64) async throws -> [Int: String]
    /// Closes a batch: its requests still in it are planned again (or failed).
    func finishBatch(
        _ batch: BatchRow, reason: String, lineErrors: [Int: String], liveOnly: Bool, unanswered: UnansweredLines
    ) async throws -> (replanned: Int, failed: Int)
    /// Takes a batch's requests back to be served live; how many.
    func detachBatch(_ batch: BatchRow, now: Int64, reason: String) async throws -> Int
    /// Gives a batch up before it was sent; how many requests went back.
    func abandonBatch(_ batch: BatchRow, reason: String) async throws -> Int
}

extension BatchBook {
    @discardableResult
    public func finishBatch(
        _ batch: BatchRow, reason: String, lineErrors: [Int: String], liveOnly: Bool = false
    ) async throws -> (replanned: Int, failed: Int) {
        try await finishBatch(batch, reason: reason, lineErrors: lineErrors, liveOnly: liveOnly, unanswered: .notBilled)
    }
}

/// A batch step's write refused: this run no longer holds the batch's lease (it lapsed, and another run took the
/// batch over). Nothing of the step was stored; the batch is that run's to carry on.
public struct BatchLeaseLost: Error, Sendable, Equatable, CustomStringConvertible {
    public var batch: Int64
    /// Who holds it now, if anyone.
    public var holder: String?

    public init(batch: Int64, holder: String?) {
        self.batch = batch
        self.holder = holder
    }

    public var description: String { "batch \(batch) is no longer this run's (\(holder.map { "leased by \($0)" } ?? "its lease was handed back"))" }
}

/// A member of a batch as its input file needs it: its line, the provider's custom id and the body in its stored dialect.
public struct StoredBatchLine: Sendable {
    public var line: Int64
    public var providerCustomID: String
    public var shape: RequestShape
    public var body: String

    public init(line: Int64, providerCustomID: String, shape: RequestShape, body: String) {
        self.line = line
        self.providerCustomID = providerCustomID
        self.shape = shape
        self.body = body
    }
}
