/// Which records `cortex tail` and `cortex audit show` print: every filter given must match.
public struct RecordFilter: Sendable {
    /// Kinds to keep, by prefix (`task.`, `worker.spawn`); empty keeps every kind.
    public var kinds: [String] = []
    /// Keep only records about this task (named by the record, its outcome or a requeue).
    public var task: String?
    /// Keep only records about this worker (named by the record or its outcome).
    public var worker: String?
    /// Keep only records stamped at or after this time (epoch milliseconds).
    public var sinceMilliseconds: Int64?

    /// A filter that keeps every record.
    public init() {}

    /// Matches on the record alone (what a backwards scan can see): never more than `matches`.
    public func matchesRecord(_ record: Record) -> Bool { matches(record, outcome: nil, requeued: []) }

    /// Matches on the record and, where the fold gave it, its outcome (a claim names its
    /// task only in the outcome) and the tasks a worker record handed back to the queue.
    public func matches(_ record: Record, outcome: Outcome?, requeued: [String]) -> Bool {
        if let since = sinceMilliseconds, record.timeMilliseconds < since { return false }
        if !kinds.isEmpty, !kinds.contains(where: { record.kind.hasPrefix($0) }) { return false }
        let outcomeJSON = outcome?.json
        if let task {
            let data = record.data
            let named =
                data["task"]?.stringValue == task || data["spec"]?["task"]?.stringValue == task
                || outcomeJSON?["task"]?.stringValue == task
                || (outcomeJSON?["tasks"]?.arrayValue ?? []).contains(.string(task)) || requeued.contains(task)
            if !named { return false }
        }
        if let worker {
            let data = record.data
            let named =
                data["worker"]?.stringValue == worker || data["holder"]?.stringValue == worker
                || outcomeJSON?["worker"]?.stringValue == worker
                || (outcomeJSON?["workers"]?.arrayValue ?? []).contains(.string(worker))
            if !named { return false }
        }
        return true
    }
}
