import Glibc

/// A raw `errno` value from a failed system call.
public struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The C `errno` value.
    public var rawValue: Int32

    /// Wraps a C `errno` value.
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(errno) }

    /// The C library's text for the code, with the number: "No such file or directory (errno 2)".
    public var description: String { String(cString: strerror(rawValue)) + " (errno \(rawValue))" }

    /// True for errors that mean "you may not", as opposed to "it failed".
    public var isPermissionDenied: Bool { rawValue == EACCES || rawValue == EPERM || rawValue == EROFS }
}
