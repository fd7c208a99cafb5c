/// A signal number (Linux's), with swift-subprocess's names for the ones Cortex sends, blocks or reports:
/// `process.signalGroup(.terminate)` rather than `signalGroup(SIGTERM)`.
public struct Signal: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The C signal number.
    public var rawValue: Int32

    /// Wraps a C signal number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Signal 0: sends nothing, only checks that the process exists and may be signalled.
    public static let probe = Signal(rawValue: 0)
    /// `SIGHUP`: the terminal went away.
    public static let hangup = Signal(rawValue: 1)
    /// `SIGINT`: Ctrl-C.
    public static let interrupt = Signal(rawValue: 2)
    /// `SIGQUIT`: Ctrl-\, with a core dump.
    public static let quit = Signal(rawValue: 3)
    /// `SIGILL`: an illegal instruction.
    public static let illegalInstruction = Signal(rawValue: 4)
    /// `SIGABRT`: `abort()`, a failed assertion or a Swift trap.
    public static let abort = Signal(rawValue: 6)
    /// `SIGBUS`: a bad memory access (a truncated mapped file).
    public static let busError = Signal(rawValue: 7)
    /// `SIGFPE`: an arithmetic fault.
    public static let floatingPointException = Signal(rawValue: 8)
    /// `SIGKILL`: ends the process; cannot be caught, blocked or ignored.
    public static let kill = Signal(rawValue: 9)
    /// `SIGUSR1`.
    public static let userDefinedOne = Signal(rawValue: 10)
    /// `SIGSEGV`: a segmentation fault.
    public static let segmentationFault = Signal(rawValue: 11)
    /// `SIGUSR2`.
    public static let userDefinedTwo = Signal(rawValue: 12)
    /// `SIGPIPE`: a write to a pipe nobody reads.
    public static let brokenPipe = Signal(rawValue: 13)
    /// `SIGALRM`: a timer.
    public static let alarm = Signal(rawValue: 14)
    /// `SIGTERM`: please stop (what `kill` sends by default).
    public static let terminate = Signal(rawValue: 15)
    /// `SIGCHLD`: a child ended or stopped.
    public static let childStatusChange = Signal(rawValue: 17)
    /// `SIGXCPU`: the CPU time limit was reached.
    public static let cpuLimitExceeded = Signal(rawValue: 24)
    /// `SIGXFSZ`: the file size limit was reached.
    public static let fileSizeLimitExceeded = Signal(rawValue: 25)

    /// The common name (`SIGTERM`), or nil for a number without one.
    public var name: String? {
        let names: [Int32: String] = [
            1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL",
            10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 24: "SIGXCPU",
            25: "SIGXFSZ",
        ]
        return names[rawValue]
    }

    /// `SIGTERM` for 15; `signal 40` for one without a common name.
    public var description: String { name ?? "signal \(rawValue)" }
}

/// How a process ended, as `waitpid(2)` reports it.
public enum TerminationStatus: Equatable, Sendable {
    /// It called `exit` with this code.
    case exited(Int32)
    /// A signal ended it.
    case signaled(Signal)

    /// `{"exit_code": N}` or `{"signal": N}`.
    public var json: JSONValue {
        switch self {
        case .exited(let code): .object(["exit_code": .int(Int64(code))])
        case .signaled(let signal): .object(["signal": .int(Int64(signal.rawValue))])
        }
    }

    /// The shell's exit code for it: the code itself, or 128 plus the signal number.
    public var shellExitCode: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal.rawValue
        }
    }
}
