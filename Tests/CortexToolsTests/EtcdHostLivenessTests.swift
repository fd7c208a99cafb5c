import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// Hosts on one etcd namespace (issue 16, docs/decisions/037): supervised workers per host,
/// capacity per host, each host's liveness as a lease its reaper keeps, and a host that dies
/// declared lost by another host's reaper, its work finished there. The built tools as real
/// processes against a real 3-member cluster; kill -9 for the host's death.
@Suite("Hosts: per-host supervision, liveness, loss", .serialized, .enabled(if: EtcdCluster.isInstalled, EtcdCluster.notInstalled))
struct EtcdHostLivenessTests {
    /// One host's folder on the shared namespace.
    struct HostFolder {
        let root: String
        let directory: TemporaryDirectory

        init(
            _ directory: TemporaryDirectory, host: String, cluster: EtcdCluster, namespace: String, maxWorkers: Int,
            heartbeatTimeout: String
        ) throws {
            self.directory = directory
            let folder = directory.path + "/host-" + host
            let made = try runTool(
                [
                    "cortex", "init", "--dir", folder, "--backend", "etcd", "--endpoints", cluster.urls.joined(separator: ","),
                    "--namespace", namespace, "--host-id", host, "--max-workers", String(maxWorkers), "--total-tokens", "1000",
                ], in: directory)
            try #require(made.exitCode == 0, "\(made)")
            guard let resolved = realpath(folder, nil) else { throw SupportError("realpath failed") }
            root = String(cString: resolved)
            free(resolved)
            // A loaded 2-core machine must not hold spawns; a short heartbeat timeout keeps the test short.
            try updateConfig(
                atPath: root + "/config.json",
                ["max_load_per_core": .int(1000), "max_cpu_pressure": .int(100), "heartbeat_timeout": .string(heartbeatTimeout)])
        }

        /// A tool with `--dir` this folder (inserted after the tool's words).
        func tool(_ words: [String], _ arguments: [String] = []) throws -> ToolResult {
            try runTool(words + ["--dir", root] + arguments, in: directory)
        }

        func show(_ worker: String) throws -> JSONValue {
            let shown = try tool(["cortex", "worker", "show", worker], ["--json"])
            try #require(shown.exitCode == 0, "\(shown)")
            return try #require(shown.json, "\(shown)")
        }

        func hosts() throws -> [String: JSONValue] {
            let status = try tool(["cortex", "status"], ["--json"])
            let json = try #require(status.json, "\(status)")
            var rows: [String: JSONValue] = [:]
            for row in json["hosts"]?.arrayValue ?? [] { if let host = row.string("host") { rows[host] = row } }
            return rows
        }

        /// `cortex-reap --every 1s` on this folder, as a service.
        func startReaper() throws -> RunningTool {
            try RunningTool(
                [toolsDirectory + "/cortex-reap", "--dir", root, "--every", "1s"], scratch: directory.scratch)
        }

        func waitUntil(_ what: String, timeoutSeconds: Double = 60, _ condition: () throws -> Bool) throws {
            let deadline = Date().addingTimeInterval(timeoutSeconds)
            while try !condition() {
                if Date() > deadline { throw SupportError("timed out waiting until \(what)") }
                usleep(100_000)
            }
        }
    }

    /// CPU reservations count only the workers of their own host, while a tenant's quotas
    /// (workers, memory) count every host's workers: host folders on one namespace. A spawn
    /// that does not fit queues on its host (exit 75, the reason on stderr) and holds that
    /// host's later spawns, so each refusal is asked on a host of its own.
    @Test(.timeLimit(.minutes(5)))
    func cpuIsEachHostsOwnAndTenantQuotasSpanEveryHost() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        var hosts: [String: HostFolder] = [:]
        for name in ["a", "b", "c", "d", "e", "f"] {
            hosts[name] = try HostFolder(
                directory, host: name, cluster: cluster, namespace: "limits", maxWorkers: 8, heartbeatTimeout: "60s")
        }
        defer { for host in hosts.values { killFolderProcesses(root: host.root) } }
        func spawn(_ host: String, _ arguments: [String]) throws -> ToolResult {
            try #require(hosts[host]).tool(["cortex-spawn"], arguments + ["--", "sleep", "1000"])
        }
        // Host a reserves every core it has; a's next reservation waits, b's starts.
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let all = try spawn("a", ["--cpu", String(cores)])
        #expect(all.exitCode == 0, "\(all)")
        let moreOnA = try spawn("a", ["--cpu", "0.5"])
        #expect(moreOnA.exitCode == 75 && moreOnA.stderr.contains("CPU"), "host a's cores are all reserved: \(moreOnA)")
        let onB = try spawn("b", ["--cpu", "0.5"])
        #expect(onB.exitCode == 0, "host a's reservations do not count on host b: \(onB)")

        // Tenant acme may hold one worker, whichever host asks.
        let quota = try #require(hosts["a"]).tool(["cortex-budget", "quota"], ["--tenant", "acme", "--max-workers", "1"])
        #expect(quota.exitCode == 0, "\(quota)")
        let first = try spawn("c", ["--tenant", "acme"])
        #expect(first.exitCode == 0, "\(first)")
        let second = try spawn("d", ["--tenant", "acme"])
        #expect(second.exitCode == 75 && second.stderr.contains("acme"), "acme's worker on host c counts on host d: \(second)")

        // And 100M of memory, whichever host asks.
        let widened = try #require(hosts["b"]).tool(
            ["cortex-budget", "quota"], ["--tenant", "acme", "--max-workers", "none", "--memory", "100M"])
        #expect(widened.exitCode == 0, "\(widened)")
        let big = try spawn("e", ["--tenant", "acme", "--memory", "80M"])
        #expect(big.exitCode == 0, "\(big)")
        let over = try spawn("f", ["--tenant", "acme", "--memory", "80M"])
        #expect(
            over.exitCode == 75 && over.stderr.contains("acme") && over.stderr.contains("memory"),
            "acme's 80M on host e count on host f: \(over)")
    }

    @Test(.timeLimit(.minutes(10)))
    func aHostWhoseProcessesAllDieIsDeclaredLostByAnotherHostsReaperAndItsWorkFinishesThere() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let heartbeatSeconds = 4.0
        let a = try HostFolder(directory, host: "a", cluster: cluster, namespace: "liveness", maxWorkers: 2, heartbeatTimeout: "4s")
        let b = try HostFolder(directory, host: "b", cluster: cluster, namespace: "liveness", maxWorkers: 2, heartbeatTimeout: "4s")
        var reapers: [RunningTool] = []
        defer {
            for reaper in reapers { kill(reaper.pid, SIGKILL) }
            killFolderProcesses(root: a.root)
            killFolderProcesses(root: b.root)
        }

        // Capacity is each host's: a pool of 2 starts on each host with max_workers 2, and a
        // third worker on host a queues behind a's own pool (host b's room is not a's).
        let poolA = try a.tool(["cortex-spawn"], ["--pool", "2", "--name", "pa", "--", "sleep", "1000"])
        #expect(poolA.exitCode == 0, "\(poolA)")
        let poolB = try b.tool(["cortex-spawn"], ["--pool", "2", "--name", "pb", "--", "sleep", "1000"])
        #expect(poolB.exitCode == 0, "\(poolB)")
        let third = try a.tool(["cortex-spawn"], ["--", "sleep", "1000"])
        #expect(third.exitCode == 75 && third.stderr.contains("2 of 2"), "\(third)")
        let membersB = poolB.stdoutLines
        try #require(membersB.count == 2, "\(poolB)")
        for member in poolA.stdoutLines {
            try a.waitUntil("\(member) runs on host a") { identity(try a.show(member), "process") != nil }
            #expect(try a.show(member)["spec"]?.string("host") == "a")
        }
        for member in membersB {
            try b.waitUntil("\(member) runs on host b") { identity(try b.show(member), "process") != nil }
            #expect(try a.show(member)["spec"]?.string("host") == "b", "host a sees host b's worker as b's")
        }

        // Host b holds a task through a claimer that dies with it.
        let created = try a.tool(["cortex-task", "create"], ["--type", "t"])
        #expect(created.exitCode == 0, "\(created)")
        let claimed = try b.tool(["cortex-task", "claim"], ["--worker", "b-claimer", "--type", "t"])
        let claim = try #require(claimed.json, "\(claimed)")
        let task = try #require(claim.string("id"))
        let staleToken = try #require(claim.int("claim"))
        // Its heartbeat, kept fresh on host b as a worker's own loop would.
        var environment = toolEnvironment
        environment["PATH"] = toolsDirectory + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        let heartbeat = try RunningTool(
            [bashPath, "-c", "while cortex worker heartbeat b-claimer --dir \"$1\"; do sleep 0.5; done", "heartbeat", b.root],
            scratch: directory.scratch, environment: environment)
        defer { kill(heartbeat.pid, SIGKILL) }

        // Each host's reaper as a service: they announce their hosts, and neither judges the
        // other's workers by its own machine (a's reaper would otherwise take b's for lost).
        reapers.append(try a.startReaper())
        reapers.append(try b.startReaper())
        try a.waitUntil("both hosts are alive") {
            let hosts = try a.hosts()
            return hosts["a"]?["alive"]?.boolValue == true && hosts["b"]?["alive"]?.boolValue == true
        }
        usleep(UInt32(heartbeatSeconds * 1_000_000) + 1_000_000)
        for member in membersB { #expect(try a.show(member).string("status") == "running", "alive host b's workers stay") }
        let firstOfA = try a.show(poolA.stdoutLines[0])
        #expect(firstOfA.string("status") == "running", "\(firstOfA.jsonText)")
        #expect(try a.tool(["cortex-task", "show", task], ["--json"]).json?.string("status") == "running")

        // Host b dies: its reaper first (its last liveness is behind it), then one last record
        // from b, whose time stamps the moment after that liveness, then everything else, with kill -9.
        kill(reapers[1].pid, SIGKILL)
        let last = try b.tool(["cortex-task", "create"], ["--type", "last-of-b"])
        #expect(last.exitCode == 0, "\(last)")
        kill(heartbeat.pid, SIGKILL)
        killFolderProcesses(root: b.root)
        try a.waitUntil("host a's reaper declares host b's workers lost") {
            try membersB.allSatisfy { try a.show($0).string("status") == "lost" }
        }
        // The journal's own times, not this test's clock: from b's last record to a's first loss of b's.
        let records = try a.tool(["cortex", "tail"], ["--json", "--lines", "10000"])
        let events = records.stdoutLines.compactMap { try? JSONValue.parse(Array($0.utf8)) }
        let lastOfB = try #require(events.last { $0.jsonText.contains("last-of-b") }?.int("at_ms"), "\(records)")
        let lossOfB = try #require(
            events.first { $0.string("kind") == "worker.lost" && $0["data"]?.string("host") == "b" }?.int("at_ms"), "\(records)")
        let declaredAfter = Double(lossOfB - lastOfB) / 1000
        print(
            "host b declared lost \(String(format: "%.2f", declaredAfter)) s after its last record (heartbeat_timeout 4 s, reaper period 1 s)"
        )
        // heartbeat_timeout + one reaper period, plus etcd's lease check (every 0.5 s) and room
        // for a loaded machine: a bound a person would notice, not a speed target.
        #expect(declaredAfter < heartbeatSeconds + 1 + 15, "declared after \(declaredAfter) s")
        #expect(try a.show(membersB[0]).string("lost_reason")?.contains("host b") == true)
        #expect(try a.hosts()["b"]?.string("liveness") == "down")

        // Its task went back to the queue and finishes on host a.
        let reclaimed = try a.tool(["cortex-task", "claim"], ["--worker", "a-claimer", "--type", "t", "--wait", "30s"])
        let reclaim = try #require(reclaimed.json, "\(reclaimed)")
        #expect(reclaim.string("id") == task)
        let done = try a.tool(["cortex-task", "complete", task], ["--claim", String(reclaim.int("claim") ?? 0)])
        #expect(done.exitCode == 0, "\(done)")
        // Fencing: host b's stale claimer, back, cannot complete it with its old token.
        let stale = try b.tool(["cortex-task", "complete", task], ["--claim", String(staleToken)])
        #expect(stale.exitCode != 0, "\(stale)")
        #expect(try a.tool(["cortex-task", "show", task], ["--json"]).json?.string("status") == "done")
        // Fencing: a supervisor of host b's, back, reports its worker's run as ended after the
        // loss: its record is refused (the worker has already ended) and changes nothing.
        let late = try b.tool(["cortex-spawn", "_supervise", membersB[1]], ["--exit", "exited:0", "--ran-ms", "5"])
        #expect(late.exitCode != nil, "\(late)")
        #expect(try a.show(membersB[1]).string("status") == "lost", "\(late)")
        let after = try a.tool(["cortex", "tail"], ["--json", "--lines", "10000"]).stdoutLines
        let lateRecord = after.last { $0.contains("\"\(membersB[1])\"") }
        #expect(lateRecord?.contains("already ended") == true, "the late record's outcome: \(lateRecord ?? "none")")

        // Host a never replaces host b's pool members (their request files are on b): they stay
        // owed to b. Host a's own pool and queue are untouched.
        let listed = try a.tool(["cortex", "pool", "list"], ["--json"])
        let pools = try #require(listed.json, "\(listed)")["pools"]?.arrayValue ?? []
        let pb = pools.first { $0.string("name") == "pb" }
        #expect((pb?["members"]?.arrayValue ?? []).allSatisfy { !membersB.contains($0.stringValue ?? "") }, "\(pools)")
        for member in poolA.stdoutLines { #expect(try a.show(member).string("status") == "running") }

        // Host b comes back: its reaper announces it again and replaces its lost members on b.
        let back = try b.tool(["cortex-reap"], ["--json"])
        #expect(back.exitCode == 0, "\(back)")
        #expect((back.json?["restarted"]?.arrayValue ?? []).count == 2, "\(back)")
        #expect(try a.hosts()["b"]?["alive"]?.boolValue == true)

        for pool in ["pa", "pb"] {
            let host = pool == "pa" ? a : b
            let stopped = try host.tool(["cortex", "pool", "stop", pool], ["--wait", "60s"])
            #expect(stopped.exitCode == 0, "\(stopped)")
        }
    }
}

/// Cluster members that accept connections and never answer (issue 16, decision 030): every
/// tool on a folder whose endpoints they are ends with 75 and one line within the folder's
/// `etcd_timeout` (one deadline for an operation and all its retries), never hangs. No etcd
/// needed: the members are listening sockets of this process that never accept (the kernel
/// completes the connections; no byte is ever read or answered).
@Suite("Members that never answer")
struct SilentMemberTests {
    @Test(.timeLimit(.minutes(5)))
    func everyToolEndsWithinTheEtcdTimeoutOnThreeSilentMembers() throws {
        let directory = try TemporaryDirectory()
        let silent = try (0..<3).map { _ in try TCPListener() }
        let endpoints = silent.map { "http://127.0.0.1:\($0.port)" }
        // The folder as an init that reached the cluster would have left it, with a 2 s etcd_timeout.
        let folder = directory.path + "/host"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        var settings = try EtcdSettings(endpoints: endpoints, namespace: "n", hostID: "h", path: "test")
        settings.timeoutMilliseconds = 2000
        var config = CortexConfig()
        config.backend = .etcd(settings)
        try Data(config.json.prettySerialized()).write(to: URL(fileURLWithPath: folder + "/config.json"))
        try #require(try String(contentsOfFile: folder + "/config.json", encoding: .utf8).contains("\"etcd_timeout\": \"2s\""))
        let commands: [[String]] = [
            ["cortex-budget", "allocate", "--dir", folder, "--tokens", "5"], ["cortex-task", "create", "--dir", folder, "--type", "t"],
            ["cortex", "status", "--dir", folder], ["cortex-reap", "--dir", folder], ["cortex-spawn", "--dir", folder, "--", "true"],
            ["cortex", "tail", "--dir", folder],
        ]
        for command in commands {
            let started = Date()
            let result = try runTool(command, in: directory)
            let seconds = Date().timeIntervalSince(started)
            print(
                "\(command.prefix(2).joined(separator: " ")) on three silent members: exit \(result.exitCode.map(String.init) ?? "signal") after \(String(format: "%.1f", seconds)) s"
            )
            #expect(result.exitCode == 75 && result.stderrLines.count == 1, "\(command): \(result)")
            // The message counts the attempts that were made, on how many of the 3 members.
            let line = result.stderrLines.first ?? ""
            #expect(line.contains(" of 3 members in ") && line.contains("(etcd_timeout 2s)"), "\(line)")
            // "Refused rather than hanging": the 2 s deadline plus a generous slack for a noisy
            // machine (it took 81 s when each retry had a 5 s timeout of its own).
            #expect(seconds < 15, "\(command) took \(seconds) s")
        }
    }

    /// An init whose cluster does not answer leaves nothing: running it again (with the right
    /// endpoints, or the same ones) is not refused as "another journal backend".
    @Test(.timeLimit(.minutes(5)))
    func aFailedInitLeavesNoFolderBehind() throws {
        let directory = try TemporaryDirectory()
        let silent = try TCPListener()
        let folder = directory.path + "/host"
        for endpoint in ["http://127.0.0.1:\(silent.port)", "http://127.0.0.1:\(silent.port),http://127.0.0.1:\(silent.port)"] {
            let started = Date()
            let failed = try runTool(
                [
                    "cortex", "init", "--dir", folder, "--backend", "etcd", "--endpoints", endpoint, "--namespace", "n", "--host-id", "h",
                    "--etcd-timeout", "1s",
                ], in: directory)
            #expect(failed.exitCode == 75 && failed.stderrLines.count == 1, "\(failed)")
            #expect(Date().timeIntervalSince(started) < 15)
            #expect(!FileManager.default.fileExists(atPath: folder), "a failed init left \(folder) behind")
        }
    }
}
