import CortexCore
import CortexProcesses
import CortexStorage

/// `cortex pool list|stop|scale`: the workers of one `cortex-spawn --pool N --name NAME` as a
/// unit, replacements of lost members included (they keep the pool's name).
public enum PoolTool {
    /// The commands, named under `prefix` (`cortex pool`).
    public static func commands(prefix: String) -> [Command] {
        [
            Command(
                CommandSpec(
                    name: "\(prefix) list", abstract: "Pools: name, type, members live of wanted, members by state.",
                    examples: ["\(prefix) list", "\(prefix) list --json | jq -r '.pools[].name'"]),
                body: list),
            Command(
                CommandSpec(
                    name: "\(prefix) stop",
                    abstract:
                        "Stop every member of pool NAME, replacements included, and restart none: a stop recorded per member, SIGTERM through its supervisor (only your own workers' processes), SIGKILL after the grace. With --wait, return once every member has ended (exit 75 if some still run after D). Exit 1 when nothing was left to stop.",
                    positionals: [Stop.name], options: [Stop.grace, Stop.wait],
                    examples: [
                        "\(prefix) stop builders", "\(prefix) stop builders --grace 2s", "\(prefix) stop builders --wait 30s",
                    ]),
                body: stop),
            Command(
                CommandSpec(
                    name: "\(prefix) scale",
                    abstract:
                        "Grow pool NAME to N members (new ones spawned with the pool's command, environment and directory: only the user who started the pool can) or shrink it (the newest members stopped). Exit 75 when new members had to queue.",
                    positionals: [Scale.name, Scale.size],
                    examples: ["\(prefix) scale builders 8", "\(prefix) scale builders 0   # like pool stop"]),
                body: scale),
        ]
    }

    /// `stop`'s arguments.
    enum Stop {
        static let name = Positional.identifier(
            "NAME", "The pool's name (cortex-spawn --name, or the name it printed).", what: "pool name")
        static let grace = Option.duration("grace", "D", "SIGKILL what still runs D after the SIGTERM (default: each worker's --grace).")
        static let wait = Option.duration(
            "wait", "D", "Return only once every member has ended and the views show it; exit 75 if some still run after D.")
    }

    /// `scale`'s arguments.
    enum Scale {
        static let name = Positional.identifier("NAME", "The pool's name.", what: "pool name")
        static let size = Positional<Int>("N", "How many members it should have.") { (text) throws(CortexError) in
            guard let target = Int(text), target >= 0, target <= 1000 else {
                throw .badInput("invalid N '\(Values.printable(text))': a whole number from 0 to 1000")
            }
            return target
        }
    }

    /// The live members of pool `name`, oldest first (stopping ones included).
    static func members(_ name: String, in state: CortexState) -> [WorkerEntry] {
        state.workers.all.filter { $0.spec.pool == name }
    }

    /// Members that still count toward the pool's size: live and not being stopped, plus lost
    /// members owed a replacement.
    static func wanted(_ name: String, in state: CortexState) -> Int {
        members(name, in: state).filter { $0.status != .stopping }.count
            + state.workers.owedReplacements.filter { $0.spec.pool == name }.count
    }

    static func list(_ invocation: Invocation) throws(CortexError) -> Report {
        let store = try invocation.openStore()
        let state = store.state
        var names: [String] = []
        for worker in state.workers.all { if let name = worker.spec.pool, !names.contains(name) { names.append(name) } }
        for owed in state.workers.owedReplacements { if let name = owed.spec.pool, !names.contains(name) { names.append(name) } }
        var lines: [String] = []
        var rows: [JSONValue] = []
        for name in names {
            let members = members(name, in: state)
            let live = members.filter { $0.status == .running }.count
            let wanted = wanted(name, in: state)
            var byState: [(String, Int)] = []
            for status in WorkerStatus.allCases {
                let count = members.filter { $0.status == status }.count
                if count > 0 { byState.append((status.rawValue, count)) }
            }
            let owed = state.workers.owedReplacements.filter { $0.spec.pool == name }.count
            if owed > 0 { byState.append(("owed a replacement", owed)) }
            let type = members.first?.spec.type ?? state.workers.owedReplacements.first { $0.spec.pool == name }?.spec.type ?? "?"
            lines.append(
                "\(padded(name, to: 16))\(padded(type, to: 10))\(live) of \(wanted) running  "
                    + byState.map { "\($0.1) \($0.0)" }.joined(separator: ", "))
            rows.append(
                .object([
                    "members": .array(members.map { .string($0.id) }), "name": .string(name), "running": .int(Int64(live)),
                    "states": .object(byState.map { JSONMember($0.0, .int(Int64($0.1))) }), "type": .string(type),
                    "wanted": .int(Int64(wanted)),
                ]))
        }
        return Report(text: lines.isEmpty ? "no pools" : lines.joined(separator: "\n"), json: .object(["pools": .array(rows)]))
    }

    /// Records a stop for worker `id` and asks its supervisor to stop it, as `cortex worker stop`
    /// does (only a supervisor whose pid and start time match, running as the worker's requester
    /// and carrying its mark). Returns whether the stop changed anything.
    static func stopMember(_ id: String, in store: CoordinationStore) throws(CortexError) -> Bool {
        let known = store.state.workers.live[id]
        let submission = try store.submit(.worker(.stop(worker: id)))
        guard case .stopping = submission.outcome else { return false }
        WorkerSupervision.retireRequest(of: id, endedBy: submission.record.id, in: store)
        if let known, let supervisor = store.state.workers.live[id]?.supervisor,
            let owner = known.spec.request.flatMap({ WorkerRequest.owner($0, in: store.layout) }),
            supervisor.isMarked(asWorker: id)
        {
            _ = supervisor.signalGroup(.terminate, ownedBy: owner)
        }
        return true
    }

    /// Cancels the replacement lost member `id` is owed; true when this call did.
    static func cancelReplacement(_ id: String, in store: CoordinationStore) throws(CortexError) -> Bool {
        let request = store.state.workers.owedReplacements.first { $0.worker == id }?.spec.request
        guard case .stopping = try store.submit(.worker(.cancelReplacement(worker: id))).outcome else { return false }
        // Nothing can start from its request any more.
        if let request, store.state.workers.holder(ofRequest: request) == nil { WorkerRequest.remove(request, in: store.layout) }
        return true
    }

    static func stop(_ invocation: Invocation) throws(CortexError) -> Report {
        let name = invocation.arguments[Stop.name]
        let grace = invocation.arguments[Stop.grace]
        let waitMilliseconds = invocation.arguments[Stop.wait]
        let store = try invocation.openStore()
        // Armed before the stops are recorded, so an end recorded right after is not missed.
        let watcher = waitMilliseconds == nil ? nil : try store.journal.makeWaiter()
        defer { watcher?.disarm() }
        let owed = store.state.workers.owedReplacements.filter { $0.spec.pool == name }.map(\.worker)
        let live = members(name, in: store.state).filter { $0.status != .stopping }
        guard !live.isEmpty || !owed.isEmpty || !members(name, in: store.state).isEmpty else {
            if store.state.workers.recent.contains(where: { $0.spec.pool == name }) {
                return Report(exitCode: 1, text: "", json: .object(["pool": .string(name)]), diagnostic: "pool \(name) has already ended")
            }
            throw .notFound("no pool \(name)")
        }
        var stopped: [String] = []
        // Owed replacements first, so no reaper starts one while the members stop.
        for id in owed where try cancelReplacement(id, in: store) { stopped.append(id) }
        for id in live.map(\.id) where try stopMember(id, in: store) { stopped.append(id) }
        store.publishAfterRecording()
        // Queued members ended: the spawns queued behind them may fit now.
        WorkerSupervision.startQueuedThatFitAfterRecording(store)
        if let grace { killAfter(grace, members(name, in: store.state), layout: store.layout) }
        if let watcher, let waitMilliseconds {
            // This host's supervisors of the members: each publishes views after recording its
            // member's end, so the wait ends only once they have exited.
            let supervisors = members(name, in: store.state).filter { $0.spec.host == store.config.hostID }.compactMap(\.supervisor)
            try waitForEnd(of: name, in: store, watcher: watcher, milliseconds: waitMilliseconds, supervisors: supervisors)
        }
        return Report(
            exitCode: stopped.isEmpty ? 1 : 0, text: stopped.map { "\($0) stopping" }.joined(separator: "\n"),
            json: .object(["pool": .string(name), "stopped": .array(stopped.map { .string($0) })]),
            diagnostic: stopped.isEmpty ? "pool \(name): every member is already stopping" : nil)
    }

    /// Sleeps on the journal until no member of pool `name` is live, then waits (within the same
    /// time) for `supervisors` to exit and publishes the views itself, so a script that reads
    /// `worker-pool.json` next sees the pool ended: a supervisor still writing the views of an
    /// older fold could otherwise swap them in just before the script reads (its own check puts
    /// the newer view back, but only after). `tryLater` (exit 75) naming the members still live
    /// after `milliseconds`.
    static func waitForEnd(
        of name: String, in store: CoordinationStore, watcher: any JournalWaiter, milliseconds: Int64,
        supervisors: [ProcessIdentity] = []
    ) throws(CortexError) {
        let deadline = Int64(POSIX.monotonicNanoseconds() / 1_000_000) + max(0, milliseconds)
        while true {
            try store.catchUp()
            let live = members(name, in: store.state)
            if live.isEmpty { break }
            let remaining = deadline - Int64(POSIX.monotonicNanoseconds() / 1_000_000)
            guard remaining > 0 else {
                throw .tryLater("pool \(name): still live: \(live.map { "\($0.id) \($0.status.rawValue)" }.joined(separator: ", "))")
            }
            _ = watcher.wait(timeoutMilliseconds: Int32(min(remaining, 60_000)))
        }
        for supervisor in supervisors {
            let remaining = deadline - Int64(POSIX.monotonicNanoseconds() / 1_000_000)
            _ = supervisor.waitForEnd(milliseconds: max(0, remaining))
        }
        try store.catchUp()
        do { try store.publishViews() } catch { store.warn("the views are stale: \(error.description)") }
    }

    /// Waits up to `grace` for the members' processes to end, then SIGKILLs the groups of those
    /// still running (pid, start time, requester and worker mark checked).
    static func killAfter(_ grace: Int64, _ members: [WorkerEntry], layout: CoordinationLayout) {
        let processes = members.compactMap { member -> Reaper.Leftover? in
            guard let process = member.process else { return nil }
            return Reaper.stoppable([process], worker: member.id, spec: member.spec, layout: layout).first
        }
        let deadline = POSIX.monotonicNanoseconds() + UInt64(max(0, grace)) * 1_000_000
        for leftover in processes {
            let now = POSIX.monotonicNanoseconds()
            let left = now >= deadline ? 0 : Int64((deadline - now) / 1_000_000)
            if !leftover.process.waitForEnd(milliseconds: left) { leftover.process.signalGroup(.kill, ownedBy: leftover.owner) }
        }
    }

    static func scale(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let name = arguments[Scale.name]
        let target = arguments[Scale.size]
        let store = try invocation.openStore()
        let current = members(name, in: store.state).filter { $0.status != .stopping }
        let owed = store.state.workers.owedReplacements.filter { $0.spec.pool == name }
        let size = current.count + owed.count
        guard let model = current.last?.spec ?? owed.last?.spec else { throw .notFound("no pool \(name)") }
        if target == size { return Report(text: "pool \(name) has \(size) members", json: poolJSON(name, [], [])) }
        if target < size {
            // The newest go first: owed replacements (never started), then the newest members.
            let owedIDs = owed.map(\.worker)
            let victims = Array((current.map(\.id) + owedIDs).suffix(size - target).reversed())
            var stopped: [String] = []
            for id in victims {
                let ended = owedIDs.contains(id) ? try cancelReplacement(id, in: store) : try stopMember(id, in: store)
                if ended { stopped.append(id) }
            }
            store.publishAfterRecording()
            WorkerSupervision.startQueuedThatFitAfterRecording(store)
            return Report(
                text: stopped.map { "\($0) stopping" }.joined(separator: "\n"), json: poolJSON(name, [], stopped))
        }
        if let limit = SpawnFeasibility.neverFits(model, count: Int64(target), config: store.config) {
            return Report(exitCode: 1, text: "", json: poolJSON(name, [], []), diagnostic: "not scaled: \(limit)")
        }
        // The pool's command, environment and directory come from a member's private request
        // file, which must be this user's: only the pool's owner can start more of it.
        guard let requestName = model.request else { throw .notFound("pool \(name) names no request file: spawn it again") }
        let found = try WorkerRequest.read(requestName, in: store.layout)
        guard found.owner == POSIX.effectiveUserID else {
            throw .io(
                operation: "scale", path: "pool \(name) of \(UserDatabase.system.describe(found.owner))", errno: Errno.notPermitted)
        }
        var added: [String] = []
        var queued: [String] = []
        var toLaunch: [WorkerEntry] = []
        for _ in size..<target {
            let submission = try WorkerSupervision.submitSpawn(
                model, request: found.request, queue: true, evidence: MachineEvidence.observe(store.config), store: store)
            switch submission.outcome {
            case .spawned(let worker, _):
                added.append(worker)
                toLaunch += store.state.workers.toLaunch(by: submission.record.id)
            case .spawnQueued(let worker, let reason):
                added.append(worker)
                queued.append("\(worker) queued: \(reason)")
            case .refused(let reason), .rejected(let reason):
                store.publishAfterRecording()
                return Report(
                    exitCode: 1, text: added.joined(separator: "\n"), json: poolJSON(name, added, []), diagnostic: "not started: \(reason)")
            default: throw unexpected(submission.outcome)
            }
        }
        store.publishAfterRecording()
        do { _ = try WorkerSupervision.launch(toLaunch, layout: store.layout) } catch {
            store.warn("no supervisor started yet (\(error.description)); cortex-reap starts it")
        }
        return Report(
            exitCode: queued.isEmpty ? 0 : 75, text: added.joined(separator: "\n"), json: poolJSON(name, added, []),
            diagnostic: queued.isEmpty ? nil : queued.joined(separator: "; "))
    }

    static func poolJSON(_ name: String, _ added: [String], _ stopped: [String]) -> JSONValue {
        .object([
            "added": .array(added.map { .string($0) }), "pool": .string(name), "stopped": .array(stopped.map { .string($0) }),
        ])
    }
}
