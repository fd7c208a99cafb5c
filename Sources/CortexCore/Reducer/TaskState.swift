/// Where a task is in its life.
public enum TaskStatus: String, CaseIterable, Sendable {
    /// Waiting to be claimed.
    case pending
    /// Claimed by a worker that holds a fencing token.
    case running
    /// Done: completed by the holder of its current token.
    case done
    /// An attempt failed; it is retried (claimable again) once its backoff has passed.
    case failed
    /// Dead-lettered: its last attempt failed, or it failed with no retry.
    case dead
    /// Cancelled before it finished.
    case cancelled

    /// Done, dead or cancelled: nothing changes it any more.
    public var isTerminal: Bool { self == .done || self == .dead || self == .cancelled }

    /// Parses a status name.
    public static func parse(_ text: String) throws(CortexError) -> TaskStatus {
        guard let status = TaskStatus(rawValue: text) else {
            throw .badInput(
                "invalid status '\(Values.printable(text))': use \(TaskStatus.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return status
    }
}

/// What `cortex-task create` asks for.
public struct TaskSpec: Equatable, Sendable {
    /// The kind of work; claimers choose types.
    public var type: String
    /// Free text for people.
    public var description: String?
    /// Claim order: priority, then age.
    public var priority: Priority
    /// Tokens the task expects to need (for budget reservations).
    public var tokens: Int64?
    /// How long an attempt may run before the reaper declares its lease lost.
    public var timeoutMilliseconds: Int64?
    /// Attempts before the task is dead-lettered (≥ 1).
    public var maxAttempts: Int64
    /// Capabilities a claimer must offer (`gpu`, `region=eu`).
    public var requires: [String]
    /// The tenant whose quota its tokens count against.
    public var tenant: String?
    /// Idempotency key: the same key gives the same task id.
    public var key: String?
    /// Path of the context file, relative to the coordination folder.
    public var context: String?
    /// First retry delay; each further retry doubles it (capped at `TaskRules.maximumBackoffMilliseconds`).
    public var backoffMilliseconds: Int64

    /// A task spec with defaults for what is left out.
    public init(
        type: String, description: String? = nil, priority: Priority = .medium, tokens: Int64? = nil,
        timeoutMilliseconds: Int64? = nil, maxAttempts: Int64 = 3, requires: [String] = [], tenant: String? = nil,
        key: String? = nil, context: String? = nil, backoffMilliseconds: Int64 = 1000
    ) {
        self.type = type
        self.description = description
        self.priority = priority
        self.tokens = tokens
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxAttempts = maxAttempts
        self.requires = requires
        self.tenant = tenant
        self.key = key
        self.context = context
        self.backoffMilliseconds = backoffMilliseconds
    }
}

/// One task as the fold knows it.
public struct TaskEntry: Equatable, Sendable {
    /// `task-000042`.
    public var id: String
    /// Its creation order (the number in its id): FIFO within a priority.
    public var number: Int64
    /// What was asked for.
    public var spec: TaskSpec
    /// Where it is.
    public var status: TaskStatus
    /// Claims so far; the current claim's fencing token is this number.
    public var attempt: Int64 = 0
    /// The worker holding the current claim (while running).
    public var worker: String?
    /// When it was created (the create record's time).
    public var createdMilliseconds: Int64
    /// When its current attempt was claimed.
    public var claimedMilliseconds: Int64?
    /// When it reached a terminal status.
    public var finishedMilliseconds: Int64?
    /// Not claimable before this time (a retry's backoff).
    public var notBeforeMilliseconds: Int64?
    /// The last failure's message.
    public var lastError: String?
    /// Path of the result file, relative to the coordination folder.
    public var result: String?
    /// Tokens the worker reported using.
    public var tokensUsed: Int64?
}

/// The task queue as the fold sees it. Only tasks that can still change (pending, failed,
/// running) live here; finished ones move to `finished`, an outbox that a snapshot writer
/// empties into per-task files, so the cost of a claim never grows with finished work.
public struct TaskState: Equatable, Sendable {
    /// How many task records have been folded: the version of `task-queue.json`.
    public var version: Int64 = 0
    /// Pending, failed (awaiting retry) and running tasks by id.
    public var active: [String: TaskEntry] = [:]
    /// Tasks issued so far; ids are `task-` and this number.
    public var created: Int64 = 0
    /// Finished since the last compaction, in the order they finished.
    public var finished: [TaskEntry] = []
    /// How many tasks ever reached each terminal status.
    public var finishedCounts: [TaskStatus: Int64] = [:]
    /// Idempotency keys: the task each names, and when that task finished (keys of finished
    /// tasks are forgotten `TaskRules.keyRetentionMilliseconds` later).
    public var keys: [String: KeyEntry] = [:]
    /// Claimable order: pending and failed tasks sorted by (priority, number).
    public private(set) var queue: [QueueSlot] = []

    /// An empty queue.
    public init() {}

    /// An idempotency key's task.
    public struct KeyEntry: Equatable, Sendable {
        /// The task the key names.
        public var task: String
        /// When that task finished, if it has.
        public var finishedMilliseconds: Int64?
    }

    /// A task's place in claim order.
    public struct QueueSlot: Equatable, Sendable, Comparable {
        /// The priority's rank (smaller first).
        public var rank: Int
        /// The task's creation number (smaller first within a rank).
        public var number: Int64
        /// The task id.
        public var task: String

        public static func < (lhs: QueueSlot, rhs: QueueSlot) -> Bool { (lhs.rank, lhs.number) < (rhs.rank, rhs.number) }
    }

    /// The id of the `number`th task: `task-000042`.
    public static func taskID(_ number: Int64) -> String { SequentialID.format(prefix: "task-", number) }

    mutating func enqueue(_ task: TaskEntry) {
        let slot = QueueSlot(rank: task.spec.priority.rank, number: task.number, task: task.id)
        queue.insert(slot, at: insertionIndex(of: slot))
    }

    mutating func dequeue(_ task: TaskEntry) {
        let slot = QueueSlot(rank: task.spec.priority.rank, number: task.number, task: task.id)
        let index = insertionIndex(of: slot)
        if index < queue.count && queue[index] == slot { queue.remove(at: index) }
    }

    /// Rebuilds the claim order from `active` (after loading a snapshot).
    mutating func rebuildQueue() {
        queue = active.values.filter { $0.status == .pending || $0.status == .failed }
            .map { QueueSlot(rank: $0.spec.priority.rank, number: $0.number, task: $0.id) }.sorted()
    }

    private func insertionIndex(of slot: QueueSlot) -> Int {
        var low = 0
        var high = queue.count
        while low < high {
            let middle = (low + high) / 2
            if queue[middle] < slot { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Tasks in `status`, active ones in claim order (running ones by claim time).
    public func tasks(in status: TaskStatus) -> [TaskEntry] {
        switch status {
        case .pending, .failed: return queue.compactMap { active[$0.task] }.filter { $0.status == status }
        case .running:
            return active.values.filter { $0.status == .running }.sorted {
                ($0.claimedMilliseconds ?? 0, $0.number) < ($1.claimedMilliseconds ?? 0, $1.number)
            }
        case .done, .dead, .cancelled: return finished.filter { $0.status == status }
        }
    }

    /// The task a claim folded at `time` would get, if any.
    public func firstClaimable(by claim: TaskClaim, at time: Int64) -> TaskEntry? {
        for slot in queue {
            if let entry = active[slot.task], TaskRules.isClaimable(entry, by: claim, at: time) { return entry }
        }
        return nil
    }

    /// The earliest time after `time` at which a task waiting out its backoff becomes claimable
    /// by `claim` (so a waiting claimer knows when to look again without a journal change).
    public func nextRetryTime(for claim: TaskClaim, after time: Int64) -> Int64? {
        var earliest: Int64?
        for slot in queue {
            guard let entry = active[slot.task], let notBefore = entry.notBeforeMilliseconds, notBefore > time,
                TaskRules.isClaimable(entry, by: claim, at: notBefore)
            else { continue }
            earliest = min(earliest ?? notBefore, notBefore)
        }
        return earliest
    }

    /// How many tasks are in each status now.
    public var counts: [TaskStatus: Int64] {
        var counts = finishedCounts
        for task in active.values { counts[task.status, default: 0] += 1 }
        return counts
    }
}

/// Short readable ids issued in fold order: `task-000042`, `alloc-000007`.
public enum SequentialID {
    /// `prefix` and `number`, zero-padded to six digits.
    public static func format(prefix: String, _ number: Int64) -> String {
        let digits = String(number)
        return prefix + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// The number in an id of that form, or nil.
    public static func number(prefix: String, _ id: String) -> Int64? {
        guard id.hasPrefix(prefix), let number = Int64(id.dropFirst(prefix.count)), number > 0 else { return nil }
        return number
    }
}
