import Foundation
@testable import PurserCLI
import PurserCore
@testable import PurserSQLite
import SQLiteStore
import Testing

// Words and exit codes for what hostile input and a broken environment do to the command line.

@Test func flagsOutOfTheirRangeAreUsageErrorsNamingTheFlag() async {
    let database = temporaryDatabasePath()
    let cases: [([String], String)] = [
        (["run", "--concurrency", "100000000"], "Error: --concurrency: '100000000' is not a whole number from 1 to 100000."),
        (["run", "--concurrency", "0"], "Error: --concurrency: '0' is not a whole number from 1 to 100000."),
        (["submit", "x.jsonl", "--deadline", "106751991d"], "Error: --deadline: deadline '106751991d' is beyond the horizon of 366d; give one within it."),
        (["submit", "x.jsonl", "--deadline", "106751991167d"], "Error: --deadline: deadline '106751991167d' is beyond the horizon of 366d"),
        (["estimate", "x.jsonl", "--deadline", "99999999999999999999h"], "Error: --deadline: "),
    ]
    for (arguments, expected) in cases {
        let run = await purser(arguments, database: database)
        #expect(run.code == 64, "\(arguments)")
        #expect(run.error.hasPrefix(expected), "\(arguments): \(run.error)")
    }
    #expect(!FileManager.default.fileExists(atPath: database), "a usage error creates no database")
}

@Test func aFileThatIsNotAPurserDatabaseIsNamedAndLeftAlone() async throws {
    let folder = URL(fileURLWithPath: temporaryDatabasePath()).deletingLastPathComponent()
    let quickstart = repository.appendingPathComponent("jobs/quickstart.jsonl").path

    let text = folder.appendingPathComponent("notes.db").path
    try Data("hello, this is not a database\n".utf8).write(to: URL(fileURLWithPath: text))
    for arguments in [["status"], ["submit", quickstart]] {
        let run = await purser(arguments, database: text)
        #expect(run.code == 1)
        #expect(run.error == "Error: \(text): the file is not a Purser database; pass --db PATH to the right one (SQLite 26: file is not a database)\n")
    }
    #expect(try String(contentsOfFile: text, encoding: .utf8) == "hello, this is not a database\n")

    // Another program's SQLite file: no Purser table is mixed into it.
    let foreign = folder.appendingPathComponent("other.db").path
    do {
        let database = try Database(path: foreign)
        try database.execute("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me')")
    }
    for arguments in [["status"], ["submit", quickstart]] {
        let run = await purser(arguments, database: foreign)
        #expect(run.code == 1)
        #expect(run.error.hasPrefix("Error: \(foreign) is an SQLite database that another program wrote"), "\(run.error)")
    }
    let check = try Database(path: foreign)
    #expect(try check.scalarText("SELECT group_concat(name) FROM sqlite_master") == "notes")
    #expect(try check.scalarText("SELECT body FROM notes") == "keep me")

    // An empty file is a new database to a command that writes, and says so to one that reads.
    let empty = folder.appendingPathComponent("empty.db").path
    #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
    let status = await purser(["status"], database: empty)
    #expect(status.code == 1)
    #expect(status.error == "Error: \(empty) holds no Purser data yet (it is empty); submit a job first, or pass --db PATH\n")
    #expect(await purser(["submit", quickstart], database: empty).code == 0)
}

@Test func readCommandsChangeNothingAndWorkInAReadOnlyFolder() async throws {
    let database = temporaryDatabasePath()
    let folder = URL(fileURLWithPath: database).deletingLastPathComponent()
    #expect(await purser(["submit", repository.appendingPathComponent("jobs/quickstart.jsonl").path], database: database).code == 0)
    #expect(await purser(["budget", "set", "100"], database: database).code == 0)
    #expect(await purser(["plan", "1", "--simulate"], database: database).code == 0)
    func snapshot() throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) {
            files[name] = try Data(contentsOf: folder.appendingPathComponent(name))
        }
        return files
    }
    let before = try snapshot()
    #expect(before.keys.sorted() == ["purser.db"], "the commands above closed the database and left no WAL behind")

    try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: database)
    try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: folder.path)
    defer {
        try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path)
        try? FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: database)
    }
    let reads: [[String]] = [
        ["status"], ["status", "1", "--json"], ["results", "1"], ["results", "1", "--format", "csv"], ["results", "1", "--format", "anthropic"],
        ["report"], ["report", "--format", "html"], ["report", "--json"], ["budget", "show"], ["budget", "show", "--json"],
    ]
    for arguments in reads {
        let run = await purser(arguments, database: database)
        #expect(run.code == 0, "\(arguments): \(run.error)")
        #expect(!run.error.contains("SQLite"), "\(arguments): \(run.error)")
    }
    // The database byte for byte the same. As root the folder stays writable, and a read-only SQLite connection
    // there makes the write-ahead log's index files (-shm, and an empty -wal) as any reader of a WAL file does.
    let after = try snapshot()
    #expect(after["purser.db"] == before["purser.db"])
    #expect(Set(after.keys).isSubset(of: ["purser.db", "purser.db-wal", "purser.db-shm"]))
    #expect(after["purser.db-wal"]?.isEmpty ?? true, "nothing was written to the log")
    // What the read commands open cannot write, whoever runs them.
    let reading = try PurserDatabase.openForReading(path: database)
    #expect(throws: SQLiteError.self) { try reading.execute("DELETE FROM jobs") }
    #expect(try reading.scalarInt("SELECT count(*) FROM jobs") == 1)
}

@Test func theSameWarningAtOnceIsPrintedOnce() {
    final class Lines: @unchecked Sendable { var text = "" }
    let lines = Lines()
    let reporter = RunReporter(console: Console(out: { _ in }, error: { lines.text += $0 }), json: false, simulated: false)
    for _ in 0..<3 { reporter.report(.notice(.providerResumed(provider: "fakeopenai"))) }
    reporter.report(.notice(.providerResumed(provider: "other")))
    let printed = lines.text.split(separator: "\n")
    #expect(printed.count == 2, "\(printed)")
    #expect(printed.filter { $0.contains("fakeopenai") }.count == 1)
}

@Test func aFolderADeviceOrANegativeSchemaVersionIsNamedForWhatItIs() async throws {
    let folder = URL(fileURLWithPath: temporaryDatabasePath()).deletingLastPathComponent().path
    let quickstart = repository.appendingPathComponent("jobs/quickstart.jsonl").path
    for arguments in [["status"], ["submit", quickstart]] {
        let run = await purser(arguments, database: folder)
        #expect(run.code == 1 && run.error == "Error: \(folder) is a folder, not a database file; pass --db PATH to a file (it is created when missing)\n", "\(run.error)")
        let device = await purser(arguments, database: "/dev/null")
        #expect(device.code == 1 && device.error.hasPrefix("Error: /dev/null is not a regular file (a device, a pipe or a socket)"), "\(device.error)")
    }
    #expect(!FileManager.default.fileExists(atPath: "/dev/null-journal"), "nothing is written beside a device")
    let negative = folder + "/negative.db"
    do {
        let database = try Database(path: negative)
        try database.execute("PRAGMA user_version = -1")
    }
    let status = await purser(["status"], database: negative)
    #expect(status.error == "Error: \(negative) has schema version -1, which no purser writes: it is not a Purser database; pass --db PATH to one\n")
    let submit = await purser(["submit", quickstart], database: negative)
    #expect(submit.code == 1 && submit.error.contains("its schema version is -1, which no purser writes"), "\(submit.error)")
}

@Test func aSpeedupWithoutTheSimulatorIsAUsageError() async {
    let run = await purser(["run", "--speedup", "60"], database: temporaryDatabasePath())
    #expect(run.code == 64)
    #expect(run.error.hasPrefix("Error: --speedup shortens the simulator's latency: it goes with --simulate."), "\(run.error)")
}

@Test func anImportThatKeepsNothingLeavesTheOutputAsItWasAndFails() async throws {
    let folder = URL(fileURLWithPath: temporaryDatabasePath()).deletingLastPathComponent()
    let source = folder.appendingPathComponent("litellm.json").path
    try #"{"embedder": {"mode": "embedding", "litellm_provider": "openai"}, "sample_spec": {}}"#.write(toFile: source, atomically: true, encoding: .utf8)
    let output = folder.appendingPathComponent("models.json").path
    try "kept as it was\n".write(toFile: output, atomically: true, encoding: .utf8)
    let run = await purser(["pricing", "import-litellm", source, "--output", output])
    #expect(run.code == 1)
    #expect(run.error.contains("none of its 2 entries could be imported") && run.error.contains("\(output) was left as it was"), "\(run.error)")
    #expect(try String(contentsOfFile: output, encoding: .utf8) == "kept as it was\n")
}

@Test func whatAKilledFirstSubmitLeftBehindIsRemovedByTheNext() async throws {
    let database = temporaryDatabasePath()
    let folder = URL(fileURLWithPath: database).deletingLastPathComponent().path
    // A process that has exited stands for a submit killed midway.
    let child = Process()
    child.executableURL = URL(fileURLWithPath: "/bin/true")
    try child.run()
    await exited(child)
    let left = ["", "-wal", "-shm"].map { "\(database).building-\(child.processIdentifier)-12345\($0)" }
    for path in left { #expect(FileManager.default.createFile(atPath: path, contents: Data("partial".utf8))) }
    let run = await purser(["submit", repository.appendingPathComponent("jobs/quickstart.jsonl").path], database: database)
    #expect(run.code == 0, "\(run.error)")
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".building-") }.isEmpty)
}
