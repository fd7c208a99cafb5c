import CortexCore

/// One `--option` a command accepts. The parser and the help text both read this, so help
/// cannot drift from the real flags.
public struct OptionSpec: Sendable {
    /// `tokens` for `--tokens`.
    public var name: String
    /// `N` when the option takes a value; nil for a flag.
    public var valueName: String?
    /// One line of help.
    public var help: String
    /// The command refuses to run without it.
    public var isRequired: Bool
    /// May be given more than once (`--type a --type b`).
    public var isRepeatable: Bool
    /// A one-letter alias such as `f` for `-f`.
    public var shortName: Character?

    /// An option taking a value.
    public static func value(
        _ name: String, _ valueName: String, _ help: String, required: Bool = false, repeatable: Bool = false
    ) -> OptionSpec {
        OptionSpec(name: name, valueName: valueName, help: help, isRequired: required, isRepeatable: repeatable, shortName: nil)
    }

    /// A flag, optionally with a one-letter alias.
    public static func flag(_ name: String, _ help: String, short: Character? = nil) -> OptionSpec {
        OptionSpec(name: name, valueName: nil, help: help, isRequired: false, isRepeatable: false, shortName: short)
    }

    var usageFragment: String {
        let core = valueName.map { "--\(name) <\($0)>" } ?? "--\(name)"
        return isRequired ? core : "[\(core)]"
    }
}

/// A positional argument.
public struct PositionalSpec: Sendable {
    /// `ALLOCATION`.
    public var name: String
    /// One line of help.
    public var help: String
    /// Whether it may be left out.
    public var isOptional: Bool
    /// Whether it takes every argument left (the last positional only: `-- COMMAND [ARG ...]`).
    public var takesRest: Bool

    /// A positional argument.
    public init(_ name: String, _ help: String, optional: Bool = false, rest: Bool = false) {
        self.name = name
        self.help = help
        self.isOptional = optional
        self.takesRest = rest
    }
}

/// A command's shape: name, options, positional arguments, examples.
public struct CommandSpec: Sendable {
    /// The full name as typed: `cortex-budget allocate`.
    public var name: String
    /// One sentence on what it does.
    public var abstract: String
    /// Positional arguments, in order.
    public var positionals: [PositionalSpec]
    /// Options, not counting the common ones (`--dir`, `--json`, `--help`) that every command takes.
    public var options: [OptionSpec]
    /// Example invocations, shown in help.
    public var examples: [String]

    /// A command spec.
    public init(
        name: String, abstract: String, positionals: [PositionalSpec] = [], options: [OptionSpec] = [],
        examples: [String] = []
    ) {
        self.name = name
        self.abstract = abstract
        self.positionals = positionals
        self.options = options
        self.examples = examples
    }

    /// Options every command takes.
    static let commonOptions: [OptionSpec] = [
        .value("dir", "DIR", "Coordination folder (default: $CORTEX_DIR, else ./coordination)."),
        .flag("json", "Print exactly one JSON object on one line."),
        .flag("help", "Show this help.", short: "h"),
    ]

    /// Every option this command accepts.
    public var allOptions: [OptionSpec] { options + CommandSpec.commonOptions }

    /// The help text, generated from the declarations.
    public var help: String {
        var lines = ["OVERVIEW: \(abstract)", ""]
        let positionalUsage = positionals.map { positional in
            let name = "<\(positional.name)>" + (positional.takesRest ? "..." : "")
            return positional.isOptional ? "[\(name)]" : name
        }
        let usage = [name] + positionalUsage + options.map(\.usageFragment) + ["[--dir <DIR>] [--json]"]
        lines.append("USAGE: " + usage.joined(separator: " "))
        if !positionals.isEmpty {
            lines += ["", "ARGUMENTS:"]
            lines += positionals.map { CommandSpec.column("<\($0.name)>", $0.help) }
        }
        lines += ["", "OPTIONS:"]
        for option in allOptions {
            var label = option.valueName.map { "--\(option.name) <\($0)>" } ?? "--\(option.name)"
            if let short = option.shortName { label = "-\(short), " + label }
            lines.append(CommandSpec.column(label, option.help + (option.isRepeatable ? " (repeatable)" : "")))
        }
        if !examples.isEmpty {
            lines += ["", "EXAMPLES:"]
            lines += examples.map { "  " + $0 }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func column(_ label: String, _ text: String) -> String {
        "  " + (label.count < 24 ? padded(label, to: 24) : label + "  ") + text
    }

    /// Parses `arguments` (everything after the command name).
    /// - Throws: `CortexError.usage` for unknown options, missing values, values given to flags,
    ///   missing required options and wrong numbers of positional arguments.
    public func parse(_ arguments: [String]) throws(CortexError) -> ParsedArguments {
        var parsed = ParsedArguments()
        var index = 0
        var optionsEnded = false
        let known = allOptions
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if optionsEnded || argument == "-" || !argument.hasPrefix("-") {
                parsed.positionals.append(argument)
                continue
            }
            if argument == "--" {
                optionsEnded = true
                continue
            }
            var name: Substring
            var inlineValue: String?
            if argument.hasPrefix("--") {
                name = argument.dropFirst(2)
                if let equals = name.firstIndex(of: "=") {
                    inlineValue = String(name[name.index(after: equals)...])
                    name = name[..<equals]
                }
            } else {
                // -h, -f: one-letter aliases only.
                guard argument.count == 2, let option = known.first(where: { $0.shortName == argument.last }) else {
                    throw .usage("unknown option '\(Values.printable(argument))'")
                }
                name = Substring(option.name)
            }
            guard let option = known.first(where: { $0.name == name }) else {
                throw .usage("unknown option '--\(Values.printable(String(name)))'")
            }
            if option.valueName == nil {
                if inlineValue != nil { throw .usage("option '--\(option.name)' takes no value") }
                parsed.flags.insert(option.name)
                continue
            }
            let value: String
            if let inlineValue {
                value = inlineValue
            } else {
                guard index < arguments.count else {
                    throw .usage("option '--\(option.name)' needs a value <\(option.valueName!)>")
                }
                value = arguments[index]
                index += 1
            }
            if !option.isRepeatable && parsed.values[option.name] != nil {
                throw .usage("option '--\(option.name)' given more than once")
            }
            parsed.values[option.name, default: []].append(value)
        }
        if parsed.flags.contains("help") { return parsed }
        for option in known where option.isRequired && parsed.values[option.name] == nil {
            throw .usage("missing option '--\(option.name) <\(option.valueName ?? "")>'")
        }
        let required = positionals.filter { !$0.isOptional }.count
        if parsed.positionals.count < required {
            throw .usage("missing argument <\(positionals[parsed.positionals.count].name)>")
        }
        if parsed.positionals.count > positionals.count && positionals.last?.takesRest != true {
            throw .usage("unexpected argument '\(Values.printable(parsed.positionals[positionals.count]))'")
        }
        return parsed
    }
}

/// What the parser found on a command line.
public struct ParsedArguments: Sendable {
    /// Values by option name, in the order given.
    public var values: [String: [String]] = [:]
    /// Flags given.
    public var flags: Set<String> = []
    /// Positional arguments, in order.
    public var positionals: [String] = []

    /// The value of `--name`, or nil.
    public func value(_ name: String) -> String? { values[name]?.last }

    /// Every value given for a repeatable `--name`.
    public func allValues(_ name: String) -> [String] { values[name] ?? [] }

    /// True when the flag `--name` was given.
    public func has(_ name: String) -> Bool { flags.contains(name) }

    /// `--name`'s value as a count up to `limit` (65 when malformed or larger).
    public func count(_ name: String, atMost limit: Int64 = Limits.maximumCount) throws(CortexError) -> Int64? {
        guard let text = value(name) else { return nil }
        return try Values.parseCount(text, what: "--\(name)", atMost: limit)
    }

    /// `--name`'s value as a number of tokens, at most `Limits.maximumTokens` (65 otherwise).
    public func tokens(_ name: String) throws(CortexError) -> Int64? { try count(name, atMost: Limits.maximumTokens) }

    /// `--name`'s value as an id (65 when malformed).
    public func identifier(_ name: String) throws(CortexError) -> String? {
        guard let text = value(name) else { return nil }
        return try Values.validateIdentifier(text, what: "--\(name)")
    }
}
