import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// Context and result files across two host folders of one etcd namespace (issue 18,
/// docs/decisions/045): the built tools as real processes against a real cluster. Each test
/// starts its own cluster (skipped, with the reason printed, when etcd is not installed).
@Suite("Artifacts across etcd hosts", .serialized, .enabled(if: EtcdCluster.isInstalled, EtcdCluster.notInstalled))
struct EtcdArtifactsTests {
    /// Two host folders, `a` and `b`, over one namespace of `cluster`.
    private func twoHosts(_ cluster: EtcdCluster, namespace: String, in directory: TemporaryDirectory) throws -> (String, String) {
        let hosts = (directory.path + "/host-a", directory.path + "/host-b")
        for (folder, host) in [(hosts.0, "a"), (hosts.1, "b")] {
            let made = try runTool(
                [
                    "cortex", "init", "--dir", folder, "--backend", "etcd", "--endpoints", cluster.urls.joined(separator: ","),
                    "--namespace", namespace, "--host-id", host,
                ], in: directory)
            try #require(made.exitCode == 0, "\(made)")
        }
        return hosts
    }

    /// `count` bytes that are not all alike (a pattern broken by the index, so chunks differ).
    private func bytes(_ count: Int, seed: UInt8) -> Data {
        var data = Data(count: count)
        data.withUnsafeMutableBytes { raw in
            let buffer = raw.bindMemory(to: UInt8.self)
            for index in 0..<count { buffer[index] = UInt8(truncatingIfNeeded: index &* 31 &+ index >> 9) ^ seed }
        }
        return data
    }

    /// The keys under `prefix` in the cluster.
    private func keys(_ cluster: EtcdCluster, prefix: String) throws -> [String] {
        let page = try cluster.client().range(prefix: Array(prefix.utf8), minimumRevision: 0, maximumRevision: nil, limit: 10_000)
        return page.keyValues.map { String(decoding: $0.key, as: UTF8.self) }
    }

    /// A 10 MB context file created on host A is read on host B by a claim, with the same
    /// command as on one host: the claim prints a `context_path` in B's folder whose bytes are
    /// A's (fetched from etcd, checked, private). One over the etcd limit (64 MiB) is refused
    /// with 65 and one line, nothing appended, nothing stored.
    @Test(.timeLimit(.minutes(10)))
    func aTenMegabyteContextCreatedOnOneHostIsReadByAWorkerOnTheOther() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let (hostA, hostB) = try twoHosts(cluster, namespace: "ctx", in: directory)
        let context = bytes(10_000_000, seed: 7)
        let contextFile = directory.scratch + "/context.bin"
        try context.write(to: URL(fileURLWithPath: contextFile))
        let created = try runTool(
            ["cortex-task", "create", "--dir", hostA, "--type", "big", "--context-file", contextFile], in: directory)
        #expect(created.exitCode == 0, "\(created)")
        let task = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        let claimed = try runTool(["cortex-task", "claim", "--dir", hostB, "--worker", "b1", "--type", "big"], in: directory)
        #expect(claimed.exitCode == 0, "\(claimed)")
        let claim = try #require(claimed.json, "\(claimed)")
        #expect(claim["id"]?.stringValue == task)
        let path = try #require(claim["context_path"]?.stringValue, "\(claimed)")
        #expect(path.hasPrefix(hostB + "/context/"), "\(path)")
        #expect(FileManager.default.contents(atPath: path) == context, "host B's copy holds host A's bytes")
        let name = String(path.dropFirst(hostB.count + 1))
        var copied = stat()
        var original = stat()
        #expect(stat(path, &copied) == 0 && stat(hostA + "/" + name, &original) == 0)
        #expect(copied.st_mode == original.st_mode, "the same private mode as the creating host's copy")
        let stored = try keys(cluster, prefix: "ctx/artifacts/\(name)/")
        #expect(stored.count == (10_000_000 + EtcdArtifacts.chunkBytes - 1) / EtcdArtifacts.chunkBytes + 1, "\(stored.count) keys")
        #expect(stored.contains("ctx/artifacts/\(name)/manifest"))

        // Over the limit: refused before anything is written or appended.
        let tooLarge = directory.scratch + "/too-large.bin"
        #expect(FileManager.default.createFile(atPath: tooLarge, contents: nil))
        #expect(truncate(tooLarge, off_t(EtcdArtifacts.maximumBytes + 1)) == 0)
        let artifactsBefore = try keys(cluster, prefix: "ctx/artifacts/")
        let journalBefore = try keys(cluster, prefix: "ctx/journal/")
        let refused = try runTool(
            ["cortex-task", "create", "--dir", hostA, "--type", "big", "--context-file", tooLarge], in: directory)
        #expect(refused.exitCode == 65 && refused.stderrLines.count == 1, "\(refused)")
        #expect(refused.stderr.contains("\(EtcdArtifacts.maximumBytes)-byte limit"), "\(refused)")
        #expect(try keys(cluster, prefix: "ctx/journal/") == journalBefore, "nothing appended")
        #expect(try keys(cluster, prefix: "ctx/artifacts/") == artifactsBefore, "nothing stored")
    }

    /// A result completed on host A is read on host B after `wait` (`results/<task>.json` in B's
    /// folder, A's bytes); both copies go with the folder's `result_ttl`: etcd's lease deletes the
    /// shared one, after which B can no longer fetch it, and each host's reaper purges its own.
    @Test(.timeLimit(.minutes(10)))
    func aResultCompletedOnOneHostIsReadOnTheOtherAndExpiresWithItsTTL() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let (hostA, hostB) = try twoHosts(cluster, namespace: "res", in: directory)
        for folder in [hostA, hostB] { try updateConfig(atPath: folder + "/config.json", ["result_ttl": "3s"]) }
        let made = try runTool(["cortex-task", "create", "--dir", hostB, "--type", "r"], in: directory)
        let task = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let claimed = try runTool(["cortex-task", "claim", "--dir", hostA, "--worker", "a1", "--type", "r"], in: directory)
        let claim = try #require(claimed.json?["claim"]?.intValue, "\(claimed)")
        let result = Data(#"{"lines":42,"note":"written on host a"}"#.utf8)
        let resultFile = directory.scratch + "/result.json"
        try result.write(to: URL(fileURLWithPath: resultFile))
        let completed = try runTool(
            ["cortex-task", "complete", task, "--dir", hostA, "--claim", String(claim), "--result-file", resultFile], in: directory)
        #expect(completed.exitCode == 0, "\(completed)")

        let canonical = hostB + "/results/\(task).json"
        #expect(!FileManager.default.fileExists(atPath: canonical))
        let waited = try runTool(["cortex-task", "wait", task, "--dir", hostB, "--timeout", "1m"], in: directory)
        #expect(waited.exitCode == 0 && waited.stderr.isEmpty, "\(waited)")
        #expect(FileManager.default.contents(atPath: canonical) == result, "host B reads host A's result")

        // The lease ends (etcd's clock): the shared copy is gone, so a host without the file
        // cannot fetch it any more and says so; the local copies are the reapers' to purge.
        let deadline = Date().addingTimeInterval(60)
        while try !keys(cluster, prefix: "res/artifacts/").isEmpty && Date() < deadline { usleep(200_000) }
        #expect(try keys(cluster, prefix: "res/artifacts/").isEmpty, "the lease deleted every key of the result")
        try FileManager.default.removeItem(atPath: canonical)
        try FileManager.default.removeItem(atPath: hostB + "/results/\(task).attempt-\(claim).json")
        let shown = try runTool(["cortex-task", "show", task, "--dir", hostB], in: directory)
        #expect(shown.exitCode == 0 && shown.stderr.contains("TTL"), "\(shown)")
        #expect(!FileManager.default.fileExists(atPath: canonical))
        let reaped = try runTool(["cortex-reap", "--dir", hostA], in: directory)
        #expect(reaped.exitCode == 0, "\(reaped)")
        #expect(!FileManager.default.fileExists(atPath: hostA + "/results/\(task).json"), "host A's reaper purged its copy")
    }

    /// A context whose chunk was changed or removed in etcd is refused by the claim on the other
    /// host with one line naming the damage (exit 74), never written shorter or different; the
    /// attempt fails with that reason. An upload whose reply is lost leaves no manifest and no chunk.
    @Test(.timeLimit(.minutes(10)))
    func aDamagedOrIncompleteContextIsRefusedAndAFailedUploadLeavesNothing() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let (hostA, hostB) = try twoHosts(cluster, namespace: "bad", in: directory)
        let client = try cluster.client()
        let contextFile = directory.scratch + "/context.bin"
        try bytes(3 * EtcdArtifacts.chunkBytes - 100, seed: 1).write(to: URL(fileURLWithPath: contextFile))
        var names: [String: String] = [:]
        for type in ["tampered", "partial"] {
            let made = try runTool(
                ["cortex-task", "create", "--dir", hostA, "--type", type, "--context-file", contextFile], in: directory)
            let task = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let shown = try runTool(["cortex-task", "show", task, "--dir", hostA, "--json"], in: directory)
            names[type] = try #require(shown.json?["context"]?.stringValue, "\(shown)")
        }
        let artifacts = EtcdArtifacts(client: client, namespace: "bad")
        let tampered = try #require(names["tampered"])
        try client.put(key: artifacts.chunkKey(tampered, 1), value: [UInt8](repeating: 0x41, count: EtcdArtifacts.chunkBytes))
        let partial = try #require(names["partial"])
        let deleted = try client.deleteRange(prefix: artifacts.chunkKey(partial, 2), belowRevision: Int64.max)
        #expect(deleted == 1)

        for (type, damage) in [("tampered", "SHA-256 does not match"), ("partial", "chunk 2 of 3 is missing")] {
            let claimed = try runTool(["cortex-task", "claim", "--dir", hostB, "--worker", "b1", "--type", type], in: directory)
            #expect(claimed.exitCode == 74 && claimed.stderrLines.count == 1 && claimed.stdout.isEmpty, "\(claimed)")
            #expect(claimed.stderr.contains(damage), "\(claimed)")
            #expect(!FileManager.default.fileExists(atPath: hostB + "/" + names[type]!), "no copy written on host B")
            let listed = try runTool(["cortex-task", "list", "--dir", hostB, "--type", type, "--json"], in: directory)
            let entry = listed.json?["tasks"]?.arrayValue?.first
            #expect(entry?["status"]?.stringValue == "failed", "\(listed)")
            #expect(entry?["last_error"]?.stringValue?.contains(damage) == true, "\(listed)")
        }

        // Every put's reply lost on the way back: the upload fails, and its lease's revoke
        // (through a member) takes every chunk it wrote with it; no manifest was ever put.
        let proxy = try CuttingProxy(upstreamPort: cluster.members[0].clientPort, cutPath: "/v3/kv/put", cutEvery: 1)
        defer { proxy.stop() }
        let cut = try EtcdClient(urls: [proxy.url], timeoutMilliseconds: 3000, attempts: 1)
        let lossy = EtcdArtifacts(client: cut, namespace: "bad")
        #expect(throws: CortexError.self) {
            try lossy.store("results/lost.attempt-1.json", bytes: Array(repeating: 7, count: 2 * EtcdArtifacts.chunkBytes), ttlSeconds: 600)
        }
        #expect(proxy.cuts >= 1)
        #expect(try keys(cluster, prefix: "bad/artifacts/results/lost.attempt-1.json/").isEmpty, "no chunk, no manifest left")
        // A store retried with the same bytes is harmless; with other bytes under the name, refused.
        let name = "results/again.attempt-1.json"
        #expect(try artifacts.store(name, bytes: [1, 2, 3], ttlSeconds: 600))
        #expect(try !artifacts.store(name, bytes: [1, 2, 3], ttlSeconds: 600))
        #expect(throws: CortexError.self) { try artifacts.store(name, bytes: [4, 5, 6], ttlSeconds: 600) }
        #expect(try artifacts.fetch(name) == [1, 2, 3])
    }
}
