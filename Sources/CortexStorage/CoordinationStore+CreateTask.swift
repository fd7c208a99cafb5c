import CortexCore

extension CoordinationStore {
    /// Creates task `spec` (`cortex-task create`), with `context` as its context file when given:
    /// written privately under `context/` (durably) before the record names it, and over etcd
    /// stored for every host first (docs/decisions/045). A task key already known answers with
    /// the existing task and appends nothing; a create that turns out to repeat a key removes
    /// the context file it wrote.
    /// - Returns: the task's id, and the record's submission (nil when a known key answered
    ///   without a record).
    /// - Throws: what the fold refused or rejected, as `refused` or `badInput`.
    public func createTask(_ spec: TaskSpec, context: [UInt8]?) throws(CortexError) -> (task: String, submission: Submission?) {
        var spec = spec
        if let key = spec.key, let existing = state.tasks.key(key) {
            // Known key: the same id, nothing appended (keys are never reassigned while kept).
            return (existing.task, nil)
        }
        var contextPath: String?
        if let context {
            let name = "context/ctx-\(Record.newID().dropFirst()).txt"
            try AtomicFile.replace(name, in: layout.folder, with: context, durability: .powerLoss, mode: permissions.file(.private))
            contextPath = name
            spec.context = name
            // Over etcd, stored for every host before the record names it (docs/decisions/045).
            do { try shareArtifact(name, bytes: context) } catch {
                layout.folder.unlink(name)
                throw error
            }
        }
        let submission = try submit(.taskCreate(spec))
        publishAfterRecording()
        guard case .created(let task, let existing) = submission.outcome else {
            switch submission.outcome {
            case .refused(let reason): throw .refused(reason)
            case .rejected(let reason): throw .badInput(reason)
            default: throw .corrupt("unexpected outcome \(submission.outcome.json.jsonText)")
            }
        }
        if existing, let contextPath {
            layout.folder.unlink(contextPath)
            unshareArtifact(contextPath)
        }
        return (task, submission)
    }
}
