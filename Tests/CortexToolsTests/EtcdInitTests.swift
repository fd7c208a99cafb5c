import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// `cortex init`, `verify` and `dashboard` on etcd folders, against a real 3-member cluster
/// (issue 16, decision 033): the first init of a namespace creates it in one transaction, so two
/// first inits at once set one budget; an init whose cluster does not answer leaves nothing, so
/// it can simply be run again; verify and dashboard work on the namespace's records.
@Suite("Initialising, verifying and showing etcd folders", .serialized, .enabled(if: EtcdCluster.isInstalled, EtcdCluster.notInstalled))
struct EtcdInitTests {
    /// `cortex init --backend etcd` for one host's folder, as a command line.
    private func initCommand(_ folder: String, host: String, endpoints: [String], namespace: String, totalTokens: Int) -> [String] {
        [
            "cortex", "init", "--dir", folder, "--backend", "etcd", "--endpoints", endpoints.joined(separator: ","), "--namespace",
            namespace, "--host-id", host, "--total-tokens", String(totalTokens), "--json",
        ]
    }

    /// Two hosts' first inits of one namespace, started at the same moment (several rounds, a
    /// namespace each): exactly one creates it and its budget is the only budget.set record;
    /// the other says it joined. Before namespaces were created in a transaction, both saw an
    /// empty journal and both set a budget.
    @Test(.timeLimit(.minutes(5)))
    func twoFirstInitsOfOneNamespaceAtOnceSetExactlyOneBudget() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        for round in 0..<4 {
            let namespace = "race-\(round)"
            let folders = ["a", "b"].map { directory.path + "/\(namespace)-\($0)" }
            let results = try runConcurrently(
                [
                    initCommand(folders[0], host: "a", endpoints: cluster.urls, namespace: namespace, totalTokens: 1000),
                    initCommand(folders[1], host: "b", endpoints: cluster.urls, namespace: namespace, totalTokens: 2000),
                ], in: directory)
            for result in results { #expect(result.exitCode == 0, "\(result)") }
            let joined = results.map { $0.json?["joined"]?.boolValue }
            #expect(joined.filter { $0 == true }.count == 1 && joined.filter { $0 == false }.count == 1, "\(results)")
            // One budget.set in the namespace's journal, and both hosts see the creator's budget.
            let tail = try runTool(["cortex", "tail", "--dir", folders[0], "--lines", "1000", "--json"], in: directory)
            #expect(tail.exitCode == 0, "\(tail)")
            let kinds = tail.stdoutLines.compactMap { try? JSONValue.parse($0) }.compactMap { $0["kind"]?.stringValue }
            #expect(kinds.filter { $0 == "budget.set" }.count == 1, "round \(round): \(tail.stdout)")
            let creator = joined[0] == false ? 1000 : 2000
            for folder in folders {
                let status = try runTool(["cortex", "status", "--dir", folder, "--json"], in: directory)
                #expect(status.json?["budget"]?["total_budget"]?.intValue == Int64(creator), "\(status)")
            }
        }
    }

    /// An init against endpoints that do not answer exits 75 and leaves no folder; the same
    /// init with the right endpoints then creates the folder (it was refused with 78, "another
    /// journal backend", when the failed init had left its config.json).
    @Test(.timeLimit(.minutes(5)))
    func anInitRunAgainWithCorrectedEndpointsAfterAFailedOneWorks() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let silent = try TCPListener()
        let folder = directory.path + "/host"
        var wrong = initCommand(folder, host: "h", endpoints: ["http://127.0.0.1:\(silent.port)"], namespace: "retry", totalTokens: 500)
        wrong += ["--etcd-timeout", "1s"]
        let failed = try runTool(wrong, in: directory)
        #expect(failed.exitCode == 75 && failed.stderrLines.count == 1, "\(failed)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/config.json"))
        let fixed = try runTool(
            initCommand(folder, host: "h", endpoints: cluster.urls, namespace: "retry", totalTokens: 500), in: directory)
        #expect(fixed.exitCode == 0, "\(fixed)")
        #expect(fixed.json?["joined"]?.boolValue == false && fixed.json?["total_budget"]?.intValue == 500, "\(fixed)")
        // --etcd-timeout is written to config.json (and may be changed by running init again).
        let again = try runTool(
            initCommand(folder, host: "h", endpoints: cluster.urls, namespace: "retry", totalTokens: 500) + ["--etcd-timeout", "3s"],
            in: directory)
        #expect(again.exitCode == 0, "\(again)")
        let config = try String(contentsOfFile: folder + "/config.json", encoding: .utf8)
        #expect(config.contains("\"etcd_timeout\": \"3s\""), "\(config)")
    }

    /// `cortex verify` folds the namespace's kept records and reports a value that is no record
    /// (exit 1); `cortex dashboard` writes its page from them. Both exited 78 ("a journal of
    /// files only") on an etcd folder.
    @Test(.timeLimit(.minutes(5)))
    func verifyAndDashboardWorkOnAnEtcdFolder() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let folder = directory.path + "/host"
        let made = try runTool(
            initCommand(folder, host: "h", endpoints: cluster.urls, namespace: "checked", totalTokens: 100), in: directory)
        try #require(made.exitCode == 0, "\(made)")
        for _ in 0..<3 { #expect(try runTool(["cortex-task", "create", "--dir", folder, "--type", "t"], in: directory).exitCode == 0) }
        let clean = try runTool(["cortex", "verify", "--dir", folder, "--json"], in: directory)
        #expect(clean.exitCode == 0 && clean.json?["ok"]?.boolValue == true, "\(clean)")
        #expect((clean.json?["records"]?.intValue ?? 0) >= 4, "\(clean)")
        let page = try runTool(["cortex", "dashboard", "--dir", folder, "--json"], in: directory)
        #expect(page.exitCode == 0 && (page.json?["events"]?.intValue ?? 0) >= 4, "\(page)")
        #expect(FileManager.default.fileExists(atPath: folder + "/dashboard.html"))
        // A value under the journal's prefix that is no record: damaged, exit 1, named by revision.
        let client = try EtcdClient(endpoints: cluster.urls)
        try client.put(key: Array("checked/journal/~planted".utf8), value: Array("not a record".utf8))
        let damaged = try runTool(["cortex", "verify", "--dir", folder], in: directory)
        #expect(damaged.exitCode == 1, "\(damaged)")
        #expect(damaged.stdoutLines.filter { $0.hasPrefix("damaged  etcd checked/journal at revision ") }.count == 1, "\(damaged)")
        #expect(damaged.stderrLines.count == 1, "\(damaged)")
        // The signed journal is a journal of files': --audit is refused with one line.
        let audit = try runTool(["cortex", "verify", "--dir", folder, "--audit"], in: directory)
        #expect(audit.exitCode == 78 && audit.stderrLines.count == 1, "\(audit)")
    }
}
