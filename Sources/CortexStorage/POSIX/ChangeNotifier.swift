import CortexCore
import Glibc

extension POSIX {
    /// The events a folder watch reports: appends (`IN_MODIFY`), new names, renames into the
    /// folder, and files closed after writing.
    static let folderChangeEvents = UInt32(IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)

    /// A new inotify instance, non-blocking and close-on-exec; the caller closes it. The
    /// corresponding C function is `inotify_init1`.
    public static func makeChangeNotifier() throws(Errno) -> Int32 {
        try retryingInterrupts { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }
    }

    /// Watches `directory` with `notifier` for appends, new files, renames and closes after
    /// writing; returns the watch. The corresponding C function is `inotify_add_watch`.
    public static func watchForChanges(_ notifier: Int32, directory: String) throws(Errno) -> Int32 {
        try retryingInterrupts { inotify_add_watch(notifier, directory, folderChangeEvents) }
    }

    /// Removes `watch` from `notifier`, ignoring errors. The corresponding C function is `inotify_rm_watch`.
    public static func removeWatch(_ notifier: Int32, _ watch: Int32) {
        _ = inotify_rm_watch(notifier, watch)
    }

    /// Waits until `fd` has something to read or `timeoutMilliseconds` pass (-1: no limit).
    /// False on a timeout or a failed `poll`.
    public static func waitUntilReadable(_ fd: Int32, timeoutMilliseconds: Int32) -> Bool {
        var request = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return ((try? retryingInterrupts { poll(&request, 1, timeoutMilliseconds) }) ?? -1) > 0
    }

    /// Reads and drops whatever a non-blocking descriptor holds now (the events of a notifier).
    public static func discardAvailable(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while let got = try? retryingInterrupts({ buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) } }), got > 0 {}
    }
}
