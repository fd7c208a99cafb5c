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
/// tools link statically and load no NSS modules (docs/decisions/008-linking.md). Users and
/// groups known only to a directory service (LDAP, sssd) are therefore not found here.
public enum UserDatabase {
    /// The account with user id `uid`, or nil.
    public static func user(uid: uid_t, passwd: String = "/etc/passwd") -> UserAccount? {
        for fields in entries(passwd) where fields.count >= 4 {
            guard let id = uid_t(fields[2]), id == uid, let gid = gid_t(fields[3]) else { continue }
            return UserAccount(name: String(fields[0]), uid: id, gid: gid)
        }
        return nil
    }

    /// The group id of `group` (a name, or a number), or nil when there is no such group.
    public static func groupID(_ group: String, groups: String = "/etc/group") -> gid_t? {
        for fields in entries(groups) where fields.count >= 3 && fields[0] == group { return gid_t(fields[2]) }
        return gid_t(group)
    }

    /// The groups `account` belongs to: its primary group, then every group listing it as a member.
    public static func groupIDs(of account: UserAccount, groups: String = "/etc/group") -> [gid_t] {
        var result = [account.gid]
        for fields in entries(groups) where fields.count >= 4 {
            guard let gid = gid_t(fields[2]), !result.contains(gid) else { continue }
            if fields[3].split(separator: ",").contains(where: { $0 == account.name }) { result.append(gid) }
        }
        return result
    }

    /// The colon-separated fields of each line of a database file (empty when it is unreadable).
    private static func entries(_ path: String) -> [[Substring]] {
        guard let bytes = try? POSIX.readFile(path) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map {
            $0.split(separator: ":", omittingEmptySubsequences: false)
        }
    }
}
