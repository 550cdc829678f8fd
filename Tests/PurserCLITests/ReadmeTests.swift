import Foundation
import Testing
import PurserCore

/// Issue 16, item 10: the README stays true. Its command blocks run in order, each on a fresh database as the README
/// says, in-process at the tests' fixed moment (2026-11-24T00:00:00Z, when the README's figures were taken), and print
/// the lines the README shows. What only the wall clock decides is masked: how long a run took, and progress lines.
@Suite struct ReadmeTests {
    let readme: [String]

    init() throws {
        readme = try String(contentsOf: repository.appendingPathComponent("README.md"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    /// The lines of the first fenced block after the first line containing `anchor`.
    func block(after anchor: String) throws -> [String] {
        let start = try #require(readme.firstIndex { $0.contains(anchor) }, "README has no line with \(anchor)")
        let open = try #require(readme[start...].firstIndex { $0.hasPrefix("```") })
        let close = try #require(readme[(open + 1)...].firstIndex { $0.hasPrefix("```") })
        return Array(readme[(open + 1)..<close])
    }

    /// A command line as the README writes it (`purser …` or `swift run -c release purser …`), run in-process; a pipe
    /// to `head -n N` keeps N lines and a redirection to a file discards the output, as the shell would.
    func run(_ line: String, database: String, exitCode: Int32 = 0) async throws -> [String] {
        var command = line.components(separatedBy: " #").first!.trimmingCharacters(in: .whitespaces)
        var keep: Int?
        if let pipe = command.range(of: " | head -n ") {
            keep = Int(command[pipe.upperBound...].trimmingCharacters(in: .whitespaces))
            command = String(command[..<pipe.lowerBound])
        }
        var discard = false
        if let redirect = command.range(of: " > ") {
            discard = true
            command = String(command[..<redirect.lowerBound])
        }
        for prefix in ["swift run -c release purser ", "purser "] where command.hasPrefix(prefix) {
            command.removeFirst(prefix.count)
        }
        // Files the README writes go to a folder of the test's own.
        let folder = URL(fileURLWithPath: database).deletingLastPathComponent().path + "/"
        var arguments = command.split(separator: " ").map { argument in
            argument.hasPrefix("jobs/") ? repository.appendingPathComponent(String(argument)).path : String(argument)
        }
        for index in arguments.indices.dropFirst() where arguments[index - 1] == "--output" { arguments[index] = folder + arguments[index] }
        let result = arguments.first == "run" ? await purser(arguments, database: database) : await purser(arguments, database: database)
        #expect(result.code == exitCode, "\(line): \(result.error)")
        if discard { return [] }
        // The README shows relative paths; the run was given absolute ones.
        let printed = (result.error + result.out).replacingOccurrences(of: repository.path + "/", with: "").replacingOccurrences(of: folder, with: "")
        let lines = printed.split(separator: "\n").map(String.init)
        if let keep { return Array(result.out.split(separator: "\n").map(String.init).prefix(keep)) }
        return lines
    }

    /// A line with what only the wall clock decides masked.
    static func normalized(_ line: String) -> String {
        line.replacingOccurrences(of: #"run finished in [0-9]+(m [0-9]+)?s"#, with: "run finished in #s", options: .regularExpression)
            // Log lines carry the wall clock's time, not the tests' fixed moment.
            .replacingOccurrences(of: #"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z "#, with: "# ", options: .regularExpression)
    }

    /// A line with every number masked, for output whose amounts depend on which calls were in flight.
    static func masked(_ line: String) -> String {
        normalized(line).replacingOccurrences(of: #"[0-9][0-9.,]*"#, with: "#", options: .regularExpression)
    }

    func expectShown(
        _ shown: [String], in printed: [String], _ what: String, numbersMasked: Bool = false, skipping skip: (String) -> Bool = { _ in false }
    ) {
        let form = numbersMasked ? Self.masked : Self.normalized
        let printedLines = Set(printed.map(form))
        for line in shown where !line.isEmpty && line != "..." && !line.contains("   ...") && !skip(line) {
            #expect(printedLines.contains(form(line)), "\(what): README shows\n\(line)\nbut purser printed\n\(printed.joined(separator: "\n"))")
        }
    }

    @Test func theFirstCommandPrintsWhatTheREADMEShows() async throws {
        let database = temporaryDatabasePath()
        let command = try #require(try block(after: "## The two commands").first { $0.hasPrefix("swift run -c release purser submit") })
        var printed: [String] = []
        for part in command.components(separatedBy: " && ") { printed += try await run(part, database: database) }
        expectShown(try block(after: "The first command prints"), in: printed, "the first command")
    }

    @Test func theWalkthroughRunsInOrderAndPrintsWhatTheREADMEShows() async throws {
        let database = temporaryDatabasePath()
        let commands = try block(after: "## Walkthrough").filter { $0.hasPrefix("purser ") }
        #expect(commands.count >= 12)
        var printedBy: [String: [String]] = [:]
        for command in commands {
            let printed = try await run(command, database: database)
            let stated = command.components(separatedBy: "# ").dropFirst().joined(separator: "# ")
            if stated.hasPrefix("ok: ") { #expect(printed.first == stated, "\(command)") }
            printedBy[command.components(separatedBy: " #").first!.trimmingCharacters(in: .whitespaces)] = printed
        }
        let plan = try #require(printedBy["purser plan walkthrough --simulate"])
        expectShown(try block(after: "`purser plan` ends with"), in: plan, "the plan's last lines")
        let explained = try #require(printedBy["purser plan walkthrough --simulate --explain json-1"])
        expectShown(try block(after: "`--explain` shows why"), in: explained, "--explain")
        #expect(try integer(database, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == 50)
    }

    @Test func aBadFileIsRefusedAsTheREADMEShows() async throws {
        let database = temporaryDatabasePath()
        let lines = try block(after: "A file with any bad line is refused whole")
        let command = try #require(lines.first { $0.hasPrefix("$ purser ") })
        expectShown(Array(lines.dropFirst()), in: try await run(String(command.dropFirst(2)), database: database, exitCode: 1), command)
        #expect(try integer(database, "SELECT count(*) FROM requests") == 0)
    }

    /// The budget example and the report example after it run on one database, as the README shows them.
    /// (The report's forecast is at the tests' moment, 76.6% into November.)
    @Test func theBudgetAndReportExamplesPrintWhatTheREADMEShows() async throws {
        let database = temporaryDatabasePath()
        _ = try await run("purser submit jobs/quickstart.jsonl", database: database)
        // Where a cap is met depends on the calls in flight, so the budget example's numbers are masked; once the cap is
        // raised every request is served, and the report is exact.
        for (anchor, masked) in [("On the quickstart job, with a cap below", true), ("`--simulated` reports the rehearsals", false)] {
            let lines = try block(after: anchor)
            var index = 0
            while index < lines.count {
                let command = lines[index]
                #expect(command.hasPrefix("$ purser "), "\(anchor): \(command)")
                var shown: [String] = []
                index += 1
                while index < lines.count, !lines[index].hasPrefix("$ ") {
                    shown.append(lines[index])
                    index += 1
                }
                let printed = try await run(String(command.dropFirst(2)), database: database)
                expectShown(shown, in: printed, command, numbersMasked: masked) { $0.contains(" progress ") }
            }
        }
    }
}
