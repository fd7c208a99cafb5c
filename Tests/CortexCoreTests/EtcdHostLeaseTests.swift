import Testing

@testable import CortexCore
@testable import CortexStorage

/// A host's liveness lease against a real local 3-member cluster (skipped with a printed reason
/// when etcd is not installed; docs/decisions/037): a long-lived reaper keeps one lease alive,
/// granting another only when it expired; a one-shot run grants one each time.
@Suite(.serialized) struct EtcdHostLeaseTests {
    @Test func aKeptLeaseIsRefreshedEachRunAndGrantedAgainOnlyOnceExpired() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let client = try cluster.client()
        let registry = EtcdHostRegistry(client: client, namespace: "leases")
        let lease = HostLease()
        for _ in 0..<5 { try registry.announce(host: "a", ttlMilliseconds: 30_000, lease: lease) }
        #expect(lease.grants == 1, "one lease for every run")
        #expect(lease.keepAlives == 4)
        let id = try #require(lease.id)
        #expect(try registry.hosts() == [HostSighting(host: "a", alive: true)])
        #expect(try client.leaseKeepAlive(id: id) == 30, "the alive key's lease is the one kept")

        // The lease ends (the reaper was stopped past it): etcd deletes the alive key, and the
        // next run grants a new lease and puts the key again.
        try client.leaseRevoke(id: id)
        #expect(try registry.hosts() == [HostSighting(host: "a", alive: false)])
        try registry.announce(host: "a", ttlMilliseconds: 30_000, lease: lease)
        #expect(lease.grants == 2)
        #expect(lease.id != id)
        #expect(try registry.hosts() == [HostSighting(host: "a", alive: true)])

        // A different timeout is a different lease.
        try registry.announce(host: "a", ttlMilliseconds: 40_000, lease: lease)
        #expect(lease.grants == 3)
        #expect(try client.leaseKeepAlive(id: try #require(lease.id)) == 40)
    }
}
