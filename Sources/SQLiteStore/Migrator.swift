/// One step of the schema, applied once, in order, recorded in `PRAGMA user_version`.
public struct Migration: Sendable {
    public let version: Int
    public let sql: String

    public init(version: Int, sql: String) {
        self.version = version
        self.sql = sql
    }
}

/// Applies pending migrations, each in its own write transaction.
public struct Migrator: Sendable {
    public let migrations: [Migration]

    public init(_ migrations: [Migration]) {
        precondition(migrations.map(\.version) == Array(1...migrations.count), "migrations are numbered 1, 2, 3…")
        self.migrations = migrations
    }

    public func migrate(_ database: Database) throws {
        let current = Int(try database.scalarInt("PRAGMA user_version") ?? 0)
        guard current <= migrations.count else {
            throw SQLiteError(
                code: 1,
                message: "\(database.path) has schema version \(current), newer than this purser knows (\(migrations.count)); upgrade purser")
        }
        for migration in migrations where migration.version > current {
            try database.writeTransaction {
                try database.execute(migration.sql)
                // user_version takes no parameters; the value is a constant from this file.
                try database.execute("PRAGMA user_version = \(migration.version)")
            }
        }
    }
}
