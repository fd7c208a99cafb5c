import CortexCore
import Glibc

extension FileIdentity {
    /// The identity in `info`.
    public init(_ info: stat) {
        self.init(
            inode: UInt64(info.st_ino), changedNanoseconds: Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec))
    }

    /// The identity of the file at `path`, or nil when there is none.
    public static func of(_ path: String) -> FileIdentity? { (try? POSIX.status(path)).flatMap { $0.map(FileIdentity.init) } }

    /// The identity of whatever stands at `name` in `folder` (a link is described, not followed),
    /// or nil when nothing is there.
    public static func of(_ name: String, in folder: FolderDescriptor) -> FileIdentity? {
        (try? folder.status(name)).flatMap { $0.map(FileIdentity.init) }
    }
}
