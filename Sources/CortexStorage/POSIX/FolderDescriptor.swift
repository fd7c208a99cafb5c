import CCortexShims
import CortexCore
import Glibc

/// A folder opened once, inside which every name is resolved without following a symbolic link
/// and without leaving it (docs/decisions/020-no-path-tricks.md).
///
/// The root itself is opened by its path (which may be a link: that is the user's choice) the
/// first time it is used, once per instance. Below it, sub-folders are opened with
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or a walk of `openat(O_NOFOLLOW)` where the
/// kernel has no `openat2`) and kept open; files are then opened, created, renamed, linked and
/// removed relative to those descriptors with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`, so a link planted
/// anywhere inside the folder is refused (`ELOOP`) rather than followed. Every open is
/// non-blocking, and `readFile`/`openRegular` check for a regular file before reading anything,
/// so a FIFO or device planted inside cannot hang or flood a reader.
///
/// Names are given relative to the root ("journal/000000000001.jsonl") or as the layout spells
/// them (root + "/" + relative). Thread-safe: the cache of sub-folder descriptors takes a lock.
public final class FolderDescriptor: @unchecked Sendable {
    // @unchecked: the mutable descriptor cache is only touched under `lock`.
    /// The folder's path as the user gave it (used for messages and to recognise layout paths).
    public let root: String
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private var folders: [String: Int32] = [:]

    /// Sub-folders kept open at most (beyond it, a folder is opened for the one call).
    static let cachedFolderLimit = 32

    /// A folder at `root`; nothing is opened until the first call.
    public init(root: String) {
        var trimmed = root
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.root = trimmed.isEmpty ? "." : trimmed
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
    }

    deinit {
        for fd in folders.values { POSIX.close(fd) }
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    /// The folder holding the file at `path` (for files named outside a coordination folder,
    /// such as `--out FILE`), and the file's name in it.
    public static func containing(_ path: String) -> (folder: FolderDescriptor, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (FolderDescriptor(root: "."), path) }
        let directory = slash == path.startIndex ? "/" : String(path[..<slash])
        return (FolderDescriptor(root: directory), String(path[path.index(after: slash)...]))
    }

    // MARK: names

    /// `path` relative to the root: the layout's spelling loses its `root/` prefix.
    public func relativeName(_ path: String) -> String {
        let prefix = root == "/" ? "/" : root + "/"
        if path.hasPrefix(prefix) { return String(path.dropFirst(prefix.count)) }
        if path == root { return "" }
        return path
    }

    /// The path of `name` for messages: root + "/" + relative name.
    public func displayPath(_ name: String) -> String {
        let relative = relativeName(name)
        if relative.isEmpty { return root }
        return root == "/" ? "/" + relative : root + "/" + relative
    }

    /// A name split into the folder that holds it (relative) and its last component.
    private func split(_ name: String) -> (folder: String, leaf: String) {
        let relative = relativeName(name)
        guard let slash = relative.lastIndex(of: "/") else { return ("", relative) }
        return (String(relative[..<slash]), String(relative[relative.index(after: slash)...]))
    }

    // MARK: folder descriptors

    /// The root's descriptor, opened on first use.
    private func rootDescriptor() throws(Errno) -> Int32 {
        if let fd = folders[""] { return fd }
        // The root is the one path resolved by name, links included (the user chose it).
        let fd = try POSIX.open(root, O_RDONLY | O_DIRECTORY | O_NONBLOCK)
        folders[""] = fd
        return fd
    }

    /// True once `openat2` has answered ENOSYS: walk components from then on.
    nonisolated(unsafe) private static var openat2Missing = false

    /// Opens the sub-folder `relative` beneath the root (never through a link), uncached.
    /// Without `O_DIRECTORY`, so that a link in a folder's place fails with `ELOOP` (with it,
    /// Linux reports `ENOTDIR`); the `fstat` after the open checks that it is a folder.
    private func openBeneath(_ relative: String, from rootFD: Int32) throws(Errno) -> Int32 {
        let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        var opened: Int32?
        if !FolderDescriptor.openat2Missing {
            do throws(Errno) {
                opened = try retryingInterrupts { cortex_openat_beneath(rootFD, relative, flags, 0) }
            } catch {
                guard error == .noFunction else { throw error }
                FolderDescriptor.openat2Missing = true
            }
        }
        let fd: Int32
        if let opened { fd = opened } else { fd = try FolderDescriptor.walk(relative, from: rootFD, flags: flags) }
        do throws(Errno) {
            guard try POSIX.status(fd).st_mode & S_IFMT == S_IFDIR else { throw Errno.notDirectory }
        } catch {
            POSIX.close(fd)
            throw error
        }
        return fd
    }

    /// The fallback for kernels without `openat2`: one `openat(O_NOFOLLOW)` per component, `..`
    /// refused (EXDEV, as `RESOLVE_BENEATH` would).
    static func walk(_ relative: String, from start: Int32, flags: Int32) throws(Errno) -> Int32 {
        guard !relative.hasPrefix("/") else { throw Errno.improperLink }
        var current = try retryingInterrupts { fcntl(start, F_DUPFD_CLOEXEC, 0) }
        for component in relative.split(separator: "/") where component != "." {
            guard component != ".." else {
                POSIX.close(current)
                throw Errno.improperLink
            }
            let next: Int32
            do {
                next = try retryingInterrupts { openat(current, String(component), flags) }
            } catch {
                POSIX.close(current)
                throw error
            }
            POSIX.close(current)
            current = next
        }
        return current
    }

    /// Runs `body` with the descriptor of folder `relative` ("" for the root). Kept open for later
    /// calls unless the cache is full.
    private func withFolder<T>(_ relative: String, _ body: (Int32) throws(Errno) -> T) throws(Errno) -> T {
        pthread_mutex_lock(lock)
        let fd: Int32
        var owned = false
        do {
            let rootFD = try rootDescriptor()
            if relative.isEmpty || relative == "." {
                fd = rootFD
            } else if let cached = folders[relative] {
                fd = cached
            } else {
                fd = try openBeneath(relative, from: rootFD)
                if folders.count < FolderDescriptor.cachedFolderLimit { folders[relative] = fd } else { owned = true }
            }
        } catch {
            pthread_mutex_unlock(lock)
            throw error
        }
        pthread_mutex_unlock(lock)
        defer { if owned { POSIX.close(fd) } }
        return try body(fd)
    }

    /// A descriptor of its own (close-on-exec; the caller closes it) for folder `name` beneath the
    /// root, opened without following a link.
    public func openFolder(_ name: String) throws(Errno) -> Int32 {
        try withFolder(relativeName(name)) { (fd) throws(Errno) in try retryingInterrupts { fcntl(fd, F_DUPFD_CLOEXEC, 0) } }
    }

    /// Runs `body` with the descriptor of the folder holding `name` and the name's last component,
    /// refusing names that are empty, `.` or `..`.
    private func withParent<T>(_ name: String, _ body: (Int32, String) throws(Errno) -> T) throws(Errno) -> T {
        let (folder, leaf) = split(name)
        guard !leaf.isEmpty, leaf != ".", leaf != ".." else { throw Errno.improperLink }
        return try withFolder(folder) { (fd) throws(Errno) in try body(fd, leaf) }
    }

    // MARK: files

    /// Opens the file `name` with `flags` (plus `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`). A link at
    /// `name` or on the way to it fails with `ELOOP`.
    public func open(_ name: String, _ flags: Int32, mode: mode_t = 0o644) throws(Errno) -> Int32 {
        try withParent(name) { (folder, leaf) throws(Errno) in
            try retryingInterrupts { openat(folder, leaf, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode) }
        }
    }

    /// Opens the file `name` with `flags` by name (see `open(_:_:mode:)` with C flags).
    @inlinable
    public func open(_ name: String, _ flags: OpenFlags, mode: mode_t = 0o644) throws(Errno) -> Int32 {
        try open(name, flags.rawValue, mode: mode)
    }

    /// Opens `name` like `open` and checks with `fstat` that it is a regular file (else
    /// `Errno.notRegularFile`, nothing read). Returns the descriptor and its metadata.
    public func openRegular(_ name: String, _ flags: Int32 = O_RDONLY, mode: mode_t = 0o644) throws(Errno) -> (fd: Int32, info: stat) {
        let fd: Int32
        do { fd = try open(name, flags, mode: mode) } catch {
            // A FIFO opened for writing with no reader: not a regular file either.
            throw error == .noSuchAddressOrDevice ? Errno.notRegularFile : error
        }
        do throws(Errno) {
            let info = try POSIX.status(fd)
            guard info.st_mode & S_IFMT == S_IFREG else { throw Errno.notRegularFile }
            return (fd, info)
        } catch {
            POSIX.close(fd)
            throw error
        }
    }

    /// Opens the regular file `name` with `flags` by name (see `openRegular(_:_:mode:)` with C flags).
    @inlinable
    public func openRegular(_ name: String, _ flags: OpenFlags, mode: mode_t = 0o644) throws(Errno) -> (fd: Int32, info: stat) {
        try openRegular(name, flags.rawValue, mode: mode)
    }

    /// The whole of the regular file `name`, at most `limit` bytes (`EFBIG` when larger; nothing
    /// past the limit is ever read).
    public func readFile(_ name: String, limit: Int) throws(Errno) -> [UInt8] {
        try readFileWithStatus(name, limit: limit).bytes
    }

    /// The whole of the regular file `name` (as `readFile`) and its metadata from the same open
    /// descriptor, for a reader that trusts a file by its owner or mode.
    public func readFileWithStatus(_ name: String, limit: Int) throws(Errno) -> (bytes: [UInt8], info: stat) {
        let (fd, info) = try openRegular(name)
        let bytes = try FileDescriptor(rawValue: fd).closeAfter { () throws(Errno) in
            try POSIX.readBounded(fd, size: Int64(info.st_size), limit: limit)
        }
        return (bytes, info)
    }

    /// Metadata of `name` itself (a link is described, never followed), or nil when nothing is there.
    public func status(_ name: String) throws(Errno) -> stat? {
        do {
            return try withParent(name) { (folder, leaf) throws(Errno) in
                var info = stat()
                _ = try retryingInterrupts { fstatat(folder, leaf, &info, AT_SYMLINK_NOFOLLOW) }
                return info
            }
        } catch {
            if error == .noSuchFileOrDirectory || error == .notDirectory { return nil }
            throw error
        }
    }

    /// The modification time of regular file `name` in milliseconds, or nil when it is missing
    /// or not a regular file.
    public func modificationMilliseconds(_ name: String) -> Int64? {
        guard let info = try? status(name), info.st_mode & S_IFMT == S_IFREG else { return nil }
        return Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
    }

    /// The names in folder `name` ("" for the root), without `.` and `..`.
    public func entries(_ name: String) throws(Errno) -> [String] {
        let fd = try withFolder(relativeName(name)) { (folder) throws(Errno) in
            try retryingInterrupts { openat(folder, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        }
        return try POSIX.directoryEntries(descriptor: fd)
    }

    /// Creates folder `name` with `mode`; an existing one (which must be a real folder, not a
    /// link) is fine and keeps its mode. An exact mode is set on the new folder through a
    /// descriptor opened without following a link.
    public func makeDirectory(_ name: String, mode: CreationMode = .masked(0o777)) throws(Errno) {
        try withParent(name) { (folder, leaf) throws(Errno) in
            if mkdirat(folder, leaf, mode.bits) == 0 {
                guard mode.exact else { return }
                let fd = try retryingInterrupts { openat(folder, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                defer { POSIX.close(fd) }
                try mode.apply(to: fd)
                return
            }
            guard Errno.current == .fileExists else { throw Errno.current }
            var info = stat()
            _ = try retryingInterrupts { fstatat(folder, leaf, &info, AT_SYMLINK_NOFOLLOW) }
            if info.st_mode & S_IFMT == S_IFLNK { throw Errno.tooManySymbolicLinkLevels }
            if info.st_mode & S_IFMT != S_IFDIR { throw Errno.notDirectory }
        }
    }

    /// Renames `from` to `to` (both inside this folder), replacing `to`. A link at `to` is
    /// replaced, never followed.
    public func rename(_ from: String, _ to: String) throws(Errno) {
        try withParent(from) { (fromFolder, fromLeaf) throws(Errno) in
            try withParent(to) { (toFolder, toLeaf) throws(Errno) in
                _ = try retryingInterrupts { renameat(fromFolder, fromLeaf, toFolder, toLeaf) }
            }
        }
    }

    /// Swaps the names `from` and `to` atomically (`renameat2(RENAME_EXCHANGE)`).
    public func exchange(_ from: String, _ to: String) throws(Errno) {
        try withParent(from) { (fromFolder, fromLeaf) throws(Errno) in
            try withParent(to) { (toFolder, toLeaf) throws(Errno) in
                _ = try retryingInterrupts { cortex_renameat_exchange(fromFolder, fromLeaf, toFolder, toLeaf) }
            }
        }
    }

    /// Makes `new` another name of `existing`; fails with `EEXIST` rather than replace. A link
    /// at `existing` is linked as a link (`linkat` without `AT_SYMLINK_FOLLOW`), never followed.
    public func link(_ existing: String, _ new: String) throws(Errno) {
        try withParent(existing) { (fromFolder, fromLeaf) throws(Errno) in
            try withParent(new) { (toFolder, toLeaf) throws(Errno) in
                _ = try retryingInterrupts { linkat(fromFolder, fromLeaf, toFolder, toLeaf, 0) }
            }
        }
    }

    /// Removes the name `name` (a link itself, never what it points to). True when it was removed.
    @discardableResult
    public func unlink(_ name: String) -> Bool {
        (try? withParent(name) { (folder, leaf) throws(Errno) in
            try retryingInterrupts { unlinkat(folder, leaf, 0) }
        }) != nil
    }

    /// `fsync`s folder `name` ("" for the root), so a rename inside it survives a crash.
    public func syncDirectory(_ name: String) throws(Errno) {
        try withFolder(relativeName(name)) { (fd) throws(Errno) in try POSIX.fsync(fd) }
    }
}

extension POSIX {
    /// The bytes of the file open at `fd`, whose `fstat` size is `size`: at most `limit` bytes
    /// are ever read; a larger file (or one that grew past the limit) fails with `EFBIG`.
    public static func readBounded(_ fd: Int32, size: Int64, limit: Int) throws(Errno) -> [UInt8] {
        guard size <= Int64(limit) else { throw Errno.fileTooLarge }
        var all: [UInt8] = []
        var offset: Int64 = 0
        while true {
            let chunk = try read(fd, at: offset, count: min(1 << 16, limit + 1 - all.count))
            if chunk.isEmpty { return all }
            all += chunk
            offset += Int64(chunk.count)
            if all.count > limit { throw Errno.fileTooLarge }
        }
    }

    /// The names in the folder open at `fd` (which this call takes over and closes).
    static func directoryEntries(descriptor fd: Int32) throws(Errno) -> [String] {
        guard let dir = fdopendir(fd) else {
            let failure = Errno.current
            close(fd)
            throw failure
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// A user-named input file (`--context-file`, `--result-file`): opened non-blocking, refused
    /// unless it is a regular file of at most `limit` bytes, then read with that bound.
    /// - Throws: `badInput` for a FIFO, device, folder or too large a file (exit 65),
    ///   `notFound` when missing, `io` otherwise.
    public static func readInputFile(_ path: String, what: String, limit: Int) throws(CortexError) -> [UInt8] {
        let fd: Int32
        do { fd = try open(path, O_RDONLY | O_NONBLOCK) } catch {
            if error == .noSuchFileOrDirectory { throw .notFound("no \(what) \(path)") }
            if error == .noSuchAddressOrDevice { throw .badInput("\(what) \(path) is not a regular file") }
            throw .system("read", path, error)
        }
        return try FileDescriptor(rawValue: fd).closeAfter { () throws(CortexError) in
            let info = try withPath("stat", path) { () throws(Errno) in try status(fd) }
            guard info.st_mode & S_IFMT == S_IFREG else { throw .badInput("\(what) \(path) is not a regular file") }
            do throws(Errno) {
                return try readBounded(fd, size: Int64(info.st_size), limit: limit)
            } catch {
                if error == .fileTooLarge { throw .badInput("\(what) \(path) is larger than the \(limit)-byte limit") }
                throw .system("read", path, error)
            }
        }
    }
}
