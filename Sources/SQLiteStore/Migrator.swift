/// One step of the schema, applied once, in order, recorded in `PRAGMA user_version`.
public struct Migration: Sendable {
    public let version: Int
    public let sql: String
    /// A step that rebuilds a table others refer to runs with foreign-key enforcement off (dropping the old
    /// table would otherwise cascade to its children), then checks every reference before committing.
    public let rebuildsTables: Bool

    public init(version: Int, sql: String, rebuildsTables: Bool = false) {
        self.version = version
        self.sql = sql
        self.rebuildsTables = rebuildsTables
    }
}

/// A database at schema version 0 that already holds tables was written by something else: migrating it
/// would mix this schema into another program's data.
public struct ForeignDatabase: Error, CustomStringConvertible {
    public let path: String
    public init(path: String) { self.path = path }
    public var description: String {
        "\(path) is an SQLite database that another program wrote (it has tables but no schema version); pass --db PATH to a Purser database or to a new file"
    }
}

/// Applies pending migrations, each in its own write transaction. The version is read inside that
/// transaction, so several processes opening a new file at once apply each step exactly once: the others
/// wait on the lock, then find it done.
public struct Migrator: Sendable {
    public let migrations: [Migration]

    public init(_ migrations: [Migration]) {
        precondition(migrations.map(\.version) == Array(1...migrations.count), "migrations are numbered 1, 2, 3…")
        self.migrations = migrations
    }

    public func migrate(_ database: Database) throws {
        // A quick look first, so an up-to-date file costs no write lock.
        if try version(of: database) == migrations.count { return }
        for migration in migrations {
            guard migration.rebuildsTables else {
                try apply(migration, to: database)
                continue
            }
            // foreign_keys cannot change inside a transaction, so it is switched around the step's own.
            try database.execute("PRAGMA foreign_keys = OFF")
            var failure: (any Error)?
            do { try apply(migration, to: database) } catch { failure = error }
            try database.execute("PRAGMA foreign_keys = ON")
            if let failure { throw failure }
        }
    }

    private func apply(_ migration: Migration, to database: Database) throws {
        try database.writeTransaction {
            let current = try version(of: database)
            guard current < migration.version else { return }
            if current == 0, try database.scalarInt("SELECT count(*) FROM sqlite_master") != 0 {
                throw ForeignDatabase(path: database.path)
            }
            try database.execute(migration.sql)
            if migration.rebuildsTables, try database.scalarInt("SELECT count(*) FROM pragma_foreign_key_check") != 0 {
                throw SQLiteError(code: 19, message: "migration \(migration.version) would break a reference between tables; nothing was changed")
            }
            // user_version takes no parameters; the value is a constant from this file.
            try database.execute("PRAGMA user_version = \(migration.version)")
        }
    }

    private func version(of database: Database) throws -> Int {
        let current = Int(try database.scalarInt("PRAGMA user_version") ?? 0)
        guard current >= 0 else {
            throw SQLiteError(
                code: 1, message: "its schema version is \(current), which no purser writes: it is not a Purser database; pass --db PATH to one")
        }
        guard current <= migrations.count else {
            throw SQLiteError(
                code: 1,
                message: "\(database.path) has schema version \(current), newer than this purser knows (\(migrations.count)); upgrade purser")
        }
        return current
    }
}
