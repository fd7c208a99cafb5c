import CortexCore
import Glibc

// What a process asks the system about itself and its surroundings (ids, environment, time
// zone, paths), for the CLI, which never calls the C library (decision 029).

/// A calendar date and time of day, in the machine's local time zone.
public struct LocalTime: Equatable, Sendable {
    /// The year, e.g. 2026.
    public var year: Int
    /// 1 to 12.
    public var month: Int
    /// 1 to 31.
    public var day: Int
    /// 0 to 23.
    public var hour: Int
    /// 0 to 59.
    public var minute: Int
    /// 0 to 60 (a leap second).
    public var second: Int
}

extension POSIX {
    /// The real user id of this process. The corresponding C function is `getuid`.
    public static var userID: uid_t { getuid() }

    /// The effective user id of this process (whose rights it acts with). The corresponding C
    /// function is `geteuid`.
    public static var effectiveUserID: uid_t { geteuid() }

    /// This process's id. The corresponding C function is `getpid`.
    public static var processID: pid_t { getpid() }

    /// The parent's process id. The corresponding C function is `getppid`.
    public static var parentProcessID: pid_t { getppid() }

    /// The value of environment variable `name`, or nil when it is unset. The corresponding C
    /// function is `getenv`.
    public static func environmentValue(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// The process environment, or only the variables whose name starts with `prefix`.
    /// Entries are matched on their bytes before any `String` is made (copying the whole
    /// environment cost a tool ~5% of a call).
    public static func environment(prefix: String? = nil) -> [String: String] {
        var result: [String: String] = [:]
        let wanted = prefix.map { Array($0.utf8) } ?? []
        var pointer = environ
        while let entry = pointer.pointee {
            pointer += 1
            if !wanted.isEmpty {
                guard entry[0] == CChar(bitPattern: wanted[0]), strncmp(entry, prefix!, wanted.count) == 0 else { continue }
            }
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
        }
        return result
    }

    /// Sleeps the calling thread for `milliseconds`. The corresponding C function is `usleep`.
    public static func sleep(milliseconds: Int64) {
        usleep(useconds_t(clamping: max(0, milliseconds) * 1000))
    }

    /// Sleeps the calling thread for `microseconds` (a short back-off: no retry when a signal
    /// cuts it short). The corresponding C function is `usleep`.
    public static func sleep(microseconds: UInt32) {
        usleep(microseconds)
    }

    /// Ends the process at once with `code` (no buffered output to flush: the tools write with
    /// `write(2)`). The corresponding C function is `exit`.
    public static func exit(_ code: Int32) -> Never { Glibc.exit(code) }

    /// True when the caller may write `path` (for a folder: make and remove entries in it).
    /// The corresponding C function is `access(W_OK)`.
    public static func canWrite(_ path: String) -> Bool { access(path, W_OK) == 0 }

    /// True when the caller may execute `path`. The corresponding C function is `access(X_OK)`.
    public static func canExecute(_ path: String) -> Bool { access(path, X_OK) == 0 }

    /// The absolute path of `path` with every link and `.`/`..` resolved, or nil when it cannot
    /// be resolved. The corresponding C function is `realpath`.
    public static func canonicalPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// `milliseconds` since the Unix epoch as a local date and time. The corresponding C
    /// function is `localtime_r`.
    public static func localTime(milliseconds: Int64) -> LocalTime {
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        localtime_r(&seconds, &parts)
        return LocalTime(
            year: Int(parts.tm_year) + 1900, month: Int(parts.tm_mon) + 1, day: Int(parts.tm_mday), hour: Int(parts.tm_hour),
            minute: Int(parts.tm_min), second: Int(parts.tm_sec))
    }
}
