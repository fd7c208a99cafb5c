import CortexCore
import Glibc

/// Wakes a waiting process when the journal folder changes, with inotify (Linux has no
/// Dispatch file-system sources). No sleep loop: the process sleeps in `poll` until the kernel
/// reports an append, a new segment or a rename.
public final class JournalWatcher {
    private let fd: Int32
    private var watch: Int32?
    private let directory: String
    private static let mask = UInt32(IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)

    /// Watches `directory` for appends (`IN_MODIFY`), new files and renames.
    public init(directory: String) throws(CortexError) {
        let created = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard created >= 0 else { throw .system("watch", directory, Errno.current) }
        fd = created
        self.directory = directory
        let added = inotify_add_watch(fd, directory, JournalWatcher.mask)
        if added < 0 {
            let error = Errno.current
            POSIX.close(fd)
            throw .system("watch", directory, error)
        }
        watch = added
    }

    /// Removes the watch now, ahead of closing. Closing an inotify descriptor waits for the
    /// kernel's fsnotify teardown (13-15 ms measured here, and `exit` pays it too); removing the
    /// watch first and doing other work before the close makes the close nearly free. Call it
    /// as soon as the wait is over, before the work that follows.
    public func disarm() {
        if let watch { _ = inotify_rm_watch(fd, watch) }
        watch = nil
    }

    /// Watches again after `disarm()`. Look at the journal again after this and before waiting:
    /// a change between the disarm and now raised no event.
    public func rearm() throws(CortexError) {
        guard watch == nil else { return }
        let added = inotify_add_watch(fd, directory, JournalWatcher.mask)
        guard added >= 0 else { throw .system("watch", directory, Errno.current) }
        watch = added
    }

    deinit { POSIX.close(fd) }

    /// Sleeps until the folder changes or `timeoutMilliseconds` pass (-1: no limit).
    /// Check the journal again after arming the watch and before waiting, or a change that
    /// landed in between is missed.
    /// - Returns: true when woken by a change.
    public func wait(timeoutMilliseconds: Int32) -> Bool {
        var request = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = (try? retryingInterrupts { poll(&request, 1, timeoutMilliseconds) }) ?? -1
        if ready <= 0 { return false }
        drain()
        return true
    }

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while let got = try? retryingInterrupts({ buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) } }), got > 0 {}
    }
}
