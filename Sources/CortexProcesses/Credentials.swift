import CortexCore
import CortexStorage

/// A user identity a process can run as: user id, primary group and the exact list of
/// supplementary groups (docs/decisions/022-requester-rights.md).
///
/// The one primitive for "run with the rights of that user, never more": a root launcher
/// computes the requester's credentials with `of(user:)` (from `UserDatabase`: `/etc/passwd`
/// and `/etc/group`, read directly, without NSS), then either starts a process as that user
/// (`SpawnRequest.credentials`) or becomes that user itself (`dropProcess()`).
public struct Credentials: Equatable, Hashable, Sendable {
    /// The user id (real, effective and saved after a drop).
    public var uid: UInt32
    /// The primary group id (real, effective and saved after a drop).
    public var gid: UInt32
    /// The supplementary groups, exactly (sorted, without duplicates; the primary group included).
    public var groups: [UInt32]

    /// Credentials from their parts; `groups` is sorted and made unique.
    public init(uid: UInt32, gid: UInt32, groups: [UInt32]) {
        self.uid = uid
        self.gid = gid
        self.groups = Array(Set(groups)).sorted()
    }

    /// The credentials this process runs with (effective ids, the current group list).
    public static var current: Credentials {
        Credentials(uid: POSIX.effectiveUserID, gid: POSIX.effectiveGroupID, groups: POSIX.supplementaryGroups())
    }

    /// True when this process is the superuser (the only caller that may switch users).
    public static var isSuperuser: Bool { POSIX.effectiveUserID == 0 }

    /// The credentials user `uid` gets at login (see `of(_:in:)`).
    /// - Throws: `CortexError.io` with `EPERM` (exit 77) when `uid` has no `passwd` entry: no
    ///   group can be vouched for, so nothing is run as that user.
    public static func of(user uid: UInt32, in database: UserDatabase = .system) throws(CortexError) -> Credentials {
        guard let account = database.user(uid: uid) else {
            throw .io(operation: "find the passwd entry of", path: "uid \(uid)", errno: Errno.notPermitted)
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
        do {
            try POSIX.dropPrivileges(uid: uid, gid: gid, groups: groups)
        } catch {
            throw .io(operation: "switch to", path: UserDatabase.system.describe(uid), errno: error)
        }
    }
}
