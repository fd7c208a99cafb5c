import CCortexShims
import Glibc

/// A user identity a process can run as: user id, primary group and the exact list of
/// supplementary groups (docs/decisions/022-requester-rights.md).
///
/// The one primitive for "run with the rights of that user, never more": a root launcher
/// computes the requester's credentials with `of(user:)` (from `/etc/passwd` and `/etc/group`,
/// read directly: a static binary has no NSS modules to load, and the child of a fork must not
/// look anything up), then either starts a process as that user (`SpawnRequest.credentials`)
/// or becomes that user itself (`dropProcess()`).
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

    /// Where user and group entries are read from (tests read their own copies).
    public struct Databases: Sendable {
        /// The passwd file.
        public var passwd: String
        /// The group file.
        public var group: String

        /// The system's: `/etc/passwd` and `/etc/group`.
        public static let system = Databases(passwd: "/etc/passwd", group: "/etc/group")

        /// Databases at these paths.
        public init(passwd: String, group: String) {
            self.passwd = passwd
            self.group = group
        }
    }

    /// The credentials user `uid` gets at login: the primary group of its `passwd` entry, and
    /// every group whose member list names the user (as `initgroups` would, for users in the
    /// local files). Read with a size bound, without NSS.
    /// - Throws: `CortexError.io` with `EPERM` (exit 77) when `uid` has no `passwd` entry: no
    ///   group can be vouched for, so nothing is run as that user.
    public static func of(user uid: uid_t, databases: Databases = .system) throws(CortexError) -> Credentials {
        guard let entry = passwdEntry(uid, databases.passwd) else {
            throw .io(operation: "find the passwd entry of", path: "uid \(uid)", errno: Errno(EPERM))
        }
        var groups: [gid_t] = [entry.gid]
        for line in lines(databases.group) {
            // name:password:gid:member,member
            let fields = line.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
            guard fields.count >= 4, let gid = UInt32(String(decoding: fields[2], as: UTF8.self)) else { continue }
            let members = fields[3].split(separator: UInt8(ascii: ","))
            if members.contains(where: { Array($0) == entry.name }) { groups.append(gid) }
        }
        return Credentials(uid: uid, gid: entry.gid, groups: groups)
    }

    /// The login name of `uid` from `/etc/passwd`, or nil.
    public static func userName(_ uid: uid_t, databases: Databases = .system) -> String? {
        passwdEntry(uid, databases.passwd).map { String(decoding: $0.name, as: UTF8.self) }
    }

    /// `name (uid N)`, or `uid N` when the user has no `passwd` entry.
    public static func describe(_ uid: uid_t) -> String { userName(uid).map { "\($0) (uid \(uid))" } ?? "uid \(uid)" }

    /// Makes this whole process (every thread) run as these credentials, for good: groups,
    /// then group id, then user id, each checked afterwards (and, unless the target is root,
    /// that root cannot be regained).
    /// - Throws: `CortexError.io` with the errno (77 for `EPERM`) when any step failed: the
    ///   caller must then stop, its identity is undefined.
    public func dropProcess() throws(CortexError) {
        let result = groups.withUnsafeBufferPointer { cortex_drop_privileges(uid, gid, $0.baseAddress, $0.count) }
        if result != 0 { throw .io(operation: "switch to", path: Credentials.describe(uid), errno: Errno(result)) }
    }

    private static func passwdEntry(_ uid: uid_t, _ path: String) -> (name: [UInt8], gid: gid_t)? {
        for line in lines(path) {
            // name:password:uid:gid:gecos:home:shell
            let fields = line.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
            guard fields.count >= 4, let entryUID = UInt32(String(decoding: fields[2], as: UTF8.self)), entryUID == uid,
                let gid = UInt32(String(decoding: fields[3], as: UTF8.self)), !fields[0].isEmpty
            else { continue }
            return (Array(fields[0]), gid)
        }
        return nil
    }

    /// The lines of a small system file (at most 4 MiB read; missing means none).
    private static func lines(_ path: String) -> [ArraySlice<UInt8>] {
        guard let bytes = try? UntrustedFile.regularFile(path, limit: 4 << 20) else { return [] }
        return bytes.split(separator: 0x0A)
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
