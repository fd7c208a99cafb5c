/// Where a waiting task stands and when it should start (docs/decisions/014-metrics.md).
public struct WaitEstimate: Equatable, Sendable {
    /// 1 for the task claimed next.
    public var position: Int
    /// Estimated start from the types' median run times (nil without any run-time history).
    public var startMilliseconds: Int64?
    /// The same from the P95 run times: a start this late is unlikely.
    public var lateStartMilliseconds: Int64?
    /// Worker slots the estimate assumed.
    public var slots: Int
}

/// Queue position and estimated start of a waiting task, by list scheduling: `slots` workers
/// (config `max_workers`, or more if more tasks run now) take the queue in claim order; a
/// running task frees its slot at its claim time plus its type's run time (or now, if that is
/// past), each task ahead holds the first slot to free for its type's run time, and the task
/// starts when the next slot frees (not before its retry time). The run time of a type with no
/// history is that of all types together. Pure: state, capacity and now are arguments.
public enum WaitEstimator {
    /// The estimate for waiting task `id`, or nil when it is not waiting.
    public static func estimate(task id: String, in state: CortexState, capacity: Int, nowMilliseconds now: Int64) -> WaitEstimate? {
        var ahead: [TaskEntry] = []
        var target: TaskEntry?
        state.tasks.forEachWaiting { entry in
            if entry.id == id {
                target = entry
                return false
            }
            ahead.append(entry)
            return true
        }
        guard let target else { return nil }
        let running = state.tasks.running
        let slots = max(1, capacity, running.count)
        let types = state.metrics.types
        var all = QuantileSketch()
        for metrics in types.values { all.merge(metrics.runTime) }
        func start(quantile q: Double) -> Int64? {
            let fallback = all.quantile(q)
            func runTime(_ type: String) -> Int64? { types[type]?.runTime.quantile(q) ?? fallback }
            var free: [Int64] = []
            for task in running {
                guard let duration = runTime(task.spec.type) else { return nil }
                free.append(max(now, (task.claimedMilliseconds ?? now).saturatingAdd(duration)))
            }
            free += Array(repeating: now, count: slots - free.count)
            for task in ahead {
                guard let duration = runTime(task.spec.type) else { return nil }
                let index = free.indices.min { free[$0] < free[$1] }!
                free[index] = max(free[index], task.notBeforeMilliseconds ?? now).saturatingAdd(duration)
            }
            return max(free.min() ?? now, target.notBeforeMilliseconds ?? now)
        }
        return WaitEstimate(
            position: ahead.count + 1, startMilliseconds: start(quantile: 0.5), lateStartMilliseconds: start(quantile: 0.95),
            slots: slots)
    }
}
