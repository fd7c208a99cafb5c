/// What a claimer offers.
public struct TaskClaim: Equatable, Sendable {
    /// The claiming worker.
    public var worker: String
    /// Task types it takes; empty means any.
    public var types: [String]
    /// Capabilities it has; a task's `requires` must all be among them.
    public var capabilities: [String]
    /// The claimer's host where the journal is shared by hosts (decision 037): only that host's
    /// reaper judges the claimer by its heartbeat file, and other hosts' reapers by its host's
    /// liveness. Nil on a folder of files.
    public var host: String?

    /// A claim.
    public init(worker: String, types: [String] = [], capabilities: [String] = [], host: String? = nil) {
        self.host = host
        self.worker = worker
        self.types = types
        self.capabilities = capabilities
    }
}

/// The task queue's rules (docs/design.md, "The reducer": Claims, Loss). Pure: every time comes
/// from the record being folded.
enum TaskRules {
    /// How long an idempotency key still returns its task after the task finished.
    static let keyRetentionMilliseconds: Int64 = 86_400_000
    /// The longest retry backoff.
    static let maximumBackoffMilliseconds: Int64 = 300_000

    /// Creates the task `task-` and `position` (the create record's place in the journal), or
    /// names the task its idempotency key already names.
    static func create(_ spec: TaskSpec, at time: Int64, _ position: JournalPosition, in tasks: inout TaskState) -> Outcome {
        if let key = spec.key, let existing = tasks.key(key) { return .created(task: existing.task, existing: true) }
        guard !spec.type.isEmpty else { return .rejected("a task needs a type") }
        guard spec.maxAttempts >= 1 else { return .rejected("max attempts must be at least 1") }
        tasks.created += 1
        let entry = TaskEntry(
            id: position.id(.task), number: tasks.created, spec: spec, status: .pending, createdMilliseconds: time)
        tasks.store(entry, replacing: nil)
        if let key = spec.key { tasks.setKey(key, TaskState.KeyEntry(task: entry.id)) }
        if tasks.created % 1024 == 0 { tasks.pruneKeys(before: time.saturatingSubtract(keyRetentionMilliseconds)) }
        return .created(task: entry.id, existing: false)
    }

    /// The first claimable task in (priority, age) order goes to the first claim that folds,
    /// passing over the tasks of tenants `quotas` hold back.
    static func claim(_ claim: TaskClaim, at time: Int64, quotas: ClaimQuotas, in tasks: inout TaskState) -> Outcome {
        let look = tasks.claimLook(by: claim, at: time, quotas: quotas)
        guard let waiting = look.task else { return .refused(look.heldBy ?? "nothing to claim") }
        var entry = waiting
        entry.status = .running
        entry.attempt += 1
        entry.worker = claim.worker
        entry.host = claim.host
        entry.claimedMilliseconds = time
        entry.notBeforeMilliseconds = nil
        tasks.store(entry, replacing: waiting)
        return .claimed(task: entry.id, claim: entry.attempt)
    }

    /// True when `claim` may take `task` at `time`: waiting, of a wanted type, every required
    /// capability offered, and past any retry backoff.
    static func isClaimable(_ task: TaskEntry, by claim: TaskClaim, at time: Int64) -> Bool {
        guard task.status == .pending || task.status == .failed else { return false }
        if !claim.types.isEmpty && !claim.types.contains(task.spec.type) { return false }
        if let notBefore = task.notBeforeMilliseconds, notBefore > time { return false }
        return task.spec.requires.allSatisfy { claim.capabilities.contains($0) }
    }

    static func complete(
        _ id: String, claim: Int64, result: String?, tokensUsed: Int64?, at time: Int64, _ position: JournalPosition,
        in tasks: inout TaskState
    ) -> Outcome {
        let entry: TaskEntry
        switch lease(id, claim: claim, before: position, in: tasks) {
        case .failure(let refusal): return refusal.outcome
        case .success(let held): entry = held
        }
        var done = entry
        done.status = .done
        done.result = result
        done.tokensUsed = tokensUsed
        finish(done, replacing: entry, at: time, in: &tasks)
        return .completed(task: id)
    }

    static func fail(
        _ id: String, claim: Int64, error: String?, retry: Bool, at time: Int64, _ position: JournalPosition,
        in tasks: inout TaskState
    ) -> Outcome {
        switch lease(id, claim: claim, before: position, in: tasks) {
        case .failure(let refusal): return refusal.outcome
        case .success(let entry): return failAttempt(entry, error: error, retry: retry, at: time, in: &tasks)
        }
    }

    static func cancel(_ id: String, at time: Int64, _ position: JournalPosition, in tasks: inout TaskState) -> Outcome {
        guard let entry = tasks.activeTask(id) else { return missing(id, before: position, in: tasks) }
        var cancelled = entry
        cancelled.status = .cancelled
        cancelled.worker = nil
        cancelled.host = nil
        finish(cancelled, replacing: entry, at: time, in: &tasks)
        return .cancelled(task: id)
    }

    /// Brings the dead task `id` back as pending under its own id, with fresh attempts, from the
    /// spec and creation number its record carries. Refused when the task is active, or when the
    /// fold still holds its finished entry and that entry is not dead; rejected when the id was
    /// never issued before this record.
    static func retry(_ id: String, number: Int64, spec: TaskSpec, at time: Int64, _ position: JournalPosition, in tasks: inout TaskState)
        -> Outcome
    {
        if let active = tasks.activeTask(id) { return .refused("\(id) is \(active.status.rawValue), not dead") }
        guard IssuedID.issued(id, .task, before: position, counted: tasks.created) else { return .rejected("no task \(id)") }
        guard !spec.type.isEmpty, spec.maxAttempts >= 1, number >= 1, number <= tasks.created else {
            return .rejected("task.retry: invalid spec or number for \(id)")
        }
        if let index = tasks.finished.lastIndex(where: { $0.id == id }) {
            guard tasks.finished[index].status == .dead else {
                return .refused("\(id) is \(tasks.finished[index].status.rawValue), not dead")
            }
            tasks.finished.remove(at: index)
        }
        // The dead count drops whether the entry was still in the outbox or already compacted.
        if let dead = tasks.finishedCounts[.dead], dead > 0 { tasks.finishedCounts[.dead] = dead - 1 }
        let entry = TaskEntry(id: id, number: number, spec: spec, status: .pending, createdMilliseconds: time)
        tasks.store(entry, replacing: nil)
        if let key = spec.key, let named = tasks.key(key), named.task == id { tasks.setKey(key, TaskState.KeyEntry(task: id)) }
        return .retried(task: id)
    }

    /// The reaper saw `worker` gone: its running tasks go back to the queue (or die at their
    /// last attempt), exactly as if each had failed.
    /// Gives back the tasks `worker` holds; with `host`, only those it claimed on that host (one
    /// claimer id may be used on several hosts).
    static func workerLost(_ worker: String, host: String? = nil, reason: String, at time: Int64, in tasks: inout TaskState)
        -> Outcome
    {
        let held = tasks.running.filter { $0.worker == worker && (host == nil || $0.host == host) }.sorted { $0.number < $1.number }
        for entry in held {
            _ = failAttempt(entry, error: "worker \(worker) lost: \(reason)", retry: true, at: time, in: &tasks)
        }
        return .requeued(tasks: held.map(\.id))
    }

    private static func failAttempt(_ entry: TaskEntry, error: String?, retry: Bool, at time: Int64, in tasks: inout TaskState)
        -> Outcome
    {
        var failed = entry
        failed.lastError = error
        failed.worker = nil
        failed.host = nil
        if retry && entry.attempt < entry.spec.maxAttempts {
            let exponent = min(entry.attempt - 1, 20)
            // Capped before it can overflow: a backoff of years doubled 20 times exceeds Int64.
            let doubled = entry.spec.backoffMilliseconds.saturatingMultiply(Int64(1) << max(0, exponent))
            let backoff = min(max(0, doubled), maximumBackoffMilliseconds)
            failed.status = .failed
            failed.notBeforeMilliseconds = time.saturatingAdd(backoff)
            tasks.store(failed, replacing: entry)
            return .retrying(task: entry.id, attempt: entry.attempt, retryAtMilliseconds: time.saturatingAdd(backoff))
        }
        failed.status = .dead
        finish(failed, replacing: entry, at: time, in: &tasks)
        return .deadLettered(task: entry.id)
    }

    /// Why a token does not hold a task, as the outcome to report.
    struct Refusal: Error {
        var outcome: Outcome
    }

    /// The running task `id` if `claim` is its current fencing token (for the record at `position`).
    private static func lease(_ id: String, claim: Int64, before position: JournalPosition, in tasks: TaskState)
        -> Result<TaskEntry, Refusal>
    {
        guard let entry = tasks.activeTask(id) else {
            return .failure(Refusal(outcome: missing(id, before: position, in: tasks)))
        }
        guard entry.status == .running, entry.attempt == claim else {
            let now = entry.status == .running ? "is held by claim \(entry.attempt)" : "is \(entry.status.rawValue)"
            return .failure(Refusal(outcome: .refused("lease lost: \(id) \(now), not claim \(claim)")))
        }
        return .success(entry)
    }

    /// The outcome for a task that is not active, for the record at `position`: finished (a
    /// normal "no") when its id was issued before that record, otherwise never created.
    private static func missing(_ id: String, before position: JournalPosition, in tasks: TaskState) -> Outcome {
        if IssuedID.issued(id, .task, before: position, counted: tasks.created) {
            return .refused("\(id) has already finished")
        }
        return .rejected("no task \(id)")
    }

    /// Moves `entry` (the new state of the active task `previous`) to the finished outbox.
    private static func finish(_ entry: TaskEntry, replacing previous: TaskEntry, at time: Int64, in tasks: inout TaskState) {
        var entry = entry
        entry.finishedMilliseconds = time
        tasks.remove(previous)
        tasks.finished.append(entry)
        tasks.finishedCounts[entry.status, default: 0] += 1
        if let key = entry.spec.key, var named = tasks.key(key), named.task == entry.id {
            named.finishedMilliseconds = time
            tasks.setKey(key, named)
        }
    }
}
