import CortexCore
import CortexStorage

/// The workers of one `cortex-spawn --pool N --name NAME` as a unit, replacements of lost
/// members included (they keep the pool's name): who belongs to it, stopping it, scaling it.
public enum Pool {
    /// The live members of pool `name`, oldest first (stopping ones included).
    public static func members(_ name: String, in state: CortexState) -> [WorkerEntry] {
        state.workers.all.filter { $0.spec.pool == name }
    }

    /// Members that still count toward the pool's size: live and not being stopped, plus lost
    /// members owed a replacement.
    public static func wanted(_ name: String, in state: CortexState) -> Int {
        members(name, in: state).filter { $0.status != .stopping }.count
            + state.workers.owedReplacements.filter { $0.spec.pool == name }.count
    }

    /// Cancels the replacement lost member `id` is owed; true when this call did.
    public static func cancelReplacement(_ id: String, in store: CoordinationStore) throws(CortexError) -> Bool {
        let request = store.state.workers.owedReplacements.first { $0.worker == id }?.spec.request
        guard case .stopping = try store.submit(.worker(.cancelReplacement(worker: id))).outcome else { return false }
        // Nothing can start from its request any more.
        if let request, store.state.workers.holder(ofRequest: request) == nil { WorkerRequest.remove(request, in: store.layout) }
        return true
    }

    /// What `stop` did.
    public enum Stopped: Equatable, Sendable {
        /// No pool of that name, live or recent.
        case unknown
        /// Every member ended before this call.
        case alreadyEnded
        /// The members and owed replacements this call stopped (none: all were already stopping).
        case stopped([String])
    }

    /// Stops every member of pool `name` and cancels its owed replacements (those first, so no
    /// reaper starts one meanwhile): a stop recorded per member and SIGTERM through its
    /// supervisor (`WorkerSupervision.stop`), then the spawns queued behind them started if
    /// they fit. With `graceMilliseconds`, SIGKILLs the members' groups still running that long
    /// after (`killAfter`). With `waitMilliseconds`, returns only once every member has ended and
    /// the views show it (`waitForEnd`).
    /// - Throws: `tryLater` (exit 75) when members still run after `waitMilliseconds`.
    public static func stop(
        _ name: String, graceMilliseconds: Int64?, waitMilliseconds: Int64?, in store: CoordinationStore
    ) throws(CortexError) -> Stopped {
        // Armed before the stops are recorded, so an end recorded right after is not missed.
        let watcher = waitMilliseconds == nil ? nil : try store.journal.makeWaiter()
        defer { watcher?.disarm() }
        let owed = store.state.workers.owedReplacements.filter { $0.spec.pool == name }.map(\.worker)
        let live = members(name, in: store.state).filter { $0.status != .stopping }
        guard !live.isEmpty || !owed.isEmpty || !members(name, in: store.state).isEmpty else {
            return store.state.workers.recent.contains(where: { $0.spec.pool == name }) ? .alreadyEnded : .unknown
        }
        var stopped: [String] = []
        for id in owed where try cancelReplacement(id, in: store) { stopped.append(id) }
        for id in live.map(\.id) where try WorkerSupervision.stop(id, in: store).changedAnything { stopped.append(id) }
        store.publishAfterRecording()
        // Queued members ended: the spawns queued behind them may fit now.
        WorkerSupervision.startQueuedThatFitAfterRecording(store)
        if let graceMilliseconds { killAfter(graceMilliseconds, members(name, in: store.state), layout: store.layout) }
        if let watcher, let waitMilliseconds {
            // This host's supervisors of the members: each publishes views after recording its
            // member's end, so the wait ends only once they have exited.
            let supervisors = members(name, in: store.state).filter { $0.spec.host == store.config.hostID }.compactMap(\.supervisor)
            try waitForEnd(of: name, in: store, watcher: watcher, milliseconds: waitMilliseconds, supervisors: supervisors)
        }
        return .stopped(stopped)
    }

    /// Sleeps on the journal until no member of pool `name` is live, then waits (within the same
    /// time) for `supervisors` to exit and publishes the views itself, so a script that reads
    /// `worker-pool.json` next sees the pool ended: a supervisor still writing the views of an
    /// older fold could otherwise swap them in just before the script reads (its own check puts
    /// the newer view back, but only after). `tryLater` (exit 75) naming the members still live
    /// after `milliseconds`.
    public static func waitForEnd(
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

    /// Waits up to `grace` milliseconds for the members' processes to end, then SIGKILLs the
    /// groups of those still running (pid, start time, requester and worker mark checked).
    public static func killAfter(_ grace: Int64, _ members: [WorkerEntry], layout: CoordinationLayout) {
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

    /// What `scale` did.
    public enum Scaled: Equatable, Sendable {
        /// The pool already had `size` members.
        case unchanged(size: Int)
        /// Shrunk: the members and owed replacements stopped, newest first.
        case shrunk(stopped: [String])
        /// Not grown: `limit` says why the new members could never fit.
        case neverFits(limit: String)
        /// Grown: the workers added, and for those that had to queue, `<id> queued: <reason>`.
        case grown(added: [String], queued: [String])
        /// Grown only by `added` before a spawn was refused for `reason`.
        case refused(added: [String], reason: String)
    }

    /// Grows pool `name` to `target` members (new ones spawned with the pool's command,
    /// environment and directory, read from a member's private request file: only the user who
    /// started the pool can) or shrinks it (owed replacements, then the newest members stopped).
    /// - Throws: `notFound` for no pool `name`; permission denied when the pool's request file is
    ///   another user's.
    public static func scale(_ name: String, to target: Int, in store: CoordinationStore) throws(CortexError) -> Scaled {
        let current = members(name, in: store.state).filter { $0.status != .stopping }
        let owed = store.state.workers.owedReplacements.filter { $0.spec.pool == name }
        let size = current.count + owed.count
        guard let model = current.last?.spec ?? owed.last?.spec else { throw .notFound("no pool \(name)") }
        if target == size { return .unchanged(size: size) }
        if target < size {
            // The newest go first: owed replacements (never started), then the newest members.
            let owedIDs = owed.map(\.worker)
            let victims = Array((current.map(\.id) + owedIDs).suffix(size - target).reversed())
            var stopped: [String] = []
            for id in victims {
                let ended =
                    owedIDs.contains(id)
                    ? try cancelReplacement(id, in: store) : try WorkerSupervision.stop(id, in: store).changedAnything
                if ended { stopped.append(id) }
            }
            store.publishAfterRecording()
            WorkerSupervision.startQueuedThatFitAfterRecording(store)
            return .shrunk(stopped: stopped)
        }
        if let limit = SpawnFeasibility.neverFits(model, count: Int64(target), config: store.config) { return .neverFits(limit: limit) }
        // The pool's command, environment and directory come from a member's private request
        // file, which must be this user's: only the pool's owner can start more of it.
        guard let requestName = model.request else { throw .notFound("pool \(name) names no request file: spawn it again") }
        let found = try WorkerRequest.read(requestName, in: store.layout)
        guard found.owner == POSIX.effectiveUserID else {
            throw .io(
                operation: "scale", path: "pool \(name) of \(UserDatabase.system.describe(found.owner))", errno: Errno.notPermitted)
        }
        let batch = try WorkerSupervision.submitSpawns(
            target - size, model, request: found.request, queue: true, evidence: MachineEvidence.observe(store.config), store: store)
        let added = batch.workers
        let queued = batch.queued.map { "\($0.worker) queued: \($0.reason)" }
        let toLaunch = batch.toLaunch
        if let reason = batch.refusal ?? batch.rejection {
            store.publishAfterRecording()
            return .refused(added: added, reason: reason)
        }
        store.publishAfterRecording()
        do { _ = try WorkerSupervision.launch(toLaunch, layout: store.layout) } catch {
            store.warn("no supervisor started yet (\(error.description)); cortex-reap starts it")
        }
        return .grown(added: added, queued: queued)
    }
}

extension WorkerSupervision.Stop {
    /// True when the stop changed anything (the fold's outcome is `.stopping`).
    public var changedAnything: Bool {
        if case .stopping = submission.outcome { return true }
        return false
    }
}
