import CortexCore

/// The file journal's doorbell (docs/decisions/039-wake.md): `journal/doorbell`, a small regular
/// file whose first four bytes are a sequence number. Every append adds 1 to it after its write
/// and wakes the processes sleeping on it (a futex on a shared file mapping); a waiter reads the
/// number before it looks at the journal and sleeps only while it is unchanged. The journal stays
/// the truth: a missed or spurious ring costs a look, never a record.
///
/// The folder may be shared with other users, so the file is opened without following a link,
/// must be a regular file of exactly `size` bytes with one name, and (for root) must belong to root
/// or to the journal folder's owner. Its bytes are only touched inside the kernel (futex calls,
/// `pread`): a file truncated under the mapping fails a call with `EFAULT`, never raises SIGBUS.
public final class JournalDoorbell {
    /// The doorbell's name in the journal folder.
    public static let fileName = "doorbell"
    /// The doorbell's exact size in bytes (the sequence number, then reserved zero bytes).
    public static let size = 64

    /// The doorbell's path, as the layout spells it.
    public let path: String
    private let folder: FolderDescriptor
    private let descriptor: FileDescriptor
    private let device: UInt64
    private let inode: UInt64
    /// The shared mapping whose first word is the futex.
    let mapping: SharedMapping

    /// The doorbell of the journal in `directory` (below `folder`), mapped writable when `writable`
    /// (to ring it) or read-only (to wait on it). When `creating` is given and no doorbell exists,
    /// one is created with that mode first (filled whole before it gets its name).
    /// Throws when it cannot be opened or mapped, or is not an acceptable doorbell (`EMEDIUMTYPE`).
    public init(folder: FolderDescriptor, directory: String, writable: Bool, creating: CreationMode?) throws(Errno) {
        let path = directory + "/" + JournalDoorbell.fileName
        let opened: (fd: Int32, info: FileStatus)
        do {
            opened = try folder.openRegular(path, writable ? [.readWrite] : [.readOnly])
        } catch {
            guard error == .noSuchFileOrDirectory, let creating else { throw error }
            do {
                try AtomicFile.createIfAbsent(path, in: folder, with: [UInt8](repeating: 0, count: JournalDoorbell.size), mode: creating)
            } catch {
                throw Errno.permissionDenied
            }
            opened = try folder.openRegular(path, writable ? [.readWrite] : [.readOnly])
        }
        let (fd, info) = opened
        descriptor = FileDescriptor(rawValue: fd)
        do throws(Errno) {
            guard JournalDoorbell.isAcceptable(info, folder: folder, directory: directory) else { throw Errno.notRegularFile }
            mapping = try SharedMapping(fd: fd, length: JournalDoorbell.size, writable: writable)
        } catch {
            POSIX.close(fd)
            throw error
        }
        self.path = path
        self.folder = folder
        device = info.device
        inode = info.inode
    }

    deinit { POSIX.close(descriptor.rawValue) }

    /// A regular file of exactly `size` bytes with one name; for root, owned by root or by the
    /// journal folder's owner (root never writes through a file another user planted).
    static func isAcceptable(_ info: FileStatus, folder: FolderDescriptor, directory: String) -> Bool {
        guard info.isRegularFile, info.size == JournalDoorbell.size, info.linkCount == 1 else { return false }
        let me = POSIX.effectiveUserID
        guard me == 0, info.owner != 0 else { return true }
        guard let owner = try? folder.status(directory)?.owner else { return false }
        return info.owner == owner
    }

    /// The current sequence number (read with `pread`, never through the mapping).
    /// Throws when the file has been cut short.
    public func sequence() throws(Errno) -> UInt32 {
        let bytes = try POSIX.read(descriptor.rawValue, at: 0, count: 4)
        guard bytes.count == 4 else { throw Errno.ioError }
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
    }

    /// Adds 1 to the sequence number and wakes every waiter.
    public func ring() throws(Errno) { try mapping.ring() }

    /// True while the doorbell's name still names this file and it is still acceptable (a waiter
    /// checks it between sleeps, so a doorbell replaced or cut short costs at most one slice).
    public func isStillInPlace() -> Bool {
        guard let info = try? folder.status(path) else { return false }
        return info.device == device && info.inode == inode && info.isRegularFile
            && info.size == JournalDoorbell.size && info.linkCount == 1
    }
}

/// The file journal's waiter: sleeps on the doorbell (`JournalDoorbell`), with no kernel object of
/// its own to tear down; falls back to an inotify watch (`JournalWatcher`) when the doorbell cannot
/// be used, and to short sleeps when neither can (no inotify instance left), so no waiter ever
/// fails for lack of a kernel resource. Every way out of `wait` is followed by a look at the journal.
public final class FileJournalWaiter: JournalWaiter {
    /// The longest sleep on the doorbell before checking that it is still in place.
    static let checkMilliseconds: Int64 = 1000
    /// The sleep between looks when neither the doorbell nor inotify can be used.
    static let pollMilliseconds: Int64 = 100

    private let folder: FolderDescriptor
    private let directory: String
    private let creationMode: CreationMode
    private var doorbell: JournalDoorbell?
    private var armedSequence: UInt32 = 0
    private var watcher: JournalWatcher?

    /// How this waiter sleeps now (for tests and diagnostics).
    public enum Mechanism: Equatable, Sendable {
        /// A futex on the doorbell's shared mapping.
        case doorbell
        /// An inotify watch on the journal folder.
        case inotify
        /// Short sleeps, a look after each.
        case polling
    }

    /// How this waiter sleeps now.
    public var mechanism: Mechanism { doorbell != nil ? .doorbell : watcher != nil ? .inotify : .polling }

    /// A waiter on `journal`, armed: an append from now on wakes it.
    public init(journal: FileJournal) {
        folder = journal.folder
        directory = journal.directory
        creationMode = journal.segmentMode
        establish()
    }

    /// Opens the doorbell (creating it when absent) and reads its number; else watches with inotify.
    private func establish() {
        doorbell = nil
        if let bell = try? JournalDoorbell(folder: folder, directory: directory, writable: false, creating: creationMode),
            let sequence = try? bell.sequence()
        {
            doorbell = bell
            armedSequence = sequence
            watcher = nil
            return
        }
        if let watcher {
            do { try watcher.rearm() } catch { self.watcher = nil }
        } else {
            watcher = try? JournalWatcher(directory: directory)
        }
    }

    /// Reads the doorbell's number again (the arm), or falls back when it cannot be read.
    private func armDoorbell() {
        guard let doorbell else { return }
        if let sequence = try? doorbell.sequence() { armedSequence = sequence } else { establish() }
    }

    /// Sleeps until the doorbell rings (or inotify reports a change), or `timeoutMilliseconds` pass.
    /// True when woken (or when the doorbell had to be given up: look again).
    public func wait(timeoutMilliseconds: Int32) -> Bool {
        let start = POSIX.monotonicNanoseconds()
        var first = true
        while true {
            let elapsed = Int64((POSIX.monotonicNanoseconds() - start) / 1_000_000)
            let remaining = timeoutMilliseconds < 0 ? Int64.max : Int64(timeoutMilliseconds) - elapsed
            guard let doorbell else {
                if let watcher { return watcher.wait(timeoutMilliseconds: Int32(clamping: max(0, remaining))) }
                guard remaining > 0 else { return false }
                POSIX.sleep(milliseconds: min(remaining, FileJournalWaiter.pollMilliseconds))
                return true
            }
            // Always one futex call, even with no time left: a ring since the arm is reported.
            if !first && remaining <= 0 { return false }
            first = false
            let slice = max(0, min(remaining, FileJournalWaiter.checkMilliseconds))
            switch doorbell.mapping.wait(whileEqualTo: armedSequence, milliseconds: slice) {
            case .rung:
                armDoorbell()
                return true
            case .timedOut:
                if !doorbell.isStillInPlace() {
                    establish()
                    return true
                }
            case .failed:
                establish()
                return true
            }
        }
    }

    /// Nothing to release for the doorbell; removes the inotify watch when falling back to one.
    public func disarm() { watcher?.disarm() }

    /// Arms again: reads the doorbell's number (or watches with inotify again).
    public func rearm() throws(CortexError) {
        if doorbell != nil {
            armDoorbell()
        } else if let watcher {
            do { try watcher.rearm() } catch { self.watcher = nil }
        }
    }
}
