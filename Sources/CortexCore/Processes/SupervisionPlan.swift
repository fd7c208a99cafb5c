import Glibc

/// What a `Supervisor` starts and how it watches it: the worker's command, where its bounded logs
/// and heartbeat go, and when to stop it.
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
    /// How long a stopped worker has between the first stop signal and SIGKILL.
    public var graceMilliseconds: Int64
    /// Signals that make the supervisor stop the worker: each one received is forwarded to the
    /// worker's process group, and SIGKILL follows after the grace. They are blocked in the
    /// thread that calls `Supervisor.run` and read from a signalfd.
    public var stopSignals: [Int32]

    /// A plan; logs keep 10 KiB + 30 KiB, the heartbeat is touched every 5 s, the grace is 10 s,
    /// and SIGTERM and SIGINT stop the worker.
    public init(
        arguments: [String], environment: [String: String], workingDirectory: String? = nil, stdoutLog: String,
        stderrLog: String, headLimit: Int = 10 * 1024, tailLimit: Int = 30 * 1024, heartbeatPath: String? = nil,
        heartbeatIntervalMilliseconds: Int64 = 5_000, timeoutMilliseconds: Int64? = nil, graceMilliseconds: Int64 = 10_000,
        stopSignals: [Int32] = [SIGTERM, SIGINT]
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
        self.stopSignals = stopSignals
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
}

/// How a supervised worker ended, and what the supervisor did about it.
public struct SupervisedExit: Equatable, Sendable {
    /// The worker's exit code or the signal that ended it.
    public var exit: ProcessExit
    /// True when the plan's timeout fired and the supervisor began stopping the worker.
    public var timedOut: Bool
    /// The first stop signal the supervisor received (and forwarded), or nil.
    public var stopSignal: Int32?
    /// True when the worker outlived the grace and its group was sent SIGKILL.
    public var killedAfterGrace: Bool
    /// The worker's stdout.
    public var stdout: StreamSummary
    /// The worker's stderr.
    public var stderr: StreamSummary
    /// The first failure to rewrite a log or touch the heartbeat while the worker ran, if any;
    /// supervision went on regardless, so the exit is still known.
    public var writeFailure: CortexError?

    /// A result from its parts.
    public init(
        exit: ProcessExit, timedOut: Bool = false, stopSignal: Int32? = nil, killedAfterGrace: Bool = false,
        stdout: StreamSummary, stderr: StreamSummary, writeFailure: CortexError? = nil
    ) {
        self.exit = exit
        self.timedOut = timedOut
        self.stopSignal = stopSignal
        self.killedAfterGrace = killedAfterGrace
        self.stdout = stdout
        self.stderr = stderr
        self.writeFailure = writeFailure
    }
}
