import CSupervisorLibc

/// The worker's limits (docs/decisions/043-enforced-worker-limits.md): the run's cgroups, made
/// before it starts and removed after it, what they counted, and the step between the fork and
/// the worker's program that joins them and sets the rlimits.
extension Supervision {
    /// True when the worker must start through `--apply-limits` (it joins a cgroup or gets rlimits).
    var hasLimits: Bool {
        !options.cgroups.isEmpty || options.rlimitAddressSpace != nil || options.rlimitCPUSeconds != nil
    }

    /// Makes the run's cgroups and writes their limits; on a failure removes what it made and
    /// says why.
    func makeCgroups() -> String? {
        for folder in options.cgroups {
            if mkdir(folder, 0o755) != 0 {
                let failure = "cannot make cgroup " + folder + ": " + describe(supervisor_errno())
                removeCgroups()
                return failure
            }
            madeCgroups.append(folder)
        }
        for write in options.cgroupWrites {
            guard let (file, value) = splitAssignment(write.entry) else { continue }
            if supervisor_write_text(file, value) != 0 && !write.optional {
                let failure = "cannot set " + file + " to " + value + ": " + describe(supervisor_errno())
                removeCgroups()
                return failure
            }
        }
        return nil
    }

    /// The command that starts the worker through this program's `--apply-limits` step.
    func limitedCommand(
        program: String, _ command: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    ) -> (String, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>)? {
        guard let me = ownExecutable() else { return nil }
        var arguments = [me, "--apply-limits", program]
        for folder in madeCgroups { arguments += ["--join", folder + "/cgroup.procs"] }
        if let bytes = options.rlimitAddressSpace { arguments += ["--rlimit-as", String(bytes)] }
        if let seconds = options.rlimitCPUSeconds { arguments += ["--rlimit-cpu", String(seconds)] }
        arguments.append("--")
        var index = 0
        while let argument = command[index] {
            arguments.append(String(cString: argument))
            index += 1
        }
        return (me, CortexSupervise.cStrings(arguments))
    }

    /// Reads the counts that say the run reached a limit (before its cgroups go).
    func readLimitCounts() {
        if let file = options.watchMemory, count(in: file, key: "oom_kill") > 0 {
            limitReached = "memory"
        } else if let file = options.watchPids, count(in: file, key: "max") > 0 {
            limitReached = "pids"
        }
    }

    /// SIGKILL to every process still in the run's cgroups (a worker's child that left its
    /// process group), until they are empty or 1,000 rounds have passed.
    func killCgroupMembers() {
        for folder in madeCgroups {
            for _ in 0..<1_000 {
                let members = pids(in: folder + "/cgroup.procs")
                if members.isEmpty { break }
                for member in members where member > 0 { kill(member, SIGKILL) }
            }
        }
    }

    /// Removes the run's cgroups (retried for up to a second while the killed leave them); the
    /// first failure is kept for the report.
    func removeCgroups() {
        for folder in madeCgroups.reversed() {
            var tries = 0
            while rmdir(folder) != 0 {
                let code = supervisor_errno()
                tries += 1
                if code == ENOENT { break }
                if code != EBUSY || tries >= 100 {
                    writeFailure = writeFailure ?? "cannot remove cgroup " + folder + ": " + describe(code)
                    break
                }
                for member in pids(in: folder + "/cgroup.procs") where member > 0 { kill(member, SIGKILL) }
                _ = poll(nil, 0, 10)
            }
        }
        madeCgroups = []
    }

    /// The number after `key ` on its line of `file` (a cgroup's event counts), else 0.
    func count(in file: String, key: String) -> Int64 {
        let bytes = readSmallFile(file)
        let name = Array(key.utf8) + [UInt8(ascii: " ")]
        for line in bytes.split(separator: UInt8(ascii: "\n")) where line.starts(with: name) {
            var value: Int64 = 0
            for byte in line.dropFirst(name.count) where byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                value = value &* 10 &+ Int64(byte - UInt8(ascii: "0"))
            }
            return value
        }
        return 0
    }

    /// The pids listed in a `cgroup.procs` file.
    func pids(in file: String) -> [pid_t] {
        var found: [pid_t] = []
        for line in readSmallFile(file).split(separator: UInt8(ascii: "\n")) {
            var value: Int32 = 0
            for byte in line where byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                value = value &* 10 &+ Int32(byte - UInt8(ascii: "0"))
            }
            found.append(value)
        }
        return found
    }
}

/// `FILE=VALUE` split at the first `=` after the file's last `/`.
func splitAssignment(_ entry: String) -> (String, String)? {
    let bytes = Array(entry.utf8)
    let start = (bytes.lastIndex(of: UInt8(ascii: "/")) ?? 0)
    guard let equals = bytes[start...].firstIndex(of: UInt8(ascii: "=")) else { return nil }
    return (String(decoding: bytes[..<equals], as: UTF8.self), String(decoding: bytes[(equals + 1)...], as: UTF8.self))
}

/// Up to 1 MiB of `path` (a cgroup or /proc file), empty when it cannot be read.
func readSmallFile(_ path: String) -> [UInt8] {
    let fd = supervisor_open(path, O_RDONLY | O_CLOEXEC, 0)
    guard fd >= 0 else { return [] }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 * 1024)
    while bytes.count < 1 << 20 {
        let got = chunk.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress, raw.count) }
        if got < 0 && supervisor_errno() == EINTR { continue }
        if got <= 0 { break }
        bytes.append(contentsOf: chunk[0..<got])
    }
    close(fd)
    return bytes
}

/// This program's path (`/proc/self/exe`), or nil.
func ownExecutable() -> String? {
    var buffer = [CChar](repeating: 0, count: 4097)
    let got = buffer.withUnsafeMutableBufferPointer { readlink("/proc/self/exe", $0.baseAddress!, 4096) }
    guard got > 0 else { return nil }
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// `cortex-supervise --apply-limits PROGRAM [--join FILE]... [--rlimit-as N] [--rlimit-cpu N] --
/// ARGV...`: the worker's first image, between the supervisor's fork and the worker's program.
/// Joins each cgroup (writing its own pid to `FILE`), sets the rlimits, then replaces itself with
/// PROGRAM, so the worker and everything it starts are inside the limits from their first
/// instruction. A step that fails ends it with 126 and a line on stderr (the worker's log).
func applyLimitsAndRun(_ argc: Int, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Never {
    func fail(_ message: String, _ code: Int32) -> Never {
        complain(message)
        exit(code)
    }
    guard argc > 3, let program = argv[2] else { fail("--apply-limits needs a program", 64) }
    var index = 3
    while index < argc, let name = argv[index] {
        if strcmp(name, "--") == 0 {
            index += 1
            break
        }
        guard index + 1 < argc, let value = argv[index + 1] else { fail(String(cString: name) + " needs a value", 64) }
        index += 2
        if strcmp(name, "--join") == 0 {
            if supervisor_write_text(value, String(getpid())) != 0 {
                fail("cannot join the worker's cgroup (" + String(cString: value) + "): " + describe(supervisor_errno()), 126)
            }
        } else if let number = Options.parseCount(value), strcmp(name, "--rlimit-as") == 0 {
            if supervisor_limit_address_space(UInt64(number)) != 0 {
                fail("cannot set the memory rlimit: " + describe(supervisor_errno()), 126)
            }
        } else if let number = Options.parseCount(value), strcmp(name, "--rlimit-cpu") == 0 {
            if supervisor_limit_cpu_seconds(UInt64(number)) != 0 { fail("cannot set the cpu rlimit: " + describe(supervisor_errno()), 126) }
        } else {
            fail("unknown or malformed " + String(cString: name), 64)
        }
    }
    guard index < argc else { fail("--apply-limits needs the worker's command after --", 64) }
    execve(program, argv + index, supervisor_environ())
    fail("cannot run " + String(cString: program) + ": " + describe(supervisor_errno()), 127)
}
