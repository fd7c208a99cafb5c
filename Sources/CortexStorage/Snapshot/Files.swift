import CortexCore

/// Small file operations with `CortexError`s that name the path.
public enum Files {
    /// Creates folder `name` in `folder` with `mode`; an existing one is fine (and keeps its
    /// mode; a link there is refused). An exact mode is set on a new folder through a descriptor.
    public static func makeDirectory(_ name: String, in folder: FolderDescriptor, mode: CreationMode = .masked(0o777))
        throws(CortexError)
    {
        try withPath("create folder", folder.displayPath(name)) { () throws(Errno) in try folder.makeDirectory(name, mode: mode) }
    }

    /// Creates `name` in `folder` with `mode` if missing and sets its modification time to now (a
    /// heartbeat). A link or a non-regular file there is refused. An exact mode is set only on a
    /// file this process created (one `fstat` to tell).
    public static func touch(_ name: String, in folder: FolderDescriptor, mode: CreationMode = .umask) throws(CortexError) {
        let path = folder.displayPath(name)
        let file = try withPath("open", path) { () throws(Errno) in
            FileDescriptor(rawValue: try folder.openRegular(name, [.writeOnly, .create], mode: mode.bits).fd)
        }
        try file.closeAfter { () throws(CortexError) in
            if mode.exact {
                try withPath("set the mode of", path) { () throws(Errno) in
                    let info = try file.status()
                    if info.owner == POSIX.effectiveUserID, info.permissions != mode.bits { try mode.apply(to: file.rawValue) }
                }
            }
            try withPath("touch", path) { () throws(Errno) in try POSIX.touch(file.rawValue) }
        }
    }

}
