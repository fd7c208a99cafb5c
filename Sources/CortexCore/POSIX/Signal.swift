import Glibc

/// A signal number, with swift-subprocess's names for the ones Cortex sends, blocks or reports:
/// `process.signalGroup(.terminate)` rather than `signalGroup(SIGTERM)`.
public struct Signal: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The C signal number.
    public var rawValue: Int32

    /// Wraps a C signal number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Signal 0: sends nothing, only checks that the process exists and may be signalled.
    public static let probe = Signal(rawValue: 0)
    /// `SIGHUP`: the terminal went away.
    public static let hangup = Signal(rawValue: SIGHUP)
    /// `SIGINT`: Ctrl-C.
    public static let interrupt = Signal(rawValue: SIGINT)
    /// `SIGQUIT`: Ctrl-\, with a core dump.
    public static let quit = Signal(rawValue: SIGQUIT)
    /// `SIGILL`: an illegal instruction.
    public static let illegalInstruction = Signal(rawValue: SIGILL)
    /// `SIGABRT`: `abort()`, a failed assertion or a Swift trap.
    public static let abort = Signal(rawValue: SIGABRT)
    /// `SIGBUS`: a bad memory access (a truncated mapped file).
    public static let busError = Signal(rawValue: SIGBUS)
    /// `SIGFPE`: an arithmetic fault.
    public static let floatingPointException = Signal(rawValue: SIGFPE)
    /// `SIGKILL`: ends the process; cannot be caught, blocked or ignored.
    public static let kill = Signal(rawValue: SIGKILL)
    /// `SIGUSR1`.
    public static let userDefinedOne = Signal(rawValue: SIGUSR1)
    /// `SIGSEGV`: a segmentation fault.
    public static let segmentationFault = Signal(rawValue: SIGSEGV)
    /// `SIGUSR2`.
    public static let userDefinedTwo = Signal(rawValue: SIGUSR2)
    /// `SIGPIPE`: a write to a pipe nobody reads.
    public static let brokenPipe = Signal(rawValue: SIGPIPE)
    /// `SIGALRM`: a timer.
    public static let alarm = Signal(rawValue: SIGALRM)
    /// `SIGTERM`: please stop (what `kill` sends by default).
    public static let terminate = Signal(rawValue: SIGTERM)
    /// `SIGCHLD`: a child ended or stopped.
    public static let childStatusChange = Signal(rawValue: SIGCHLD)
    /// `SIGXCPU`: the CPU time limit was reached.
    public static let cpuLimitExceeded = Signal(rawValue: SIGXCPU)
    /// `SIGXFSZ`: the file size limit was reached.
    public static let fileSizeLimitExceeded = Signal(rawValue: SIGXFSZ)

    /// The common name (`SIGTERM`), or nil for a number without one.
    public var name: String? {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT", SIGBUS: "SIGBUS",
            SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1", SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE",
            SIGALRM: "SIGALRM", SIGTERM: "SIGTERM", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ",
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

extension POSIX {
    /// Blocks `signals` in the calling thread: they stay pending (for a signalfd,
    /// `waitForSignal` or a child that resets its mask) instead of running their disposition.
    /// The corresponding C function is `sigprocmask(SIG_BLOCK, …)`.
    public static func blockSignals(_ signals: [Signal]) {
        var set = signalSet(signals)
        sigprocmask(SIG_BLOCK, &set, nil)
    }

    /// Waits up to `milliseconds` for one of `signals` (which must be blocked) to be pending,
    /// takes it and returns it; nil when the time passed first. The corresponding C function is
    /// `sigtimedwait`; an interruption starts the same wait again.
    public static func waitForSignal(_ signals: [Signal], milliseconds: Int64) -> Signal? {
        var set = signalSet(signals)
        var timeout = timespec(tv_sec: Int(milliseconds / 1000), tv_nsec: Int((milliseconds % 1000) * 1_000_000))
        guard let got = try? retryingInterrupts({ sigtimedwait(&set, nil, &timeout) }), got > 0 else { return nil }
        return Signal(rawValue: got)
    }

    /// A `sigset_t` holding exactly `signals`.
    package static func signalSet(_ signals: [Signal]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal.rawValue) }
        return set
    }
}
