/// What the fold decided for one record. A writer learns its outcome by folding up to its own
/// record; any other process folding the same prefix reaches the same outcome (invariant 4).
public enum Outcome: Equatable, Sendable {
    /// The change took effect (set, quota, reset).
    case applied
    /// An allocation was granted under this id.
    case granted(allocation: String)
    /// An allocation was released: `spent` tokens counted as spent, `returned` went back to the pool.
    case released(allocation: String, spent: Int64, returned: Int64)
    /// A task was created under this id, or (`existing`) its idempotency key already named it.
    case created(task: String, existing: Bool)
    /// A task was claimed; `claim` is the fencing token its holder must present.
    case claimed(task: String, claim: Int64)
    /// A task was completed by the holder of its current token.
    case completed(task: String)
    /// An attempt failed and the task will be claimable again at `retryAtMilliseconds`.
    case retrying(task: String, attempt: Int64, retryAtMilliseconds: Int64)
    /// The task failed for the last time (or without retry) and is dead-lettered.
    case deadLettered(task: String)
    /// The task was cancelled.
    case cancelled(task: String)
    /// A dead task is pending again, with fresh attempts.
    case retried(task: String)
    /// A lost worker's tasks went back to the queue (or died at their last attempt).
    case requeued(tasks: [String])
    /// A worker was granted its place (and `allocation`, if it asked for tokens) and starts now.
    case spawned(worker: String, allocation: String?)
    /// A spawn is not feasible yet and waits in the spawn queue.
    case spawnQueued(worker: String, reason: String)
    /// A supervisor took charge of a worker.
    case supervising(worker: String)
    /// A worker's process started.
    case workerStarted(worker: String)
    /// A worker's process ended; `restarting` when its policy starts it again.
    case workerExited(worker: String, restarting: Bool)
    /// A worker is draining (or left the spawn queue).
    case stopping(worker: String)
    /// Queued workers started because they fit now.
    case promoted(workers: [String])
    /// A normal "no" (budget exceeded, quota exceeded, already released), with the reason.
    case refused(String)
    /// The record's payload is malformed or names something that does not exist; nothing changed.
    case rejected(String)
    /// The record's kind is not one this version folds (a newer writer); nothing changed.
    case ignored

    /// False for refusals, rejections and ignored records, which leave the state as it was.
    public var changesState: Bool {
        switch self {
        case .refused, .rejected, .ignored: false
        case .created(_, let existing): !existing
        case .promoted(let workers): !workers.isEmpty
        default: true
        }
    }

    /// The outcome as JSON: `{"outcome": "granted", "allocation": "alloc-1.244"}`.
    public var json: JSONValue {
        switch self {
        case .applied: .object(["outcome": "applied"])
        case .granted(let allocation): .object(["allocation": .string(allocation), "outcome": "granted"])
        case .released(let allocation, let spent, let returned):
            .object([
                "allocation": .string(allocation), "outcome": "released", "returned": .int(returned), "spent": .int(spent),
            ])
        case .created(let task, let existing):
            .object(["existing": .bool(existing), "outcome": "created", "task": .string(task)])
        case .claimed(let task, let claim): .object(["claim": .int(claim), "outcome": "claimed", "task": .string(task)])
        case .completed(let task): .object(["outcome": "completed", "task": .string(task)])
        case .retrying(let task, let attempt, let retryAt):
            .object([
                "attempt": .int(attempt), "outcome": "retrying", "retry_at": .string(ISOTime.format(milliseconds: retryAt)),
                "retry_at_ms": .int(retryAt), "task": .string(task),
            ])
        case .deadLettered(let task): .object(["outcome": "dead", "task": .string(task)])
        case .cancelled(let task): .object(["outcome": "cancelled", "task": .string(task)])
        case .retried(let task): .object(["outcome": "retried", "task": .string(task)])
        case .requeued(let tasks): .object(["outcome": "requeued", "tasks": .array(tasks.map { .string($0) })])
        case .spawned(let worker, let allocation):
            .object(["allocation": .optional(allocation), "outcome": "spawned", "worker": .string(worker)])
        case .spawnQueued(let worker, let reason):
            .object(["outcome": "queued", "reason": .string(reason), "worker": .string(worker)])
        case .supervising(let worker): .object(["outcome": "supervising", "worker": .string(worker)])
        case .workerStarted(let worker): .object(["outcome": "started", "worker": .string(worker)])
        case .workerExited(let worker, let restarting):
            .object(["outcome": "exited", "restarting": .bool(restarting), "worker": .string(worker)])
        case .stopping(let worker): .object(["outcome": "stopping", "worker": .string(worker)])
        case .promoted(let workers): .object(["outcome": "promoted", "workers": .array(workers.map { .string($0) })])
        case .refused(let reason): .object(["outcome": "refused", "reason": .string(reason)])
        case .rejected(let reason): .object(["outcome": "rejected", "reason": .string(reason)])
        case .ignored: .object(["outcome": "ignored"])
        }
    }
}
