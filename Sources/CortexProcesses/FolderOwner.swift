import CortexCore
import CortexStorage

/// Root on a folder that belongs to someone else acts as that user (docs/decisions/023-shared-folders.md).
///
/// Every tool calls `actAsOwner(of:)` before it opens anything in the coordination folder. A
/// process running as root on a folder owned by another user switches to that user, with the
/// user's groups, for good (`Credentials.dropProcess`: supplementary groups, then group id, then
/// user id; the saved ids go too, so it can never switch back). Every file it then creates is the
/// owner's, and it can do nothing in the folder the owner could not. When the switch is impossible it refuses with exit 77.
public enum FolderOwner {
    /// The owner of `root`, or of its nearest existing ancestor when it does not exist yet (the
    /// user it would be created for).
    public static func owner(of root: String) -> UInt32? {
        var probe = root.isEmpty ? "." : root
        while true {
            if let info = try? POSIX.status(probe) { return info.owner }
            if probe == "." || probe == "/" { return nil }
            guard let slash = probe.lastIndex(of: "/") else {
                probe = "."
                continue
            }
            probe = slash == probe.startIndex ? "/" : String(probe[..<slash])
        }
    }

    /// When this process runs as root and `root` belongs to another user, becomes that user
    /// (groups included). Does nothing for a non-root process, or a folder owned by root.
    /// - Returns: the user switched to, or nil when nothing changed.
    /// - Throws: `permissionDenied` when the owner is unknown or the switch failed.
    @discardableResult
    public static func actAsOwner(of root: String) throws(CortexError) -> UserAccount? {
        guard POSIX.effectiveUserID == 0 || POSIX.userID == 0 else { return nil }
        guard let owner = owner(of: root), owner != 0 else { return nil }
        guard let account = UserDatabase.system.user(uid: owner) else {
            throw .permissionDenied(
                "\(root) belongs to uid \(owner), which has no entry in /etc/passwd; refusing to act on it as root (run this as its owner)")
        }
        try become(account, folder: root)
        return account
    }

    /// Switches this process to `account`, with the groups it gets at login, for good
    /// (`Credentials.dropProcess`: every id and the group list checked afterwards, root not regainable).
    /// - Throws: `permissionDenied` naming the user and the folder when any step failed.
    static func become(_ account: UserAccount, folder: String) throws(CortexError) {
        do {
            try Credentials.of(account).dropProcess()
        } catch {
            guard case .io(_, _, let errno) = error else { throw error }
            throw .permissionDenied("cannot act as \(account.name) (uid \(account.uid)), the owner of \(folder): \(errno)")
        }
    }
}
