import CortexCore
import CortexStorage

/// What `cortex-supervise` starts and how it watches it: the worker's command, where its bounded
/// logs and heartbeat go, and when to stop it (docs/decisions/017-lean-supervisor.md).
public struct SupervisionPlan: Sendable {
    /// The program and its arguments; a program name without `/` is looked up in `PATH`.
    public var arguments: [String]
    /// The whole environment of the worker.
    public var environment: [String: String]
    /// The worker's working directory, or nil to keep the supervisor's.
    public var workingDirectory: String?
    /// Where the bounded copy of the worker's stdout is kept (rewritten atomically).
    public var stdoutLog: String
    /// Where the bounded copy of the worker's stderr is kept (rewritten atomically).
    public var stderrLog: String
    /// Bytes kept from the start of each stream.
    public var headLimit: Int
    /// Bytes kept from the end of each stream.
    public var tailLimit: Int
    /// A file whose modification time is set to now at start and every
    /// `heartbeatIntervalMilliseconds` while the worker lives (created if missing), or nil.
    public var heartbeatPath: String?
    /// How often the heartbeat is touched.
    public var heartbeatIntervalMilliseconds: Int64
    /// How long the worker may run before it is stopped (SIGTERM to its group, then SIGKILL
    /// after the grace), or nil for no limit.
    public var timeoutMilliseconds: Int64?
    /// How long a stopped worker has between the first stop signal (SIGTERM or SIGINT to the
    /// supervisor, forwarded to the worker's group) and SIGKILL.
    public var graceMilliseconds: Int64
    /// The `cortex-supervise` options that enforce the worker's limits on this run
    /// (`LimitEnforcement.supervisorArguments`); empty for none.
    public var limitArguments: [String] = []

    /// A plan; logs keep 10 KiB + 30 KiB, the heartbeat is touched every 5 s, the grace is 10 s.
    public init(
        arguments: [String], environment: [String: String], workingDirectory: String? = nil, stdoutLog: String,
        stderrLog: String, headLimit: Int = 10 * 1024, tailLimit: Int = 30 * 1024, heartbeatPath: String? = nil,
        heartbeatIntervalMilliseconds: Int64 = 5_000, timeoutMilliseconds: Int64? = nil, graceMilliseconds: Int64 = 10_000
    ) {
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.stdoutLog = stdoutLog
        self.stderrLog = stderrLog
        self.headLimit = headLimit
        self.tailLimit = tailLimit
        self.heartbeatPath = heartbeatPath
        self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
        self.timeoutMilliseconds = timeoutMilliseconds
        self.graceMilliseconds = graceMilliseconds
    }

    /// The command line of `cortex-supervise` (at `program`) running this plan and telling
    /// `report` of the worker's start and end. The environment goes through a memfd
    /// (`--environment-fd`), not the command line, which any user can read in /proc.
    /// - Throws: `CortexError` when the memfd cannot be made or written.
    public func supervisorArguments(program: String, report: [String]) throws(CortexError) -> [String] {
        guard let reporter = report.first else { throw .usage("no program to report to") }
        let fd = try withPath("create", "a memfd for the worker's environment") { () throws(Errno) in
            try POSIX.memoryFile("cortex-worker-environment")
        }
        var block: [UInt8] = []
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) {
            block += Array(name.utf8) + [UInt8(ascii: "=")] + Array(value.utf8) + [0]
        }
        do throws(Errno) {
            try POSIX.writeAll(fd, block)
            try POSIX.rewind(fd)
        } catch {
            POSIX.close(fd)
            throw .system("write", "the worker's environment", error)
        }
        var arguments = [
            program, "--stdout-log", stdoutLog, "--stderr-log", stderrLog, "--log-head", String(headLimit), "--log-tail",
            String(tailLimit), "--grace", String(max(0, graceMilliseconds)), "--environment-fd", String(fd),
        ]
        if let heartbeatPath {
            arguments += ["--heartbeat", heartbeatPath, "--heartbeat-every", String(max(1, heartbeatIntervalMilliseconds))]
        }
        if let timeoutMilliseconds { arguments += ["--timeout", String(max(0, timeoutMilliseconds))] }
        if let workingDirectory { arguments += ["--chdir", workingDirectory] }
        arguments += limitArguments
        arguments += ["--report", reporter]
        for argument in report.dropFirst() { arguments += ["--report-arg", argument] }
        return arguments + ["--"] + self.arguments
    }
}

/// How much of one output stream the worker wrote and how much its log kept.
public struct StreamSummary: Equatable, Sendable {
    /// Every byte the worker wrote to the stream.
    public var bytesSeen: Int64
    /// The worker's bytes in the log (head + tail, without the omission marker line).
    public var bytesKept: Int

    /// A summary from its parts.
    public init(bytesSeen: Int64, bytesKept: Int) {
        self.bytesSeen = bytesSeen
        self.bytesKept = bytesKept
    }

    /// Nothing seen, nothing kept (a run that did not start).
    public static let none = StreamSummary(bytesSeen: 0, bytesKept: 0)
}

/// How a supervised worker ended, and what the supervisor did about it.
public struct SupervisedExit: Equatable, Sendable {
    /// The worker's exit code or the signal that ended it.
    public var exit: TerminationStatus
    /// True when the plan's timeout fired and the supervisor began stopping the worker.
    public var timedOut: Bool
    /// The first stop signal the supervisor received (and forwarded), or nil.
    public var stopSignal: Signal?
    /// True when the worker outlived the grace and its group was sent SIGKILL.
    public var killedAfterGrace: Bool
    /// The worker's stdout.
    public var stdout: StreamSummary
    /// The worker's stderr.
    public var stderr: StreamSummary
    /// The first failure to rewrite a log or touch the heartbeat while the worker ran, if any;
    /// supervision went on regardless, so the exit is still known.
    public var writeFailure: String?
    /// The limit the run reached (its cgroup counted an OOM kill or a refused fork, or it got
    /// SIGXCPU under RLIMIT_CPU), if any.
    public var limitReached: WorkerLimit?

    /// A result from its parts.
    public init(
        exit: TerminationStatus, timedOut: Bool = false, stopSignal: Signal? = nil, killedAfterGrace: Bool = false,
        stdout: StreamSummary, stderr: StreamSummary, writeFailure: String? = nil, limitReached: WorkerLimit? = nil
    ) {
        self.limitReached = limitReached
        self.exit = exit
        self.timedOut = timedOut
        self.stopSignal = stopSignal
        self.killedAfterGrace = killedAfterGrace
        self.stdout = stdout
        self.stderr = stderr
        self.writeFailure = writeFailure
    }
}
