import CortexCore

/// What etcd adds to the journal protocol (`SharedJournal`): one round trip for an append and
/// its fold, the snapshot stored in etcd with the compaction after it (decision 035), and the
/// hosts' liveness leases (decision 037).
extension EtcdJournal: SharedJournal {
    /// `"etcd"`.
    public var backendName: String { "etcd" }

    /// True for a position that is an etcd revision (`position(revision:)`).
    public func isRecordPosition(_ position: JournalPosition) -> Bool { (try? EtcdJournal.revision(of: position)) != nil }

    /// `EtcdJournal.isCompaction(_:)`.
    public func isCompaction(_ error: CortexError) -> Bool { EtcdJournal.isCompaction(error) }

    /// The hosts' leases in this namespace, when the journal talks to a real cluster.
    public var hostRegistry: (any HostRegistry)? {
        guard let client = kv as? EtcdClient else { return nil }
        return EtcdHostRegistry(client: client, namespace: namespace)
    }
}
