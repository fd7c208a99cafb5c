import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// Archiving sealed segments behind tombstones and keeping the journal bounded
/// (docs/decisions/013): no fold, position or decision may change because a segment was archived.
/// The tests that need no file also run over a `MemoryJournal`, whose store compacts nothing.
@Suite struct JournalArchiveTests {
    /// A folder whose writers rotate every ~2 KiB, with budget records spread over many segments.
    func folderWithSegments(allocations: Int = 60) throws -> (StoreUnderTest, CoordinationLayout, CoordinationStore) {
        let (subject, store) = try storeWithSegments(.file, allocations: allocations)
        return (subject, subject.layout!, store)
    }

    /// `folderWithSegments`, or the same records in a `MemoryJournal`.
    func storeWithSegments(_ backend: StoreBackend, allocations: Int = 60) throws -> (StoreUnderTest, CoordinationStore) {
        var config = CortexConfig()
        config.segmentMaxBytes = 2048
        config.snapshotEveryRecords = 1_000_000  // snapshots only when the test asks
        let subject = try StoreUnderTest(backend, config: config)
        let store = try subject.open()
        _ = try store.submit(.budgetSet(total: 1_000_000))
        for index in 0..<allocations {
            let granted = try store.submit(.budgetAllocate(BudgetRequest(tokens: 10, holder: "w\(index)"))).outcome
            if index % 2 == 0, case .granted(let id) = granted {
                _ = try store.submit(.budgetRelease(allocation: id, used: 3))
            }
        }
        return (subject, store)
    }

    func compact(_ store: CoordinationStore, retention: Int64 = 86_400_000) throws -> CoordinationStore.Compaction {
        try store.compactJournal(rotateAboveBytes: 1024, retentionMilliseconds: retention, nowMilliseconds: POSIX.wallClockMilliseconds())
    }

    @Test(arguments: StoreBackend.allCases)
    func archivingChangesNoFoldAndNoOutcome(_ backend: StoreBackend) throws {
        let (subject, store) = try storeWithSegments(backend)
        let before = try subject.freshFold()
        let result = try compact(store)
        #expect(try compact(store).archived.isEmpty, "archiving twice does nothing more")
        // A fresh fold from the start reads the archived copies and decides every record the same way.
        let after = try subject.freshFold()
        #expect(after.outcomes.map(\.0.id) == before.outcomes.map(\.0.id))
        #expect(after.outcomes.map(\.1) == before.outcomes.map(\.1))
        #expect(after.state.budget == before.state.budget)
        #expect(after.state.budget == store.state.budget)
        guard let layout = subject.layout else {
            #expect(result == CoordinationStore.Compaction(), "a store without files compacts nothing")
            return
        }
        #expect(result.archived.count >= 3, "segments behind the snapshot are archived")
        let journal = FileJournal(directory: layout.journal)
        for segment in result.archived {
            #expect(try journal.isTombstone(segment))
            #expect(try POSIX.status(journal.archivePath(ofSegment: segment)) != nil)
            #expect(try journal.sizeOfSegment(segment) < 256, "a tombstone is one short line")
        }
        let report = try JournalVerifier.verify(journal)
        #expect(report.isClean, "\(report.problems) \(report.damaged)")
        #expect(report.archived == result.archived)
        #expect(report.records == before.outcomes.count)
    }

    @Test(arguments: StoreBackend.allCases)
    func aReaderBehindTheArchiveBoundaryCatchesUp(_ backend: StoreBackend) throws {
        let (subject, writer) = try storeWithSegments(backend, allocations: 10)
        // A reader that has folded only the first segments, with a descriptor on the old file.
        let reader = try subject.open()
        for index in 0..<50 { _ = try writer.submit(.budgetAllocate(BudgetRequest(tokens: 1, holder: "late\(index)"))) }
        _ = try compact(writer)
        try reader.catchUp()
        #expect(reader.state.budget == writer.state.budget)
        guard let layout = subject.layout else { return }
        // A reader starting from a position inside an archived segment, with nothing cached.
        var fromMiddle = 0
        _ = try FileJournal(directory: layout.journal).readForward(from: JournalPosition(segment: 2, offset: 0)) { _, _ in
            fromMiddle += 1
        }
        #expect(fromMiddle > 0)
    }

    @Test func anOldSnapshotPointingIntoAnArchivedSegmentStillLoads() throws {
        let (folder, layout, store) = try folderWithSegments(allocations: 10)
        defer { withExtendedLifetime(folder) {} }
        try store.writeSnapshot()
        let oldSnapshot = try POSIX.readFile(layout.snapshot)
        for index in 0..<60 { _ = try store.submit(.budgetAllocate(BudgetRequest(tokens: 1, holder: "x\(index)"))) }
        let result = try compact(store)
        #expect(!result.archived.isEmpty)
        // A slow writer puts back an older snapshot: its position lies in an archived segment.
        try AtomicFile.replace(layout.snapshot, with: oldSnapshot, durability: .processCrash)
        let reopened = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(reopened.state.budget == store.state.budget)
        #expect(reopened.recordsSinceSnapshot > 0, "it folded from the old snapshot through archived copies")
    }

    @Test func afterRetentionTheSnapshotOrItsCheckpointCarriesTheState() throws {
        let (folder, layout, store) = try folderWithSegments()
        defer { withExtendedLifetime(folder) {} }
        let first = try compact(store, retention: 0)
        #expect(!first.archived.isEmpty)
        usleep(5_000)
        let second = try compact(store, retention: 0)
        #expect(Set(second.purged).union(first.purged) == Set(first.archived))
        let journal = FileJournal(directory: layout.journal)
        #expect(journal.archivedSegmentNumbers().isEmpty)
        // Folding from the very start is no longer possible, and says why.
        #expect(throws: CortexError.self) { try freshFold(layout) }
        // The snapshot carries the state; with a damaged snapshot the checkpoint does.
        #expect(try CoordinationStore.open(root: layout.root, createIfMissing: false).state.budget == store.state.budget)
        try AtomicFile.replace(layout.snapshot, with: Array("{\"format\":2,\"posi".utf8), durability: .processCrash)
        #expect(try CoordinationStore.open(root: layout.root, createIfMissing: false).state.budget == store.state.budget)
        let report = try JournalVerifier.verify(journal)
        #expect(report.isClean)
        #expect(Set(report.purged) == Set(first.archived))
    }

    @Test func anArchiveInterruptedAfterTheLinkIsFinishedByTheNextRun() throws {
        let (folder, layout, store) = try folderWithSegments()
        defer { withExtendedLifetime(folder) {} }
        let journal = FileJournal(directory: layout.journal)
        try store.writeSnapshot()
        // kill -9 between the link and the tombstone: the archive copy exists, the name is still the segment.
        try POSIX.link(journal.path(ofSegment: 1), journal.archivePath(ofSegment: 1))
        let result = try compact(store)
        #expect(result.archived.first == 1)
        #expect(try journal.isTombstone(1))
        #expect(try freshFold(layout).state.budget == store.state.budget)
    }

    @Test func aTombstoneNeverRedirectsOutsideTheArchiveFolder() throws {
        let (folder, layout, store) = try folderWithSegments()
        defer { withExtendedLifetime(folder) {} }
        _ = try compact(store)
        let journal = FileJournal(directory: layout.journal)
        // A hand-made tombstone naming another file: the reader still opens archive/<its own number>.
        let forged = Record(
            id: Record.newID(), timeMilliseconds: 1, kind: Record.sealKind, data: .object(["archive": "../../config.json", "next": 2]))
        let path = journal.path(ofSegment: 1)
        try AtomicFile.replace(path, with: try RecordCodec.encode(forged), durability: .processCrash)
        #expect(try freshFold(layout).state.budget == store.state.budget)
    }

    @Test func finishedTaskFilesOfPastHoursAreMergedAndStayFindable() throws {
        let folder = try TemporaryDirectory()
        var config = CortexConfig()
        config.snapshotEveryRecords = 1_000_000
        let layout = try folder.coordination(config)
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        var ids: [String] = []
        for round in 0..<5 {
            for _ in 0..<4 {
                guard case .created(let id, _) = try store.submit(.taskCreate(TaskSpec(type: "t"))).outcome,
                    case .claimed(_, let claim) = try store.submit(.taskClaim(TaskClaim(worker: "w"))).outcome
                else {
                    Issue.record("round \(round): create or claim failed")
                    return
                }
                _ = try store.submit(.taskComplete(task: id, claim: claim, result: nil, tokensUsed: nil))
                ids.append(id)
            }
            try store.writeSnapshot()  // one small file of 4 finished tasks per round
        }
        func files() throws -> [String] { try POSIX.directoryEntries(layout.finishedTasks).filter { $0.hasSuffix(".jsonl") }.sorted() }
        #expect(try files().count == 5)
        let now = POSIX.wallClockMilliseconds()
        // Files of the current hour stay as they are.
        #expect(try store.mergeFinishedTaskFiles(nowMilliseconds: now) == 0)
        // Two hours later they are merged into one file, each task once.
        #expect(try store.mergeFinishedTaskFiles(nowMilliseconds: now + 7_200_000) == 5)
        let merged = try files()
        #expect(merged.count == 1 && merged[0].hasPrefix("hour-"), "\(merged)")
        // A race left a second file of that hour holding some of the same tasks: merged again, no duplicate.
        let copy = layout.finishedTasks + "/hour-\(now / 3_600_000)-copy.jsonl"
        let first = try POSIX.readFile(layout.finishedTasks + "/" + merged[0])
        try AtomicFile.replace(copy, with: Array(first.prefix(upTo: first.firstIndex(of: 0x0A)! + 1)), durability: .processCrash)
        #expect(try store.mergeFinishedTaskFiles(nowMilliseconds: now + 7_200_000) == 2)
        let remerged = try files()
        #expect(remerged.count == 1, "\(remerged)")
        let lines = try POSIX.readFile(layout.finishedTasks + "/" + remerged[0]).split(separator: 0x0A)
        #expect(lines.count == 20, "each finished task once")
        let reopened = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(try reopened.finishedTasks().map(\.id) == ids)
        for id in ids { #expect(try reopened.task(id)?.status == .done, "\(id)") }
    }

    /// Journal growth: many operations of every kind, with the reaper's compaction now and then.
    /// The live segment, the snapshot and the views stay the same size however long it runs, and
    /// finished work leaves the hot state (the 1,000,000-operation run is `cortex-bench growth`).
    @Test func theLiveJournalSnapshotAndViewsStayBounded() throws {
        let folder = try TemporaryDirectory()
        var config = CortexConfig()
        config.segmentMaxBytes = 64 << 10
        let layout = try folder.coordination(config)
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        _ = try store.submit(.budgetSet(total: 1 << 50))
        var sizes: [(live: Int64, snapshot: Int, views: Int, journalFiles: Int)] = []
        var operations = 0
        for round in 0..<8 {
            for index in 0..<150 {
                let created = try store.submit(.taskCreate(TaskSpec(type: "t")))
                guard case .created(let task, _) = created.outcome,
                    case .granted(let allocation) = try store.submit(.budgetAllocate(BudgetRequest(tokens: 5, holder: task))).outcome,
                    case .claimed(_, let claim) = try store.submit(.taskClaim(TaskClaim(worker: "w\(index % 7)"))).outcome
                else {
                    Issue.record("round \(round) op \(index): unexpected outcome")
                    return
                }
                _ = try store.submit(.taskComplete(task: task, claim: claim, result: nil, tokensUsed: 3))
                _ = try store.submit(.budgetRelease(allocation: allocation, used: 3))
                operations += 5
                try store.publish()
            }
            // A minute ahead: the seal this call appends is written after `now` is read, and its
            // mtime must still count as older (under load, more than a millisecond passes).
            _ = try store.compactJournal(
                rotateAboveBytes: 16 << 10, retentionMilliseconds: 0, nowMilliseconds: POSIX.wallClockMilliseconds() + 60_000)
            try store.publishViews()
            let viewBytes = try [layout.budgetView, layout.taskView, layout.workerView].reduce(0) { try $0 + POSIX.readFile($1).count }
            sizes.append(
                (
                    try FileJournal(directory: layout.journal).sizeOfSegment(store.position.segment),
                    try POSIX.readFile(layout.snapshot).count,
                    viewBytes, FileJournal(directory: layout.journal).archivedSegmentNumbers().count
                ))
        }
        #expect(operations == 6_000)
        #expect(store.state.tasks.counts[.done] == 1_200)
        #expect(store.state.budget.allocations.isEmpty)
        for sample in sizes.dropFirst() {
            #expect(sample.snapshot <= sizes[0].snapshot + 256, "the snapshot holds live work only: \(sizes.map(\.snapshot))")
            #expect(sample.live <= 16 << 10, "the live segment is rotated and archived")
            #expect(sample.views <= sizes[0].views + 64, "views do not grow with finished work: \(sizes.map(\.views))")
            #expect(sample.journalFiles == 0, "retention 0 removes every archived copy")
        }
        let report = try JournalVerifier.verify(FileJournal(directory: layout.journal))
        #expect(report.isClean)
    }
}

/// Who writes snapshots: one process per `snapshot_every_records` records, not every publisher.
@Suite struct SnapshotDutyTests {
    @Test func onlyTheWriterOfEveryNthRecordWritesTheSnapshot() throws {
        let folder = try TemporaryDirectory()
        var config = CortexConfig()
        config.snapshotEveryRecords = 8
        let layout = try folder.coordination(config)
        // Five processes that loaded the same (absent) snapshot, appending in turn: 20 records.
        let stores = try (0..<5).map { _ in try CoordinationStore.open(root: layout.root, createIfMissing: false) }
        for round in 0..<4 {
            for (index, store) in stores.enumerated() {
                _ = try store.submit(.budgetQuota(tenant: "t\(index)-\(round)", tokens: 1))
            }
        }
        var writes = 0
        var last = FileIdentity.of(layout.snapshot)
        for store in stores {
            try store.publish()
            let now = FileIdentity.of(layout.snapshot)
            if now != last { writes += 1 }
            last = now
        }
        // Each of the five folded 20 ≥ 8 records past its snapshot; before turns all five wrote one.
        #expect(writes == 1, "the holder of record 8 or 16 writes; the other sees a newer snapshot")
        let reopened = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(reopened.state.budget.quotas.count == 20)
        #expect(reopened.recordsSinceSnapshot < 20)
    }

    @Test func aLaggingSnapshotIsWrittenByAnyoneOnceItIsFourTurnsBehind() throws {
        let folder = try TemporaryDirectory()
        var config = CortexConfig()
        config.snapshotEveryRecords = 8
        let layout = try folder.coordination(config)
        // Records 1...33 appended by a writer that never publishes (it died after each append).
        let silent = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        for index in 0..<33 { _ = try silent.submit(.budgetQuota(tenant: "s\(index)", tokens: 1)) }
        #expect(FileIdentity.of(layout.snapshot) == nil)
        let late = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        _ = try late.submit(.budgetQuota(tenant: "late", tokens: 1))  // record 34: not a turn
        try late.publish()
        #expect(FileIdentity.of(layout.snapshot) != nil, "34 ≥ 4 × 8 records behind: written anyway")
    }
}
