/// The one error type of the library. Each case carries what a person needs to act on it;
/// the command-line layer maps each case to one exit code of docs/cli.md and one line on stderr.
public enum CortexError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The command line is wrong: unknown flag, missing argument (exit 64).
    case usage(String)
    /// A value is malformed or out of range: invalid id, bad JSON, negative count (exit 65).
    case badInput(String)
    /// The named task, worker or allocation does not exist (exit 66).
    case notFound(String)
    /// A system call on `path` failed (exit 74, or 77 when permission was denied).
    case io(operation: String, path: String, errno: Errno)
    /// The journal or a state file cannot be understood (exit 74).
    case corrupt(String)
    /// Not now: queued, or a wait timed out (exit 75).
    case tryLater(String)
    /// Not allowed, for a reason other than a failed system call: root on another user's folder
    /// that it cannot act as (exit 77).
    case permissionDenied(String)
    /// The settings or the environment are wrong: bad config.json, unsupported file system (exit 78).
    case configuration(String)
    /// A normal "no": budget would be exceeded, nothing to claim, stale fencing token (exit 1).
    case refused(String)

    /// One human sentence, without the tool's name.
    public var description: String {
        switch self {
        case .usage(let message), .badInput(let message), .notFound(let message), .corrupt(let message),
            .tryLater(let message), .configuration(let message), .refused(let message):
            return message
        case .permissionDenied(let message):
            return "permission denied: " + message
        case .io(let operation, let path, let errno):
            if errno.isPermissionDenied { return "permission denied: cannot \(operation) \(path): \(errno)" }
            // Refusals of the folder's path rules (docs/decisions/020-no-path-tricks.md).
            switch errno {
            case .tooManySymbolicLinkLevels:
                return
                    "refusing to \(operation) \(path): it (or a folder on its way) is a symbolic link, which Cortex never follows inside the coordination folder"
            case .notRegularFile: return "refusing to \(operation) \(path): not a regular file"
            case .improperLink: return "refusing to \(operation) \(path): the name leads out of its folder"
            case .fileTooLarge: return "refusing to \(operation) \(path): larger than its size limit"
            default: break
            }
            return "cannot \(operation) \(path): \(errno)"
        }
    }

    /// Wraps a failed system call on `path`.
    public static func system(_ operation: String, _ path: String, _ errno: Errno) -> CortexError {
        .io(operation: operation, path: path, errno: errno)
    }
}

/// Runs `body`, turning an `Errno` into `CortexError.io` naming the operation and path.
@inline(__always)
package func withPath<T>(_ operation: String, _ path: String, _ body: () throws(Errno) -> T) throws(CortexError) -> T {
    do { return try body() } catch { throw .system(operation, path, error) }
}
