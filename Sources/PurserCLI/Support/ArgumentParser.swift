import PurserCore

/// A command's declared interface: what `--help` prints and what the parser accepts.
struct CommandSpec {
    struct Argument {
        var name: String
        var help: String
        var repeating = false
        var optional = false
    }

    struct Option {
        var name: String
        /// Nil for a flag.
        var value: String?
        var help: String
        /// The only values the option takes, when it is a choice: the parser refuses any other, and the help lists them.
        var choices: [String] = []
        /// The choice taken when the option is not given, marked in the help.
        var defaultChoice: String?

        init(name: String, value: String?, help: String) {
            self.name = name
            self.value = value
            self.help = help
        }

        /// An option taking one of `type`'s cases by their raw values; its help is `help` followed by the cases.
        static func choice<Choice: RawRepresentable & CaseIterable>(
            _ name: String, value: String, of type: Choice.Type, default: Choice?, help: String
        ) -> Option where Choice.RawValue == String {
            var option = Option(name: name, value: value, help: help)
            option.choices = type.allCases.map(\.rawValue)
            option.defaultChoice = `default`?.rawValue
            return option
        }

        /// What `--help` says of the option: for a choice, its help and then its values, the default marked.
        var helpText: String {
            guard !choices.isEmpty else { return help }
            let marked = choices.map { $0 == defaultChoice ? "\($0) (default)" : $0 }
            return "\(help): \(ParsedArguments.listed(marked))."
        }
    }

    var name: String
    var overview: String
    var arguments: [Argument] = []
    var options: [Option] = []
    var subcommands: [(name: String, overview: String)] = []
    var discussion: String?

    static let help = Option(name: "help", value: nil, help: "Show help information.")

    var usage: String {
        var parts = ["purser", name].filter { !$0.isEmpty }
        if !subcommands.isEmpty { parts.append("<subcommand>") }
        for argument in arguments {
            var text = "<\(argument.name)>"
            if argument.repeating { text += " ..." }
            parts.append(argument.optional ? "[\(text)]" : text)
        }
        for option in options { parts.append("[--\(option.name)\(option.value.map { " <\($0)>" } ?? "")]") }
        return parts.joined(separator: " ")
    }

    var helpText: String {
        var lines = ["OVERVIEW: \(overview)", "", "USAGE: \(usage)", ""]
        if let discussion { lines += [discussion, ""] }
        func row(_ left: String, _ right: String) -> String {
            left.count >= 26 ? "  \(left)\n" + String(repeating: " ", count: 28) + right : "  " + left.padding(toLength: 26, withPad: " ", startingAt: 0) + right
        }
        if !arguments.isEmpty {
            lines.append("ARGUMENTS:")
            for argument in arguments { lines.append(row("<\(argument.name)>", argument.help)) }
            lines.append("")
        }
        lines.append("OPTIONS:")
        for option in options { lines.append(row("--\(option.name)\(option.value.map { " <\($0)>" } ?? "")", option.helpText)) }
        lines.append(row("-h, --help", CommandSpec.help.help))
        if !subcommands.isEmpty {
            lines += ["", "SUBCOMMANDS:"]
            for subcommand in subcommands { lines.append(row(subcommand.name, subcommand.overview)) }
            lines += ["", "  See 'purser \(name.isEmpty ? "" : name + " ")help <subcommand>' for detailed help."]
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A mistake in how the command was called: printed with the usage, exit code 64.
struct UsageError: Error {
    var message: String
    var spec: CommandSpec
}

/// Arguments parsed against a `CommandSpec`.
struct ParsedArguments {
    var positionals: [String] = []
    var values: [String: [String]] = [:]
    var flags: Set<String> = []
    var wantsHelp = false
    let spec: CommandSpec

    /// An option's value as its key reads it. Commands read options only through their keys, never by name, so a
    /// misspelt option cannot compile, and its help and bounds come from the one declaration. A key the command's spec
    /// does not list (a helper shared by two commands) reads as not given, since the parser accepts only listed ones.
    subscript<Value>(_ key: OptionKey<Value>) -> Value {
        get throws { try key.read(self) }
    }

    subscript(_ key: OptionKey<Bool>) -> Bool { flags.contains(key.option.name) }

    /// A text option's value as written, nil when not given.
    subscript(_ key: OptionKey<String?>) -> String? { value(key.option.name) }

    fileprivate func value(_ name: String) -> String? { values[name]?.last }

    /// "a, b or c".
    static func listed(_ items: [String]) -> String {
        guard let last = items.last, items.count > 1 else { return items.first ?? "" }
        return items.dropLast().joined(separator: ", ") + " or " + last
    }

    /// A whole-number option within `range`, nil when not given. Anything else is a usage error naming the flag:
    /// every number that enters on the command line is bounded here.
    fileprivate func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = value(name) else { return nil }
        guard let number = Int(text), range.contains(number) else {
            throw UsageError(message: "--\(name): '\(DecimalText.shown(text))' is not a whole number from \(range.lowerBound) to \(range.upperBound).", spec: spec)
        }
        return number
    }

    /// A decimal option (seconds, a factor) within `range`, nil when not given.
    fileprivate func number(_ name: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let text = value(name) else { return nil }
        guard let number = Double(text), number.isFinite, range.contains(number) else {
            throw UsageError(
                message: "--\(name): '\(DecimalText.shown(text))' is not a number from \(ParsedArguments.plain(range.lowerBound)) to \(ParsedArguments.plain(range.upperBound)).",
                spec: spec)
        }
        return number
    }

    /// 0.001, 10, 3600: a bound as a person writes it.
    private static func plain(_ value: Double) -> String {
        value == value.rounded() ? String(Int64(value)) : String(value)
    }

    init(_ arguments: [String], spec: CommandSpec) throws {
        self.spec = spec
        var index = 0
        var onlyPositionals = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if onlyPositionals || !argument.hasPrefix("-") || argument == "-" {
                positionals.append(argument)
                continue
            }
            if argument == "--" { onlyPositionals = true; continue }
            if argument == "-h" || argument == "--help" { wantsHelp = true; continue }
            guard argument.hasPrefix("--") else {
                throw UsageError(message: "Unknown option '\(argument)'.", spec: spec)
            }
            var name = String(argument.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let option = spec.options.first(where: { $0.name == name }) else {
                let suggestion = ParsedArguments.closest(to: name, among: spec.options.map(\.name))
                throw UsageError(
                    message: "Unknown option '--\(name)'." + (suggestion.map { " Did you mean '--\($0)'?" } ?? ""), spec: spec)
            }
            if let valueName = option.value {
                let value: String
                if let inlineValue {
                    value = inlineValue
                } else if index < arguments.count, !arguments[index].hasPrefix("--") {
                    value = arguments[index]
                    index += 1
                } else {
                    throw UsageError(message: "Missing value for '--\(name) <\(valueName)>'.", spec: spec)
                }
                guard option.choices.isEmpty || option.choices.contains(value) else {
                    throw UsageError(
                        message: "--\(name): '\(DecimalText.shown(value))' is not one of \(option.choices.joined(separator: ", ")).", spec: spec)
                }
                values[name, default: []].append(value)
            } else {
                guard inlineValue == nil else { throw UsageError(message: "'--\(name)' takes no value.", spec: spec) }
                flags.insert(name)
            }
        }
        guard !wantsHelp else { return }
        let required = spec.arguments.filter { !$0.optional }
        if positionals.count < required.count {
            throw UsageError(message: "Missing expected argument '<\(required[positionals.count].name)>'.", spec: spec)
        }
        let repeats = spec.arguments.contains { $0.repeating }
        if !repeats, spec.subcommands.isEmpty, positionals.count > spec.arguments.count {
            throw UsageError(message: "Unexpected argument '\(positionals[spec.arguments.count])'.", spec: spec)
        }
    }

    /// The known name within edit distance 2, for "Did you mean…?".
    static func closest(to name: String, among names: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var previous = Array(0...b.count)
            for (i, x) in a.enumerated() {
                var current = [i + 1]
                for (j, y) in b.enumerated() { current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))) }
                previous = current
            }
            return previous[b.count]
        }
        return names.map { ($0, distance(Array(name), Array($0))) }.filter { $0.1 <= 2 }.min { $0.1 < $1.1 }?.0
    }
}

/// An option declared once, as a typed value: its entry in the command's spec (from which help, usage and completion
/// are generated) and how its text is read and bounded. A command lists `key.option` in its spec and reads
/// `arguments[key]`.
struct OptionKey<Value>: Sendable {
    let option: CommandSpec.Option
    fileprivate let read: @Sendable (ParsedArguments) throws -> Value
}

extension OptionKey where Value == Bool {
    static func flag(_ name: String, help: String) -> OptionKey {
        OptionKey(option: CommandSpec.Option(name: name, value: nil, help: help)) { $0.flags.contains(name) }
    }
}

extension OptionKey where Value == String? {
    /// A value taken as written (a path, a name, a month, a decimal amount its command reads).
    static func text(_ name: String, value: String, help: String) -> OptionKey {
        OptionKey(option: CommandSpec.Option(name: name, value: value, help: help)) { $0.value(name) }
    }
}

extension OptionKey where Value == Int? {
    /// A whole number within `range`: anything else is a usage error naming the flag.
    static func integer(_ name: String, value: String, in range: ClosedRange<Int>, help: String) -> OptionKey {
        OptionKey(option: CommandSpec.Option(name: name, value: value, help: help)) { try $0.integer(name, in: range) }
    }
}

extension OptionKey where Value == Double? {
    /// A decimal (seconds, a factor) within `range`.
    static func number(_ name: String, value: String, in range: ClosedRange<Double>, help: String) -> OptionKey {
        OptionKey(option: CommandSpec.Option(name: name, value: value, help: help)) { try $0.number(name, in: range) }
    }
}

extension OptionKey {
    /// One of `type`'s cases by its raw value (the parser refuses any other), or `default` when not given.
    static func choice<Choice: RawRepresentable & CaseIterable & SendableMetatype>(
        _ name: String, value: String, of type: Choice.Type, default: Choice?, help: String
    ) -> OptionKey<Choice?> where Choice.RawValue == String, Value == Choice? {
        let option = CommandSpec.Option.choice(name, value: value, of: type, default: `default`, help: help)
        return OptionKey(option: option) { ($0.value(name) ?? option.defaultChoice).flatMap(Choice.init(rawValue:)) }
    }
}
