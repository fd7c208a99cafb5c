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
    public var standardInput: FileDescriptor?
    /// A descriptor of the caller that becomes the child's 1 (nil: `/dev/null`).
    public var standardOutput: FileDescriptor?
    /// A descriptor of the caller that becomes the child's 2 (nil: `/dev/null`).
    public var standardError: FileDescriptor?
    /// Start a new session (and so a new process group whose id is the child's pid), so the
    /// whole tree can be signalled with `kill(-pid, …)` and the caller's terminal is left alone.
    public var newSession: Bool
    /// The user the child runs as (groups included), or nil for the caller's own. Only root can
    /// ask for another user; the change happens in the child before `execve`, and the working
    /// directory is entered as that user (docs/decisions/022-requester-rights.md).
    public var credentials: Credentials?

    /// A request; streams default to `/dev/null`, a new session to true.
    public init(
        arguments: [String], environment: [String: String], workingDirectory: String? = nil, standardInput: FileDescriptor? = nil,
        standardOutput: FileDescriptor? = nil, standardError: FileDescriptor? = nil, newSession: Bool = true,
        credentials: Credentials? = nil
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
        do {
            return try POSIX.spawn(
                path, arguments: request.arguments, environment: request.environment, workingDirectory: request.workingDirectory,
                standardStreams: [request.standardInput, request.standardOutput, request.standardError], newSession: request.newSession,
                resetSignals: resetSignals)
        } catch {
            switch error.step {
            case .setUp(let step): throw .system("set up \(step) for", program, error.errno)
            case .changeDirectory: throw .system("change into", request.workingDirectory ?? ".", error.errno)
            case .closeDescriptors: throw .system("prepare", program, error.errno)
            case .start:
                if error.errno == .noSuchFileOrDirectory { throw .notFound("no program \(program) (not a path, and not found in PATH)") }
                throw .system("start", program, error.errno)
            }
        }
    }

    /// `spawn` as another user: fork, then (in C, raw system calls only) the same hygiene as
    /// `posix_spawn` above, the switch to `credentials` (groups, group, user; checked), the
    /// working directory entered as that user, and `execve`.
    static func spawn(_ request: SpawnRequest, as credentials: Credentials) throws(CortexError) -> Int32 {
        let program = request.arguments[0]
        guard let path = ExecutableSearch.find(program) else {
            throw .notFound("no program \(program) (not a path, and not found in PATH)")
        }
        do {
            return try POSIX.spawn(
                path, arguments: request.arguments, environment: request.environment, workingDirectory: request.workingDirectory,
                standardStreams: [request.standardInput, request.standardOutput, request.standardError], newSession: request.newSession,
                resetSignals: resetSignals, uid: credentials.uid, gid: credentials.gid, groups: credentials.groups)
        } catch {
            if error == .noSuchFileOrDirectory {
                throw .notFound("no program \(program) (or no folder \(request.workingDirectory ?? "."))")
            }
            throw .system("start as \(UserDatabase.system.describe(credentials.uid))", program, error)
        }
    }

    /// Waits for child `pid` to end (retrying `EINTR`) and says how. With `blocking` false,
    /// returns nil at once if it is still running.
    public static func waitForExit(_ pid: Int32, blocking: Bool = true) throws(CortexError) -> TerminationStatus? {
        do {
            return try POSIX.waitForChild(pid, blocking: blocking)
        } catch {
            throw .system("wait for", "process \(pid)", error)
        }
    }
}
