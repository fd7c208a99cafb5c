/// Parsing and validation of the values callers pass on the command line (docs/cli.md, "Values").
public enum Values {
    /// Checks an id against `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
    /// - Throws: `CortexError.badInput` naming `what` when the id does not match.
    public static func validateIdentifier(_ text: String, what: String) throws(CortexError) -> String {
        let bytes = Array(text.utf8)
        func isAlphanumeric(_ byte: UInt8) -> Bool {
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
        }
        guard let first = bytes.first, isAlphanumeric(first), bytes.count <= 64,
            bytes.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") })
        else {
            throw .badInput("invalid \(what) '\(printable(text))': use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")
        }
        return text
    }

    /// Parses a duration: `500ms`, `90`, `90s`, `5m`, `2h`, `1d` (a bare number is seconds), at
    /// most `Limits.maximumDurationMilliseconds` (3650d).
    /// - Returns: the duration in milliseconds.
    public static func parseDurationMilliseconds(_ text: String) throws(CortexError) -> Int64 {
        if text.hasSuffix("ms") {
            let digits = text.dropLast(2)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigitCharacter), let number = Int64(digits) else {
                throw .badInput("invalid duration '\(printable(text))': expected \(durationExample)")
            }
            guard number <= Limits.maximumDurationMilliseconds else {
                throw .badInput("invalid duration '\(printable(text))': at most 3650d")
            }
            return number
        }
        return try parseScaled(
            text, what: "duration", example: durationExample, limit: Limits.maximumDurationMilliseconds, limitText: "3650d"
        ) { unit in
            switch unit {
            case "s": 1000
            case "m": 60_000
            case "h": 3_600_000
            case "d": 86_400_000
            default: nil
            }
        }
    }

    /// How a duration may be written, for error messages.
    static let durationExample = "500ms, 90, 90s, 5m, 2h or 1d"

    /// Parses a size: `512`, `512K`, `64M`, `2G` (powers of 1024; a bare number is bytes), at
    /// most `Limits.maximumSizeBytes` (1024T).
    public static func parseSizeBytes(_ text: String) throws(CortexError) -> Int64 {
        try parseScaled(
            text.uppercased(), what: "size", example: "4096, 512K, 64M or 2G", limit: Limits.maximumSizeBytes,
            limitText: "1024T"
        ) { unit in
            switch unit {
            case "K": 1 << 10
            case "M": 1 << 20
            case "G": 1 << 30
            case "T": 1 << 40
            default: nil
            }
        }
    }

    /// Parses a whole, non-negative count up to `limit` (by default the largest jq holds
    /// exactly, 2^53 - 1; `Limits` has the tighter ones for tokens and attempts).
    public static func parseCount(_ text: String, what: String, atMost limit: Int64 = Limits.maximumCount) throws(CortexError)
        -> Int64
    {
        guard let value = Int64(text), value >= 0, value <= limit else {
            throw .badInput("invalid \(what) '\(printable(text))': expected a whole number from 0 to \(limit)")
        }
        return value
    }

    /// (Units by `switch`, not a dictionary literal: a new dictionary type costs a fresh process
    /// a metadata instantiation and a conformance lookup, more than the parse.)
    private static func parseScaled(
        _ text: String, what: String, example: String, limit: Int64, limitText: String, scaleOf: (Character) -> Int64?
    ) throws(CortexError) -> Int64 {
        var digits = Substring(text)
        var scale: Int64 = what == "duration" ? 1000 : 1
        if let last = digits.last, let unit = scaleOf(last) {
            scale = unit
            digits = digits.dropLast()
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigitCharacter), let number = Int64(digits),
            number <= (1 << 53) / scale
        else {
            throw .badInput("invalid \(what) '\(printable(text))': expected \(example)")
        }
        // Past the limit a duration would overflow the nanoseconds a wait computes from it.
        guard number <= limit / scale else { throw .badInput("invalid \(what) '\(printable(text))': at most \(limitText)") }
        return number * scale
    }

    /// `text` with control characters made visible and cut to a readable length, for error messages.
    public static func printable(_ text: String, limit: Int = 80) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            if result.count >= limit { return result + "…" }
            if scalar.value < 0x20 || scalar.value == 0x7F {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}

extension Character {
    var isASCIIDigitCharacter: Bool { ("0"..."9").contains(self) }
}

/// A task priority; claims take higher priorities first (docs/cli.md).
public enum Priority: String, CaseIterable, Sendable, Comparable {
    case critical, high, medium, low

    /// Smaller is claimed first.
    public var rank: Int {
        switch self {
        case .critical: 0
        case .high: 1
        case .medium: 2
        case .low: 3
        }
    }

    public static func < (lhs: Priority, rhs: Priority) -> Bool { lhs.rank < rhs.rank }

    /// Parses `critical`, `high`, `medium` or `low`.
    public static func parse(_ text: String) throws(CortexError) -> Priority {
        guard let priority = Priority(rawValue: text) else {
            throw .badInput("invalid priority '\(Values.printable(text))': use critical, high, medium or low")
        }
        return priority
    }

}

extension Values {
    /// Thousandths as a decimal with no trailing zeros: 20 → `0.02`, 3300 → `3.3`, 4000 → `4`.
    public static func thousandths(_ value: Int64) -> String {
        let sign = value < 0 ? "-" : ""
        let magnitude = value.magnitude
        let whole = magnitude / 1000
        let fraction = magnitude % 1000
        guard fraction != 0 else { return "\(sign)\(whole)" }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 3 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(sign)\(whole).\(digits)"
    }

    /// A byte count as a person reads it, in the units `--memory` takes: `512 MiB`, `100 TiB`,
    /// `1.5 GiB` (one decimal at most), `900 bytes`.
    public static func readableSize(_ bytes: Int64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        guard bytes >= 1024 else { return "\(bytes) bytes" }
        var unit = -1
        var scaled = bytes
        while scaled >= 1024 * 1024, unit < units.count - 2 {
            scaled /= 1024
            unit += 1
        }
        // `scaled` is now below 1024 Ki of the next unit: print it in that unit with one decimal.
        let tenths = (scaled * 10 + 512) / 1024
        return tenths % 10 == 0 ? "\(tenths / 10) \(units[unit + 1])" : "\(tenths / 10).\(tenths % 10) \(units[unit + 1])"
    }
}
