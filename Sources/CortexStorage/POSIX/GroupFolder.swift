import CortexCore
import Glibc

/// Turning a coordination folder into a group folder (`cortex init --group G`).
public enum GroupFolder {
    /// Gives the tree at `root` to group `gid`: every folder set-group-ID and 2770 (new files and
    /// folders then inherit the group), every regular file 0660. Symbolic links and other special
    /// files are left alone and never followed; each file is changed through a descriptor opened
    /// with `O_NOFOLLOW`, and only when its group or mode differs. Safe to run again.
    /// - Returns: how many files and folders were changed.
    /// - Throws: `io` naming the file (exit 77 when the caller may not change it: not its owner,
    ///   or not a member of the group).
    @discardableResult
    public static func share(_ root: String, group gid: gid_t) throws(CortexError) -> Int {
        var changed = 0
        var pending = [root]
        while let path = pending.popLast() {
            // The folder named by the caller may be a link to it; nothing below it is followed.
            let isRoot = path == root
            guard let info = try withPath("stat", path, { () throws(Errno) in try POSIX.status(path, followingLinks: isRoot) }) else {
                if isRoot { throw .notFound("no folder at \(root)") }
                continue
            }
            let type = info.st_mode & S_IFMT
            guard type == S_IFDIR || type == S_IFREG else { continue }
            let wanted: mode_t = type == S_IFDIR ? 0o2770 : 0o660
            if info.st_gid != gid || info.st_mode & 0o7777 != wanted {
                try withPath("give to group \(gid)", path) { () throws(Errno) in
                    try change(path, isFolder: type == S_IFDIR, gid, wanted, followingLinks: isRoot)
                }
                changed += 1
            }
            if type == S_IFDIR {
                let names = try withPath("list", path) { () throws(Errno) in try POSIX.directoryEntries(path) }
                pending += names.map { path + "/" + $0 }
            }
        }
        return changed
    }

    private static func change(_ path: String, isFolder: Bool, _ gid: gid_t, _ mode: mode_t, followingLinks: Bool) throws(Errno) {
        let flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | (followingLinks ? 0 : O_NOFOLLOW) | (isFolder ? O_DIRECTORY : 0)
        let file = try FileDescriptor.open(path, flags)
        try file.closeAfter { () throws(Errno) in
            let info = try file.status()
            guard info.st_mode & S_IFMT == (isFolder ? S_IFDIR : S_IFREG) else { return }
            // The group first: changing it clears the set-group-ID bit, which the mode then sets.
            if info.st_gid != gid { _ = try retryingInterrupts { fchown(file.rawValue, uid_t.max, gid) } }
            try CreationMode.exact(mode).apply(to: file.rawValue)
        }
    }
}
