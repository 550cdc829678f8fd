import Foundation
import Testing
@testable import SQLiteStore
import TestSupport

private func temporaryPath(_ name: String = "test.db") -> String {
    let directory = testFiles.appendingPathComponent("purser-sqlite-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory.appendingPathComponent(name).path
}

@Test func newDatabaseIsPrivateAndInWALMode() throws {
    let path = temporaryPath()
    let database = try Database(path: path)
    #expect(try database.scalarText("PRAGMA journal_mode") == "wal")
    #expect(try database.scalarInt("PRAGMA foreign_keys") == 1)
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
}

@Test func errorCarriesCodeMessageAndSQL() throws {
    let database = try Database(path: temporaryPath())
    try database.execute("CREATE TABLE parent(id INTEGER PRIMARY KEY); CREATE TABLE child(parent_id INTEGER REFERENCES parent(id))")
    let insert = "INSERT INTO child(parent_id) VALUES (?)"
    do {
        try database.statement(insert).execute([.integer(42)])
        Issue.record("expected a foreign key failure")
    } catch let error as SQLiteError {
        #expect(error.isConstraintViolation)
        #expect(error.description == "SQLite error 787: FOREIGN KEY constraint failed - while executing `\(insert)`")
    }
}

@Test func failedWriteTransactionRollsBack() throws {
    let database = try Database(path: temporaryPath())
    try database.execute("CREATE TABLE t(value TEXT)")
    struct Stop: Error {}
    #expect(throws: Stop.self) {
        try database.writeTransaction {
            try database.statement("INSERT INTO t(value) VALUES (?)").execute([.text("kept?")])
            throw Stop()
        }
    }
    #expect(try database.scalarInt("SELECT count(*) FROM t") == 0)
    try database.writeTransaction {
        try database.statement("INSERT INTO t(value) VALUES (?)").execute([.text("kept")])
    }
    #expect(try database.scalarText("SELECT value FROM t") == "kept")
}

@Test func statementsAreCachedBySQL() throws {
    let database = try Database(path: temporaryPath())
    let first = try database.statement("SELECT 1")
    let second = try database.statement("SELECT 1")
    #expect(first === second)
}

@Test func migrationsApplyOnceAndInOrder() throws {
    let path = temporaryPath()
    let migrator = Migrator([
        Migration(version: 1, sql: "CREATE TABLE a(x)"),
        Migration(version: 2, sql: "ALTER TABLE a ADD COLUMN y"),
    ])
    try migrator.migrate(try Database(path: path))
    let database = try Database(path: path)
    try migrator.migrate(database)
    #expect(try database.scalarInt("PRAGMA user_version") == 2)
    #expect(try database.statement("SELECT name FROM pragma_table_info('a') ORDER BY cid").rows { $0.text(0) } == ["x", "y"])
}

@Test func newerSchemaIsRefused() throws {
    let database = try Database(path: temporaryPath())
    try database.execute("PRAGMA user_version = 9")
    #expect(throws: SQLiteError.self) { try Migrator([Migration(version: 1, sql: "CREATE TABLE a(x)")]).migrate(database) }
}

@Test func textIsBoundWhole() throws {
    let database = try Database(path: temporaryPath())
    try database.execute("CREATE TABLE t(value TEXT)")
    let long = String(repeating: "an answer ", count: 500)
    for text in ["", "short", "a\u{0}b", "é ☃ 🙂", long] {
        try database.statement("INSERT INTO t(value) VALUES (?)").execute([.text(text)])
    }
    // An empty text is '' (not NULL), and a NUL inside a text does not cut it short.
    let stored = try database.statement("SELECT value IS NULL, length(CAST(value AS BLOB)), value FROM t ORDER BY rowid").rows {
        ($0.int(0), $0.int(1), $0.text(2))
    }
    #expect(stored.map(\.0) == [0, 0, 0, 0, 0])
    #expect(stored.map(\.1) == [0, 5, 3, "é ☃ 🙂".utf8.count, long.utf8.count])
    #expect(stored.last?.2 == long)
}

/// A statement that changes many rows inside a transaction keeps a journal of its own, to undo itself alone; past the
/// size this process keeps in memory, SQLite writes it to a file in pieces as large as that size, and its Unix layer
/// writes at most 128 KiB at once. A larger setting failed such a statement with "database or disk is full" (planning
/// a job of a million requests did), so this one changes about 6 MiB of pages in one statement, on 16 KiB pages.
@Test func aStatementChangingMegabytesInATransactionIsWritten() throws {
    let database = try Database(path: temporaryPath(), pageSize: 16_384)
    try database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, value TEXT NOT NULL CHECK (length(value) > 0))")
    let rows = 20_000
    try database.writeTransaction {
        let insert = try database.statement("INSERT INTO t (value) VALUES (?)")
        for index in 0..<rows { try insert.execute([.text(String(repeating: "v", count: 300) + String(index))]) }
    }
    try database.writeTransaction {
        try database.statement("UPDATE t SET value = value || 'x'").execute()
    }
    #expect(try database.scalarInt("SELECT count(*) FROM t WHERE value LIKE '%x'") == Int64(rows))
}
