import CortexCore
import CortexStorage

/// The supervisor side of `cortex-spawn`: starting a detached supervisor process, and what that
/// process does (claim the worker, run it under `Supervisor`, record its start and exit, restart
/// it per its policy, start queued workers its exit made room for).
public enum WorkerSupervision {
    /// What a launcher did about a worker it was asked to start.
    public enum Launch: Equatable, Sendable {
        /// Its supervisor was started, as the requester.
        case launched
        /// Left for a launcher running as this user (the requester) or as root.
        case owed(UInt32)
        /// Nothing can start it: no request file, or one that cannot be trusted.
        case refused(String)
    }

    /// Starts `cortex-spawn _supervise WORKER` detached (own session, no terminal, streams on
    /// /dev/null) **as the worker's requester** and returns at once; the supervisor outlives the
    /// caller. The requester is the owner of the worker's request file
    /// (docs/decisions/022-requester-rights.md): a launcher running as that user starts it; a
    /// root launcher starts it with the requester's user, group and supplementary groups; any
    /// other launcher leaves it owed (`.owed`) to one that can. The supervisor's environment is
    /// the requester's (from the request file, `CORTEX_*` left out), never the launcher's.
    /// - Throws: `CortexError` when the supervisor could not be started.
    @discardableResult
    public static func launch(_ worker: WorkerEntry, layout: CoordinationLayout) throws(CortexError) -> Launch {
        guard let name = worker.spec.request else {
            return .refused("\(worker.id) names no request file: no one can tell who asked for it")
        }
        let found: WorkerRequest.Found
        if let owner = WorkerRequest.owner(name, in: layout), owner != POSIX.effectiveUserID, POSIX.effectiveUserID != 0 {
            return .owed(owner)
        }
        do throws(CortexError) {
            found = try WorkerRequest.read(name, in: layout)
        } catch {
            return .refused("\(worker.id): \(error.description)")
        }
        var credentials: Credentials?
        if found.owner != POSIX.effectiveUserID {
            guard POSIX.effectiveUserID == 0 else { return .owed(found.owner) }
            do throws(CortexError) {
                credentials = try Credentials.of(user: found.owner)
            } catch {
                return .refused("\(worker.id): \(error.description)")
            }
        }
        _ = try Spawner.spawn(
            SpawnRequest(
                arguments: supervisorCommand() + ["_supervise", worker.id, "--dir", absolutePath(layout.root)],
                environment: found.request.environment.filter { !$0.key.hasPrefix("CORTEX_") },
                // As another user, not in the launcher's working directory (which that user may not enter).
                workingDirectory: credentials == nil ? nil : "/", newSession: true, credentials: credentials))
        return .launched
    }

    /// Launches each of `workers` (`launch`); says on stderr which are owed to another user or
    /// cannot be started. Returns the ids whose supervisor was started.
    public static func launch(_ workers: [WorkerEntry], layout: CoordinationLayout) throws(CortexError) -> [String] {
        var launched: [String] = []
        for worker in workers {
            switch try launch(worker, layout: layout) {
            case .launched: launched.append(worker.id)
            case .owed(let owner):
                warn(
                    "\(worker.id) was asked for by \(UserDatabase.system.describe(owner)): left to a launcher running as that user or root")
            case .refused(let reason): warn("not starting \(reason)")
            }
        }
        return launched
    }

    /// Removes the request file of worker `id` when record `record` ended it for good and no
    /// live worker or owed replacement still names that request (a lost pool member's
    /// replacement inherits it): from then on nothing can be started from it again, whatever a
    /// record says. Best effort: a request left behind by a remover killed at that moment is
    /// what a replayed record could still use (docs/decisions/022-requester-rights.md).
    public static func retireRequest(of id: String, endedBy record: String, in store: CoordinationStore) {
        let workers = store.state.workers
        guard workers.live[id] == nil, let worker = workers.worker(id), worker.endRecord == record,
            let request = worker.spec.request, workers.holder(ofRequest: request) == nil
        else { return }
        WorkerRequest.remove(request, in: store.layout)
    }

    /// One line on stderr, prefixed with the tool's name.
    public static func warn(_ line: String) {
        let program = CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "cortex") } ?? "cortex"
        try? POSIX.writeAll(2, Array("\(program): \(line)\n".utf8))
    }

    /// Starts the queued spawns that fit now, in queue order: appends `worker.promote` with what
    /// this process sees of the machine (only when something is queued), then launches a
    /// supervisor for each worker that record granted. Called wherever room may have been made:
    /// the reaper, a budget release, a larger total, a new budget period.
    /// - Returns: the workers started.
    @discardableResult
    public static func startQueuedThatFit(_ store: CoordinationStore) throws(CortexError) -> [String] {
        // This host's queue only: another host's spawns start where their request files are.
        let workers = store.state.workers
        guard let head = workers.queue.first(where: { workers.live[$0]?.spec.host == store.config.hostID }) else { return [] }
        let event = Event.worker(.promote(evidence: MachineEvidence.observe(store.config)))
        // Folded on a copy first: a promote that would start nothing and leave the reason that
        // holds the queue as it is changes nothing, and is not worth a record on every reaper
        // run while a spawn waits.
        var trial = store.state
        let trialRecord = Record(id: "trial", timeMilliseconds: POSIX.wallClockMilliseconds(), kind: event.kind, data: event.data)
        if case .promoted(let workers) = Reducer.reduce(&trial, trialRecord, at: store.position), workers.isEmpty,
            trial.workers.live[head]?.queuedReason == store.state.workers.live[head]?.queuedReason
        {
            return []
        }
        let promotion = try store.submit(event)
        return try launchWorkers(grantedBy: promotion.record.id, in: store)
    }

    /// `startQueuedThatFit` after the caller's own record is in the journal: a failure is a
    /// warning, not the caller's outcome (the reaper starts what fits on its next run).
    public static func startQueuedThatFitAfterRecording(_ store: CoordinationStore) {
        do { try startQueuedThatFit(store) } catch {
            store.warn("queued spawns not started (\(error.description)); the next reaper run starts what fits")
        }
    }

    /// What `submitSpawns` did: the workers started or queued, in order, and where it stopped.
    public struct SpawnBatch: Sendable {
        /// Every worker granted or queued, in order.
        public var workers: [String] = []
        /// The queued ones, with why each waits.
        public var queued: [(worker: String, reason: String)] = []
        /// The granted workers whose supervisors the caller launches (`launch`).
        public var toLaunch: [WorkerEntry] = []
        /// Each submission's outcome as JSON, in order.
        public var outcomes: [JSONValue] = []
        /// Why the fold refused the last spawn (the batch stopped there), if it did.
        public var refusal: String?
        /// Why the fold rejected the last spawn as bad input (the batch stopped there), if it did.
        public var rejection: String?
    }

    /// Submits `count` spawns of `spec` running `request` (`submitSpawn` each), stopping at the
    /// first the fold refuses or rejects: `cortex-spawn` (one or a pool) and `cortex pool scale`.
    public static func submitSpawns(
        _ count: Int, _ spec: WorkerSpec, request: WorkerRequest, queue: Bool, evidence: MachineEvidence, store: CoordinationStore
    ) throws(CortexError) -> SpawnBatch {
        var batch = SpawnBatch()
        for _ in 0..<max(0, count) {
            let submission = try submitSpawn(spec, request: request, queue: queue, evidence: evidence, store: store)
            batch.outcomes.append(submission.outcome.json)
            switch submission.outcome {
            case .spawned(let worker, _):
                batch.workers.append(worker)
                batch.toLaunch += store.state.workers.toLaunch(by: submission.record.id)
            case .spawnQueued(let worker, let reason):
                batch.workers.append(worker)
                batch.queued.append((worker, reason))
            case .refused(let reason):
                batch.refusal = reason
                return batch
            case .rejected(let reason):
                batch.rejection = reason
                return batch
            default: throw .corrupt("unexpected outcome \(submission.outcome.json.jsonText)")
            }
        }
        return batch
    }

    /// Writes `request` (what runs, and as whom) under a new name, then appends the spawn of
    /// `spec` naming it; the request is removed again when the record could not be appended or
    /// the fold refused or rejected the spawn (docs/decisions/022-requester-rights.md).
    public static func submitSpawn(
        _ spec: WorkerSpec, request: WorkerRequest, queue: Bool, evidence: MachineEvidence, store: CoordinationStore
    ) throws(CortexError) -> CoordinationStore.Submission {
        var spec = spec
        let name = WorkerRequest.newName()
        spec.request = name
        try request.create(name, in: store.layout)
        let submission: CoordinationStore.Submission
        do throws(CortexError) {
            submission = try store.submit(.worker(.spawn(spec, queue: queue, evidence: evidence)))
        } catch {
            WorkerRequest.remove(name, in: store.layout)
            throw error
        }
        switch submission.outcome {
        case .refused, .rejected: WorkerRequest.remove(name, in: store.layout)
        default: break
        }
        return submission
    }

    /// Launches a supervisor for every worker that record `record` granted (only its writer
    /// does, decision 012), as each worker's requester (`launch`).
    /// - Returns: the workers whose supervisor was started.
    public static func launchWorkers(grantedBy record: String, in store: CoordinationStore) throws(CortexError) -> [String] {
        try launch(store.state.workers.toLaunch(by: record), layout: store.layout)
    }

    /// How to run a supervisor from this executable: `cortex-spawn` beside it (any tool may
    /// launch one: cortex-spawn, a supervisor, cortex-reap), else `cortex spawn`, else PATH.
    static func supervisorCommand() -> [String] {
        if let sibling = besideThisExecutable("cortex-spawn") { return [sibling] }
        if let program = POSIX.readLink("/proc/self/exe"), program.split(separator: "/").last == "cortex" {
            return [program, "spawn"]
        }
        return ["cortex-spawn"]
    }

    /// The executable `name` in this executable's folder, if there is one.
    static func besideThisExecutable(_ name: String) -> String? {
        guard let program = POSIX.readLink("/proc/self/exe") else { return nil }
        let sibling = program.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/") + "/" + name
        return POSIX.canExecute(sibling) ? sibling : nil
    }

    /// Where a supervisor's image is and what it carries over to the next one: the tool
    /// replaces itself with `cortex-supervise` for each run, which replaces itself with the tool
    /// again when the run ends (docs/decisions/017-lean-supervisor.md).
    public struct Context: Sendable {
        /// `cortex-spawn --foreground`: the last image exits with the worker's exit code.
        public var foreground = false
        /// Print the last image's report as JSON.
        public var json = false

        /// A context from its parts.
        public init(foreground: Bool = false, json: Bool = false) {
            self.foreground = foreground
            self.json = json
        }
    }

    /// Claims `id` for this process and supervises it until it ends for good; returns its last
    /// exit (nil when another supervisor already had it, or it was stopped before it started).
    /// Each run replaces this process with `cortex-supervise`, so this returns only when no run
    /// is left to start; the supervision goes on in `resume(_:after:…)`.
    public static func supervise(_ id: String, store: CoordinationStore, context: Context) throws(CortexError) -> TerminationStatus? {
        let me = try currentIdentity()
        if let worker = store.state.workers.live[id], let name = worker.spec.request,
            let owner = WorkerRequest.owner(name, in: store.layout), owner != POSIX.effectiveUserID
        {
            // Only the requester supervises (a root launcher starts this as the requester).
            throw .io(
                operation: "supervise",
                path: "\(id) for \(UserDatabase.system.describe(owner)) as \(UserDatabase.system.describe(POSIX.effectiveUserID))",
                errno: Errno.notPermitted)
        }
        // From the claim on, `cortex worker stop` may SIGTERM this process at any moment: blocked
        // first, a stop that comes before the worker runs waits for the supervision to forward it
        // instead of killing the supervisor and leaving the worker claimed by no one alive.
        blockStopSignals()
        let claimed = try store.submit(.worker(.supervise(worker: id, supervisor: me)))
        guard case .supervising = claimed.outcome else {
            store.publishAfterRecording()
            return nil
        }
        try Files.makeDirectory(store.layout.workers, in: store.layout.folder, mode: store.permissions.directory(.private))
        try Files.makeDirectory(store.layout.worker(id), in: store.layout.folder, mode: store.permissions.directory(.private))
        return try continueSupervision(id, store: store, me: me, context: context, lastExit: nil, stopRequested: false)
    }

    /// Records the start of a run: called by `cortex-supervise` (as its child, so the supervisor
    /// is the parent process) once the worker exists. Only a process that is verifiably that
    /// supervisor's own child is recorded: its parent is the supervisor (the caller's parent),
    /// its start time is the one given, and its real user is the supervisor's and the caller's. Anything else (a worker naming another process, or a caller that is not the
    /// supervisor's child) is refused with exit 77 and nothing is recorded, so no forged pid can
    /// later be signalled as "what is left of" this worker.
    public static func recordStart(_ id: String, process: ProcessIdentity, store: CoordinationStore) throws(CortexError) {
        let parent = POSIX.parentProcessID
        guard let supervisor = ProcessIdentity.of(pid: parent) else {
            throw .io(operation: "read", path: "/proc/\(parent)/stat", errno: Errno.current)
        }
        func refuse(_ why: String) -> CortexError {
            .io(operation: "record", path: "pid \(process.pid) as the start of \(id) (\(why))", errno: Errno.notPermitted)
        }
        guard ProcessIdentity.parentPID(of: process.pid) == parent else { throw refuse("not a child of supervisor pid \(parent)") }
        // An orphan (its supervisor was killed) has pid 1 or a subreaper as its parent now.
        guard store.state.workers.live[id]?.supervisor == supervisor else {
            throw refuse("pid \(parent) is not the supervisor of \(id)")
        }
        guard ProcessIdentity.of(pid: process.pid, includingZombies: true) == process else { throw refuse("its start time differs") }
        // The worker's real uid (a set-uid program it runs keeps it; a reaper will not signal
        // such a process anyway, its other ids differ).
        let me = POSIX.effectiveUserID
        guard let supervisorUIDs = ProcessIdentity.userIDs(of: parent), supervisorUIDs.allSatisfy({ $0 == me }),
            ProcessIdentity.userIDs(of: process.pid)?.first == me
        else { throw refuse("it does not run as the supervisor's user") }
        // The check above could have read a pid recycled after the child ended: look again.
        guard ProcessIdentity.parentPID(of: process.pid) == parent else { throw refuse("not a child of supervisor pid \(parent)") }
        _ = try store.submit(.worker(.started(worker: id, supervisor: supervisor, process: process)))
        store.publishAfterRecording()
    }

    /// Goes on after a run ended (in the image `cortex-supervise` became): records the end,
    /// restarts the worker per its policy, or returns its last exit when it is done.
    public static func resume(
        _ id: String, after result: SupervisedExit, ranMilliseconds: Int64, store: CoordinationStore, context: Context
    )
        throws(CortexError) -> TerminationStatus?
    {
        let me = try currentIdentity()
        blockStopSignals()
        if result.stopSignal != nil, store.state.workers.live[id]?.status != .stopping {
            // Stopped by a signal to the supervisor: record it as a stop, so it is not restarted.
            _ = try store.submit(.worker(.stop(worker: id)))
        }
        guard let stopRequested = try recordEnd(id, result, ranLong: ranMilliseconds > 60_000, store: store, me: me) else {
            return result.exit
        }
        return try continueSupervision(id, store: store, me: me, context: context, lastExit: result.exit, stopRequested: stopRequested)
    }

    /// The top of the supervision loop: while the worker is live, either records a stop that
    /// came between runs, or starts the next run (this process becomes `cortex-supervise`).
    static func continueSupervision(
        _ id: String, store: CoordinationStore, me: ProcessIdentity, context: Context, lastExit: TerminationStatus?, stopRequested: Bool
    ) throws(CortexError) -> TerminationStatus? {
        var lastExit = lastExit
        var stopRequested = stopRequested
        while let worker = store.state.workers.live[id] {
            var result: SupervisedExit
            if worker.status == .stopping || stopRequested {
                if worker.status != .stopping {
                    // A stop signal between two runs, not from `cortex worker stop`: recorded as a
                    // stop too, or the fold would restart the worker and this loop would record
                    // a SIGTERM exit again and again without ever running it.
                    _ = try store.submit(.worker(.stop(worker: id)))
                }
                result = SupervisedExit(exit: .signaled(.terminate), stdout: .none, stderr: .none)
            } else {
                do throws(CortexError) {
                    try run(worker, store: store, context: context)
                } catch {
                    result = startFailure(error.description, worker: id, store: store)
                    if case .notFound = error, worker.spec.request.map({ WorkerRequest.owner($0, in: store.layout) == nil }) ?? true {
                        // Its request is gone (or it never had one): nothing can ever start it
                        // again, so it ends here rather than failing on every restart.
                        _ = try store.submit(.worker(.stop(worker: id)))
                    }
                }
            }
            lastExit = result.exit
            guard let again = try recordEnd(id, result, ranLong: false, store: store, me: me) else { break }
            stopRequested = again
        }
        return lastExit
    }

    /// A run that could not start: recorded as exit 127, as a shell would, with the reason in
    /// the worker's stderr.log.
    public static func startFailure(_ reason: String, worker id: String, store: CoordinationStore) -> SupervisedExit {
        try? AtomicFile.replace(
            store.layout.worker(id) + "/stderr.log", in: store.layout.folder, with: Array("cortex-spawn: \(reason)\n".utf8),
            durability: .processCrash, mode: store.permissions.file(.private))
        return SupervisedExit(exit: .exited(127), stdout: .none, stderr: .none)
    }

    /// Replaces this process with `cortex-supervise` running `worker` once; returns only by throwing.
    static func run(_ worker: WorkerEntry, store: CoordinationStore, context: Context) throws(CortexError) -> Never {
        let report =
            supervisorCommand() + ["_supervise", worker.id, "--dir", absolutePath(store.layout.root)]
            + (context.foreground ? ["--foreground"] : []) + (context.json ? ["--json"] : [])
        // cortex-supervise writes the logs and heartbeat by path: refuse a link planted at
        // workers/<id> (or on the way) before handing it the paths (decision 020).
        let workerFolder = store.layout.worker(worker.id)
        do { POSIX.close(try store.layout.folder.openFolder(workerFolder)) } catch { throw .system("open", workerFolder, error) }
        keepPreviousRunLogs(of: worker.id, layout: store.layout)
        let plan = try self.plan(for: worker, layout: store.layout, config: store.config)
        let arguments = try plan.supervisorArguments(program: try leanSupervisor(), report: report)
        do throws(Errno) {
            let environmentFD = arguments.firstIndex(of: "--environment-fd").flatMap { Int32(arguments[$0 + 1]) }
            try POSIX.execute(arguments, environment: POSIX.environment(), keepingOpen: environmentFD.map { [$0] } ?? [])
        } catch {
            throw .system("run", arguments[0], error)
        }
    }

    /// Renames the logs of the run before (`stdout.log`, `stderr.log`) to `stdout.previous.log`
    /// and `stderr.previous.log`, replacing older ones, so a restart after a crash keeps what the
    /// crashed run wrote (`cortex worker logs W --previous`). Empty logs are left to be replaced.
    /// Best effort: a log that cannot be kept is started again, as before.
    static func keepPreviousRunLogs(of id: String, layout: CoordinationLayout) {
        for stream in ["stdout", "stderr"] {
            let log = layout.worker(id) + "/\(stream).log"
            guard let info = try? layout.folder.status(log), info.isRegularFile, info.size > 0 else { continue }
            try? layout.folder.rename(log, layout.worker(id) + "/\(stream).previous.log")
        }
    }

    /// Records the end of a run, starts the queued workers it made room for, and waits out the
    /// restart backoff; returns nil when the worker is done, else whether a stop signal came
    /// during the wait.
    static func recordEnd(_ id: String, _ result: SupervisedExit, ranLong: Bool, store: CoordinationStore, me: ProcessIdentity)
        throws(CortexError) -> Bool?
    {
        let layout = store.layout
        let exited = try store.submit(
            .worker(
                .exited(
                    worker: id, supervisor: me, exit: result.exit, timedOut: result.timedOut,
                    tokensUsed: tokensUsed(layout, id), evidence: MachineEvidence.observe(store.config), limit: result.limitReached)))
        for promoted in store.state.workers.toLaunch(by: exited.record.id) {
            _ = try? launch([promoted], layout: layout)
        }
        store.publishAfterRecording()
        guard case .workerExited(_, restarting: true) = exited.outcome else {
            retireRequest(of: id, endedBy: exited.record.id, in: store)
            return nil
        }
        let restarts = store.state.workers.live[id]?.restarts ?? 1
        return waitForStop(milliseconds: ranLong ? 250 : restartBackoff(restarts))
    }

    /// `cortex-supervise` beside this executable, else in PATH.
    static func leanSupervisor() throws(CortexError) -> String {
        if let sibling = besideThisExecutable("cortex-supervise") { return sibling }
        if let found = ExecutableSearch.find("cortex-supervise") { return found }
        throw .notFound("no cortex-supervise beside this tool or in PATH: install it with the other tools (bin/install)")
    }

    static func currentIdentity() throws(CortexError) -> ProcessIdentity {
        guard let me = ProcessIdentity.current else { throw .io(operation: "read", path: "/proc/self/stat", errno: Errno.current) }
        return me
    }

    /// Restart delay: 0.5 s, 1 s, 2 s, then 4 s at most, so a pool member is back well within 10 s.
    static func restartBackoff(_ restarts: Int64) -> Int64 { min(4_000, 500 << min(3, max(0, restarts - 1))) }

    /// Waits up to `milliseconds` for a stop signal (SIGTERM/SIGINT stay blocked after a
    /// supervision); true when one came.
    public static func waitForStop(milliseconds: Int64) -> Bool {
        blockStopSignals()
        return POSIX.waitForSignal(stopSignals, milliseconds: milliseconds) != nil
    }

    /// Blocks SIGTERM and SIGINT in the calling thread (they stay pending for a signalfd or
    /// `waitForStop`).
    public static func blockStopSignals() { POSIX.blockSignals(stopSignals) }

    /// The signals that ask a supervisor or the reaper service to stop.
    public static let stopSignals: [Signal] = [.terminate, .interrupt]

    /// How often a supervisor touches its worker's heartbeat: a quarter of `heartbeat_timeout`,
    /// at most every 5 s, so a short timeout never finds a healthy worker's heartbeat stale.
    static func heartbeatIntervalMilliseconds(_ config: CortexConfig) -> Int64 {
        min(5_000, max(100, config.heartbeatTimeoutMilliseconds / 4))
    }

    /// What `cortex-supervise` runs for `worker`: the command, working directory and
    /// environment of its request file, which must belong to this process's user (the
    /// requester), plus the `CORTEX_*` variables of this run. Nothing of this process's own
    /// environment reaches the worker.
    /// - Throws: `CortexError.notFound` when the request is gone, `.io` (77) when it belongs to
    ///   another user or cannot be trusted, `.badInput` when it is malformed.
    static func plan(for worker: WorkerEntry, layout: CoordinationLayout, config: CortexConfig) throws(CortexError)
        -> SupervisionPlan
    {
        guard let name = worker.spec.request else {
            throw .notFound("\(worker.id) names no request file (asked for before requests existed): start it again with cortex-spawn")
        }
        let found = try WorkerRequest.read(name, in: layout)
        guard found.owner == POSIX.effectiveUserID else {
            throw .io(
                operation: "run",
                path:
                    "\(worker.id) for \(UserDatabase.system.describe(found.owner)) as \(UserDatabase.system.describe(POSIX.effectiveUserID))",
                errno: Errno.notPermitted)
        }
        var environment = found.request.environment
        environment["CORTEX_DIR"] = absolutePath(layout.root)
        environment["CORTEX_WORKER_ID"] = worker.id
        environment["CORTEX_TASK_ID"] = worker.spec.task
        environment["CORTEX_ALLOCATION"] = worker.allocation
        environment["CORTEX_TOKENS"] = worker.spec.tokens.map(String.init)
        let folder = layout.worker(worker.id)
        let enforcement = LimitEnforcement.detect(environment: found.request.environment)
        var plan = SupervisionPlan(
            arguments: found.request.command, environment: environment, workingDirectory: found.request.workingDirectory,
            stdoutLog: folder + "/stdout.log", stderrLog: folder + "/stderr.log", headLimit: Int(worker.spec.logHeadBytes),
            tailLimit: Int(worker.spec.logTailBytes), heartbeatPath: layout.heartbeat(worker.id),
            heartbeatIntervalMilliseconds: heartbeatIntervalMilliseconds(config), timeoutMilliseconds: worker.spec.timeoutMilliseconds,
            graceMilliseconds: worker.spec.graceMilliseconds)
        plan.limitArguments = try enforcement.supervisorArguments(
            for: worker.spec,
            run: LimitEnforcement.runName(worker: worker.id, restarts: worker.restarts, supervisor: POSIX.processID))
        return plan
    }

    /// Tokens the worker reported in `workers/<id>/tokens_used` (a number), if it did.
    static func tokensUsed(_ layout: CoordinationLayout, _ id: String) -> Int64? {
        guard let bytes = try? layout.folder.readFile(layout.worker(id) + "/tokens_used", limit: FileLimits.smallFile) else { return nil }
        let text = String(decoding: bytes.filter { !" \t\r\n".utf8.contains($0) }, as: UTF8.self)
        return Int64(text).flatMap { $0 >= 0 ? $0 : nil }
    }

    static func absolutePath(_ path: String) -> String {
        POSIX.canonicalPath(path) ?? path
    }
}
