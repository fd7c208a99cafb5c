import CortexCore
import Glibc

extension POSIX {
    /// Waits until `fd` can be read (or, with `forWriting`, written) without blocking, or
    /// `timeoutMilliseconds` pass. True when ready, which includes an error or hang-up on the
    /// descriptor (the next read or write reports it). The corresponding C function is `poll`.
    public static func waitUntilReady(_ fd: Int32, forWriting: Bool, timeoutMilliseconds: Int32) throws(Errno) -> Bool {
        var request = pollfd(fd: fd, events: Int16(forWriting ? POLLOUT : POLLIN), revents: 0)
        return try retryingInterrupts { poll(&request, 1, max(0, timeoutMilliseconds)) } > 0
    }

    /// Runs `body` with `SIGPIPE` blocked in this thread and takes any `SIGPIPE` that `body`
    /// raised, so a write to a socket the peer closed fails with `EPIPE` instead of ending the
    /// process (for writes Cortex does not issue itself, such as OpenSSL's). The corresponding
    /// C functions are `pthread_sigmask`, `sigpending` and `sigtimedwait`.
    public static func withBrokenPipeSuppressed<Result, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure)
        -> Result
    {
        var pipeOnly = signalSet([.brokenPipe])
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &pipeOnly, &previous)
        let pendingBefore = brokenPipePending()
        defer {
            if !pendingBefore && brokenPipePending() {
                var now = timespec(tv_sec: 0, tv_nsec: 0)
                _ = sigtimedwait(&pipeOnly, nil, &now)
            }
            pthread_sigmask(SIG_SETMASK, &previous, nil)
        }
        return try body()
    }

    private static func brokenPipePending() -> Bool {
        var pending = sigset_t()
        sigpending(&pending)
        return sigismember(&pending, Signal.brokenPipe.rawValue) == 1
    }
}
