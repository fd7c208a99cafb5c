import Testing

@testable import CortexCore
@testable import CortexStorage

/// Each backend says where its positions lie (`Journal.place(of:)`, `endPlace`), so the CLI
/// prints places and never reads a position's numbers (docs/decisions/027).
@Suite struct JournalPlaceTests {
    /// Reads a JSON object's integer member `key` from `members`.
    func value(_ members: [JSONMember], _ key: String) -> Int64? {
        members.first { $0.key == key }?.value.intValue
    }

    @Test func aFilePositionIsASegmentAndAnOffsetAndItsEndTheLiveSegment() throws {
        let folder = try TemporaryDirectory()
        let journal: any Journal = FileJournal(directory: folder.path)
        let position = JournalPosition(segment: 3, offset: 1_048_576)
        let place = journal.place(of: position)
        #expect(place.text == "000000000003.jsonl@1048576")
        #expect(value(place.members, "segment") == 3 && value(place.members, "offset") == 1_048_576 && place.members.count == 2)
        #expect(value(place.members(prefixed: "first_"), "first_segment") == 3)
        let end = journal.endPlace(position)
        #expect(end.text == "live segment 000000000003.jsonl at 1048576 bytes")
        #expect(value(end.members, "live_segment") == 3 && value(end.members, "live_segment_bytes") == 1_048_576)
    }

    @Test func anEtcdPositionIsARevisionNotASegment() throws {
        let journal: any Journal = try EtcdJournal(kv: FakeEtcdKV(), namespace: "n")
        let position = EtcdJournal.position(revision: 1234)
        #expect(journal.place(of: position) == JournalPlace(text: "revision 1234", members: [JSONMember("revision", .int(1234))]))
        let end = journal.endPlace(position)
        #expect(end.text == "revision 1234" && value(end.members, "revision") == 1234)
        #expect(value(end.members, "live_segment") == nil, "no segment on etcd: \(end.members)")
    }

    @Test func aMemoryPositionIsARecordNumber() throws {
        let journal: any Journal = MemoryJournal()
        let store = try CoordinationStore.over(journal)
        _ = try store.submit(.budgetSet(total: 10))
        let end = journal.endPlace(store.position)
        #expect(end.text.hasSuffix(" records") && !end.text.contains("segment"), "\(end.text)")
        #expect(journal.place(of: store.position).text.hasPrefix("record "))
    }
}
