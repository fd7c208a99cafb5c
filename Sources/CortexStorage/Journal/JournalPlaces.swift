import CortexCore

// Each backend says where its positions lie (`Journal.place(of:)`, `endPlace`), so that the CLI
// prints places and never reads a position's numbers (docs/decisions/027).

extension FileJournal {
    /// `000000000003.jsonl@1048576`, with `segment` and `offset` (bytes into the segment).
    public func place(of position: JournalPosition) -> JournalPlace {
        JournalPlace(
            text: position.description,
            members: [JSONMember("segment", .int(Int64(position.segment))), JSONMember("offset", .int(position.offset))])
    }

    /// `live segment 000000000003.jsonl at 1048576 bytes`, with `live_segment` and
    /// `live_segment_bytes`.
    public func endPlace(_ end: JournalPosition) -> JournalPlace {
        JournalPlace(
            text: "live segment \(JournalSegment.fileName(end.segment)) at \(end.offset) bytes",
            members: [JSONMember("live_segment", .int(Int64(end.segment))), JSONMember("live_segment_bytes", .int(end.offset))])
    }
}

extension MemoryJournal {
    /// `record 12`: the position of the 12th line appended (`record`).
    public func place(of position: JournalPosition) -> JournalPlace {
        JournalPlace(text: "record \(position.offset)", members: [JSONMember("record", .int(position.offset))])
    }

    /// `12 records`: a read that ended there read every line appended before (`records`).
    public func endPlace(_ end: JournalPosition) -> JournalPlace {
        JournalPlace(text: "\(end.offset) records", members: [JSONMember("records", .int(end.offset))])
    }
}

extension EtcdJournal {
    /// `revision 1234`: the cluster's revision the record was written at (`revision`).
    public func place(of position: JournalPosition) -> JournalPlace {
        JournalPlace(text: "revision \(position.offset)", members: [JSONMember("revision", .int(position.offset))])
    }

    /// `revision 1234`: the revision the read saw the journal at (`revision`).
    public func endPlace(_ end: JournalPosition) -> JournalPlace { place(of: end) }
}
