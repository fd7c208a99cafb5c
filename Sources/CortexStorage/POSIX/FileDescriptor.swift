import CortexCore
import Glibc

/// An open file descriptor, as swift-system spells it: a typed `Int32` that says what it is,
/// with `closeAfter` for a descriptor that must not outlive a piece of work.
public struct FileDescriptor: RawRepresentable, Hashable, Sendable {
    /// The C descriptor number.
    public var rawValue: Int32

    /// Wraps a C descriptor number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Descriptor 0.
    public static let standardInput = FileDescriptor(rawValue: 0)
    /// Descriptor 1.
    public static let standardOutput = FileDescriptor(rawValue: 1)
    /// Descriptor 2.
    public static let standardError = FileDescriptor(rawValue: 2)

    /// Opens `path` (always close-on-exec). The corresponding C function is `open`.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o666) throws(Errno) -> FileDescriptor {
        FileDescriptor(rawValue: try POSIX.open(path, flags, mode: mode))
    }

    /// Closes the descriptor, ignoring errors (on Linux it is gone even when `close` fails).
    public func close() { POSIX.close(rawValue) }

    /// Runs `body`, then closes the descriptor, whether `body` returned or threw.
    public func closeAfter<Result, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
        defer { close() }
        return try body()
    }

    /// True when the descriptor is a terminal. The corresponding C function is `isatty`.
    public var isTerminal: Bool { isatty(rawValue) == 1 }

    /// Writes every byte, looping over short writes and interruptions. Not for journal appends
    /// (those are one `write(2)` each: `POSIX.writeOnce`).
    public func writeAll(_ bytes: [UInt8]) throws(Errno) { try POSIX.writeAll(rawValue, bytes) }

    /// One blocking `read(2)` of at most `maximum` bytes from the current position, retried on
    /// interruption: the bytes read, empty at end of file (a pipe whose writers all closed).
    public func readSome(maximum: Int) throws(Errno) -> [UInt8] {
        guard maximum > 0 else { return [] }
        var failure: Errno?
        let result = [UInt8](unsafeUninitializedCapacity: maximum) { buffer, initialized in
            let got = Result { () throws(Errno) in try retryingInterrupts { Glibc.read(rawValue, buffer.baseAddress, maximum) } }
            switch got {
            case .success(let count): initialized = count
            case .failure(let error):
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return result
    }

    /// Metadata of the open file. The corresponding C function is `fstat`.
    public func status() throws(Errno) -> stat { try POSIX.status(rawValue) }
}
