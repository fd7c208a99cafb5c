/// The kinds of things the fold issues ids for, each named by its prefix.
public enum IDKind: String, CaseIterable, Sendable {
    /// Tasks: `task-3.1048576`.
    case task = "task-"
    /// Token allocations: `alloc-3.1048576`.
    case allocation = "alloc-"
    /// Supervised workers: `w-3.1048576`.
    case worker = "w-"

    /// What every id of this kind starts with.
    public var prefix: String { rawValue }
}

extension JournalPosition {
    /// The id of the `kind` thing created by the record that starts at this position: the kind's
    /// prefix, the segment number, a dot and the byte offset (`task-3.1048576`). Positions are
    /// unique and a record never moves once written, so the id names the same thing in every
    /// fold, whatever other record is damaged or skipped (docs/decisions/019). The one place that
    /// turns positions into ids: a journal with other positions brings its own mapping.
    public func id(_ kind: IDKind) -> String { kind.prefix + String(segment) + "." + String(offset) }

    /// The position inside an id that `id(_:)` wrote for `kind`, or nil when `text` is not one:
    /// only the exact form `id(_:)` writes is accepted (no sign, no leading zero, no spaces), so a
    /// position has exactly one id.
    public init?(id text: String, _ kind: IDKind) {
        guard text.hasPrefix(kind.prefix) else { return nil }
        let parts = text.utf8.dropFirst(kind.prefix.utf8.count).split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 2, let segment = JournalPosition.canonicalNumber(parts[0]),
            let offset = JournalPosition.canonicalNumber(parts[1]), segment >= 1
        else { return nil }
        self.init(segment: Int(segment), offset: offset)
    }

    /// A decimal number written without sign or leading zero, or nil.
    private static func canonicalNumber(_ digits: Substring.UTF8View.SubSequence) -> Int64? {
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        guard digits.count == 1 || digits.first != 0x30 else { return nil }
        return digits.reduce(Int64(0)) { $0 * 10 + Int64($1 - 0x30) }
    }
}

/// An id as a lookup reads it: where it was issued, so "finished" can be told from "never".
public enum IssuedID: Equatable, Sendable {
    /// Issued by the record at this position (every id written by this version).
    case positional(JournalPosition)
    /// Counted in fold order by versions before positional ids (`task-000042`), kept where a
    /// snapshot of such a folder still holds it: the count.
    case counted(Int64)

    /// Reads `text` as an id of `kind`, or nil when it is neither form.
    public init?(_ text: String, _ kind: IDKind) {
        if let position = JournalPosition(id: text, kind) {
            self = .positional(position)
            return
        }
        guard text.hasPrefix(kind.prefix) else { return nil }
        let digits = text.utf8.dropFirst(kind.prefix.utf8.count)
        guard digits.count >= 6, digits.count <= 18, digits.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        let number = digits.reduce(Int64(0)) { $0 * 10 + Int64($1 - 0x30) }
        guard number > 0 else { return nil }
        self = .counted(number)
    }

    /// True when id `a` of `kind` was issued before id `b` (counted ids before positional ones,
    /// anything else last, by its text): listings show things in the order they were created,
    /// which the text of positional ids does not sort into (`w-1.900` came before `w-1.1000`).
    public static func issueOrder(_ a: String, _ b: String, _ kind: IDKind) -> Bool {
        func key(_ id: String) -> (Int, Int64, Int64, String) {
            switch IssuedID(id, kind) {
            case .counted(let number): (0, number, 0, "")
            case .positional(let position): (1, Int64(position.segment), position.offset, "")
            case nil: (2, 0, 0, id)
            }
        }
        return key(a) < key(b)
    }

    /// True when an id of `kind` named `text` was issued before the record at `position` (a
    /// positional id from an earlier record, or a counted id within `counted`, the number of
    /// counted ids issued): a thing of that id that is no longer active has finished, which is a
    /// normal "no". False for a malformed id or one from `position` on: no such thing.
    public static func issued(_ text: String, _ kind: IDKind, before position: JournalPosition, counted: Int64) -> Bool {
        switch IssuedID(text, kind) {
        case .positional(let issuedAt): issuedAt < position
        case .counted(let number): number <= counted
        case nil: false
        }
    }
}
