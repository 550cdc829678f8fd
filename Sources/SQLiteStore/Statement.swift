import CSQLite

/// A prepared statement. Bound to the connection (and thread) that prepared it.
public final class Statement {
    let sqliteStatement: OpaquePointer
    public let sql: String
    private unowned let database: Database

    init(database: Database, sql: String) throws {
        var handle: OpaquePointer?
        let code = sqlite3_prepare_v3(database.sqliteConnection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil)
        guard code == SQLITE_OK, let handle else {
            throw database.error(code: code, sql: sql)
        }
        self.sqliteStatement = handle
        self.sql = sql
        self.database = database
    }

    deinit { sqlite3_finalize(sqliteStatement) }

    // MARK: - Binding (1-based, as SQLite counts)

    public func bind(_ values: [SQLiteValue]) throws {
        sqlite3_reset(sqliteStatement)
        // Values for every parameter replace the last run's all: clearing them first (each set to NULL, then bound again)
        // was 0.6% of a 0 ms run's CPU. Fewer values leave the rest NULL, as SQLite's own default.
        if values.count < Int(sqlite3_bind_parameter_count(sqliteStatement)) { sqlite3_clear_bindings(sqliteStatement) }
        for (offset, value) in values.enumerated() {
            try bind(value, at: Int32(offset + 1))
        }
    }

    public func bind(_ value: SQLiteValue, at index: Int32) throws {
        switch value {
        case .null: try bind(nil as String?, at: index)
        case .integer(let integer): try bind(integer, at: index)
        case .text(let text): try bind(text, at: index)
        }
    }

    public func bind(_ integer: Int64, at index: Int32) throws {
        let code = sqlite3_bind_int64(sqliteStatement, index, integer)
        guard code == SQLITE_OK else { throw database.error(code: code, sql: sql) }
    }

    public func bind(_ text: String?, at index: Int32) throws {
        guard var text else {
            let code = sqlite3_bind_null(sqliteStatement, index)
            guard code == SQLITE_OK else { throw database.error(code: code, sql: sql) }
            return
        }
        // The string's own bytes (a short string's from the stack): passing a `String` to C copies it to the heap.
        try text.withUTF8 { try bindText(UnsafeRawBufferPointer($0), at: index) }
    }

    /// Binds UTF-8 bytes as TEXT without building a `String` first (the ingest hot path).
    public func bindText(_ bytes: UnsafeRawBufferPointer, at index: Int32) throws {
        // SQLite binds a null pointer as NULL, not as '': empty bytes point at a literal's.
        let start = bytes.baseAddress ?? UnsafeRawPointer(("" as StaticString).utf8Start)
        let code = sqlite3_bind_text(sqliteStatement, index, start.assumingMemoryBound(to: CChar.self), Int32(bytes.count), sqliteTransient)
        guard code == SQLITE_OK else { throw database.error(code: code, sql: sql) }
    }

    // MARK: - Stepping

    /// Runs the statement to completion with the values already bound one by one
    /// (the caller binds every parameter before each run).
    public func executeBound() throws {
        while try step() {}
    }

    /// Binds UTF-8 bytes as TEXT without SQLite copying them: the bytes must stay valid and unchanged
    /// until the statement has been stepped, so call `executeBound` inside the same scope.
    public func bindBorrowedText(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int32) throws {
        let code = bytes.withMemoryRebound(to: CChar.self) { characters in
            sqlite3_bind_text(sqliteStatement, index, characters.baseAddress, Int32(characters.count), nil)
        }
        guard code == SQLITE_OK else { throw database.error(code: code, sql: sql) }
    }

    /// Runs the statement to completion, for statements that return no rows.
    public func execute(_ values: [SQLiteValue] = []) throws {
        try bind(values)
        while try step() {}
    }

    /// Advances one row: `true` when a row is available, `false` when done.
    public func step() throws -> Bool {
        switch sqlite3_step(sqliteStatement) {
        case SQLITE_ROW:
            return true
        case SQLITE_DONE:
            sqlite3_reset(sqliteStatement)
            return false
        case let code:
            sqlite3_reset(sqliteStatement)
            throw database.error(code: code, sql: sql)
        }
    }

    /// Runs the query and maps every row.
    public func rows<T>(_ values: [SQLiteValue] = [], _ transform: (Row) throws -> T) throws -> [T] {
        try bind(values)
        var result: [T] = []
        while try step() { result.append(try transform(Row(statement: self))) }
        return result
    }

    /// Runs the query and maps the first row, if any.
    public func firstRow<T>(_ values: [SQLiteValue] = [], _ transform: (Row) throws -> T) throws -> T? {
        try bind(values)
        guard try step() else { return nil }
        let value = try transform(Row(statement: self))
        sqlite3_reset(sqliteStatement)
        return value
    }

    /// Iterates rows until `body` returns false (or they run out), then leaves the statement ready to run again.
    public func scanRows(_ values: [SQLiteValue] = [], _ body: (Row) throws -> Bool) throws {
        try bind(values)
        while try step() {
            guard try body(Row(statement: self)) else {
                sqlite3_reset(sqliteStatement)
                return
            }
        }
    }

    /// Iterates rows without collecting them, for large scans.
    public func forEachRow(_ values: [SQLiteValue] = [], _ body: (Row) throws -> Void) throws {
        try bind(values)
        while try step() { try body(Row(statement: self)) }
    }
}

@available(*, unavailable)
extension Statement: Sendable {}

/// SQLite copies bound values when given this destructor.
let sqliteTransient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

/// A value to bind to a statement parameter.
public enum SQLiteValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case text(String)

    public static func int(_ value: Int) -> SQLiteValue { .integer(Int64(value)) }
    public static func optionalText(_ value: String?) -> SQLiteValue { value.map { .text($0) } ?? .null }
    public static func optionalInt64(_ value: Int64?) -> SQLiteValue { value.map { .integer($0) } ?? .null }
}

/// The current row of a stepping statement. Valid only until the next step.
public struct Row {
    let statement: Statement

    public func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(statement.sqliteStatement, column) }
    public func int(_ column: Int32) -> Int { Int(int64(column)) }
    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement.sqliteStatement, column) == SQLITE_NULL }
    public func optionalInt64(_ column: Int32) -> Int64? { isNull(column) ? nil : int64(column) }

    public func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(statement.sqliteStatement, column) else { return "" }
        let count = Int(sqlite3_column_bytes(statement.sqliteStatement, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    public func optionalText(_ column: Int32) -> String? { isNull(column) ? nil : text(column) }

    /// A column of up to 16 hexadecimal digits as the number they write, read in place (no string is made); nil when
    /// NULL, empty, longer, or not hexadecimal.
    public func hexadecimal(_ column: Int32) -> UInt64? {
        guard let pointer = sqlite3_column_text(statement.sqliteStatement, column) else { return nil }
        let count = Int(sqlite3_column_bytes(statement.sqliteStatement, column))
        guard count > 0, count <= 16 else { return nil }
        var value: UInt64 = 0
        for index in 0..<count {
            let byte = pointer[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }
}
