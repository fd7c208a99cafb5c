import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// Two host folders over one etcd namespace (issue 16, docs/decisions/033): the built tools as
/// real processes against a real 3-member cluster (`EtcdCluster`, shared with CortexCoreTests).
/// One cluster serves the whole scenario: each start costs seconds.
@Suite("Host folders sharing an etcd namespace", .serialized)
struct EtcdHostsTests {
    /// `cortex init --backend etcd` for one host's folder.
    private func initHost(
        _ folder: String, host: String, cluster: EtcdCluster, namespace: String, totalTokens: Int?, in directory: TemporaryDirectory
    ) throws -> ToolResult {
        var command = [
            "cortex", "init", "--dir", folder, "--backend", "etcd", "--endpoints", cluster.urls.joined(separator: ","),
            "--namespace", namespace, "--host-id", host,
        ]
        if let totalTokens { command += ["--total-tokens", String(totalTokens)] }
        return try runTool(command, in: directory)
    }

    /// Claim loops on two hosts drain a queue while the cluster's leader is killed with kill -9:
    /// every task is done, and each exactly once in a fresh fold of the namespace (the append is
    /// idempotent, and the other two members elect a new leader). At the same time host B's
    /// connections lose append replies: B's config lists a `CuttingProxy` to one follower first,
    /// which cuts every second `kv/txn` reply after the member committed it, so B's tools fail
    /// over with the append already in. Every task is created once, no record is in the fold
    /// twice (a retry after a lost reply finds the key the first write created), and every tool
    /// call ends with 0, 1 or 75, never a crash or a hang past its timeout.
    @Test(.enabled(if: EtcdCluster.isInstalled, EtcdCluster.notInstalled), .timeLimit(.minutes(10)))
    func everyTaskIsDoneExactlyOnceWhileTheLeaderIsKilledAndAppendRepliesAreCut() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let hostA = directory.path + "/host-a"
        let hostB = directory.path + "/host-b"
        // The proxy fronts a follower, so the kill -9 below leaves it a live member to cut.
        let follower = try #require(cluster.endpoints.indices.first { $0 != leaderIndex(of: cluster) })
        let proxy = try CuttingProxy(upstreamPort: cluster.members[follower].clientPort, cutEvery: 2)
        defer { proxy.stop() }
        let endpointsB = [proxy.url] + cluster.urls
        #expect(try initHost(hostA, host: "a", cluster: cluster, namespace: "chaos", totalTokens: 100, in: directory).exitCode == 0)
        let joined = try runTool(
            [
                "cortex", "init", "--dir", hostB, "--backend", "etcd", "--endpoints", endpointsB.joined(separator: ","),
                "--namespace", "chaos", "--host-id", "b",
            ], in: directory)
        #expect(joined.exitCode == 0, "\(joined)")
        // The fresh fold below reads the whole history: no snapshot stored in etcd may compact it.
        for folder in [hostA, hostB] { try updateConfig(atPath: folder + "/config.json", ["snapshot_every_records": .int(1_000_000)]) }
        let tasks = 40
        var created: Set<String> = []
        for _ in 0..<tasks {
            let made = try runTool(["cortex-task", "create", "--dir", hostB, "--type", "t"], in: directory)
            #expect(made.exitCode == 0, "\(made)")
            created.insert(made.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        #expect(created.count == tasks, "every create printed its own task: \(created)")
        #expect(proxy.cuts > 0, "creating tasks on host B lost append replies")
        // A claim loop that goes on through failed calls (75 while the cluster elects a leader)
        // until the stop file appears; every call's exit status goes to the log ("timeout" ends
        // a call that hangs: 124 or 137 in the log).
        let stop = directory.scratch + "/stop"
        let loop = #"""
            call() { timeout -k 5 120 "$@"; rc=$?; echo "$1 $2 $rc" >>"$LOG"; return $rc; }
            while [ ! -e "$STOP" ]; do
              task=$(call cortex-task claim --dir "$DIR" --worker "$W" --type t --wait 1s) || { sleep 0.1; continue; }
              id=$(printf '%s' "$task" | sed 's/.*"id":"\([^"]*\)".*/\1/')
              claim=$(printf '%s' "$task" | sed 's/.*"claim":\([0-9]*\).*/\1/')
              sleep 0.05
              until call cortex-task complete "$id" --claim "$claim" --dir "$DIR" >/dev/null 2>&1 || [ -e "$STOP" ]; do sleep 0.2; done
            done
            """#
        var loops: [RunningTool] = []
        var logs: [String] = []
        defer {
            // Loops end on their own even when a check below throws (no tool left running).
            _ = FileManager.default.createFile(atPath: stop, contents: Data())
            for loop in loops { _ = loop.wait() }
        }
        for (folder, worker) in [(hostA, "a1"), (hostA, "a2"), (hostB, "b1"), (hostB, "b2")] {
            var environment = toolEnvironment
            environment["DIR"] = folder
            environment["W"] = worker
            environment["STOP"] = stop
            environment["LOG"] = directory.scratch + "/calls-\(worker).log"
            environment["PATH"] = toolsDirectory + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
            logs.append(environment["LOG"]!)
            loops.append(try RunningTool([bashPath, "-c", loop], scratch: directory.scratch, environment: environment))
        }
        // Mid-run: once a quarter of the tasks are done (the logs say so), the leader goes.
        let completedCalls = {
            logs.map { ((try? String(contentsOfFile: $0, encoding: .utf8)) ?? "").components(separatedBy: "complete 0\n").count - 1 }
                .reduce(0, +)
        }
        for _ in 0..<3_000 where completedCalls() < tasks / 4 { usleep(20_000) }
        let doneBeforeTheKill = completedCalls()
        let killed = try #require(leaderIndex(of: cluster), "no member said it leads")
        cluster.kill(member: killed)
        #expect(doneBeforeTheKill >= tasks / 4 && doneBeforeTheKill < tasks, "\(doneBeforeTheKill) tasks done before the kill")
        let waited = try runTool(["cortex-task", "wait", "--all", "--dir", hostA, "--timeout", "3m"], in: directory)
        _ = FileManager.default.createFile(atPath: stop, contents: Data())
        let loopResults = loops.map { $0.wait() }
        #expect(waited.exitCode == 0, "\(waited) \(loopResults.map { $0.stderr.suffix(600) })")
        #expect(proxy.cuts > 1, "the proxy cut \(proxy.cuts) of \(proxy.matching) append replies")

        // Every call ended with a documented status: 0, 1 (no task, a stale claim) or 75.
        var calls = 0
        for log in logs {
            for line in ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n") {
                calls += 1
                let status = Int(line.split(separator: " ").last ?? "") ?? -1
                #expect([0, 1, 75].contains(status), "\(log): \(line)")
            }
        }
        #expect(calls >= 2 * tasks, "\(calls) calls logged")

        // A fresh fold: each task created once and completed once, no record twice.
        let journal = try EtcdJournal(kv: cluster.client(), namespace: "chaos")
        var state = CortexState()
        var completions: [String: Int] = [:]
        var recordIDs: [String: Int] = [:]
        _ = try journal.readForward(from: .start) { (record, position) throws(CortexError) in
            recordIDs[record.id, default: 0] += 1
            if case .completed(let task) = Reducer.reduce(&state, record, at: position) { completions[task, default: 0] += 1 }
        }
        #expect(Set(completions.keys) == created, "\(completions)")
        #expect(completions.values.allSatisfy { $0 == 1 }, "\(completions)")
        let twice = recordIDs.filter { $0.value > 1 }
        #expect(twice.isEmpty, "records appended more than once: \(twice)")
    }

    /// The proxy cuts a reply only after the member committed the write: a client that hears
    /// nothing back finds its key there, and a client that fails over to a member retries into
    /// the same key and gets the first write's revision (`created` false), not a second record.
    @Test(.enabled(if: EtcdCluster.isInstalled, EtcdCluster.notInstalled), .timeLimit(.minutes(10)))
    func aRetryAfterACutAppendReplyReturnsTheFirstWritesRevision() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let proxy = try CuttingProxy(upstreamPort: cluster.members[0].clientPort, cutEvery: 1)
        defer { proxy.stop() }
        let direct = try cluster.client()
        // Through the proxy alone: the call fails, the write is in.
        let alone = try EtcdClient(endpoints: [proxy.url], timeoutMilliseconds: 5000, attempts: 1)
        let lost = Array("cut/lost".utf8)
        #expect(throws: CortexError.self) { try alone.createIfAbsent(key: lost, value: Array("one".utf8)) }
        let stored = try direct.range(prefix: lost, minimumRevision: 0, maximumRevision: nil, limit: 10)
        #expect(stored.keyValues.map(\.value) == [Array("one".utf8)], "the cut write was committed")
        // The proxy first, then a member: the retry finds the first write.
        let failingOver = try EtcdClient(endpoints: [proxy.url, cluster.urls[1]], timeoutMilliseconds: 5000, attempts: 2)
        let retried = Array("cut/retried".utf8)
        let creation = try failingOver.createIfAbsent(key: retried, value: Array("two".utf8))
        let written = try direct.range(prefix: retried, minimumRevision: 0, maximumRevision: nil, limit: 10)
        #expect(!creation.created, "the first attempt wrote the key; the retry found it")
        #expect(written.keyValues.map(\.modRevision) == [creation.revision], "the first write's revision, one key")
        #expect(proxy.cuts == 2, "\(proxy.cuts) cuts")
    }

    /// The index of the member that says it leads (its own id is the leader id it reports).
    private func leaderIndex(of cluster: EtcdCluster) -> Int? {
        for (index, endpoint) in cluster.endpoints.enumerated() {
            guard cluster.members[index].process != nil,
                let client = try? EtcdClient(endpoints: [endpoint.url], timeoutMilliseconds: 2000, attempts: 1),
                let status = try? client.status()
            else { continue }
            if status.memberID == status.leaderID { return index }
        }
        return nil
    }

    /// A folder on a cluster that asks for client certificates: with the files given to init it
    /// works like any other; a folder whose config presents no certificate is refused with one
    /// line, not a hang (decisions 033 and 034).
    @Test(.enabled(if: EtcdCluster.canStartTLS, EtcdCluster.cannotStartTLS), .timeLimit(.minutes(10)))
    func aHostFolderReachesAMutualTLSClusterWithItsCertificateAndIsRefusedWithout() throws {
        guard let cluster = try EtcdCluster.start(tls: true), let tls = cluster.clientTLS else { return }
        let directory = try TemporaryDirectory()
        let folder = directory.path + "/host-tls"
        let base = [
            "cortex", "init", "--backend", "etcd", "--endpoints", cluster.urls.joined(separator: ","), "--namespace", "tls",
            "--host-id", "a", "--total-tokens", "100", "--ca-file", tls.caFile,
        ]
        let made = try runTool(
            base + ["--dir", folder, "--cert-file", tls.certificateFile ?? "", "--key-file", tls.keyFile ?? ""], in: directory)
        #expect(made.exitCode == 0, "\(made)")
        let config = try JSONValue.parse(Array(FileManager.default.contents(atPath: folder + "/config.json") ?? Data()))
        #expect(config["backend"]?["ca_file"]?.stringValue?.hasPrefix("/") == true, "\(config.jsonText)")
        let allocated = try runTool(["cortex-budget", "allocate", "--dir", folder, "--tokens", "10", "--holder", "h"], in: directory)
        #expect(allocated.exitCode == 0, "\(allocated)")
        let stranger = try runTool(base + ["--dir", directory.path + "/host-stranger"], in: directory)
        #expect(stranger.exitCode != 0 && stranger.exitCode != 75 && stranger.stderrLines.count == 1, "\(stranger)")
        #expect(stranger.stderr.contains("certificate"), "\(stranger)")
    }

    @Test(.enabled(if: EtcdCluster.isInstalled, EtcdCluster.notInstalled), .timeLimit(.minutes(10)))
    func twoHostFoldersShareOneBudgetAndOneQueue() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let hostA = directory.path + "/host-a"
        let hostB = directory.path + "/host-b"
        let namespace = "e2e"

        // The first init creates the namespace and its budget; the second joins it.
        let first = try initHost(hostA, host: "a", cluster: cluster, namespace: namespace, totalTokens: 1000, in: directory)
        #expect(first.exitCode == 0, "\(first)")
        let second = try initHost(hostB, host: "b", cluster: cluster, namespace: namespace, totalTokens: 5, in: directory)
        #expect(second.exitCode == 0, "\(second)")
        #expect(second.stdout.contains("joined etcd namespace 'e2e'"), "\(second)")
        #expect(second.stdout.contains("budget 1000 tokens"), "a joining init keeps the namespace's budget: \(second)")
        let config = try JSONValue.parse(Array(FileManager.default.contents(atPath: hostB + "/config.json") ?? Data()))
        #expect(config["backend"]?["kind"]?.stringValue == "etcd")
        #expect(config["backend"]?["namespace"]?.stringValue == namespace)
        #expect(config["backend"]?["host_id"]?.stringValue == "b")
        #expect(config["backend"]?["endpoints"]?.arrayValue?.count == 3)
        #expect(!FileManager.default.fileExists(atPath: hostB + "/journal"), "an etcd folder has no journal of files")
        let again = try initHost(hostA, host: "a", cluster: cluster, namespace: namespace, totalTokens: nil, in: directory)
        #expect(again.exitCode == 0, "init is safe to run again: \(again)")
        let elsewhere = try initHost(hostA, host: "a", cluster: cluster, namespace: "another", totalTokens: nil, in: directory)
        #expect(elsewhere.exitCode == 78, "a folder keeps its namespace: \(elsewhere)")
        #expect(elsewhere.stderrLines.count == 1, "\(elsewhere)")

        // A budget set on one host is what the other sees.
        let set = try runTool(["cortex-budget", "set", "--dir", hostA, "--total", "1500"], in: directory)
        #expect(set.exitCode == 0, "\(set)")
        let shown = try runTool(["cortex-budget", "status", "--dir", hostB, "--json"], in: directory)
        #expect(shown.exitCode == 0, "\(shown)")
        #expect(shown.json?["total_budget"]?.intValue == 1500, "\(shown)")

        // 50 processes over the two folders ask for 40 of 1500 tokens each: exactly 37 fit.
        let commands = (1...50).map { index in
            ["cortex-budget", "allocate", "--dir", index % 2 == 0 ? hostA : hostB, "--tokens", "40", "--holder", "p\(index)", "--json"]
        }
        let results = try runConcurrently(commands, in: directory)
        #expect(results.filter { $0.exitCode == 0 }.count == 37, "1500 / 40 = 37 allocations fit")
        #expect(results.filter { $0.exitCode == 1 }.count == 13)
        for result in results where result.exitCode != 0 && result.exitCode != 1 {
            Issue.record("an allocation neither granted nor refused: \(result)")
        }
        // Every process's printed outcome is what a fresh fold of the namespace decides.
        let journal = try EtcdJournal(kv: cluster.client(), namespace: namespace)
        var state = CortexState()
        var foldedOutcome: [String: Outcome] = [:]
        var allocationRecords = 0
        _ = try journal.readForward(from: .start) { (record, position) throws(CortexError) in
            let outcome = Reducer.reduce(&state, record, at: position)
            if record.kind == "budget.allocate", let holder = record.data["holder"]?.stringValue {
                allocationRecords += 1
                foldedOutcome[holder] = outcome
            }
        }
        #expect(allocationRecords == 50, "each allocation folded once")
        #expect(state.budget.reserved == 37 * 40)
        for result in results {
            let holder = result.command[7]
            let printed = try #require(result.json, "one JSON object: \(result)")
            switch foldedOutcome[holder] {
            case .granted(let allocation):
                #expect(printed.string("outcome") == "granted", "\(result)")
                #expect(printed.string("allocation") == allocation, "\(result)")
            case .refused:
                #expect(printed.string("outcome") == "refused", "\(result)")
            default: Issue.record("no allocation of \(holder) in the fold: \(result)")
            }
        }

        // Host A caches a snapshot every 4 records (the cache every etcd folder keeps), from now
        // on: the fresh fold above needed the whole history, which snapshots stored in etcd
        // compact (decision 035). Its next record is well past 4 since its last snapshot.
        try updateConfig(atPath: hostA + "/config.json", ["snapshot_every_records": .int(4)])
        #expect(try runTool(["cortex-budget", "set", "--dir", hostA, "--total", "1500"], in: directory).exitCode == 0)

        // Host A's local snapshot names the namespace and its last record; a copy of it that
        // claims to be another namespace's is not believed there (its last record is not there).
        let snapshot = try #require(ImmutableBytes.map(hostA + "/state/snapshot.json"), "host A cached a snapshot")
        let identity = try #require(SnapshotCodec.journalIdentity(snapshot), "the snapshot says which journal it folds")
        #expect(identity["namespace"]?.stringValue == namespace)
        let (snapshotState, snapshotPosition) = try #require(SnapshotCodec.decode(snapshot))
        #expect(snapshotState.budget.total == 1500)
        let hostC = directory.path + "/host-c"
        let other = try initHost(hostC, host: "c", cluster: cluster, namespace: "other", totalTokens: 7, in: directory)
        #expect(other.exitCode == 0, "\(other)")
        guard case .object(var forged) = identity else { throw SupportError("identity is not an object") }
        forged.removeAll { $0.key == "namespace" }
        forged.append(JSONMember("namespace", "other"))
        let planted = SnapshotCodec.encode(
            snapshotState, position: snapshotPosition, writtenAtMilliseconds: 0, journal: .object(forged))
        try Data(planted).write(to: URL(fileURLWithPath: hostC + "/state/snapshot.json"))
        let otherBudget = try runTool(["cortex-budget", "status", "--dir", hostC, "--json"], in: directory)
        #expect(otherBudget.json?["total_budget"]?.intValue == 7, "\(otherBudget)")
        #expect(snapshotState.budget.reserved > 0, "host A's snapshot holds allocations")
        #expect(otherBudget.json?["in_use"]?.intValue == 0, "a snapshot from another namespace is never believed: \(otherBudget)")
        let sameBudget = try runTool(["cortex-budget", "status", "--dir", hostA, "--json"], in: directory)
        #expect(sameBudget.json?["total_budget"]?.intValue == 1500, "\(sameBudget)")

        // A claimer waiting on host B is woken (through the watch) by a task created on host A.
        let waiter = try RunningTool(
            ["cortex-task", "claim", "--dir", hostB, "--worker", "w-b", "--wait", "300s", "--json"], scratch: directory.scratch)
        usleep(500_000)
        #expect(waiter.isRunning, "the claimer returned with nothing to claim")
        let createdAt = Date()
        let created = try runTool(["cortex-task", "create", "--dir", hostA, "--type", "work"], in: directory)
        #expect(created.exitCode == 0, "\(created)")
        let claimed = waiter.wait()
        #expect(claimed.exitCode == 0, "\(claimed)")
        // Without the watch the claimer would look again only after its 60 s slice of waiting.
        #expect(Date().timeIntervalSince(createdAt) < 30, "woken by the watch, not by its own timeout")
        #expect(claimed.json?["id"]?.stringValue == created.stdout.trimmingCharacters(in: .newlines), "\(claimed)")

        // `cortex-task wait` on host A returns once host B completes the task.
        let taskID = created.stdout.trimmingCharacters(in: .newlines)
        let awaiting = try RunningTool(["cortex-task", "wait", "--dir", hostA, taskID, "--timeout", "300s"], scratch: directory.scratch)
        let claim = try #require(claimed.json?["claim"]?.intValue, "\(claimed)")
        let completed = try runTool(
            ["cortex-task", "complete", "--dir", hostB, taskID, "--claim", String(claim)], in: directory)
        #expect(completed.exitCode == 0, "\(completed)")
        let waited = awaiting.wait()
        #expect(waited.exitCode == 0, "\(waited)")

        // Status works on both, and shows the shared budget; each folder has its own views.
        for folder in [hostA, hostB] {
            let status = try runTool(["cortex", "status", "--dir", folder, "--json"], in: directory)
            #expect(status.exitCode == 0 || status.exitCode == 1, "\(status)")
            #expect(status.json?["budget"]?["total_budget"]?.intValue == 1500, "\(status)")
            #expect(status.json?["journal"]?["backend"]?["namespace"]?.stringValue == namespace, "\(status)")
            // Where the journal ends, in etcd's words: a revision, not a segment of files.
            #expect((status.json?["journal"]?["revision"]?.intValue ?? 0) > 0, "\(status)")
            #expect(status.json?["journal"]?["live_segment"] == nil, "\(status)")
            #expect(FileManager.default.fileExists(atPath: folder + "/token-budget.json"))
            let text = try runTool(["cortex", "status", "--dir", folder], in: directory)
            #expect(text.stdout.contains("etcd namespace 'e2e'") && text.stdout.contains(") at revision "), "\(text)")
        }

        // tail -f on host A follows a record appended on host B (woken by the watch).
        let follower = try RunningTool(["cortex", "tail", "--dir", hostA, "--lines", "1", "-f"], scratch: directory.scratch)
        usleep(500_000)
        let followed = try runTool(["cortex-task", "create", "--dir", hostB, "--type", "followed"], in: directory)
        let followedID = followed.stdout.trimmingCharacters(in: .newlines)
        var seen = false
        for _ in 0..<300 where !seen {
            usleep(100_000)
            seen = follower.stdoutSoFar().contains(followedID)
        }
        #expect(seen, "tail -f printed the task created on the other host: \(follower.stdoutSoFar())")
        _ = follower.kill(SIGTERM)
        _ = follower.wait()

        // tail and verify read the shared journal; file-only commands refuse with one clear line.
        let tail = try runTool(["cortex", "tail", "--dir", hostB, "--lines", "3"], in: directory)
        #expect(tail.exitCode == 0, "\(tail)")
        #expect(tail.stdoutLines.count == 3, "\(tail)")
        let verify = try runTool(["cortex", "verify", "--dir", hostA], in: directory)
        #expect(verify.exitCode == 0 && verify.stdout.contains("journal ok: etcd namespace"), "\(verify)")
        let audit = try runTool(["cortex", "audit", "head", "--dir", hostA], in: directory)
        #expect(audit.exitCode == 78, "\(audit)")
        #expect(audit.stderrLines.count == 1 && audit.stderr.contains("on etcd"), "\(audit)")
    }

    @Test func initRefusesBadEtcdSettingsWithOneLine() throws {
        let directory = try TemporaryDirectory()
        let folder = directory.coordination
        let cases: [([String], Int32)] = [
            (["--backend", "etcd", "--namespace", "n", "--host-id", "h"], 64),
            (["--backend", "etcd", "--endpoints", "http://127.0.0.1:1", "--namespace", "a/b", "--host-id", "h"], 65),
            (["--backend", "etcd", "--endpoints", "nonsense", "--namespace", "n", "--host-id", "h"], 65),
            (["--backend", "nfs"], 65),
            (["--namespace", "n"], 64),
        ]
        for (arguments, code) in cases {
            let result = try runTool(["cortex", "init", "--dir", folder] + arguments, in: directory)
            #expect(result.exitCode == code, "\(result)")
            #expect(result.stderrLines.count == 1, "\(result)")
            #expect(!FileManager.default.fileExists(atPath: folder + "/config.json"), "nothing written for bad settings")
        }
        // A cluster that does not answer: try later, after the client's timeouts.
        let closed = try TCPListener().port  // closed again at once: nothing listens there
        let unreachable = try runTool(
            [
                "cortex", "init", "--dir", folder, "--backend", "etcd", "--endpoints", "http://127.0.0.1:\(closed)", "--namespace", "n",
                "--host-id", "h",
            ], in: directory)
        #expect(unreachable.exitCode == 75, "\(unreachable)")
        #expect(unreachable.stderrLines.count == 1, "\(unreachable)")
    }

    @Test func aFileFolderKeepsItsConfigByteForByte() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        let bytes = try #require(FileManager.default.contents(atPath: directory.coordination + "/config.json"))
        var config = CortexConfig()
        config.audit = true  // a new folder of files is audited (decision 044)
        let expected = config.json.prettySerialized()
        #expect(Array(bytes) == expected)
        #expect(!String(decoding: bytes, as: UTF8.self).contains("backend"))
    }
}
