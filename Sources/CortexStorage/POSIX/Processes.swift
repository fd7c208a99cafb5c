import CCortexShims
import CortexCore
import Glibc

// Processes: identities, signals, spawning and reaping. CortexProcesses decides what to start,
// stop and wait for; the C calls that do it are here.

extension POSIX {
    /// The effective group id. The corresponding C function is `getegid`.
    public static var effectiveGroupID: UInt32 { getegid() }

    /// The supplementary groups of this process. The corresponding C function is `getgroups`.
    public static func supplementaryGroups() -> [UInt32] {
        let count = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(0, count)))
        let got = groups.isEmpty ? 0 : getgroups(count, &groups)
        return Array(groups.prefix(Int(max(0, got))))
    }

    /// Makes this whole process (every thread) run as `uid` and `gid` with exactly `groups`, for
    /// good, each step checked (see `cortex_drop_privileges`).
    public static func dropPrivileges(uid: UInt32, gid: UInt32, groups: [UInt32]) throws(Errno) {
        let result = groups.withUnsafeBufferPointer { cortex_drop_privileges(uid, gid, $0.baseAddress, $0.count) }
        if result != 0 { throw Errno(result) }
    }

    /// Sends `signal` to process `pid`; true when it was delivered. The corresponding C function is `kill`.
    @discardableResult
    public static func send(_ signal: Signal, toProcess pid: Int32) -> Bool { kill(pid, signal.rawValue) == 0 }

    /// Sends `signal` to every process of group `group`; true when it was delivered. The
    /// corresponding C function is `kill(-group, …)`.
    @discardableResult
    public static func send(_ signal: Signal, toGroup group: Int32) -> Bool { kill(-group, signal.rawValue) == 0 }

    /// A descriptor that becomes readable when process `pid` ends (it need not be a child). The
    /// corresponding C function is `pidfd_open`; `ENOSYS` before Linux 5.3.
    public static func processEndDescriptor(_ pid: Int32) throws(Errno) -> FileDescriptor {
        FileDescriptor(rawValue: try retryingInterrupts { cortex_pidfd_open(pid) })
    }

    /// Waits until `fd` can be read or `deadline` (on the `monotonicNanoseconds()` clock) passes;
    /// an interrupted wait starts again with what is left of the time. False on a timeout or a
    /// failed `poll`.
    public static func waitUntilReadable(_ fd: Int32, deadline: UInt64) -> Bool {
        var watch = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        func left() -> Int32 {
            let now = monotonicNanoseconds()
            return now >= deadline ? 0 : Int32(min(Int64(Int32.max), Int64((deadline - now) / 1_000_000)))
        }
        return ((try? retryingInterrupts { poll(&watch, 1, left()) }) ?? -1) > 0
    }

    /// The processors online. The corresponding C function is `sysconf(_SC_NPROCESSORS_ONLN)`.
    public static var onlineProcessors: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// An anonymous file in memory, close-on-exec, named `name` for `/proc`. The corresponding C
    /// function is `memfd_create`.
    public static func memoryFile(_ name: String) throws(Errno) -> Int32 {
        try retryingInterrupts { cortex_memfd(name) }
    }

    /// Moves the file position of `fd` back to the start. The corresponding C function is
    /// `lseek(fd, 0, SEEK_SET)`.
    public static func rewind(_ fd: Int32) throws(Errno) {
        _ = try retryingInterrupts { lseek(fd, 0, SEEK_SET) }
    }

    /// How a step of `spawn` failed: which step, and the code it returned.
    public struct SpawnFailure: Error, Equatable, Sendable {
        /// What was being set up or done.
        public var step: Step
        /// The code the step returned.
        public var errno: Errno

        /// A step of `spawn`.
        public enum Step: Equatable, Sendable {
            /// A `posix_spawn_file_actions_*` or `posix_spawnattr_*` setup call, by what it sets up.
            case setUp(String)
            /// Entering the working directory (`posix_spawn_file_actions_addchdir_np`).
            case changeDirectory
            /// Closing the descriptors from 3 up (`posix_spawn_file_actions_addclosefrom_np`).
            case closeDescriptors
            /// `posix_spawn` itself.
            case start
        }
    }

    /// Starts the program at `path` with `arguments` (its `argv`, the program first) and exactly
    /// `environment`, with swift-subprocess's hygiene: `standardStreams` (0, 1, 2; nil:
    /// `/dev/null`) duplicated in, every descriptor from 3 up closed, an empty signal mask and
    /// `resetSignals` at their default disposition, optionally a new session, in
    /// `workingDirectory` when given. Every setup step is checked: nothing starts half set up.
    /// Returns the child's pid; the caller reaps it (`waitForChild`). The corresponding C
    /// function is `posix_spawn`.
    public static func spawn(
        _ path: String, arguments: [String], environment: [String: String], workingDirectory: String?,
        standardStreams: [FileDescriptor?], newSession: Bool, resetSignals: [Signal]
    ) throws(SpawnFailure) -> Int32 {
        func check(_ result: Int32, _ step: String) throws(SpawnFailure) {
            if result != 0 { throw SpawnFailure(step: .setUp(step), errno: Errno(result)) }
        }
        var actions = posix_spawn_file_actions_t()
        try check(posix_spawn_file_actions_init(&actions), "file actions")
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, source) in standardStreams.enumerated() {
            if let source {
                try check(
                    posix_spawn_file_actions_adddup2(&actions, source.rawValue, Int32(target)), "descriptor \(source.rawValue) as \(target)"
                )
            } else {
                let flags = target == 0 ? O_RDONLY : O_WRONLY
                try check(posix_spawn_file_actions_addopen(&actions, Int32(target), "/dev/null", flags, 0), "/dev/null as \(target)")
            }
        }
        if let workingDirectory {
            let result = withUnsafeMutablePointer(to: &actions) { cortex_spawn_addchdir(UnsafeMutableRawPointer($0), workingDirectory) }
            if result != 0 { throw SpawnFailure(step: .changeDirectory, errno: Errno(result)) }
        }
        let closing = withUnsafeMutablePointer(to: &actions) { cortex_spawn_addclosefrom(UnsafeMutableRawPointer($0), 3) }
        if closing != 0 { throw SpawnFailure(step: .closeDescriptors, errno: Errno(closing)) }

        var attributes = posix_spawnattr_t()
        try check(posix_spawnattr_init(&attributes), "attributes")
        defer { posix_spawnattr_destroy(&attributes) }
        var none = signalSet([])
        try check(posix_spawnattr_setsigmask(&attributes, &none), "signal mask")
        var defaults = signalSet(resetSignals)
        try check(posix_spawnattr_setsigdefault(&attributes, &defaults), "signal defaults")
        var flags = Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newSession { flags |= cortex_spawn_flag_setsid() }
        try check(posix_spawnattr_setflags(&attributes, flags), "flags")

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard result == 0 else { throw SpawnFailure(step: .start, errno: Errno(result)) }
        return pid
    }

    /// `spawn` as another user: fork, then (in C, raw system calls only) the same hygiene, the
    /// switch to `uid`, `gid` and exactly `groups` (checked), the working directory entered as
    /// that user, and `execve`. Returns the child's pid. The corresponding C function is
    /// `cortex_spawn_as`.
    public static func spawn(
        _ path: String, arguments: [String], environment: [String: String], workingDirectory: String?,
        standardStreams: [FileDescriptor?], newSession: Bool, resetSignals: [Signal], uid: UInt32, gid: UInt32, groups: [UInt32]
    ) throws(Errno) -> Int32 {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        func stream(_ index: Int) -> Int32 { index < standardStreams.count ? standardStreams[index]?.rawValue ?? -1 : -1 }
        var pid: pid_t = 0
        let result = groups.withUnsafeBufferPointer { groups in
            resetSignals.map(\.rawValue).withUnsafeBufferPointer { signals in
                cortex_spawn_as(
                    &pid, path, argv, envp, workingDirectory, stream(0), stream(1), stream(2), newSession ? 1 : 0,
                    signals.baseAddress, signals.count, uid, gid, groups.baseAddress, groups.count)
            }
        }
        guard result == 0 else { throw Errno(result) }
        return pid
    }

    /// Waits for child `pid` to end (retrying `EINTR`) and says how; with `blocking` false, nil
    /// at once when it is still running. The corresponding C function is `waitpid`.
    public static func waitForChild(_ pid: Int32, blocking: Bool = true) throws(Errno) -> TerminationStatus? {
        var status: Int32 = 0
        let result = try retryingInterrupts { waitpid(pid, &status, blocking ? 0 : WNOHANG) }
        if result == 0 { return nil }
        if cortex_wifexited(status) != 0 { return .exited(cortex_wexitstatus(status)) }
        return .signaled(Signal(rawValue: cortex_wtermsig(status)))
    }
}
