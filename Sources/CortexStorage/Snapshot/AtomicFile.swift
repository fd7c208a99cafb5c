import CortexCore

/// Publishing whole files: a reader that opens the path sees the old file or the new one,
/// never a mix (invariant 6). Inside a coordination folder every step is relative to the
/// folder's descriptor and follows no link (docs/decisions/020-no-path-tricks.md); the variants
/// without `in:` are for files the user names outside it (`--out FILE`).
public enum AtomicFile {
    /// How far a published file must survive.
    public enum Durability: Sendable {
        /// Atomic for readers and survives a process crash (`kill -9`): temp, write, rename.
        /// For views, which any later command rebuilds from the journal.
        case processCrash
        /// Also survives power loss once this returns: the file and its folder are `fsync`ed.
        /// For snapshots and results.
        case powerLoss
    }

    /// Replaces `path` (a file the user named) with `bytes`; see `replace(_:in:with:durability:mode:)`.
    public static func replace(_ path: String, with bytes: [UInt8], durability: Durability, mode: CreationMode = .umask)
        throws(CortexError)
    {
        let (folder, name) = FolderDescriptor.containing(path)
        try replace(name, in: folder, with: bytes, durability: durability, mode: mode)
    }

    /// Replaces `name` in `folder` with `bytes`: a temp file beside it (same file system;
    /// `O_EXCL`, `O_NOFOLLOW`, named `.NAME.tmp-PID-RANDOM` so globs skip it), write, optionally
    /// `fsync`, `renameat` over `name` (a link there is replaced, never followed), optionally
    /// `fsync` the folder. On failure the temp file is removed and `name` is untouched. The file
    /// gets `mode` (the folder's `FolderPermissions`; by default 0666 under the umask), set on the
    /// temp file before it takes the name.
    public static func replace(
        _ name: String, in folder: FolderDescriptor, with bytes: [UInt8], durability: Durability, mode: CreationMode = .umask
    ) throws(CortexError) {
        let temp = try writeTemporaryFile(beside: name, in: folder, bytes: bytes, sync: durability == .powerLoss, mode: mode)
        do throws(Errno) {
            try folder.rename(temp, name)
        } catch {
            folder.unlink(temp)
            throw .system("rename into", folder.displayPath(name), error)
        }
        if durability == .powerLoss { try syncFolder(of: name, in: folder) }
    }

    /// Creates `path` (a file the user named) with `bytes` only if nothing is there yet; see
    /// `createIfAbsent(_:in:with:mode:)`.
    @discardableResult
    public static func createIfAbsent(_ path: String, with bytes: [UInt8], mode: CreationMode = .umask) throws(CortexError) -> Bool {
        let (folder, name) = FolderDescriptor.containing(path)
        return try createIfAbsent(name, in: folder, with: bytes, mode: mode)
    }

    /// Creates `name` in `folder` with `bytes` only if nothing is there yet (temp file, then
    /// `linkat`, which never replaces). Returns false when the file already existed.
    @discardableResult
    public static func createIfAbsent(_ name: String, in folder: FolderDescriptor, with bytes: [UInt8], mode: CreationMode = .umask)
        throws(CortexError) -> Bool
    {
        let temp = try writeTemporaryFile(beside: name, in: folder, bytes: bytes, sync: true, mode: mode)
        defer { folder.unlink(temp) }
        do throws(Errno) {
            try folder.link(temp, name)
        } catch {
            if error == .fileExists { return false }
            throw .system("create", folder.displayPath(name), error)
        }
        try syncFolder(of: name, in: folder)
        return true
    }

    /// A private name beside `name`: `.NAME.tmp-PID-RANDOM` (hidden from globs, unique per process).
    static func temporaryName(beside name: String, in folder: FolderDescriptor) -> String {
        let (directory, leaf) = split(folder.relativeName(name))
        let temp = ".\(leaf).tmp-\(POSIX.processID)-\(POSIX.randomHex(bytes: 4))"
        return directory == "." ? temp : directory + "/" + temp
    }

    /// Creates a temp file beside `name` (`O_EXCL|O_NOFOLLOW`) (`mode`) holding `bytes`, `fsync`ed when
    /// `sync`, and returns its name. Nothing is left behind on failure.
    static func writeTemporaryFile(beside name: String, in folder: FolderDescriptor, bytes: [UInt8], sync: Bool, mode: CreationMode)
        throws(CortexError) -> String
    {
        let temp = temporaryName(beside: name, in: folder)
        let fd = try withPath("create", folder.displayPath(temp)) { () throws(Errno) in
            try folder.open(temp, [.writeOnly, .create, .exclusive], mode: mode.bits)
        }
        do throws(Errno) {
            try mode.apply(to: fd)
            try POSIX.writeAll(fd, bytes)
            if sync { try POSIX.fsync(fd) }
        } catch {
            POSIX.close(fd)
            folder.unlink(temp)
            throw .system("write", folder.displayPath(temp), error)
        }
        POSIX.close(fd)
        return temp
    }

    /// `fsync`s the folder holding `name`, so a rename or link into it survives a crash.
    static func syncFolder(of name: String, in folder: FolderDescriptor) throws(CortexError) {
        let directory = split(folder.relativeName(name)).directory
        let relative = directory == "." ? "" : directory
        try withPath("fsync", folder.displayPath(relative)) { () throws(Errno) in try folder.syncDirectory(relative) }
    }

    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = slash == path.startIndex ? "/" : String(path[..<slash])
        return (directory, String(path[path.index(after: slash)...]))
    }

}

extension AtomicFile {
    /// Makes `name` another name of the file at `existing` (both in `folder`), replacing whatever
    /// `name` named: a hard link under a temp name, renamed into place. No byte is copied. A link
    /// at `existing` is refused (only a regular file is linked).
    public static func link(_ existing: String, replacing name: String, in folder: FolderDescriptor) throws(CortexError) {
        let source = folder.displayPath(existing)
        guard let info = try withPath("stat", source, { () throws(Errno) in try folder.status(existing) }) else {
            throw .system("link", source, Errno.noSuchFileOrDirectory)
        }
        guard info.isRegularFile else {
            throw .system("link", source, info.isSymbolicLink ? Errno.tooManySymbolicLinkLevels : Errno.notRegularFile)
        }
        let temp = temporaryName(beside: name, in: folder)
        try withPath("link", source) { () throws(Errno) in try folder.link(existing, temp) }
        do throws(Errno) {
            try folder.rename(temp, name)
        } catch {
            folder.unlink(temp)
            throw .system("rename into", folder.displayPath(name), error)
        }
    }
}

extension AtomicFile {
    /// What `exchange` found at the path it published to.
    public enum Displaced: Equatable, Sendable {
        /// Nothing was there.
        case nothing
        /// A file was there; these are its last bytes (at most 4 KiB).
        case file(tail: [UInt8])
        /// The file system cannot swap names (no `RENAME_EXCHANGE`); a plain rename replaced an unknown file.
        case unknown
    }

    /// Publishes `bytes` at `name` in `folder` like `replace` with `.processCrash`, but swaps the
    /// new file in with `renameat2(RENAME_EXCHANGE)`, so the caller learns what it displaced (the
    /// old file ends up under the temp name, its last `tailBytes` are read if it is a regular
    /// file, then it is removed).
    public static func exchange(
        _ name: String, in folder: FolderDescriptor, with bytes: [UInt8], mode: CreationMode = .umask, tailBytes: Int = 4096
    ) throws(CortexError) -> Displaced {
        let temp = try writeTemporaryFile(beside: name, in: folder, bytes: bytes, sync: false, mode: mode)
        do throws(Errno) {
            try folder.exchange(temp, name)
            let tail = (try? readTail(temp, in: folder, bytes: tailBytes)) ?? []
            folder.unlink(temp)
            return .file(tail: tail)
        } catch {
            let exchangeError = error
            do throws(Errno) {
                try folder.rename(temp, name)
            } catch {
                folder.unlink(temp)
                throw .system("rename into", folder.displayPath(name), error)
            }
            return exchangeError == .noSuchFileOrDirectory ? .nothing : .unknown
        }
    }

    private static func readTail(_ name: String, in folder: FolderDescriptor, bytes: Int) throws(Errno) -> [UInt8] {
        let (fd, info) = try folder.openRegular(name)
        return try FileDescriptor(rawValue: fd).closeAfter { () throws(Errno) in
            try POSIX.read(fd, at: max(0, info.size - Int64(bytes)), count: bytes)
        }
    }

    /// The last `bytes` bytes of the regular file `name` in `folder`, or nil when there is none
    /// (or it is a link, a FIFO or a device).
    public static func tail(of name: String, in folder: FolderDescriptor, bytes: Int = 4096) -> [UInt8]? {
        try? readTail(name, in: folder, bytes: bytes)
    }
}
