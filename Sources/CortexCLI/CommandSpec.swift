import CortexCore
import CortexProcesses
import CortexStorage

/// One `--option` a command accepts, without its type: what the parser and the help text read,
/// so help cannot drift from the real flags. Commands declare options as typed keys
/// (`Option`, `RequiredOption`, `RepeatableOption`, `Flag`), which carry one of these.
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
    /// Text to the typed value the body reads (nil for a flag); run once per value, at parse time.
    var convert: (@Sendable (String) throws(CortexError) -> any Sendable)?

    var usageFragment: String {
        let core = valueName.map { "--\(name) <\($0)>" } ?? "--\(name)"
        return isRequired ? core : "[\(core)]"
    }
}

/// A positional argument, without its type (commands declare `Positional` or `Positionals`).
public struct PositionalSpec: Sendable {
    /// `ALLOCATION`.
    public var name: String
    /// One line of help.
    public var help: String
    /// Whether it may be left out.
    public var isOptional: Bool
    /// Whether it takes every argument left (the last positional only: `-- COMMAND [ARG ...]`).
    public var takesRest: Bool
    /// Text to the typed value the body reads; run once per argument, at parse time.
    var convert: @Sendable (String) throws(CortexError) -> any Sendable

    init(
        _ name: String, _ help: String, optional: Bool = false, rest: Bool = false,
        convert: @escaping @Sendable (String) throws(CortexError) -> any Sendable
    ) {
        self.name = name
        self.help = help
        self.isOptional = optional
        self.takesRest = rest
        self.convert = convert
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

    /// A command spec, from the typed keys its body reads.
    public init(
        name: String, abstract: String, positionals: [any PositionalDeclaration] = [], options: [any OptionDeclaration] = [],
        examples: [String] = []
    ) {
        self.name = name
        self.abstract = abstract
        self.positionals = positionals.map(\.spec)
        self.options = options.map(\.spec)
        self.examples = examples
    }

    /// Options every command takes.
    static let commonOptions: [OptionSpec] = [CommonOptions.dir.spec, CommonOptions.json.spec, CommonOptions.help.spec]

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

    /// Parses `arguments` (everything after the command name), then converts every value with
    /// its declaration: positional arguments in order, then options in declaration order. With
    /// `--help`, nothing is checked beyond the option names.
    /// - Throws: `CortexError.usage` for unknown options, missing values, values given to flags,
    ///   missing required options and wrong numbers of positional arguments; then the first
    ///   error a value's conversion throws (`badInput` for a malformed value).
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
                    throw .usage("option '--\(option.name)' needs a value <\(option.valueName ?? "")>")
                }
                value = arguments[index]
                index += 1
            }
            if !option.isRepeatable && parsed.texts[option.name] != nil {
                throw .usage("option '--\(option.name)' given more than once")
            }
            parsed.texts[option.name, default: []].append(value)
        }
        if parsed[CommonOptions.help] { return parsed }
        for option in known where option.isRequired && parsed.texts[option.name] == nil {
            throw .usage("missing option '--\(option.name) <\(option.valueName ?? "")>'")
        }
        let required = positionals.filter { !$0.isOptional }.count
        if parsed.positionals.count < required {
            throw .usage("missing argument <\(positionals[parsed.positionals.count].name)>")
        }
        if parsed.positionals.count > positionals.count && positionals.last?.takesRest != true {
            throw .usage("unexpected argument '\(Values.printable(parsed.positionals[positionals.count]))'")
        }
        for (index, positional) in positionals.enumerated() where index < parsed.positionals.count {
            let texts = positional.takesRest ? parsed.positionals[index...] : parsed.positionals[index...index]
            for text in texts { parsed.positionalValues[positional.name, default: []].append(try positional.convert(text)) }
        }
        for option in known {
            guard let convert = option.convert, let texts = parsed.texts[option.name] else { continue }
            for text in texts { parsed.optionValues[option.name, default: []].append(try convert(text)) }
        }
        return parsed
    }
}
