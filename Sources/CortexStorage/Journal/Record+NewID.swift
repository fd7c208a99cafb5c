import CortexCore

extension Record {
    /// A new record id: `r` and 16 random hex digits (64 bits from `getrandom`).
    public static func newID() -> String { "r" + POSIX.randomHex(bytes: 8) }
}
