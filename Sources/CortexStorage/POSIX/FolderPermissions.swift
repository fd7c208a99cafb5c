import CortexCore
import Glibc

/// The mode a new file or folder is created with, and whether the umask may narrow it.
public struct CreationMode: Equatable, Sendable {
    /// The permission bits (and set-group-ID for a folder) asked for.
    public var bits: mode_t
    /// True when the new file must end up with exactly `bits` whatever the creator's umask:
    /// it is `fchmod`ed right after it is created (before a temp file is renamed into place).
    public var exact: Bool

    /// `bits`, narrowed by the creator's umask (what `open(2)` and `mkdir(2)` do by themselves).
    public static func masked(_ bits: mode_t) -> CreationMode { CreationMode(bits: bits, exact: false) }

    /// Exactly `bits`, whatever the umask.
    public static func exact(_ bits: mode_t) -> CreationMode { CreationMode(bits: bits, exact: true) }

    /// A file anyone may read as far as the umask allows: 0666 under the umask.
    public static let umask = masked(0o666)

    /// Sets `fd`'s mode to `bits` when the mode must be exact (a file this process just created).
    public func apply(to fd: Int32) throws(Errno) {
        guard exact else { return }
        _ = try retryingInterrupts { fchmod(fd, bits) }
    }
}

/// How the files of one coordination folder are created (docs/decisions/023-shared-folders.md).
///
/// - A **group folder** (its root is a set-group-ID folder its group may write, as made by
///   `cortex init --group G`): every file is created 0660 and every folder 2770, exactly,
///   whatever the creator's umask, so any member (or root) may append to, rename over or
///   rotate what another created; the group is inherited from the set-group-ID folders.
/// - Otherwise the umask is respected (0666 and 0777 under it), except for private content
///   (worker logs and files, results, contexts, requests), which is never readable by others:
///   0660 and 0770 under the umask.
/// - Owner-only content (a requester's captured environment) is 0600 and 0700 in both.
public struct FolderPermissions: Equatable, Sendable {
    /// What a file holds, for its mode.
    public enum Content: Sendable {
        /// The journal, snapshots, views, settings: what every user of the folder reads.
        case shared
        /// Worker logs and files, results, contexts, requests: never readable by "other".
        case `private`
        /// What only its writer may read, even in a group folder (a requester's captured
        /// environment): 0600 and 0700, exactly in a group folder, under the umask otherwise.
        case ownerOnly
    }

    /// True for a group folder: exact group-writable modes.
    public var isGroupShared: Bool

    /// A folder of one user: the umask decides, private content never "other"-readable.
    public static let personal = FolderPermissions(isGroupShared: false)
    /// A group folder: 0660 files and 2770 folders.
    public static let groupShared = FolderPermissions(isGroupShared: true)

    /// The mode of a new file holding `content`.
    public func file(_ content: Content) -> CreationMode {
        switch (content, isGroupShared) {
        case (.ownerOnly, true): .exact(0o600)
        case (.ownerOnly, false): .masked(0o600)
        case (_, true): .exact(0o660)
        case (.shared, false): .masked(0o666)
        case (.private, false): .masked(0o660)
        }
    }

    /// The mode of a new folder holding `content`.
    public func directory(_ content: Content) -> CreationMode {
        switch (content, isGroupShared) {
        case (.ownerOnly, true): .exact(0o2700)
        case (.ownerOnly, false): .masked(0o700)
        case (_, true): .exact(0o2770)
        case (.shared, false): .masked(0o777)
        case (.private, false): .masked(0o770)
        }
    }

    /// The policy a folder with this metadata calls for: group-shared when it is a folder with
    /// the set-group-ID bit and group write permission.
    public static func of(_ info: stat) -> FolderPermissions {
        let isFolder = info.st_mode & S_IFMT == S_IFDIR
        let groupShared = isFolder && info.st_mode & S_ISGID != 0 && info.st_mode & S_IWGRP != 0
        return groupShared ? .groupShared : .personal
    }

    /// The policy of the coordination folder at `root` (one `stat`); personal when it is missing.
    public static func detect(root: String) -> FolderPermissions {
        guard let info = try? POSIX.status(root) else { return .personal }
        return of(info)
    }
}
