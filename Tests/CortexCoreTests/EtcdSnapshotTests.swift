import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// A host folder over an etcd namespace on `kv` (the fake or a real cluster), opened as the tools
/// open it, with a small `snapshot_every_records`.
private final class HostFolder {
    let directory: TemporaryDirectory
    let root: String
    let kv: any EtcdKV

    init(kv: any EtcdKV, namespace: String = "n", host: String, every: Int = 4) throws {
        directory = try TemporaryDirectory()
        root = directory.path + "/coordination"
        self.kv = kv
        var config = CortexConfig()
        config.snapshotEveryRecords = every
        config.backend = .etcd(try EtcdSettings(endpoints: ["http://127.0.0.1:1"], namespace: namespace, hostID: host, path: "test"))
        try CoordinationStore.createLayout(CoordinationLayout(root: root), config: config)
    }

    func open() throws -> CoordinationStore { try CoordinationStore.open(root: root, createIfMissing: false, etcd: kv) }

    /// As `cortex-budget allocate` opens it: the fold waits for the submit's transaction.
    func openDeferred() throws -> CoordinationStore {
        try CoordinationStore.open(root: root, createIfMissing: false, etcd: kv, foldOnOpen: false)
    }

    /// One `cortex-budget allocate` call: open, submit, publish.
    /// - Returns: true when the allocation was granted.
    @discardableResult
    func allocate(_ tokens: Int64 = 1) throws -> Bool {
        let store = try open()
        let outcome = try store.submit(.budgetAllocate(BudgetRequest(tokens: tokens))).outcome
        store.publishAfterRecording()
        #expect(store.warnings.isEmpty)
        if case .granted = outcome { return true }
        return false
    }
}

/// The keys under the journal prefix of namespace `n`.
private func journalKeys(_ kv: any EtcdKV, namespace: String = "n") throws -> Int {
    try kv.range(prefix: Array("\(namespace)/journal/".utf8), minimumRevision: 0, maximumRevision: nil, limit: 10_000).keyValues.count
}

/// What a fold shows of the budget (the allocations with their ids), at a fixed time.
private func budget(_ store: CoordinationStore) -> JSONValue { Views.budget(store.state, nowMilliseconds: 0) }

/// Snapshots stored in etcd, the records they cover deleted, and the round trips of a call
/// (docs/decisions/035), on the in-memory cluster and on a real 3-member one.
@Suite(.serialized) struct EtcdSnapshotTests {
    /// The scenarios on a cluster: `kv`, and a witness that folded every record as it arrived
    /// (before any was deleted), to compare every host's fold with.
    private func newHostStartsFromTheStoredSnapshot(_ kv: any EtcdKV) throws {
        let first = try HostFolder(kv: kv, host: "a")
        let witness = try CoordinationStore.over(EtcdJournal(kv: kv, namespace: "n"))
        let setup = try first.open()
        _ = try setup.submit(.budgetSet(total: 1_000_000))
        setup.publishAfterRecording()
        for _ in 0..<40 {
            try first.allocate()
            try witness.catchUp()
        }
        #expect(witness.state.recordsFolded == 41)
        #expect(try journalKeys(kv) <= 10, "records the stored snapshot covers are deleted (a range of the prefix is short)")
        let stored = try #require(try EtcdJournal(kv: kv, namespace: "n").storedSnapshot())
        #expect(SnapshotCodec.journalIdentity(ImmutableBytes(stored))?["namespace"]?.stringValue == "n")

        let second = try HostFolder(kv: kv, host: "b")
        let joined = try second.open()
        #expect(joined.recordsSinceSnapshot < 10, "the new host read \(joined.recordsSinceSnapshot) of 41 records")
        #expect(budget(joined) == budget(witness))
        #expect(joined.state.recordsFolded == 41)
        #expect(ImmutableBytes.map(joined.layout.snapshot) != nil, "the stored snapshot is cached in the folder")
        // Both hosts go on; every fold still equals the witness's.
        #expect(try second.allocate())
        try first.allocate()
        try witness.catchUp()
        #expect(budget(try first.open()) == budget(witness))
        #expect(budget(try second.open()) == budget(witness))
    }

    private func staleLocalSnapshotRecovers(_ kv: any EtcdKV) throws {
        let first = try HostFolder(kv: kv, host: "a")
        let second = try HostFolder(kv: kv, host: "b")
        let witness = try CoordinationStore.over(EtcdJournal(kv: kv, namespace: "n"))
        let setup = try first.open()
        _ = try setup.submit(.budgetSet(total: 1_000_000))
        setup.publishAfterRecording()
        for _ in 0..<3 { try first.allocate() }
        // Host b caches a snapshot now, and keeps one store open (a long-lived caller).
        let early = try second.open()
        try early.writeSnapshot()
        for _ in 0..<40 {
            try first.allocate()
            try witness.catchUp()
        }
        #expect(try journalKeys(kv) <= 10)
        try early.catchUp()
        #expect(budget(early) == budget(witness), "a store behind the compaction starts again from the stored snapshot")
        let reopened = try second.open()
        #expect(budget(reopened) == budget(witness), "a folder whose snapshot predates the compaction recovers")
        #expect(try second.allocate())
    }

    private func hostileStoredSnapshotsAreIgnored(_ kv: any EtcdKV) throws {
        let first = try HostFolder(kv: kv, host: "a", every: 1000)
        let setup = try first.open()
        _ = try setup.submit(.budgetSet(total: 100))
        for _ in 0..<3 { try first.allocate() }
        let witness = try CoordinationStore.over(EtcdJournal(kv: kv, namespace: "n"))
        var forged = witness.state
        forged.budget.total = 999
        let key = Array("n/snapshot".utf8)
        func identity(_ namespace: String, _ position: JournalPosition, _ id: String) -> JSONValue {
            .object([
                JSONMember("backend", "etcd"), JSONMember("last_position", position.json), JSONMember("last_record", .string(id)),
                JSONMember("namespace", .string(namespace)),
            ])
        }
        // The witness's last record: a real id at its real revision.
        var lastID = ""
        var lastPosition = JournalPosition.start
        _ = try EtcdJournal(kv: kv, namespace: "n").readForward(from: .start) { record, at in
            lastID = record.id
            lastPosition = at
        }
        var flipped = SnapshotCodec.encode(
            forged, position: witness.position, writtenAtMilliseconds: 0, journal: identity("n", lastPosition, lastID))
        flipped[flipped.count - 2] ^= 0x01
        let hostile: [(String, [UInt8])] = [
            ("garbage", Array("not a snapshot\n{\"format\":4}\n".utf8)),
            (
                "another namespace",
                SnapshotCodec.encode(
                    forged, position: witness.position, writtenAtMilliseconds: 0, journal: identity("m", lastPosition, lastID))
            ),
            (
                "a future revision",
                SnapshotCodec.encode(
                    forged, position: JournalPosition(segment: 1, offset: 1_000_000_000), writtenAtMilliseconds: 0,
                    journal: identity("n", JournalPosition(segment: 1, offset: 1_000_000_000), lastID))
            ),
            ("a changed byte", flipped),
            ("no journal member", SnapshotCodec.encode(forged, position: witness.position, writtenAtMilliseconds: 0)),
        ]
        let contradicted = SnapshotCodec.encode(
            forged, position: witness.position, writtenAtMilliseconds: 0, journal: identity("n", lastPosition, "not-that-record"))
        for (what, value) in hostile {
            _ = try kv.putAll([(key, value)], ifModifiedBelow: Int64.max, key: key)
            // A newcomer whose local cache the journal contradicts (another record at its last
            // position) turns to the stored snapshot, which must be ignored too.
            let newcomer = try HostFolder(kv: kv, host: "b", every: 1000)
            try AtomicFile.replace(CoordinationLayout(root: newcomer.root).snapshot, with: contradicted, durability: .processCrash)
            let store = try newcomer.open()
            #expect(store.state.budget.total == 100, "\(what): ignored")
            #expect(budget(store) == budget(witness), "\(what)")
            #expect(try newcomer.allocate(), "\(what)")
            try witness.catchUp()
        }
        // A genuine snapshot in its place is believed: such a newcomer folds only what follows it.
        let writer = try first.open()
        try writer.writeSnapshot()
        let newcomer = try HostFolder(kv: kv, host: "c", every: 1000)
        try AtomicFile.replace(CoordinationLayout(root: newcomer.root).snapshot, with: contradicted, durability: .processCrash)
        let store = try newcomer.open()
        #expect(store.recordsSinceSnapshot <= 1, "only the snapshot's last record, checked")
        #expect(budget(store) == budget(witness))
        // Once the records are compacted away, a hostile stored snapshot leaves no way to the
        // state: a newcomer's open fails with one error (never a crash, never a wrong state).
        let busy = try HostFolder(kv: kv, host: "d", every: 4)
        for _ in 0..<20 { try busy.allocate() }
        #expect(try journalKeys(kv) <= 10)
        _ = try kv.putAll([(key, Array("garbage".utf8))], ifModifiedBelow: Int64.max, key: key)
        let late = try HostFolder(kv: kv, host: "e", every: 4)
        let error = #expect(throws: CortexError.self) { try late.open() }
        #expect(error.map(EtcdJournal.isCompaction) == true)
    }

    @Test func aNewHostStartsFromTheSnapshotInEtcdAndTheRecordsItCoversAreDeleted() throws {
        try newHostStartsFromTheStoredSnapshot(FakeEtcdKV())
    }

    @Test func aHostWhoseSnapshotPredatesACompactionStartsFromTheStoredOne() throws {
        try staleLocalSnapshotRecovers(FakeEtcdKV())
    }

    @Test func aHostileValueAtTheSnapshotKeyIsIgnored() throws {
        try hostileStoredSnapshotsAreIgnored(FakeEtcdKV())
    }

    @Test(.enabled(if: EtcdCluster.isInstalled, EtcdCluster.notInstalled))
    func onARealClusterSnapshotsCompactionAndHostileValuesWork() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        try newHostStartsFromTheStoredSnapshot(client)
        // Each scenario on a namespace of its own: wipe "n" between them.
        _ = try client.deleteRange(prefix: Array("n/".utf8), belowRevision: Int64.max)
        try staleLocalSnapshotRecovers(client)
        _ = try client.deleteRange(prefix: Array("n/".utf8), belowRevision: Int64.max)
        try hostileStoredSnapshotsAreIgnored(client)
        // The append's own range, in the transaction: every record from the position, in
        // revision order, ending with the new one, paged past the transaction's first page.
        let journal = try EtcdJournal(kv: client, namespace: "order", pageSize: 3)
        var positions: [JournalPosition] = []
        for total in 1...5 {
            let line = try RecordCodec.encode(record(.budgetSet(total: Int64(total))))
            positions.append(try journal.append(line, tail: .start).position)
        }
        var seen: [(Int64?, JournalPosition)] = []
        let (appended, read) = try journal.appendThenRead(try RecordCodec.encode(record(.budgetSet(total: 6))), from: positions[1]) {
            record, at in seen.append((record.data["total"]?.intValue, at))
        }
        #expect(seen.map(\.0) == [2, 3, 4, 5, 6])
        #expect(seen.map(\.1) == Array(positions[1...]) + [appended.position])
        #expect(read.end == EtcdJournal.position(revision: appended.position.offset + 1))
        // A key as it was at an older revision.
        let key = Array("order/snapshot".utf8)
        let firstPut = try #require(try client.putAll([(key, Array("one".utf8))], ifModifiedBelow: Int64.max, key: key))
        _ = try client.putAll([(key, Array("two".utf8))], ifModifiedBelow: Int64.max, key: key)
        #expect(try client.get(key: key, atRevision: firstPut.revision)?.value == Array("one".utf8))
        #expect(try client.get(key: key, atRevision: nil)?.value == Array("two".utf8))
    }

    @Test func aTaskFinishedAndCompactedOnOneHostIsFoundOnAHostThatStartsFromTheStoredSnapshot() throws {
        let kv = FakeEtcdKV()
        let first = try HostFolder(kv: kv, host: "a")
        var finished: [String] = []
        for index in 0..<12 {
            let store = try first.open()
            guard case .created(let id, _) = try store.submit(.taskCreate(TaskSpec(type: "t", key: "k\(index)"))).outcome,
                case .claimed(_, let claim) = try store.submit(.taskClaim(TaskClaim(worker: "w"))).outcome
            else {
                Issue.record("create and claim")
                return
            }
            _ = try store.submit(.taskComplete(task: id, claim: claim, result: "r\(index)", tokensUsed: nil))
            store.publishAfterRecording()
            finished.append(id)
        }
        #expect(try journalKeys(kv) <= 10, "the records of the first tasks are deleted")
        #expect(!kv.keys(under: Array("n/finished/".utf8)).isEmpty, "finished tasks go to etcd with the snapshots")
        let second = try HostFolder(kv: kv, host: "b")
        let store = try second.open()
        for id in finished {
            #expect(try store.task(id)?.status == .done, "\(id) on the other host")
        }
    }

    @Test func aSnapshotInEtcdNeverGoesBack() throws {
        let kv = FakeEtcdKV()
        let journal = try EtcdJournal(kv: kv, namespace: "n")
        let store = try CoordinationStore.over(journal)
        for total in 1...4 { _ = try store.submit(.budgetSet(total: Int64(total))) }
        var positions: [JournalPosition] = []
        _ = try journal.readForward(from: .start) { _, at in positions.append(at) }
        #expect(try journal.storeSnapshot(Array("late".utf8), lastRecord: positions[3], finished: nil) == .stored(deletedRecords: 0))
        #expect(try journal.storeSnapshot(Array("early".utf8), lastRecord: positions[1], finished: nil) == .newerStored)
        #expect(try journal.storedSnapshot() == Array("late".utf8))
        let tooLarge = [UInt8](repeating: 0x20, count: EtcdJournal.maximumStoredSnapshotBytes + 1)
        #expect(try journal.storeSnapshot(tooLarge, lastRecord: positions[3], finished: nil) == .tooLarge)
    }

    @Test func anAllocateOnEtcdIsOneReadAndOneAppendTransaction() throws {
        let kv = FakeEtcdKV()
        let host = try HostFolder(kv: kv, host: "a", every: 1000)
        let setup = try host.open()
        _ = try setup.submit(.budgetSet(total: 100))
        let store = try host.open()
        let (ranges, creates) = (kv.calls("range"), kv.calls("create"))
        _ = try store.submit(.budgetAllocate(BudgetRequest(tokens: 1)))
        store.publishAfterRecording()
        // The fake has no transaction of both: its create and its range stand for the one
        // transaction the client sends. No range after it (no `hasAppended` look).
        #expect(kv.calls("create") - creates == 1)
        #expect(kv.calls("range") - ranges == 1, "the fold after the append is the append's own read")
    }

    @Test func anAllocateWhoseFoldWaitsForItsAppendIsOneTransactionAndDecidesAsAFullFold() throws {
        let kv = FakeEtcdKV()
        let host = try HostFolder(kv: kv, host: "a", every: 1000)
        let setup = try host.open()
        _ = try setup.submit(.budgetSet(total: 10))
        setup.publishAfterRecording()
        var granted = 0
        for _ in 0..<4 {
            let (ranges, creates) = (kv.calls("range"), kv.calls("create"))
            let store = try host.openDeferred()
            if case .granted = try store.submit(.budgetAllocate(BudgetRequest(tokens: 4))).outcome { granted += 1 }
            store.publishAfterRecording()
            #expect(store.warnings.isEmpty)
            // The fake's create and range stand for the client's one transaction.
            #expect(kv.calls("create") - creates == 1 && kv.calls("range") - ranges == 1, "one round trip for the whole call")
        }
        #expect(granted == 2, "10 tokens hold two allocations of 4, whatever the store knew at open")
        let witness = try CoordinationStore.over(EtcdJournal(kv: kv, namespace: "n"))
        #expect(budget(try host.open()) == budget(witness))
    }

    @Test func aDeferredFoldThatMeetsAContradictedOrCompactedSnapshotStillGivesTheRightOutcome() throws {
        let kv = FakeEtcdKV()
        let first = try HostFolder(kv: kv, host: "a")
        let second = try HostFolder(kv: kv, host: "b")
        let setup = try first.open()
        _ = try setup.submit(.budgetSet(total: 42))
        setup.publishAfterRecording()
        let witness = try CoordinationStore.over(EtcdJournal(kv: kv, namespace: "n"))
        // A local snapshot the journal contradicts, claiming a budget far larger than the real one.
        var forged = witness.state
        forged.budget.total = 1_000_000
        var lastPosition = JournalPosition.start
        _ = try EtcdJournal(kv: kv, namespace: "n").readForward(from: .start) { _, at in lastPosition = at }
        let identity = JSONValue.object([
            JSONMember("backend", "etcd"), JSONMember("last_position", lastPosition.json), JSONMember("last_record", "not-that-one"),
            JSONMember("namespace", "n"),
        ])
        let layout = CoordinationLayout(root: second.root)
        try AtomicFile.replace(
            layout.snapshot, with: SnapshotCodec.encode(forged, position: witness.position, writtenAtMilliseconds: 0, journal: identity),
            durability: .processCrash)
        let contradicted = try second.openDeferred()
        let refused = try contradicted.submit(.budgetAllocate(BudgetRequest(tokens: 100))).outcome
        guard case .refused = refused else {
            Issue.record("100 of 42 tokens: \(refused)")
            return
        }
        #expect(contradicted.state.budget.total == 42)
        // A local snapshot that predates a compaction: the fold starts again from the stored one.
        let early = try second.open()
        try early.writeSnapshot()
        for _ in 0..<30 {
            try first.allocate()
            try witness.catchUp()
        }
        #expect(try journalKeys(kv) <= 10)
        let stale = try second.openDeferred()
        let outcome = try stale.submit(.budgetAllocate(BudgetRequest(tokens: 13))).outcome
        try witness.catchUp()
        guard case .refused = outcome else {
            Issue.record("13 of the 12 tokens left: \(outcome)")
            return
        }
        #expect(budget(stale) == budget(witness))
    }

    @Test func aDeferredFoldLearnsItsOutcomeEvenWhenASnapshotCoveringItsRecordIsStoredMeanwhile() throws {
        let kv = FakeEtcdKV()
        let first = try HostFolder(kv: kv, host: "a")
        let second = try HostFolder(kv: kv, host: "b")
        let setup = try first.open()
        _ = try setup.submit(.budgetSet(total: 1_000))
        setup.publishAfterRecording()
        let witness = try CoordinationStore.over(EtcdJournal(kv: kv, namespace: "n"))
        // Host b's snapshot predates the compactions to come.
        try second.open().writeSnapshot()
        for _ in 0..<20 {
            try first.allocate()
            try witness.catchUp()
        }
        // When b's fold meets the compaction and asks for the stored snapshot, host a has just
        // stored one that already covers b's record.
        let root = first.root
        kv.beforeNextGet = {
            guard let store = try? CoordinationStore.open(root: root, createIfMissing: false, etcd: kv) else { return }
            try? store.writeSnapshot()
        }
        let store = try second.openDeferred()
        let outcome = try store.submit(.budgetAllocate(BudgetRequest(tokens: 7))).outcome
        guard case .granted = outcome else {
            Issue.record("7 of ~980 tokens: \(outcome)")
            return
        }
        try witness.catchUp()
        #expect(budget(store) == budget(witness))
    }

    @Test func aFinishedTasksFileNameFromEtcdCannotLeaveTheFolder() {
        #expect(CoordinationStore.isFinishedTasksFileName("000000000001-000000001234.jsonl"))
        for name in ["../x.jsonl", ".hidden.jsonl", "a/b.jsonl", "x.json", ""] {
            #expect(!CoordinationStore.isFinishedTasksFileName(name), "\(name)")
        }
    }
}
