import CortexCore
import CortexStorage

/// What the parser found on a command line, every value already converted to its declared type.
/// A command's body reads it by the same typed keys its spec declares:
/// `invocation.arguments[Allocate.tokens]` is an `Int64` when `--tokens` is required, an
/// `Int64?` when it is not.
public struct ParsedArguments: Sendable {
    /// Option texts as typed, by option name, in the order given.
    var texts: [String: [String]] = [:]
    /// Flags given, by name.
    var flags: Set<String> = []
    /// Positional arguments as typed, in order.
    var positionals: [String] = []
    /// Converted option values, by option name, in the order given.
    var optionValues: [String: [any Sendable]] = [:]
    /// Converted positional values, by positional name (several for the last one when it takes the rest).
    var positionalValues: [String: [any Sendable]] = [:]

    /// The value of an optional `--option`, nil when it was not given.
    public subscript<Value>(option: Option<Value>) -> Value? { values(of: option.spec.name, as: Value.self).last }

    /// The value of a required `--option` (the parser refused the command line without it).
    public subscript<Value>(option: RequiredOption<Value>) -> Value {
        guard let value = values(of: option.spec.name, as: Value.self).last else {
            preconditionFailure("--\(option.spec.name) is read by a command that does not declare it")
        }
        return value
    }

    /// Every value of a repeatable `--option`, in the order given.
    public subscript<Value>(option: RepeatableOption<Value>) -> [Value] { values(of: option.spec.name, as: Value.self) }

    /// True when the flag was given.
    public subscript(flag: Flag) -> Bool { flags.contains(flag.spec.name) }

    /// A positional argument's value (the parser refused the command line without it).
    public subscript<Value>(positional: Positional<Value>) -> Value {
        guard let value = values(ofPositional: positional.spec.name, as: Value.self).first else {
            preconditionFailure("<\(positional.spec.name)> is read by a command that does not declare it")
        }
        return value
    }

    /// The values of the arguments left, in order (empty when there were none).
    public subscript<Value>(positionals: Positionals<Value>) -> [Value] {
        values(ofPositional: positionals.spec.name, as: Value.self)
    }

    /// The option's text as typed (`30s`), for messages that repeat it; nil when not given.
    public func text<Value>(of option: Option<Value>) -> String? { texts[option.spec.name]?.last }

    /// Sets `option` as if `text` had been given on the command line (`cortex init`'s questions),
    /// converting it the same way.
    /// - Throws: what the option's conversion throws for `text`.
    mutating func supply<Value>(_ text: String, for option: Option<Value>) throws(CortexError) {
        let value = try option.convert(text)
        texts[option.spec.name] = [text]
        optionValues[option.spec.name] = [value]
    }

    /// The values of option `name` as `Value`s.
    private func values<Value>(of name: String, as type: Value.Type) -> [Value] {
        Self.cast(optionValues[name] ?? [], to: type, name: "--" + name)
    }

    /// The values of positional argument `name` as `Value`s.
    private func values<Value>(ofPositional name: String, as type: Value.Type) -> [Value] {
        Self.cast(positionalValues[name] ?? [], to: type, name: "<\(name)>")
    }

    /// A value of another type means a command reads a key of the same name as the one it
    /// declares but of another type: a programming error, not an input error.
    private static func cast<Value>(_ values: [any Sendable], to type: Value.Type, name: String) -> [Value] {
        values.map { value in
            guard let typed = value as? Value else { preconditionFailure("\(name) is read as another type than it is declared") }
            return typed
        }
    }
}
