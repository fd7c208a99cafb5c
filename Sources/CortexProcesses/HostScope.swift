import CortexCore
import CortexStorage

/// What stays on one host until hosts are built (issue 16, decision 033): supervised workers and
/// the reaper judge processes and heartbeat files of *this* machine, so on a folder whose journal
/// an etcd namespace shares with other hosts they would take every other host's workers and
/// claimers for lost. Until worker records carry their host and hosts keep liveness leases,
/// they refuse such a folder instead.
public enum HostScope {
    /// Throws `configuration` (exit 78, one line) when `store`'s journal is shared through etcd.
    public static func requireOneHost(_ store: CoordinationStore, for action: String) throws(CortexError) {
        guard case .etcd(let settings) = store.config.backend else { return }
        throw .configuration(
            "\(store.layout.root)'s journal is shared on etcd (namespace '\(settings.namespace)'): \(action) judges this machine's processes only, and hosts do not share that yet (decision 033); use claim loops on each host"
        )
    }

    /// True when judging this machine's processes and heartbeat files says something about
    /// every worker of `store`: its journal is its own folder's.
    public static func isOneHost(_ store: CoordinationStore) -> Bool {
        if case .etcd = store.config.backend { return false }
        return true
    }
}
