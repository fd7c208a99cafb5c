import CortexCore
import CortexStorage
import Foundation
import Testing

/// `cortex session` on a folder whose journal is an etcd namespace (docs/decisions/033, 038):
/// the session answers as the one-process calls do, sees what another host's calls record, and
/// a claim it waits on is woken by another host's create.
@Suite("Sessions on etcd folders", .serialized, .enabled(if: EtcdCluster.isInstalled, EtcdCluster.notInstalled))
struct SessionEtcdTests {
    @Test(.timeLimit(.minutes(5)))
    func aSessionOnAnEtcdFolderAnswersAsTheCallsDoAndSeesTheOtherHost() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        let directory = try TemporaryDirectory()
        let hostA = directory.path + "/host-a"
        let hostB = directory.path + "/host-b"
        for (folder, host) in [(hostA, "a"), (hostB, "b")] {
            var command = [
                "cortex", "init", "--dir", folder, "--backend", "etcd", "--endpoints", cluster.urls.joined(separator: ","),
                "--namespace", "sessions", "--host-id", host,
            ]
            if host == "a" { command += ["--total-tokens", "1000"] }
            let made = try runTool(command, in: directory)
            #expect(made.exitCode == 0, "\(made)")
        }
        let sessions = SessionTests()
        let session = try SessionTests.Session(arguments: ["--dir", hostA], directory: directory.scratch)

        // A grant through the session is the namespace's: host B's one-process call sees it.
        let granted = try session.request(["budget", "allocate", "--tokens", "100", "--holder", "s"])
        #expect(granted.code == 0 && granted.err.isEmpty, "\(granted)")
        let seenByB = try sessions.oneProcess(["budget", "status", "--json"], dir: hostB, in: directory)
        let budgetB = try JSONValue.parse(seenByB.out)
        #expect(seenByB.code == 0 && budgetB.int("allocated") == 100, "\(seenByB)")

        // What host B records, the session's next request folds.
        let created = try sessions.oneProcess(["task", "create", "--type", "t", "--description", "from b"], dir: hostB, in: directory)
        #expect(created.code == 0, "\(created)")
        let task = created.out.trimmingCharacters(in: .newlines)
        for arguments in [["task", "list"], ["task", "show", task], ["budget", "status"], ["task", "show", "task-9.999"]] {
            try sessions.expectSame(arguments, session, dir: hostA, in: directory)
        }
        let claimed = try session.request(["task", "claim", "--worker", "w", "--type", "t"])
        #expect(claimed.code == 0 && claimed.out.contains(task), "\(claimed)")

        // A claim waiting in the session wakes when host B creates a task (the etcd watch).
        try session.send(["task", "claim", "--worker", "w", "--type", "later", "--wait", "60s"])
        usleep(300_000)
        let later = try sessions.oneProcess(["task", "create", "--type", "later"], dir: hostB, in: directory)
        #expect(later.code == 0, "\(later)")
        let woken = try #require(session.nextAnswer(), "the session ended")
        #expect(woken.code == 0 && woken.out.contains(later.out.trimmingCharacters(in: .newlines)), "\(woken)")
        #expect(try session.request(["budget", "release", granted.out.trimmingCharacters(in: .newlines)]).code == 0)
        try session.closeInput()
        #expect(session.exitCode() == 0)
    }
}
