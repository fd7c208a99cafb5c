import CortexCore

/// Worker files under `workers/<id>/`.
public enum WorkerFiles {
    /// Creates `workers/<id>/heartbeat` if needed and sets its modification time to now (the
    /// heartbeat the reaper judges); new folders and files get the private modes of `permissions`.
    public static func touchHeartbeat(_ layout: CoordinationLayout, worker: String, permissions: FolderPermissions)
        throws(CortexError)
    {
        let folder = layout.worker(worker)
        try Files.makeDirectory(layout.workers, in: layout.folder, mode: permissions.directory(.private))
        try Files.makeDirectory(folder, in: layout.folder, mode: permissions.directory(.private))
        try Files.touch(folder + "/heartbeat", in: layout.folder, mode: permissions.file(.private))
    }
}
