import CortexCore

/// Context and result files across the hosts of an etcd namespace (docs/decisions/045): each is
/// written to the writing host's folder as before and stored in etcd (`EtcdArtifacts`) before
/// the record naming it is appended; another host fetches it, checks it and writes it into its
/// own folder under the same name before it shows its path. A folder of files does none of this.
extension CoordinationStore {
    /// The files shared through etcd, or nil for a folder of files (one host: its folder is enough).
    public var sharedArtifacts: EtcdArtifacts? {
        guard case .etcd(let settings) = config.backend, let client = (journal as? EtcdJournal)?.kv as? EtcdClient else {
            return nil
        }
        return EtcdArtifacts(client: client, namespace: settings.namespace)
    }

    /// The largest `--context-file` the folder at `root` accepts: `FileLimits.contextFile`
    /// (8 MiB) for a folder of files, `EtcdArtifacts.maximumBytes` (64 MiB) over etcd. Read from
    /// its `config.json` alone (before the store opens, so a bad file fails first as it always did).
    public static func contextFileLimit(root: String) -> Int {
        guard case .etcd = (try? journalBackend(root: root)) ?? .file else { return FileLimits.contextFile }
        return EtcdArtifacts.maximumBytes
    }

    /// How long a shared file lives in etcd: the folder's `result_ttl`, in whole seconds.
    public var artifactTTLSeconds: Int64 { max(2, (config.resultRetentionMilliseconds + 999) / 1000) }

    /// Stores the folder's file `name` (written with `bytes`) in etcd for the other hosts; nothing
    /// for a folder of files. Returns true when this call stored it (false: a folder of files,
    /// or the same bytes already stored under that name).
    @discardableResult
    public func shareArtifact(_ name: String, bytes: [UInt8]) throws(CortexError) -> Bool {
        guard let artifacts = sharedArtifacts else { return false }
        return try artifacts.store(name, bytes: bytes, ttlSeconds: artifactTTLSeconds)
    }

    /// Deletes the shared copy of `name` (best effort; it expires anyway).
    public func unshareArtifact(_ name: String) {
        sharedArtifacts?.remove(name)
    }

    /// Makes sure the shared file `name` is in this host's folder: a regular file already there
    /// is kept; otherwise it is fetched from etcd, checked against its manifest and written by
    /// an atomic rename, private to the folder's owner as the writing host's copy is. Returns true
    /// when it was fetched; false for a folder of files or a file already there.
    /// - Throws: `.notFound` when etcd holds no such file (never stored, or expired), `.corrupt`
    ///   for a damaged or incomplete one, etcd's and the file system's errors.
    @discardableResult
    public func materialiseArtifact(_ name: String) throws(CortexError) -> Bool {
        guard let artifacts = sharedArtifacts else { return false }
        guard EtcdArtifacts.isValidName(name) else { throw .corrupt("not a shared file name: \(Values.printable(name))") }
        if let info = try? layout.folder.status(name), info.isRegularFile { return false }
        let bytes = try artifacts.fetch(name)
        try AtomicFile.replace(name, in: layout.folder, with: bytes, durability: .powerLoss, mode: permissions.file(.private))
        return true
    }

    /// Makes `results/<task>.json` of a done task with a result file present on this host: the
    /// accepted attempt's file fetched from etcd when another host completed it, then linked.
    /// Nothing for a folder of files, a task without a result or one whose link is already here.
    /// - Throws: as `materialiseArtifact`.
    public func materialiseResult(of task: TaskEntry) throws(CortexError) {
        guard sharedArtifacts != nil, task.status == .done, let result = task.result else { return }
        let canonical = layout.results + "/" + task.id + ".json"
        if let info = try? layout.folder.status(canonical), info.isRegularFile { return }
        try materialiseArtifact(result)
        try ResultFiles.publish(layout, task: task.id, attemptFile: result)
    }
}
