import PurserCore
import SQLiteStore

/// One Purser database as a front end opens it: its books, each over the one connection. The front ends never see
/// the connection itself, so they cannot write SQL; what they may do is what the books offer.
public struct StoreFile {
    let database: Database

    /// Opens the database at `path`, creating it and its schema if needed.
    public static func open(path: String) throws -> StoreFile { StoreFile(database: try PurserDatabase.open(path: path)) }

    /// Opens an existing database to read it, writing nothing (so it works in a read-only folder).
    public static func openForReading(path: String) throws -> StoreFile { StoreFile(database: try PurserDatabase.openForReading(path: path)) }

    public var jobs: JobStore { JobStore(database: database) }
    public var results: ResultStore { ResultStore(database: database) }
    public var ledger: Ledger { Ledger(database: database) }
    public var reports: ReportStore { ReportStore(database: database) }
    public var plans: PlanStore { PlanStore(database: database) }
    public var planning: JobPlanning { JobPlanning(database: database) }

    public func submitter(catalog: PricingCatalog, clock: WallClock) -> JobSubmitter {
        JobSubmitter(database: database, catalog: catalog, clock: clock)
    }

    /// Writes the database's log into its file and empties the log, so that the file alone holds everything stored. The
    /// last connection to close does this by itself; a serve's threads may still hold theirs when the process exits.
    /// False when the log could not be emptied (another process is reading or writing the database).
    public func writeLogIntoFile() throws -> Bool {
        // Its first column is 1 when a reader or writer kept the log from being written out and emptied.
        try database.scalarInt("PRAGMA wal_checkpoint(TRUNCATE)") == 0
    }
}

extension StoreFile {
    /// The use cases over this database.
    public var workspace: Workspace { Workspace(jobs: jobs, budgets: ledger, results: results, planning: PlanningFile(database: database), reports: reports) }
}

extension JobStore: JobBook {}
extension Ledger: BudgetBook {}
extension ReportStore: ReportBook {}
extension ResultStore: ResultBook {}

/// Planning on demand: the plan from `JobPlanning`, the request ids from `PlanStore`.
struct PlanningFile: PlanningBook {
    let database: Database

    func plan(_ request: PlanningRequest) throws -> PlanningOutcome { try JobPlanning(database: database).plan(request) }
    func plannableRequestID(job: Int64, customID: String) throws -> Int64? { try PlanStore(database: database).plannableRequestID(job: job, customID: customID) }
}
