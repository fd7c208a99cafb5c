import CortexCore
import CortexStorage

/// What `kill -9` leaves behind, and how the reaper clears it
/// (docs/decisions/021-outcome-is-the-truth.md).
public enum Debris {
    /// Every folder Cortex writes temp files in: the folder itself (views, config, metrics),
    /// the journal (tombstones) and its archive, state/ and state/finished/ (snapshots,
    /// compacted tasks), results/, context/, audit/ and audit/keys/ (the reaper's audit
    /// progress, keys) and each worker's folder (logs).
    static func temporaryFileFolders(_ layout: CoordinationLayout) -> [String] {
        var folders = [
            layout.root, layout.journal, layout.archive, layout.stateFolder, layout.finishedTasks, layout.results, layout.contexts,
            layout.auditFolder, layout.auditKeys, layout.workers,
        ]
        for name in (try? layout.folder.entries(layout.workers)) ?? [] where !name.hasPrefix(".") {
            let path = layout.workers + "/" + name
            if let info = try? layout.folder.status(path), info.isDirectory { folders.append(path) }
        }
        return folders
    }

    /// The temp files in the folder last modified before `cutoff` (folder time).
    public static func staleTemporaryFiles(_ layout: CoordinationLayout, modifiedBefore cutoff: Int64) -> [String] {
        temporaryFileFolders(layout).flatMap { AtomicFile.staleTemporaryFiles(in: $0, of: layout.folder, modifiedBefore: cutoff) }
    }

    /// Removes them; returns how many were removed. A temp file a live writer still uses is at
    /// most seconds old, so an age of minutes can only be a killed writer's (pids are recycled
    /// and may be another user's: the age is the criterion, not the pid in the name).
    public static func removeStaleTemporaryFiles(_ layout: CoordinationLayout, modifiedBefore cutoff: Int64) -> Int {
        staleTemporaryFiles(layout, modifiedBefore: cutoff).filter { layout.folder.unlink($0) }.count
    }

    /// Done tasks whose accepted result (`results/TASK.attempt-N.json`, named in the completion
    /// record) has no `results/TASK.json` link: the completing process was killed between its
    /// record and the link.
    public static func unlinkedResults(_ store: CoordinationStore) -> [(task: String, attempt: String)] {
        let layout = store.layout
        let names = Set((try? layout.folder.entries(layout.results)) ?? [])
        var found: [(task: String, attempt: String)] = []
        for name in names.sorted() where !name.hasPrefix(".") && name.hasSuffix(".json") {
            guard let task = taskOfAttemptFile(name) else { continue }
            guard !names.contains(task + ".json"), found.last?.task != task,
                let entry = try? store.task(task), entry.status == .done, entry.result == "results/" + name
            else { continue }
            found.append((task, entry.result!))
        }
        return found
    }

    /// `TASK` of an attempt's result file name `TASK.attempt-N.json`, or nil.
    static func taskOfAttemptFile(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        let marker = Array(".attempt-".utf8)
        guard bytes.count > marker.count else { return nil }
        for start in stride(from: bytes.count - marker.count, through: 1, by: -1)
        where bytes[start..<start + marker.count].elementsEqual(marker) {
            return String(decoding: bytes[..<start], as: UTF8.self)
        }
        return nil
    }

    /// Links each of `unlinkedResults`; returns the tasks linked.
    public static func repairResultLinks(_ store: CoordinationStore) -> [String] {
        var linked: [String] = []
        for item in unlinkedResults(store) {
            do {
                try ResultFiles.publish(store.layout, task: item.task, attemptFile: item.attempt)
                linked.append(item.task)
            } catch {
                store.warn("results/\(item.task).json not linked: \(error.description)")
            }
        }
        return linked
    }
}
