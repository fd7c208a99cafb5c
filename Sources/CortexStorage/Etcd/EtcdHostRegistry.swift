import CortexCore
import Synchronization

/// What the hosts sharing one journal know of each other's liveness (docs/decisions/037).
public protocol HostRegistry: Sendable {
    /// Says host `host` is alive for `ttlMilliseconds` more: its reaper calls it on every run.
    /// With `lease` (a long-lived reaper's, kept between its runs), the lease it holds is kept
    /// alive instead of granting another; without, each call grants one.
    func announce(host: String, ttlMilliseconds: Int64, lease: HostLease?) throws(CortexError)

    /// Every host that ever announced itself, and whether its last announcement still holds.
    func hosts() throws(CortexError) -> [HostSighting]
}

extension HostRegistry {
    /// `announce` with a fresh lease (a one-shot reaper's run).
    public func announce(host: String, ttlMilliseconds: Int64) throws(CortexError) {
        try announce(host: host, ttlMilliseconds: ttlMilliseconds, lease: nil)
    }
}

/// The liveness lease a long-lived reaper (`cortex-reap --every D`) keeps between its runs: the
/// first run grants it and puts the host's alive key with it, later runs refresh it with one
/// keep-alive, and a run that finds it expired (the reaper was stopped, or could not reach the
/// cluster for longer than the lease) grants another. Used by one reaper at a time.
public final class HostLease: Sendable {
    private let state = Mutex<State>(State())

    private struct State {
        var id: Int64?
        var ttlSeconds: Int64 = 0
        var key: [UInt8] = []
        var grants = 0
        var keepAlives = 0
    }

    /// No lease yet.
    public init() {}

    /// The lease held now (nil before the first grant).
    public var id: Int64? { state.withLock { $0.id } }
    /// Leases granted so far.
    public var grants: Int { state.withLock { $0.grants } }
    /// Keep-alives that found the lease alive so far.
    public var keepAlives: Int { state.withLock { $0.keepAlives } }

    /// The lease to refresh for `key` with `ttlSeconds`, or nil when a new one is needed.
    func current(key: [UInt8], ttlSeconds: Int64) -> Int64? {
        state.withLock { $0.key == key && $0.ttlSeconds == ttlSeconds ? $0.id : nil }
    }

    func granted(_ id: Int64, key: [UInt8], ttlSeconds: Int64) {
        state.withLock {
            $0 = State(id: id, ttlSeconds: ttlSeconds, key: key, grants: $0.grants + 1, keepAlives: $0.keepAlives)
        }
    }

    func keptAlive() { state.withLock { $0.keepAlives += 1 } }
}

/// One host as the registry knows it.
public struct HostSighting: Equatable, Sendable {
    /// The host's id (`host_id` in its folder's config).
    public var host: String
    /// Its liveness has not expired: its reaper announced it less than a lease ago.
    public var alive: Bool

    /// A sighting from its parts.
    public init(host: String, alive: Bool) {
        self.host = host
        self.alive = alive
    }
}

/// The host registry of an etcd namespace: two keys per host, outside the journal's prefix.
///
/// - `<namespace>/hosts/alive/<host>`, put with a lease of the reaper's heartbeat timeout: etcd
///   deletes it when the lease expires, so a host whose reaper stopped announcing (the host
///   died, or lost the cluster) drops out within that timeout, on the cluster's clock.
/// - `<namespace>/hosts/known/<host>`, created once and never leased: a host that announced
///   itself once and is no longer alive is lost. A host that never ran a reaper is not known,
///   so no other host judges its workers (nothing ever said it was alive).
///
/// A one-shot announcement (cron) grants a fresh lease and puts the alive key with it (the
/// previous lease then holds no key and expires on its own). A long-lived reaper passes its
/// `HostLease`: one grant, then one keep-alive a run while the lease lives.
public struct EtcdHostRegistry: HostRegistry {
    /// The cluster.
    public let client: EtcdClient
    /// `<namespace>/hosts/alive/`.
    let alivePrefix: [UInt8]
    /// `<namespace>/hosts/known/`.
    let knownPrefix: [UInt8]

    /// The registry of `namespace` on `client`.
    public init(client: EtcdClient, namespace: String) {
        self.client = client
        alivePrefix = Array("\(namespace)/hosts/alive/".utf8)
        knownPrefix = Array("\(namespace)/hosts/known/".utf8)
    }

    /// Keeps `lease` alive when it holds the alive key of `host` with this timeout (one
    /// keep-alive). Otherwise (no lease kept, a first run, an expired lease) grants a lease of
    /// the timeout (at least 2 s: etcd's smallest useful TTL), puts the alive key with it, makes
    /// sure the known key exists, and remembers the lease in `lease`.
    public func announce(host: String, ttlMilliseconds: Int64, lease: HostLease?) throws(CortexError) {
        guard EtcdSettings.isValidName(host) else { throw .configuration("host id '\(host)' is not valid") }
        let seconds = max(2, (ttlMilliseconds + 999) / 1000)
        let aliveKey = alivePrefix + Array(host.utf8)
        if let lease, let id = lease.current(key: aliveKey, ttlSeconds: seconds) {
            do {
                _ = try client.leaseKeepAlive(id: id)
                lease.keptAlive()
                return
            } catch {
                // Expired (etcd deleted the alive key with it): grant another below.
                guard case .notFound = error else { throw error }
            }
        }
        let granted = try client.leaseGrant(ttlSeconds: seconds)
        try client.put(key: aliveKey, value: Array(host.utf8), leaseID: granted.id)
        _ = try client.createIfAbsent(key: knownPrefix + Array(host.utf8), value: Array(host.utf8))
        lease?.granted(granted.id, key: aliveKey, ttlSeconds: seconds)
    }

    /// The known hosts, each marked alive when its alive key exists. Keys whose name is no valid
    /// host id (written by hand, or by a hostile member of the cluster) are skipped.
    public func hosts() throws(CortexError) -> [HostSighting] {
        let alive = Set(try names(under: alivePrefix))
        return try names(under: knownPrefix).sorted().map { HostSighting(host: $0, alive: alive.contains($0)) }
    }

    private func names(under prefix: [UInt8]) throws(CortexError) -> [String] {
        var names: [String] = []
        var next: Int64 = 0
        while true {
            let page = try client.range(prefix: prefix, minimumRevision: next, maximumRevision: nil, limit: 1000)
            for item in page.keyValues {
                let name = String(decoding: item.key.dropFirst(prefix.count), as: UTF8.self)
                if EtcdSettings.isValidName(name) { names.append(name) }
                next = max(next, item.modRevision + 1)
            }
            guard page.more, !page.keyValues.isEmpty else { return names }
        }
    }
}
