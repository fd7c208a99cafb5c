/// Which file stands at a path: its inode and change time (a rename puts another inode there).
public struct FileIdentity: Equatable, Sendable {
    /// The inode number.
    public var inode: UInt64
    /// The change time in nanoseconds since the epoch.
    public var changedNanoseconds: Int64

    /// An identity from its parts.
    public init(inode: UInt64, changedNanoseconds: Int64) {
        self.inode = inode
        self.changedNanoseconds = changedNanoseconds
    }
}
