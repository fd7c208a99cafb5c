/// The most bytes Cortex reads from each kind of file (docs/decisions/020-no-path-tricks.md).
/// Every file is opened non-blocking and must be a regular file; none is read without a bound.
/// A user-named input over its limit fails with exit 65; a file inside the folder over its
/// limit is refused with exit 74 (the snapshot is not loaded, and the fold starts from the journal).
public enum FileLimits {
    /// `config.json`.
    public static let config = 1 << 20
    /// `cortex-task create --context-file FILE`.
    public static let contextFile = 8 << 20
    /// `cortex-task complete --result-file FILE`.
    public static let resultFile = 8 << 20
    /// A compacted file of finished tasks under `state/finished/`.
    public static let finishedTasksFile = 256 << 20
    /// `state/snapshot.json` and `state/checkpoint.json` (mapped, never copied).
    public static var snapshot: Int { ImmutableBytes.maximumMappedBytes }
    /// Small files a tool reads whole: `state/reaper.json`, `workers/<id>/tokens_used`.
    public static let smallFile = 64 << 10
    /// `metrics.json` beside the dashboard.
    public static let metrics = 16 << 20
    /// `/etc/passwd` and `/etc/group` (`UserDatabase`); a larger one reads as empty.
    public static let userDatabase = 4 << 20
    /// `/proc/<pid>/environ` and `/proc/<pid>/cmdline` (a worker's mark): above the 2 MiB of
    /// arguments and environment exec accepts under the default 8 MiB stack limit.
    public static let processStrings = 8 << 20
}
