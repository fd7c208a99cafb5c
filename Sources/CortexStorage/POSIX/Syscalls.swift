import CCortexShims
import CortexCore
import Glibc

// The system-call layer (docs/decisions/029-system-call-layer.md): this folder is the only place
// the library (CortexCLI, CortexCore, CortexStorage, CortexProcesses) calls the C library; no
// other library file imports Glibc or the C shims (`.ci/lint-syscalls` checks, and the compiler:
// without the import, no C name resolves). Exempt: pure byte work (CCortexBytes), OpenSSL's own
// functions (COpenSSL), and the Embedded Swift supervisor with its own libc shim. Every call
// retries EINTR through `retryingInterrupts` below and turns -1 into a thrown `Errno`, so no
// other file needs an EINTR loop of its own. `close` is the exception: on Linux the descriptor is gone
// even when close reports EINTR, and retrying could close a descriptor another thread was just given.

/// The one EINTR policy: runs a system call that reports failure as `-1` and `errno`, again
/// while it was interrupted, and throws any other failure as `Errno`.
@inline(__always)
package func retryingInterrupts<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let failure = Errno.current
        if failure == .interrupted { continue }
        throw failure
    }
}

/// Namespace for the thin, typed wrappers over the system calls the library uses.
public enum POSIX {
    /// Opens `path`, always with `O_CLOEXEC`. The corresponding C function is `open`. A new
    /// file gets `mode` under the umask (0666 by default: the umask decides).
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o666) throws(Errno) -> Int32 {
        try retryingInterrupts { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// Replaces this process with `arguments` (a path, then its arguments) and `environment`:
    /// same pid, same start time, same blocked and pending signals. The descriptors in
    /// `keepingOpen` lose close-on-exec just before, so the new image inherits them and no child
    /// spawned earlier could. Returns only by throwing.
    public static func execute(_ arguments: [String], environment: [String: String], keepingOpen: [Int32] = []) throws(Errno) -> Never {
        for fd in keepingOpen { _ = fcntl(fd, F_SETFD, 0) }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        execve(arguments[0], argv, envp)
        let failure = Errno.current
        (argv + envp).forEach { free($0) }
        throw failure
    }

    /// Closes `fd`, ignoring errors (see the note at the top of this file).
    public static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Issues exactly one `write(2)` and returns how many bytes it took. Never loops:
    /// a journal record must reach the file in one call or be reported as torn.
    public static func writeOnce(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(Errno) -> Int {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        return try retryingInterrupts { Glibc.write(fd, base, bytes.count) }
    }

    /// Writes every byte, looping over short writes. Only for private files (temp files
    /// before their rename), never for shared appends.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(Errno) {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(Errno) in
                var offset = 0
                while offset < buffer.count {
                    offset += try retryingInterrupts {
                        Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                    }
                }
            }
        }.get()
    }

    /// Reads up to `count` bytes at `offset` without moving the file position. The corresponding
    /// C function is `pread`. Returns fewer bytes at end of file. The buffer is not zero-filled
    /// first: a fold reads megabytes, and clearing them cost more than decoding the records.
    public static func read(_ fd: Int32, at offset: Int64, count: Int) throws(Errno) -> [UInt8] {
        guard count > 0 else { return [] }
        var failure: Errno?
        let result = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var filled = 0
            while filled < count {
                do throws(Errno) {
                    let got = try retryingInterrupts {
                        pread(fd, buffer.baseAddress! + filled, count - filled, off_t(offset) + off_t(filled))
                    }
                    if got == 0 { break }
                    filled += got
                } catch {
                    failure = error
                    break
                }
            }
            initialized = filled
        }
        if let failure { throw failure }
        return result
    }

    /// Reads the whole of a small regular file outside a coordination folder (`/proc` files):
    /// opened non-blocking, refused unless regular (`Errno.notRegularFile`), at most `limit`
    /// bytes (`EFBIG` past it). Throws `ENOENT` when it does not exist. Files inside a folder are
    /// read with `FolderDescriptor.readFile`.
    public static func readFile(_ path: String, limit: Int = 1 << 20) throws(Errno) -> [UInt8] {
        let file = try FileDescriptor.open(path, O_RDONLY | O_NONBLOCK)
        return try file.closeAfter { () throws(Errno) in
            let info = try file.status()
            guard info.st_mode & S_IFMT == S_IFREG else { throw Errno.notRegularFile }
            return try readBounded(file.rawValue, size: Int64(info.st_size), limit: limit)
        }
    }

    /// A pipe with both ends close-on-exec, so only a child given an end explicitly (dup2) holds it.
    /// The corresponding C function is `pipe2(O_CLOEXEC)`.
    static func pipe() throws(Errno) -> (read: Int32, write: Int32) {
        var ends: [Int32] = [-1, -1]
        _ = try retryingInterrupts { cortex_pipe_cloexec(&ends) }
        return (ends[0], ends[1])
    }

    /// Makes reads on `fd` return at once when nothing is there (`O_NONBLOCK`).
    static func setNonBlocking(_ fd: Int32) throws(Errno) {
        let flags = try retryingInterrupts { fcntl(fd, F_GETFL) }
        _ = try retryingInterrupts { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// One `read(2)` into `buffer` from a non-blocking descriptor: the byte count (0 at end of
    /// file), or nil when nothing is there yet (`EAGAIN`).
    static func readAvailable(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int? {
        do {
            return try retryingInterrupts { Glibc.read(fd, buffer.baseAddress, buffer.count) }
        } catch {
            if error == .resourceTemporarilyUnavailable || error == .wouldBlock { return nil }
            throw error
        }
    }

    /// The current file position. The corresponding C function is `lseek(fd, 0, SEEK_CUR)`.
    public static func currentOffset(_ fd: Int32) throws(Errno) -> Int64 {
        Int64(try retryingInterrupts { lseek(fd, 0, SEEK_CUR) })
    }

    /// Flushes a file's data and metadata to stable storage. The corresponding C function is `fsync`.
    public static func fsync(_ fd: Int32) throws(Errno) {
        let result = Glibc.fsync(fd)
        // fsync on a special file may report EINVAL; there is nothing to flush then.
        if result == -1 && Errno.current != .invalidArgument { throw Errno.current }
    }

    /// Flushes a file's data (not its timestamps). The corresponding C function is `fdatasync`.
    public static func fdatasync(_ fd: Int32) throws(Errno) {
        _ = try retryingInterrupts { Glibc.fdatasync(fd) }
    }

    /// Opens `directory` and `fsync`s it, so that a rename inside it survives a crash.
    public static func fsyncDirectory(_ directory: String) throws(Errno) {
        let folder = try FileDescriptor.open(directory, O_RDONLY | O_DIRECTORY)
        try folder.closeAfter { () throws(Errno) in try fsync(folder.rawValue) }
    }

    /// Renames atomically within one file system. The corresponding C function is `rename`.
    public static func rename(_ from: String, _ to: String) throws(Errno) {
        _ = try retryingInterrupts { Glibc.rename(from, to) }
    }

    /// Creates a hard link; fails with `EEXIST` rather than replace. The corresponding C function is `link`.
    public static func link(_ existing: String, _ new: String) throws(Errno) {
        _ = try retryingInterrupts { Glibc.link(existing, new) }
    }

    /// Removes a name; a missing name is not an error.
    public static func unlinkIfPresent(_ path: String) {
        _ = Glibc.unlink(path)
    }

    /// Creates a directory with `mode` under the umask (0777 by default: the umask decides);
    /// an existing one is not an error. Returns true when this call created it.
    @discardableResult
    public static func makeDirectory(_ path: String, mode: mode_t = 0o777) throws(Errno) -> Bool {
        if Glibc.mkdir(path, mode) == 0 { return true }
        if Errno.current == .fileExists { return false }
        throw Errno.current
    }

    /// File metadata, or nil when nothing exists at `path`.
    public static func status(_ path: String) throws(Errno) -> stat? {
        var info = stat()
        if lstatOrStat(path, &info) == 0 { return info }
        if [.noSuchFileOrDirectory, .notDirectory].contains(Errno.current) { return nil }
        throw Errno.current
    }

    /// File metadata, or nil when nothing exists at `path`; of a symbolic link itself when
    /// `followingLinks` is false. The corresponding C function is `fstatat`.
    public static func status(_ path: String, followingLinks: Bool) throws(Errno) -> stat? {
        var info = stat()
        if fstatat(AT_FDCWD, path, &info, followingLinks ? 0 : AT_SYMLINK_NOFOLLOW) == 0 { return info }
        if [.noSuchFileOrDirectory, .notDirectory].contains(Errno.current) { return nil }
        throw Errno.current
    }

    @inline(__always)
    private static func lstatOrStat(_ path: String, _ info: inout stat) -> Int32 {
        fstatat(AT_FDCWD, path, &info, 0)
    }

    /// Metadata of an open file. The corresponding C function is `fstat`.
    public static func status(_ fd: Int32) throws(Errno) -> stat {
        var info = stat()
        _ = try retryingInterrupts { Glibc.fstat(fd, &info) }
        return info
    }

    /// The names in a directory, without `.` and `..`.
    public static func directoryEntries(_ path: String) throws(Errno) -> [String] {
        // The flags `opendir` uses.
        try directoryEntries(descriptor: open(path, O_RDONLY | O_DIRECTORY | O_NONBLOCK))
    }

    /// The file system type magic of the file system holding `path` (`statfs(2)`'s `f_type`).
    public static func fileSystemType(_ path: String) throws(Errno) -> Int64 {
        var type: Int64 = 0
        _ = try retryingInterrupts { cortex_filesystem_type(path, &type) }
        return type
    }

    /// Cryptographically random bytes from the kernel. The corresponding C function is `getrandom`.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let got = try? retryingInterrupts {
                bytes.withUnsafeMutableBytes { cortex_getrandom($0.baseAddress! + filled, count - filled) }
            }
            guard let got, got > 0 else { break }
            filled += got
        }
        if filled < count {
            // getrandom cannot fail on Linux ≥ 3.17 once the pool is initialised; fall back anyway.
            var generator = SystemRandomNumberGenerator()
            for index in filled..<count { bytes[index] = UInt8.random(in: 0...255, using: &generator) }
        }
        return bytes
    }

    /// `bytes` random bytes as lower-case hex digits (record ids, temp names). Formatted by
    /// table: `String(_:radix:)` is generic and costs a fresh process more than the syscall.
    public static func randomHex(bytes count: Int) -> String {
        let digits: StaticString = "0123456789abcdef"
        var text: [UInt8] = []
        text.reserveCapacity(count * 2)
        digits.withUTF8Buffer { hex in
            for byte in randomBytes(count) {
                text.append(hex[Int(byte >> 4)])
                text.append(hex[Int(byte & 0xF)])
            }
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Milliseconds since the Unix epoch, from the wall clock. Only the edges read clocks;
    /// the reducer takes time from records.
    public static func wallClockMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// A file's modification time in milliseconds since the Unix epoch, or nil when it does not exist.
    public static func modificationMilliseconds(_ path: String) -> Int64? {
        guard let info = try? status(path) else { return nil }
        return Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
    }

    /// The target of the symbolic link at `path` (`/proc/self/exe`), or nil.
    public static func readLink(_ path: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = buffer.withUnsafeMutableBufferPointer { raw in
            raw.baseAddress!.withMemoryRebound(to: CChar.self, capacity: raw.count) { Glibc.readlink(path, $0, raw.count - 1) }
        }
        return length > 0 ? String(decoding: buffer.prefix(length), as: UTF8.self) : nil
    }

    /// The working directory, or nil when it cannot be read (removed, too long).
    public static func currentDirectory() -> String? {
        guard let path = getcwd(nil, 0) else { return nil }
        defer { free(path) }
        return String(cString: path)
    }

    /// Milliseconds since boot, suspended time included (`CLOCK_BOOTTIME`): a clock nobody can
    /// set, for telling when the wall clock was stepped.
    public static func bootClockMilliseconds() -> Int64 {
        var boot = timespec()
        clock_gettime(CLOCK_BOOTTIME, &boot)
        return Int64(boot.tv_sec) * 1000 + Int64(boot.tv_nsec) / 1_000_000
    }

    /// Sets the access and modification times of an open file to now. The corresponding C
    /// function is `futimens(fd, NULL)`.
    public static func touch(_ fd: Int32) throws(Errno) {
        _ = try retryingInterrupts { futimens(fd, nil) }
    }

    /// Maps `size` bytes of the open file `fd` read-only and private (the mapping outlives the
    /// descriptor), or nil when it cannot be mapped. Release it with `unmap`. The corresponding C
    /// function is `mmap(PROT_READ, MAP_PRIVATE)`.
    public static func mapReadOnly(_ fd: Int32, size: Int) -> UnsafeRawBufferPointer? {
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), address != MAP_FAILED else { return nil }
        return UnsafeRawBufferPointer(start: address, count: size)
    }

    /// Releases a mapping made by `mapReadOnly`. The corresponding C function is `munmap`.
    public static func unmap(_ mapping: UnsafeRawBufferPointer) {
        munmap(UnsafeMutableRawPointer(mutating: mapping.baseAddress), mapping.count)
    }

    /// A monotonic clock in nanoseconds, for timeouts and measurements.
    public static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

extension stat {
    /// True when this is a folder (`S_ISDIR`).
    public var isDirectory: Bool { st_mode & S_IFMT == S_IFDIR }

    /// True for a regular file (not a FIFO, a device, a folder or a socket).
    public var isRegularFile: Bool { st_mode & S_IFMT == S_IFREG }
}
