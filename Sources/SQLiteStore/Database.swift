import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// One connection to a SQLite file: WAL mode, a busy timeout, foreign keys on,
/// a cache of prepared statements, and `BEGIN IMMEDIATE` write transactions.
public final class Database {
    var sqliteConnection: OpaquePointer
    public let path: String
    private var statementCache: [String: Statement] = [:]
    private var transactionDepth = 0

    /// Opens (creating with mode 0600 if needed) the database at `path`. `pageSize` applies only to a
    /// new file (SQLite fixes it when the file is first written).
    public init(path: String, busyTimeoutMilliseconds: Int32 = 10_000, pageSize: Int? = nil) throws {
        self.path = path
        try Database.createPrivately(path)
        self.sqliteConnection = try Database.connect(path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX)
        let handle = sqliteConnection
        sqlite3_busy_timeout(handle, busyTimeoutMilliseconds)
        do {
            if let pageSize {
                // A whole number from the caller, not user input: PRAGMA takes no parameters.
                try execute("PRAGMA page_size = \(pageSize)")
            }
            let journalMode = try scalarText("PRAGMA journal_mode = WAL")
            guard journalMode?.lowercased() == "wal" else {
                throw SQLiteError(code: SQLITE_ERROR, message: "journal_mode answered \(journalMode ?? "nothing"), not wal", sql: "PRAGMA journal_mode = WAL")
            }
            try execute("PRAGMA foreign_keys = ON")
            try execute("PRAGMA synchronous = NORMAL")
        } catch {
            statementCache.removeAll()
            sqlite3_close_v2(handle)
            throw error
        }
    }

    /// Opens an existing database only to read it, without writing anything beside it: usable in a read-only
    /// folder. A write-ahead-logged file whose folder is read-only cannot get its shared-memory file, so it is
    /// then opened as immutable, which is safe because no writer can be active there either.
    public init(readingExisting path: String, busyTimeoutMilliseconds: Int32 = 10_000) throws {
        self.path = path
        let flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX
        let readOnly = try Database.connect(Database.fileURI(path, "mode=ro"), flags: flags)
        // Before the first read: a writer closing the file (checkpointing its log) holds it for a moment.
        sqlite3_busy_timeout(readOnly, busyTimeoutMilliseconds)
        sqliteConnection = readOnly
        do {
            // The first read is where a missing shared-memory file shows.
            _ = try scalarInt("SELECT count(*) FROM sqlite_master")
        } catch let error as SQLiteError where [SQLITE_CANTOPEN, SQLITE_READONLY].contains(error.primaryCode) {
            let immutable = try Database.connect(Database.fileURI(path, "immutable=1"), flags: flags)
            statementCache.removeAll()
            sqlite3_close_v2(readOnly)
            sqliteConnection = immutable
        }
        try execute("PRAGMA foreign_keys = ON")
    }

    /// Set before the process's first connection: statement journals stay in memory up to `statementJournalInMemory`
    /// bytes rather than SQLite's 64 KiB. A statement that changes many rows inside a transaction keeps one, to undo
    /// itself alone, and past that size it is a temporary file made and deleted each time (a claim's lease made 241 in a
    /// run of 20,000 calls at 0 ms, before its updates became `OR FAIL`, which keep none).
    private static let configured: Void = { _ = purser_sqlite_set_statement_journal_spill(Database.statementJournalInMemory) }()

    /// The most SQLite's Unix layer writes at once (its `seekAndWriteFd` keeps a length's low 17 bits): a journal that
    /// outgrows memory is written to its file in pieces as large as this setting, and a larger piece fails its statement
    /// with "database or disk is full". At 4 MiB, planning a million requests did (`aStatementChangingMegabytes…`).
    static let statementJournalInMemory: Int32 = 0x1_FFFF

    private static func connect(_ name: String, flags: Int32) throws -> OpaquePointer {
        _ = Database.configured
        var handle: OpaquePointer?
        let code = sqlite3_open_v2(name, &handle, flags, nil)
        guard code == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let handle { sqlite3_close_v2(handle) }
            throw SQLiteError(code: code, message: "\(message) (\(name))")
        }
        sqlite3_extended_result_codes(handle, 1)
        return handle
    }

    /// `file:` URI for a path, with the characters URIs reserve escaped.
    private static func fileURI(_ path: String, _ query: String) -> String {
        var escaped = ""
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "?"), UInt8(ascii: "#"), 0x80...: escaped += "%" + String(byte, radix: 16, uppercase: true)
            default: escaped.unicodeScalars.append(Unicode.Scalar(byte))
            }
        }
        return "file:\(escaped)?\(query)"
    }

    deinit {
        statementCache.removeAll()
        sqlite3_close_v2(sqliteConnection)
    }

    /// SQLite creates new files with the process umask; Purser's file holds spend data, so it is private. An existing
    /// file is never opened here: closing a descriptor of a file drops every POSIX lock this process holds on it,
    /// which would take the locks of the other connections this process has open to it (the service has several).
    private static func createPrivately(_ path: String) throws {
        guard path != ":memory:", !path.isEmpty else { return }
        var status = stat()
        if stat(path, &status) == 0 { return }
        let descriptor = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        if descriptor < 0 && errno == EEXIST { return }
        guard descriptor >= 0 else {
            throw SQLiteError(code: SQLITE_CANTOPEN, message: "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        close(descriptor)
    }

    // MARK: - Statements

    /// Runs constant SQL (one or several statements, no parameters).
    public func execute(_ sql: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let code = sqlite3_exec(sqliteConnection, sql, nil, nil, &errorMessage)
        guard code == SQLITE_OK else {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(sqliteConnection))
            sqlite3_free(errorMessage)
            throw SQLiteError(code: code, message: message, sql: sql)
        }
    }

    /// A prepared statement for `sql`, reused across calls.
    public func statement(_ sql: String) throws -> Statement {
        if let cached = statementCache[sql] { return cached }
        let statement = try Statement(database: self, sql: sql)
        statementCache[sql] = statement
        return statement
    }

    public func scalarInt(_ sql: String, _ values: [SQLiteValue] = []) throws -> Int64? {
        try statement(sql).firstRow(values) { $0.optionalInt64(0) } ?? nil
    }

    public func scalarText(_ sql: String, _ values: [SQLiteValue] = []) throws -> String? {
        try statement(sql).firstRow(values) { $0.optionalText(0) } ?? nil
    }

    public var changes: Int { Int(sqlite3_changes(sqliteConnection)) }
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(sqliteConnection) }

    // MARK: - Transactions

    /// Runs `body` with foreign-key enforcement off, for bulk writes whose references hold by
    /// construction (checking each one costs a lookup per row). Must be called outside a transaction.
    public func withoutForeignKeyChecks<T>(_ body: () throws -> T) throws -> T {
        precondition(transactionDepth == 0, "foreign_keys cannot change inside a transaction")
        try execute("PRAGMA foreign_keys = OFF")
        let result: Result<T, any Error> = Result { try body() }
        // Back on before anything else runs on this connection; a failure here is reported, never dropped.
        try execute("PRAGMA foreign_keys = ON")
        return try result.get()
    }

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction: committed if it returns, rolled back if it throws.
    /// Nested calls join the outer transaction.
    public func writeTransaction<T>(_ body: () throws -> T) throws -> T {
        try transaction(begin: "BEGIN IMMEDIATE", body)
    }

    /// Runs `body` in a deferred (read) transaction, so that several reads see one snapshot.
    public func readTransaction<T>(_ body: () throws -> T) throws -> T {
        try transaction(begin: "BEGIN DEFERRED", body)
    }

    private func transaction<T>(begin: String, _ body: () throws -> T) throws -> T {
        if transactionDepth > 0 {
            transactionDepth += 1
            defer { transactionDepth -= 1 }
            return try body()
        }
        try execute(begin)
        transactionDepth = 1
        defer { transactionDepth = 0 }
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    func error(code: Int32, sql: String?) -> SQLiteError {
        SQLiteError(code: code, message: String(cString: sqlite3_errmsg(sqliteConnection)), sql: sql)
    }
}

@available(*, unavailable)
extension Database: Sendable {}
