import Dispatch
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// An etcd cluster in memory, behind the `EtcdKV` seam: one revision counter bumped by every
/// write, keys with their create and mod revisions, ranges in mod-revision order with
/// min/max/limit, deletes, and watches that deliver puts. Switches make it misbehave as a real
/// cluster can: lose the reply of a committed create, report a watch as compacted, refuse every
/// call with `tryLater`. Thread-safe (one lock), so stores on several threads can share it.
final class FakeEtcdKV: EtcdKV, @unchecked Sendable {
    private struct Entry {
        var value: [UInt8]
        var createRevision: Int64
        var modRevision: Int64
    }

    private let lock = ConditionLock()
    /// etcd's first revision is 1 (an empty cluster).
    private var revision: Int64 = 1
    private var entries: [[UInt8]: Entry] = [:]
    /// Every put, in revision order (what watches deliver).
    private var puts: [EtcdKeyValue] = []
    private var repliesToLose = 0
    private var watchesToCompact = 0
    private var failing = false
    private var callsToFail = 0
    /// Runs (once, outside the lock) before the next `get`: another host acting at that moment.
    var beforeNextGet: (@Sendable () -> Void)?
    private var counters: [String: Int] = [:]
    private var liveWatches = 0

    private func locked<Value>(_ body: () throws(CortexError) -> Value) throws(CortexError) -> Value {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    private func unchecked<Value>(_ body: () -> Value) -> Value {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    /// Counts a call and refuses it when failing.
    private func enter(_ call: String) throws(CortexError) {
        counters[call, default: 0] += 1
        if failing { throw .tryLater("etcd: no member answered (\(call))") }
        if callsToFail > 0 {
            callsToFail -= 1
            throw .tryLater("etcd: no member answered (\(call))")
        }
    }

    // MARK: switches and looks

    /// The next `count` creates are committed but their reply is lost (the caller gets `tryLater`).
    func loseNextReplies(_ count: Int = 1) { unchecked { repliesToLose += count } }
    /// The next `count` watch waits report the watch compacted instead of events.
    func compactNextWatches(_ count: Int = 1) {
        unchecked {
            watchesToCompact += count
            lock.broadcast()
        }
    }
    /// The next `count` calls fail with `tryLater` (nothing done).
    func failNextCalls(_ count: Int) { unchecked { callsToFail += count } }
    /// Every call fails with `tryLater` while true.
    func setFailing(_ value: Bool) { unchecked { failing = value } }
    /// How many times `call` (`create`, `range`, `delete`, `watch`) was made.
    func calls(_ call: String) -> Int { unchecked { counters[call, default: 0] } }
    /// Watches not cancelled yet.
    var openWatches: Int { unchecked { liveWatches } }
    /// The keys stored now.
    var keyCount: Int { unchecked { entries.count } }

    /// Puts `value` at `key` whatever is there, as `etcdctl put` would (damage planted by hand).
    @discardableResult
    func put(key: [UInt8], value: [UInt8]) -> Int64 {
        unchecked { store(key: key, value: value) }
    }

    private func store(key: [UInt8], value: [UInt8]) -> Int64 {
        revision += 1
        let created = entries[key]?.createRevision ?? revision
        entries[key] = Entry(value: value, createRevision: created, modRevision: revision)
        puts.append(EtcdKeyValue(key: key, value: value, modRevision: revision))
        lock.broadcast()
        return revision
    }

    // MARK: EtcdKV

    func createIfAbsent(key: [UInt8], value: [UInt8]) throws(CortexError) -> EtcdCreation {
        try locked { () throws(CortexError) in
            try enter("create")
            let creation: EtcdCreation
            if let existing = entries[key] {
                creation = EtcdCreation(revision: existing.createRevision, created: false)
            } else {
                creation = EtcdCreation(revision: store(key: key, value: value), created: true)
            }
            if repliesToLose > 0 {
                repliesToLose -= 1
                throw .tryLater("etcd: the connection closed before the reply (the write may have been committed)")
            }
            return creation
        }
    }

    func range(prefix: [UInt8], minimumRevision: Int64, maximumRevision: Int64?, limit: Int) throws(CortexError) -> EtcdRange {
        try locked { () throws(CortexError) in
            try enter("range")
            let matching = entries.filter { key, entry in
                key.starts(with: prefix) && entry.modRevision >= minimumRevision
                    && (maximumRevision.map { entry.modRevision <= $0 } ?? true)
            }
            .map { EtcdKeyValue(key: $0.key, value: $0.value.value, modRevision: $0.value.modRevision) }
            .sorted { $0.modRevision < $1.modRevision }
            return EtcdRange(keyValues: Array(matching.prefix(limit)), more: matching.count > limit, headerRevision: revision)
        }
    }

    func deleteRange(prefix: [UInt8], belowRevision: Int64) throws(CortexError) -> Int {
        try locked { () throws(CortexError) in
            try enter("delete")
            let doomed = entries.filter { $0.key.starts(with: prefix) && $0.value.modRevision < belowRevision }.map(\.key)
            for key in doomed { entries[key] = nil }
            if !doomed.isEmpty { revision += 1 }
            return doomed.count
        }
    }

    func get(key: [UInt8], atRevision revision: Int64?) throws(CortexError) -> EtcdKeyValue? {
        if let hook = unchecked({ () -> (@Sendable () -> Void)? in
            defer { beforeNextGet = nil }
            return beforeNextGet
        }) {
            hook()
        }
        return try locked { () throws(CortexError) in
            try enter("get")
            guard let revision else { return entries[key].map { EtcdKeyValue(key: key, value: $0.value, modRevision: $0.modRevision) } }
            // Its last put at or before the revision (the fake keeps every put; deletes are not replayed).
            return puts.last { $0.key == key && $0.modRevision <= revision }
        }
    }

    func putAll(_ puts: [(key: [UInt8], value: [UInt8])], ifModifiedBelow revision: Int64, key: [UInt8])
        throws(CortexError) -> (previous: EtcdKeyValue?, revision: Int64)?
    {
        try locked { () throws(CortexError) in
            try enter("txn")
            guard (entries[key]?.modRevision ?? 0) < revision else { return nil }
            let previous = entries[key].map { EtcdKeyValue(key: key, value: $0.value, modRevision: $0.modRevision) }
            // One transaction: one revision for every put.
            self.revision += 1
            let now = self.revision
            for put in puts {
                let created = entries[put.key]?.createRevision ?? now
                entries[put.key] = Entry(value: put.value, createRevision: created, modRevision: now)
                self.puts.append(EtcdKeyValue(key: put.key, value: put.value, modRevision: now))
            }
            lock.broadcast()
            return (previous, now)
        }
    }

    /// The values stored under `prefix`.
    func keys(under prefix: [UInt8]) -> [[UInt8]] { unchecked { entries.keys.filter { $0.starts(with: prefix) } } }

    func watch(prefix: [UInt8], startRevision: Int64) throws(CortexError) -> any EtcdWatch {
        try locked { () throws(CortexError) in
            try enter("watch")
            liveWatches += 1
            return Watch(cluster: self, prefix: prefix, next: startRevision)
        }
    }

    /// Waits until a put under `prefix` at or after `next` exists, a compaction is to be
    /// reported, or `timeoutMilliseconds` pass.
    fileprivate func nextEvent(prefix: [UInt8], next: Int64, timeoutMilliseconds: Int64) throws(CortexError) -> EtcdWatchEvent {
        try locked { () throws(CortexError) in
            if failing { throw .tryLater("etcd: the watch stream broke") }
            let deadline = POSIX.monotonicNanoseconds() + UInt64(max(0, timeoutMilliseconds)) * 1_000_000
            while true {
                if watchesToCompact > 0 {
                    watchesToCompact -= 1
                    return .compacted(revision: revision)
                }
                let found = puts.filter { $0.modRevision >= next && $0.key.starts(with: prefix) }
                if !found.isEmpty { return .puts(found) }
                if !lock.wait(until: deadline) { return .puts([]) }
            }
        }
    }

    fileprivate func watchEnded() { unchecked { liveWatches -= 1 } }

    /// A watch of the fake: delivers the puts at or after its next revision.
    private final class Watch: EtcdWatch {
        let cluster: FakeEtcdKV
        let prefix: [UInt8]
        var next: Int64
        var cancelled = false

        init(cluster: FakeEtcdKV, prefix: [UInt8], next: Int64) {
            self.cluster = cluster
            self.prefix = prefix
            self.next = next
        }

        func next(timeoutMilliseconds: Int64) throws(CortexError) -> EtcdWatchEvent {
            guard !cancelled else { throw .tryLater("etcd: the watch was cancelled") }
            let event = try cluster.nextEvent(prefix: prefix, next: next, timeoutMilliseconds: timeoutMilliseconds)
            if case .puts(let puts) = event, let last = puts.last { next = last.modRevision + 1 }
            if case .compacted = event { cancel() }
            return event
        }

        func cancel() {
            guard !cancelled else { return }
            cancelled = true
            cluster.watchEnded()
        }
    }
}

/// `EtcdJournal` over the fake cluster (docs/decisions/031): idempotent appends, revisions as
/// positions, damage skipped, paging, the watch and its fallback, compaction, many stores at once.
/// The protocol suite itself runs against it in `JournalConformanceTests`.
@Suite struct EtcdJournalTests {
    private func line(_ event: Event) throws -> [UInt8] { try RecordCodec.encode(record(event)) }

    @Test func aRetriedAppendAfterALostReplyGivesOneRecordAtOnePosition() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n")
        cluster.loseNextReplies()
        let appended = try journal.append(try line(.budgetSet(total: 5)), tail: .start)
        #expect(cluster.calls("create") == 2, "the lost reply was retried")
        let all = try readAll(journal)
        #expect(all.records.count == 1, "committed once")
        #expect(all.records.first?.1 == appended.position, "the retry learned the first write's position")

        // Through a store: the outcome is decided at the one position.
        let store = try CoordinationStore.over(journal)
        cluster.loseNextReplies()
        let submission = try store.submit(.budgetAllocate(BudgetRequest(tokens: 2)))
        guard case .granted(let allocation) = submission.outcome else {
            Issue.record("not granted: \(submission.outcome)")
            return
        }
        let copies = try readAll(journal).records.filter { $0.0.id == submission.record.id }
        #expect(copies.count == 1)
        #expect(copies.first.map { $0.1.id(.allocation) } == allocation)
        #expect(try CoordinationStore.over(journal).state.budget.allocations.count == 1)
    }

    @Test func anAppendAgainOfTheSameRecordKeepsItsPositionAndNothingIsVoid() throws {
        let journal = try EtcdJournal(kv: FakeEtcdKV(), namespace: "n")
        let same = try line(.budgetSet(total: 5))
        let first = try journal.append(same, tail: .start)
        _ = try journal.append(try line(.budgetSet(total: 6)), tail: .start)
        let again = try journal.append(same, tail: .start)
        #expect(again.position == first.position)
        let all = try readAll(journal)
        #expect(all.records.map { $0.0.data["total"]?.intValue } == [5, 6])
        #expect(!journal.isVoid(first.position, readTo: all.read.end))
    }

    @Test func aRecordWhoseIdLooksLikeAMarkerCannotPassForOne() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n")
        let store = try CoordinationStore.over(journal)
        _ = try store.submit(.budgetSet(total: 1))
        let before = store.position
        _ = try journal.append(try RecordCodec.encode(record(.budgetSet(total: 2), id: "~compacted-999999")), tail: .start)
        #expect(try readAll(journal, from: before).records.map { $0.0.data["total"]?.intValue } == [2], "read as a record, not a marker")
    }

    @Test func positionsAreRevisionsInSegmentOne() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n")
        let appended = try journal.append(try line(.budgetSet(total: 5)), tail: .start)
        let revision = cluster.put(key: Array("elsewhere".utf8), value: [0x31])
        let next = try journal.append(try line(.budgetSet(total: 6)), tail: .start)
        #expect(appended.position.segment == 1 && next.position.segment == 1)
        #expect(appended.position.offset < revision && next.position.offset == revision + 1)
        #expect(try EtcdJournal.revision(of: next.position) == revision + 1)
        #expect(throws: CortexError.self) { try journal.readForward(from: JournalPosition(segment: 2, offset: 0)) { _, _ in } }
        // A write outside the journal's prefix moves the revision but appends nothing.
        let read = try readAll(journal).read
        cluster.put(key: Array("n/snapshot".utf8), value: [0x31])
        #expect(try !journal.hasAppended(since: read.extent))
    }

    @Test func aDamagedValueIsSkippedAndReportedNeverFatal() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n")
        let store = try CoordinationStore.over(journal)
        _ = try store.submit(.budgetSet(total: 100))
        let damagedAt = cluster.put(key: Array("n/journal/by-hand".utf8), value: Array(#"{"id":"x","kind":"budget.set""#.utf8))
        #expect(try store.submit(.budgetSet(total: 40)).outcome == .applied)
        #expect(store.damagedLines.count == 1)
        let all = try readAll(journal)
        #expect(all.records.map { $0.0.data["total"]?.intValue } == [100, 40])
        #expect(all.read.damaged.map(\.position) == [EtcdJournal.position(revision: damagedAt)])
        #expect(try CoordinationStore.over(journal).state.budget.total == 40)
    }

    @Test func aReadPagesThroughMoreRecordsThanOnePageInOrder() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n", pageSize: 3)
        var positions: [JournalPosition] = []
        for total in 1...10 { positions.append(try journal.append(try line(.budgetSet(total: Int64(total))), tail: .start).position) }
        let rangesBefore = cluster.calls("range")
        let all = try readAll(journal)
        #expect(all.records.map { $0.0.data["total"]?.intValue } == (1...10).map { Int64($0) })
        #expect(all.records.map(\.1) == positions)
        #expect(cluster.calls("range") - rangesBefore == 5, "10 records, 3 a page, then a look for a compaction's marker")
        let fromMiddle = try readAll(journal, from: positions[4])
        #expect(fromMiddle.records.map(\.1) == Array(positions[4...]))
    }

    @Test func anAppendWhoseReadFailsAfterItsFirstPageIsNotRetriedSoNoRecordIsVisitedTwice() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n", pageSize: 2)
        for total in 1...5 { _ = try journal.append(try line(.budgetSet(total: Int64(total))), tail: .start) }
        var visited: [Int64?] = []
        #expect(throws: CortexError.self) {
            _ = try journal.appendThenRead(try line(.budgetSet(total: 6)), from: .start) { record, _ throws(CortexError) in
                // The read's next page finds no member answering.
                if visited.isEmpty { cluster.failNextCalls(1) }
                visited.append(record.data["total"]?.intValue)
            }
        }
        #expect(visited == [1, 2], "the first page once: \(visited)")
    }

    @Test func aCompactionBetweenThePagesOfAReadFailsItRatherThanMissRecords() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n", pageSize: 3)
        var positions: [JournalPosition] = []
        for total in 1...10 { positions.append(try journal.append(try line(.budgetSet(total: Int64(total))), tail: .start).position) }
        var compacted = false
        let error = #expect(throws: CortexError.self) {
            _ = try journal.readForward(from: .start) { _, _ throws(CortexError) in
                // Another host's snapshot writer compacts while this read is between its pages.
                if !compacted {
                    compacted = true
                    _ = try journal.deleteRecords(before: positions[7])
                }
            }
        }
        #expect(error.map(EtcdJournal.isCompaction) == true)
    }

    @Test func aReadSeesTheJournalAtOneRevisionAndAppendsDuringItAreReadNext() throws {
        let journal = try EtcdJournal(kv: FakeEtcdKV(), namespace: "n", pageSize: 2)
        for total in 1...4 { _ = try journal.append(try line(.budgetSet(total: Int64(total))), tail: .start) }
        let late = try line(.budgetSet(total: 9))
        var seen: [Int64] = []
        let read = try journal.readForward(from: .start) { (record, _) throws(CortexError) in
            seen.append(record.data["total"]?.intValue ?? 0)
            if seen.count == 1 { _ = try journal.append(late, tail: .start) }
        }
        #expect(seen == [1, 2, 3, 4], "the page after the first is pinned to its revision")
        #expect(try journal.hasAppended(since: read.extent))
        #expect(try readAll(journal, from: read.end).records.map { $0.0.data["total"]?.intValue } == [9])
    }

    @Test func callsTheClusterRefusesAreTryLater() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n")
        let store = try CoordinationStore.over(journal)
        cluster.setFailing(true)
        do {
            _ = try store.submit(.budgetSet(total: 1))
            Issue.record("appended while every member refused")
        } catch {
            guard case .tryLater = error else {
                Issue.record("not try later: \(error)")
                return
            }
        }
        #expect(cluster.calls("create") == EtcdJournal.appendAttempts, "bounded retries")
        #expect(throws: CortexError.self) { try journal.hasAppended(since: .start) }
        cluster.setFailing(false)
        #expect(try store.submit(.budgetSet(total: 1)).outcome == .applied)
        #expect(cluster.keyCount == 1)
    }

    @Test func theWaiterWakesOnAnAppendAndAfterACompactedWatch() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n")
        let waiter = try journal.makeWaiter()
        #expect(!waiter.wait(timeoutMilliseconds: 0))
        _ = try journal.append(try line(.budgetSet(total: 1)), tail: .start)
        #expect(waiter.wait(timeoutMilliseconds: 10_000))

        // etcd cancels the watch (compacted): the waiter reads with a range and watches again.
        cluster.compactNextWatches()
        _ = try journal.append(try line(.budgetSet(total: 2)), tail: .start)
        #expect(waiter.wait(timeoutMilliseconds: 10_000), "the record appended across the compaction is not missed")
        #expect(cluster.calls("watch") == 2)
        cluster.compactNextWatches()
        #expect(!waiter.wait(timeoutMilliseconds: 0), "a compaction alone is no append")

        // An append from another thread while the waiter sleeps on its new watch (10 s: a bound).
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) {
            _ = try? journal.append(try RecordCodec.encode(record(.budgetSet(total: 3))), tail: .start)
        }
        #expect(waiter.wait(timeoutMilliseconds: 10_000))
        #expect(try readAll(journal).records.map { $0.0.data["total"]?.intValue } == [1, 2, 3])
        #expect(cluster.openWatches == 1)
        waiter.disarm()
        #expect(cluster.openWatches == 0, "disarm releases the watch")
        #expect(!waiter.wait(timeoutMilliseconds: 0))
        try waiter.rearm()
        _ = try journal.append(try line(.budgetSet(total: 4)), tail: .start)
        #expect(waiter.wait(timeoutMilliseconds: 10_000))
    }

    @Test func aBrokenWatchFallsBackToARangeRead() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n")
        let waiter = try journal.makeWaiter()
        _ = try journal.append(try line(.budgetSet(total: 1)), tail: .start)
        cluster.setFailing(true)
        #expect(waiter.wait(timeoutMilliseconds: 10_000), "the cluster is unreachable: the caller looks and learns it")
        cluster.setFailing(false)
        _ = try journal.append(try line(.budgetSet(total: 2)), tail: .start)
        #expect(waiter.wait(timeoutMilliseconds: 10_000))
    }

    @Test func compactionDeletesTheRecordsASnapshotCovers() throws {
        let cluster = FakeEtcdKV()
        let journal = try EtcdJournal(kv: cluster, namespace: "n")
        let store = try CoordinationStore.over(journal)
        for total in 1...3 { _ = try store.submit(.budgetSet(total: Int64(total))) }
        let covered = store.position
        _ = try store.submit(.budgetSet(total: 4))
        #expect(try journal.compact(before: covered, retentionMilliseconds: 0, nowMilliseconds: 0, dryRun: true) == JournalCompaction())
        #expect(cluster.keyCount == 4, "a dry run deletes nothing")
        #expect(try journal.deleteRecords(before: covered) == 3)
        #expect(cluster.keyCount == 2, "the last record and the compaction's marker")
        #expect(
            try readAll(journal, from: covered).records.map { $0.0.data["total"]?.intValue } == [4],
            "reading from the position is unchanged")
        #expect(throws: CortexError.self, "a read from before the compaction fails rather than miss records") {
            try readAll(journal, from: .start)
        }
        // The next compaction deletes the first one's marker with the records below it.
        _ = try store.submit(.budgetSet(total: 5))
        let later = store.position
        _ = try store.submit(.budgetSet(total: 6))
        _ = try journal.compact(before: later, retentionMilliseconds: 0, nowMilliseconds: 0, dryRun: false)
        #expect(cluster.keyCount == 2)
        #expect(try readAll(journal, from: later).records.map { $0.0.data["total"]?.intValue } == [6])
        #expect(throws: CortexError.self) { try readAll(journal, from: covered) }
        #expect(try journal.rollOver(at: covered, ifLargerThan: 0, timeMilliseconds: 0, dryRun: false) == nil)
    }

    @Test func twentyStoresAllocatingAtOnceGrantExactlyAsManyAsFit() throws {
        let cluster = FakeEtcdKV()
        _ = try CoordinationStore.over(EtcdJournal(kv: cluster, namespace: "n")).submit(.budgetSet(total: 100))
        final class Outcomes: @unchecked Sendable {
            let queue = DispatchQueue(label: "outcomes")
            var granted = 0
            var failures: [String] = []
        }
        let outcomes = Outcomes()
        DispatchQueue.concurrentPerform(iterations: 20) { _ in
            var granted = false
            var failure: String? = nil
            do {
                let store = try CoordinationStore.over(EtcdJournal(kv: cluster, namespace: "n", pageSize: 4))
                if case .granted = try store.submit(.budgetAllocate(BudgetRequest(tokens: 15))).outcome { granted = true }
            } catch { failure = "\(error)" }
            outcomes.queue.sync {
                if granted { outcomes.granted += 1 }
                if let failure { outcomes.failures.append(failure) }
            }
        }
        #expect(outcomes.failures.isEmpty)
        #expect(outcomes.granted == 6, "100 tokens hold six allocations of 15")
        #expect(try CoordinationStore.over(EtcdJournal(kv: cluster, namespace: "n")).state.budget.allocations.count == 6)
    }

    @Test(arguments: ["", "a/journal/b", "team/prod", "..", "naïve", String(repeating: "n", count: 129)])
    func aNamespaceThatCouldOverlapAnotherIsRefused(_ namespace: String) {
        #expect(throws: CortexError.self) { try EtcdJournal(kv: FakeEtcdKV(), namespace: namespace) }
    }

    @Test func namespacesDoNotSeeEachOthersRecords() throws {
        let cluster = FakeEtcdKV()
        let first = try EtcdJournal(kv: cluster, namespace: "a")
        let second = try EtcdJournal(kv: cluster, namespace: "ab")
        _ = try first.append(try line(.budgetSet(total: 1)), tail: .start)
        _ = try second.append(try line(.budgetSet(total: 2)), tail: .start)
        #expect(try readAll(first).records.map { $0.0.data["total"]?.intValue } == [1])
        #expect(try readAll(second).records.map { $0.0.data["total"]?.intValue } == [2])
    }
}
