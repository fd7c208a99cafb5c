/// A place in the journal: an opaque cursor (docs/decisions/027). Two numbers ordered one after
/// the other; only the backend that issued a position knows what they mean (`FileJournal`: a
/// segment number and a byte offset in it; `MemoryJournal`: 1 and a record's index). Everything
/// above the journal compares positions and stores them through the encodings below (`json` in
/// snapshots, `id(_:)` for ids, `fileNameStem` in file names), never reading the numbers.
public struct JournalPosition: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// The major number (`FileJournal`: the segment, `journal/000000000001.jsonl` is segment 1).
    public var segment: Int
    /// The minor number (`FileJournal`: bytes from the start of the segment).
    public var offset: Int64

    /// A position in `segment` at `offset`.
    public init(segment: Int, offset: Int64) {
        self.segment = segment
        self.offset = offset
    }

    /// The highest segment number a position may name (12 digits, the file name's width).
    public static let maximumSegment: Int64 = 999_999_999_999

    /// The start of the journal.
    public static let start = JournalPosition(segment: 1, offset: 0)

    public static func < (lhs: JournalPosition, rhs: JournalPosition) -> Bool {
        (lhs.segment, lhs.offset) < (rhs.segment, rhs.offset)
    }

    public var description: String { "\(JournalSegment.fileName(segment))@\(offset)" }

    /// `{"segment": N, "offset": M}`.
    public var json: JSONValue { .object(["offset": .int(offset), "segment": .int(segment)]) }

    /// `000000000003-1048576`: the position in a file name (finished tasks, `state/finished/`).
    public var fileNameStem: String { "\(JournalSegment.fileName(segment).dropLast(6))-\(offset)" }

    /// Reads `{"segment": N, "offset": M}`.
    public init?(json: JSONValue) {
        guard let segment = json["segment"]?.intValue, let offset = json["offset"]?.intValue,
            segment >= 1, segment <= JournalPosition.maximumSegment, offset >= 0, offset <= Limits.maximumCount
        else { return nil }
        self.init(segment: Int(segment), offset: offset)
    }
}

/// File names of journal segments.
public enum JournalSegment {
    /// `000000000042.jsonl` for segment 42.
    public static func fileName(_ segment: Int) -> String {
        let digits = String(segment)
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits + ".jsonl"
    }

    /// The segment number of a segment file name, or nil for any other name.
    public static func number(fromFileName name: String) -> Int? {
        guard name.hasSuffix(".jsonl") else { return nil }
        let digits = name.dropLast(6)
        guard digits.count == 12, digits.allSatisfy(\.isASCIIDigitCharacter) else { return nil }
        return Int(digits)
    }
}

/// A line the reader could not trust, kept for `cortex verify` and the health counters.
public struct DamagedLine: Equatable, Sendable {
    /// Where the damaged bytes start.
    public var position: JournalPosition
    /// How many bytes were skipped.
    public var length: Int64
    /// Why they were skipped: "checksum mismatch", "torn fragment before a record", …
    public var reason: String

    /// A damaged line from its parts.
    public init(position: JournalPosition, length: Int64, reason: String) {
        self.position = position
        self.length = length
        self.reason = reason
    }
}
