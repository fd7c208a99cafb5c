import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// Issue 14's verbs for bash masters, end to end: `cortex-task wait`, bulk `cancel` and `retry`,
/// `list --type`, and `cortex tail` outcomes for records a snapshot covers.
@Suite("Master verbs", .timeLimit(.minutes(3)))
struct MasterVerbsTests {
    func run(_ arguments: [String], _ directory: TemporaryDirectory) throws -> ToolResult {
        try runTool(arguments + ["--dir", directory.coordination], in: directory)
    }

    func start(_ arguments: [String], _ directory: TemporaryDirectory) throws -> RunningTool {
        try RunningTool(arguments + ["--dir", directory.coordination], scratch: directory.scratch)
    }

    func create(_ directory: TemporaryDirectory, type: String = "work", extra: [String] = []) throws -> String {
        let result = try run(["cortex-task", "create", "--type", type] + extra, directory)
        try #require(result.exitCode == 0, "\(result)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Claims the next task for `worker`; returns its id and claim token.
    func claim(_ directory: TemporaryDirectory, worker: String = "w-1", type: String? = nil) throws -> (task: String, claim: String) {
        let result = try run(["cortex-task", "claim", "--worker", worker] + (type.map { ["--type", $0] } ?? []), directory)
        try #require(result.exitCode == 0, "\(result)")
        let json = try #require(result.json)
        return (try #require(json.string("id")), String(try #require(json.int("claim"))))
    }

    /// Claims and dead-letters one task of `type` (created with one attempt).
    func makeDead(_ directory: TemporaryDirectory, type: String = "work") throws -> String {
        let id = try create(directory, type: type, extra: ["--max-attempts", "1"])
        let held = try claim(directory, type: type)
        #expect(held.task == id)
        #expect(try run(["cortex-task", "fail", id, "--claim", held.claim], directory).exitCode == 0)
        return id
    }

    func status(_ id: String, _ directory: TemporaryDirectory) throws -> String? {
        try run(["cortex-task", "show", id, "--json"], directory).json?.string("status")
    }

    // MARK: wait

    @Test func waitReturnsZeroOnceBashClaimersDrainTheQueue() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        var ids: [String] = []
        for _ in 1...12 { ids.append(try create(directory)) }
        // Started before any claimer: each must block until the journal says the work is finished.
        let waitAll = try start(["cortex-task", "wait", "--all"], directory)
        let waitNamed = try start(["cortex-task", "wait", ids[0], ids[11], "--timeout", "10m"], directory)
        let waitType = try start(["cortex-task", "wait", "--type", "work"], directory)
        let claimers = try (1...3).map { index in
            try RunningTool(
                [bashPath, "-c", TaskQueueTests.claimerScript, toolsDirectory, directory.coordination, "w-\(index)"],
                scratch: directory.scratch)
        }
        let claimed = claimers.map { $0.wait() }.flatMap { $0.stdoutLines }.filter { $0.hasPrefix("done ") }
        #expect(claimed.count == 12, "\(claimed)")
        for waiter in [waitAll, waitNamed, waitType] {
            let result = waiter.wait()
            #expect(result.exitCode == 0, "\(result)")
            #expect(result.stderr.isEmpty, "no progress line when stderr is not a terminal: \(result)")
        }
        let json = try run(["cortex-task", "wait", "--all", "--json"], directory)
        #expect(json.exitCode == 0 && json.json?["counts"]?.int("pending") == 0, "\(json)")
    }

    @Test func waitExitsOneNamingTheTaskThatDied() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let doomed = try create(directory, extra: ["--max-attempts", "1"])
        let fine = try create(directory)
        let waiter = try start(["cortex-task", "wait", doomed, fine], directory)
        let allWaiter = try start(["cortex-task", "wait", "--all"], directory)
        // `--all` waits for what is unfinished when it starts: let both have their first look
        // before anything finishes (on a loaded machine a waiter may start late).
        #expect(waiter.waitUntilWatching() && allWaiter.waitUntilWatching(), "the waiters never started waiting")
        let first = try claim(directory)
        #expect(try run(["cortex-task", "fail", first.task, "--claim", first.claim], directory).exitCode == 0)
        let second = try claim(directory)
        #expect(try run(["cortex-task", "complete", second.task, "--claim", second.claim], directory).exitCode == 0)
        for result in [waiter.wait(), allWaiter.wait()] {
            #expect(result.exitCode == 1, "\(result)")
            #expect(result.stderrLines.count == 1 && result.stderr.contains("\(doomed) dead") && !result.stderr.contains(fine), "\(result)")
        }
        // Already finished: answered at once, the same way.
        #expect(try run(["cortex-task", "wait", fine], directory).exitCode == 0)
        #expect(try run(["cortex-task", "wait", doomed], directory).exitCode == 1)
    }

    @Test func waitTimesOutWith75AndRefusesUnknownIdsWith66() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let pending = try create(directory)
        let timedOut = try run(["cortex-task", "wait", pending, "--timeout", "1s"], directory)
        #expect(timedOut.exitCode == 75, "\(timedOut)")
        #expect(timedOut.stderrLines.count == 1 && timedOut.stderr.contains("1 pending"), "\(timedOut)")
        #expect(!timedOut.stderr.contains("wait: 0 done"), "the line says it once: \(timedOut)")
        let typeTimedOut = try run(["cortex-task", "wait", "--type", "work", "--timeout", "1s"], directory)
        #expect(typeTimedOut.exitCode == 75, "\(typeTimedOut)")
        let unknown = try run(["cortex-task", "wait", pending, "no-such-task", "--timeout", "10s"], directory)
        #expect(unknown.exitCode == 66 && unknown.stderr.contains("no-such-task"), "\(unknown)")
        // Nothing of a type to wait for: done at once.
        #expect(try run(["cortex-task", "wait", "--type", "other"], directory).exitCode == 0)
        #expect(try run(["cortex-task", "wait"], directory).exitCode == 64)
        #expect(try run(["cortex-task", "wait", "--all", "--type", "work"], directory).exitCode == 64)
    }

    /// `cortex-budget allocate --wait D` sleeps until a release makes room and then holds the
    /// tokens (exit 0, the id); 75 when D passes; 1 at once when they can never fit this period.
    /// While it waits it appends nothing: waiters do not wake each other with refusals.
    @Test func allocateWaitsForARelease() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        let held = try run(["cortex-budget", "allocate", "--tokens", "80"], directory)
        #expect(held.exitCode == 0, "\(held)")
        let timedOut = try run(["cortex-budget", "allocate", "--tokens", "50", "--wait", "500ms"], directory)
        #expect(timedOut.exitCode == 75 && timedOut.stderrLines.count == 1, "\(timedOut)")
        #expect(timedOut.stderr.contains("20 of 100 available"), "\(timedOut)")
        let never = try run(["cortex-budget", "allocate", "--tokens", "101", "--wait", "1m"], directory)
        #expect(never.exitCode == 1 && never.stderr.contains("more than"), "\(never)")
        let journalLines = { () throws -> Int in
            try run(["cortex", "tail", "--lines", "1000"], directory).stdoutLines.count
        }
        let before = try journalLines()
        let waiter = try start(["cortex-budget", "allocate", "--tokens", "50", "--wait", "2m"], directory)
        #expect(waiter.waitUntilWatching(), "the waiter never started waiting")
        #expect(try journalLines() == before, "a waiting allocate appends nothing")
        let release = try run(["cortex-budget", "release", held.stdout.trimmingCharacters(in: .newlines), "--used", "0"], directory)
        #expect(release.exitCode == 0, "\(release)")
        let granted = waiter.wait()
        #expect(granted.exitCode == 0 && !granted.stdout.isEmpty, "\(granted)")
        let budget = try JSONValue.parse(try String(contentsOfFile: directory.coordination + "/token-budget.json", encoding: .utf8))
        #expect(budget.int("allocated") == 50, "\(budget.jsonText)")
    }

    /// A claim (waiting or not) on a folder that does not exist exits 66 like every other
    /// command, and creates nothing: it used to create the folder and wait on an empty queue.
    @Test func claimOnAMissingFolderExits66AndCreatesNothing() throws {
        let directory = try TemporaryDirectory()
        let missing = directory.scratch + "/no-such-folder"
        for extra in [[], ["--wait", "10s"]] {
            let claim = try runTool(["cortex-task", "claim", "--worker", "w-1", "--dir", missing] + extra, in: directory)
            #expect(claim.exitCode == 66 && claim.stderrLines.count == 1, "\(claim)")
            #expect(!FileManager.default.fileExists(atPath: missing), "the claim created \(missing)")
        }
    }

    @Test func waitDrawsOneProgressLineOnlyOnATerminal() throws {
        guard let script = executableOnPath("script") else {
            print("SKIPPED: waitDrawsOneProgressLineOnlyOnATerminal needs script(1) from util-linux for a pseudo-terminal")
            return
        }
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let task = try create(directory)
        let command = "\(toolPath("cortex-task")) wait \(task) --timeout 1s --dir \(directory.coordination)"
        let onTerminal = try runTool([script, "-qec", command, "/dev/null"], in: directory)
        #expect(onTerminal.exitCode == 75, "\(onTerminal)")
        #expect(onTerminal.stdout.contains("\r\u{1B}[Kwait: 0 done, 0 running, 1 pending, 0 dead"), "\(onTerminal)")
        let plain = try run(["cortex-task", "wait", task, "--timeout", "1s"], directory)
        #expect(plain.exitCode == 75 && !plain.stderr.contains("\u{1B}[K") && plain.stderrLines.count == 1, "\(plain)")
    }

    // MARK: cancel, retry, list

    @Test func bulkCancelByIdsAndByTypeIsIdempotent() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let first = try create(directory, type: "build")
        let second = try create(directory, type: "build")
        let third = try create(directory, type: "build")
        let running = try create(directory, type: "build")
        let other = try create(directory, type: "test")
        let done = try create(directory, type: "done-type")
        let finished = try claim(directory, type: "done-type")
        #expect(try run(["cortex-task", "complete", done, "--claim", finished.claim], directory).exitCode == 0)
        let cancelled = try run(["cortex-task", "cancel", first, second], directory)
        #expect(cancelled.exitCode == 0 && cancelled.stdoutLines.count == 2, "\(cancelled)")
        let again = try run(["cortex-task", "cancel", first, second], directory)
        #expect(again.exitCode == 0 && again.stdout.contains("already cancelled"), "\(again)")
        let unknown = try run(["cortex-task", "cancel", first, "no-such-task", "no-such-either"], directory)
        #expect(unknown.exitCode == 66 && unknown.stderrLines.count == 2, "\(unknown)")
        let refused = try run(["cortex-task", "cancel", done], directory)
        #expect(refused.exitCode == 1 && refused.stderrLines.count == 1, "\(refused)")
        #expect(try claim(directory, type: "build").task == third)
        _ = running
        // Only the pending ones of the type: the running one (third) stays.
        let byType = try run(["cortex-task", "cancel", "--type", "build", "--status", "pending", "--json"], directory)
        #expect(byType.exitCode == 0 && byType.json?["changed"] == .array([.string(running)]), "\(byType)")
        #expect(try status(third, directory) == "running")
        #expect(try status(other, directory) == "pending")
        let all = try run(["cortex-task", "cancel", "--type", "build"], directory)
        #expect(all.exitCode == 0 && all.stdout.contains(third), "\(all)")
        #expect(try status(third, directory) == "cancelled")
        #expect(try run(["cortex-task", "cancel", "--type", "build"], directory).exitCode == 0)
        // A finished status and a word that is no status: one message, one exit code (65).
        for word in ["done", "bogus"] {
            let bad = try run(["cortex-task", "cancel", "--type", "build", "--status", word], directory)
            #expect(bad.exitCode == 65 && bad.stderrLines.count == 1, "\(bad)")
            #expect(bad.stderr.contains("pending, failed or running"), "\(bad)")
        }
        #expect(try run(["cortex-task", "cancel", first, "--type", "build"], directory).exitCode == 64)
    }

    @Test func retryBringsDeadTasksBackUnderTheirIdsAndIsIdempotent() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let deadBuild = try makeDead(directory, type: "build")
        let deadTest = try makeDead(directory, type: "test")
        let pending = try create(directory, type: "build")
        // Compacted out of the snapshot into state/finished/: the CLI copies the spec from there.
        #expect(try run(["cortex-reap"], directory).exitCode == 0)
        let retried = try run(["cortex-task", "retry", deadBuild], directory)
        #expect(retried.exitCode == 0, "\(retried)")
        #expect(try status(deadBuild, directory) == "pending")
        let again = try run(["cortex-task", "retry", deadBuild, pending], directory)
        #expect(again.exitCode == 0 && again.stdout.contains("already pending"), "\(again)")
        // Fresh attempts: claim 1 again, and it may fail once more before it is dead again.
        let held = try claim(directory, type: "build")
        #expect(held.task == deadBuild && held.claim == "1", "\(held)")
        let notDead = try run(["cortex-task", "retry", deadBuild], directory)
        #expect(notDead.exitCode == 1 && notDead.stderr.contains("running"), "\(notDead)")
        #expect(try run(["cortex-task", "complete", deadBuild, "--claim", "1"], directory).exitCode == 0)
        #expect(try status(deadBuild, directory) == "done")
        let unknown = try run(["cortex-task", "retry", deadTest, "no-such-task"], directory)
        #expect(unknown.exitCode == 66 && unknown.stderrLines.count == 1, "\(unknown)")
        #expect(try status(deadTest, directory) == "pending", "the known id was retried")
        _ = try claim(directory, type: "test")
        #expect(try run(["cortex-task", "fail", deadTest, "--claim", "1", "--no-retry"], directory).exitCode == 0)
        let all = try run(["cortex-task", "retry", "--dead", "--json"], directory)
        #expect(all.exitCode == 0 && all.json?["changed"] == .array([.string(deadTest)]), "\(all)")
        let none = try run(["cortex-task", "retry", "--dead", "--json"], directory)
        #expect(none.exitCode == 0 && none.json?["changed"] == .array([]), "\(none)")
        let list = try run(["cortex-task", "list", "--json"], directory)
        let ids = list.json?["tasks"]?.arrayValue?.compactMap { $0.string("id") } ?? []
        #expect(ids.sorted() == [deadBuild, deadTest, pending].sorted(), "each task once: \(list)")
        #expect(try run(["cortex-task", "list", "--status", "dead", "--json"], directory).json?.int("count") == 0)
        let queue = try JSONValue.parse(try String(contentsOfFile: directory.coordination + "/task-queue.json", encoding: .utf8))
        #expect(queue["counts"]?.int("dead") ?? 0 == 0, "\(queue)")
        #expect(try run(["cortex-task", "retry"], directory).exitCode == 64)
    }

    @Test func listFiltersByType() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let deadBuild = try makeDead(directory, type: "build")
        let build = try create(directory, type: "build")
        _ = try create(directory, type: "test")
        let builds = try run(["cortex-task", "list", "--type", "build", "--json"], directory)
        let ids = builds.json?["tasks"]?.arrayValue?.compactMap { $0.string("id") } ?? []
        #expect(builds.exitCode == 0 && ids.sorted() == [build, deadBuild].sorted(), "\(builds)")
        let dead = try run(["cortex-task", "list", "--type", "build", "--status", "dead"], directory)
        #expect(dead.stdoutLines.count == 1 && dead.stdout.contains(deadBuild), "\(dead)")
        #expect(try run(["cortex-task", "list", "--type", "nothing"], directory).stdout.isEmpty)
    }

    /// With no live worker, `show` says so instead of an estimate (it used to say "starts in
    /// about 0s", counting `max_workers` as if every slot were a worker).
    @Test func showGivesNoStartTimeWithoutALiveWorker() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let first = try create(directory)
        let held = try claim(directory)
        #expect(held.task == first)
        _ = try run(["cortex-task", "complete", held.task, "--claim", held.claim], directory)
        let waiting = try create(directory)
        let shown = try run(["cortex-task", "show", waiting], directory)
        #expect(shown.exitCode == 0, "\(shown)")
        #expect(shown.stdout.contains("no live worker"), "\(shown)")
        #expect(!shown.stdout.contains("starts in about"), "\(shown)")
        let json = try run(["cortex-task", "show", waiting, "--json"], directory).json
        #expect(json?["wait"]?.int("live_workers") == 0, "\(String(describing: json))")

        // A claimer holding a task is a live worker: an estimate again.
        let busy = try create(directory)
        _ = try claim(directory, worker: "w-2")
        let again = try run(["cortex-task", "show", busy, "--json"], directory)
        #expect(again.json?["wait"]?.int("live_workers") == 1, "\(again)")

        // A claimer busy with another type cannot claim it: still no estimate for this type.
        let otherTask = try create(directory, type: "gpu")
        let forOther = try run(["cortex-task", "show", otherTask, "--json"], directory)
        #expect(forOther.json?["wait"]?.int("live_workers") == 0, "\(forOther)")
        #expect(try run(["cortex-task", "show", otherTask], directory).stdout.contains("no live worker of type gpu"))
    }

    // MARK: tail

    @Test func tailTaskShowsTheClaimAndTheDeadLetterASnapshotCovers() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let requeued = try create(directory, extra: ["--max-attempts", "1"])
        let held = try claim(directory)
        #expect(held.task == requeued)
        #expect(try run(["cortex-task", "fail", requeued, "--claim", held.claim], directory).exitCode == 0)
        #expect(try run(["cortex-reap"], directory).exitCode == 0)  // a snapshot past every record
        let tail = try run(["cortex", "tail", "--task", requeued], directory)
        #expect(tail.exitCode == 0, "\(tail)")
        let claimLine = tail.stdoutLines.first { $0.contains("task.claim") }
        #expect(claimLine?.contains("→ \(requeued) claim 1") == true, "\(tail)")
        #expect(tail.stdoutLines.contains { $0.contains("task.fail") && $0.hasSuffix("→ dead") }, "\(tail)")
        let claims = try run(["cortex", "tail", "--kind", "task.claim", "--json"], directory)
        #expect(claims.json?["outcome"]?.string("task") == requeued, "\(claims)")
    }

    @Test func tailTaskShowsTheRequeueOfALostWorkerASnapshotCovers() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let task = try create(directory)
        #expect(try claim(directory, worker: "w-gone").task == task)
        // Its heartbeat an hour old: the reaper declares the worker lost and the task goes back.
        let heartbeat = directory.coordination + "/workers/w-gone/heartbeat"
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: heartbeat)
        let reaped = try run(["cortex-reap"], directory)
        #expect(reaped.exitCode == 0, "\(reaped)")
        #expect(try status(task, directory) == "failed" || status(task, directory) == "pending")
        #expect(try run(["cortex-reap"], directory).exitCode == 0)  // a snapshot past the loss
        let tail = try run(["cortex", "tail", "--task", task], directory)
        #expect(tail.stdoutLines.contains { $0.contains("task.claim") && $0.contains("→ \(task) claim 1") }, "\(tail)")
        #expect(tail.stdoutLines.contains { $0.contains("worker.lost") && $0.contains("requeued \(task)") }, "\(tail)")
    }
}
