import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// The journal protocol of docs/design.md, driven step by step inside one process so each
/// interleaving is exact. (The multi-process versions live in CortexToolsTests.)
@Suite struct JournalProtocolTests {
    @Test func aRecordAppendedAfterASealIsVoidAndAppendedAgainToTheNextSegment() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let writer = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        _ = try writer.submit(.budgetSet(total: 100))
        // Another process rotates between the writer's fold and its append.
        let rotator = FileJournal(directory: layout.journal)
        try rotator.rotate(segment: 1, timeMilliseconds: 5)
        let submission = try writer.submit(.budgetAllocate(BudgetRequest(tokens: 10)))
        #expect(submission.outcome == .granted(allocation: "alloc-2.0"), "named by where it landed, the next segment's start")
        #expect(writer.position.segment == 2)

        // The fresh fold sees the record exactly once, with the same outcome.
        let fold = try freshFold(layout)
        let copies = fold.outcomes.filter { $0.0.id == submission.record.id }
        #expect(copies.count == 1)
        #expect(copies.first?.1 == submission.outcome)
        let report = try JournalVerifier.verify(rotator)
        #expect(report.voidRecords == 1)
        #expect(report.isClean)
    }

    @Test func aReaderSealsASegmentWhoseRotatorDiedBeforeSealing() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        _ = try store.submit(.budgetSet(total: 100))
        // The rotator created segment 2 and was killed before appending the seal.
        let journal = FileJournal(directory: layout.journal)
        #expect(try journal.createSegment(2))
        #expect(try JournalVerifier.verify(journal).unsealed == [1])

        let reader = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(reader.position == JournalPosition(segment: 2, offset: 0))
        #expect(reader.state.budget.total == 100)
        #expect(try JournalVerifier.verify(journal).unsealed.isEmpty)
    }

    @Test func recordsAppendedBeforeTheFirstSealAreKeptAndAfterItAreVoid() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let journal = FileJournal(directory: layout.journal)
        func append(_ event: Event) throws {
            guard case .appended = try journal.appendLine(try RecordCodec.encode(record(event)), toSegment: 1) else {
                Issue.record("torn append")
                return
            }
        }
        try append(.budgetSet(total: 10))
        #expect(try journal.createSegment(2))
        try append(.budgetSet(total: 20))  // before the first seal: valid
        try journal.appendSeal(toSegment: 1, timeMilliseconds: 1)
        try append(.budgetSet(total: 30))  // after it: void
        try journal.appendSeal(toSegment: 1, timeMilliseconds: 2)  // a second seal changes nothing
        let fold = try freshFold(layout)
        #expect(fold.state.budget.total == 20)
        #expect(fold.outcomes.count == 2)
    }

    @Test func aPartialLastLineIsNotFoldedUntilItIsComplete() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let line = try RecordCodec.encode(record(.budgetSet(total: 42)))
        let path = FileJournal(directory: layout.journal).path(ofSegment: 1)
        try appendRaw(Array(line.prefix(30)), to: path)
        #expect(try freshFold(layout).outcomes.isEmpty)
        try appendRaw(Array(line.dropFirst(30)), to: path)
        #expect(try freshFold(layout).state.budget.total == 42)
    }

    @Test func aFragmentLeftByAKilledWriterDoesNotHideTheNextRecord() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let journal = FileJournal(directory: layout.journal)
        let killed = try RecordCodec.encode(record(.budgetSet(total: 1)))
        try appendRaw(Array(killed.prefix(50)), to: journal.path(ofSegment: 1))  // kill -9 mid-write
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        let submission = try store.submit(.budgetSet(total: 99))
        #expect(submission.outcome == .applied)
        #expect(try freshFold(layout).state.budget.total == 99)
        let report = try JournalVerifier.verify(journal)
        #expect(report.damaged.count == 1)
        #expect(report.damaged.first?.reason == "torn fragment before a whole record")
    }

    @Test func damagedLinesAreSkippedCountedAndNeverFatal() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let journal = FileJournal(directory: layout.journal)
        let path = journal.path(ofSegment: 1)
        let good = try RecordCodec.encode(record(.budgetSet(total: 5)))
        var corrupted = try RecordCodec.encode(record(.budgetSet(total: 6)))
        corrupted[20] ^= 1
        let huge = [UInt8](repeating: UInt8(ascii: "x"), count: 300_000) + good.dropLast() + [0x0A]
        try appendRaw(good, to: path)
        try appendRaw(Array("not json at all\n".utf8), to: path)
        try appendRaw([0x00, 0xFF, 0xFE, 0x0A], to: path)
        try appendRaw(corrupted, to: path)
        try appendRaw(huge, to: path)  // a huge line that ends in a whole record
        try appendRaw(try RecordCodec.encode(record(.budgetQuota(tenant: "t", tokens: 3))), to: path)
        let fold = try freshFold(layout)
        #expect(fold.outcomes.count == 3)
        #expect(fold.state.budget.total == 5)
        #expect(fold.state.budget.quotas["t"] == 3)
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(store.damagedLines.count == 4)
        #expect(!(try JournalVerifier.verify(journal).isClean))
    }

    @Test func foldingAfterASnapshotEqualsFoldingFromTheStart() throws {
        let folder = try TemporaryDirectory()
        var config = CortexConfig()
        config.segmentMaxBytes = 2048
        let layout = try folder.coordination(config)
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        _ = try store.submit(.budgetSet(total: 10_000))
        _ = try store.submit(.budgetQuota(tenant: "acme", tokens: 500))
        for index in 0..<40 {
            let granted = try store.submit(
                .budgetAllocate(BudgetRequest(tokens: 25, holder: "w\(index)", tenant: index % 2 == 0 ? "acme" : nil))
            ).outcome
            if index == 20 { try store.writeSnapshot() }
            if index % 3 == 0, case .granted(let id) = granted { _ = try store.submit(.budgetRelease(allocation: id, used: 5)) }
        }
        try store.writeSnapshot()
        _ = try store.submit(.budgetReset)
        let fromSnapshot = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        let fromStart = try freshFold(layout).state
        #expect(fromSnapshot.state == fromStart)
        #expect(fromSnapshot.recordsSinceSnapshot == 1)
        #expect(fromSnapshot.position.segment > 1)
    }

    @Test func anUnreadableSnapshotFallsBackToAFullFold() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        _ = try store.submit(.budgetSet(total: 77))
        try AtomicFile.replace(layout.snapshot, with: Array("{\"format\":1,\"pos".utf8), durability: .processCrash)
        #expect(try CoordinationStore.open(root: layout.root, createIfMissing: false).state.budget.total == 77)
    }

    @Test func randomDamageNeverCrashesAFoldAndKeepsEveryUntouchedRecord() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<25 {
            let folder = try TemporaryDirectory()
            let layout = try folder.coordination()
            let path = FileJournal(directory: layout.journal).path(ofSegment: 1)
            var expected: [String] = []
            var bytes: [UInt8] = []
            for index in 0..<60 {
                let line = try RecordCodec.encode(record(.budgetQuota(tenant: "t\(index)", tokens: Int64(index))))
                switch Int.random(in: 0..<10, using: &generator) {
                case 0: bytes += line.prefix(Int.random(in: 1..<line.count, using: &generator))  // torn, no newline
                case 1:
                    bytes +=
                        (0..<Int.random(in: 1..<80, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) } + [0x0A]
                case 2:
                    var flipped = line
                    flipped[Int.random(in: 0..<(line.count - 1), using: &generator)] ^= 0x04
                    bytes += flipped
                default:
                    // A whole record survives unless a torn fragment or junk without newline precedes it
                    // on the same line; recovery still finds it at the line's end.
                    bytes += line
                    expected.append("t\(index)")
                }
            }
            try appendRaw(bytes + [0x0A], to: path)
            let quotas = try freshFold(layout).state.budget.quotas
            for tenant in expected where quotas[tenant] == nil {
                Issue.record("round \(round): whole record for \(tenant) lost")
            }
            #expect(Set(quotas.keys).isSubset(of: Set((0..<60).map { "t\($0)" })))
        }
    }
}
