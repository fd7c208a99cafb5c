import CSupervisorLibc

/// `cortex-supervise`: the supervisor of one worker run, kept small because it lives as long as
/// the worker does (docs/decisions/017-lean-supervisor.md). `cortex-spawn _supervise` claims
/// the worker in the journal and then replaces itself with this program (same pid, so the
/// supervisor the journal names stays the same process); this program starts the worker, has
/// `REPORT … --started PID:TICKS` record its start (a child it waits for), supervises it to its
/// end and replaces itself with `REPORT … --exit …`, which records the end and decides what
/// comes next. It is built with Embedded Swift: no runtime to start, no journal code, and a
/// resident set a fraction of the full tools'.
@main
struct CortexSupervise {
    static func main() {
        let argc = Int(supervisor_argc())
        guard let argv = supervisor_argv() else { exit(70) }
        if argc > 1, let first = argv[1], strcmp(first, "--apply-limits") == 0 { applyLimitsAndRun(argc, argv) }
        let (parsed, problem) = Options.parse(argc, argv)
        guard let options = parsed else {
            complain(problem)
            exit(64)
        }
        let environment = workerEnvironment(options)
        // Nothing of the process that ran before this image is kept open (the journal, its lock-free
        // segments, a terminal's extra descriptors): the worker's own are opened below.
        supervisor_close_from(3)

        let supervision = Supervision(options)
        if let failure = supervision.watchStopSignals() ?? supervision.prepareFiles()
            ?? supervision.start(argv + options.commandIndex, environment: environment)
        {
            _ = supervision.finish()
            replaceWithReport(options, ["--start-failure", failure])
        }
        if !recordStart(options, pid: supervision.pid, ticks: supervision.startTicks) {
            _ = supervision.finish()
            complain("recording the worker's start failed: stopped it")
            exit(1)
        }
        if let failure = supervision.superviseUntilExit() { complain(failure) }
        let ran = supervision.ranMilliseconds
        guard let end = supervision.finish() else {
            complain("cannot reap the worker: " + describe(supervisor_errno()))
            exit(70)
        }
        var report = [
            "--exit", end.text, "--ran-ms", String(ran),
            "--stdout", String(supervision.stdout.capture.totalBytes) + ":" + String(supervision.stdout.capture.keptBytes),
            "--stderr", String(supervision.stderr.capture.totalBytes) + ":" + String(supervision.stderr.capture.keptBytes),
        ]
        if supervision.timedOut { report.append("--timed-out") }
        if supervision.killedAfterGrace { report.append("--killed-after-grace") }
        if supervision.stopSignal != 0 { report += ["--stop-signal", String(supervision.stopSignal)] }
        if let failure = supervision.writeFailure { report += ["--write-failure", failure] }
        if let limit = supervision.limitReached { report += ["--limit", limit] }
        replaceWithReport(options, report)
    }

    /// The worker's environment: read from `--environment-fd` (then closed), else ours.
    static func workerEnvironment(_ options: Options) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        guard let fd = options.environmentFD else { return supervisor_environ() }
        var block: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let got = chunk.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress, raw.count) }
            if got < 0 && supervisor_errno() == EINTR { continue }
            if got <= 0 { break }
            block.append(contentsOf: chunk[0..<got])
        }
        close(fd)
        var entries: [[UInt8]] = []
        for entry in block.split(separator: 0) { entries.append(Array(entry)) }
        return cStrings(entries.map { String(decoding: $0, as: UTF8.self) })
    }

    /// Runs `REPORT … --started PID:TICKS` and waits for it; true when it exited 0.
    static func recordStart(_ options: Options, pid: pid_t, ticks: UInt64) -> Bool {
        let arguments = cStrings(options.report + ["--started", String(pid) + ":" + String(ticks)])
        var actions = posix_spawn_file_actions_t()
        guard posix_spawn_file_actions_init(&actions) == 0 else { return false }
        var child: pid_t = 0
        // Nothing starts unless every setup step took.
        var result = supervisor_spawn_addclosefrom(&actions, 3)
        if result == 0 { result = posix_spawn(&child, arguments[0]!, &actions, nil, arguments, supervisor_environ()) }
        posix_spawn_file_actions_destroy(&actions)
        guard result == 0 else { return false }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 {
            if supervisor_errno() != EINTR { return false }
        }
        return supervisor_wifexited(status) != 0 && supervisor_wexitstatus(status) == 0
    }

    /// Replaces this process with `REPORT … ` + `arguments`; never returns.
    static func replaceWithReport(_ options: Options, _ arguments: [String]) -> Never {
        let argv = cStrings(options.report + arguments)
        execv(argv[0]!, argv)
        complain("cannot run " + options.report[0] + ": " + describe(supervisor_errno()))
        exit(70)
    }

    /// A NULL-terminated array of C strings that lives as long as the process.
    static func cStrings(_ strings: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        let array = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: strings.count + 1)
        for (index, string) in strings.enumerated() { array[index] = strdup(string) }
        array[strings.count] = nil
        return array
    }
}
