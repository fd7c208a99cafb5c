import CortexCore
import Glibc

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

    /// Ends the process by `signal` with its default action (what it would have done had the
    /// signal not been blocked and taken: a SIGTERM'd process ends with status 143), from any
    /// thread. The corresponding C functions are `signal`, `pthread_sigmask` and `raise`.
    public static func endProcess(by signal: Signal) -> Never {
        _ = Glibc.signal(signal.rawValue, SIG_DFL)
        var set = signalSet([signal])
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        raise(signal.rawValue)
        _exit(128 + signal.rawValue)
    }

    /// A `sigset_t` holding exactly `signals`.
    package static func signalSet(_ signals: [Signal]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal.rawValue) }
        return set
    }
}
