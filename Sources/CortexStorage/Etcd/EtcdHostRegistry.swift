import CortexCore

/// What the hosts sharing one journal know of each other's liveness (docs/decisions/037).
public protocol HostRegistry: Sendable {
    /// Says host `host` is alive for `ttlMilliseconds` more: its reaper calls it on every run.
    func announce(host: String, ttlMilliseconds: Int64) throws(CortexError)

    /// Every host that ever announced itself, and whether its last announcement still holds.
    func hosts() throws(CortexError) -> [HostSighting]
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
/// Each announcement grants a fresh lease and puts the alive key with it (the previous lease
/// then holds no key and expires on its own), so a reaper keeps no lease id between runs.
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

    /// Grants a lease of the timeout (at least 2 s: etcd's smallest useful TTL), puts the alive
    /// key with it, and makes sure the known key exists.
    public func announce(host: String, ttlMilliseconds: Int64) throws(CortexError) {
        guard EtcdSettings.isValidName(host) else { throw .configuration("host id '\(host)' is not valid") }
        let seconds = max(2, (ttlMilliseconds + 999) / 1000)
        let lease = try client.leaseGrant(ttlSeconds: seconds)
        try client.put(key: alivePrefix + Array(host.utf8), value: Array(host.utf8), leaseID: lease.id)
        _ = try client.createIfAbsent(key: knownPrefix + Array(host.utf8), value: Array(host.utf8))
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
