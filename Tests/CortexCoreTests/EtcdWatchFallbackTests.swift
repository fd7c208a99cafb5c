import Dispatch
import Foundation
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// The real client, with a step run just before each watch it starts: a test changes the
/// cluster between a waiter choosing its start revision and the watch reaching the cluster.
/// Records what the watches it returns deliver.
final class WatchHookKV: EtcdKV, @unchecked Sendable {
    let client: EtcdClient
    private let lock = NSLock()
    private var state = State()

    private struct State {
        var beforeNextWatch: (() throws -> Void)?
        var compactedReplies = 0
        var watches = 0
    }

    init(_ client: EtcdClient) { self.client = client }

    /// Runs `step` just before the next watch is started (once).
    func beforeNextWatch(_ step: @escaping () throws -> Void) { lock.withLock { state.beforeNextWatch = step } }
    /// How many times a watch told its caller that its start revision was compacted.
    var compactedReplies: Int { lock.withLock { state.compactedReplies } }
    /// Watches started.
    var watches: Int { lock.withLock { state.watches } }

    fileprivate func noteCompacted() { lock.withLock { state.compactedReplies += 1 } }

    func watch(prefix: [UInt8], startRevision: Int64) throws(CortexError) -> any EtcdWatch {
        let step = lock.withLock {
            state.watches += 1
            defer { state.beforeNextWatch = nil }
            return state.beforeNextWatch
        }
        if let step {
            do { try step() } catch { throw .io(operation: "run the test's step before", path: "watch", errno: .ioError) }
        }
        return RecordingWatch(try client.watch(prefix: prefix, startRevision: startRevision), owner: self)
    }

    func createIfAbsent(key: [UInt8], value: [UInt8]) throws(CortexError) -> EtcdCreation {
        try client.createIfAbsent(key: key, value: value)
    }
    func range(prefix: [UInt8], minimumRevision: Int64, maximumRevision: Int64?, limit: Int) throws(CortexError) -> EtcdRange {
        try client.range(prefix: prefix, minimumRevision: minimumRevision, maximumRevision: maximumRevision, limit: limit)
    }
    func deleteRange(prefix: [UInt8], belowRevision: Int64) throws(CortexError) -> Int {
        try client.deleteRange(prefix: prefix, belowRevision: belowRevision)
    }
    func get(key: [UInt8], atRevision revision: Int64?) throws(CortexError) -> EtcdKeyValue? {
        try client.get(key: key, atRevision: revision)
    }
    func putAll(_ puts: [(key: [UInt8], value: [UInt8])], ifModifiedBelow revision: Int64, key: [UInt8])
        throws(CortexError) -> (previous: EtcdKeyValue?, revision: Int64)?
    {
        try client.putAll(puts, ifModifiedBelow: revision, key: key)
    }
}

/// A real watch whose `.compacted` replies are counted by its `WatchHookKV`.
private final class RecordingWatch: EtcdWatch {
    let watch: any EtcdWatch
    let owner: WatchHookKV
    init(_ watch: any EtcdWatch, owner: WatchHookKV) {
        self.watch = watch
        self.owner = owner
    }
    func next(timeoutMilliseconds: Int64) throws(CortexError) -> EtcdWatchEvent {
        let event = try watch.next(timeoutMilliseconds: timeoutMilliseconds)
        if case .compacted = event { owner.noteCompacted() }
        return event
    }
    func cancel() { watch.cancel() }
}

/// The etcd journal's waiter against a real local 3-member cluster (skipped with a printed
/// reason when etcd is not installed): etcd refuses a watch whose start revision was compacted
/// (`canceled`, `compact_revision`), and the waiter must then read with a range from the first
/// revision it has not seen, so the record appended across the compaction still wakes it.
@Suite(.serialized) struct EtcdWatchFallbackTests {
    private func line(_ event: Event) throws -> [UInt8] { try RecordCodec.encode(record(event)) }

    @Test func theWaiterWakesForARecordWhoseHistoryWasCompactedBeforeItsWatchStarted() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let kv = WatchHookKV(client)
        let journal = try EtcdJournal(kv: kv, namespace: "compacted-waiter")
        // Between the waiter's choice of start revision and its watch reaching the cluster, a
        // record is appended and the cluster's history compacted past that start revision.
        kv.beforeNextWatch {
            _ = try journal.append(try self.line(.budgetSet(total: 1)), tail: .start)
            let latest = try client.put(key: Array("elsewhere".utf8), value: [])
            try client.compact(revision: latest)
        }
        let waiter = try journal.makeWaiter()
        #expect(waiter.wait(timeoutMilliseconds: 10_000), "the record appended before the compaction wakes the waiter")
        #expect(kv.compactedReplies == 1, "etcd refused the waiter's first watch as compacted")
        #expect(kv.watches == 2, "the waiter watched again after its range read")
        #expect(!waiter.wait(timeoutMilliseconds: 0), "nothing new since")

        // It keeps watching from after what its read saw: the next append wakes it (10 s: a bound).
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) {
            _ = try? journal.append(try RecordCodec.encode(record(.budgetSet(total: 2))), tail: .start)
        }
        #expect(waiter.wait(timeoutMilliseconds: 10_000))
        #expect(kv.compactedReplies == 1)

        // A rearmed waiter whose new watch is refused the same way wakes the same way.
        waiter.disarm()
        kv.beforeNextWatch {
            _ = try journal.append(try self.line(.budgetSet(total: 3)), tail: .start)
            let latest = try client.put(key: Array("elsewhere".utf8), value: [])
            try client.compact(revision: latest)
        }
        try waiter.rearm()
        #expect(waiter.wait(timeoutMilliseconds: 10_000))
        #expect(kv.compactedReplies == 2)
        waiter.disarm()
    }
}
