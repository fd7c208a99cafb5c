import CortexCore
import Glibc

/// File metadata as `stat(2)` reports it: the layer's name for the C struct, read through the
/// named properties below so that no file outside the layer needs the C library's `st_` fields
/// or `S_IF*` constants.
public typealias FileStatus = stat

extension stat {
    /// True for a symbolic link itself (only a status taken without following links sees one).
    @inlinable public var isSymbolicLink: Bool { st_mode & S_IFMT == S_IFLNK }

    /// The size in bytes (`st_size`).
    @inlinable public var size: Int64 { Int64(st_size) }

    /// The owning user id (`st_uid`).
    @inlinable public var owner: UInt32 { st_uid }

    /// The permission bits, set-id and sticky bits included (`st_mode & 0o7777`).
    @inlinable public var permissions: UInt32 { st_mode & 0o7777 }

    /// The device holding the file (`st_dev`).
    @inlinable public var device: UInt64 { UInt64(st_dev) }

    /// The inode number (`st_ino`).
    @inlinable public var inode: UInt64 { UInt64(st_ino) }

    /// How many names the file has (`st_nlink`).
    @inlinable public var linkCount: UInt64 { UInt64(st_nlink) }

    /// The modification time in milliseconds since the Unix epoch (`st_mtim`).
    @inlinable public var modificationMilliseconds: Int64 {
        Int64(st_mtim.tv_sec) * 1000 + Int64(st_mtim.tv_nsec) / 1_000_000
    }

    /// The status-change time in nanoseconds since the Unix epoch (`st_ctim`).
    @inlinable public var changeNanoseconds: Int64 { Int64(st_ctim.tv_sec) * 1_000_000_000 + Int64(st_ctim.tv_nsec) }
}

/// The flags of `open(2)` by name, as swift-system's `FileDescriptor.OpenOptions` spells them:
/// the layer's `open` functions take them, so no file outside the layer needs `O_*` constants.
/// The empty set is `O_RDONLY`.
public struct OpenFlags: OptionSet, Sendable {
    /// The C flag bits.
    public var rawValue: Int32

    /// Wraps C flag bits.
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Open for reading only (`O_RDONLY`, zero: the empty set).
    @inlinable public static var readOnly: OpenFlags { OpenFlags(rawValue: O_RDONLY) }
    /// Open for writing only (`O_WRONLY`).
    @inlinable public static var writeOnly: OpenFlags { OpenFlags(rawValue: O_WRONLY) }
    /// Open for reading and writing (`O_RDWR`).
    @inlinable public static var readWrite: OpenFlags { OpenFlags(rawValue: O_RDWR) }
    /// Create the file when it does not exist (`O_CREAT`).
    @inlinable public static var create: OpenFlags { OpenFlags(rawValue: O_CREAT) }
    /// With `create`: fail with `EEXIST` when the name exists (`O_EXCL`).
    @inlinable public static var exclusive: OpenFlags { OpenFlags(rawValue: O_EXCL) }
    /// Every write goes to the end of the file (`O_APPEND`).
    @inlinable public static var append: OpenFlags { OpenFlags(rawValue: O_APPEND) }
}
