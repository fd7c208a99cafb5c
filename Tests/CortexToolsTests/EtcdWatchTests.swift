import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// Waiting tools on an etcd folder against a real 3-member cluster (issue 16: "`claim --wait`,
/// `tail -f` and `wait` block on a watch, falling back to Range after compaction"), and a
/// long-lived reaper's liveness lease.
@Suite("Waiting on an etcd folder", .serialized)
struct EtcdWatchTests {
    /// `cortex-task claim --wait` arms its waiter (a watch from the revision after the one it
    /// read). Its config lists one endpoint, a proxy that holds the watch request: meanwhile a
    /// task is created and the cluster's history compacted past the watch's start revision, so
    /// etcd refuses the watch as compacted once it arrives. The claim must read with a range
    /// from the revision it watched from, find the task and claim it, not sleep to its timeout.
    @Test(.timeLimit(.minutes(5)))
    func aWaitingClaimWakesWhenItsWatchStartRevisionWasCompacted() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let folder = directory.path + "/host-a"
        let proxy = try CuttingProxy(upstreamPort: cluster.members[0].clientPort, cutPath: "/none", cutEvery: 1, holdPath: "/v3/watch")
        defer { proxy.stop() }
        let made = try runTool(
            [
                "cortex", "init", "--dir", folder, "--backend", "etcd", "--endpoints", proxy.url, "--namespace", "compacted-claim",
                "--host-id", "a",
            ], in: directory)
        #expect(made.exitCode == 0, "\(made)")

        let claim = try RunningTool(
            ["cortex-task", "claim", "--dir", folder, "--worker", "w-1", "--type", "t", "--wait", "120s"], scratch: directory.scratch)
        // The claim has folded the journal and sent its watch request, which the proxy holds.
        var polls = 0
        while proxy.held == 0 && claim.isRunning && polls < 6_000 {
            usleep(10_000)
            polls += 1
        }
        try #require(proxy.held == 1, "the claim never sent its watch request")

        let created = try runTool(["cortex-task", "create", "--dir", folder, "--type", "t"], in: directory)
        #expect(created.exitCode == 0, "\(created)")
        let task = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let client = try cluster.client()
        let latest = try client.put(key: Array("elsewhere".utf8), value: [])
        try client.compact(revision: latest)
        proxy.releaseHeld()

        // 60 s: a bound on something that takes milliseconds; without the fallback the claim
        // sleeps to its 120 s timeout.
        let result = try #require(claim.wait(atMost: 60), "the claim did not wake after its watch was refused as compacted")
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.stdout.contains("\"id\":\"\(task)\""), "\(result)")
    }

    /// `cortex-reap --every D` keeps one liveness lease alive across its runs (one keep-alive a
    /// run) instead of granting one a run: after several runs the cluster holds one lease.
    @Test(.timeLimit(.minutes(5)))
    func aLongLivedReaperKeepsOneLeaseAlive() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let folder = directory.path + "/host-a"
        let made = try runTool(
            [
                "cortex", "init", "--dir", folder, "--backend", "etcd", "--endpoints", cluster.urls.joined(separator: ","),
                "--namespace", "kept-lease", "--host-id", "a",
            ], in: directory)
        #expect(made.exitCode == 0, "\(made)")
        let metrics = directory.scratch + "/metrics.prom"
        let reaper = try RunningTool(
            ["cortex-reap", "--dir", folder, "--every", "1s", "--metrics-out", metrics], scratch: directory.scratch)
        // Each run writes the metrics file anew (a new inode): wait for four runs.
        var inodes: Set<UInt64> = []
        var polls = 0
        while inodes.count < 4 && reaper.isRunning && polls < 6_000 {
            var info = stat()
            if stat(metrics, &info) == 0 { inodes.insert(UInt64(info.st_ino)) }
            usleep(10_000)
            polls += 1
        }
        reaper.kill(SIGTERM)
        let ended = reaper.wait()
        #expect(ended.exitCode == 0, "\(ended)")
        try #require(inodes.count >= 4, "the reaper did not run four times: \(ended)")
        let leases = try cluster.etcdctl(["lease", "list"])
        #expect(leases.status == 0, "\(leases.output)")
        #expect(leases.output.contains("found 1 leases"), "one lease kept alive, not one a run: \(leases.output)")
        let registry = EtcdHostRegistry(client: try cluster.client(), namespace: "kept-lease")
        #expect(try registry.hosts() == [HostSighting(host: "a", alive: true)], "the kept lease holds the host's alive key")
    }
}
