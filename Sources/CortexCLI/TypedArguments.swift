import CortexCore
import CortexStorage

// Typed arguments (docs/decisions/028-typed-arguments.md): a command declares each option, flag
// and positional argument once, as a static key with the type its body receives. The parser
// converts and checks every value from that declaration before the body runs, the help text is
// generated from it, and the body reads `invocation.arguments[Key]`: no names looked up as
// strings, no values force-unwrapped.

/// An option or flag a command declares: what the parser and the help text read.
public protocol OptionDeclaration: Sendable {
    /// The declaration without its type.
    var spec: OptionSpec { get }
}

/// A positional argument a command declares: what the parser and the help text read.
public protocol PositionalDeclaration: Sendable {
    /// The declaration without its type.
    var spec: PositionalSpec { get }
}

/// `--name <VALUE>`, given at most once; the body reads a `Value?` (nil when not given).
public struct Option<Value: Sendable>: OptionDeclaration {
    /// The declaration without its type (its conversion returns a `Value`).
    public let spec: OptionSpec
    /// Text to value; throws `badInput` (65) or `usage` (64) for text it refuses.
    let convert: @Sendable (String) throws(CortexError) -> Value

    /// An option whose text becomes a value through `convert`.
    public init(
        _ name: String, _ valueName: String, _ help: String, convert: @escaping @Sendable (String) throws(CortexError) -> Value
    ) {
        let spec = OptionSpec(
            name: name, valueName: valueName, help: help, isRequired: false, isRepeatable: false, shortName: nil, convert: nil)
        self.init(spec: spec, convert: convert)
    }

    private init(spec: OptionSpec, convert: @escaping @Sendable (String) throws(CortexError) -> Value) {
        var spec = spec
        spec.convert = { (text) throws(CortexError) in try convert(text) }
        self.spec = spec
        self.convert = convert
    }

    /// The same option, also refusing values for which `isValid` is false: `badInput` with
    /// `message(text as typed)`.
    public func checked(
        _ isValid: @escaping @Sendable (Value) -> Bool, else message: @escaping @Sendable (String) -> String
    ) -> Option<Value> {
        let convert = self.convert
        return Option(spec: spec) { (text) throws(CortexError) in
            let value = try convert(text)
            guard isValid(value) else { throw .badInput(message(text)) }
            return value
        }
    }

    /// The same option, required: the parser refuses a command line without it (64) and the
    /// body reads a `Value`.
    public var required: RequiredOption<Value> {
        var spec = spec
        spec.isRequired = true
        return RequiredOption(spec: spec)
    }

    /// The same option, repeatable (`--type a --type b`): the body reads every value, in order.
    public var repeatable: RepeatableOption<Value> {
        var spec = spec
        spec.isRepeatable = true
        return RepeatableOption(spec: spec)
    }
}

/// `--name <VALUE>`, required: the body reads a `Value`.
public struct RequiredOption<Value: Sendable>: OptionDeclaration {
    /// The declaration without its type.
    public let spec: OptionSpec
}

/// `--name <VALUE>`, any number of times: the body reads `[Value]`, in the order given.
public struct RepeatableOption<Value: Sendable>: OptionDeclaration {
    /// The declaration without its type.
    public let spec: OptionSpec
}

/// `--name`, optionally with a one-letter alias (`-f`): the body reads a `Bool`.
public struct Flag: OptionDeclaration {
    /// The declaration without its type.
    public let spec: OptionSpec

    /// A flag.
    public init(_ name: String, _ help: String, short: Character? = nil) {
        spec = OptionSpec(
            name: name, valueName: nil, help: help, isRequired: false, isRepeatable: false, shortName: short, convert: nil)
    }
}

/// One positional argument, required: the body reads a `Value`.
public struct Positional<Value: Sendable>: PositionalDeclaration {
    /// The declaration without its type.
    public let spec: PositionalSpec

    /// A positional argument whose text becomes a value through `convert`.
    public init(_ name: String, _ help: String, convert: @escaping @Sendable (String) throws(CortexError) -> Value) {
        spec = PositionalSpec(name, help, convert: { (text) throws(CortexError) in try convert(text) })
    }
}

/// Every positional argument left (the last positional only: `<TASK>...`, `-- COMMAND [ARG ...]`):
/// the body reads `[Value]`, in order.
public struct Positionals<Value: Sendable>: PositionalDeclaration {
    /// The declaration without its type.
    public let spec: PositionalSpec

    /// The remaining arguments, each converted by `convert`; with `optional`, there may be none.
    public init(
        _ name: String, _ help: String, optional: Bool = false,
        convert: @escaping @Sendable (String) throws(CortexError) -> Value
    ) {
        spec = PositionalSpec(name, help, optional: optional, rest: true, convert: { (text) throws(CortexError) in try convert(text) })
    }
}

// MARK: - Value kinds (docs/cli.md, "Values")

extension Option where Value == String {
    /// Any text (a file path, a description, JSON).
    public static func text(_ name: String, _ valueName: String, _ help: String) -> Option<String> {
        Option(name, valueName, help) { $0 }
    }

    /// An id: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` (65 otherwise, naming `--name`).
    public static func identifier(_ name: String, _ valueName: String, _ help: String) -> Option<String> {
        Option(name, valueName, help) { (text) throws(CortexError) in try Values.validateIdentifier(text, what: "--\(name)") }
    }
}

extension Option where Value == Int64 {
    /// A whole number from 0 to `limit` (65 otherwise, naming `--name`).
    public static func count(_ name: String, _ valueName: String, _ help: String, atMost limit: Int64 = Limits.maximumCount)
        -> Option<Int64>
    {
        Option(name, valueName, help) { (text) throws(CortexError) in
            try Values.parseCount(text, what: "--\(name)", atMost: limit)
        }
    }

    /// A number of tokens: a count up to `Limits.maximumTokens`.
    public static func tokens(_ name: String, _ valueName: String, _ help: String) -> Option<Int64> {
        count(name, valueName, help, atMost: Limits.maximumTokens)
    }

    /// A duration (`90`, `90s`, `5m`, `2h`, `1d`), in milliseconds.
    public static func duration(_ name: String, _ valueName: String, _ help: String) -> Option<Int64> {
        Option(name, valueName, help) { (text) throws(CortexError) in try Values.parseDurationMilliseconds(text) }
    }

    /// The same option also taking `none`, which reads as nil (a limit lifted).
    public func orNone() -> Option<Value?> {
        let convert = self.convert
        return Option<Value?>(spec.name, spec.valueName ?? "", spec.help + " none lifts it.") { (text) throws(CortexError) in
            text == "none" ? nil : try convert(text)
        }
    }

    /// A number of cores (`0.5`, `2`), in thousandths of a core (`--cpu` of a spawn and of a
    /// tenant's quota).
    public static func cores(_ name: String, _ valueName: String, _ help: String) -> Option<Int64> {
        Option(name, valueName, help) { (text) throws(CortexError) in
            guard let cores = Double(text), cores > 0, cores <= 4096 else {
                throw .badInput("invalid --\(name) '\(Values.printable(text))': use a number of cores such as 0.5 or 2")
            }
            return Int64((cores * 1000).rounded())
        }
    }

    /// A size (`512`, `512K`, `64M`, `2G`), in bytes.
    public static func size(_ name: String, _ valueName: String, _ help: String) -> Option<Int64> {
        Option(name, valueName, help) { (text) throws(CortexError) in try Values.parseSizeBytes(text) }
    }
}

/// A value spelled as one of a fixed set of words (`--priority`, `--status`, `--restart`).
public protocol ArgumentChoice: Sendable {
    /// The value `text` spells; `badInput` listing the words otherwise.
    static func parse(_ text: String) throws(CortexError) -> Self
}

extension Priority: ArgumentChoice {}
extension TaskStatus: ArgumentChoice {}
extension RestartPolicy: ArgumentChoice {}

extension Option where Value: ArgumentChoice {
    /// One of `Value`'s words.
    public static func choice(_ name: String, _ valueName: String, _ help: String) -> Option<Value> {
        Option(name, valueName, help) { (text) throws(CortexError) in try Value.parse(text) }
    }
}

extension Positional where Value == String {
    /// An id (65 otherwise, naming it `what`: `task id`).
    public static func identifier(_ name: String, _ help: String, what: String) -> Positional<String> {
        Positional(name, help) { (text) throws(CortexError) in try Values.validateIdentifier(text, what: what) }
    }
}

extension Positionals where Value == String {
    /// Ids (65 for the first malformed one, naming it `what`).
    public static func identifiers(_ name: String, _ help: String, what: String, optional: Bool = false) -> Positionals<String> {
        Positionals(name, help, optional: optional) { (text) throws(CortexError) in try Values.validateIdentifier(text, what: what) }
    }

    /// Any texts (a command line).
    public static func texts(_ name: String, _ help: String, optional: Bool = false) -> Positionals<String> {
        Positionals(name, help, optional: optional) { $0 }
    }
}

/// The options every command takes.
public enum CommonOptions {
    /// `--dir DIR`: the coordination folder.
    public static let dir = Option.text("dir", "DIR", "Coordination folder (default: $CORTEX_DIR, else ./coordination).")
    /// `--json`: one JSON object on one line.
    public static let json = Flag("json", "Print exactly one JSON object on one line.")
    /// `--help`, `-h`.
    public static let help = Flag("help", "Show this help.", short: "h")
}
