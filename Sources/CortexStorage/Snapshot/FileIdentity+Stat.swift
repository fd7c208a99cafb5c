import CortexCore

extension FileIdentity {
    /// The identity in `info`.
    public init(_ info: FileStatus) {
        self.init(inode: info.inode, changedNanoseconds: info.changeNanoseconds)
    }

    /// The identity of the file at `path`, or nil when there is none.
    public static func of(_ path: String) -> FileIdentity? { (try? POSIX.status(path)).flatMap { $0.map(FileIdentity.init) } }

    /// The identity of whatever stands at `name` in `folder` (a link is described, not followed),
    /// or nil when nothing is there.
    public static func of(_ name: String, in folder: FolderDescriptor) -> FileIdentity? {
        (try? folder.status(name)).flatMap { $0.map(FileIdentity.init) }
    }
}
