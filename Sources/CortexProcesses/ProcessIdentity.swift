import CortexCore
import CortexStorage

extension ProcessIdentity {
    /// The identity of the running process `pid`, or nil when no such process exists (or, unless
    /// `includingZombies`, it has ended and is a zombie waiting to be reaped). A parent reading
    /// its own child's identity includes zombies: a child may end before its parent looks.
    public static func of(pid: Int32, includingZombies: Bool = false) -> ProcessIdentity? {
        guard pid > 0, let stat = try? POSIX.readFile("/proc/\(pid)/stat") else { return nil }
        return parse(stat: stat, pid: pid, includingZombies: includingZombies)
    }

    /// This process.
    public static var current: ProcessIdentity? { of(pid: POSIX.processID) }

    /// Reads the start time from the text of `/proc/<pid>/stat`. The command name (field 2) is in
    /// parentheses and may contain spaces or parentheses itself, so fields are counted from the
    /// last `)`.
    static func parse(stat: [UInt8], pid: Int32, includingZombies: Bool = false) -> ProcessIdentity? {
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
        // After ")": field 3 (state) is index 0, so field 22 (starttime) is index 19.
        guard fields.count > 19, let ticks = UInt64(String(decoding: fields[19], as: UTF8.self)) else { return nil }
        // A zombie (Z) or dead (X) process has ended: only its exit status waits for a parent
        // that has not reaped it yet. It is not alive, and signalling it would do nothing.
        if !includingZombies, let state = fields[0].first, state == UInt8(ascii: "Z") || state == UInt8(ascii: "X") {
            return nil
        }
        return ProcessIdentity(pid: pid, startTicks: ticks)
    }

    /// True when a process with this pid exists and started at this time (not a recycled pid).
    public var isAlive: Bool { ProcessIdentity.of(pid: pid) == self }

    /// True when the process is alive and belongs to the calling user.
    public var isAliveAndOurs: Bool { isAlive(ownedBy: POSIX.userID) }

    /// True when a process with this pid exists, started at this time, and runs as `owner`
    /// only: its real, effective, saved and file-system user ids are all `owner` (so a set-uid
    /// program, or root's process, never passes for a user's). Root passes only for its own.
    public func isAlive(ownedBy owner: UInt32) -> Bool {
        guard isAlive, let uids = ProcessIdentity.userIDs(of: pid), !uids.isEmpty else { return false }
        return uids.allSatisfy { $0 == owner } && isAlive
    }

    /// True when the process carries the mark of worker `id`: `CORTEX_WORKER_ID=<id>` in the
    /// environment it was started with (the worker and what it started), or `id` as one of its
    /// arguments (its supervisor: `cortex-spawn _supervise <id>`, `cortex-supervise … <id>`).
    /// A pid a record names is signalled only when this holds, so a forged record cannot aim
    /// the reaper at an unrelated process of the same user.
    public func isMarked(asWorker id: String) -> Bool {
        // A supervisor goes through execve (cortex-spawn → cortex-supervise → cortex-spawn), and
        // while it does its command line reads empty: look again for a moment rather than take
        // that for "not ours" and leave a stop unsent. A process that is not in an exec shows
        // its (unmarked) command line at once, so it costs nothing there.
        for _ in 0..<50 {
            switch markReading(id) {
            case .marked: return true
            case .unmarked: return false
            case .inExec:
                guard isAlive else { return false }
                POSIX.sleep(milliseconds: 10)
            }
        }
        return false
    }

    private enum MarkReading { case marked, unmarked, inExec }

    private func markReading(_ id: String) -> MarkReading {
        let limit = FileLimits.processStrings
        let mark = Array("CORTEX_WORKER_ID=\(id)".utf8)
        if let environment = try? POSIX.readFile("/proc/\(pid)/environ", limit: limit),
            environment.split(separator: 0).contains(where: { $0.elementsEqual(mark) })
        {
            return .marked
        }
        guard let arguments = try? POSIX.readFile("/proc/\(pid)/cmdline", limit: limit) else { return .unmarked }
        if arguments.isEmpty { return .inExec }
        return arguments.split(separator: 0).contains(where: { $0.elementsEqual(id.utf8) }) ? .marked : .unmarked
    }

    /// The parent pid of process `pid` (field 4 of `/proc/<pid>/stat`), zombies included, or nil.
    public static func parentPID(of pid: Int32) -> Int32? {
        guard pid > 0, let stat = try? POSIX.readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")) else {
            return nil
        }
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
        guard fields.count > 1 else { return nil }
        return Int32(String(decoding: fields[1], as: UTF8.self))
    }

    /// The real, effective, saved and file-system user ids of process `pid` (the `Uid:` line of
    /// `/proc/<pid>/status`), or nil.
    public static func userIDs(of pid: Int32) -> [UInt32]? {
        guard pid > 0, let status = try? POSIX.readFile("/proc/\(pid)/status") else { return nil }
        for line in status.split(separator: 0x0A) where line.starts(with: Array("Uid:".utf8)) {
            let numbers = line.dropFirst(4).split(whereSeparator: { $0 == 0x09 || $0 == 0x20 })
            let uids = numbers.compactMap { UInt32(String(decoding: $0, as: UTF8.self)) }
            return uids.count == numbers.count ? uids : nil
        }
        return nil
    }

    /// Sends `signal` to the process group led by this process, only if the pid still names this
    /// very process and it runs as `owner` (by default the caller), and only when the caller is
    /// `owner` or root. Root never signals the group wholesale on a user's behalf: it signals
    /// each member of the group that runs as `owner`, so a process of another user that joined
    /// the group (a set-uid helper) is left alone. Returns false (and signals nothing) otherwise.
    @discardableResult
    public func signalGroup(_ signal: Signal, ownedBy owner: UInt32 = POSIX.userID) -> Bool {
        let caller = POSIX.userID
        guard caller == owner || caller == 0, isAlive(ownedBy: owner) else { return false }
        if caller == owner { return POSIX.send(signal, toGroup: pid) || POSIX.send(signal, toProcess: pid) }
        var any = false
        for member in ProcessIdentity.groupMembers(pid) where ProcessIdentity.userIDs(of: member)?.allSatisfy({ $0 == owner }) == true {
            if POSIX.send(signal, toProcess: member) { any = true }
        }
        return any
    }

    /// The pids whose process group (field 5 of `/proc/<pid>/stat`) is `group`.
    static func groupMembers(_ group: Int32) -> [Int32] {
        var members: [Int32] = []
        for name in (try? POSIX.directoryEntries("/proc")) ?? [] {
            guard let pid = Int32(name), let stat = try? POSIX.readFile("/proc/\(pid)/stat"),
                let close = stat.lastIndex(of: UInt8(ascii: ")"))
            else { continue }
            let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
            if fields.count > 2, Int32(String(decoding: fields[2], as: UTF8.self)) == group { members.append(pid) }
        }
        return members
    }

    /// Waits up to `milliseconds` for this process to end, on a pidfd (no polling; it works for
    /// processes that are not our children). True when it has ended.
    public func waitForEnd(milliseconds: Int64) -> Bool {
        guard let opened = try? POSIX.processEndDescriptor(pid) else { return !isAlive }
        return opened.closeAfter {
            // Opened after the check below could be a recycled pid's: look again once it is open.
            guard isAlive else { return true }
            let deadline = POSIX.monotonicNanoseconds() + UInt64(max(0, milliseconds)) * 1_000_000
            return POSIX.waitUntilReadable(opened.rawValue, deadline: deadline) ? true : !isAlive
        }
    }

}

/// Facts about the machine that feasibility checks record as evidence (the reducer never reads them).
public enum SystemProbe {
    /// Online processors.
    public static var cores: Int { max(1, POSIX.onlineProcessors) }

    /// The 1-minute load average from `/proc/loadavg`, or nil.
    public static func loadAverage() -> Double? {
        guard let text = try? POSIX.readFile("/proc/loadavg"), let first = text.split(separator: UInt8(ascii: " ")).first
        else { return nil }
        return Double(String(decoding: first, as: UTF8.self))
    }

    /// `some avg10` of `/proc/pressure/cpu` in thousandths of a percent (`some avg10=2.72` → 2720),
    /// or nil where the kernel has no pressure stall information (built without it, or `psi=0`).
    public static func cpuPressureMillis() -> Int64? {
        guard let text = try? POSIX.readFile("/proc/pressure/cpu") else { return nil }
        return parseCPUPressureMillis(text)
    }

    /// The `some avg10` value of a `/proc/pressure/cpu` text, in thousandths of a percent; nil when
    /// the text has none or it is not a percentage.
    public static func parseCPUPressureMillis(_ text: [UInt8]) -> Int64? {
        guard let line = text.split(separator: 0x0A).first(where: { $0.starts(with: Array("some ".utf8)) }) else { return nil }
        for field in line.split(separator: UInt8(ascii: " ")) where field.starts(with: Array("avg10=".utf8)) {
            guard let percent = Double(String(decoding: field.dropFirst(6), as: UTF8.self)), percent >= 0, percent <= 100
            else { return nil }
            return Int64((percent * 1000).rounded())
        }
        return nil
    }

    /// `MemAvailable` from `/proc/meminfo`, in bytes, or nil.
    public static func availableMemoryBytes() -> Int64? { memoryInfo("MemAvailable:") }

    /// `MemTotal` from `/proc/meminfo`, in bytes, or nil: a spawn asking for more can never start.
    public static func totalMemoryBytes() -> Int64? { memoryInfo("MemTotal:") }

    /// The value of `/proc/meminfo` line `key` (in kB there), in bytes, or nil.
    static func memoryInfo(_ key: String) -> Int64? {
        guard let text = try? POSIX.readFile("/proc/meminfo") else { return nil }
        for line in text.split(separator: 0x0A) where line.starts(with: Array(key.utf8)) {
            let digits = line.filter { (0x30...0x39).contains($0) }
            return Int64(String(decoding: digits, as: UTF8.self)).map { $0 * 1024 }
        }
        return nil
    }
}

extension MachineEvidence {
    /// Reads the machine now (cores, load, CPU pressure, `MemAvailable`) with the limits of `config`.
    public static func observe(_ config: CortexConfig) -> MachineEvidence {
        MachineEvidence(
            cores: Int64(SystemProbe.cores), loadMillis: Int64(((SystemProbe.loadAverage() ?? 0) * 1000).rounded()),
            memoryAvailableBytes: SystemProbe.availableMemoryBytes() ?? Int64.max, maxWorkers: Int64(config.maxWorkers),
            typeLimits: config.typeLimits, maxLoadPerCoreMillis: config.maxLoadPerCoreMillis,
            cpuPressureMillis: SystemProbe.cpuPressureMillis(), maxCPUPressureMillis: config.maxCPUPressureMillis,
            host: config.hostID)
    }
}
