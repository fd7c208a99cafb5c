import CortexCore
import CortexProcesses
import CortexStorage
import Foundation
import Glibc
import Testing

/// Enforced worker limits end to end (docs/decisions/043-enforced-worker-limits.md): `--memory`,
/// `--cpu` and `--pids` bound the worker's whole process tree through a cgroup per run where one
/// is writable (root here: cgroup v1 or v2), else rlimits (`CORTEX_LIMITS=rlimit` forces them);
/// the limit a run reached is recorded and shown. Serialized: the workers allocate and fork.
@Suite("Worker limits: enforced per worker", .serialized, .timeLimit(.minutes(5)))
struct WorkerLimitTests {
    /// Allocates 256 MiB in one bash variable, then says so (it must never get to say it).
    static let allocator = #"x=$(head -c 256M /dev/zero | tr '\0' a); echo survived"#

    /// The tools' environment with the rlimit path forced.
    static let rlimitEnvironment: [String: String] = {
        var environment = toolEnvironment
        environment["CORTEX_LIMITS"] = "rlimit"
        environment["CORTEX_CGROUP_ROOT"] = nil
        return environment
    }()

    /// `cortex status --json`'s `limits`, as the tools see this machine.
    static func enforcement(_ sandbox: SpawnSandbox, environment: [String: String] = toolEnvironment) throws -> JSONValue {
        let status = try RunningTool(
            ["cortex", "status", "--dir", sandbox.root, "--json"], scratch: sandbox.scratch, environment: environment
        )
        .wait()
        return try #require(status.json?["limits"], "\(status)")
    }

    /// The id of the one worker the sandbox's journal has spawned.
    static func onlyWorker(_ sandbox: SpawnSandbox) throws -> String {
        let workers = try foldJournal(sandbox.directory).records.compactMap { folded -> String? in
            if case .spawned(let worker, _) = folded.outcome { return worker }
            return nil
        }
        return try #require(workers.first, "no worker spawned")
    }

    // MARK: - cgroup

    @Test func aWorkerAllocatingFourTimesItsMemoryIsKilledAndTheReasonIsRecordedAndShown() throws {
        let sandbox = try SpawnSandbox()
        let limits = try Self.enforcement(sandbox)
        guard limits.string("memory") == "cgroup", let parent = limits.string("memory_cgroup") else {
            print("skipped: no writable memory cgroup here (\(limits.string("summary") ?? "?")); run as root or in a delegated cgroup")
            return
        }
        let run = try sandbox.spawn(["--foreground", "--memory", "64M", "--", bashPath, "-c", Self.allocator])
        #expect(run.exitCode != 0, "\(run)")
        let id = try Self.onlyWorker(sandbox)
        let shown = try sandbox.show(id)
        #expect(shown.string("limit_reached") == "memory", "\(shown.jsonText)")
        #expect(shown.string("limit_reason") == "memory limit 64M reached", "\(shown.jsonText)")
        let stdout = (try? String(contentsOfFile: sandbox.root + "/workers/\(id)/stdout.log", encoding: .utf8)) ?? ""
        #expect(!stdout.contains("survived"))
        let text = try sandbox.tool(["cortex", "worker", "show", id, "--dir", sandbox.root])
        #expect(text.stdout.contains("memory limit 64M reached"), "\(text)")
        let tail = try sandbox.tool(["cortex", "tail", "--dir", sandbox.root, "--kind", "worker.exited"])
        #expect(tail.stdout.contains(#"limit="memory limit 64M reached""#), "\(tail)")
        let metrics = try sandbox.tool(["cortex", "metrics", "--dir", sandbox.root, "--json"])
        #expect(metrics.json?["workers"]?["limit_kills"]?.int("memory") == 1, "\(metrics)")
        let prometheus = try sandbox.tool(["cortex", "metrics", "--dir", sandbox.root])
        #expect(prometheus.stdout.contains(#"cortex_worker_limit_kills_total{limit="memory"} 1"#), "\(prometheus)")
        // One cgroup per run, removed after it.
        let left = (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
        #expect(!left.contains { $0.hasPrefix("cortex-\(id)-") }, "\(left)")
        try sandbox.expectNoProcessesLeft()
    }

    @Test func pidsTwentyStopsAForkBombAndLeavesNothingRunning() throws {
        let sandbox = try SpawnSandbox()
        let limits = try Self.enforcement(sandbox)
        guard limits.string("pids") == "cgroup" else {
            print("skipped: no writable pids cgroup here (\(limits.string("summary") ?? "?")); run as root or in a delegated cgroup")
            return
        }
        // A bounded bomb: up to 200 sleeping children; the sandbox kills whatever is left even on failure.
        let bomb = "n=0; while [ $n -lt 200 ]; do sleep 1000 & n=$((n+1)); done; echo spawned $n"
        let run = try sandbox.spawn(["--foreground", "--pids", "20", "--", bashPath, "-c", bomb])
        #expect(run.exitCode != 0, "\(run)")
        let id = try Self.onlyWorker(sandbox)
        let shown = try sandbox.show(id)
        #expect(shown.string("limit_reached") == "pids", "\(shown.jsonText)")
        #expect(shown.string("limit_reason") == "pids limit 20 reached", "\(shown.jsonText)")
        #expect(shown["spec"]?.int("pids") == 20, "\(shown.jsonText)")
        let stdout = (try? String(contentsOfFile: sandbox.root + "/workers/\(id)/stdout.log", encoding: .utf8)) ?? ""
        #expect(!stdout.contains("spawned 200"), "\(stdout)")
        // The sleeping children left the group's reach only through the cgroup: none is left.
        try sandbox.expectNoProcessesLeft()
    }

    @Test func theCPULimitIsTheRunsCgroupQuota() throws {
        let sandbox = try SpawnSandbox()
        let limits = try Self.enforcement(sandbox)
        guard limits.string("cpu") == "cgroup", let version = limits.int("cgroup_version") else {
            print("skipped: no writable cpu cgroup here (\(limits.string("summary") ?? "?"))")
            return
        }
        // The worker reads its own cgroup's quota: 0.5 core is 50 ms of every 100 ms.
        let script =
            version == 2
            ? #"cat "$(grep -m1 '^0::' /proc/self/cgroup | cut -d: -f3- | sed "s#^#$(awk '$3=="cgroup2"{print $2; exit}' /proc/self/mounts)#")/cpu.max""#
            : #"p=$(grep -E '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:' /proc/self/cgroup | head -1 | cut -d: -f3-); m=$(awk '$3=="cgroup" && $4 ~ /(^|,)cpu(,|$)/ {print $2; exit}' /proc/self/mounts); cat "$m$p/cpu.cfs_quota_us""#
        let run = try sandbox.spawn(["--foreground", "--cpu", "0.5", "--", bashPath, "-c", script])
        #expect(run.exitCode == 0, "\(run)")
        let id = try Self.onlyWorker(sandbox)
        let stdout = (try? String(contentsOfFile: sandbox.root + "/workers/\(id)/stdout.log", encoding: .utf8)) ?? ""
        #expect(stdout.hasPrefix(version == 2 ? "50000 100000" : "50000"), "\(stdout)")
    }

    // MARK: - rlimit fallback (everywhere)

    @Test func theRlimitFallbackStopsAnAllocationBeyondMemoryAndBoundsCPUSeconds() throws {
        let sandbox = try SpawnSandbox()
        let limits = try Self.enforcement(sandbox, environment: Self.rlimitEnvironment)
        #expect(limits.string("memory") == "rlimit" && limits.string("pids") == "none", "\(limits.jsonText)")
        let script = #"grep -E '^Max (cpu time|address space)' /proc/self/limits; "# + Self.allocator
        let run = try RunningTool(
            [
                "cortex-spawn", "--dir", sandbox.root, "--foreground", "--memory", "64M", "--cpu", "0.5", "--timeout", "1h", "--", bashPath,
                "-c",
                script,
            ], scratch: sandbox.scratch, environment: Self.rlimitEnvironment
        ).wait()
        #expect(run.exitCode != 0, "the allocation must fail: \(run)")
        let id = try Self.onlyWorker(sandbox)
        let stdout = (try? String(contentsOfFile: sandbox.root + "/workers/\(id)/stdout.log", encoding: .utf8)) ?? ""
        #expect(!stdout.contains("survived"), "\(stdout)")
        let lines = stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
        // 64 MiB of address space per process; 0.5 core × 1 h = 1800 CPU seconds (SIGKILL one later).
        #expect(lines.contains("Max address space 67108864 67108864 bytes"), "\(stdout)")
        #expect(lines.contains("Max cpu time 1800 1801 seconds"), "\(stdout)")
        try sandbox.expectNoProcessesLeft()
    }

    @Test func pidsThatCannotBeEnforcedAreRefusedWithExit78AndChangeNothing() throws {
        let sandbox = try SpawnSandbox()
        let before = try folderContents(sandbox.root)
        let run = try RunningTool(
            ["cortex-spawn", "--dir", sandbox.root, "--pids", "20", "--", "true"], scratch: sandbox.scratch,
            environment: Self.rlimitEnvironment
        ).wait()
        #expect(run.exitCode == 78, "\(run)")
        #expect(run.stderrLines.count == 1 && run.stderr.contains("--pids cannot be enforced here"), "\(run)")
        #expect(changedPaths(before, try folderContents(sandbox.root)) == [])
    }

    // MARK: - Status and bad input

    @Test func statusSaysWhichEnforcementThisMachineHas() throws {
        let sandbox = try SpawnSandbox()
        let forced = try RunningTool(
            ["cortex", "status", "--dir", sandbox.root], scratch: sandbox.scratch, environment: Self.rlimitEnvironment
        )
        .wait()
        let line = forced.stdoutLines.first { $0.hasPrefix("limits") }
        #expect(line?.contains("rlimit only (memory per process, cpu seconds with --timeout; pids not enforced)") == true, "\(forced)")
        let limits = try Self.enforcement(sandbox)
        let summary = try #require(limits.string("summary"))
        #expect(summary.hasPrefix("cgroup v") || summary.hasPrefix("rlimit only"), "\(summary)")
        // As root on a machine with a cgroup v1 pids hierarchy (this CI), the cgroup is used.
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        let v1Pids = mounts.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 3 && fields[2] == "cgroup" && fields[3].split(separator: ",").contains("pids")
        }
        if getuid() == 0 && v1Pids && !mounts.contains(" cgroup2 /sys/fs/cgroup ") {
            #expect(limits.string("pids") == "cgroup" && limits.int("cgroup_version") == 1, "\(limits.jsonText)")
        }
    }

    static let badPids: [String] = ["0", "-1", "lots", "4194305", "2.5"]

    @Test(arguments: badPids)
    func badPidsValuesAreRefusedWithExit65(_ value: String) throws {
        let sandbox = try SpawnSandbox()
        let before = try folderContents(sandbox.root)
        let result = try sandbox.spawn(["--pids", value, "--", "true"])
        #expect(result.exitCode == 65, "\(result)")
        #expect(result.stderrLines.count == 1, "\(result)")
        #expect(changedPaths(before, try folderContents(sandbox.root)) == [])
    }
}
