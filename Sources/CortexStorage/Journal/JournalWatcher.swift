import CortexCore

/// Wakes a waiting process when the journal folder changes, with inotify (Linux has no
/// Dispatch file-system sources). No sleep loop: the process sleeps in `poll` until the kernel
/// reports an append, a new segment or a rename.
public final class JournalWatcher {
    private let fd: Int32
    private var watch: Int32?
    private let directory: String

    /// Watches `directory` for appends (`IN_MODIFY`), new files and renames.
    public init(directory: String) throws(CortexError) {
        fd = try withPath("watch", directory) { () throws(Errno) in try POSIX.makeChangeNotifier() }
        self.directory = directory
        do {
            watch = try POSIX.watchForChanges(fd, directory: directory)
        } catch {
            POSIX.close(fd)
            throw .system("watch", directory, error)
        }
    }

    /// Removes the watch now, ahead of closing. Closing an inotify descriptor waits for the
    /// kernel's fsnotify teardown (13-15 ms measured here, and `exit` pays it too); removing the
    /// watch first and doing other work before the close makes the close nearly free. Call it
    /// as soon as the wait is over, before the work that follows.
    public func disarm() {
        if let watch { POSIX.removeWatch(fd, watch) }
        watch = nil
    }

    /// Watches again after `disarm()`. Look at the journal again after this and before waiting:
    /// a change between the disarm and now raised no event.
    public func rearm() throws(CortexError) {
        guard watch == nil else { return }
        watch = try withPath("watch", directory) { () throws(Errno) in try POSIX.watchForChanges(fd, directory: directory) }
    }

    deinit { POSIX.close(fd) }

    /// Sleeps until the folder changes or `timeoutMilliseconds` pass (-1: no limit).
    /// Check the journal again after arming the watch and before waiting, or a change that
    /// landed in between is missed.
    /// - Returns: true when woken by a change.
    public func wait(timeoutMilliseconds: Int32) -> Bool {
        guard POSIX.waitUntilReadable(fd, timeoutMilliseconds: timeoutMilliseconds) else { return false }
        POSIX.discardAvailable(fd)
        return true
    }
}
