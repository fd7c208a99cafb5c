import CortexCore
import CortexStorage

/// Wording several commands share: how a duration reads, and what a waiting task is told.
/// Commands call this, never each other.
enum Wording {
    /// `90s`, `5m12s`, `3h04m`, `2d03h` (whole seconds: an age shown twice reads the same).
    static func duration(_ milliseconds: Int64) -> String {
        let seconds = milliseconds / 1000
        if seconds < 60 { return "\(seconds)s" }
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        if seconds < 3600 { return "\(seconds / 60)m\(two(seconds % 60))s" }
        if seconds < 86_400 { return "\(seconds / 3600)h\(two(seconds / 60 % 60))m" }
        return "\(seconds / 86_400)d\(two(seconds / 3600 % 24))h"
    }

    /// Thousandths of a core as cores: `1`, `0.5`, `0.125`.
    static func cores(_ millicores: Int64) -> String {
        guard millicores % 1000 != 0 else { return "\(millicores / 1000)" }
        var fraction = String(millicores % 1000)
        fraction = String(repeating: "0", count: 3 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(millicores / 1000).\(fraction)"
    }

    /// What `cortex-task show` adds for a waiting task: its place and estimated start.
    static func waitingTask(_ task: TaskEntry, store: CoordinationStore, now: Int64) -> (json: JSONValue, text: String)? {
        guard task.status == .pending || task.status == .failed else { return nil }
        // Who can claim it: the claimers seen running a task of its type and the live supervised
        // workers of its type, not `max_workers` nor workers of other types (with none, any
        // time would be made up).
        let running = store.state.tasks.running.filter { $0.spec.type == task.spec.type }.compactMap(\.worker)
        let supervised = store.state.workers.active.filter { $0.spec.type == task.spec.type }.map(\.id)
        let claimers = Set(running).union(supervised).count
        guard claimers > 0 else {
            let json = JSONValue.object(["estimated_start": nil, "live_workers": .int(0)])
            return (
                json,
                "no live worker of type \(task.spec.type) to claim it: it starts once one claims (no estimate without one)"
            )
        }
        let capacity = min(claimers, store.config.maxWorkers)
        guard let estimate = WaitEstimator.estimate(task: task.id, in: store.state, capacity: capacity, nowMilliseconds: now) else {
            return nil
        }
        func at(_ milliseconds: Int64?) -> JSONValue? { milliseconds.map { .string(ISOTime.format(milliseconds: $0)) } }
        let json = JSONValue.object([
            "estimated_start": at(estimate.startMilliseconds), "estimated_start_p95": at(estimate.lateStartMilliseconds),
            "estimated_wait_seconds": .optional(estimate.startMilliseconds.map { max(0, $0 - now) / 1000 }),
            "live_workers": .int(Int64(claimers)), "position": .int(estimate.position), "slots": .int(estimate.slots),
        ])
        var text = "position \(estimate.position) in the queue"
        if let start = estimate.startMilliseconds, let late = estimate.lateStartMilliseconds {
            text +=
                " · starts in about \(duration(max(0, start - now))) (\(ISOTime.format(milliseconds: start))), by \(duration(max(0, late - now))) at P95"
        } else {
            text += " · no run-time history yet to estimate a start"
        }
        return (json, text)
    }
}
