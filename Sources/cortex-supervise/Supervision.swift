import CSupervisorLibc

/// One output stream of the worker: the read end of its pipe (-1 once closed), its log and capture.
struct CapturedStream {
    let log: String
    var capture: Capture
    var fd: Int32 = -1
    var changed = false
}

/// How the worker ended: `exited:N` or `signaled:N`, as `cortex-spawn _supervise --exit` reads it.
struct WorkerEnd {
    var status: Int32
    var text: String {
        supervisor_wifexited(status) != 0
            ? "exited:" + String(supervisor_wexitstatus(status)) : "signaled:" + String(supervisor_wtermsig(status))
    }
}

/// One supervised run: starts the worker in its own session and process group, keeps a bounded
/// head + tail of its stdout and stderr in log files, touches its heartbeat, stops its group on
/// timeout or on a stop signal (SIGTERM, then SIGKILL after the grace), and reaps it.
///
/// One thread, one `poll(2)` loop over the two pipes, a pidfd and a signalfd, woken by output,
/// by the worker's end, by a signal, or by the nearest timer; never by a sleep. The worker's
/// end is watched with a pidfd (Linux 5.3), so SIGCHLD is left alone; when it ends, whatever
/// is left of its group is sent SIGKILL before it is reaped (its zombie keeps the group id from
/// naming anyone else), so helpers of the worker do not outlive it holding its pipes.
final class Supervision {
    static let readChunkBytes = 64 * 1024
    /// Reads of one stream per wake-up, so timers and the other stream are served under a flood.
    static let readsPerWakeup = 16
    /// Reads after the worker's end: enough to empty the largest pipe an unprivileged worker
    /// can make (1 MiB), never more, so a process that escaped the group cannot keep us here.
    static let drainReads = (1 << 20) / readChunkBytes + 1
    /// Logs are rewritten at most this often while output changes.
    static let logIntervalNanoseconds: UInt64 = 1_000_000_000

    let options: Options
    var stdout: CapturedStream
    var stderr: CapturedStream
    var pid: pid_t = 0
    var startTicks: UInt64 = 0
    var pidFD: Int32 = -1
    var signalFD: Int32 = -1
    var buffer = [UInt8](repeating: 0, count: Supervision.readChunkBytes)

    var timedOut = false
    var stopSignal: Int32 = 0
    var stopping = false
    var killedAfterGrace = false
    var writeFailure: String?
    /// The cgroups made for this run (removed after it), and the limit it reached, if any.
    var madeCgroups: [String] = []
    var limitReached: String?

    var timeoutDue: UInt64?
    var killDue: UInt64?
    var heartbeatDue: UInt64?
    var logsDue: UInt64?
    var lastLogWrite: UInt64 = 0
    var startedAt: UInt64 = 0

    init(_ options: Options) {
        self.options = options
        stdout = CapturedStream(log: options.stdoutLog, capture: Capture(headLimit: options.headLimit, tailLimit: options.tailLimit))
        stderr = CapturedStream(log: options.stderrLog, capture: Capture(headLimit: options.headLimit, tailLimit: options.tailLimit))
    }

    /// Opens a signalfd for SIGTERM and SIGINT, which stay blocked (as `cortex-spawn` left them),
    /// so one sent before this point is read here, and one sent after the end waits for the next image.
    func watchStopSignals() -> String? {
        // An ignored SIGCHLD survives exec and would make the kernel reap the worker, losing its status.
        supervisor_default_sigchld()
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        sigprocmask(SIG_BLOCK, &set, nil)
        signalFD = supervisor_signalfd(&set)
        return signalFD < 0 ? "cannot open a signalfd: " + describe(supervisor_errno()) : nil
    }

    /// Creates both logs empty and touches the heartbeat, so a path that cannot be written is
    /// reported before the worker starts.
    func prepareFiles() -> String? {
        for path in [options.stdoutLog, options.stderrLog] {
            if let failure = replaceFile(path, with: []) { return failure }
        }
        lastLogWrite = monotonicNanoseconds()
        if let heartbeat = options.heartbeat, supervisor_touch(heartbeat) != 0 {
            return "cannot touch " + heartbeat + ": " + describe(supervisor_errno())
        }
        return nil
    }

    /// Starts the worker with its streams on pipes, stdin on /dev/null, an empty signal mask,
    /// default dispositions and no descriptor of ours; opens its pidfd and reads its start time.
    func start(
        _ command: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, environment: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    ) -> String? {
        guard let resolved = resolve(command[0]!, environment: environment) else {
            return "no program " + String(cString: command[0]!) + " (not a path, and not found in PATH)"
        }
        var program = resolved
        var command = command
        if hasLimits {
            if let failure = makeCgroups() { return failure }
            guard let (me, limited) = limitedCommand(program: resolved, command) else {
                removeCgroups()
                return "cannot find this program's own path in /proc/self/exe"
            }
            program = me
            command = limited
        }
        var out: [Int32] = [-1, -1]
        var err: [Int32] = [-1, -1]
        guard supervisor_pipe(&out) == 0 else { return "cannot create a pipe: " + describe(supervisor_errno()) }
        guard supervisor_pipe(&err) == 0 else {
            close(out[0])
            close(out[1])
            return "cannot create a pipe: " + describe(supervisor_errno())
        }
        stdout.fd = out[0]
        stderr.fd = err[0]
        // Every setup step is checked: a failed one starts nothing (a missing dup2 would hand
        // the worker our own stream instead of its pipe).
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        var none = sigset_t()
        sigemptyset(&none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for number in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM] { sigaddset(&defaults, number) }
        var result = posix_spawn_file_actions_init(&actions)
        if result == 0 {
            var steps: [Int32] = [
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0),
                posix_spawn_file_actions_adddup2(&actions, out[1], 1),
                posix_spawn_file_actions_adddup2(&actions, err[1], 2),
            ]
            if let directory = options.workingDirectory { steps.append(supervisor_spawn_addchdir(&actions, directory)) }
            steps.append(supervisor_spawn_addclosefrom(&actions, 3))
            result = steps.first { $0 != 0 } ?? posix_spawnattr_init(&attributes)
            if result == 0 {
                result =
                    [
                        posix_spawnattr_setsigmask(&attributes, &none), posix_spawnattr_setsigdefault(&attributes, &defaults),
                        posix_spawnattr_setflags(
                            &attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) | supervisor_spawn_flag_setsid()),
                    ].first { $0 != 0 }
                    ?? program.withCString { path in posix_spawn(&pid, path, &actions, &attributes, command, environment) }
                posix_spawnattr_destroy(&attributes)
            }
            posix_spawn_file_actions_destroy(&actions)
        }
        // The child holds its own copies; ours must go so the pipes reach end of file when it ends.
        close(out[1])
        close(err[1])
        guard result == 0 else {
            pid = 0
            return "cannot start " + program + ": " + describe(result)
        }
        startedAt = monotonicNanoseconds()
        pidFD = supervisor_pidfd_open(pid)
        guard pidFD >= 0 else {
            let code = supervisor_errno()
            return code == ENOSYS
                ? "supervising a worker needs Linux 5.3 or later (pidfd_open)" : "cannot open a pidfd: " + describe(code)
        }
        // The worker is not reaped yet, so /proc/<pid> exists even if it has already ended.
        guard let ticks = processStartTicks(pid) else { return "cannot read /proc/" + String(pid) + "/stat: is /proc mounted?" }
        startTicks = ticks
        _ = supervisor_set_nonblocking(stdout.fd)
        _ = supervisor_set_nonblocking(stderr.fd)
        if let timeout = options.timeoutMilliseconds { timeoutDue = deadline(afterMilliseconds: timeout, from: startedAt) }
        return nil
    }

    /// The loop: returns when the worker has ended (it is not reaped yet).
    func superviseUntilExit() -> String? {
        if case .some = options.heartbeat {
            heartbeatDue = deadline(afterMilliseconds: options.heartbeatMilliseconds, from: monotonicNanoseconds())
        }
        // Fixed slots; a negative descriptor is skipped by poll(2).
        var fds = [pollfd](repeating: pollfd(fd: -1, events: Int16(POLLIN), revents: 0), count: 4)
        while true {
            let now = monotonicNanoseconds()
            runDueTimers(now: now)
            fds[0].fd = pidFD
            fds[1].fd = signalFD
            fds[2].fd = stdout.fd
            fds[3].fd = stderr.fd
            for index in 0..<4 { fds[index].revents = 0 }
            if poll(&fds, 4, pollTimeout(now: now)) < 0 {
                if supervisor_errno() == EINTR { continue }
                return "poll failed: " + describe(supervisor_errno())
            }
            if fds[1].revents != 0 { readStopSignals() }
            if fds[2].revents != 0 { read(&stdout, reads: Supervision.readsPerWakeup) }
            if fds[3].revents != 0 { read(&stderr, reads: Supervision.readsPerWakeup) }
            if fds[0].revents != 0 { return nil }
        }
    }

    /// SIGKILL to what is left of the group, then reap the worker; takes what its pipes still
    /// hold and writes the logs a last time. Returns how it ended (nil when there is no worker).
    func finish() -> WorkerEnd? {
        guard pid > 0 else {
            removeCgroups()
            return nil
        }
        // Until the worker is reaped its pid cannot be reused, so the group id names only its group.
        kill(-pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if supervisor_errno() != EINTR { return nil }
        }
        pid = 0
        readLimitCounts()
        killCgroupMembers()
        read(&stdout, reads: Supervision.drainReads)
        read(&stderr, reads: Supervision.drainReads)
        writeLogs(now: monotonicNanoseconds())
        removeCgroups()
        let end = WorkerEnd(status: status)
        // `case .none`, not `== nil`: comparing a String? would pull in Unicode tables.
        if case .none = limitReached, options.rlimitCPUSeconds != nil, supervisor_wifexited(status) == 0,
            supervisor_wtermsig(status) == SIGXCPU
        {
            limitReached = "cpu"
        }
        return end
    }

    /// Milliseconds the worker ran.
    var ranMilliseconds: UInt64 { startedAt == 0 ? 0 : (monotonicNanoseconds() - startedAt) / 1_000_000 }

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
        if let due = heartbeatDue, now >= due, let heartbeat = options.heartbeat {
            heartbeatDue = deadline(afterMilliseconds: options.heartbeatMilliseconds, from: now)
            // The first failure is kept (`??`, not `== nil`: comparing a String? would pull in
            // Unicode tables).
            if supervisor_touch(heartbeat) != 0 {
                writeFailure = writeFailure ?? "cannot touch " + heartbeat + ": " + describe(supervisor_errno())
            }
        }
        if let due = logsDue, now >= due { writeLogs(now: now) }
    }

    /// Milliseconds until the nearest timer (rounded up, so it is due when poll returns), or -1.
    private func pollTimeout(now: UInt64) -> Int32 {
        var nearest = UInt64.max
        for due in [timeoutDue, killDue, heartbeatDue, logsDue] {
            if let due, due < nearest { nearest = due }
        }
        guard nearest != UInt64.max else { return -1 }
        guard nearest > now else { return 0 }
        return Int32(min(UInt64(Int32.max), (nearest - now + 999_999) / 1_000_000))
    }

    /// Sends `signal` to the worker's group and starts the grace (once).
    private func beginStop(forwarding signal: Int32, now: UInt64) {
        kill(-pid, signal)
        guard !stopping else { return }
        stopping = true
        killDue = deadline(afterMilliseconds: options.graceMilliseconds, from: now)
    }

    private func readStopSignals() {
        let size = Int(supervisor_signalfd_record_size())
        var records = [UInt8](repeating: 0, count: size * 8)
        while true {
            // A signalfd read fails only when nothing is pending (EAGAIN).
            let got = records.withUnsafeMutableBytes { raw in CSupervisorLibc.read(signalFD, raw.baseAddress, raw.count) }
            guard got > 0 else { return }
            for offset in stride(from: 0, to: got, by: size) {
                let number = Int32(records.withUnsafeBytes { raw in supervisor_signalfd_signal(raw.baseAddress! + offset) })
                if stopSignal == 0 { stopSignal = number }
                beginStop(forwarding: number, now: monotonicNanoseconds())
            }
        }
    }

    /// Up to `reads` reads of `stream`; closes it at end of file. A read error also ends the
    /// stream: the worker is still watched through its pidfd.
    private func read(_ stream: inout CapturedStream, reads: Int) {
        guard stream.fd >= 0 else { return }
        for _ in 0..<reads {
            let fd = stream.fd
            let got = buffer.withUnsafeMutableBytes { raw in CSupervisorLibc.read(fd, raw.baseAddress, raw.count) }
            if got < 0 {
                let code = supervisor_errno()
                if code == EAGAIN || code == EINTR { return }
            }
            if got <= 0 {
                close(stream.fd)
                stream.fd = -1
                return
            }
            buffer.withUnsafeBufferPointer { stream.capture.append(UnsafeBufferPointer(rebasing: $0[0..<got])) }
            stream.changed = true
            if logsDue == nil { logsDue = max(monotonicNanoseconds(), lastLogWrite + Supervision.logIntervalNanoseconds) }
        }
    }

    /// Rewrites the logs whose stream changed; a failure is kept for the report.
    private func writeLogs(now: UInt64) {
        logsDue = nil
        lastLogWrite = now
        for stream in [stdout, stderr] where stream.changed {
            if let failure = replaceFile(stream.log, with: stream.capture.rendered) { writeFailure = writeFailure ?? failure }
        }
        stdout.changed = false
        stderr.changed = false
    }

    /// `now` plus a duration, saturating: a timeout of years must not trap.
    private func deadline(afterMilliseconds milliseconds: Int64, from now: UInt64) -> UInt64 {
        let (nanoseconds, overflow) = UInt64(max(0, milliseconds)).multipliedReportingOverflow(by: 1_000_000)
        let (sum, later) = now.addingReportingOverflow(nanoseconds)
        return overflow || later ? UInt64.max : sum
    }
}
