import CortexCore
import Glibc

/// `cortex-spawn`: feasibility before spawning, backpressure, supervised workers, pools (SPEC.md).
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
                    "Start a supervised worker if pool, CPU, memory and tokens allow; else queue it (exit 75) or, with --no-queue, refuse (exit 1). Prints the worker id.",
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
                    .value("restart", "POLICY", "never, on-failure or always (default never; always with --pool)."),
                    .value("log-head", "SIZE", "Bytes of stdout/stderr kept from the start (default 10K)."),
                    .value("log-tail", "SIZE", "Bytes of stdout/stderr kept from the end (default 30K)."),
                    .flag("no-queue", "Refuse (exit 1) instead of queueing when it cannot start now."),
                    .flag("foreground", "Supervise here and exit with the worker's exit code (128+N for signal N)."),
                ],
                examples: [
                    "w=$(\(name) --type review --tokens 20000 -- ./review.sh \"$pr\") || echo \"queued or refused: $?\"",
                    "\(name) --pool 4 --type build -- bash examples/task-worker.sh",
                    "\(name) --no-queue --memory 2G --cpu 1 --timeout 30m -- python3 train.py",
                ]),
            body: spawn)
    }

    static let superviseCommand = Command(
        CommandSpec(
            name: "cortex-spawn _supervise", abstract: "Internal: supervise worker W (started detached by cortex-spawn).",
            positionals: [PositionalSpec("WORKER", "The worker id.")]),
        body: { invocation throws(CortexError) in
            let id = try Values.validateIdentifier(invocation.arguments.positionals[0], what: "worker")
            let store = try invocation.openStore(mutating: false)
            let exit = try WorkerSupervision.supervise(id, store: store)
            return Report(exitCode: 0, text: "", json: .object(["worker": .string(id), "exit": exit?.json ?? .null]))
        })

    static func spawn(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let command = arguments.positionals
        guard !command.isEmpty else { throw .usage("missing the worker's command (put it after --)") }
        let pool = try arguments.count("pool")
        if let pool, pool < 1 || pool > 1000 { throw .badInput("--pool must be between 1 and 1000") }
        if pool != nil && arguments.has("foreground") { throw .usage("--foreground runs one worker; it cannot start a --pool") }
        var spec = WorkerSpec(type: try arguments.identifier("type") ?? "default", command: command)
        spec.task = try arguments.identifier("task")
        spec.tokens = try arguments.count("tokens")
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
        spec.path = getenv("PATH").map { String(cString: $0) }

        let store = try invocation.openStore(mutating: true)
        let evidence = MachineEvidence.observe(store.config)
        var rows: [JSONValue] = []
        var lines: [String] = []
        var queuedReasons: [String] = []
        var refusal: String?
        var toLaunch: [String] = []
        for _ in 0..<(pool ?? 1) {
            let submission = try store.submit(.worker(.spawn(spec, queue: !arguments.has("no-queue"), evidence: evidence)))
            switch submission.outcome {
            case .spawned(let worker, _):
                lines.append(worker)
                toLaunch += store.state.workers.toLaunch(by: submission.record.id).map(\.id)
            case .spawnQueued(let worker, let reason):
                lines.append(worker)
                queuedReasons.append("\(worker) queued: \(reason)")
            case .refused(let reason):
                refusal = reason
            case .rejected(let reason): throw .badInput(reason)
            default: throw unexpected(submission.outcome)
            }
            rows.append(submission.outcome.json)
            if refusal != nil { break }
        }
        try store.publish()
        if arguments.has("foreground"), let worker = toLaunch.first {
            let exit = try WorkerSupervision.supervise(worker, store: store)
            let code: Int32 =
                switch exit {
                case .exited(let code): code
                case .signaled(let signal): 128 + signal
                case nil: 1
                }
            return Report(exitCode: code, text: "", json: .object(["worker": .string(worker), "exit": exit?.json ?? .null]))
        }
        for worker in toLaunch { try WorkerSupervision.launch(worker, root: store.layout.root) }
        let json = JSONValue.object(["workers": .array(rows)])
        if let refusal {
            return Report(exitCode: 1, text: lines.joined(separator: "\n"), json: json, diagnostic: "not started: \(refusal)")
        }
        if !queuedReasons.isEmpty {
            return Report(exitCode: 75, text: lines.joined(separator: "\n"), json: json, diagnostic: queuedReasons.joined(separator: "; "))
        }
        return Report(exitCode: 0, text: lines.joined(separator: "\n"), json: json)
    }
}
