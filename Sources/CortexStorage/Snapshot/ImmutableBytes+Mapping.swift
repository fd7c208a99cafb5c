import CortexCore

extension ImmutableBytes {
    /// The regular file `name` in `folder` mapped read-only, or nil when it cannot be opened or
    /// mapped, is a link, a FIFO or a device, or is larger than `maximumMappedBytes` (an empty
    /// file is returned as an empty copy).
    public static func map(_ name: String, in folder: FolderDescriptor) -> ImmutableBytes? {
        guard let (fd, info) = try? folder.openRegular(name) else { return nil }
        defer { POSIX.close(fd) }
        return map(fd: fd, info: info)
    }

    /// The regular file at `path` (outside a coordination folder) mapped read-only; see `map(_:in:)`.
    public static func map(_ path: String) -> ImmutableBytes? {
        let (folder, name) = FolderDescriptor.containing(path)
        return map(name, in: folder)
    }

    private static func map(fd: Int32, info: FileStatus) -> ImmutableBytes? {
        let size = Int(info.size)
        guard size <= maximumMappedBytes else { return nil }
        guard size > 0 else { return ImmutableBytes([]) }
        guard let mapping = POSIX.mapReadOnly(fd, size: size) else { return nil }
        return ImmutableBytes(borrowing: mapping, identity: FileIdentity(info), release: { POSIX.unmap($0) })
    }
}
