import Dispatch
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// The journal backends the tests run against (etcd: `EtcdJournal` over `FakeEtcdKV`).
enum JournalBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case file, memory, etcd

    var testDescription: String { rawValue }
}

/// One journal of a backend, with what a test needs around it: a store over it, another
/// writer's moves (voiding the next append, tearing one), and an appender for another thread.
final class JournalUnderTest {
    let backend: JournalBackend
    let journal: any Journal
    private let folder: TemporaryDirectory?
    private let layout: CoordinationLayout?

    init(_ backend: JournalBackend, config: CortexConfig = CortexConfig()) throws {
        self.backend = backend
        switch backend {
        case .file:
            let folder = try TemporaryDirectory()
            let layout = try folder.coordination(config)
            self.folder = folder
            self.layout = layout
            journal = FileJournal(directory: layout.journal, segmentMaxBytes: config.segmentMaxBytes)
        case .memory:
            folder = nil
            layout = nil
            journal = MemoryJournal()
        case .etcd:
            folder = nil
            layout = nil
            // Small pages, so every read of the suite pages.
            journal = try EtcdJournal(kv: FakeEtcdKV(), namespace: "conformance", pageSize: 2)
        }
    }

    /// The fake cluster under an etcd journal.
    var cluster: FakeEtcdKV { (journal as! EtcdJournal).kv as! FakeEtcdKV }

    /// A store over this journal, folded to its end (each call a new one, as a new process).
    func store(_ config: CortexConfig = CortexConfig()) throws -> CoordinationStore {
        if let layout { return try CoordinationStore.open(root: layout.root, createIfMissing: false) }
        return try CoordinationStore.over(journal, config: config)
    }

    /// Makes the next append that targets `tail` void, as another process would: the file
    /// backend's rotator seals `tail`'s segment first; the memory backend is told to.
    func voidNextAppend(tail: JournalPosition) throws {
        switch backend {
        case .file: try FileJournal(directory: layout!.journal).rotate(segment: tail.segment, timeMilliseconds: 5)
        case .memory: (journal as! MemoryJournal).voidNextAppends()
        case .etcd: Issue.record("etcd never voids an append (docs/decisions/031)")
        }
    }

    /// Leaves a torn fragment before the next record: a writer killed mid-write (file), a short
    /// write (memory).
    func tearNextAppend() throws {
        switch backend {
        case .file: try appendRaw(Array(#"{"id":"r0","at_ms":1,"kind":"budget.set","da"#.utf8), to: layout!.journal + "/000000000001.jsonl")
        case .memory: (journal as! MemoryJournal).tearNextAppends()
        case .etcd:
            // No torn write reaches etcd; the nearest thing is half a record put by hand.
            cluster.put(key: Array("conformance/journal/torn".utf8), value: Array(#"{"id":"r0","at_ms":1,"kind":"budget.set","da"#.utf8))
        }
    }

    /// Puts a line that is no record (its checksum broken) at the end, as an editor could.
    func appendInvalidLine() throws {
        var line = try RecordCodec.encode(record(.budgetSet(total: 999)))
        line[line.count - 5] ^= 0x01
        switch backend {
        case .file: try appendRaw(line, to: layout!.journal + "/000000000001.jsonl")
        case .memory, .etcd: _ = try journal.append(line, tail: .start)
        }
    }

    /// Appends `event` from another thread (with a journal instance of its own for the file
    /// backend, whose instances are per thread).
    func appender(_ event: Event) -> @Sendable () -> Void {
        switch backend {
        case .file:
            let directory = layout!.journal
            return {
                _ = try? FileJournal(directory: directory).append(try RecordCodec.encode(record(event)), tail: .start)
            }
        case .memory:
            let journal = journal as! MemoryJournal
            return { _ = try? journal.append(try RecordCodec.encode(record(event)), tail: .start) }
        case .etcd:
            let journal = journal as! EtcdJournal
            return { _ = try? journal.append(try RecordCodec.encode(record(event)), tail: .start) }
        }
    }
}

/// Every record of `journal` from `position` on, with where it starts.
func readAll(_ journal: any Journal, from position: JournalPosition = .start) throws -> (
    records: [(Record, JournalPosition)], read: JournalRead
) {
    var records: [(Record, JournalPosition)] = []
    let read = try journal.readForward(from: position) { (record, position) throws(CortexError) in records.append((record, position)) }
    return (records, read)
}

/// The `Journal` protocol, run against both backends (docs/decisions/027): what the store relies
/// on must hold whichever one it is given.
@Suite struct JournalConformanceTests {
    @Test(arguments: JournalBackend.allCases)
    func appendsGetIncreasingPositionsAndAreReadInOrder(_ backend: JournalBackend) throws {
        let subject = try JournalUnderTest(backend)
        var tail = try subject.journal.readForward(from: .start) { _, _ in }.end
        var appended: [(String, JournalPosition)] = []
        for total in 1...5 {
            let written = record(.budgetSet(total: Int64(total)))
            let position = try subject.journal.append(try RecordCodec.encode(written), tail: tail).position
            if let last = appended.last { #expect(last.1 < position) }
            appended.append((written.id, position))
            tail = try subject.journal.readForward(from: tail) { _, _ in }.end
        }
        let all = try readAll(subject.journal)
        #expect(all.records.map(\.0.id) == appended.map(\.0))
        #expect(all.records.map(\.1) == appended.map(\.1))
        #expect(all.read.recordsRead == 5)
        #expect(all.read.damaged.isEmpty)
    }

    @Test(arguments: JournalBackend.allCases)
    func aReadStartsAtTheGivenPosition(_ backend: JournalBackend) throws {
        let subject = try JournalUnderTest(backend)
        for total in 1...3 { _ = try subject.journal.append(try RecordCodec.encode(record(.budgetSet(total: Int64(total)))), tail: .start) }
        let first = try readAll(subject.journal)
        for total in 4...5 {
            _ = try subject.journal.append(try RecordCodec.encode(record(.budgetSet(total: Int64(total)))), tail: first.read.end)
        }
        let after = try readAll(subject.journal, from: first.read.end)
        #expect(after.records.map { $0.0.data["total"]?.intValue } == [4, 5], "only what came after the end of the first read")
        let fromSecond = try readAll(subject.journal, from: first.records[1].1)
        #expect(fromSecond.records.map { $0.0.data["total"]?.intValue } == [2, 3, 4, 5], "a record's position reads it first")
        #expect(try readAll(subject.journal, from: after.read.end).records.isEmpty)
        #expect(after.read.end == fromSecond.read.end)
    }

    @Test(arguments: JournalBackend.allCases)
    func appendedSinceSaysWhetherTheJournalMoved(_ backend: JournalBackend) throws {
        let subject = try JournalUnderTest(backend)
        let read = try readAll(subject.journal).read
        #expect(try !subject.journal.hasAppended(since: read.extent))
        _ = try subject.journal.append(try RecordCodec.encode(record(.budgetSet(total: 1))), tail: read.end)
        #expect(try subject.journal.hasAppended(since: read.extent))
        let again = try readAll(subject.journal, from: read.end)
        #expect(again.records.count == 1)
        #expect(try !subject.journal.hasAppended(since: again.read.extent))
    }

    @Test(arguments: JournalBackend.allCases)
    func makeDurableSaysHowFarTheJournalIsDurable(_ backend: JournalBackend) throws {
        let subject = try JournalUnderTest(backend)
        #expect(subject.journal.durableThrough == nil, "nothing made durable yet")
        var tail = try readAll(subject.journal).read.end
        var positions: [JournalPosition] = []
        for total in 1...3 {
            positions.append(
                try subject.journal.append(try RecordCodec.encode(record(.budgetSet(total: Int64(total)))), tail: tail).position)
            tail = try readAll(subject.journal, from: tail).read.end
        }
        try subject.journal.makeDurable(from: .start, through: positions[1])
        #expect(subject.journal.durableThrough.map { $0 >= positions[1] } == true)
        try subject.journal.makeDurable(from: positions[1], through: positions[2])
        #expect(subject.journal.durableThrough.map { $0 >= positions[2] } == true)
        try subject.journal.makeDurable(from: .start, through: positions[0])
        #expect(subject.journal.durableThrough.map { $0 >= positions[2] } == true, "never moves back")
        #expect(try readAll(subject.journal).records.map(\.1) == positions, "making records durable changes none")
    }

    @Test(arguments: JournalBackend.allCases)
    func aStoreThatSyncsAppendsMakesEachRecordDurable(_ backend: JournalBackend) throws {
        var config = CortexConfig()
        config.syncAppends = true
        let subject = try JournalUnderTest(backend, config: config)
        let store = try subject.store(config)
        let submission = try store.submit(.budgetSet(total: 100))
        let written = try #require(readAll(subject.journal).records.first { $0.0.id == submission.record.id }?.1)
        // A store over a folder has a journal instance of its own: ask that one.
        switch backend {
        case .file, .memory: #expect(store.journal.durableThrough.map { $0 >= written } == true)
        case .etcd: #expect(store.journal.durableThrough == nil, "etcd acknowledges an append once a majority has it on disk")
        }
    }

    @Test(arguments: JournalBackend.allCases)
    func compactionKeepsEveryRecordFromItsPositionOn(_ backend: JournalBackend) throws {
        var config = CortexConfig()
        config.segmentMaxBytes = 1024
        let subject = try JournalUnderTest(backend, config: config)
        let store = try subject.store(config)
        for total in 1...20 { _ = try store.submit(.budgetSet(total: Int64(total))) }
        let all = try readAll(subject.journal)
        let cut = all.records[15].1
        let kept = try readAll(subject.journal, from: cut)
        let now = POSIX.wallClockMilliseconds()
        let day: Int64 = 86_400_000
        let preview = try subject.journal.compact(before: cut, retentionMilliseconds: day, nowMilliseconds: now, dryRun: true)
        #expect(try readAll(subject.journal).records.map(\.0.id) == all.records.map(\.0.id), "a dry run changes nothing")
        let done = try subject.journal.compact(before: cut, retentionMilliseconds: day, nowMilliseconds: now, dryRun: false)
        #expect(done == preview, "the dry run says what the compaction does")
        let after = try readAll(subject.journal, from: cut)
        #expect(after.records.map(\.0.id) == kept.records.map(\.0.id))
        #expect(after.records.map(\.1) == kept.records.map(\.1))
        switch backend {
        case .file:
            #expect(!done.archived.isEmpty && done.archived.allSatisfy { $0 < cut.segment }, "the segments before the cut: \(done)")
            #expect(try readAll(subject.journal).records.count == 20, "archived copies are read from the start until purged")
        case .memory:
            #expect(done == JournalCompaction(), "one part: every record kept")
            #expect(try readAll(subject.journal).records.count == 20)
        case .etcd:
            #expect(done == JournalCompaction(), "no parts: records deleted, none reported")
            #expect(throws: CortexError.self, "a read from before the cut meets the compaction") { try readAll(subject.journal) }
        }
        #expect(
            try subject.journal.compact(before: cut, retentionMilliseconds: day, nowMilliseconds: now, dryRun: false).archived.isEmpty,
            "compacting again compacts nothing more")
        _ = try store.submit(.budgetSet(total: 21))
        let later = try readAll(subject.journal, from: cut)
        #expect(later.records.map { $0.0.data["total"]?.intValue } == (16...21).map { Int64($0) })
        // A new store folds from the journal's start, which etcd no longer has (the store of an
        // etcd folder starts from the snapshot stored there: EtcdSnapshotTests).
        if backend != .etcd { #expect(try subject.store(config).state.budget.total == 21) }
    }

    @Test(arguments: JournalBackend.allCases)
    func anOutcomeNeverChangesWhenTheJournalIsFoldedAgain(_ backend: JournalBackend) throws {
        let subject = try JournalUnderTest(backend)
        let writer = try subject.store()
        let other = try subject.store()
        var decided: [String: Outcome] = [:]
        func submit(_ store: CoordinationStore, _ event: Event) throws {
            let submission = try store.submit(event)
            decided[submission.record.id] = submission.outcome
        }
        try submit(writer, .budgetSet(total: 100))
        for index in 0..<6 { try submit(index % 2 == 0 ? writer : other, .budgetAllocate(BudgetRequest(tokens: 30))) }
        try submit(other, .taskCreate(TaskSpec(type: "t")))
        try submit(writer, .taskClaim(TaskClaim(worker: "a")))
        try submit(other, .taskClaim(TaskClaim(worker: "b")))
        #expect(decided.values.filter { if case .granted = $0 { true } else { false } }.count == 3, "never over-allocated")
        #expect(decided.values.filter { if case .claimed = $0 { true } else { false } }.count == 1, "one claim holds the task")

        var state = CortexState()
        var refolded: [String: Outcome] = [:]
        _ = try subject.journal.readForward(from: .start) { (record, position) throws(CortexError) in
            refolded[record.id] = Reducer.reduce(&state, record, at: position)
        }
        #expect(refolded == decided)
        let late = try subject.store()
        #expect(late.state.budget.allocations.count == 3)
        #expect(late.state.recordsFolded == writer.state.recordsFolded + 1, "the writer has not folded the last claim yet")
    }

    @Test(arguments: JournalBackend.allCases)
    func aVoidRecordIsSkippedAndAppendedAgain(_ backend: JournalBackend) throws {
        let subject = try JournalUnderTest(backend)
        let writer = try subject.store()
        if backend == .etcd {
            // Nothing is void on etcd: the same record appended again is the same record.
            let submission = try writer.submit(.budgetSet(total: 100))
            let again = try subject.journal.append(try RecordCodec.encode(submission.record), tail: writer.position)
            let copies = try readAll(subject.journal).records.filter { $0.0.id == submission.record.id }
            #expect(copies.map(\.1) == [again.position])
            #expect(!subject.journal.isVoid(again.position, readTo: try readAll(subject.journal).read.end))
            return
        }
        _ = try writer.submit(.budgetSet(total: 100))
        // Another process voids the writer's next append between its fold and its append.
        try subject.voidNextAppend(tail: writer.position)
        let submission = try writer.submit(.budgetAllocate(BudgetRequest(tokens: 10)))
        guard case .granted = submission.outcome else {
            Issue.record("not granted: \(submission.outcome)")
            return
        }
        let copies = try readAll(subject.journal).records.filter { $0.0.id == submission.record.id }
        #expect(copies.count == 1, "the void copy is never read")
        #expect(copies.first.map { $0.1.id(.allocation) } == submission.outcome.json["allocation"]?.stringValue)
        let late = try subject.store()
        #expect(late.state.budget.allocations.count == 1)

        // The protocol alone: the read that should have met the record went past it.
        let read = try readAll(subject.journal).read
        try subject.voidNextAppend(tail: read.end)
        let appended = try subject.journal.append(try RecordCodec.encode(record(.budgetSet(total: 7))), tail: read.end)
        let after = try readAll(subject.journal, from: read.end)
        #expect(after.records.isEmpty)
        #expect(subject.journal.isVoid(appended.position, readTo: after.read.end))
    }

    @Test(arguments: JournalBackend.allCases)
    func aTornFragmentIsSkippedAndReported(_ backend: JournalBackend) throws {
        let subject = try JournalUnderTest(backend)
        let writer = try subject.store()
        _ = try writer.submit(.budgetSet(total: 100))
        try subject.tearNextAppend()
        let submission = try writer.submit(.budgetSet(total: 50))
        #expect(submission.outcome == .applied)
        #expect(writer.state.budget.total == 50)
        let all = try readAll(subject.journal)
        #expect(all.records.count == 2)
        #expect(all.read.damaged.count == 1)
        #expect(try subject.store().state.budget.total == 50)
    }

    @Test(arguments: JournalBackend.allCases)
    func anInvalidLineIsSkippedAndReportedNeverFatal(_ backend: JournalBackend) throws {
        let subject = try JournalUnderTest(backend)
        let writer = try subject.store()
        _ = try writer.submit(.budgetSet(total: 100))
        try subject.appendInvalidLine()
        #expect(try writer.submit(.budgetSet(total: 50)).outcome == .applied)
        #expect(writer.damagedLines.count == 1)
        let all = try readAll(subject.journal)
        #expect(all.records.map { $0.0.data["total"]?.intValue } == [100, 50])
        #expect(all.read.damaged.count == 1)
        #expect(all.read.damaged.first.map { $0.position > all.records[0].1 && $0.position < all.records[1].1 } == true)
        #expect(try subject.store().state.budget.total == 50)
    }

    @Test(arguments: JournalBackend.allCases)
    func aRollOverKeepsEveryRecordReadableInOrder(_ backend: JournalBackend) throws {
        let subject = try JournalUnderTest(backend)
        let store = try subject.store()
        _ = try store.submit(.budgetSet(total: 1))
        let before = store.position
        let next = try subject.journal.rollOver(at: before, ifLargerThan: 0, timeMilliseconds: 5, dryRun: false)
        switch backend {
        case .file: #expect(next.map { $0 > before } == true)
        case .memory, .etcd: #expect(next == nil, "one part: nothing to roll over")
        }
        _ = try store.submit(.budgetSet(total: 2))
        let all = try readAll(subject.journal)
        #expect(all.records.map { $0.0.data["total"]?.intValue } == [1, 2])
        if let next { #expect(all.records[1].1 >= next) }
        #expect(all.read.damaged.isEmpty)
    }

    @Test func theFileJournalRotatesASegmentPastItsLimit() throws {
        var config = CortexConfig()
        config.segmentMaxBytes = 1024
        let subject = try JournalUnderTest(.file, config: config)
        let store = try subject.store()
        var outcomes: [String: Outcome] = [:]
        for total in 1...20 {
            let submission = try store.submit(.budgetSet(total: Int64(total)))
            outcomes[submission.record.id] = submission.outcome
        }
        let all = try readAll(subject.journal)
        #expect(all.records.map { $0.0.data["total"]?.intValue } == (1...20).map { Int64($0) })
        #expect(Set(all.records.map(\.1.segment)).count > 2, "more than two segments of at most ~1 KiB")
        #expect(try JournalVerifier.verify(subject.journal as! FileJournal).isClean)
        #expect(store.warnings.isEmpty)
        #expect(try subject.store().state.budget.total == 20)
    }

    @Test(arguments: JournalBackend.allCases)
    func aWaiterWakesOnAnAppend(_ backend: JournalBackend) throws {
        let subject = try JournalUnderTest(backend)
        let waiter = try subject.journal.makeWaiter()
        #expect(!waiter.wait(timeoutMilliseconds: 0), "nothing appended yet")
        _ = try subject.journal.append(try RecordCodec.encode(record(.budgetSet(total: 1))), tail: .start)
        #expect(waiter.wait(timeoutMilliseconds: 10_000), "an append before the wait is not missed")

        // An append from another thread while the waiter sleeps (10 s: a bound, not a measure).
        let append = subject.appender(.budgetSet(total: 2))
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { append() }
        #expect(waiter.wait(timeoutMilliseconds: 10_000))
        waiter.disarm()
        #expect(try readAll(subject.journal).records.count == 2)
    }
}
