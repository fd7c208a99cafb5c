import CCortexBytes
import CortexCore

// Finished tasks leave the snapshot (docs/decisions/010-compacting-finished-tasks.md): they
// are written to `state/finished/` when a snapshot is written, and looked up there.
extension CoordinationStore {
    /// Writes the tasks that finished since the last snapshot as one durable file under
    /// `state/finished/`, named after the journal position, and empties the outbox. Called
    /// before the snapshot that no longer holds them is written.
    /// - Returns: the file's name and lines (nil when no task finished since the last snapshot).
    @discardableResult
    func compactFinishedTasks() throws(CortexError) -> (name: String, lines: [UInt8])? {
        guard !state.tasks.finished.isEmpty else { return nil }
        try Files.makeDirectory(layout.finishedTasks, in: layout.folder, mode: permissions.directory(.shared))
        let name = position.fileNameStem + ".jsonl"
        var lines: [UInt8] = []
        for task in state.tasks.finished { lines += task.json.serialized() + [0x0A] }
        // Same position, same finished tasks: a concurrent writer of this name writes the same bytes.
        try AtomicFile.replace(
            layout.finishedTasks + "/" + name, in: layout.folder, with: lines, durability: .powerLoss,
            mode: permissions.file(.shared))
        clearFinishedOutbox()
        return (name, lines)
    }

    /// The task `id` wherever it is: live in the state, finished since the last snapshot, or
    /// compacted under `state/finished/`. Nil when no such task was ever created.
    public func task(_ id: String) throws(CortexError) -> TaskEntry? {
        if let live = state.tasks.activeTask(id) { return live }
        if let recent = state.tasks.finished.last(where: { $0.id == id }) { return recent }
        guard IssuedID.issued(id, .task, before: position, counted: state.tasks.created) else { return nil }
        let needle = Array("\"id\":\"\(id)\"".utf8)
        for file in try compactedTaskFiles() {
            let bytes = try withPath("read", file) { () throws(Errno) in
                try layout.folder.readFile(file, limit: FileLimits.finishedTasksFile)
            }
            for line in bytes.split(separator: 0x0A) where line.count > needle.count {
                guard line.withUnsafeBytes({ cortex_memmem($0.baseAddress, $0.count, needle, needle.count) != nil }) else { continue }
                if let entry = try? TaskEntry(json: JSONValue.parse(line)), entry.id == id { return entry }
            }
        }
        return nil
    }

    /// Every finished task (done, dead, cancelled), oldest first, each once.
    public func finishedTasks() throws(CortexError) -> [TaskEntry] {
        var byID: [String: TaskEntry] = [:]
        // Oldest file first, so a task that finished again after a retry is listed as it ended last.
        for file in try compactedTaskFiles().reversed() {
            let bytes = try withPath("read", file) { () throws(Errno) in
                try layout.folder.readFile(file, limit: FileLimits.finishedTasksFile)
            }
            for line in bytes.split(separator: 0x0A) {
                if let entry = try? TaskEntry(json: JSONValue.parse(line)) { byID[entry.id] = entry }
            }
        }
        for entry in state.tasks.finished { byID[entry.id] = entry }
        return byID.values.sorted { $0.number < $1.number }
    }

    private func compactedTaskFiles() throws(CortexError) -> [String] {
        guard persistsFiles else { return [] }
        let folder = layout.finishedTasks
        guard try withPath("stat", folder, { () throws(Errno) in try layout.folder.status(folder) }) != nil else { return [] }
        let names = try withPath("list", folder) { () throws(Errno) in try layout.folder.entries(folder) }
        return names.filter { $0.hasSuffix(".jsonl") && !$0.hasPrefix(".") }.sorted().reversed().map { folder + "/" + $0 }
    }
}
