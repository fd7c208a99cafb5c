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
        var text = text
        guard let (segment, offset) = text.withUTF8({ JournalPosition.parse(id: $0, prefix: kind.prefix) }) else { return nil }
        self.init(segment: Int(segment), offset: offset)
    }

    /// The segment and offset in `bytes` (`PREFIX<segment>.<offset>`, each a decimal number
    /// without sign or leading zero, the segment at least 1), or nil. One pass over the bytes, no
    /// allocation: listings sort hundreds of ids by position on every call.
    private static func parse(id bytes: UnsafeBufferPointer<UInt8>, prefix: String) -> (Int64, Int64)? {
        var index = 0
        for byte in prefix.utf8 {
            guard index < bytes.count, bytes[index] == byte else { return nil }
            index += 1
        }
        func number() -> Int64? {
            let start = index
            var value: Int64 = 0
            while index < bytes.count, (0x30...0x39).contains(bytes[index]), index - start < 18 {
                value = value * 10 + Int64(bytes[index] - 0x30)
                index += 1
            }
            let digits = index - start
            guard digits > 0, digits == 1 || bytes[start] != 0x30 else { return nil }
            return value
        }
        guard let segment = number(), segment >= 1, index < bytes.count, bytes[index] == UInt8(ascii: ".") else { return nil }
        index += 1
        guard let offset = number(), index == bytes.count else { return nil }
        return (segment, offset)
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

    /// Where an id sorts among the ids of its kind: counted ids first, then positional ones by
    /// position, anything else last, by its text.
    public struct IssueKey: Comparable, Sendable {
        let rank: Int
        let major: Int64
        let minor: Int64
        let text: String

        public static func < (lhs: IssueKey, rhs: IssueKey) -> Bool {
            (lhs.rank, lhs.major, lhs.minor, lhs.text) < (rhs.rank, rhs.major, rhs.minor, rhs.text)
        }
    }

    /// The sort key of id `id` of `kind` (see `IssueKey`).
    public static func issueKey(_ id: String, _ kind: IDKind) -> IssueKey {
        switch IssuedID(id, kind) {
        case .counted(let number): IssueKey(rank: 0, major: number, minor: 0, text: "")
        case .positional(let position): IssueKey(rank: 1, major: Int64(position.segment), minor: position.offset, text: "")
        case nil: IssueKey(rank: 2, major: 0, minor: 0, text: id)
        }
    }

    /// True when id `a` of `kind` was issued before id `b`: listings show things in the order
    /// they were created, which the text of positional ids does not sort into (`w-1.900` came
    /// before `w-1.1000`).
    public static func issueOrder(_ a: String, _ b: String, _ kind: IDKind) -> Bool { issueKey(a, kind) < issueKey(b, kind) }

    /// `items` in the order their ids of `kind` were issued, each id read once (a sort that
    /// compared ids by `issueOrder` would read each one about 2 log n times).
    public static func sortedInIssueOrder<Item>(_ items: some Sequence<Item>, _ kind: IDKind, id: (Item) -> String) -> [Item] {
        items.map { (issueKey(id($0), kind), $0) }.sorted { $0.0 < $1.0 }.map(\.1)
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
