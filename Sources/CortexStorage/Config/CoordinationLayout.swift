import CortexCore

/// Where every file of a coordination folder lives (docs/cli.md, "Where the state lives").
public struct CoordinationLayout: Sendable {
    /// The coordination folder itself.
    public let root: String
    /// The folder opened once: every file below `root` is reached through it, never through a
    /// link (docs/decisions/020-no-path-tricks.md).
    public let folder: FolderDescriptor

    /// A layout rooted at `root` (trailing slashes ignored). Nothing is opened until first use.
    public init(root: String) {
        folder = FolderDescriptor(root: root)
        self.root = folder.root
    }

    /// The folder from `--dir`, else `$CORTEX_DIR`, else `./coordination`.
    public static func resolveRoot(flag: String?, environment: [String: String]) -> String {
        if let flag, !flag.isEmpty { return flag }
        if let fromEnvironment = environment["CORTEX_DIR"], !fromEnvironment.isEmpty { return fromEnvironment }
        return "./coordination"
    }

    /// The journal segments.
    public var journal: String { root + "/journal" }
    /// Sealed segments a snapshot covers.
    public var archive: String { root + "/journal/archive" }
    /// Snapshots and compacted state.
    public var stateFolder: String { root + "/state" }
    /// The folded state and the journal position it covers.
    public var snapshot: String { root + "/state/snapshot.json" }
    /// A second name of the snapshot the reaper last archived behind: the fallback when
    /// `snapshot.json` is unreadable once archived segments have been purged.
    public var checkpoint: String { root + "/state/checkpoint.json" }
    /// Which `state/snapshot.json` had its checksum verified last (decision 042).
    public var snapshotVerified: String { root + "/state/snapshot.verified" }
    /// Settings.
    public var config: String { root + "/config.json" }
    /// One folder per worker.
    public var workers: String { root + "/workers" }
    /// Worker requests (`WorkerRequest`): one private file per requested worker.
    public var requests: String { root + "/requests" }
    /// Task results.
    public var results: String { root + "/results" }
    /// The budget view (Cortex 1.0 name).
    public var budgetView: String { root + "/token-budget.json" }
    /// `token-allocations.json`: every outstanding allocation (docs/decisions/042).
    public var allocationsView: String { root + "/token-allocations.json" }
    /// The task queue view (Cortex 1.0 name).
    public var taskView: String { root + "/task-queue.json" }
    /// Finished tasks compacted out of the snapshot, one file per snapshot that compacted them.
    public var finishedTasks: String { root + "/state/finished" }
    /// Context files given to `cortex-task create --context-file`.
    public var contexts: String { root + "/context" }
    /// The worker pool view (Cortex 1.0 name).
    public var workerView: String { root + "/worker-pool.json" }
    /// The folder of worker `id` (its heartbeat file and logs).
    public func worker(_ id: String) -> String { workers + "/" + id }
    /// Worker `id`'s heartbeat file: its modification time is the heartbeat.
    public func heartbeat(_ id: String) -> String { workers + "/" + id + "/heartbeat" }
    /// How many seconds ago worker `id` last touched its heartbeat file, or nil when it has none.
    public func heartbeatAge(_ id: String, nowMilliseconds: Int64) -> Double? {
        guard let touched = folder.modificationMilliseconds(heartbeat(id)) else { return nil }
        return FolderClock.age(heartbeatMilliseconds: touched, nowMilliseconds: nowMilliseconds)
    }
}
