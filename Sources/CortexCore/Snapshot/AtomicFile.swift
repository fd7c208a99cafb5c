import CCortexShims
import Glibc

/// Publishing whole files: a reader that opens the path sees the old file or the new one,
/// never a mix (invariant 6).
public enum AtomicFile {
    /// How far a published file must survive.
    public enum Durability: Sendable {
        /// Atomic for readers and survives a process crash (`kill -9`): temp, write, rename.
        /// For views, which any later command rebuilds from the journal.
        case processCrash
        /// Also survives power loss once this returns: the file and its folder are `fsync`ed.
        /// For snapshots and results.
        case powerLoss
    }

    /// Replaces `path` with `bytes`: a temp file beside it (same file system; `O_EXCL`,
    /// `O_NOFOLLOW`, named `.NAME.tmp-PID-RANDOM` so globs skip it), write, optionally `fsync`,
    /// `rename` over `path`, optionally `fsync` the folder. On failure the temp file is removed
    /// and `path` is untouched. The file gets `mode` (the folder's `FolderPermissions`; by
    /// default 0666 under the umask), set on the temp file before it takes the name.
    public static func replace(_ path: String, with bytes: [UInt8], durability: Durability, mode: CreationMode = .umask)
        throws(CortexError)
    {
        let temp = try writeTemporaryFile(beside: path, bytes: bytes, sync: durability == .powerLoss, mode: mode)
        do throws(Errno) {
            try POSIX.rename(temp, path)
        } catch {
            POSIX.unlinkIfPresent(temp)
            throw .system("rename into", path, error)
        }
        if durability == .powerLoss {
            let directory = split(path).directory
            try withPath("fsync", directory) { () throws(Errno) in try POSIX.fsyncDirectory(directory) }
        }
    }

    /// Creates `path` with `bytes` only if nothing is there yet (temp file, then `link`, which
    /// never replaces), with `mode`. Returns false when the file already existed.
    @discardableResult
    public static func createIfAbsent(_ path: String, with bytes: [UInt8], mode: CreationMode = .umask) throws(CortexError) -> Bool {
        let temp = try writeTemporaryFile(beside: path, bytes: bytes, sync: true, mode: mode)
        defer { POSIX.unlinkIfPresent(temp) }
        do throws(Errno) {
            try POSIX.link(temp, path)
        } catch {
            if error.rawValue == EEXIST { return false }
            throw .system("create", path, error)
        }
        let directory = split(path).directory
        try withPath("fsync", directory) { () throws(Errno) in try POSIX.fsyncDirectory(directory) }
        return true
    }

    /// A private name beside `path`: `.NAME.tmp-PID-RANDOM` (hidden from globs, unique per process).
    static func temporaryName(beside path: String) -> String {
        let (directory, name) = split(path)
        return "\(directory)/.\(name).tmp-\(getpid())-\(POSIX.randomHex(bytes: 4))"
    }

    /// Creates a temp file beside `path` (`O_EXCL|O_NOFOLLOW`, `mode`) holding `bytes`, `fsync`ed
    /// when `sync`, and returns its name. Nothing is left behind on failure.
    static func writeTemporaryFile(beside path: String, bytes: [UInt8], sync: Bool, mode: CreationMode) throws(CortexError) -> String {
        let temp = temporaryName(beside: path)
        let fd = try withPath("create", temp) { () throws(Errno) in
            try POSIX.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode.bits)
        }
        do throws(Errno) {
            try mode.apply(to: fd)
            try POSIX.writeAll(fd, bytes)
            if sync { try POSIX.fsync(fd) }
        } catch {
            POSIX.close(fd)
            POSIX.unlinkIfPresent(temp)
            throw .system("write", temp, error)
        }
        POSIX.close(fd)
        return temp
    }

    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = slash == path.startIndex ? "/" : String(path[..<slash])
        return (directory, String(path[path.index(after: slash)...]))
    }

}

extension AtomicFile {
    /// Makes `path` another name of the file at `existing`, replacing whatever `path` named:
    /// a hard link under a temp name, renamed into place. No byte is copied.
    public static func link(_ existing: String, replacing path: String) throws(CortexError) {
        let temp = temporaryName(beside: path)
        try withPath("link", existing) { () throws(Errno) in try POSIX.link(existing, temp) }
        do throws(Errno) {
            try POSIX.rename(temp, path)
        } catch {
            POSIX.unlinkIfPresent(temp)
            throw .system("rename into", path, error)
        }
    }
}

/// Small file operations with `CortexError`s that name the path.
public enum Files {
    /// Creates a folder with `mode`; an existing one is fine (and keeps its mode). An exact mode
    /// is set on the new folder through a descriptor opened without following a symbolic link.
    public static func makeDirectory(_ path: String, mode: CreationMode = .masked(0o777)) throws(CortexError) {
        try withPath("create folder", path) { () throws(Errno) in
            guard try POSIX.makeDirectory(path, mode: mode.bits), mode.exact else { return }
            let fd = try POSIX.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            defer { POSIX.close(fd) }
            try mode.apply(to: fd)
        }
    }

    /// Creates `path` with `mode` if missing and sets its modification time to now (a heartbeat).
    /// An exact mode is set only on a file this process created (one `fstat` to tell).
    public static func touch(_ path: String, mode: CreationMode = .umask) throws(CortexError) {
        let fd = try withPath("open", path) { () throws(Errno) in try POSIX.open(path, O_WRONLY | O_CREAT, mode: mode.bits) }
        defer { POSIX.close(fd) }
        if mode.exact {
            try withPath("set the mode of", path) { () throws(Errno) in
                let info = try POSIX.status(fd)
                if info.st_uid == geteuid(), info.st_mode & 0o7777 != mode.bits { try mode.apply(to: fd) }
            }
        }
        if futimens(fd, nil) != 0 { throw .system("touch", path, Errno.current) }
    }

}

extension AtomicFile {
    /// What `exchange` found at the path it published to.
    public enum Displaced: Equatable, Sendable {
        /// Nothing was there.
        case nothing
        /// A file was there; these are its last bytes (at most 4 KiB).
        case file(tail: [UInt8])
        /// The file system cannot swap names (no `RENAME_EXCHANGE`); a plain rename replaced an unknown file.
        case unknown
    }

    /// Publishes `bytes` at `path` like `replace(_:with:durability:)` with `.processCrash`, but swaps
    /// the new file in with `renameat2(RENAME_EXCHANGE)`, so the caller learns what it displaced
    /// (the old file ends up under the temp name, is read, then removed).
    public static func exchange(_ path: String, with bytes: [UInt8], mode: CreationMode = .umask) throws(CortexError) -> Displaced {
        let temp = try writeTemporaryFile(beside: path, bytes: bytes, sync: false, mode: mode)
        if cortex_rename_exchange(temp, path) == 0 {
            let tail = (try? readTail(temp, bytes: 4096)) ?? []
            POSIX.unlinkIfPresent(temp)
            return .file(tail: tail)
        }
        let exchangeError = errno
        do throws(Errno) {
            try POSIX.rename(temp, path)
        } catch {
            POSIX.unlinkIfPresent(temp)
            throw .system("rename into", path, error)
        }
        return exchangeError == ENOENT ? .nothing : .unknown
    }

    private static func readTail(_ path: String, bytes: Int) throws(Errno) -> [UInt8] {
        let fd = try POSIX.open(path, O_RDONLY)
        defer { POSIX.close(fd) }
        let size = Int64(try POSIX.status(fd).st_size)
        return try POSIX.read(fd, at: max(0, size - Int64(bytes)), count: bytes)
    }

    /// The last `bytes` bytes of the file at `path`, or nil when there is none.
    public static func tail(of path: String, bytes: Int = 4096) -> [UInt8]? {
        try? readTail(path, bytes: bytes)
    }
}
