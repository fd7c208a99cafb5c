import CortexCore

/// A read-only integrity check of a whole journal (`cortex verify`): checksums, seals, torn
/// lines, missing segments. Unlike a fold it never writes, not even a seal.
public enum JournalVerifier {
    /// What the check found.
    public struct Report: Sendable {
        /// Segment numbers found, in order.
        public var segments: [Int] = []
        /// Whole records before each segment's first seal (seals excluded).
        public var records = 0
        /// Records after a segment's first seal: void by the protocol, appended again by their
        /// writers. Expected under concurrency, not a fault.
        public var voidRecords = 0
        /// Torn or corrupt lines no acknowledgement record names.
        public var damaged: [DamagedLine] = []
        /// Damaged lines an acknowledgement record (`cortex verify --acknowledge`) names: known
        /// and harmless, no longer a fault.
        public var acknowledged: [DamagedLine] = []
        /// Whole records (checksum intact) that the fold refuses whatever the state: a time or a
        /// number outside the limits, a malformed payload. No tool writes them.
        public var invalid: [InvalidRecord] = []
        /// Structural faults: a missing segment, a seal naming the wrong successor, a seal in the live segment.
        public var problems: [String] = []
        /// Sealed segments whose successor exists but whose seal is not there yet; the next
        /// reader seals them. Reported, not a fault.
        public var unsealed: [Int] = []
        /// Bytes after the live segment's last complete line (a write in progress, or torn).
        public var partialTailBytes: Int64 = 0
        /// Where those bytes start, when there are any: the next record appended will follow
        /// them on the same line, so they become a "torn fragment before a whole record" there.
        public var partialTailPosition: JournalPosition?
        /// Segments under a tombstone whose archived copy was checked instead.
        public var archived: [Int] = []
        /// Segments under a tombstone whose archived copy the retention has removed (not a fault:
        /// the snapshot covers them).
        public var purged: [Int] = []

        /// True when nothing is damaged and the structure is sound.
        public var isClean: Bool { damaged.isEmpty && problems.isEmpty && invalid.isEmpty }
    }

    /// A well-formed record the fold refuses (see `Report.invalid`).
    public struct InvalidRecord: Equatable, Sendable {
        /// Where its line starts.
        public var position: JournalPosition
        /// The record's id.
        public var id: String
        /// Why the fold refuses it.
        public var reason: String
    }

    /// The kind of an acknowledgement record: `data.damaged` lists the positions
    /// (`{"segment": S, "offset": O}`) of damaged lines a person looked at and accepted.
    /// The reducer ignores it (an unknown kind); `verify` and the store's damage count honour it.
    public static let acknowledgementKind = "journal.acknowledge"

    /// The reasons of damage that is harmless by construction, and so may be acknowledged: the
    /// head of a record whose writer appended it again whole (or was killed before it returned
    /// anything to its caller). A line that fails its checksum is not among them.
    public static let acknowledgeableReasons: Set<String> = ["torn fragment before a whole record", "unterminated last line"]

    /// The positions an acknowledgement record names (empty for any other record).
    public static func acknowledgedPositions(_ record: Record) -> [JournalPosition] {
        guard record.kind == acknowledgementKind, let items = record.data["damaged"]?.arrayValue else { return [] }
        return items.compactMap { item in
            guard let segment = item["segment"]?.intValue, let offset = item["offset"]?.intValue, segment >= 1, segment <= Int64(Int32.max),
                offset >= 0
            else { return nil }
            return JournalPosition(segment: Int(segment), offset: offset)
        }
    }

    /// The payload of an acknowledgement record naming `lines`.
    public static func acknowledgement(of lines: [DamagedLine]) -> JSONValue {
        .object([
            "damaged": .array(
                lines.map {
                    .object([
                        "length": .int($0.length), "offset": .int($0.position.offset), "reason": .string($0.reason),
                        "segment": .int(Int64($0.position.segment)),
                    ])
                })
        ])
    }

    /// What `--acknowledge` would record: the unacknowledged harmless damage of `report`, plus
    /// the live segment's partial tail (which the acknowledgement record itself will follow).
    public static func acknowledgeable(_ report: Report) -> [DamagedLine] {
        var lines = report.damaged.filter { acknowledgeableReasons.contains($0.reason) }
        if let tail = report.partialTailPosition {
            lines.append(DamagedLine(position: tail, length: report.partialTailBytes, reason: "torn fragment before a whole record"))
        }
        return lines
    }

    /// Checks every segment in `journal`'s folder.
    public static func verify(_ journal: FileJournal) throws(CortexError) -> Report {
        var acknowledged = Set<JournalPosition>()
        let report = try verify(journal, acknowledged: &acknowledged)
        var result = report
        result.damaged = report.damaged.filter { !acknowledged.contains($0.position) }
        result.acknowledged = report.damaged.filter { acknowledged.contains($0.position) }
        return result
    }

    private static func verify(_ journal: FileJournal, acknowledged: inout Set<JournalPosition>) throws(CortexError) -> Report {
        var report = Report()
        let names = try withPath("list", journal.directory) { () throws(Errno) in
            try journal.folder.entries(journal.directory)
        }
        report.segments = names.compactMap(JournalSegment.number(fromFileName:)).sorted()
        guard let highest = report.segments.last else {
            report.problems.append("no journal segments in \(journal.directory)")
            return report
        }
        var expected = 1
        for segment in report.segments {
            if segment != expected {
                report.problems.append("segment\(segment - expected > 1 ? "s" : "") \(expected)…\(segment - 1) missing")
            }
            expected = segment + 1
            try check(segment: segment, isLive: segment == highest, journal: journal, into: &report, acknowledged: &acknowledged)
        }
        return report
    }

    private static func check(
        segment: Int, isLive: Bool, journal: FileJournal, into report: inout Report, acknowledged: inout Set<JournalPosition>
    ) throws(CortexError) {
        let fd: Int32
        let path: String
        switch try journal.openForReading(segment: segment) {
        case .missing:
            report.problems.append("segment \(segment) vanished while it was checked")
            return
        case .purged:
            report.purged.append(segment)
            return
        case .open(let opened, let openedPath, let archived):
            fd = opened
            path = openedPath
            if archived { report.archived.append(segment) }
        }
        defer { POSIX.close(fd) }
        var sealSeen = false
        var damaged: [DamagedLine] = []
        var invalid: [InvalidRecord] = []
        var records = 0
        var void = 0
        var problems: [String] = []
        let end = try SegmentScanner.scan(fd: fd, path: path, from: 0) { (line) throws(CortexError) in
            let here = JournalPosition(segment: segment, offset: line.start)
            switch RecordCodec.decode(line.bytes) {
            case .invalid(let reason):
                damaged.append(
                    DamagedLine(
                        position: here, length: line.end - line.start, reason: line.truncatedHead ? "line longer than 64 KiB" : reason))
            case .record(let record, let skipped):
                if skipped > 0 || line.truncatedHead {
                    damaged.append(DamagedLine(position: here, length: Int64(skipped), reason: "torn fragment before a whole record"))
                }
                if sealSeen {
                    void += 1
                } else if record.isSeal {
                    sealSeen = true
                    let next = record.data["next"]?.intValue
                    if next != Int64(segment + 1) && record.data["archive"] == nil {
                        problems.append("\(here): seal names segment \(next.map(String.init) ?? "nothing"), expected \(segment + 1)")
                    }
                    if isLive { problems.append("\(here): the live segment is sealed but segment \(segment + 1) does not exist") }
                } else {
                    records += 1
                    for position in acknowledgedPositions(record) { acknowledged.insert(position) }
                    if let reason = Reducer.invalidity(of: record) {
                        invalid.append(InvalidRecord(position: here, id: record.id, reason: reason))
                    }
                }
            }
            return true
        }
        report.records += records
        report.voidRecords += void
        report.damaged += damaged
        report.invalid += invalid
        report.problems += problems
        if !sealSeen && !isLive { report.unsealed.append(segment) }
        let partial = end.sizeSeen - end.offset
        if partial > 0 {
            if isLive {
                report.partialTailBytes = partial
                report.partialTailPosition = JournalPosition(segment: segment, offset: end.offset)
            } else {
                report.damaged.append(
                    DamagedLine(
                        position: JournalPosition(segment: segment, offset: end.offset), length: partial, reason: "unterminated last line"))
            }
        }
    }
}
