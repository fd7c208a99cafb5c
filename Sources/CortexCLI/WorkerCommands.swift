import CortexCore
import CortexProcesses
import CortexStorage

/// `cortex worker list|show|logs|stop|heartbeat`: supervised workers as a resource (docs/cli.md).
public enum WorkerTool {
    /// The commands, named under `prefix` (`cortex worker`).
    public static func commands(prefix: String) -> [Command] {
        [
            Command(
                CommandSpec(
                    name: "\(prefix) list", abstract: "Workers: queued, starting, running, stopping (--all: the recently ended too).",
                    options: [List.all],
                    examples: ["\(prefix) list", "\(prefix) list --json | jq -r '.workers[] | select(.status==\"running\") | .id'"]),
                body: list),
            Command(
                CommandSpec(
                    name: "\(prefix) show",
                    abstract:
                        "One worker in words: state, command, pool, pid, when it started (local time) and how long ago, restarts, how its last run ended, heartbeat age, logs. --json: the record fields, for scripts.",
                    positionals: [Show.worker],
                    examples: ["\(prefix) show w-1.5042", "\(prefix) show w-1.5042 --json | jq -r .last_exit"]),
                body: show),
            Command(
                CommandSpec(
                    name: "\(prefix) logs",
                    abstract:
                        "Print a worker's stdout (or stderr) as its supervisor keeps it: the head, a line saying what was left out, the tail. -f follows it, across restarts, until the worker ends.",
                    positionals: [Logs.worker], options: [Logs.follow, Logs.stderr, Logs.previous],
                    examples: ["\(prefix) logs w-1.5042", "\(prefix) logs w-1.5042 -f --stderr"]),
                body: logs),
            Command(
                CommandSpec(
                    name: "\(prefix) stop",
                    abstract: "Drain a worker: SIGTERM to it through its supervisor, SIGKILL after its grace; no restart.",
                    positionals: [Stop.worker],
                    examples: [
                        "\(prefix) stop w-1.5042",
                        "for w in $(\(prefix) list --json | jq -r '.workers[].id'); do \(prefix) stop \"$w\"; done",
                    ]),
                body: stop),
            Command(
                CommandSpec(
                    name: "\(prefix) heartbeat", abstract: "Touch a worker's heartbeat file (its mtime is the heartbeat).",
                    positionals: [Heartbeat.worker],
                    examples: ["while sleep 10; do \(prefix) heartbeat \"$CORTEX_WORKER_ID\"; done &"]),
                body: heartbeat),
        ]
    }

    /// `list`'s arguments.
    enum List {
        static let all = Flag("all", "Include the workers that ended recently.")
    }

    /// `show`'s arguments.
    enum Show {
        static let worker = Positional.identifier("WORKER", "The worker id (w-1.5042).", what: "worker id")
    }

    /// `logs`' arguments.
    enum Logs {
        static let worker = Positional.identifier("WORKER", "The worker id.", what: "worker id")
        static let follow = Flag("follow", "Keep printing what it writes until the worker ends.", short: "f")
        static let stderr = Flag("stderr", "Its stderr instead of its stdout.")
        static let previous = Flag("previous", "The log of the run before the last restart (kept as stdout.previous.log).")
    }

    /// `stop`'s arguments.
    enum Stop {
        static let worker = Positional.identifier("WORKER", "The worker id.", what: "worker id")
    }

    /// `heartbeat`'s arguments.
    enum Heartbeat {
        static let worker = Positional.identifier("WORKER", "The worker id (any id a worker calls itself).", what: "worker id")
    }

    static func list(_ invocation: Invocation) throws(CortexError) -> Report {
        let store = try invocation.openStore()
        let workers = store.state.workers
        var entries = workers.all
        if invocation.arguments[List.all] { entries += workers.recent.reversed() }
        let now = POSIX.wallClockMilliseconds()
        let lines = entries.map { worker -> String in
            var line = "\(worker.id)  \(padded(worker.status.rawValue, to: 9))\(worker.spec.type)"
            if let process = worker.process { line += "  pid \(process.pid)" }
            if worker.restarts > 0 { line += "  restarts \(worker.restarts)" }
            if let exit = worker.lastExit { line += "  last \(describe(exit))" }
            if let reason = worker.queuedReason { line += "  (\(reason))" }
            if worker.status.holdsCapacity, let age = store.layout.heartbeatAge(worker.id, nowMilliseconds: now) {
                line += "  heartbeat \(Int(age))s ago"
            }
            return line
        }
        let active = workers.active.count
        let summary = "\(active) of \(store.config.maxWorkers) workers running, \(workers.queue.count) queued"
        return Report(
            text: ([summary] + lines).joined(separator: "\n"),
            json: .object([
                "max_workers": .int(Int64(store.config.maxWorkers)), "queued": .int(Int64(workers.queue.count)),
                "running": .int(Int64(active)), "workers": .array(entries.map { workerJSON($0, store.layout, now) }),
            ]))
    }

    static func show(_ invocation: Invocation) throws(CortexError) -> Report {
        let id = invocation.arguments[Show.worker]
        let store = try invocation.openStore()
        guard let worker = store.state.workers.worker(id) else { throw .notFound("no worker \(id) (or it ended long ago)") }
        let now = POSIX.wallClockMilliseconds()
        let json = workerJSON(worker, store.layout, now)
        return Report(text: describe(worker, store.layout, now: now).joined(separator: "\n"), json: json)
    }

    /// Worker `worker` as a person reads it: one `label  value` line per fact that applies.
    static func describe(_ worker: WorkerEntry, _ layout: CoordinationLayout, now: Int64) -> [String] {
        var rows: [(String, String)] = [("worker", worker.id), ("status", worker.status.rawValue)]
        if let reason = worker.queuedReason, worker.status == .queued { rows.append(("waiting for", reason)) }
        if let reason = worker.lostReason { rows.append(("lost because", reason)) }
        rows.append(("type", worker.spec.type))
        if let pool = worker.spec.pool { rows.append(("pool", pool)) }
        if let host = worker.spec.host { rows.append(("host", host)) }
        rows.append(("command", worker.spec.command.map { Values.printable($0) }.joined(separator: " ")))
        if let task = worker.spec.task { rows.append(("task", task)) }
        var limits: [String] = []
        if let bytes = worker.spec.memoryBytes { limits.append("memory \(WorkerLimit.size(bytes))") }
        if let millicores = worker.spec.cpuMillicores { limits.append("cpu \(Wording.cores(millicores))") }
        if let pids = worker.spec.pids { limits.append("pids \(pids)") }
        if !limits.isEmpty { rows.append(("limits", limits.joined(separator: ", "))) }
        if let process = worker.process { rows.append(("pid", "\(process.pid)")) }
        if let supervisor = worker.supervisor { rows.append(("supervisor pid", "\(supervisor.pid)")) }
        rows.append(("requested", when(worker.requestedMilliseconds, now: now)))
        if let started = worker.startedMilliseconds { rows.append(("started", when(started, now: now))) }
        if let ended = worker.endedMilliseconds { rows.append(("ended", when(ended, now: now))) }
        rows.append(
            (
                "restart",
                worker.spec.restart.rawValue
                    + (worker.restarts > 0 ? ", restarted \(worker.restarts == 1 ? "once" : "\(worker.restarts) times")" : "")
            ))
        if let exit = worker.lastExit {
            rows.append(("last run", exitInWords(exit) + (worker.timedOut ? " (its timeout fired)" : "")))
            if let limit = worker.limitReached { rows.append(("limit", limit.reason(worker.spec))) }
        }
        if let allocation = worker.allocation { rows.append(("tokens", "\(worker.spec.tokens ?? 0) reserved (\(allocation))")) }
        if worker.status.holdsCapacity {
            let age = layout.heartbeatAge(worker.id, nowMilliseconds: now)
            rows.append(("heartbeat", age.map { "\(Int($0))s ago" } ?? "none yet"))
        }
        rows.append(("stdout", layout.worker(worker.id) + "/stdout.log"))
        rows.append(("stderr", layout.worker(worker.id) + "/stderr.log"))
        return rows.map { padded($0.0, to: 16) + $0.1 }
    }

    /// `2026-12-07 04:12:03 (3m05s ago)` in local time.
    static func when(_ milliseconds: Int64, now: Int64) -> String {
        let local = POSIX.localTime(milliseconds: milliseconds)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let date = "\(local.year)-\(two(local.month))-\(two(local.day))"
        let clock = "\(two(local.hour)):\(two(local.minute)):\(two(local.second))"
        return "\(date) \(clock) (\(Wording.duration(max(0, now - milliseconds))) ago)"
    }

    /// `exited with code 3`, `killed by SIGKILL`.
    static func exitInWords(_ exit: TerminationStatus) -> String {
        switch exit {
        case .exited(let code): code == 0 ? "exited successfully" : "exited with code \(code)"
        case .signaled(let signal): "killed by \(signal)"
        }
    }

    /// The most of one log `cortex worker logs` reads: far above the head and tail a supervisor keeps.
    static let logReadLimit = 64 << 20

    static func logs(_ invocation: Invocation) throws(CortexError) -> Report {
        let id = invocation.arguments[Logs.worker]
        let stream = (invocation.arguments[Logs.stderr] ? "stderr" : "stdout") + (invocation.arguments[Logs.previous] ? ".previous" : "")
        if invocation.arguments[Logs.previous], invocation.arguments[Logs.follow] {
            throw .usage("--previous is a finished run's log: it cannot be followed (-f)")
        }
        let store = try invocation.openStore()
        guard let worker = store.state.workers.worker(id) else {
            if IssuedID.issued(id, .worker, before: store.position, counted: store.state.workers.issued),
                let bytes = readLog(store.layout, id, stream)
            {
                return Report(text: String(decoding: bytes, as: UTF8.self), json: .null)
            }
            throw .notFound("no worker \(id) (or it ended long ago)")
        }
        var shown = readLog(store.layout, id, stream) ?? []
        guard invocation.arguments[Logs.follow] else {
            return Report(
                text: String(decoding: shown, as: UTF8.self),
                json: .object(["log": .string(String(decoding: shown, as: UTF8.self)), "worker": .string(id)]))
        }
        Terminal.writeOut(String(decoding: shown, as: UTF8.self))
        var ended = worker.status.isFinal
        var restarts = worker.restarts
        // One store, caught up every 300 ms (a fresh one only when catching up fails, the old one
        // then closed): opening one per poll held a new set of descriptors each time.
        // SIGTERM or SIGINT (Ctrl-C) ends the follow with exit 0.
        var following = store
        while !ended {
            if WorkerSupervision.waitForStop(milliseconds: 300) { break }
            do throws(CortexError) {
                try following.catchUp()
            } catch {
                guard let fresh = try? CoordinationStore.open(root: invocation.root, createIfMissing: false) else { continue }
                following = fresh
            }
            // A worker the state no longer holds ended long ago (only the last ended ones are kept).
            let entry = following.state.workers.worker(id)
            ended = entry?.status.isFinal ?? true
            let restarted = (entry?.restarts ?? restarts) != restarts
            restarts = entry?.restarts ?? restarts
            let now = readLog(store.layout, id, stream) ?? []
            Terminal.writeOut(String(decoding: unseen(now, after: shown, restarted: restarted), as: UTF8.self))
            shown = now
        }
        if ended, let now = readLog(store.layout, id, stream) {
            Terminal.writeOut(String(decoding: unseen(now, after: shown, restarted: false), as: UTF8.self))
        }
        return Report(text: "", json: .null)
    }

    /// The log `stream` of worker `id` through the folder, or nil when it has none.
    static func readLog(_ layout: CoordinationLayout, _ id: String, _ stream: String) -> [UInt8]? {
        try? layout.folder.readFile(layout.worker(id) + "/\(stream).log", limit: logReadLimit)
    }

    /// What `now` holds that was not printed from `before`: the bytes after `before` when the log
    /// only grew, after the last part of `before` found in `now` when the supervisor rewrote it
    /// (head and tail), and all of it, after a line saying so, when a restart began it again.
    /// A restart is known from the worker's record (`restarted`), not guessed from the bytes: a
    /// small `--log-tail` rewrite keeps less than any fixed overlap, so the overlap sought shrinks
    /// (256, 64, then 16 bytes) before the log is taken for new.
    static func unseen(_ now: [UInt8], after before: [UInt8], restarted: Bool) -> [UInt8] {
        if now == before { return [] }
        if now.starts(with: before) { return Array(now[before.count...]) }
        if restarted { return Array("[… log started again by cortex …]\n".utf8) + now }
        for size in [256, 64, 16] where before.count >= size && now.count >= size {
            let overlap = before.suffix(size)
            var start = now.count - size
            while start >= 0 {
                if now[start..<(start + size)].elementsEqual(overlap) { return Array(now[(start + size)...]) }
                start -= 1
            }
        }
        // A restart whose record is not folded yet, or a cut that kept none of what was shown.
        return Array("[… log started again or cut by cortex …]\n".utf8) + now
    }

    static func stop(_ invocation: Invocation) throws(CortexError) -> Report {
        let id = invocation.arguments[Stop.worker]
        let store = try invocation.openStore()
        // Only a live worker gets a record: asking about one that ended, or never was, changes nothing.
        guard let known = store.state.workers.worker(id) else {
            if IssuedID.issued(id, .worker, before: store.position, counted: store.state.workers.issued) {
                return Report(exitCode: 1, text: "", json: .object(["worker": .string(id)]), diagnostic: "\(id) has already ended")
            }
            throw .notFound("no worker \(id)")
        }
        if known.status.isFinal {
            return Report(
                exitCode: 1, text: "", json: .object(["worker": .string(id)]), diagnostic: "\(id) has already \(known.status.rawValue)")
        }
        let stop = try WorkerSupervision.stop(id, in: store, publishing: true)
        let submission = stop.submission
        switch submission.outcome {
        case .stopping:
            let state = store.state.workers.worker(id)?.status.rawValue ?? "stopped"
            return Report(
                text: "\(id) \(state)",
                json: .object(["outcome": "stopping", "signalled": .bool(stop.signalled), "status": .string(state), "worker": .string(id)]))
        case .refused(let reason): return Report(exitCode: 1, text: "", json: submission.outcome.json, diagnostic: reason)
        case .rejected: throw .notFound("no worker \(id)")
        default: throw unexpected(submission.outcome)
        }
    }

    static func heartbeat(_ invocation: Invocation) throws(CortexError) -> Report {
        let id = invocation.arguments[Heartbeat.worker]
        let layout = CoordinationLayout(root: invocation.root)
        try WorkerFiles.touchHeartbeat(layout, worker: id, permissions: FolderPermissions.detect(root: layout.root))
        return Report(text: "", json: .object(["heartbeat": .string(layout.heartbeat(id)), "worker": .string(id)]))
    }

    static func describe(_ exit: TerminationStatus) -> String {
        switch exit {
        case .exited(let code): "exit \(code)"
        case .signaled(let signal): "signal \(signal.rawValue)"
        }
    }

    static func workerJSON(_ worker: WorkerEntry, _ layout: CoordinationLayout, _ now: Int64) -> JSONValue {
        merge(
            worker.json,
            [
                "limit_reason": worker.limitReached.map { JSONValue.string($0.reason(worker.spec)) } ?? .null,
                "heartbeat_age_s": worker.status.holdsCapacity
                    ? layout.heartbeatAge(worker.id, nowMilliseconds: now).map { .double(($0 * 10).rounded() / 10) } ?? .null : .null,
                "stdout_log": .string(layout.worker(worker.id) + "/stdout.log"),
                "stderr_log": .string(layout.worker(worker.id) + "/stderr.log"),
            ])
    }
}
