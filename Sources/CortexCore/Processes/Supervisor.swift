import CCortexShims
import Glibc

/// Runs one worker to its end, the way `cortex-spawn`'s detached supervisor process does
/// (DESIGN.md, "Heartbeats and processes"): it starts the worker in its own session and process
/// group, keeps a bounded head + tail of its stdout and stderr in log files, touches its
/// heartbeat, stops its group on timeout or on a stop signal (SIGTERM, then SIGKILL after the
/// grace), reaps it, and says how it ended. It knows nothing of the journal: the caller records.
///
/// One thread, one `poll(2)` loop over the two pipes, a pidfd and a signalfd, woken by output,
/// by the worker's end, by a signal, or by the nearest timer; never by a sleep.
///
/// - The worker's end is watched with a pidfd (`pidfd_open`, Linux 5.3) rather than SIGCHLD:
///   it concerns this one child only, so nothing process-wide is changed and supervisors can
///   share a process (tests run them in parallel) without taking each other's SIGCHLD.
/// - When the worker ends, whatever is left of its process group is sent SIGKILL before the
///   worker is reaped (its zombie keeps the group id from naming anyone else): a worker's
///   helpers do not outlive it untracked, holding its pipes.
public enum Supervisor {
    /// Bytes asked of one `read(2)`: large reads keep a fast writer fast.
    static let readChunkBytes = 64 * 1024
    /// Reads of one stream per wake-up, so timers and the other stream are served under a flood.
    static let readsPerWakeup = 16
    /// Reads after the worker's end: enough to empty the largest pipe an unprivileged worker
    /// can make (1 MiB), never more, so a process that escaped the group cannot keep us here.
    static let drainReads = (1 << 20) / readChunkBytes + 1
    /// Logs are rewritten at most this often while output changes.
    static let logIntervalNanoseconds: UInt64 = 1_000_000_000

    /// Starts the worker of `plan`, calls `onStart` with its identity before anything else
    /// happens (an error thrown there kills the worker's group and is rethrown), supervises it
    /// to its end and returns how it ended.
    ///
    /// Call it from a process's only thread: the plan's stop signals are blocked in the calling
    /// thread (and stay blocked, so a late one cannot end the supervisor before its caller
    /// records the exit), and a signal sent to the process reaches the signalfd only when no
    /// other thread leaves it unblocked. Workers start with an empty signal mask and stdin on
    /// `/dev/null`. An ignored SIGCHLD (inherited across exec) is reset to the default, or the
    /// kernel would reap the worker and its status would be lost.
    /// - Throws: `CortexError` when the logs cannot be written at start, the program cannot be
    ///   started, or the system refuses a descriptor; the worker is never left running or unreaped.
    public static func run(_ plan: SupervisionPlan, onStart: (ProcessIdentity) throws(CortexError) -> Void)
        throws(CortexError) -> SupervisedExit
    {
        guard plan.heartbeatIntervalMilliseconds > 0, plan.graceMilliseconds >= 0, (plan.timeoutMilliseconds ?? 0) >= 0 else {
            throw .usage("the heartbeat interval must be positive, the grace and the timeout not negative")
        }
        let supervision = Supervision(plan)
        try supervision.watchStopSignals()
        try supervision.writeEmptyLogs()
        // Touched before the worker starts, so it finds its heartbeat there; a path that cannot
        // be touched is reported before anything runs.
        if let heartbeat = plan.heartbeatPath { try Files.touch(heartbeat) }
        let identity = try supervision.start()
        do {
            try onStart(identity)
            try supervision.superviseUntilExit()
        } catch {
            supervision.killGroupAndReap()
            throw error
        }
        return try supervision.finish()
    }
}

/// The descriptors and state of one supervised worker; closes its descriptors when it goes away.
final class Supervision {
    let plan: SupervisionPlan
    var stdout: CapturedStream
    var stderr: CapturedStream
    var pid: pid_t = 0
    var pidFD: Int32 = -1
    var signalFD: Int32 = -1
    var buffer = [UInt8](repeating: 0, count: Supervisor.readChunkBytes)

    var timedOut = false
    var stopSignal: Int32?
    var stopping = false
    var killedAfterGrace = false
    var writeFailure: CortexError?
    var reaped = false

    var timeoutDue: UInt64?
    var killDue: UInt64?
    var heartbeatDue: UInt64?
    var logsDue: UInt64?
    var lastLogWrite: UInt64 = 0

    init(_ plan: SupervisionPlan) {
        self.plan = plan
        stdout = CapturedStream(log: plan.stdoutLog, capture: BoundedCapture(headLimit: plan.headLimit, tailLimit: plan.tailLimit))
        stderr = CapturedStream(log: plan.stderrLog, capture: BoundedCapture(headLimit: plan.headLimit, tailLimit: plan.tailLimit))
    }

    deinit {
        for fd in [pidFD, signalFD, stdout.fd, stderr.fd] where fd >= 0 { POSIX.close(fd) }
    }

    /// Blocks the stop signals in this thread and opens a signalfd for them.
    func watchStopSignals() throws(CortexError) {
        // An ignored SIGCHLD survives exec and would make the kernel reap the worker, losing its status.
        signal(SIGCHLD, SIG_DFL)
        guard !plan.stopSignals.isEmpty else { return }
        var set = sigset_t()
        sigemptyset(&set)
        for signal in plan.stopSignals { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signalFD = cortex_signalfd(&set)
        if signalFD < 0 { throw .system("open", "a signalfd", Errno.current) }
    }

    /// Spawns the worker with its streams on pipes and opens its pidfd; returns its identity.
    func start() throws(CortexError) -> ProcessIdentity {
        let out = try withPath("create", "a pipe") { () throws(Errno) in try POSIX.pipe() }
        stdout.fd = out.read
        let err: (read: Int32, write: Int32)
        do throws(CortexError) {
            err = try withPath("create", "a pipe") { () throws(Errno) in try POSIX.pipe() }
        } catch {
            POSIX.close(out.write)
            throw error
        }
        stderr.fd = err.read
        let request = SpawnRequest(
            arguments: plan.arguments, environment: plan.environment, workingDirectory: plan.workingDirectory,
            standardOutput: out.write, standardError: err.write, newSession: true)
        let spawned = Result { () throws(CortexError) in try Spawner.spawn(request) }
        // The child holds its own copies; ours must go so the pipes reach end of file when it ends.
        POSIX.close(out.write)
        POSIX.close(err.write)
        pid = try spawned.get()
        do throws(CortexError) {
            for fd in [stdout.fd, stderr.fd] {
                try withPath("configure", "a pipe") { () throws(Errno) in try POSIX.setNonBlocking(fd) }
            }
            pidFD = cortex_pidfd_open(pid)
            if pidFD < 0 {
                if errno == ENOSYS { throw .configuration("supervising a worker needs Linux 5.3 or later (pidfd_open)") }
                throw .system("open", "a pidfd for process \(pid)", Errno.current)
            }
            // The worker is not reaped yet, so /proc/<pid> exists even if it has already ended.
            guard let identity = ProcessIdentity.of(pid: pid, includingZombies: true) else {
                throw .configuration("cannot read /proc/\(pid)/stat: is /proc mounted?")
            }
            let now = POSIX.monotonicNanoseconds()
            if let timeout = plan.timeoutMilliseconds { timeoutDue = deadline(afterMilliseconds: timeout, from: now) }
            return identity
        } catch {
            killGroupAndReap()
            throw error
        }
    }

    /// The loop: returns when the worker has ended (it is not reaped yet).
    func superviseUntilExit() throws(CortexError) {
        if plan.heartbeatPath != nil {
            heartbeatDue = deadline(afterMilliseconds: plan.heartbeatIntervalMilliseconds, from: POSIX.monotonicNanoseconds())
        }
        // Fixed slots; a negative descriptor is skipped by poll(2).
        var fds = [pollfd](repeating: pollfd(fd: -1, events: Int16(POLLIN), revents: 0), count: 4)
        while true {
            let now = POSIX.monotonicNanoseconds()
            runDueTimers(now: now)
            fds[0].fd = pidFD
            fds[1].fd = signalFD
            fds[2].fd = stdout.fd
            fds[3].fd = stderr.fd
            for index in fds.indices { fds[index].revents = 0 }
            if poll(&fds, nfds_t(fds.count), pollTimeout(now: now)) < 0 {
                if errno == EINTR { continue }
                throw .system("poll", "the worker's descriptors", Errno.current)
            }
            if fds[1].revents != 0 { readStopSignals() }
            if fds[2].revents != 0 { read(&stdout, reads: Supervisor.readsPerWakeup) }
            if fds[3].revents != 0 { read(&stderr, reads: Supervisor.readsPerWakeup) }
            if fds[0].revents != 0 { return }
        }
    }

    /// After the worker's end: stops its leftovers, reaps it, takes what its pipes still hold,
    /// and writes the logs a last time.
    func finish() throws(CortexError) -> SupervisedExit {
        let exit = try reap()
        read(&stdout, reads: Supervisor.drainReads)
        read(&stderr, reads: Supervisor.drainReads)
        writeLogs(now: POSIX.monotonicNanoseconds())
        return SupervisedExit(
            exit: exit, timedOut: timedOut, stopSignal: stopSignal, killedAfterGrace: killedAfterGrace, stdout: stdout.summary,
            stderr: stderr.summary, writeFailure: writeFailure)
    }

    /// SIGKILL to the whole group, then reap the worker; for failures, where no result is returned.
    func killGroupAndReap() {
        guard pid > 0, !reaped else { return }
        _ = try? reap()
    }

    private func reap() throws(CortexError) -> ProcessExit {
        // Until the worker is reaped its pid cannot be reused, so the group id names only its group.
        kill(-pid, SIGKILL)
        reaped = true
        guard let exit = try Spawner.waitForExit(pid) else { throw .corrupt("process \(pid) did not end") }
        return exit
    }

    private func runDueTimers(now: UInt64) {
        if let due = timeoutDue, now >= due {
            timeoutDue = nil
            if !stopping {
                timedOut = true
                beginStop(forwarding: SIGTERM, now: now)
            }
        }
        if let due = killDue, now >= due {
            killDue = nil
            killedAfterGrace = true
            kill(-pid, SIGKILL)
        }
        if let due = heartbeatDue, now >= due { touchHeartbeat(now: now) }
        if let due = logsDue, now >= due { writeLogs(now: now) }
    }

    /// Milliseconds until the nearest timer (rounded up, so it is due when poll returns), or -1.
    private func pollTimeout(now: UInt64) -> Int32 {
        guard let due = [timeoutDue, killDue, heartbeatDue, logsDue].compactMap({ $0 }).min() else { return -1 }
        guard due > now else { return 0 }
        return Int32(min(UInt64(Int32.max), (due - now + 999_999) / 1_000_000))
    }

    /// `now` plus a duration from the command line, saturating: a timeout of years must not trap.
    private func deadline(afterMilliseconds milliseconds: Int64, from now: UInt64) -> UInt64 {
        let (nanoseconds, overflow) = UInt64(max(0, milliseconds)).multipliedReportingOverflow(by: 1_000_000)
        let (sum, later) = now.addingReportingOverflow(nanoseconds)
        return overflow || later ? UInt64.max : sum
    }

    /// Sends `signal` to the worker's group and starts the grace (once).
    private func beginStop(forwarding signal: Int32, now: UInt64) {
        kill(-pid, signal)
        guard !stopping else { return }
        stopping = true
        killDue = deadline(afterMilliseconds: plan.graceMilliseconds, from: now)
    }

    private func readStopSignals() {
        let recordSize = Int(cortex_signalfd_record_size())
        var records = [UInt8](repeating: 0, count: recordSize * 8)
        while true {
            // A signalfd read fails only when nothing is pending (EAGAIN).
            let got = records.withUnsafeMutableBytes { raw in (try? POSIX.readAvailable(signalFD, into: raw)) ?? nil }
            guard let got, got > 0 else { return }
            for offset in stride(from: 0, to: got, by: recordSize) {
                // ssi_signo is the first field of struct signalfd_siginfo.
                let signal = Int32(records.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) })
                stopSignal = stopSignal ?? signal
                beginStop(forwarding: signal, now: POSIX.monotonicNanoseconds())
            }
        }
    }

    /// Up to `reads` reads of `stream`; closes it at end of file. A read error also ends the
    /// stream: the worker is still watched through its pidfd.
    private func read(_ stream: inout CapturedStream, reads: Int) {
        guard stream.fd >= 0 else { return }
        for _ in 0..<reads {
            let got = buffer.withUnsafeMutableBytes { raw -> Int? in
                do { return try POSIX.readAvailable(stream.fd, into: raw) } catch { return 0 }
            }
            guard let got else { return }
            if got == 0 {
                POSIX.close(stream.fd)
                stream.fd = -1
                return
            }
            buffer.withUnsafeBufferPointer { stream.capture.append($0[..<got]) }
            stream.changed = true
            if logsDue == nil {
                logsDue = max(POSIX.monotonicNanoseconds(), lastLogWrite + Supervisor.logIntervalNanoseconds)
            }
        }
    }

    private func touchHeartbeat(now: UInt64) {
        guard let path = plan.heartbeatPath else { return }
        heartbeatDue = deadline(afterMilliseconds: plan.heartbeatIntervalMilliseconds, from: now)
        do throws(CortexError) { try Files.touch(path) } catch { writeFailure = writeFailure ?? error }
    }

    /// Creates both logs empty before anything runs, so a log path that cannot be written is
    /// reported before a worker starts.
    func writeEmptyLogs() throws(CortexError) {
        for path in [plan.stdoutLog, plan.stderrLog] { try AtomicFile.replace(path, with: [], durability: .processCrash) }
        lastLogWrite = POSIX.monotonicNanoseconds()
    }

    /// Rewrites the logs whose stream changed; a failure is kept for the result.
    private func writeLogs(now: UInt64) {
        logsDue = nil
        lastLogWrite = now
        for stream in [stdout, stderr] where stream.changed {
            do throws(CortexError) {
                try AtomicFile.replace(stream.log, with: stream.capture.rendered, durability: .processCrash)
            } catch {
                writeFailure = writeFailure ?? error
            }
        }
        stdout.changed = false
        stderr.changed = false
    }
}

/// One output stream of the worker: the read end of its pipe (-1 once closed) and its capture.
struct CapturedStream {
    let log: String
    var capture: BoundedCapture
    var fd: Int32 = -1
    var changed = false

    init(log: String, capture: BoundedCapture) {
        self.log = log
        self.capture = capture
    }

    var summary: StreamSummary {
        StreamSummary(bytesSeen: capture.totalBytes, bytesKept: Int(capture.totalBytes - capture.omittedBytes))
    }
}
