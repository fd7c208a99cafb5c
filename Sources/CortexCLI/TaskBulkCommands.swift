import CortexCore
import CortexStorage

/// `cortex-task wait`, and the bulk forms of `cancel` and `retry` (docs/decisions/024-wait-and-bulk-tasks.md).
extension TaskTool {
    // MARK: - cancel

    static func cancel(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let type = arguments[Cancel.type]
        let status = arguments[Cancel.status]
        let named = arguments[Cancel.tasks]
        if type != nil && !named.isEmpty { throw .usage("give task ids or --type, not both") }
        if type == nil && named.isEmpty { throw .usage("missing argument <TASK> (or --type)") }
        if status != nil && type == nil { throw .usage("--status goes with --type") }
        let store = try invocation.openStore()
        var ids: [String]
        if let type {
            let active = store.state.tasks.running + store.state.tasks.waiting()
            ids = active.filter { $0.spec.type == type && (status == nil || $0.status == status) }.map(\.id)
        } else {
            ids = unique(named)
        }
        var bulk = BulkResult(command: "cancel")
        for id in ids {
            guard let task = try store.task(id) else {
                bulk.unknown.append(id)
                continue
            }
            if task.status == .cancelled {
                bulk.already.append(id)
                continue
            }
            if task.status.isTerminal {
                bulk.refused.append("\(id) has already finished (\(task.status.rawValue))")
                continue
            }
            let submission = try store.submit(.taskCancel(task: id))
            switch submission.outcome {
            case .cancelled: bulk.changed.append(id)
            case .refused(let reason), .rejected(let reason): bulk.refused.append(reason)
            default: throw unexpected(submission.outcome)
            }
        }
        if !bulk.changed.isEmpty { store.publishAfterRecording() }
        return bulk.report(verb: "cancelled", alreadyWords: "already cancelled")
    }

    // MARK: - retry

    static func retry(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let allDead = arguments[Retry.dead]
        let type = arguments[Retry.type]
        let named = arguments[Retry.tasks]
        if allDead && !named.isEmpty { throw .usage("give task ids or --dead, not both") }
        if !allDead && named.isEmpty { throw .usage("missing argument <TASK> (or --dead)") }
        if type != nil && !allDead { throw .usage("--type goes with --dead") }
        let store = try invocation.openStore()
        var targets: [(String, TaskEntry?)]
        if allDead {
            targets = try store.finishedTasks().filter { entry in
                entry.status == .dead && (type == nil || entry.spec.type == type) && store.state.tasks.activeTask(entry.id) == nil
            }.map { ($0.id, $0) }
        } else {
            targets = []
            for id in unique(named) { targets.append((id, try store.task(id))) }
        }
        var bulk = BulkResult(command: "retry")
        for (id, found) in targets {
            guard let task = found else {
                bulk.unknown.append(id)
                continue
            }
            if task.status == .pending || task.status == .failed {
                bulk.already.append(id)
                continue
            }
            guard task.status == .dead else {
                bulk.refused.append("\(id) is \(task.status.rawValue), not dead")
                continue
            }
            let submission = try store.submit(.taskRetry(task: id, number: task.number, spec: task.spec))
            switch submission.outcome {
            case .retried: bulk.changed.append(id)
            case .refused(let reason), .rejected(let reason): bulk.refused.append(reason)
            default: throw unexpected(submission.outcome)
            }
        }
        if !bulk.changed.isEmpty { store.publishAfterRecording() }
        return bulk.report(verb: "pending again", alreadyWords: "already pending")
    }

    /// What a bulk command did to each task it was given, and the exit code that follows.
    private struct BulkResult {
        var command: String
        var changed: [String] = []
        var already: [String] = []
        var unknown: [String] = []
        var refused: [String] = []

        /// 66 when any id is unknown (one stderr line each), else 1 when any could not be
        /// changed (one stderr line each), else 0.
        func report(verb: String, alreadyWords: String) -> Report {
            let lines = changed.map { "\($0): \(verb)" } + already.map { "\($0): \(alreadyWords)" }
            for id in unknown { Terminal.writeError("cortex-task \(command): no task \(id)") }
            for reason in refused { Terminal.writeError("cortex-task \(command): \(reason)") }
            let code: Int32 = !unknown.isEmpty ? 66 : (!refused.isEmpty ? 1 : 0)
            let strings = { (ids: [String]) in JSONValue.array(ids.map { .string($0) }) }
            return Report(
                exitCode: code, text: lines.joined(separator: "\n"),
                json: .object([
                    "already": strings(already), "changed": strings(changed), "refused": strings(refused), "unknown": strings(unknown),
                ]))
        }
    }

    /// `ids` without repeats, in the order first given.
    private static func unique(_ ids: [String]) -> [String] {
        var result: [String] = []
        for id in ids where !result.contains(id) { result.append(id) }
        return result
    }

    // MARK: - wait

    static func wait(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let all = arguments[Wait.all]
        let type = arguments[Wait.type]
        let named = unique(arguments[Wait.tasks])
        let modes = (all ? 1 : 0) + (type != nil ? 1 : 0) + (named.isEmpty ? 0 : 1)
        guard modes == 1 else { throw .usage("give task ids, --all or --type (one of them)") }
        let timeoutMilliseconds = arguments[Wait.timeout]
        let store = try invocation.openStore()
        var unknown: [String] = []
        for id in named where try store.task(id) == nil { unknown.append(id) }
        if !unknown.isEmpty {
            for id in unknown.dropLast() { Terminal.writeError("cortex-task wait: no task \(id)") }
            throw .notFound("no task \(unknown.last!)")
        }
        let deadline = timeoutMilliseconds.map { POSIX.monotonicNanoseconds() + UInt64(max(0, $0)) * 1_000_000 }
        // Armed before the first look, so a change between the look and the wait still wakes us;
        // caught up once armed, as the waiter hears only appends from its arming on.
        let watcher = try store.makeCaughtUpWaiter()
        var progress = WaitProgress(named: named, type: type, startedMilliseconds: POSIX.wallClockMilliseconds())
        let showsProgress = Terminal.stderrIsTerminal
        var lastLine = ""
        while true {
            try progress.update(from: store)
            if showsProgress {
                let line = progress.line
                if line != lastLine { Terminal.writeErrorRaw("\r\u{1B}[K" + line) }
                lastLine = line
            }
            if progress.isFinished { break }
            var sleepMilliseconds: Int64 = 60_000
            if let deadline {
                let remaining = Int64(deadline) - Int64(POSIX.monotonicNanoseconds())
                guard remaining > 0 else {
                    watcher.disarm()
                    if showsProgress { Terminal.writeErrorRaw("\n") }
                    throw .tryLater(
                        "not finished within \(arguments.text(of: Wait.timeout) ?? ""): \(progress.line.dropFirst("wait: ".count))")
                }
                sleepMilliseconds = min(sleepMilliseconds, remaining / 1_000_000 + 1)
            }
            _ = watcher.wait(timeoutMilliseconds: Int32(sleepMilliseconds))
            try store.catchUp()
        }
        watcher.disarm()
        if showsProgress { Terminal.writeErrorRaw("\n") }
        // Over etcd, the results of the tasks named, fetched to this host (docs/decisions/045).
        for id in named { fetchResult(of: id, store: store) }
        let json = progress.json
        let bad = progress.unsuccessful
        if !bad.isEmpty {
            let list = bad.map { "\($0.id) \($0.status.rawValue)" }.joined(separator: ", ")
            return Report(exitCode: 1, text: "", json: json, diagnostic: "not all done: \(list)")
        }
        return Report(text: "", json: json)
    }

    /// What `wait` knows of the tasks it waits for.
    private struct WaitProgress {
        /// The ids named on the command line (empty with --all or --type).
        let named: [String]
        /// Only tasks of this type (with --type).
        let type: String?
        /// When the wait began (tasks finished since then by --all or --type count).
        let startedMilliseconds: Int64
        /// The last status seen of every task waited for, by id, in first-seen order.
        var statuses: [String: TaskStatus] = [:]
        var order: [String] = []
        /// True when nothing waited for is unfinished.
        var isFinished = false
        /// With --all, the fold's counts of active tasks (the ids are not tracked one by one).
        var activeRunning: Int?
        var activePending: Int?

        init(named: [String], type: String?, startedMilliseconds: Int64) {
            self.named = named
            self.type = type
            self.startedMilliseconds = startedMilliseconds
        }

        private mutating func see(_ id: String, _ status: TaskStatus) {
            if statuses[id] == nil { order.append(id) }
            statuses[id] = status
        }

        /// Reads the state the store has folded.
        mutating func update(from store: CoordinationStore) throws(CortexError) {
            let tasks = store.state.tasks
            if !named.isEmpty {
                for id in named {
                    if let active = tasks.activeTask(id) {
                        see(id, active.status)
                    } else if let known = statuses[id], known.isTerminal {
                        continue  // finished before: already read, no need to look in the files again
                    } else if let entry = try store.task(id) {
                        see(id, entry.status)
                    }
                }
                isFinished = named.allSatisfy { statuses[$0]?.isTerminal ?? false }
                return
            }
            let type = self.type
            func wanted(_ entry: TaskEntry) -> Bool { type == nil || entry.spec.type == type }
            var unfinished = 0
            var activeIDs = Set<String>()
            if type == nil {
                // Every task: the fold's counts, without walking a queue of thousands on each wake.
                let active = tasks.activeCounts
                activeRunning = Int(active[.running] ?? 0)
                activePending = Int((active[.pending] ?? 0) + (active[.failed] ?? 0))
                unfinished = activeRunning! + activePending!
            } else {
                for entry in tasks.running + tasks.waiting() where wanted(entry) {
                    see(entry.id, entry.status)
                    activeIDs.insert(entry.id)
                    unfinished += 1
                }
            }
            // Finished since the wait began (a task created and finished between two looks too).
            for entry in tasks.finished where wanted(entry) && (entry.finishedMilliseconds ?? 0) >= startedMilliseconds {
                see(entry.id, entry.status)
            }
            // Seen active before and gone from the state since: finished, perhaps compacted already.
            for id in order where !activeIDs.contains(id) && !(statuses[id]?.isTerminal ?? true) {
                if let entry = try store.task(id), entry.status.isTerminal { see(id, entry.status) }
            }
            isFinished = unfinished == 0
        }

        /// Tasks waited for that ended dead or cancelled.
        var unsuccessful: [(id: String, status: TaskStatus)] {
            order.compactMap { id in
                guard let status = statuses[id], status == .dead || status == .cancelled else { return nil }
                return (id, status)
            }
        }

        private var counts: (done: Int, running: Int, pending: Int, dead: Int, cancelled: Int) {
            var result = (done: 0, running: 0, pending: 0, dead: 0, cancelled: 0)
            for status in statuses.values {
                switch status {
                case .done: result.done += 1
                case .running: result.running += 1
                case .pending, .failed: result.pending += 1
                case .dead: result.dead += 1
                case .cancelled: result.cancelled += 1
                }
            }
            if let activeRunning, let activePending {
                result.running = activeRunning
                result.pending = activePending
            }
            return result
        }

        /// The one progress line.
        var line: String {
            let counts = counts
            var text = "wait: \(counts.done) done, \(counts.running) running, \(counts.pending) pending, \(counts.dead) dead"
            if counts.cancelled > 0 { text += ", \(counts.cancelled) cancelled" }
            // The rate so far, carried forward: a rough estimate, shown once something has finished.
            let finished = counts.done + counts.dead + counts.cancelled
            let left = counts.running + counts.pending
            let elapsed = POSIX.wallClockMilliseconds() - startedMilliseconds
            if finished > 0, left > 0, elapsed >= 1000 {
                text += " · about \(Wording.duration(elapsed / Int64(finished) * Int64(left))) left"
            }
            return text
        }

        var json: JSONValue {
            let counts = counts
            return .object([
                "counts": .object([
                    "cancelled": .int(Int64(counts.cancelled)), "dead": .int(Int64(counts.dead)), "done": .int(Int64(counts.done)),
                    "pending": .int(Int64(counts.pending)), "running": .int(Int64(counts.running)),
                ]),
                "outcome": isFinished ? (unsuccessful.isEmpty ? "done" : "not_all_done") : "waiting",
                "unsuccessful": .array(unsuccessful.map { .string($0.id) }),
            ])
        }
    }
}
