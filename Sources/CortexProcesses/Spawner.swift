import CortexCore
import CortexStorage

/// What to start, and how its standard streams are wired.
public struct SpawnRequest: Sendable {
    /// The program and its arguments; a program name without `/` is looked up in `PATH`.
    public var arguments: [String]
    /// The whole environment of the new process.
    public var environment: [String: String]
    /// The working directory, or nil to keep the caller's.
    public var workingDirectory: String?
    /// A descriptor of the caller that becomes the child's 0 (nil: `/dev/null`).
    public var standardInput: Int32?
    /// A descriptor of the caller that becomes the child's 1 (nil: `/dev/null`).
    public var standardOutput: Int32?
    /// A descriptor of the caller that becomes the child's 2 (nil: `/dev/null`).
    public var standardError: Int32?
    /// Start a new session (and so a new process group whose id is the child's pid), so the
    /// whole tree can be signalled with `kill(-pid, …)` and the caller's terminal is left alone.
    public var newSession: Bool
    /// The user the child runs as (groups included), or nil for the caller's own. Only root can
    /// ask for another user; the change happens in the child before `execve`, and the working
    /// directory is entered as that user (docs/decisions/022-requester-rights.md).
    public var credentials: Credentials?

    /// A request; streams default to `/dev/null`, a new session to true.
    public init(
        arguments: [String], environment: [String: String], workingDirectory: String? = nil, standardInput: Int32? = nil,
        standardOutput: Int32? = nil, standardError: Int32? = nil, newSession: Bool = true, credentials: Credentials? = nil
    ) {
        self.credentials = credentials
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.standardInput = standardInput
        self.standardOutput = standardOutput
        self.standardError = standardError
        self.newSession = newSession
    }
}

/// Starting and reaping child processes with the descriptor and signal hygiene of
/// swift-subprocess: `posix_spawn` (never `fork` from Swift), an empty signal mask and default
/// dispositions in the child, every descriptor from 3 up closed, optionally a new session.
public enum Spawner {
    /// Signals whose disposition the child gets back to default (a caller may ignore or handle them).
    static let resetSignals: [Signal] = [
        .brokenPipe, .interrupt, .terminate, .hangup, .quit, .childStatusChange, .userDefinedOne, .userDefinedTwo, .alarm,
    ]

    /// Starts `request` and returns the child's pid; the caller must reap it (`waitForExit`).
    /// Every step of the `posix_spawn` setup is checked: a failed one throws, and nothing is
    /// started with half of its setup (a missing `dup2` would hand the child the caller's stream).
    /// - Throws: `CortexError.notFound` when the program does not exist, `.io` otherwise.
    public static func spawn(_ request: SpawnRequest) throws(CortexError) -> Int32 {
        guard let program = request.arguments.first, !program.isEmpty else { throw .usage("no command to run") }
        if let credentials = request.credentials { return try spawn(request, as: credentials) }
        guard let path = ExecutableSearch.find(program) else {
            throw .notFound("no program \(program) (not a path, and not found in PATH)")
        }
        /// Turns a setup call's nonzero return code into the error to throw.
        func check(_ result: Int32, _ step: String) throws(CortexError) {
            if result != 0 { throw .system("set up \(step) for", program, Errno(result)) }
        }
        var actions = posix_spawn_file_actions_t()
        try check(posix_spawn_file_actions_init(&actions), "file actions")
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (source, target) in [(request.standardInput, 0), (request.standardOutput, 1), (request.standardError, 2)] {
            if let source {
                try check(posix_spawn_file_actions_adddup2(&actions, source, Int32(target)), "descriptor \(source) as \(target)")
            } else {
                let flags = target == 0 ? [.readOnly] : [.writeOnly]
                try check(posix_spawn_file_actions_addopen(&actions, Int32(target), "/dev/null", flags, 0), "/dev/null as \(target)")
            }
        }
        if let directory = request.workingDirectory {
            let result = withUnsafeMutablePointer(to: &actions) { cortex_spawn_addchdir(UnsafeMutableRawPointer($0), directory) }
            if result != 0 { throw .system("change into", directory, Errno(result)) }
        }
        let closing = withUnsafeMutablePointer(to: &actions) { cortex_spawn_addclosefrom(UnsafeMutableRawPointer($0), 3) }
        if closing != 0 { throw .system("prepare", program, Errno(closing)) }

        var attributes = posix_spawnattr_t()
        try check(posix_spawnattr_init(&attributes), "attributes")
        defer { posix_spawnattr_destroy(&attributes) }
        var none = POSIX.signalSet([])
        try check(posix_spawnattr_setsigmask(&attributes, &none), "signal mask")
        var defaults = POSIX.signalSet(resetSignals)
        try check(posix_spawnattr_setsigdefault(&attributes, &defaults), "signal defaults")
        var flags = Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if request.newSession { flags |= cortex_spawn_flag_setsid() }
        try check(posix_spawnattr_setflags(&attributes, flags), "flags")

        let argv = request.arguments.map { strdup($0) } + [nil]
        let environment = request.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + environment).forEach { free($0) } }
        var pid: Int32 = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, argv, environment)
        guard result == 0 else {
            if Errno(result) == .noSuchFileOrDirectory { throw .notFound("no program \(program) (not a path, and not found in PATH)") }
            throw .system("start", program, Errno(result))
        }
        return pid
    }

    /// `spawn` as another user: fork, then (in C, raw system calls only) the same hygiene as
    /// `posix_spawn` above, the switch to `credentials` (groups, group, user; checked), the
    /// working directory entered as that user, and `execve`.
    static func spawn(_ request: SpawnRequest, as credentials: Credentials) throws(CortexError) -> Int32 {
        let program = request.arguments[0]
        guard let path = ExecutableSearch.find(program) else {
            throw .notFound("no program \(program) (not a path, and not found in PATH)")
        }
        let argv = request.arguments.map { strdup($0) } + [nil]
        let environment = request.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + environment).forEach { free($0) } }
        var pid: Int32 = 0
        let result = credentials.groups.withUnsafeBufferPointer { groups in
            resetSignals.map(\.rawValue).withUnsafeBufferPointer { signals in
                cortex_spawn_as(
                    &pid, path, argv, environment, request.workingDirectory, request.standardInput ?? -1,
                    request.standardOutput ?? -1, request.standardError ?? -1, request.newSession ? 1 : 0, signals.baseAddress,
                    signals.count, credentials.uid, credentials.gid, groups.baseAddress, groups.count)
            }
        }
        guard result == 0 else {
            if Errno(result) == .noSuchFileOrDirectory {
                throw .notFound("no program \(program) (or no folder \(request.workingDirectory ?? "."))")
            }
            throw .system("start as \(UserDatabase.system.describe(credentials.uid))", program, Errno(result))
        }
        return pid
    }

    /// Waits for child `pid` to end (retrying `EINTR`) and says how. With `blocking` false,
    /// returns nil at once if it is still running.
    public static func waitForExit(_ pid: Int32, blocking: Bool = true) throws(CortexError) -> TerminationStatus? {
        var status: Int32 = 0
        let result: Int32
        do {
            result = try retryingInterrupts { waitpid(pid, &status, blocking ? 0 : WNOHANG) }
        } catch {
            throw .system("wait for", "process \(pid)", error)
        }
        if result == 0 { return nil }
        if cortex_wifexited(status) != 0 { return .exited(cortex_wexitstatus(status)) }
        return .signaled(Signal(rawValue: cortex_wtermsig(status)))
    }
}
