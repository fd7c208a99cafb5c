import Foundation
import Testing

@testable import CortexCLI
@testable import CortexCore
@testable import CortexStorage

/// The error `body` throws, or nil when it throws none.
private func etcdError(_ body: () throws -> Void) -> CortexError? {
    do {
        try body()
        return nil
    } catch let error as CortexError {
        return error
    } catch {
        Issue.record("not a CortexError: \(error)")
        return nil
    }
}

/// How an etcd client is configured for TLS and auth, without a cluster.
@Suite struct EtcdTLSAuthConfigurationTests {
    @Test func httpsEndpointsParseAndNeedTLSFiles() throws {
        #expect(try EtcdEndpoint(url: "https://127.0.0.1:2379") == EtcdEndpoint(host: "127.0.0.1", port: 2379, secure: true))
        #expect(try EtcdEndpoint(url: "https://[::1]:2379/").url == "https://[::1]:2379")
        #expect(try EtcdEndpoint(url: "127.0.0.1:2379").url == "http://127.0.0.1:2379")
        #expect(
            etcdError { _ = try EtcdClient(endpoints: ["https://127.0.0.1:2379"]) }
                == .configuration("etcd endpoint https://127.0.0.1:2379 needs TLS files (at least the CA file)"))
        #expect(
            etcdError { _ = try EtcdClient(endpoints: ["http://127.0.0.1:2379"], tls: EtcdTLSFiles(caFile: "/nonexistent/ca.pem")) }
                == .configuration("etcd TLS files are given but http://127.0.0.1:2379 is not an https:// endpoint"))
        #expect(
            etcdError { _ = try EtcdClient(endpoints: ["https://127.0.0.1:2379"], tls: EtcdTLSFiles(caFile: "/nonexistent/ca.pem")) }
                == .configuration("TLS CA file /nonexistent/ca.pem does not exist"))
        #expect(
            etcdError { _ = try EtcdClient(endpoints: ["http://127.0.0.1:2379"], username: "root") }
                == .configuration("an etcd user needs a password, and a password its user"))
        // The plain opener never talks HTTP to a TLS member.
        #expect(throws: CortexError.self) {
            _ = try EtcdClient.openTCP(EtcdEndpoint(host: "127.0.0.1", port: 2379, secure: true), Socket.deadline(afterMilliseconds: 1000))
        }
    }
}

/// mTLS and etcd auth against real local clusters (skipped with a printed reason when etcd or
/// openssl is missing): docs/decisions/034-etcd-tls-and-auth.md.
@Suite(.serialized) struct EtcdTLSAuthClusterTests {
    private let prefix = Array("cortex-test/tls/".utf8)

    /// Put, range and watch over mutual TLS; a client without a certificate and one that trusts
    /// another CA are each refused with one configuration error (exit 78), not a hang.
    @Test(.enabled(if: EtcdCluster.canStartTLS, EtcdCluster.cannotStartTLS))
    func putRangeAndWatchWorkOverMutualTLSAndStrangersAreRefused() throws {
        guard let cluster = try EtcdCluster.start(tls: true), let certificates = cluster.certificates else { return }
        let client = try cluster.client()
        let first = try client.createIfAbsent(key: prefix + [1], value: Array("one".utf8))
        #expect(first.created)
        let watch = try client.watch(prefix: prefix, startRevision: first.revision + 1)
        defer { watch.cancel() }
        let second = try client.createIfAbsent(key: prefix + [2], value: Array("two".utf8))
        let found = try client.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 0)
        #expect(found.keyValues.map(\.value) == [Array("one".utf8), Array("two".utf8)])
        var event = try watch.next(timeoutMilliseconds: 1000)
        for _ in 0..<20 where event == .puts([]) { event = try watch.next(timeoutMilliseconds: 1000) }
        #expect(event == .puts([EtcdKeyValue(key: prefix + [2], value: Array("two".utf8), modRevision: second.revision)]))
        // Over TLS too, the watch's read source decrypts and queues events while nobody waits.
        try expectDrainsWhileNobodyWaits(watch, client: client, prefix: prefix, count: 20)

        let strangers = [
            ("no client certificate", EtcdTLSFiles(caFile: certificates.file("ca.pem")), "this client presented no certificate"),
            (
                "a client certificate of another CA",
                EtcdTLSFiles(
                    caFile: certificates.file("ca.pem"), certificateFile: certificates.file("other-client.pem"),
                    keyFile: certificates.file("other-client.key")), "bad certificate"
            ),
        ]
        // Many times over: under TLS 1.3 the refusal races the client's first request (the
        // member's reset may reach the client before it reads the alert).
        for (what, files, reason) in strangers + strangers + strangers + strangers + strangers {
            let stranger = try EtcdClient(endpoints: cluster.urls, tls: files, timeoutMilliseconds: 10_000)
            let error = etcdError { _ = try stranger.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 0) }
            guard case .configuration(let message) = error else {
                Issue.record("\(what): expected a configuration error, got \(String(describing: error))")
                continue
            }
            #expect(message.hasPrefix("TLS ") && message.contains(reason), "\(what): \(message)")
            #expect(!message.contains("\n"))
            #expect(ExitCode.of(error!) == 78)
        }

        // A client that trusts another CA refuses the members' certificates.
        let distrustful = try EtcdClient(
            endpoints: cluster.urls,
            tls: EtcdTLSFiles(
                caFile: certificates.file("other-ca.pem"), certificateFile: certificates.file("client.pem"),
                keyFile: certificates.file("client.key")), timeoutMilliseconds: 10_000)
        let refusal = etcdError { _ = try distrustful.status() }
        guard case .configuration(let message) = refusal else {
            Issue.record("expected a configuration error, got \(String(describing: refusal))")
            return
        }
        #expect(message.contains("certificate verify failed"), "\(message)")
        #expect(!message.contains("\n"))
    }

    /// The first TLS member is killed with SIGKILL: calls and a watch go on through the others.
    @Test(.enabled(if: EtcdCluster.canStartTLS, EtcdCluster.cannotStartTLS))
    func callsFailOverAcrossTLSMembersAfterAKill() throws {
        guard let cluster = try EtcdCluster.start(tls: true) else { return }
        let client = try cluster.client()
        let before = try client.createIfAbsent(key: prefix + [0], value: [0])
        cluster.kill(member: 0)
        let after = try client.createIfAbsent(key: prefix + [1], value: [1])
        #expect(after.revision > before.revision)
        #expect(try client.createIfAbsent(key: prefix + [1], value: [1]) == EtcdCreation(revision: after.revision, created: false))
        let found = try client.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 0)
        #expect(found.keyValues.map(\.modRevision) == [before.revision, after.revision])
        let watch = try client.watch(prefix: prefix, startRevision: before.revision)
        defer { watch.cancel() }
        guard case .puts(let puts) = try watch.next(timeoutMilliseconds: 5000) else {
            Issue.record("the watch was canceled")
            return
        }
        #expect(puts.first?.modRevision == before.revision)
    }

    /// On a cluster with auth enabled (by etcdctl): the right password works (its token renewed
    /// once when etcd no longer knows it), a wrong one and none are refused with exit 77.
    @Test(.enabled(if: EtcdCluster.hasEtcdctl, EtcdCluster.noEtcdctl))
    func authWithTheRightPasswordWorksAndAWrongOneIsPermissionDenied() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        guard ExecutableSearch.find("etcdctl") != nil else {
            print("skipped: etcdctl is not installed (apt-get install etcd-client)")
            return
        }
        // Before auth is enabled, a client with a user works without a token.
        let early = try EtcdClient(endpoints: cluster.urls, username: "root", password: "s3cret")
        #expect(try early.createIfAbsent(key: prefix + [0], value: [0]).created)
        #expect(early.authToken == "")
        for arguments in [["user", "add", "root", "--new-user-password", "s3cret"], ["auth", "enable"]] {
            let (status, output) = try cluster.etcdctl(arguments)
            try #require(status == 0, "etcdctl \(arguments.joined(separator: " ")): \(output)")
        }
        // The early client finds auth enabled now and fetches its token.
        #expect(try early.createIfAbsent(key: prefix + [9], value: [9]).created)
        #expect(early.authToken?.isEmpty == false)
        let client = try EtcdClient(endpoints: cluster.urls, username: "root", password: "s3cret")
        let created = try client.createIfAbsent(key: prefix + [1], value: [1])
        #expect(try client.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 0).keyValues.count == 3)
        let watch = try client.watch(prefix: prefix, startRevision: created.revision)
        defer { watch.cancel() }
        guard case .puts(let puts) = try watch.next(timeoutMilliseconds: 5000) else {
            Issue.record("the watch was canceled")
            return
        }
        #expect(puts.map(\.modRevision) == [created.revision])

        // A token etcd does not know (expired, or from a member that restarted): renewed once.
        client.authToken = "not-a-token.1"
        #expect(try client.createIfAbsent(key: prefix + [2], value: [2]).created)
        #expect(client.authToken != "not-a-token.1")
        client.authToken = "not-a-token.2"
        let renewedWatch = try client.watch(prefix: prefix, startRevision: created.revision)
        renewedWatch.cancel()

        let wrong = try EtcdClient(endpoints: cluster.urls, username: "root", password: "wrong")
        let refusal = etcdError { _ = try wrong.createIfAbsent(key: prefix + [3], value: [3]) }
        #expect(refusal.map(ExitCode.of) == 77)
        #expect(
            refusal
                == .permissionDenied(
                    "etcd refused user root: authentication failed, invalid user ID or password (check the user and password)"))
        let anonymous = try EtcdClient(endpoints: cluster.urls)
        let anonymousRefusal = etcdError { _ = try anonymous.range(prefix: prefix, minimumRevision: 0, maximumRevision: nil, limit: 0) }
        #expect(anonymousRefusal.map(ExitCode.of) == 77, "\(String(describing: anonymousRefusal))")
        #expect(!"\(String(describing: anonymousRefusal))".contains("\n"))
    }
}
