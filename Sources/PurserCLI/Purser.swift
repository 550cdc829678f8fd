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
            Subcommand(spec: BudgetCommand.spec, run: BudgetCommand.run),
            Subcommand(spec: CancelCommand.spec, run: CancelCommand.run),
            Subcommand(spec: RetryCommand.spec, run: RetryCommand.run),
            Subcommand(spec: PricingCommand.spec, run: PricingCommand.run),
        ]
    }

    static var rootSpec: CommandSpec { CommandSpec(
        name: "",
        overview: "Purser schedules batches of LLM prompts on the cheapest models that meet their quality and deadline.",
        options: [CommandSpec.Option(name: "version", value: nil, help: "Show the version.")],
        subcommands: commands.map { ($0.spec.name, $0.spec.overview) }) }

    public static func run(_ arguments: [String], environment: [String: String], console: Console, clock: WallClock = .system) -> Int32 {
        let context = CommandContext(environment: environment, console: console, clock: clock)
        var arguments = arguments
        if arguments.first == "help" {
            arguments.removeFirst()
            arguments.append("--help")
        }
        guard let name = arguments.first, !name.hasPrefix("-") else {
            if arguments.contains("--version") { console.print(version); return 0 }
            if arguments.isEmpty || arguments.contains("--help") || arguments.contains("-h") {
                console.print(rootSpec.helpText.trimmingTrailingNewline())
                return arguments.isEmpty ? 64 : 0
            }
            return report(UsageError(message: "Unknown option '\(arguments[0])'.", spec: rootSpec), console: console)
        }
        guard let command = commands.first(where: { $0.spec.name == name }) else {
            let suggestion = ParsedArguments.closest(to: name, among: commands.map(\.spec.name))
            return report(
                UsageError(message: "Unknown subcommand '\(name)'." + (suggestion.map { " Did you mean '\($0)'?" } ?? ""), spec: rootSpec),
                console: console)
        }
        let parsed: ParsedArguments
        do { parsed = try ParsedArguments(Array(arguments.dropFirst()), spec: command.spec) } catch { return report(error, console: console) }
        if parsed.wantsHelp {
            console.print(command.spec.helpText.trimmingTrailingNewline())
            return 0
        }
        do {
            return try command.run(parsed, context)
        } catch let trouble where DatabaseTrouble.words(for: trouble) != nil {
            // Only the database speaks SQLite, so its path is the place at fault.
            console.error("Error: \(context.databasePath(parsed)): \(DatabaseTrouble.words(for: trouble)!)")
            return 1
        } catch {
            return report(error, console: console)
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

/// One subcommand: its interface and what it does. Each lives in its own file under Commands/.
struct Subcommand {
    var spec: CommandSpec
    var run: (_ arguments: ParsedArguments, _ context: CommandContext) throws -> Int32
}

/// What every command may need: the environment, where to print, the time, and how to find the
/// database and the pricing tables.
struct CommandContext {
    let environment: [String: String]
    let console: Console
    let clock: WallClock

    static let databaseOption = CommandSpec.Option(name: "db", value: "path", help: "The SQLite file (default: $PURSER_DB or ./purser.db).")
    static let pricingOption = CommandSpec.Option(
        name: "pricing", value: "dir", help: "The pricing tables folder (default: $PURSER_PRICING or ./pricing).")
    static let jsonOption = CommandSpec.Option(name: "json", value: nil, help: "Print machine-readable JSON.")
    static let simulateOption = CommandSpec.Option(
        name: "simulate", value: nil, help: "Plan as if every provider were usable (the built-in simulator needs no keys).")

    func databasePath(_ arguments: ParsedArguments) -> String {
        arguments.value("db") ?? environment["PURSER_DB"] ?? "purser.db"
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
        guard let directory = arguments.value("pricing") ?? environment["PURSER_PRICING"] else {
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
