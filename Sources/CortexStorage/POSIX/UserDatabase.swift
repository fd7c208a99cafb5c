import CortexCore
import Glibc

/// A user as `/etc/passwd` names it.
public struct UserAccount: Equatable, Sendable {
    /// The login name.
    public var name: String
    /// The user id.
    public var uid: uid_t
    /// The primary group id.
    public var gid: gid_t
}

/// Users and groups read from `/etc/passwd` and `/etc/group` themselves, not through NSS: the
/// tools link statically and load no NSS modules (docs/decisions/008-linking.md), and the child
/// of a fork must not look anything up. Users and groups known only to a directory service
/// (LDAP, sssd) are therefore not found here.
///
/// The one parser of both files: who owns a folder (`FolderOwner`), which group a folder is
/// given to (`cortex init --group`), and the credentials a worker runs with (`Credentials.of`).
/// Each file is read whole with a size bound (`FileLimits.userDatabase`), non-blocking, regular
/// files only; an unreadable file reads as empty. Tests point an instance at their own copies.
public struct UserDatabase: Equatable, Sendable {
    /// The passwd file.
    public var passwd: String
    /// The group file.
    public var group: String

    /// The system's: `/etc/passwd` and `/etc/group`.
    public static let system = UserDatabase(passwd: "/etc/passwd", group: "/etc/group")

    /// The databases at these paths.
    public init(passwd: String, group: String) {
        self.passwd = passwd
        self.group = group
    }

    /// The account with user id `uid` (the first `passwd` line naming it, with a non-empty name
    /// and a numeric group), or nil.
    public func user(uid: uid_t) -> UserAccount? {
        for fields in UserDatabase.entries(passwd) where fields.count >= 4 {
            // name:password:uid:gid:gecos:home:shell
            guard !fields[0].isEmpty, let id = UserDatabase.number(fields[2]), id == uid, let gid = UserDatabase.number(fields[3])
            else { continue }
            return UserAccount(name: String(decoding: fields[0], as: UTF8.self), uid: id, gid: gid)
        }
        return nil
    }

    /// The home folder `passwd` gives user `uid` (its first line naming it), or nil when it has
    /// none: where a user's signing key lives when `HOME` is unset (a static tool, a worker).
    public func homeDirectory(uid: uid_t) -> String? {
        for fields in UserDatabase.entries(passwd) where fields.count >= 6 {
            guard let id = UserDatabase.number(fields[2]), id == uid, !fields[5].isEmpty else { continue }
            return String(decoding: fields[5], as: UTF8.self)
        }
        return nil
    }

    /// The group id of `name` (a group name, or a number), or nil when there is no such group.
    public func groupID(_ name: String) -> gid_t? {
        for fields in UserDatabase.entries(group) where fields.count >= 3 && fields[0].elementsEqual(name.utf8) {
            // name:password:gid:member,member
            return UserDatabase.number(fields[2])
        }
        return gid_t(name)
    }

    /// The groups `account` belongs to at login, as `initgroups` would give them for users in the
    /// local files: its primary group, then every group whose member list names it.
    public func groupIDs(of account: UserAccount) -> [gid_t] {
        var result = [account.gid]
        for fields in UserDatabase.entries(group) where fields.count >= 4 {
            guard let gid = UserDatabase.number(fields[2]), !result.contains(gid) else { continue }
            let members = fields[3].split(separator: UInt8(ascii: ","))
            if members.contains(where: { $0.elementsEqual(account.name.utf8) }) { result.append(gid) }
        }
        return result
    }

    /// `name (uid N)`, or `uid N` when the user has no `passwd` entry: how messages name a user.
    public func describe(_ uid: uid_t) -> String {
        user(uid: uid).map { "\($0.name) (uid \(uid))" } ?? "uid \(uid)"
    }

    /// The colon-separated fields of each line of a database file (none when it is unreadable).
    private static func entries(_ path: String) -> [[ArraySlice<UInt8>]] {
        guard let bytes = try? POSIX.readFile(path, limit: FileLimits.userDatabase) else { return [] }
        return bytes.split(separator: 0x0A).map { $0.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false) }
    }

    /// A decimal id field, or nil.
    private static func number(_ field: ArraySlice<UInt8>) -> UInt32? {
        UInt32(String(decoding: field, as: UTF8.self))
    }
}
