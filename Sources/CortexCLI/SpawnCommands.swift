import CortexCore

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
                positionals: [PositionalSpec("COMMAND", "The worker's program and its arguments (after --).", rest: true)],
                options: [
                    .value("type", "TYPE", "The worker's type (default: default); per-type limits apply."),
                    .value("task", "ID", "The task it works on (CORTEX_TASK_ID)."),
                    .value("tokens", "N", "Tokens to reserve before it starts (CORTEX_ALLOCATION, CORTEX_TOKENS)."),
                    .value("tenant", "T", "The tenant whose quota the tokens count against."),
                    .value("cpu", "CORES", "Cores it needs (e.g. 0.5); reserved against the machine's cores."),
                    .value("memory", "SIZE", "Memory it needs (e.g. 512M), checked against MemAvailable."),
                    .value("timeout", "D", "SIGTERM to its process group after D (e.g. 10m), SIGKILL after --grace."),
                    .value("grace", "D", "Between SIGTERM and SIGKILL (default 10s)."),
                    .value("pool", "N", "Start N persistent workers (one id per line); default restart: always."),
                    .value(
                        "name", "NAME",
                        "The pool's name (cortex pool list|stop|scale NAME); replacements of lost members keep it. A --pool without one is named TYPE-XXXXXX, printed on stderr."
                    ),
                    .value("restart", "POLICY", "never, on-failure or always (default never; always with --pool)."),
                    .value("log-head", "SIZE", "Bytes of stdout/stderr kept from the start (default 10K)."),
                    .value("log-tail", "SIZE", "Bytes of stdout/stderr kept from the end (default 30K)."),
                    .flag("no-queue", "Refuse (exit 1) instead of queueing when it cannot start now."),
                    .flag("foreground", "Supervise here and exit with the worker's exit code (128+N for signal N)."),
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
            positionals: [PositionalSpec("WORKER", "The worker id.")],
            options: [
                .flag("foreground", "Exit with the worker's exit code (cortex-spawn --foreground)."),
                .value("started", "PID:TICKS", "The run's worker has started (from cortex-supervise, its parent)."),
                .value("exit", "HOW", "The run ended: exited:N or signaled:N (from cortex-supervise)."),
                .value("start-failure", "REASON", "The run could not start (from cortex-supervise)."),
                .value("ran-ms", "N", "How long the run lasted."),
                .value("stdout", "SEEN:KEPT", "Bytes the worker wrote to stdout and bytes its log kept."),
                .value("stderr", "SEEN:KEPT", "Bytes the worker wrote to stderr and bytes its log kept."),
                .flag("timed-out", "The run's timeout fired."),
                .flag("killed-after-grace", "The worker outlived the grace and was killed."),
                .value("stop-signal", "N", "The first stop signal the supervisor forwarded."),
                .value("write-failure", "REASON", "A log or heartbeat write failed during the run."),
            ]),
        body: supervise)

    static func supervise(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let id = try Values.validateIdentifier(arguments.positionals[0], what: "worker")
        let store = try invocation.openStore()
        if let started = arguments.value("started") {
            guard let (pid, ticks) = pair(started), let pid = Int32(exactly: pid), let ticks = UInt64(exactly: ticks) else {
                throw .usage("--started takes PID:TICKS")
            }
            try WorkerSupervision.recordStart(id, process: ProcessIdentity(pid: pid, startTicks: ticks), store: store)
            return Report(text: "", json: .null)
        }
        let context = WorkerSupervision.Context(foreground: arguments.has("foreground"), json: arguments.has("json"))
        let exit: TerminationStatus?
        if let reason = arguments.value("start-failure") {
            exit = try WorkerSupervision.resume(
                id, after: WorkerSupervision.startFailure(reason, worker: id, store: store), ranMilliseconds: 0, store: store,
                context: context)
        } else if let how = arguments.value("exit") {
            let ran = arguments.value("ran-ms").flatMap { Int64($0) } ?? 0
            exit = try WorkerSupervision.resume(
                id, after: try runResult(how, arguments), ranMilliseconds: ran, store: store, context: context)
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
    static func runResult(_ how: String, _ arguments: ParsedArguments) throws(CortexError) -> SupervisedExit {
        let parts = how.split(separator: ":")
        guard parts.count == 2, let number = Int32(parts[1]) else { throw .usage("--exit takes exited:N or signaled:N") }
        let exit: TerminationStatus
        switch parts[0] {
        case "exited": exit = .exited(number)
        case "signaled": exit = .signaled(Signal(rawValue: number))
        default: throw .usage("--exit takes exited:N or signaled:N")
        }
        func summary(_ name: String) throws(CortexError) -> StreamSummary {
            guard let text = arguments.value(name) else { return .none }
            guard let (seen, kept) = pair(text) else { throw .usage("--\(name) takes SEEN:KEPT") }
            return StreamSummary(bytesSeen: seen, bytesKept: Int(kept))
        }
        return SupervisedExit(
            exit: exit, timedOut: arguments.has("timed-out"),
            stopSignal: arguments.value("stop-signal").flatMap { Int32($0) }.map(Signal.init(rawValue:)),
            killedAfterGrace: arguments.has("killed-after-grace"), stdout: try summary("stdout"), stderr: try summary("stderr"),
            writeFailure: arguments.value("write-failure"))
    }

    /// `A:B` as two non-negative numbers.
    static func pair(_ text: String) -> (Int64, Int64)? {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let first = Int64(parts[0]), let second = Int64(parts[1]), first >= 0, second >= 0 else { return nil }
        return (first, second)
    }

    static func spawn(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let command = arguments.positionals
        guard !command.isEmpty else { throw .usage("missing the worker's command (put it after --)") }
        let pool = try arguments.count("pool")
        if let pool, pool < 1 || pool > 1000 { throw .badInput("--pool must be between 1 and 1000") }
        if pool != nil && arguments.has("foreground") { throw .usage("--foreground runs one worker; it cannot start a --pool") }
        var spec = WorkerSpec(type: try arguments.identifier("type") ?? "default", command: command)
        spec.pool = try arguments.identifier("name")
        spec.task = try arguments.identifier("task")
        spec.tokens = try arguments.tokens("tokens")
        if spec.tokens == 0 { throw .badInput("--tokens must be at least 1") }
        spec.tenant = try arguments.identifier("tenant")
        if let cpu = arguments.value("cpu") {
            guard let cores = Double(cpu), cores > 0, cores <= 4096 else {
                throw .badInput("invalid --cpu '\(Values.printable(cpu))': use a number of cores such as 0.5 or 2")
            }
            spec.cpuMillicores = Int64((cores * 1000).rounded())
        }
        spec.memoryBytes = try arguments.value("memory").map { (text) throws(CortexError) in try Values.parseSizeBytes(text) }
        spec.timeoutMilliseconds = try arguments.value("timeout").map { (text) throws(CortexError) in
            try Values.parseDurationMilliseconds(text)
        }
        if let grace = arguments.value("grace") { spec.graceMilliseconds = try Values.parseDurationMilliseconds(grace) }
        if let head = arguments.value("log-head") { spec.logHeadBytes = try Values.parseSizeBytes(head) }
        if let tail = arguments.value("log-tail") { spec.logTailBytes = try Values.parseSizeBytes(tail) }
        spec.restart =
            try arguments.value("restart").map { (text) throws(CortexError) in try RestartPolicy.parse(text) }
            ?? (pool != nil ? .always : .never)
        spec.workingDirectory = POSIX.currentDirectory()
        spec.path = POSIX.environmentValue("PATH")

        let store = try invocation.openStore()
        // The folder's rule for a run that reports no tokens used travels in the spec (the fold has no config).
        spec.unreportedTokens = store.config.unreportedTokens
        if let never = neverFits(spec, count: pool ?? 1, config: store.config) {
            return Report(exitCode: 1, text: "", json: .object(["refused": .string(never)]), diagnostic: "not started: \(never)")
        }
        var poolNotice: String?
        if pool != nil && spec.pool == nil {
            // Named so `cortex pool` can reach every member (and the replacements the master never sees).
            spec.pool = spec.type + "-" + POSIX.randomHex(bytes: 3)
            poolNotice = "pool \(spec.pool!)"
        }
        let evidence = MachineEvidence.observe(store.config)
        var rows: [JSONValue] = []
        var lines: [String] = []
        var queuedReasons: [String] = []
        var refusal: String?
        var toLaunch: [WorkerEntry] = []
        // What runs, and as whom: one private request file per worker, written before the
        // record that names it (docs/decisions/022-requester-rights.md).
        let request = WorkerRequest(
            command: command, workingDirectory: spec.workingDirectory, environment: processEnvironment(onlyCortex: false))
        for _ in 0..<(pool ?? 1) {
            let submission = try WorkerSupervision.submitSpawn(
                spec, request: request, queue: !arguments.has("no-queue"), evidence: evidence, store: store)
            switch submission.outcome {
            case .spawned(let worker, _):
                lines.append(worker)
                toLaunch += store.state.workers.toLaunch(by: submission.record.id)
            case .spawnQueued(let worker, let reason):
                lines.append(worker)
                queuedReasons.append("\(worker) queued: \(reason)")
            case .refused(let reason):
                refusal = reason
            case .rejected(let reason):
                throw .badInput(reason)
            default: throw unexpected(submission.outcome)
            }
            rows.append(submission.outcome.json)
            if refusal != nil { break }
        }
        store.publishAfterRecording()
        if arguments.has("foreground"), let worker = toLaunch.first {
            let context = WorkerSupervision.Context(foreground: true, json: arguments.has("json"))
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
        if !queuedReasons.isEmpty {
            return Report(exitCode: 75, text: lines.joined(separator: "\n"), json: json, diagnostic: queuedReasons.joined(separator: "; "))
        }
        return Report(exitCode: 0, text: lines.joined(separator: "\n"), json: json)
    }

    /// Why a spawn of `count` workers like `spec` can never start on this machine with this
    /// config, whatever else ends (nil when it can): refused at once rather than queued forever.
    static func neverFits(_ spec: WorkerSpec, count: Int64, config: CortexConfig) -> String? {
        let cores = Int64(SystemProbe.cores)
        if let cpu = spec.cpuMillicores, cpu > cores * 1000 {
            return "CPU: \(Values.thousandths(cpu)) cores requested, the machine has \(cores); it can never start"
        }
        if let memory = spec.memoryBytes, let total = SystemProbe.totalMemoryBytes(), memory > total {
            return "memory: \(memory) bytes requested, the machine has \(total); it can never start"
        }
        if count > Int64(config.maxWorkers) {
            return "\(count) workers asked for, more than max_workers (\(config.maxWorkers)) can ever run at once"
        }
        if let limit = config.typeLimits[spec.type], count > limit {
            return "\(count) workers of type \(spec.type) asked for, more than its type_limits (\(limit)) can ever run at once"
        }
        if let cpu = spec.cpuMillicores, cpu.saturatingMultiply(count) > cores * 1000 {
            return "CPU: \(count) × \(Values.thousandths(cpu)) cores requested, the machine has \(cores); they can never all run"
        }
        return nil
    }
}
