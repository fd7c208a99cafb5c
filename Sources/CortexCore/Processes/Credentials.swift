import CCortexShims
import Glibc

/// A user identity a process can run as: user id, primary group and the exact list of
/// supplementary groups (docs/decisions/022-requester-rights.md).
///
/// The one primitive for "run with the rights of that user, never more": a root launcher
/// computes the requester's credentials with `of(user:)` (from `UserDatabase`: `/etc/passwd`
/// and `/etc/group`, read directly, without NSS), then either starts a process as that user
/// (`SpawnRequest.credentials`) or becomes that user itself (`dropProcess()`).
public struct Credentials: Equatable, Hashable, Sendable {
    /// The user id (real, effective and saved after a drop).
    public var uid: uid_t
    /// The primary group id (real, effective and saved after a drop).
    public var gid: gid_t
    /// The supplementary groups, exactly (sorted, without duplicates; the primary group included).
    public var groups: [gid_t]

    /// Credentials from their parts; `groups` is sorted and made unique.
    public init(uid: uid_t, gid: gid_t, groups: [gid_t]) {
        self.uid = uid
        self.gid = gid
        self.groups = Array(Set(groups)).sorted()
    }

    /// The credentials this process runs with (effective ids, the current group list).
    public static var current: Credentials {
        let count = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(0, count)))
        let got = groups.isEmpty ? 0 : getgroups(count, &groups)
        return Credentials(uid: geteuid(), gid: getegid(), groups: Array(groups.prefix(Int(max(0, got)))))
    }

    /// True when this process is the superuser (the only caller that may switch users).
    public static var isSuperuser: Bool { geteuid() == 0 }

    /// The credentials user `uid` gets at login (see `of(_:in:)`).
    /// - Throws: `CortexError.io` with `EPERM` (exit 77) when `uid` has no `passwd` entry: no
    ///   group can be vouched for, so nothing is run as that user.
    public static func of(user uid: uid_t, in database: UserDatabase = .system) throws(CortexError) -> Credentials {
        guard let account = database.user(uid: uid) else {
            throw .io(operation: "find the passwd entry of", path: "uid \(uid)", errno: Errno(EPERM))
        }
        return of(account, in: database)
    }

    /// The credentials `account` gets at login: its primary group, and every group whose member
    /// list names it (as `initgroups` would, for users in the local files).
    public static func of(_ account: UserAccount, in database: UserDatabase = .system) -> Credentials {
        Credentials(uid: account.uid, gid: account.gid, groups: database.groupIDs(of: account))
    }

    /// Makes this whole process (every thread) run as these credentials, for good: groups,
    /// then group id, then user id, each checked afterwards (and, unless the target is root,
    /// that root cannot be regained).
    /// - Throws: `CortexError.io` with the errno (77 for `EPERM`) when any step failed: the
    ///   caller must then stop, its identity is undefined.
    public func dropProcess() throws(CortexError) {
        let result = groups.withUnsafeBufferPointer { cortex_drop_privileges(uid, gid, $0.baseAddress, $0.count) }
        if result != 0 { throw .io(operation: "switch to", path: UserDatabase.system.describe(uid), errno: Errno(result)) }
    }
}

/// Reading a file Cortex does not trust: a regular file only (never a FIFO or device, which
/// could block or never end), opened without following a final symlink and without blocking,
/// at most `limit` bytes.
enum UntrustedFile {
    /// The bytes of the regular file `path` and its metadata.
    /// - Throws: `Errno` from the open or read; `EINVAL` when it is not a regular file, `EFBIG`
    ///   when it is larger than `limit`.
    static func regularFileWithStatus(_ path: String, relativeTo directory: Int32 = AT_FDCWD, limit: Int) throws(Errno)
        -> (bytes: [UInt8], status: stat)
    {
        let fd = try retryingInterrupts { openat(directory, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
        defer { POSIX.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Errno.current }
        guard info.st_mode & S_IFMT == S_IFREG else { throw Errno(EINVAL) }
        guard info.st_size <= limit else { throw Errno(EFBIG) }
        var all: [UInt8] = []
        var offset: Int64 = 0
        while all.count <= limit {
            let chunk = try POSIX.read(fd, at: offset, count: min(1 << 16, limit + 1 - all.count))
            if chunk.isEmpty { return (all, info) }
            all += chunk
            offset += Int64(chunk.count)
        }
        throw Errno(EFBIG)
    }

    /// The bytes of a `/proc` entry (which `stat` reports as an empty regular file): at most
    /// `limit` bytes, without following a final symlink.
    static func regularFileProcEntry(_ path: String, limit: Int) throws(Errno) -> [UInt8] {
        let fd = try retryingInterrupts { open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
        defer { POSIX.close(fd) }
        var all: [UInt8] = []
        var offset: Int64 = 0
        while all.count < limit {
            let chunk = try POSIX.read(fd, at: offset, count: min(1 << 16, limit - all.count))
            if chunk.isEmpty { break }
            all += chunk
            offset += Int64(chunk.count)
        }
        return all
    }

    /// The bytes of the regular file `path` (see `regularFileWithStatus`).
    static func regularFile(_ path: String, limit: Int) throws(Errno) -> [UInt8] {
        try regularFileWithStatus(path, limit: limit).bytes
    }
}
