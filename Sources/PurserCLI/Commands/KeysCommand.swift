import Foundation
import PurserCore
import PurserSQLite

/// `purser keys create | list | revoke`: the project keys `purser serve` checks on every request. A token is printed
/// once, when made; the database keeps only its SHA-256 and its first characters.
enum KeysCommand {
    static let spec = CommandSpec(
        name: "keys",
        overview: "Create, list or revoke the project keys that purser serve checks on every request.",
        discussion: """
            A key belongs to one project and sees only that project's files, batches, results and budgets.
            Roles: read (look only), submit (also upload files and create batches), admin (also set budgets
            and read reports). The token is printed once; only its hash is stored.
            """)

    enum Options {
        static let project = OptionKey.text("project", value: "name", help: "The project the key belongs to.")
        static let name = OptionKey.text("name", value: "name", help: "A name to tell keys apart (default: the project's name).")
        static let role = OptionKey.choice("role", value: "role", of: KeyRole.self, default: .submit, help: "What the key may do")
    }

    static let createSpec = CommandSpec(
        name: "keys create",
        overview: "Make a project key and print its token, once.",
        options: [Options.project.option, Options.name.option, Options.role.option, SharedOptions.database.option, SharedOptions.json.option])

    static let listSpec = CommandSpec(
        name: "keys list",
        overview: "List the keys: number, prefix, project, name, role, when made, and when revoked.",
        options: [SharedOptions.database.option, SharedOptions.json.option])

    static let revokeSpec = CommandSpec(
        name: "keys revoke",
        overview: "Revoke a key: requests carrying it are refused from now on.",
        arguments: [.init(name: "key", help: "The key's number or prefix, as keys list shows them.")],
        options: [SharedOptions.database.option])

    static var subcommand: Subcommand {
        Subcommand(spec: spec, children: [
            Subcommand(spec: createSpec, run: create), Subcommand(spec: listSpec, run: list), Subcommand(spec: revokeSpec, run: revoke),
        ])
    }

    /// A project name: what budgets and jobs name projects by, kept to characters that need no quoting anywhere.
    static func checkedProject(_ text: String?, spec: CommandSpec) throws -> String {
        guard let text else { throw UsageError(message: "--project is required: the project the key belongs to.", spec: spec) }
        let allowed = text.utf8.allSatisfy { $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
        guard !text.isEmpty, text.utf8.count <= 64, allowed else {
            throw UsageError(message: "--project: '\(text)' is not a project name (1 to 64 letters, digits, '.', '-' or '_').", spec: spec)
        }
        return text
    }

    static func create(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let project = try checkedProject(arguments[Options.project], spec: arguments.spec)
        let name = arguments[Options.name] ?? project
        guard name.utf8.count <= 100, !name.contains(where: \.isNewline) else {
            throw UsageError(message: "--name: at most 100 characters on one line.", spec: arguments.spec)
        }
        let role = try arguments[Options.role] ?? .submit
        let token = ProjectToken.make()
        let key = try context.openDatabase(arguments).service.createKey(project: project, name: name, role: role, token: token, at: context.clock.now())
        if arguments[SharedOptions.json] {
            context.console.print(JSONWriter.string(.object(JSONObject([
                "id": .number(String(key.id)), "project": .string(project), "name": .string(name), "role": .string(role.rawValue),
                "prefix": .string(key.prefix), "token": .string(token.text),
            ]))))
        } else {
            context.console.print(token.text)
            context.console.error("key \(key.id) (\(key.prefix)…) for project \(project), role \(role.rawValue): the token above is shown once; keep it secret")
        }
        return 0
    }

    static func list(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let keys = try context.openDatabase(arguments).service.keys()
        if arguments[SharedOptions.json] {
            for key in keys {
                context.console.print(JSONWriter.string(.object(JSONObject([
                    "id": .number(String(key.id)), "prefix": .string(key.prefix), "project": .string(key.project), "name": .string(key.name),
                    "role": .string(key.role.rawValue), "created_at": .string(timestampText(key.createdAt)),
                    "revoked_at": key.revokedAt.map { .string(timestampText($0)) } ?? .null,
                ]))))
            }
            return 0
        }
        guard !keys.isEmpty else {
            context.console.print("no keys yet: purser keys create --project NAME")
            return 0
        }
        let rows = [["key", "prefix", "project", "name", "role", "created", "revoked"]] + keys.map { key in
            [String(key.id), key.prefix + "…", key.project, key.name, key.role.rawValue, timestampText(key.createdAt), key.revokedAt.map(timestampText) ?? "-"]
        }
        let widths = (0..<7).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            context.console.print(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces))
        }
        return 0
    }

    static func revoke(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let reference = arguments.positionals[0]
        guard let key = try context.openExistingDatabase(arguments).service.revokeKey(reference, at: context.clock.now()) else {
            throw Problem("no key \(reference): purser keys list shows each key's number and prefix")
        }
        context.console.print("key \(key.id) (\(key.prefix)…) of project \(key.project) is revoked")
        return 0
    }
}
