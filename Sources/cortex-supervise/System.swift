import CSupervisorLibc

/// The monotonic clock, in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// `strerror` for an errno value.
func describe(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "error " + String(code) }
    return String(cString: text)
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, renamed over it), as
/// `AtomicFile.replace` does for a process crash: a reader sees the old log or the new one.
func replaceFile(_ path: String, with bytes: [UInt8]) -> String? {
    var directory = "."
    var name = path
    if let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) {
        directory = slash == path.utf8.startIndex ? "/" : String(path[..<slash])
        name = String(path[path.utf8.index(after: slash)...])
    }
    let temporary = directory + "/." + name + ".tmp-" + String(getpid())
    // A worker's logs are private: never readable by others, and exactly 0660 in a group folder.
    let fd = supervisor_open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o660)
    guard fd >= 0 else { return "cannot create " + temporary + ": " + describe(supervisor_errno()) }
    if supervisor_in_group_folder(directory) == 1 { _ = fchmod(fd, 0o660) }
    var written = 0
    while written < bytes.count {
        let got = bytes.withUnsafeBytes { raw in write(fd, raw.baseAddress! + written, raw.count - written) }
        if got < 0 {
            if supervisor_errno() == EINTR { continue }
            let failure = "cannot write " + temporary + ": " + describe(supervisor_errno())
            close(fd)
            unlink(temporary)
            return failure
        }
        written += got
    }
    close(fd)
    guard rename(temporary, path) == 0 else {
        let failure = "cannot rename into " + path + ": " + describe(supervisor_errno())
        unlink(temporary)
        return failure
    }
    return nil
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), read past the
/// command name, which is in parentheses and may hold spaces or parentheses itself.
func processStartTicks(_ pid: pid_t) -> UInt64? {
    let fd = supervisor_open("/proc/" + String(pid) + "/stat", O_RDONLY | O_CLOEXEC, 0)
    guard fd >= 0 else { return nil }
    var bytes = [UInt8](repeating: 0, count: 4096)
    let got = bytes.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress, raw.count) }
    close(fd)
    guard got > 0, let close = bytes[0..<got].lastIndex(of: UInt8(ascii: ")")) else { return nil }
    // After ")": field 3 (state) is the first, so field 22 (starttime) is the 20th.
    var field = 0
    var value: UInt64 = 0
    var inField = false
    for byte in bytes[(close + 1)..<got] {
        if byte == UInt8(ascii: " ") {
            if inField && field == 20 { return value }
            inField = false
            continue
        }
        if !inField {
            inField = true
            field += 1
            value = 0
        }
        if field == 20 {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value &* 10 &+ UInt64(byte - UInt8(ascii: "0"))
        }
    }
    return inField && field == 20 ? value : nil
}

/// The path of `program`: itself when it holds a `/`, else the first executable of that name
/// in the `PATH` of `environment` (the worker's, not ours), else nil.
func resolve(_ program: UnsafeMutablePointer<CChar>, environment: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> String? {
    var search: UnsafePointer<CChar>? = nil  // nil: the default PATH
    var index = 0
    while let entry = environment[index] {
        if strncmp(entry, "PATH=", 5) == 0 {
            search = UnsafePointer(entry + 5)
            break
        }
        index += 1
    }
    // The library's lookup too (CCortexCommon), so both find the same program.
    var found = [CChar](repeating: 0, count: 4097)
    let result = found.withUnsafeMutableBufferPointer { buffer in
        cortex_find_executable(program, search, buffer.baseAddress, buffer.count)
    }
    guard result == 0 else { return nil }
    return found.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// Writes `message` to stderr as one line.
func complain(_ message: String) {
    let line = "cortex-supervise: " + message + "\n"
    _ = line.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
}
