/// The waiting queue at a glance: how many tasks wait at each priority and which has waited
/// longest. Reads only the head of each snapshot line (number, priority) and decodes one task.
public struct QueueSummary: Equatable, Sendable {
    /// Waiting (pending or failed) tasks per priority.
    public var waitingByPriority: [Priority: Int64] = [:]
    /// The waiting task created first, if any.
    public var oldest: TaskEntry?

    /// The summary of `tasks`' queue.
    public init(_ tasks: TaskState) {
        var oldestNumber = Int64.max
        var oldestItem: TaskState.WaitingItem?
        let priorities = Priority.allCases
        tasks.forEachWaitingItem { item in
            let number: Int64
            let priority: Priority?
            switch item {
            case .live(let entry):
                number = entry.number
                priority = entry.spec.priority
            case .line(let line):
                guard let (lineNumber, rank) = SnapshotTasks.queuePlace(line) else { return true }
                number = lineNumber
                priority = priorities.first { $0.rank == rank }
            }
            if let priority { waitingByPriority[priority, default: 0] += 1 }
            if number < oldestNumber {
                oldestNumber = number
                oldestItem = item
            }
            return true
        }
        switch oldestItem {
        case .live(let entry): oldest = entry
        case .line(let line): oldest = SnapshotTasks.decodeTask(line)
        case nil: oldest = nil
        }
    }

    /// Tasks waiting in all.
    public var waiting: Int64 { waitingByPriority.values.reduce(0, +) }
}
