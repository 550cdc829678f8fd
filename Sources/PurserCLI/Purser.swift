import Foundation
import PurserCore
import PurserSQLite

/// The `purser` command line: parses, runs one command, and returns the exit code
/// (0 success, 1 failure, 64 usage error). The core never prints; only this module does.
public enum Purser {
    public static let version = "0.1.0"

    static var commands: [Subcommand] {
        [
            Subcommand(spec: SubmitCommand.spec, run: SubmitCommand.run),
            Subcommand(spec: EstimateCommand.spec, run: EstimateCommand.run),
            Subcommand(spec: PlanCommand.spec, run: PlanCommand.run),
            Subcommand(spec: RunCommand.spec, run: RunCommand.run),
            Subcommand(spec: StatusCommand.spec, run: StatusCommand.run),
            Subcommand(spec: ResultsCommand.spec, run: ResultsCommand.run),
            Subcommand(spec: ReportCommand.spec, run: ReportCommand.run),
            BudgetCommand.subcommand,
            Subcommand(spec: CancelCommand.spec, run: CancelCommand.run),
            Subcommand(spec: RetryCommand.spec, run: RetryCommand.run),
            PricingCommand.subcommand,
            Subcommand(spec: ServeCommand.spec, run: ServeCommand.run),
            KeysCommand.subcommand,
        ]
    }

    static var rootSpec: CommandSpec { CommandSpec(
        name: "",
        overview: "Purser schedules batches of LLM prompts on the cheapest models that meet their quality and deadline.",
        options: [
            RootOptions.version.option, RootOptions.completionScript.option,
        ],
        subcommands: commands.map { ($0.spec.name, $0.spec.overview) }) }

    /// `afterBatchCall` is told right after each batch step's API call returns, before what it returned is stored: the
    /// kill tests' executable (`purser-crash-test`) stops itself there; `purser` passes nothing.
    public static func run(
        _ arguments: [String], environment: [String: String], console: Console, clock: WallClock = .system,
        afterBatchCall: (@Sendable (BatchCall) -> Void)? = nil
    ) async -> Int32 {
        let context = CommandContext(environment: environment, console: console, clock: clock, afterBatchCall: afterBatchCall)
        var arguments = arguments
        if arguments.first == "help" {
            arguments.removeFirst()
            arguments.append("--help")
        }
        guard let name = arguments.first, !name.hasPrefix("-") else {
            if arguments.contains("--version") { console.print(version); return 0 }
            if arguments.first?.hasPrefix("--generate-completion-script") == true {
                do {
                    let parsed = try ParsedArguments(arguments, spec: rootSpec)
                    guard let shell = try parsed[RootOptions.completionScript] else {
                        throw UsageError(message: "--generate-completion-script takes bash, zsh or fish.", spec: rootSpec)
                    }
                    console.print(CompletionScript.script(for: shell, commands: commands, root: rootSpec).trimmingTrailingNewline())
                    return 0
                } catch { return report(error, console: console) }
            }
            if arguments.isEmpty || arguments.contains("--help") || arguments.contains("-h") {
                console.print(rootSpec.helpText.trimmingTrailingNewline())
                return arguments.isEmpty ? 64 : 0
            }
            return report(UsageError(message: "Unknown option '\(arguments[0])'.", spec: rootSpec), console: console)
        }
        guard let found = commands.first(where: { $0.spec.name == name }) else {
            let suggestion = ParsedArguments.closest(to: name, among: commands.map(\.spec.name))
            return report(
                UsageError(message: "Unknown subcommand '\(name)'." + (suggestion.map { " Did you mean '\($0)'?" } ?? ""), spec: rootSpec),
                console: console)
        }
        let command: Subcommand
        let rest: [String]
        do { (command, rest) = try found.leaf(Array(arguments.dropFirst())) } catch { return report(error, console: console) }
        let parsed: ParsedArguments
        do { parsed = try ParsedArguments(rest, spec: command.spec) } catch { return report(error, console: console) }
        guard let run = command.run, !parsed.wantsHelp else {
            console.print(command.spec.helpText.trimmingTrailingNewline())
            return parsed.wantsHelp ? 0 : 64
        }
        do {
            return try await run(parsed, context)
        } catch {
            // Only the database speaks SQLite, so its path is the place at fault.
            guard let trouble = DatabaseTrouble.words(for: error) else { return report(error, console: console) }
            console.error("Error: \(context.databasePath(parsed)): \(trouble)")
            return 1
        }
    }

    /// Prints an error the way swift-argument-parser does and picks the exit code.
    static func report(_ error: Error, console: Console) -> Int32 {
        switch error {
        case let usage as UsageError:
            console.error("Error: \(usage.message)")
            console.error("Usage: \(usage.spec.usage)")
            console.error("  See 'purser \(usage.spec.name.isEmpty ? "" : usage.spec.name + " ")--help' for more information.")
            return 64
        case let rejected as SubmissionRejected:
            console.error(rejected.description)
            console.error(
                "Error: \(rejected.file) has \(rejected.totalBadLines) bad line\(rejected.totalBadLines == 1 ? "" : "s"); nothing was stored. "
                    + "Fix \(rejected.totalBadLines == 1 ? "it" : "them"), or pass --skip-invalid to store the good lines and keep the rejects on the job.")
            return 1
        case let unknown as UnknownJob:
            console.error("Error: no job '\(unknown.reference)'; 'purser status' lists the jobs")
            return 1
        case let invalid as PricingTablesInvalid:
            console.error(invalid.description)
            console.error("Error: the pricing tables have \(invalid.problems.count) problem\(invalid.problems.count == 1 ? "" : "s"); fix them and run 'purser pricing validate'.")
            return 1
        default:
            console.error("Error: \(error)")
            return 1
        }
    }
}

/// One subcommand: its interface and what it does, or the subcommands it groups (`budget set|show|clear`). Each
/// lives in its own file under Commands/.
struct Subcommand {
    typealias Run = (_ arguments: ParsedArguments, _ context: CommandContext) async throws -> Int32

    var spec: CommandSpec
    /// Nil for a group.
    var run: Run?
    var children: [Subcommand] = []

    init(spec: CommandSpec, run: @escaping Run) {
        self.spec = spec
        self.run = run
    }

    /// A group: its spec lists the children, named by the last word of theirs.
    init(spec: CommandSpec, children: [Subcommand]) {
        var spec = spec
        spec.subcommands = children.map { ($0.name, $0.spec.overview) }
        self.spec = spec
        self.children = children
    }

    /// The last word of the spec's name: "set" of "budget set".
    var name: String { String(spec.name.split(separator: " ").last ?? "") }

    /// The command `arguments` name under this one, with the arguments left for it: a group takes its child's name
    /// first (`help CHILD` asks for the child's help); anything else is a usage error naming the group's children.
    func leaf(_ arguments: [String]) throws -> (Subcommand, [String]) {
        guard !children.isEmpty, var first = arguments.first, !first.hasPrefix("-") else { return (self, arguments) }
        var rest = Array(arguments.dropFirst())
        if first == "help", let child = rest.first {
            first = child
            rest = Array(rest.dropFirst()) + ["--help"]
        }
        guard let child = children.first(where: { $0.name == first }) else {
            let names = children.map(\.name)
            let suggestion = ParsedArguments.closest(to: first, among: names).map { " Did you mean '\($0)'?" } ?? ""
            throw UsageError(message: "Unknown subcommand '\(first)' of '\(spec.name)'; use \(ParsedArguments.listed(names)).\(suggestion)", spec: spec)
        }
        return try child.leaf(rest)
    }
}

/// What every command may need: the environment, where to print, the time, and how to find the
/// database and the pricing tables.
struct CommandContext {
    let environment: [String: String]
    let console: Console
    let clock: WallClock
    /// Given to every run (`RunOptions.afterBatchCall`).
    var afterBatchCall: (@Sendable (BatchCall) -> Void)?

    func databasePath(_ arguments: ParsedArguments) -> String {
        arguments[SharedOptions.database] ?? environment["PURSER_DB"] ?? "purser.db"
    }

    func openDatabase(_ arguments: ParsedArguments) throws -> StoreFile {
        try StoreFile.open(path: databasePath(arguments))
    }

    /// Opens the database only if it exists: commands that only look must not create one.
    func openExistingDatabase(_ arguments: ParsedArguments) throws -> StoreFile {
        try StoreFile.open(path: existingDatabasePath(arguments))
    }

    /// Opens an existing database to read it, writing nothing (so it works in a read-only folder).
    func openDatabaseForReading(_ arguments: ParsedArguments) throws -> StoreFile {
        try StoreFile.openForReading(path: existingDatabasePath(arguments))
    }

    private func existingDatabasePath(_ arguments: ParsedArguments) throws -> String {
        let path = databasePath(arguments)
        guard FileManager.default.fileExists(atPath: path) else {
            throw Problem("no database at \(path); submit a job first, or pass --db PATH")
        }
        return path
    }

    /// The tables of `--pricing DIR` or `PURSER_PRICING`, else of a `pricing` folder here, else those built in.
    func loadCatalog(_ arguments: ParsedArguments) throws -> PricingCatalog {
        guard let directory = arguments[SharedOptions.pricing] ?? environment["PURSER_PRICING"] else {
            return FileManager.default.fileExists(atPath: "pricing") ? try PricingCatalog.load(directory: "pricing") : try PricingCatalog.bundled()
        }
        guard FileManager.default.fileExists(atPath: directory) else {
            throw Problem("no pricing tables at \(directory); pass --pricing DIR (or PURSER_PRICING) naming a folder of tables, or neither to use the built-in ones")
        }
        return try PricingCatalog.load(directory: directory)
    }

    func printJSON(_ value: JSONValue) { console.print(JSONWriter.string(value, pretty: true)) }
}

extension String {
    func trimmingTrailingNewline() -> String { hasSuffix("\n") ? String(dropLast()) : self }
}

extension Money {
    var jsonUSD: JSONValue { .string(exactUSD) }
}

/// "6 requests", "1 request"; irregular plurals are given ("entry", plural: "entries").
func count(_ number: Int, _ noun: String, plural: String? = nil) -> String {
    "\(number) \(number == 1 ? noun : plural ?? noun + "s")"
}

/// The options of `purser` itself.
enum RootOptions {
    static let version = OptionKey.flag("version", help: "Show the version.")
    static let completionScript = OptionKey.choice(
        "generate-completion-script", value: "shell", of: CompletionScript.Shell.self, default: nil, help: "Print a completion script for a shell")
}

/// Options several commands take, each declared once.
enum SharedOptions {
    static let database = OptionKey.text("db", value: "path", help: "The SQLite file (default: $PURSER_DB or ./purser.db).")
    static let pricing = OptionKey.text("pricing", value: "dir", help: "The pricing tables folder (default: $PURSER_PRICING or ./pricing).")
    static let json = OptionKey.flag("json", help: "Print machine-readable JSON.")
    static let simulate = OptionKey.flag("simulate", help: "Plan as if every provider were usable (the built-in simulator needs no keys).")
}
