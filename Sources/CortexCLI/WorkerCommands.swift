import CortexCore
import Glibc

/// `cortex worker list|show|stop|heartbeat`: supervised workers as a resource (SPEC.md).
public enum WorkerTool {
    /// The commands, named under `prefix` (`cortex worker`).
    public static func commands(prefix: String) -> [Command] {
        [
            Command(
                CommandSpec(
                    name: "\(prefix) list", abstract: "Workers: queued, starting, running, stopping (--all: the recently ended too).",
                    options: [.flag("all", "Include the workers that ended recently.")],
                    examples: ["\(prefix) list", "\(prefix) list --json | jq -r '.workers[] | select(.status==\"running\") | .id'"]),
                body: list),
            Command(
                CommandSpec(
                    name: "\(prefix) show", abstract: "One worker: state, pid, start time, restarts, exit, heartbeat age, logs.",
                    positionals: [PositionalSpec("WORKER", "The worker id (w-1.5042).")],
                    examples: ["\(prefix) show w-1.5042", "tail \"$(\(prefix) show w-1.5042 --json | jq -r .stderr_log)\""]),
                body: show),
            Command(
                CommandSpec(
                    name: "\(prefix) stop",
                    abstract: "Drain a worker: SIGTERM to it through its supervisor, SIGKILL after its grace; no restart.",
                    positionals: [PositionalSpec("WORKER", "The worker id.")],
                    examples: [
                        "\(prefix) stop w-1.5042",
                        "for w in $(\(prefix) list --json | jq -r '.workers[].id'); do \(prefix) stop \"$w\"; done",
                    ]),
                body: stop),
            Command(
                CommandSpec(
                    name: "\(prefix) heartbeat", abstract: "Touch a worker's heartbeat file (its mtime is the heartbeat).",
                    positionals: [PositionalSpec("WORKER", "The worker id (any id a worker calls itself).")],
                    examples: ["while sleep 10; do \(prefix) heartbeat \"$CORTEX_WORKER_ID\"; done &"]),
                body: heartbeat),
        ]
    }

    static func list(_ invocation: Invocation) throws(CortexError) -> Report {
        let store = try invocation.openStore()
        let workers = store.state.workers
        var entries = workers.all
        if invocation.arguments.has("all") { entries += workers.recent.reversed() }
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
        let id = try Values.validateIdentifier(invocation.arguments.positionals[0], what: "worker id")
        let store = try invocation.openStore()
        guard let worker = store.state.workers.worker(id) else { throw .notFound("no worker \(id) (or it ended long ago)") }
        let json = workerJSON(worker, store.layout, POSIX.wallClockMilliseconds())
        let lines = (json.objectMembers ?? []).sorted { $0.key < $1.key }.map { member -> String in
            padded(member.key, to: 16) + (member.value.stringValue ?? member.value.jsonText)
        }
        return Report(text: lines.joined(separator: "\n"), json: json)
    }

    static func stop(_ invocation: Invocation) throws(CortexError) -> Report {
        let id = try Values.validateIdentifier(invocation.arguments.positionals[0], what: "worker id")
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
        let submission = try store.submit(.worker(.stop(worker: id)))
        store.publishAfterRecording()
        switch submission.outcome {
        case .stopping:
            // Stopped while queued: it never runs, and its request can never start anything.
            WorkerSupervision.retireRequest(of: id, endedBy: submission.record.id, in: store)
            // The supervisor forwards SIGTERM to the worker's group and SIGKILLs it after the
            // grace; only a supervisor whose pid and start time still match, that runs as the
            // worker's requester and carries the worker's mark, is signalled.
            let owner = known.spec.request.flatMap { WorkerRequest.owner($0, in: store.layout) }
            let signalled =
                store.state.workers.live[id]?.supervisor.map { supervisor in
                    guard let owner, supervisor.isMarked(asWorker: id) else { return false }
                    return supervisor.signalGroup(SIGTERM, ownedBy: owner)
                } ?? false
            let state = store.state.workers.worker(id)?.status.rawValue ?? "stopped"
            return Report(
                text: "\(id) \(state)",
                json: .object(["outcome": "stopping", "signalled": .bool(signalled), "status": .string(state), "worker": .string(id)]))
        case .refused(let reason): return Report(exitCode: 1, text: "", json: submission.outcome.json, diagnostic: reason)
        case .rejected: throw .notFound("no worker \(id)")
        default: throw unexpected(submission.outcome)
        }
    }

    static func heartbeat(_ invocation: Invocation) throws(CortexError) -> Report {
        let id = try Values.validateIdentifier(invocation.arguments.positionals[0], what: "worker id")
        let layout = CoordinationLayout(root: invocation.root)
        try WorkerFiles.touchHeartbeat(layout, worker: id, permissions: FolderPermissions.detect(root: layout.root))
        return Report(text: "", json: .object(["heartbeat": .string(layout.heartbeat(id)), "worker": .string(id)]))
    }

    static func describe(_ exit: ProcessExit) -> String {
        switch exit {
        case .exited(let code): "exit \(code)"
        case .signaled(let signal): "signal \(signal)"
        }
    }

    static func workerJSON(_ worker: WorkerEntry, _ layout: CoordinationLayout, _ now: Int64) -> JSONValue {
        merge(
            worker.json,
            [
                "heartbeat_age_s": worker.status.holdsCapacity
                    ? layout.heartbeatAge(worker.id, nowMilliseconds: now).map { .double(($0 * 10).rounded() / 10) } ?? .null : .null,
                "stdout_log": .string(layout.worker(worker.id) + "/stdout.log"),
                "stderr_log": .string(layout.worker(worker.id) + "/stderr.log"),
            ])
    }
}
