import CortexCore
import CortexStorage

/// Renders records for `cortex tail`.
public enum EventFormatter {
    /// `[10:23:46] task.claim w-1.5042 → task-1.122 claim 1`, or the record as one JSON line
    /// (with the fold's outcome where it is known).
    /// `requeued`: tasks a worker record handed back to the queue (its run ended), shown after the outcome.
    /// `spec`: the worker's spec, so a `worker.exited` limit is named with its value.
    public static func line(
        _ record: Record, outcome: Outcome? = nil, requeued: [String] = [], json: Bool, spec: WorkerSpec? = nil
    ) -> String {
        if json {
            var value = self.json(record, outcome: outcome)
            if !requeued.isEmpty, case .object(var members) = value {
                members.append(JSONMember("requeued", .array(requeued.map { .string($0) })))
                value = .object(members)
            }
            return value.jsonText
        }
        var text = "[\(ISOTime.clock(milliseconds: record.timeMilliseconds))] \(record.kind)"
        var members = (record.data.objectMembers ?? []).sorted(by: { $0.key < $1.key })
        // The subject first, without its key: the worker, else the task.
        for key in ["worker", "task", "allocation"] {
            if let index = members.firstIndex(where: { $0.key == key }), let value = members[index].value.stringValue {
                text += " " + value
                members.remove(at: index)
                break
            }
        }
        for member in members {
            let value: String
            switch (member.key, member.value) {
            case ("evidence", _), ("supervisor", _), ("context", _): continue
            case ("spec", let spec):
                value =
                    (spec["type"]?.stringValue ?? "?") + " "
                    + (spec["command"]?.arrayValue?.compactMap(\.stringValue).joined(separator: " ") ?? "")
                text += " \(Values.printable(value))"
                continue
            case ("process", let process): value = process["pid"]?.jsonText ?? process.jsonText
            case ("limit", .string(let kind)) where WorkerLimit(rawValue: kind) != nil:
                let reason = spec.map { WorkerLimit(rawValue: kind)!.reason($0) } ?? "\(kind) limit reached"
                value = "\"\(reason)\""
            case (_, .string(let string)): value = string.contains(" ") ? "\"\(Values.printable(string))\"" : Values.printable(string)
            default: value = member.value.jsonText
            }
            text += " \(member.key)=\(value)"
        }
        if let outcome, let summary = summary(outcome) { text += " → " + summary }
        if !requeued.isEmpty { text += (outcome.flatMap(summary) == nil ? " → " : ", ") + "requeued " + requeued.joined(separator: " ") }
        return text
    }

    /// The record as `cortex tail --json` prints it (with the fold's outcome where it is known).
    public static func json(_ record: Record, outcome: Outcome? = nil) -> JSONValue {
        .object([
            "at": .string(ISOTime.format(milliseconds: record.timeMilliseconds)), "at_ms": .int(record.timeMilliseconds),
            "data": record.data, "id": .string(record.id), "kind": .string(record.kind), "outcome": outcome?.json,
        ])
    }

    /// What the fold decided, in a few words (nil when there is nothing to add).
    static func summary(_ outcome: Outcome) -> String? {
        switch outcome {
        case .applied, .ignored, .supervising, .workerStarted: nil
        case .granted(let allocation): allocation
        case .released(_, let spent, let returned): "spent \(spent), returned \(returned)"
        case .created(let task, let existing): existing ? "\(task) (existing)" : task
        case .claimed(let task, let claim): "\(task) claim \(claim)"
        case .completed: "done"
        case .retrying(_, _, let retryAt): "retry at \(ISOTime.clock(milliseconds: retryAt))"
        case .deadLettered: "dead"
        case .cancelled: "cancelled"
        case .retried: "pending again"
        case .requeued(let tasks): tasks.isEmpty ? "no tasks held" : "requeued \(tasks.joined(separator: " "))"
        case .spawned(let worker, _): "\(worker) starting"
        case .spawnQueued(let worker, let reason): "\(worker) queued: \(reason)"
        case .workerExited(_, let restarting): restarting ? "restarting" : "ended"
        case .stopping: "stopping"
        case .promoted(let workers): workers.isEmpty ? nil : "started \(workers.joined(separator: " "))"
        case .refused(let reason): "refused: \(reason)"
        case .rejected(let reason): "rejected: \(reason)"
        }
    }
}
