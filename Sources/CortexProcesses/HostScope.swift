import CortexCore
import CortexStorage

/// Which host a folder's processes act for (docs/decisions/037). A folder of files is one host:
/// its workers and claims name none (`host` nil), and everything in its journal is judged here.
/// A folder whose journal an etcd namespace shares with other hosts has a `host_id`: its
/// supervisors and reaper start, judge and signal only the workers and claimers of that host,
/// and judge another host's by that host's liveness (`HostRegistry`), which its reaper keeps.
public enum HostScope {
    /// Announces this host alive for `ttlMilliseconds` (unless `announce` is false: a dry run)
    /// and returns what the registry knows of every host; nothing for a folder of files. With
    /// `lease` (a long-lived reaper's), the lease it holds is kept alive instead of granting one.
    /// - Throws: `CortexError` when the cluster does not answer (the reaper run fails with it).
    public static func announceAndSight(
        _ store: CoordinationStore, ttlMilliseconds: Int64, announce: Bool, lease: HostLease? = nil
    ) throws(CortexError) -> [HostSighting] {
        guard let registry = store.hostRegistry, let host = store.config.hostID else { return [] }
        if announce { try registry.announce(host: host, ttlMilliseconds: ttlMilliseconds, lease: lease) }
        return try registry.hosts()
    }
}
