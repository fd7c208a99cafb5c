import Glibc

/// A raw `errno` value from a failed system call, with swift-system's names for the codes
/// Cortex tests for: compare with `error == .noSuchFileOrDirectory`, never with `rawValue == ENOENT`.
public struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The C `errno` value.
    public var rawValue: Int32

    /// Wraps a C `errno` value.
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// Wraps a C `errno` value (the `RawRepresentable` spelling).
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(errno) }

    /// The C library's text for the code, with the number: "No such file or directory (errno 2)".
    public var description: String { String(cString: strerror(rawValue)) + " (errno \(rawValue))" }

    /// True for errors that mean "you may not", as opposed to "it failed".
    public var isPermissionDenied: Bool { self == .permissionDenied || self == .notPermitted || self == .readOnlyFileSystem }

    /// `EPERM`: the operation needs privileges the caller does not have.
    public static let notPermitted = Errno(EPERM)
    /// `ENOENT`: no file or folder of that name.
    public static let noSuchFileOrDirectory = Errno(ENOENT)
    /// `ESRCH`: no process with that id.
    public static let noSuchProcess = Errno(ESRCH)
    /// `EINTR`: a signal interrupted the call before it did anything.
    public static let interrupted = Errno(EINTR)
    /// `EIO`: a low-level input/output error.
    public static let ioError = Errno(EIO)
    /// `ENXIO`: no such device (opening a FIFO with no writer, non-blocking).
    public static let noSuchAddressOrDevice = Errno(ENXIO)
    /// `EBADF`: not an open descriptor (or not open for this kind of access).
    public static let badFileDescriptor = Errno(EBADF)
    /// `ECHILD`: no child process to wait for.
    public static let noChildProcess = Errno(ECHILD)
    /// `EAGAIN`: nothing there yet on a non-blocking descriptor; try again later.
    public static let resourceTemporarilyUnavailable = Errno(EAGAIN)
    /// `EWOULDBLOCK`: the same value as `EAGAIN` on Linux.
    public static let wouldBlock = Errno(EWOULDBLOCK)
    /// `EACCES`: the file's permissions refuse the access.
    public static let permissionDenied = Errno(EACCES)
    /// `EEXIST`: the name is already taken.
    public static let fileExists = Errno(EEXIST)
    /// `EXDEV`: across file systems, or (Cortex) outside the folder it must stay beneath.
    public static let improperLink = Errno(EXDEV)
    /// `ENOTDIR`: a path component is not a folder.
    public static let notDirectory = Errno(ENOTDIR)
    /// `EISDIR`: a folder where a file was expected.
    public static let isDirectory = Errno(EISDIR)
    /// `EINVAL`: an argument the call does not accept.
    public static let invalidArgument = Errno(EINVAL)
    /// `EFBIG`: the file is larger than allowed (Cortex: larger than the read limit).
    public static let fileTooLarge = Errno(EFBIG)
    /// `ENOSPC`: no space left on the device.
    public static let noSpace = Errno(ENOSPC)
    /// `EROFS`: a read-only file system.
    public static let readOnlyFileSystem = Errno(EROFS)
    /// `EPIPE`: the reading end of the pipe is closed.
    public static let brokenPipe = Errno(EPIPE)
    /// `ENAMETOOLONG`: a path or name longer than the system allows.
    public static let fileNameTooLong = Errno(ENAMETOOLONG)
    /// `ENOSYS`: the kernel does not have this system call.
    public static let noFunction = Errno(ENOSYS)
    /// `ENOTEMPTY`: the folder still has entries.
    public static let directoryNotEmpty = Errno(ENOTEMPTY)
    /// `ELOOP`: a symbolic link where none may be (or too many levels of them).
    public static let tooManySymbolicLinkLevels = Errno(ELOOP)
}
