import CortexCore
import CortexProcesses
import CortexStorage

/// `cortex-spawn`: feasibility before spawning, backpressure, supervised workers, pools (docs/cli.md).
public enum SpawnTool {
    /// The tool: one command (everything after the options is the worker's command line), plus
    /// the hidden entry point its detached supervisors run.
    public static let tool = ToolSpec(
        name: "cortex-spawn", abstract: spawnCommand(name: "cortex-spawn").spec.abstract, commands: [],
        defaultCommand: spawnCommand(name: "cortex-spawn"), hidden: [superviseCommand])

    /// The spawn command under `name` (`cortex-spawn` or `cortex spawn`).
    public static func spawnCommand(name: String) -> Command {
        Command(
            CommandSpec(
                name: name,
                abstract:
                    "Start a supervised worker if pool, CPU, memory and tokens allow; else queue it (exit 75) or, with --no-queue, refuse (exit 1). One that can never fit (more cores or memory than the machine has, a pool over max_workers) is refused at once (exit 1). Prints the worker id.",
                positionals: [Spawn.command],
                options: [
                    Spawn.type, Spawn.task, Spawn.tokens, Spawn.tenant, Spawn.cpu, Spawn.memory, Spawn.pids, Spawn.timeout, Spawn.grace,
                    Spawn.pool, Spawn.name, Spawn.restart, Spawn.logHead, Spawn.logTail, Spawn.noQueue, Spawn.foreground,
                ],
                examples: [
                    "w=$(\(name) --type review --tokens 20000 -- ./review.sh \"$pr\") || echo \"queued or refused: $?\"",
                    "\(name) --pool 4 --name builders --type build -- bash examples/task-worker.sh   # cortex pool stop builders",
                    "\(name) --no-queue --memory 2G --cpu 1 --timeout 30m -- python3 train.py",
                ]),
            body: spawn)
    }

    static let superviseCommand = Command(
        CommandSpec(
            name: "cortex-spawn _supervise",
            abstract: "Internal: supervise worker W (started detached by cortex-spawn; resumed by cortex-supervise).",
            positionals: [Supervise.worker],
            options: [
                Supervise.foreground, Supervise.started, Supervise.exit, Supervise.startFailure, Supervise.ranMilliseconds,
                Supervise.stdout, Supervise.stderr, Supervise.timedOut, Supervise.killedAfterGrace, Supervise.stopSignal,
                Supervise.writeFailure, Supervise.limit,
            ]),
        body: supervise)

    /// The spawn command's arguments.
    enum Spawn {
        static let command = Positionals.texts("COMMAND", "The worker's program and its arguments (after --).")
        static let type = Option.identifier("type", "TYPE", "The worker's type (default: default); per-type limits apply.")
        static let task = Option.identifier("task", "ID", "The task it works on (CORTEX_TASK_ID).")
        static let tokens = Option.tokens("tokens", "N", "Tokens to reserve before it starts (CORTEX_ALLOCATION, CORTEX_TOKENS).")
            .checked({ $0 >= 1 }, else: { _ in "--tokens must be at least 1" })
        static let tenant = Option.identifier(
            "tenant", "T", "The tenant whose quotas it counts against: its tokens and its most workers (cortex-budget quota).")
        /// In thousandths of a core.
        public static let cpu = Option.cores(
            "cpu", "CORES", "Cores it needs (e.g. 0.5): reserved against the machine's cores, and the most its process tree may use.")
        static let memory = Option.size(
            "memory", "SIZE", "Memory it needs (e.g. 512M): checked against MemAvailable, and the most its process tree may use.")
        static let pids = Option.count(
            "pids", "N", "The most processes its tree may hold at once (needs a writable pids cgroup; else refused, exit 78).",
            atMost: Limits.maximumPIDs
        )
        .checked({ $0 >= 1 }, else: { _ in "--pids must be at least 1" })
        static let timeout = Option.duration("timeout", "D", "SIGTERM to its process group after D (e.g. 10m), SIGKILL after --grace.")
        static let grace = Option.duration("grace", "D", "Between SIGTERM and SIGKILL (default 10s).")
        static let pool = Option.count("pool", "N", "Start N persistent workers (one id per line); default restart: always.")
            .checked({ (1...1000).contains($0) }, else: { _ in "--pool must be between 1 and 1000" })
        static let name = Option.identifier(
            "name", "NAME",
            "The pool's name (cortex pool list|stop|scale NAME); replacements of lost members keep it. A --pool without one is named TYPE-XXXXXX, printed on stderr."
        )
        static let restart: Option<RestartPolicy> = .choice(
            "restart", "POLICY", "never, on-failure or always (default never; always with --pool).")
        static let logHead = Option.size("log-head", "SIZE", "Bytes of stdout/stderr kept from the start (default 10K).")
        static let logTail = Option.size("log-tail", "SIZE", "Bytes of stdout/stderr kept from the end (default 30K).")
        static let noQueue = Flag("no-queue", "Refuse (exit 1) instead of queueing when it cannot start now.")
        static let foreground = Flag("foreground", "Supervise here and exit with the worker's exit code (128+N for signal N).")
    }

    /// The arguments `cortex-supervise` passes to `_supervise`.
    enum Supervise {
        static let worker = Positional.identifier("WORKER", "The worker id.", what: "worker")
        static let foreground = Flag("foreground", "Exit with the worker's exit code (cortex-spawn --foreground).")
        static let started = Option<ProcessIdentity>(
            "started", "PID:TICKS", "The run's worker has started (from cortex-supervise, its parent)."
        ) { (text) throws(CortexError) in
            guard let (pid, ticks) = pair(text), let pid = Int32(exactly: pid), let ticks = UInt64(exactly: ticks) else {
                throw .usage("--started takes PID:TICKS")
            }
            return ProcessIdentity(pid: pid, startTicks: ticks)
        }
        static let exit = Option<TerminationStatus>("exit", "HOW", "The run ended: exited:N or signaled:N (from cortex-supervise).") {
            (how) throws(CortexError) in
            let parts = how.split(separator: ":")
            guard parts.count == 2, let number = Int32(parts[1]) else { throw .usage("--exit takes exited:N or signaled:N") }
            switch parts[0] {
            case "exited": return .exited(number)
            case "signaled": return .signaled(Signal(rawValue: number))
            default: throw .usage("--exit takes exited:N or signaled:N")
            }
        }
        static let startFailure = Option.text("start-failure", "REASON", "The run could not start (from cortex-supervise).")
        /// Malformed counts as 0, like not given.
        static let ranMilliseconds = Option<Int64>("ran-ms", "N", "How long the run lasted.") { Int64($0) ?? 0 }
        static let stdout = summary("stdout", "Bytes the worker wrote to stdout and bytes its log kept.")
        static let stderr = summary("stderr", "Bytes the worker wrote to stderr and bytes its log kept.")
        static let timedOut = Flag("timed-out", "The run's timeout fired.")
        static let killedAfterGrace = Flag("killed-after-grace", "The worker outlived the grace and was killed.")
        /// Malformed counts as not given.
        static let stopSignal = Option<Signal?>("stop-signal", "N", "The first stop signal the supervisor forwarded.") {
            Int32($0).map(Signal.init(rawValue:))
        }
        static let writeFailure = Option.text("write-failure", "REASON", "A log or heartbeat write failed during the run.")
        /// Malformed counts as not given.
        static let limit = Option<WorkerLimit?>("limit", "KIND", "The run reached its memory, pids or cpu limit.") {
            WorkerLimit(rawValue: $0)
        }

        /// `--NAME SEEN:KEPT`.
        private static func summary(_ name: String, _ help: String) -> Option<StreamSummary> {
            Option(name, "SEEN:KEPT", help) { (text) throws(CortexError) in
                guard let (seen, kept) = pair(text) else { throw .usage("--\(name) takes SEEN:KEPT") }
                return StreamSummary(bytesSeen: seen, bytesKept: Int(kept))
            }
        }
    }

    static func supervise(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let id = arguments[Supervise.worker]
        let store = try invocation.openStore()
        if let started = arguments[Supervise.started] {
            try WorkerSupervision.recordStart(id, process: started, store: store)
            return Report(text: "", json: .null)
        }
        let context = WorkerSupervision.Context(foreground: arguments[Supervise.foreground], json: arguments[CommonOptions.json])
        let exit: TerminationStatus?
        if let reason = arguments[Supervise.startFailure] {
            exit = try WorkerSupervision.resume(
                id, after: WorkerSupervision.startFailure(reason, worker: id, store: store), ranMilliseconds: 0, store: store,
                context: context)
        } else if let how = arguments[Supervise.exit] {
            let ran = arguments[Supervise.ranMilliseconds] ?? 0
            exit = try WorkerSupervision.resume(
                id, after: runResult(how, arguments), ranMilliseconds: ran, store: store, context: context)
        } else {
            exit = try WorkerSupervision.supervise(id, store: store, context: context)
        }
        return supervisionReport(id, exit, foreground: context.foreground)
    }

    /// What a supervision prints when it ends: with `--foreground`, it exits with the worker's
    /// exit code (128+N for signal N).
    static func supervisionReport(_ id: String, _ exit: TerminationStatus?, foreground: Bool) -> Report {
        let code: Int32 =
            switch exit {
            case .exited(let code): code
            case .signaled(let signal): 128 + signal.rawValue
            case nil: 1
            }
        return Report(exitCode: foreground ? code : 0, text: "", json: .object(["worker": .string(id), "exit": exit?.json ?? .null]))
    }

    /// How a run ended, from the options `cortex-supervise` passed.
    static func runResult(_ exit: TerminationStatus, _ arguments: ParsedArguments) -> SupervisedExit {
        SupervisedExit(
            exit: exit, timedOut: arguments[Supervise.timedOut], stopSignal: arguments[Supervise.stopSignal] ?? nil,
            killedAfterGrace: arguments[Supervise.killedAfterGrace], stdout: arguments[Supervise.stdout] ?? .none,
            stderr: arguments[Supervise.stderr] ?? .none, writeFailure: arguments[Supervise.writeFailure],
            limitReached: arguments[Supervise.limit] ?? nil)
    }

    /// `A:B` as two non-negative numbers.
    static func pair(_ text: String) -> (Int64, Int64)? {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let first = Int64(parts[0]), let second = Int64(parts[1]), first >= 0, second >= 0 else { return nil }
        return (first, second)
    }

    static func spawn(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let command = arguments[Spawn.command]
        guard !command.isEmpty else { throw .usage("missing the worker's command (put it after --)") }
        let pool = arguments[Spawn.pool]
        if pool != nil && arguments[Spawn.foreground] { throw .usage("--foreground runs one worker; it cannot start a --pool") }
        var spec = WorkerSpec(type: arguments[Spawn.type] ?? "default", command: command)
        spec.pool = arguments[Spawn.name]
        spec.task = arguments[Spawn.task]
        spec.tokens = arguments[Spawn.tokens]
        spec.tenant = arguments[Spawn.tenant]
        spec.cpuMillicores = arguments[Spawn.cpu]
        spec.memoryBytes = arguments[Spawn.memory]
        spec.pids = arguments[Spawn.pids]
        // A process limit nothing here can enforce is refused rather than silently left out.
        if spec.pids != nil, !LimitEnforcement.detect(environment: processEnvironment(onlyCortex: false)).enforcesPids {
            throw .configuration(LimitEnforcement.pidsRefusal)
        }
        spec.timeoutMilliseconds = arguments[Spawn.timeout]
        if let grace = arguments[Spawn.grace] { spec.graceMilliseconds = grace }
        if let head = arguments[Spawn.logHead] { spec.logHeadBytes = head }
        if let tail = arguments[Spawn.logTail] { spec.logTailBytes = tail }
        spec.restart = arguments[Spawn.restart] ?? (pool != nil ? .always : .never)
        spec.workingDirectory = POSIX.currentDirectory()
        spec.path = POSIX.environmentValue("PATH")

        let store = try invocation.openStore()
        // Where the journal is shared by hosts, the worker is this host's (decision 037).
        spec.host = store.config.hostID
        // The folder's rule for a run that reports no tokens used travels in the spec (the fold has no config).
        spec.unreportedTokens = store.config.unreportedTokens
        if let never = SpawnFeasibility.neverFits(spec, count: pool ?? 1, config: store.config) {
            return Report(exitCode: 1, text: "", json: .object(["refused": .string(never)]), diagnostic: "not started: \(never)")
        }
        var poolNotice: String?
        if pool != nil && spec.pool == nil {
            // Named so `cortex pool` can reach every member (and the replacements the master never sees).
            spec.pool = spec.type + "-" + POSIX.randomHex(bytes: 3)
            poolNotice = "pool \(spec.pool!)"
        }
        let evidence = MachineEvidence.observe(store.config)
        // What runs, and as whom: one private request file per worker, written before the
        // record that names it (docs/decisions/022-requester-rights.md).
        let request = WorkerRequest(
            command: command, workingDirectory: spec.workingDirectory, environment: processEnvironment(onlyCortex: false))
        let batch = try WorkerSupervision.submitSpawns(
            Int(pool ?? 1), spec, request: request, queue: !arguments[Spawn.noQueue], evidence: evidence, store: store)
        if let rejection = batch.rejection { throw .badInput(rejection) }
        let (rows, lines, queued, refusal, toLaunch) = (batch.outcomes, batch.workers, batch.queued, batch.refusal, batch.toLaunch)
        store.publishAfterRecording()
        if arguments[Spawn.foreground], let worker = toLaunch.first {
            let context = WorkerSupervision.Context(foreground: true, json: arguments[CommonOptions.json])
            return supervisionReport(
                worker.id, try WorkerSupervision.supervise(worker.id, store: store, context: context), foreground: true)
        }
        // Granted by the journal: a supervisor that cannot be started now is started by the
        // reaper (a granted worker without one), and the caller still learns its id.
        do { _ = try WorkerSupervision.launch(toLaunch, layout: store.layout) } catch {
            store.warn("no supervisor started yet (\(error.description)); cortex-reap starts it")
        }
        var jsonMembers = [JSONMember("workers", .array(rows))]
        if let name = spec.pool { jsonMembers.append(JSONMember("pool", .string(name))) }
        let json = JSONValue.object(jsonMembers)
        if let poolNotice { WorkerSupervision.warn(poolNotice) }
        if let refusal {
            return Report(exitCode: 1, text: lines.joined(separator: "\n"), json: json, diagnostic: "not started: \(refusal)")
        }
        if !queued.isEmpty {
            return Report(exitCode: 75, text: lines.joined(separator: "\n"), json: json, diagnostic: queuedDiagnostic(queued))
        }
        return Report(exitCode: 0, text: lines.joined(separator: "\n"), json: json)
    }

    /// One stderr line for the queued members of a spawn: `w-1.9 queued: REASON` for one, and for
    /// a pool one clause per reason (`48 queued, w-1.9 … w-1.56: REASON`), not 48 clauses.
    static func queuedDiagnostic(_ queued: [(worker: String, reason: String)]) -> String {
        var reasons: [String] = []
        var workers: [String: [String]] = [:]
        for item in queued {
            if workers[item.reason] == nil { reasons.append(item.reason) }
            workers[item.reason, default: []].append(item.worker)
        }
        return reasons.map { reason in
            let ids = workers[reason] ?? []
            guard ids.count > 1, let first = ids.first, let last = ids.last else { return "\(ids.first ?? "") queued: \(reason)" }
            return "\(ids.count) queued, \(first) … \(last): \(reason)"
        }.joined(separator: "; ")
    }
}
