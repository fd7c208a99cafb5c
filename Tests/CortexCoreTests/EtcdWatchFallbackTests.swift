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

/// Puts `count` keys under `prefix` through `client`'s request connections while nobody waits on
/// `watch` (docs/decisions/005, 030): its read source queues every event meanwhile, and `next`
/// then hands them over in revision order without waiting.
func expectDrainsWhileNobodyWaits(_ watch: any EtcdWatch, client: EtcdClient, prefix: [UInt8], count: Int) throws {
    let stream = try #require(watch as? EtcdStreamWatch)
    #expect(stream.isDraining)
    var revisions: [Int64] = []
    for index in 0..<count { revisions.append(try client.put(key: prefix + Array("drained-\(index)".utf8), value: [])) }
    var polls = 0
    while stream.undeliveredPuts < count && polls < 1_000 {  // 10 s: a bound
        usleep(10_000)
        polls += 1
    }
    #expect(stream.undeliveredPuts == count, "the read source queued every event while nobody called next")
    var received: [Int64] = []
    while received.count < count {
        guard case .puts(let puts) = try watch.next(timeoutMilliseconds: 0), !puts.isEmpty else { break }
        received += puts.map(\.modRevision)
    }
    #expect(received == revisions)
    #expect(try watch.next(timeoutMilliseconds: 0) == .puts([]))
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

    /// A watch's events are read off its connection as they come, while its caller works on
    /// other connections; a stream that ends is reported once the events before it are taken.
    @Test func aWatchDrainsItsStreamWhileNobodyWaitsOnIt() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let prefix = Array("cortex-test/drained/".utf8)
        let start = try client.put(key: Array("cortex-test/before".utf8), value: []) + 1
        let watch = try client.watch(prefix: prefix, startRevision: start)
        defer { watch.cancel() }
        try expectDrainsWhileNobodyWaits(watch, client: client, prefix: prefix, count: 50)

        // The member serving the watch dies after one more put: the put comes first, then the failure.
        let last = try client.put(key: prefix + Array("last".utf8), value: [])
        let stream = try #require(watch as? EtcdStreamWatch)
        var polls = 0
        while stream.undeliveredPuts < 1 && polls < 1_000 {
            usleep(10_000)
            polls += 1
        }
        for index in cluster.members.indices { cluster.kill(member: index) }
        guard case .puts(let puts) = try watch.next(timeoutMilliseconds: 10_000) else {
            Issue.record("no put before the stream ended")
            return
        }
        #expect(puts.map(\.modRevision) == [last])
        #expect(throws: CortexError.self, "the ended stream is reported") { try watch.next(timeoutMilliseconds: 10_000) }
        #expect(throws: CortexError.self, "and stays reported") { try watch.next(timeoutMilliseconds: 0) }
    }

    /// Events read together with the confirmation are delivered, and a watch etcd cancels for
    /// another reason than compaction (`canceled` without `compact_revision`) is reported to the
    /// waiter as an error, also when the read source found it: the waiter then watches again.
    /// A scripted member on a loopback socket.
    @Test func aWatchCanceledForAnotherReasonIsReportedFromTheReadSource() throws {
        let listener = try TCPListener()
        let connection = try TCPConnection.connect(
            host: "127.0.0.1", port: listener.port, deadline: Socket.deadline(afterMilliseconds: 10_000))
        let member = accept(listener.descriptor, nil, nil)
        try #require(member >= 0)
        defer { close(member) }
        func answer(_ text: String) {
            let bytes = Array(text.utf8)
            #expect(bytes.withUnsafeBytes { write(member, $0.baseAddress, $0.count) } == bytes.count)
        }
        func chunk(_ message: String) -> String { String(message.utf8.count + 1, radix: 16) + "\r\n" + message + "\n\r\n" }
        let stream = WatchStream(connection)
        let http = HTTPConnection(stream: stream, authority: "127.0.0.1:\(listener.port)")
        // The first event comes in the same write as the confirmation: read with it, never
        // signalled by the socket again, it must still be delivered.
        answer(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(#"{"result":{"header":{},"created":true}}"#)
                + chunk(#"{"result":{"events":[{"kv":{"key":"Zmlyc3Q=","value":"","mod_revision":"6"}}]}}"#))
        let deadline = Socket.deadline(afterMilliseconds: 10_000)
        #expect(try http.startPost("/v3/watch", body: [], deadline: deadline).status == 200)
        let watch = EtcdStreamWatch(
            connection: http, stream: stream, endpoint: try EtcdEndpoint(url: "http://127.0.0.1:\(listener.port)"))
        defer { watch.cancel() }
        try watch.waitUntilCreated(deadline: deadline)
        watch.startDraining()
        #expect(watch.isDraining)
        #expect(try watch.next(timeoutMilliseconds: 10_000) == .puts([EtcdKeyValue(key: Array("first".utf8), value: [], modRevision: 6)]))
        #expect(try watch.next(timeoutMilliseconds: 0) == .puts([]))
        answer(chunk(#"{"result":{"events":[{"kv":{"key":"a2V5","value":"dmFs","mod_revision":"7"}}]}}"#))
        #expect(
            try watch.next(timeoutMilliseconds: 10_000)
                == .puts([EtcdKeyValue(key: Array("key".utf8), value: Array("val".utf8), modRevision: 7)]))
        answer(chunk(#"{"result":{"canceled":true,"cancel_reason":"mvcc: required revision is a future revision"}}"#))
        #expect(throws: CortexError.self, "the cancel is reported, not taken for a quiet stream") {
            try watch.next(timeoutMilliseconds: 10_000)
        }
    }
}
