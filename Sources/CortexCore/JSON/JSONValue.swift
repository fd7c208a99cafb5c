/// A JSON value. Objects keep their members in an array (cheap to build while folding
/// a journal; the writer sorts keys). Equality treats objects as unordered, as JSON does.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number written without fraction or exponent that fits in 64 bits.
    case int(Int64)
    /// Any other number.
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([JSONMember])

    /// Builds an object from key/value pairs; `nil` values are left out, so optional fields vanish.
    public static func object(_ pairs: KeyValuePairs<String, JSONValue?>) -> JSONValue {
        .object(pairs.compactMap { key, value in value.map { JSONMember(key, $0) } })
    }

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.int(let a), .int(let b)): return a == b
        case (.double(let a), .double(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)):
            guard a.count == b.count else { return false }
            let order: (JSONMember, JSONMember) -> Bool = { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            return a.sorted(by: order) == b.sorted(by: order)
        default: return false
        }
    }

    /// The member named `key` of an object, or nil.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        for member in members where member.key == key { return member.value }
        return nil
    }

    /// The string, if this is one.
    public var stringValue: String? { if case .string(let text) = self { return text } else { return nil } }

    /// The integer, if this is a number with no fractional part that fits in 64 bits.
    public var intValue: Int64? {
        switch self {
        case .int(let number): return number
        case .double(let number) where number.rounded() == number && abs(number) < 9.2e18: return Int64(number)
        default: return nil
        }
    }

    /// The boolean, if this is one.
    public var doubleValue: Double? {
        switch self {
        case .int(let number): return Double(number)
        case .double(let number): return number
        default: return nil
        }
    }

    /// The value if it is a boolean.
    public var boolValue: Bool? { if case .bool(let flag) = self { return flag } else { return nil } }

    /// The elements, if this is an array.
    public var arrayValue: [JSONValue]? { if case .array(let items) = self { return items } else { return nil } }

    /// The members, if this is an object.
    public var objectMembers: [JSONMember]? { if case .object(let members) = self { return members } else { return nil } }
}

/// One `"key": value` member of a JSON object.
public struct JSONMember: Equatable, Sendable {
    /// The member's name.
    public var key: String
    /// The member's value.
    public var value: JSONValue

    /// A member with the given key and value.
    public init(_ key: String, _ value: JSONValue) {
        self.key = key
        self.value = value
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension JSONValue {
    /// A string value, or nil (so an optional field disappears from an object).
    public static func optional(_ text: String?) -> JSONValue? { text.map { .string($0) } }

    /// An integer value, or nil (so an optional field disappears from an object).
    public static func optional(_ number: Int64?) -> JSONValue? { number.map { .int($0) } }

    /// An integer from a Swift `Int`.
    public static func int(_ number: Int) -> JSONValue { .int(Int64(number)) }
}
