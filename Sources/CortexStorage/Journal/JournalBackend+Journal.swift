import CortexCore

/// The one place that turns a folder's `backend` setting into a `Journal` (docs/decisions/027):
/// the store holds what this returns and never names a backend.
extension JournalBackend {
    /// The journal of the folder `layout` describes: its `journal/` segments, or its namespace on
    /// an etcd cluster (`etcd`, when given, instead of a client built from the settings: tests).
    /// Returned with its `SharedJournal` side when the backend adopts it, known here from its type
    /// (no dynamic cast on the path of every command).
    /// - Throws: `configuration` for etcd settings that cannot be used.
    func openJournal(layout: CoordinationLayout, permissions: FolderPermissions, segmentMaxBytes: Int64, etcd: (any EtcdKV)?)
        throws(CortexError) -> (journal: any Journal, shared: (any SharedJournal)?)
    {
        switch self {
        case .file:
            let journal = FileJournal(
                folder: layout.folder, directory: layout.journal, permissions: permissions, segmentMaxBytes: segmentMaxBytes)
            return (journal, nil)
        case .etcd(let settings):
            let shared: EtcdJournal
            if let etcd {
                shared = try EtcdJournal(kv: etcd, namespace: settings.namespace)
            } else {
                shared = try CoordinationStore.etcdJournal(settings)
            }
            return (shared, shared)
        }
    }

    /// Creates the files a new folder's journal starts with, in its `journal/` folder: the first
    /// segment and the doorbell. Nothing for a journal on etcd, which has no files of its own.
    func createJournalFiles(layout: CoordinationLayout, permissions: FolderPermissions) throws(CortexError) {
        guard self == .file else { return }
        let journal = FileJournal(folder: layout.folder, directory: layout.journal, permissions: permissions)
        try journal.createSegment(1)
        try journal.createDoorbell()
    }
}
