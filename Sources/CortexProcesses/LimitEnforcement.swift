import CortexCore
import CortexStorage

/// How this machine enforces a worker's `--memory`, `--cpu` and `--pids` on its whole process
/// tree (docs/decisions/043-enforced-worker-limits.md): a cgroup per run where a writable cgroup
/// (v2, else v1) with the controller is found, else `setrlimit` in the worker's process (memory
/// per process, CPU seconds with `--timeout`), else nothing (pids).
///
/// Found from what the caller may write: `CORTEX_CGROUP_ROOT` (a delegated cgroup v2 folder
/// whose `cgroup.subtree_control` lists the controllers), else the caller's own cgroup v2 when
/// its `cgroup.subtree_control` lists them, else the caller's own cgroup in each writable v1
/// hierarchy (`memory`, `pids`, `cpu`). `CORTEX_LIMITS=rlimit` skips cgroups altogether.
public struct LimitEnforcement: Equatable, Sendable {
    /// 2 or 1 when a cgroup enforces at least one limit, else nil.
    public var cgroupVersion: Int?
    /// The cgroup folder a run's memory cgroup is made in, or nil (then RLIMIT_AS per process).
    public var memory: String?
    /// The cgroup folder a run's pids cgroup is made in, or nil (then `--pids` cannot be enforced).
    public var pids: String?
    /// The cgroup folder a run's cpu cgroup is made in, or nil (then RLIMIT_CPU with `--timeout`).
    public var cpu: String?
    /// Why no cgroup is used, when none is.
    public var note: String?

    /// What `environment` (`CORTEX_LIMITS`, `CORTEX_CGROUP_ROOT`) and this process's cgroups allow.
    public static func detect(environment: [String: String]) -> LimitEnforcement {
        if environment["CORTEX_LIMITS"] == "rlimit" { return LimitEnforcement(note: "CORTEX_LIMITS=rlimit") }
        if let root = environment["CORTEX_CGROUP_ROOT"], !root.isEmpty {
            if let found = version2(at: root) { return found }
            return LimitEnforcement(
                note: "CORTEX_CGROUP_ROOT \(root) is not a writable cgroup v2 folder with memory, pids or cpu in cgroup.subtree_control")
        }
        let mounts = cgroupMounts()
        let own = ownCgroups()
        if let unified = mounts.first(where: { $0.version2 }), let path = own.first(where: { $0.version2 })?.path,
            let found = version2(at: unified.point + (path == "/" ? "" : path))
        {
            return found
        }
        var found = LimitEnforcement()
        for controller in ["memory", "pids", "cpu"] {
            guard let mount = mounts.first(where: { !$0.version2 && $0.controllers.contains(controller) }),
                let path = own.first(where: { !$0.version2 && $0.controllers.contains(controller) })?.path
            else { continue }
            let folder = mount.point + (path == "/" ? "" : path)
            guard POSIX.canWrite(folder) else { continue }
            switch controller {
            case "memory": found.memory = folder
            case "pids": found.pids = folder
            default: found.cpu = folder
            }
            found.cgroupVersion = 1
        }
        if found.cgroupVersion == nil { found.note = "no writable cgroup with memory, pids or cpu" }
        return found
    }

    /// `folder` as a cgroup v2 parent, when it is writable and delegates a controller we use.
    static func version2(at folder: String) -> LimitEnforcement? {
        guard POSIX.canWrite(folder), let bytes = try? POSIX.readFile(folder + "/cgroup.subtree_control", limit: 4096) else {
            return nil
        }
        let enabled = Set(String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        var found = LimitEnforcement(cgroupVersion: 2)
        if enabled.contains("memory") { found.memory = folder }
        if enabled.contains("pids") { found.pids = folder }
        if enabled.contains("cpu") { found.cpu = folder }
        return found.memory == nil && found.pids == nil && found.cpu == nil ? nil : found
    }

    /// One line of `/proc/self/cgroup`: a v2 line (`0::PATH`) or a v1 hierarchy's controllers.
    struct OwnCgroup {
        var version2: Bool
        var controllers: [String]
        var path: String
    }

    static func ownCgroups() -> [OwnCgroup] {
        guard let bytes = try? POSIX.readFile("/proc/self/cgroup", limit: 1 << 16) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { line in
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { return nil }
            return OwnCgroup(
                version2: parts[0] == "0" && parts[1].isEmpty, controllers: parts[1].split(separator: ",").map(String.init),
                path: String(parts[2]))
        }
    }

    /// One cgroup file system mounted on this machine (`/proc/self/mounts`).
    struct CgroupMount {
        var version2: Bool
        var point: String
        var controllers: [String]
    }

    static func cgroupMounts() -> [CgroupMount] {
        guard let bytes = try? POSIX.readFile("/proc/self/mounts", limit: 1 << 20) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 4, fields[2] == "cgroup" || fields[2] == "cgroup2", !fields[1].contains("\\") else { return nil }
            return CgroupMount(
                version2: fields[2] == "cgroup2", point: String(fields[1]), controllers: fields[3].split(separator: ",").map(String.init))
        }
    }

    /// True when `--pids` can be enforced here.
    public var enforcesPids: Bool { pids != nil }

    /// The mechanism of each limit, for `cortex status`.
    public var mechanisms: (memory: String, cpu: String, pids: String) {
        (
            memory == nil ? "rlimit" : "cgroup", cpu == nil ? "rlimit" : "cgroup",
            pids == nil ? "none" : "cgroup"
        )
    }

    /// One line for `cortex status` (`cgroup v2 (/sys/fs/cgroup/…)`, `rlimit only (…)`).
    public var summary: String {
        guard let version = cgroupVersion else {
            return "rlimit only (memory per process, cpu seconds with --timeout; pids not enforced)"
                + (note.map { ": \($0)" } ?? "")
        }
        var parts: [String] = []
        for (name, folder) in [("memory", memory), ("pids", pids), ("cpu", cpu)] {
            parts.append(folder.map { "\(name) \($0)" } ?? "\(name) \(name == "pids" ? "not enforced" : "by rlimit")")
        }
        return "cgroup v\(version) (" + parts.joined(separator: ", ") + ")"
    }

    /// The status as JSON.
    public var json: JSONValue {
        let kinds = mechanisms
        return .object([
            "cgroup_version": cgroupVersion.map { .int(Int64($0)) }, "cpu": .string(kinds.cpu),
            "cpu_cgroup": .optional(cpu), "memory": .string(kinds.memory), "memory_cgroup": .optional(memory),
            "note": .optional(note), "pids": .string(kinds.pids), "pids_cgroup": .optional(pids), "summary": .string(summary),
        ])
    }

    /// The `cortex-supervise` options that enforce `spec`'s limits on one run named `run` (a
    /// file name: one cgroup folder per run, removed after it).
    /// - Throws: `CortexError.configuration` when `--pids` cannot be enforced here.
    public func supervisorArguments(for spec: WorkerSpec, run: String) throws(CortexError) -> [String] {
        var arguments: [String] = []
        var made: Set<String> = []
        func cgroup(_ base: String) -> String {
            let folder = base + "/" + run
            if !made.contains(folder) {
                made.insert(folder)
                arguments += ["--cgroup", folder]
            }
            return folder
        }
        if let bytes = spec.memoryBytes {
            if let base = memory {
                let folder = cgroup(base)
                if cgroupVersion == 2 {
                    arguments += ["--cgroup-set", folder + "/memory.max=\(bytes)", "--cgroup-try", folder + "/memory.swap.max=0"]
                    arguments += ["--watch-memory", folder + "/memory.events"]
                } else {
                    arguments += ["--cgroup-set", folder + "/memory.limit_in_bytes=\(bytes)"]
                    arguments += ["--cgroup-try", folder + "/memory.memsw.limit_in_bytes=\(bytes)"]
                    arguments += ["--watch-memory", folder + "/memory.oom_control"]
                }
            } else {
                arguments += ["--rlimit-as", String(bytes)]
            }
        }
        if let count = spec.pids {
            guard let base = pids else { throw .configuration(Self.pidsRefusal) }
            let folder = cgroup(base)
            arguments += ["--cgroup-set", folder + "/pids.max=\(count)", "--watch-pids", folder + "/pids.events"]
        }
        if let millicores = spec.cpuMillicores {
            // A period of 100 ms; the kernel's smallest quota is 1 ms.
            let quota = max(1_000, millicores.saturatingMultiply(100))
            if let base = cpu {
                let folder = cgroup(base)
                if cgroupVersion == 2 {
                    arguments += ["--cgroup-set", folder + "/cpu.max=\(quota) 100000"]
                } else {
                    arguments += [
                        "--cgroup-set", folder + "/cpu.cfs_period_us=100000", "--cgroup-set", folder + "/cpu.cfs_quota_us=\(quota)",
                    ]
                }
            } else if let timeout = spec.timeoutMilliseconds {
                // Only CPU seconds can be bounded, per process: cores × the timeout.
                let seconds = max(1, (millicores.saturatingMultiply(timeout) + 999_999) / 1_000_000)
                arguments += ["--rlimit-cpu", String(seconds)]
            }
        }
        return arguments
    }

    /// Why a `--pids` is refused where no pids cgroup is writable.
    public static let pidsRefusal =
        "--pids cannot be enforced here: no writable pids cgroup (RLIMIT_NPROC counts every process of the user, not the worker's); delegate one (systemd-run --user --scope -p Delegate=yes, then CORTEX_CGROUP_ROOT) or leave --pids out"

    /// A cgroup folder name for run `restarts` of worker `id` under supervisor `pid`.
    public static func runName(worker id: String, restarts: Int64, supervisor pid: Int32) -> String {
        let safe = String(
            id.unicodeScalars.map { scalar -> Character in
                let c = Character(scalar)
                return c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_" || c == ".") ? c : "_"
            })
        return "cortex-\(safe)-\(pid)-\(restarts)"
    }
}
