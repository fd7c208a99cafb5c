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
    /// `task-` and the position of the record that created it: `task-3.1048576`.
    public var id: String
    /// Its creation order, counted by the fold: FIFO within a priority. Unlike the id, only
    /// its order matters, so a skipped record may change it without harm.
    public var number: Int64
    /// What was asked for.
    public var spec: TaskSpec
    /// Where it is.
    public var status: TaskStatus
    /// Claims so far; the current claim's fencing token is this number.
    public var attempt: Int64 = 0
    /// The worker holding the current claim (while running).
    public var worker: String?
    /// That worker's host, when its claim named one (decision 037).
    public var host: String?
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
///
/// Waiting tasks and idempotency keys that came from a snapshot stay in its bytes
/// (`SnapshotTasks`) and are decoded only when a call reaches them: a claim reads the head of
/// the queue, a create looks one key up, so neither pays for the other 10,000 waiting tasks
/// (docs/decisions/011). Everything that changed since the snapshot lives in the dictionaries
/// below, which take precedence.
public struct TaskState: Sendable {
    /// How many task records have been folded: the version of `task-queue.json`.
    public var version: Int64 = 0
    /// Running tasks, and waiting tasks created or touched since the snapshot, by id.
    var live: [String: TaskEntry] = [:]
    /// Tasks created so far (it numbers their claim order; ids are positions, see `TaskEntry.id`).
    public var created: Int64 = 0
    /// Finished since the last compaction, in the order they finished.
    public var finished: [TaskEntry] = []
    /// How many tasks ever reached each terminal status.
    public var finishedCounts: [TaskStatus: Int64] = [:]
    /// How many pending, failed and running tasks there are.
    public private(set) var activeCounts: [TaskStatus: Int64] = [:]
    /// Idempotency keys changed since the snapshot (nil: forgotten).
    var changedKeys: [String: KeyEntry?] = [:]
    /// Claim order of the waiting tasks in `live`: (priority, number).
    private(set) var liveQueue: [QueueSlot] = []
    /// What the snapshot held: waiting tasks in claim order and keys sorted, as lines.
    var snapshot = SnapshotTasks()
    /// Numbers of the snapshot's waiting tasks that left its queue since (claimed, cancelled).
    private(set) var takenFromSnapshot: Set<Int64> = []
    /// Where the snapshot's first waiting task not yet taken starts (claims take from the head,
    /// so walks skip the taken run at once instead of stepping over it line by line).
    private var snapshotHead: Int?

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

    // MARK: Reading

    /// The pending, failed or running task `id`, or nil when it is not active.
    public func activeTask(_ id: String) -> TaskEntry? {
        if let entry = live[id] { return entry }
        guard IssuedID(id, .task) != nil, let entry = snapshot.waitingTask(id), !takenFromSnapshot.contains(entry.number) else {
            return nil
        }
        return entry
    }

    /// Which of `ids` name an active task (`activeTask(_:) != nil` for each), in one walk of the
    /// snapshot's waiting lines rather than one scan of them per id (a list of thousands of
    /// finished tasks beside 100,000 waiting ones).
    public func activeIDs(among ids: Set<String>) -> Set<String> {
        var found = ids.filter { live[$0] != nil }
        guard found.count < ids.count else { return found }
        snapshot.forEachWaitingLine(from: snapshotHead) { number, _, line in
            if !takenFromSnapshot.contains(number), let entry = SnapshotTasks.decodeTask(line), ids.contains(entry.id),
                IssuedID(entry.id, .task) != nil
            {
                found.insert(entry.id)
            }
            return found.count < ids.count
        }
        return found
    }

    /// The task an idempotency key names, if the key is still remembered.
    public func key(_ key: String) -> KeyEntry? {
        if let changed = changedKeys[key] { return changed }
        return snapshot.key(key)
    }

    /// Calls `body` with waiting (pending and failed) tasks in claim order until it returns false.
    /// Reads only as much of the snapshot as it walks.
    public func forEachWaiting(_ body: (TaskEntry) -> Bool) {
        forEachWaitingItem { item in
            switch item {
            case .live(let entry): return body(entry)
            case .line(let line):
                // Decoded only here, when the walk reaches it.
                guard let entry = SnapshotTasks.decodeTask(line) else { return true }
                return body(entry)
            }
        }
    }

    /// A waiting task as the walk in claim order meets it: decoded (created or touched since the
    /// snapshot), or still a line of the snapshot.
    enum WaitingItem {
        case live(TaskEntry)
        case line(UnsafeRawBufferPointer)
    }

    /// Walks the waiting tasks in claim order until `body` returns false: the snapshot's lines
    /// not taken since, merged by (priority, number) with the live queue. The one place that
    /// knows the merge (claims, views and snapshot writing all go through it).
    func forEachWaitingItem(_ body: (WaitingItem) -> Bool) {
        var liveIndex = 0
        /// Hands `body` the live tasks that come before `place` (all that are left when nil);
        /// false when `body` asked to stop.
        func liveTasks(before place: QueueSlot?) -> Bool {
            while liveIndex < liveQueue.count, place.map({ liveQueue[liveIndex] < $0 }) ?? true {
                let slot = liveQueue[liveIndex]
                liveIndex += 1
                if let entry = live[slot.task], !body(.live(entry)) { return false }
            }
            return true
        }
        var stopped = false
        snapshot.forEachWaitingLine(from: snapshotHead) { number, rank, line in
            if takenFromSnapshot.contains(number) { return true }
            stopped = !liveTasks(before: QueueSlot(rank: rank, number: number, task: "")) || !body(.line(line))
            return !stopped
        }
        if !stopped { _ = liveTasks(before: nil) }
    }

    /// The first `limit` waiting tasks in claim order.
    public func waiting(limit: Int = Int.max) -> [TaskEntry] {
        var result: [TaskEntry] = []
        guard limit > 0 else { return result }
        forEachWaiting { entry in
            result.append(entry)
            return result.count < limit
        }
        return result
    }

    /// Running tasks by claim time.
    public var running: [TaskEntry] {
        live.values.filter { $0.status == .running }.sorted {
            ($0.claimedMilliseconds ?? 0, $0.number) < ($1.claimedMilliseconds ?? 0, $1.number)
        }
    }

    /// Tasks in `status`, active ones in claim order (running ones by claim time); finished ones
    /// only since the last compaction (the store's `finishedTasks()` has them all).
    public func tasks(in status: TaskStatus) -> [TaskEntry] {
        var tasks: [TaskEntry] = []
        forEachTask(in: status) { tasks.append($0) }
        return tasks
    }

    /// Calls `body` with each task in `status`, in `tasks(in:)`'s order, decoding waiting tasks
    /// from the snapshot one at a time (a list of 100,000 never holds them all).
    public func forEachTask(in status: TaskStatus, _ body: (TaskEntry) -> Void) {
        switch status {
        case .pending, .failed:
            forEachWaiting { entry in
                if entry.status == status { body(entry) }
                return true
            }
        case .running: running.forEach(body)
        case .done, .dead, .cancelled: finished.lazy.filter { $0.status == status }.forEach(body)
        }
    }

    /// The task a claim folded at `time` would get, if any, passing over the tasks `quotas`
    /// hold back.
    public func firstClaimable(by claim: TaskClaim, at time: Int64, quotas: ClaimQuotas = .none) -> TaskEntry? {
        claimLook(by: claim, at: time, quotas: quotas).task
    }

    /// What a claim folded at `time` would find: the task it would get, and the quota that held
    /// back the first task it could otherwise have taken (nil when none did).
    public func claimLook(by claim: TaskClaim, at time: Int64, quotas: ClaimQuotas) -> (task: TaskEntry?, heldBy: String?) {
        var found: TaskEntry?
        var heldBy: String?
        forEachWaiting { entry in
            guard TaskRules.isClaimable(entry, by: claim, at: time) else { return true }
            if !quotas.isEmpty, let reason = quotas.refusal(for: entry) {
                if heldBy == nil { heldBy = reason }
                return true
            }
            found = entry
            return false
        }
        return (found, heldBy)
    }

    /// How many tasks of each of `tenants` are running, on every host.
    public func runningCounts(ofTenants tenants: Set<String>) -> [String: Int64] {
        var counts: [String: Int64] = [:]
        for entry in live.values where entry.status == .running {
            if let tenant = entry.spec.tenant, tenants.contains(tenant) { counts[tenant, default: 0] += 1 }
        }
        return counts
    }

    /// The earliest time after `time` at which a task waiting out its backoff becomes claimable
    /// by `claim` (so a waiting claimer knows when to look again without a journal change).
    public func nextRetryTime(for claim: TaskClaim, after time: Int64) -> Int64? {
        var earliest: Int64?
        forEachWaiting { entry in
            if let notBefore = entry.notBeforeMilliseconds, notBefore > time, TaskRules.isClaimable(entry, by: claim, at: notBefore) {
                earliest = min(earliest ?? notBefore, notBefore)
            }
            return true
        }
        return earliest
    }

    /// How many tasks are in each status now.
    public var counts: [TaskStatus: Int64] {
        finishedCounts.merging(activeCounts, uniquingKeysWith: +).filter { $0.value != 0 }
    }

    /// Every remembered idempotency key (for snapshots and tests: reads them all).
    public var allKeys: [String: KeyEntry] {
        var keys = snapshot.allKeys()
        for (key, entry) in changedKeys { keys[key] = entry }
        return keys
    }

    // MARK: Changing (TaskRules only)

    /// Stores `entry` as the active task it now is, in place of `previous` (the active entry it
    /// replaces, as `activeTask` returned it; nil for a new task), keeping counts and claim order right.
    mutating func store(_ entry: TaskEntry, replacing previous: TaskEntry?) {
        if let previous { remove(previous) }
        live[entry.id] = entry
        activeCounts[entry.status, default: 0] += 1
        if entry.status == .pending || entry.status == .failed {
            let slot = QueueSlot(rank: entry.spec.priority.rank, number: entry.number, task: entry.id)
            liveQueue.insert(slot, at: insertionIndex(of: slot))
        }
    }

    /// Removes `previous`, an active task as `activeTask` returned it (it finished, or is about
    /// to be stored again).
    mutating func remove(_ previous: TaskEntry) {
        activeCounts[previous.status, default: 0] -= 1
        if live.removeValue(forKey: previous.id) != nil {
            if previous.status == .pending || previous.status == .failed {
                let slot = QueueSlot(rank: previous.spec.priority.rank, number: previous.number, task: previous.id)
                let index = insertionIndex(of: slot)
                if index < liveQueue.count && liveQueue[index] == slot { liveQueue.remove(at: index) }
            }
        } else {
            takenFromSnapshot.insert(previous.number)
            advanceSnapshotHead()
        }
    }

    private mutating func advanceSnapshotHead() {
        var head = snapshotHead ?? snapshot.waiting.start
        let taken = takenFromSnapshot
        snapshot.forEachWaitingLine(from: head) { number, _, line in
            guard taken.contains(number) else { return false }
            head = snapshot.waiting.offset(after: line)
            return true
        }
        snapshotHead = head
    }

    /// Sets or forgets an idempotency key.
    mutating func setKey(_ key: String, _ entry: KeyEntry?) { changedKeys[key] = .some(entry) }

    /// Forgets keys whose task finished before `cutoff` (reads every key: runs once per 1,024 creates).
    mutating func pruneKeys(before cutoff: Int64) {
        for (key, entry) in allKeys where (entry.finishedMilliseconds ?? Int64.max) < cutoff { setKey(key, nil) }
    }

    /// Rebuilds the state from a snapshot's parts: running tasks decoded, waiting tasks and keys
    /// left in their lines.
    init(
        version: Int64, created: Int64, finishedCounts: [TaskStatus: Int64], activeCounts: [TaskStatus: Int64],
        running: [TaskEntry], snapshot: SnapshotTasks
    ) {
        self.version = version
        self.created = created
        self.finishedCounts = finishedCounts
        self.activeCounts = activeCounts
        self.snapshot = snapshot
        for entry in running { live[entry.id] = entry }
    }

    private func insertionIndex(of slot: QueueSlot) -> Int {
        var low = 0
        var high = liveQueue.count
        while low < high {
            let middle = (low + high) / 2
            if liveQueue[middle] < slot { low = middle + 1 } else { high = middle }
        }
        return low
    }
}

extension TaskState: Equatable {
    /// Equal when they hold the same tasks, keys and counters, however they are stored.
    public static func == (lhs: TaskState, rhs: TaskState) -> Bool {
        lhs.version == rhs.version && lhs.created == rhs.created && lhs.finished == rhs.finished
            && lhs.finishedCounts == rhs.finishedCounts && lhs.counts == rhs.counts && lhs.running == rhs.running
            && lhs.waiting() == rhs.waiting() && lhs.allKeys == rhs.allKeys
    }
}
