import Dispatch
import Foundation
import Testing

@testable import CortexCLI
@testable import CortexCore
@testable import CortexStorage

/// The pieces of the etcd client that need no cluster: base64, the HTTP framing, endpoints.
@Suite struct EtcdClientUnitTests {
    @Test func base64MatchesTheStandardVectorsAndRoundTripsEveryByte() throws {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
        let every = (0...255).map { UInt8($0) }
        for length in 0...every.count { #expect(Base64.decode(Base64.encode(every.prefix(length))) == Array(every.prefix(length))) }
        #expect(Base64.decode("Zm9v!") == nil)
        #expect(Base64.decode("Z") == nil)
        #expect(Base64.decode("Zg=a") == nil)
    }

    @Test func prefixEndIncrementsTheLastByteThatCan() {
        #expect(EtcdClient.prefixEnd(Array("ns/journal/".utf8)) == Array("ns/journal0".utf8))
        #expect(EtcdClient.prefixEnd([0x61, 0xFF, 0xFF]) == [0x62])
        #expect(EtcdClient.prefixEnd([0xFF]) == [0])
        #expect(EtcdClient.prefixEnd([]) == [0])
    }

    @Test func endpointsParseFromURLs() throws {
        #expect(try EtcdEndpoint(url: "http://127.0.0.1:2379") == EtcdEndpoint(host: "127.0.0.1", port: 2379))
        #expect(try EtcdEndpoint(url: "etcd-1:2379/") == EtcdEndpoint(host: "etcd-1", port: 2379))
        #expect(try EtcdEndpoint(url: "http://[::1]:2379") == EtcdEndpoint(host: "::1", port: 2379))
        for bad in ["http://host", "ftp://host:2379", "host:0", ":2379", "http://host:2379/v3"] {
            #expect(throws: CortexError.self) { try EtcdEndpoint(url: bad) }
        }
    }

    /// Replies cut into pieces of any size (a chunk header split from its data, CRLF split
    /// across reads) read back the same, and the connection carries the next request.
    @Test func chunkedAndLengthFramedRepliesReadBackWholeWhateverTheReadSizes() throws {
        let chunked = Array(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n5;ext=1\r\n{\"a\":\r\n3\r\n1}\n\r\n0\r\nX-Trailer: t\r\n\r\n"
                .utf8)
        let length = Array("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"b\":2}".utf8)
        for pieceSize in [1, 2, 3, 7, 64, 4096] {
            let stream = ScriptedStream(reply: chunked + length, pieceSize: pieceSize)
            let connection = HTTPConnection(stream: stream, authority: "test:1")
            let first = try connection.post("/v3/kv/range", body: Array("{}".utf8), deadline: Socket.deadline(afterMilliseconds: 1000))
            #expect(first.status == 200)
            #expect(String(decoding: first.body, as: UTF8.self) == "{\"a\":1}\n")
            #expect(connection.isReusable)
            let second = try connection.post("/v3/kv/put", body: [], deadline: Socket.deadline(afterMilliseconds: 1000))
            #expect(String(decoding: second.body, as: UTF8.self) == "{\"b\":2}")
            #expect(String(decoding: stream.sent, as: UTF8.self).hasPrefix("POST /v3/kv/range HTTP/1.1\r\nHost: test:1\r\n"))
        }
    }

    @Test func aReplyLargerThanTheBoundIsRefusedAndTheConnectionClosed() throws {
        let reply = Array("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".utf8) + [UInt8](repeating: 0x20, count: 100)
        let connection = HTTPConnection(stream: ScriptedStream(reply: reply, pieceSize: 4096), authority: "test:1", maximumBodyBytes: 10)
        #expect(throws: CortexError.self) { try connection.post("/", body: [], deadline: Socket.deadline(afterMilliseconds: 1000)) }
        #expect(!connection.isReusable)
        let chunked =
            Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n".utf8) + [UInt8](repeating: 0x20, count: 32)
            + Array("\r\n0\r\n\r\n".utf8)
        let second = HTTPConnection(stream: ScriptedStream(reply: chunked, pieceSize: 4096), authority: "test:1", maximumBodyBytes: 10)
        #expect(throws: CortexError.self) { try second.post("/", body: [], deadline: Socket.deadline(afterMilliseconds: 1000)) }
    }

    /// A peer that accepts the connection and never answers: the call fails with exit 75 after
    /// its timeout (twice: two attempts), well within a generous bound, instead of hanging.
    @Test func aMemberThatNeverAnswersFailsTheCallWithTryLaterInsteadOfHanging() throws {
        let silent = try TCPListener()
        let client = try EtcdClient(endpoints: [EtcdEndpoint(host: "127.0.0.1", port: silent.port)], timeoutMilliseconds: 1000)
        let started = Date()
        do {
            _ = try client.createIfAbsent(key: Array("k".utf8), value: [])
            Issue.record("a silent member answered")
        } catch {
            #expect(ExitCode.of(error) == 75, "\(error)")
        }
        #expect(Date().timeIntervalSince(started) < 10)
        let watchStarted = Date()
        #expect(throws: CortexError.self) { _ = try client.watch(prefix: Array("k".utf8), startRevision: 1) }
        #expect(Date().timeIntervalSince(watchStarted) < 10)
    }

    /// A name resolves (trying each address), a receive with nothing sent times out with
    /// `.tryLater`, and a closed connection refuses to send.
    @Test func tcpConnectionsResolveNamesAndTimeOutOnSilence() throws {
        let listener = try TCPListener()
        let connection = try TCPConnection.connect(
            host: "localhost", port: listener.port, deadline: Socket.deadline(afterMilliseconds: 5000))
        try connection.send(Array("hello".utf8), deadline: Socket.deadline(afterMilliseconds: 5000))
        #expect(throws: CortexError.tryLater("timed out waiting to receive from localhost:\(listener.port)")) {
            _ = try connection.receive(maximum: 10, deadline: Socket.deadline(afterMilliseconds: 100))
        }
        connection.close()
        connection.close()
        #expect(throws: CortexError.self) { try connection.send([1], deadline: Socket.deadline(afterMilliseconds: 100)) }
    }

    @Test func aRefusedConnectionIsAnErrorNotAHang() throws {
        let port = try TCPListener().port  // closed again at once: nothing listens there now
        let client = try EtcdClient(endpoints: [EtcdEndpoint(host: "127.0.0.1", port: port)], timeoutMilliseconds: 1000)
        #expect(throws: CortexError.self) { _ = try client.status() }
    }
}

/// A byte stream that hands out a scripted reply in pieces of a fixed size and records what was sent.
final class ScriptedStream: ByteStream {
    private var reply: [UInt8]
    private let pieceSize: Int
    private(set) var sent: [UInt8] = []

    init(reply: [UInt8], pieceSize: Int) {
        self.reply = reply
        self.pieceSize = pieceSize
    }

    func send(_ bytes: [UInt8], deadline: UInt64) throws(CortexError) { sent += bytes }

    func receive(maximum: Int, deadline: UInt64) throws(CortexError) -> [UInt8] {
        let piece = Array(reply.prefix(min(maximum, pieceSize)))
        reply.removeFirst(piece.count)
        return piece
    }

    func close() {}
}

/// The client against a real local 3-member cluster (skipped with a printed reason when etcd is
/// not installed). Each test starts its own cluster, one at a time.
@Suite(.serialized, .enabled(if: EtcdCluster.isInstalled, EtcdCluster.notInstalled)) struct EtcdClusterTests {
    /// A prefix of its own for each test.
    private func testPrefix(_ name: String) -> [UInt8] { Array("cortex-test/\(name)/".utf8) }

    @Test func binaryKeysAndValuesRoundTrip() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let prefix = testPrefix("binary")
        let key = prefix + [0x00, 0xFF, 0x0A, 0x22, 0x5C, 0x80]
        let value = (0...255).map { UInt8($0) } + [0x00]
        let creation = try client.createIfAbsent(key: key, value: value)
        #expect(creation.created)
        let found = try client.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 10)
        #expect(found.keyValues == [EtcdKeyValue(key: key, value: value, modRevision: creation.revision)])
        #expect(!found.more)
        #expect(found.headerRevision >= creation.revision)
        let empty = try client.range(prefix: testPrefix("nothing"), minimumRevision: 0, maximumRevision: nil, limit: 10)
        #expect(empty.keyValues.isEmpty)
        #expect(!empty.more)
    }

    @Test func createIfAbsentTwiceReturnsTheFirstRevision() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let key = testPrefix("twice") + Array("record-1".utf8)
        let first = try client.createIfAbsent(key: key, value: Array("first".utf8))
        try client.put(key: testPrefix("other") + [1], value: [1])  // the cluster moves on
        let second = try client.createIfAbsent(key: key, value: Array("second".utf8))
        #expect(first.created)
        #expect(second == EtcdCreation(revision: first.revision, created: false))
        let stored = try client.range(prefix: testPrefix("twice"), minimumRevision: 0, maximumRevision: nil, limit: 0)
        #expect(stored.keyValues.map(\.value) == [Array("first".utf8)])
    }

    /// 2,000 records written from four threads, keys in no particular order: a range returns them
    /// in mod-revision order (a reply too big for one buffer, so chunked), and pages with `limit`
    /// and `more` from a minimum revision cover the same records.
    @Test func aLargeRangeComesBackInRevisionOrderAndPagesWithLimit() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let prefix = testPrefix("large")
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            for index in 0..<500 {
                let key = prefix + Array("k\((index * 4 + thread) * 7919 % 10007)".utf8)
                _ = try? client.createIfAbsent(key: key, value: [UInt8](repeating: UInt8(index % 256), count: 100))
            }
        }
        let all = try client.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 0)
        #expect(all.keyValues.count == 2000)
        #expect(!all.more)
        let revisions = all.keyValues.map(\.modRevision)
        #expect(revisions == revisions.sorted())
        #expect(Set(revisions).count == 2000)

        var paged: [EtcdKeyValue] = []
        var from: Int64 = 0
        var pages: [Bool] = []
        while true {
            let page = try client.range(prefix: prefix, minimumRevision: from, maximumRevision: nil, limit: 700)
            paged += page.keyValues
            pages.append(page.more)
            guard page.more, let last = page.keyValues.last else { break }
            from = last.modRevision + 1
        }
        #expect(pages == [true, true, false])
        #expect(paged == all.keyValues)
        let bounded = try client.range(prefix: prefix, minimumRevision: revisions[10], maximumRevision: revisions[19], limit: 0)
        #expect(bounded.keyValues == Array(all.keyValues[10...19]))
    }

    @Test func deleteRangeRemovesOnlyTheRecordsBelowTheRevision() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let prefix = testPrefix("delete")
        var revisions: [Int64] = []
        for index in 0..<5 { revisions.append(try client.createIfAbsent(key: prefix + [UInt8(index)], value: [UInt8(index)]).revision) }
        try client.put(key: testPrefix("kept") + [9], value: [9])
        #expect(try client.deleteRange(prefix: prefix, belowRevision: revisions[3]) == 3)
        #expect(try client.deleteRange(prefix: prefix, belowRevision: revisions[3]) == 0)
        let left = try client.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 0)
        #expect(left.keyValues.map(\.modRevision) == Array(revisions[3...]))
        #expect(try client.range(prefix: testPrefix("kept"), minimumRevision: 0, maximumRevision: nil, limit: 0).keyValues.count == 1)
    }

    @Test func aWatchReceivesLaterPutsInOrder() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let prefix = testPrefix("watch")
        let start = try client.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 1).headerRevision + 1
        let watch = try client.watch(prefix: prefix, startRevision: start)
        defer { watch.cancel() }
        #expect(try watch.next(timeoutMilliseconds: 50) == .puts([]))
        var written: [EtcdKeyValue] = []
        for index in 0..<20 {
            let key = prefix + Array("r\(19 - index)".utf8)
            let value = Array("v\(index)".utf8)
            written.append(EtcdKeyValue(key: key, value: value, modRevision: try client.createIfAbsent(key: key, value: value).revision))
            try client.put(key: testPrefix("elsewhere") + [UInt8(index)], value: [])
        }
        var received: [EtcdKeyValue] = []
        var waits = 0
        while received.count < written.count && waits < 100 {
            waits += 1
            guard case .puts(let puts) = try watch.next(timeoutMilliseconds: 1000) else {
                Issue.record("the watch was canceled")
                return
            }
            received += puts
        }
        #expect(received == written)
    }

    @Test func aWatchFromACompactedRevisionReportsCompacted() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let prefix = testPrefix("compacted")
        var last: Int64 = 0
        for index in 0..<5 { last = try client.createIfAbsent(key: prefix + [UInt8(index)], value: []).revision }
        try client.compact(revision: last)
        let watch = try client.watch(prefix: prefix, startRevision: 2)
        defer { watch.cancel() }
        var event = try watch.next(timeoutMilliseconds: 1000)
        for _ in 0..<30 where event == .puts([]) { event = try watch.next(timeoutMilliseconds: 1000) }
        #expect(event == .compacted(revision: last))
        // A watch from the compact revision itself is fine.
        let current = try client.watch(prefix: prefix, startRevision: last)
        defer { current.cancel() }
        guard case .puts(let puts) = try current.next(timeoutMilliseconds: 5000) else {
            Issue.record("a watch from the compact revision was canceled")
            return
        }
        #expect(puts.map(\.modRevision) == [last])
    }

    /// The first endpoint's member is killed with SIGKILL (keep-alive connections to it included):
    /// calls go on through the other two, and a watch starts on one of them.
    @Test func callsFailOverWhenTheFirstMemberIsKilled() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let prefix = testPrefix("failover")
        let before = try client.createIfAbsent(key: prefix + [0], value: [0])
        let brokenWatch = try client.watch(prefix: prefix, startRevision: before.revision + 1)
        defer { brokenWatch.cancel() }
        cluster.kill(member: 0)
        // The watch's member is gone: the stream breaks (an error), it does not wait forever.
        #expect(throws: CortexError.self) {
            for _ in 0..<10 { _ = try brokenWatch.next(timeoutMilliseconds: 1000) }
        }
        let after = try client.createIfAbsent(key: prefix + [1], value: [1])
        #expect(after.revision > before.revision)
        let again = try client.createIfAbsent(key: prefix + [1], value: [1])
        #expect(again == EtcdCreation(revision: after.revision, created: false))
        let found = try client.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 0)
        #expect(found.keyValues.map(\.modRevision) == [before.revision, after.revision])
        let watch = try client.watch(prefix: prefix, startRevision: before.revision)
        defer { watch.cancel() }
        guard case .puts(let puts) = try watch.next(timeoutMilliseconds: 5000) else {
            Issue.record("the watch was canceled")
            return
        }
        #expect(puts.first?.modRevision == before.revision)
        #expect(try client.status().leaderID != 0)

        // The member comes back with its data and catches up.
        try cluster.launch(member: 0)
        try cluster.waitUntilHealthy()
        let alone = try EtcdClient(endpoints: [cluster.endpoints[0]], timeoutMilliseconds: 5000)
        var caughtUp = try alone.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 0).keyValues.count
        for _ in 0..<50 where caughtUp < 2 {
            usleep(100_000)
            caughtUp = try alone.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 0).keyValues.count
        }
        #expect(caughtUp == 2)
    }

    /// The first endpoint accepts connections and never answers: each call waits one timeout
    /// there, then the client prefers the next member, so later calls do not wait at all.
    @Test func aSilentFirstEndpointIsLeftForTheNextMember() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let silent = try TCPListener()
        let client = try EtcdClient(
            endpoints: [EtcdEndpoint(host: "127.0.0.1", port: silent.port)] + cluster.endpoints, timeoutMilliseconds: 1000)
        let first = try client.createIfAbsent(key: testPrefix("silent") + [0], value: [0])
        let second = try client.createIfAbsent(key: testPrefix("silent") + [1], value: [1])
        #expect(second.revision > first.revision)
        let watch = try client.watch(prefix: testPrefix("silent"), startRevision: first.revision)
        defer { watch.cancel() }
        guard case .puts(let puts) = try watch.next(timeoutMilliseconds: 5000) else {
            Issue.record("the watch was canceled")
            return
        }
        #expect(puts.first?.modRevision == first.revision)
    }

    @Test func leasesAreGrantedKeptAliveAndAttachToPuts() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let lease = try client.leaseGrant(ttlSeconds: 30)
        #expect(lease.ttlSeconds == 30)
        #expect(try client.leaseKeepAlive(id: lease.id) == 30)
        try client.put(key: testPrefix("lease") + [1], value: [1], leaseID: lease.id)
        #expect(try client.range(prefix: testPrefix("lease"), minimumRevision: 0, maximumRevision: nil, limit: 0).keyValues.count == 1)
        #expect(throws: CortexError.self) { try client.leaseKeepAlive(id: lease.id ^ 0x5555) }
        let status = try client.status()
        #expect(status.version.hasPrefix("3."))
        #expect(status.leaderID != 0)
    }
}
