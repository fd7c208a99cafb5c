import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// Issue 14 for a bash master: pools handled by name (`cortex pool list|stop|scale`), spawns
/// that never stall silently (refused at once when they can never fit, `cortex status` raising
/// attention when they wait too long), the reaper as a service, and a worker's logs and state in
/// words. Serialized: the tests count processes.
@Suite("Pools, stalls, logs", .serialized, .timeLimit(.minutes(3)))
struct PoolTests {
    /// The ids `cortex pool list --json` names as pool `name`'s members, and its row.
    func poolRow(_ sandbox: SpawnSandbox, _ name: String) throws -> JSONValue? {
        let listed = try sandbox.tool(["cortex", "pool", "list", "--dir", sandbox.root, "--json"])
        try #require(listed.exitCode == 0, "\(listed)")
        let json = try #require(listed.json, "\(listed)")
        return json["pools"]?.arrayValue?.first { $0.string("name") == name }
    }

    func memberIDs(_ row: JSONValue?) -> [String] { row?["members"]?.arrayValue?.compactMap(\.stringValue) ?? [] }

    @Test func poolStopLeavesNoMemberAndNoReplacementRunning() throws {
        let sandbox = try SpawnSandbox()
        let spawned = try sandbox.spawn(["--pool", "2", "--name", "sleepers", "--", "sleep", "1000"])
        #expect(spawned.exitCode == 0, "\(spawned)")
        let first = spawned.stdoutLines
        #expect(first.count == 2, "\(spawned)")
        let victim = try sandbox.waitUntilShown(first[0], "runs") { identity($0, "process") != nil }
        for member in first { try sandbox.waitUntilShown(member, "runs") { identity($0, "process") != nil } }
        // kill -9 of a member and its supervisor: the reaper declares it lost and spawns a
        // replacement under a new id the master never saw, in the same pool.
        let supervisor = try #require(identity(victim, "supervisor"))
        let process = try #require(identity(victim, "process"))
        kill(supervisor.pid, SIGKILL)
        kill(-process.pid, SIGKILL)
        var replacement: String?
        try sandbox.waitUntil("a replacement joins pool sleepers") {
            _ = try sandbox.tool(["cortex-reap", "--dir", sandbox.root])
            replacement = memberIDs(try poolRow(sandbox, "sleepers")).first { !first.contains($0) }
            return replacement != nil
        }
        let replaced = try #require(replacement)
        try sandbox.waitUntilShown(replaced, "runs") { identity($0, "process") != nil }

        let stopped = try sandbox.tool(["cortex", "pool", "stop", "sleepers", "--dir", sandbox.root, "--grace", "2s"])
        #expect(stopped.exitCode == 0, "\(stopped)")
        #expect(stopped.stdout.contains(replaced), "the replacement is stopped too: \(stopped)")
        #expect(stopped.stdout.contains(first[1]), "\(stopped)")
        try sandbox.expectNoProcessesLeft()
        // Nothing restarts or replaces them afterwards.
        _ = try sandbox.tool(["cortex-reap", "--dir", sandbox.root])
        #expect(try poolRow(sandbox, "sleepers") == nil)
        #expect(try sandbox.show(replaced).string("status") == "stopped")
        try sandbox.expectNoProcessesLeft()
        let again = try sandbox.tool(["cortex", "pool", "stop", "sleepers", "--dir", sandbox.root])
        #expect(again.exitCode == 1, "a pool that ended: a normal no. \(again)")
        let unknown = try sandbox.tool(["cortex", "pool", "stop", "nosuchpool", "--dir", sandbox.root])
        #expect(unknown.exitCode == 66, "\(unknown)")
    }

    /// `pool stop --wait` returns only once every member's end is folded and `worker-pool.json`
    /// shows it (a script reading the view next never sees the pool half stopped), and exit 75
    /// naming the members still live when they outlast the wait.
    @Test func poolStopWaitReturnsOnceTheViewShowsThePoolEnded() throws {
        let sandbox = try SpawnSandbox()
        let spawned = try sandbox.spawn(["--pool", "3", "--name", "sleepers", "--", "sleep", "1000"])
        #expect(spawned.exitCode == 0, "\(spawned)")
        for member in spawned.stdoutLines { try sandbox.waitUntilShown(member, "runs") { identity($0, "process") != nil } }
        let stopped = try sandbox.tool(["cortex", "pool", "stop", "sleepers", "--dir", sandbox.root, "--wait", "30s"])
        #expect(stopped.exitCode == 0, "\(stopped)")
        let view = try JSONValue.parse(try String(contentsOfFile: sandbox.root + "/worker-pool.json", encoding: .utf8))
        #expect(view["capacity"]?.int("running") == 0, "\(view.jsonText)")
        try sandbox.expectNoProcessesLeft()

        // A member that ignores SIGTERM, with a grace longer than the wait: 75, naming it.
        let stubborn = try sandbox.spawn([
            "--pool", "1", "--name", "stubborn", "--grace", "4s", "--", "bash", "-c", "trap '' TERM; sleep 1000",
        ])
        #expect(stubborn.exitCode == 0, "\(stubborn)")
        let member = try #require(stubborn.stdoutLines.first)
        try sandbox.waitUntilShown(member, "runs") { identity($0, "process") != nil }
        let late = try sandbox.tool(["cortex", "pool", "stop", "stubborn", "--dir", sandbox.root, "--wait", "1s"])
        #expect(late.exitCode == 75, "\(late)")
        #expect(late.stderr.contains(member), "\(late)")
        // Its supervisor SIGKILLs it after its 4 s grace; a second stop waits for that (exit 1:
        // nothing was left to stop, but it returns only once the member ended).
        let again = try sandbox.tool(["cortex", "pool", "stop", "stubborn", "--dir", sandbox.root, "--wait", "30s"])
        #expect(again.exitCode == 1, "\(again)")
        #expect(try sandbox.show(member).string("status") == "stopped", "\(again)")
        try sandbox.expectNoProcessesLeft()
    }

    /// A reaper killed between declaring a member lost and replacing it leaves a replacement owed:
    /// `pool stop` cancels it, so the next reaper starts nothing.
    @Test func poolStopCancelsAReplacementOwedButNotYetSpawned() throws {
        let sandbox = try SpawnSandbox()
        let spawned = try sandbox.spawn(["--pool", "1", "--name", "solo", "--", "sleep", "1000"])
        #expect(spawned.exitCode == 0, "\(spawned)")
        let id = spawned.stdout.trimmingCharacters(in: .newlines)
        let shown = try sandbox.waitUntilShown(id, "runs") { identity($0, "process") != nil }
        kill(try #require(identity(shown, "supervisor")).pid, SIGKILL)
        kill(-(try #require(identity(shown, "process")).pid), SIGKILL)
        let store = try CoordinationStore.open(root: sandbox.root, createIfMissing: false)
        _ = try store.submit(.workerLost(worker: id, reason: "test: the reaper was killed after this record"))
        #expect(store.state.workers.owedReplacements.map(\.worker) == [id])
        #expect(try poolRow(sandbox, "solo")?.int("wanted") == 1)

        let stopped = try sandbox.tool(["cortex", "pool", "stop", "solo", "--dir", sandbox.root])
        #expect(stopped.exitCode == 0 && stopped.stdout.contains(id), "\(stopped)")
        let reaped = try sandbox.tool(["cortex-reap", "--dir", sandbox.root, "--json"])
        #expect(reaped.json?["restarted"]?.arrayValue?.isEmpty == true, "\(reaped)")
        #expect(try foldJournal(sandbox.directory).state.workers.issued == 1, "no replacement was spawned")
        try sandbox.expectNoProcessesLeft()
    }

    @Test func poolListNamesMembersAndScaleGrowsAndShrinks() throws {
        let sandbox = try SpawnSandbox()
        let spawned = try sandbox.spawn(["--pool", "1", "--", "sleep", "1000"])
        #expect(spawned.exitCode == 0, "\(spawned)")
        // Without --name, a generated name, printed on stderr.
        let notice = try #require(spawned.stderrLines.first { $0.contains("pool ") }, "\(spawned)")
        let name = String(try #require(notice.split(separator: " ").last))
        #expect(name.hasPrefix("default-"), "\(spawned)")
        let row = try poolRow(sandbox, name)
        #expect(memberIDs(row) == spawned.stdoutLines, "\(String(describing: row?.jsonText))")
        #expect(row?.int("wanted") == 1 && row?.string("type") == "default", "\(String(describing: row?.jsonText))")
        let text = try sandbox.tool(["cortex", "pool", "list", "--dir", sandbox.root])
        #expect(text.exitCode == 0 && text.stdout.contains(name) && text.stdout.contains("of 1"), "\(text)")

        let grown = try sandbox.tool(["cortex", "pool", "scale", name, "3", "--dir", sandbox.root])
        #expect(grown.exitCode == 0, "\(grown)")
        #expect(grown.stdoutLines.count == 2, "\(grown)")
        for member in grown.stdoutLines {
            let shown = try sandbox.waitUntilShown(member, "runs") { identity($0, "process") != nil }
            #expect(shown["spec"]?.string("pool") == name, "\(shown.jsonText)")
        }
        #expect(try poolRow(sandbox, name)?.int("wanted") == 3)

        let shrunk = try sandbox.tool(["cortex", "pool", "scale", name, "1", "--dir", sandbox.root])
        #expect(shrunk.exitCode == 0, "\(shrunk)")
        // The newest go: the two it grew by, not the first member.
        #expect(Set(shrunk.stdoutLines.map { String($0.split(separator: " ")[0]) }) == Set(grown.stdoutLines), "\(shrunk)")
        for member in grown.stdoutLines { try sandbox.waitForStatus(member, "stopped") }
        #expect(memberIDs(try poolRow(sandbox, name)) == spawned.stdoutLines)
        let bad = try sandbox.tool(["cortex", "pool", "scale", name, "many", "--dir", sandbox.root])
        #expect(bad.exitCode == 65, "\(bad)")
        #expect(try sandbox.tool(["cortex", "pool", "stop", name, "--dir", sandbox.root]).exitCode == 0)
        try sandbox.expectNoProcessesLeft()
    }

    @Test func aSpawnThatCanNeverFitIsRefusedAtOnce() throws {
        let sandbox = try SpawnSandbox(maxWorkers: 3)
        let started = ContinuousClock.now
        let tooManyCores = try sandbox.spawn(["--cpu", "4096", "--", "sleep", "1000"])
        #expect(tooManyCores.exitCode == 1, "\(tooManyCores)")
        #expect(tooManyCores.stderr.contains("can never"), "\(tooManyCores)")
        let tooMuchMemory = try sandbox.spawn(["--memory", "64T", "--", "sleep", "1000"])
        #expect(tooMuchMemory.exitCode == 1 && tooMuchMemory.stderr.contains("memory"), "\(tooMuchMemory)")
        let tooManyWorkers = try sandbox.spawn(["--pool", "4", "--", "sleep", "1000"])
        #expect(tooManyWorkers.exitCode == 1 && tooManyWorkers.stderr.contains("max_workers"), "\(tooManyWorkers)")
        #expect(ContinuousClock.now - started < .seconds(10), "refused at once, not queued")
        let listed = try #require(try sandbox.tool(["cortex", "worker", "list", "--dir", sandbox.root, "--json"]).json)
        #expect(listed.int("queued") == 0 && listed["workers"]?.arrayValue?.isEmpty == true, "\(listed.jsonText)")
    }

    @Test func statusNeedsAttentionWhenSpawnsWaitPastTheAlarm() throws {
        let sandbox = try SpawnSandbox(maxWorkers: 1)
        try updateConfig(sandbox.directory, ["queued_spawn_alarm": .string("0s")])
        let running = try sandbox.spawn(["--", "sleep", "1000"])
        #expect(running.exitCode == 0, "\(running)")
        let queued = try sandbox.spawn(["--", "sleep", "1000"])
        #expect(queued.exitCode == 75, "\(queued)")
        let waiting = queued.stdout.trimmingCharacters(in: .newlines)
        var status = try sandbox.tool(["cortex", "status", "--dir", sandbox.root])
        try sandbox.waitUntil("status names the stalled spawn") {
            status = try sandbox.tool(["cortex", "status", "--dir", sandbox.root])
            return status.stderr.contains(waiting)
        }
        #expect(status.exitCode == 1, "\(status)")
        #expect(status.stderr.contains("queued longer than") && status.stderr.contains("pool full"), "\(status)")
        // The reason is the one recorded when it was queued: status says nothing judged it since.
        #expect(status.stderr.contains("no reaper has run since it was queued"), "\(status)")
        #expect(try sandbox.tool(["cortex-reap", "--dir", sandbox.root]).exitCode == 0)
        status = try sandbox.tool(["cortex", "status", "--dir", sandbox.root])
        #expect(status.exitCode == 1 && !status.stderr.contains("no reaper has run"), "\(status)")
        let stop = try sandbox.tool(["cortex", "worker", "stop", waiting, "--dir", sandbox.root])
        #expect(stop.exitCode == 0, "\(stop)")
        let stopAll = try sandbox.tool([
            "cortex", "worker", "stop", running.stdout.trimmingCharacters(in: .newlines), "--dir", sandbox.root,
        ])
        #expect(stopAll.exitCode == 0, "\(stopAll)")
        try sandbox.expectNoProcessesLeft()
    }

    /// A reaper run that can start nothing appends nothing (it used to append a `worker.promote`
    /// on every run while a spawn waited) and says what holds the queue.
    @Test func aReaperRunThatCanStartNothingAppendsNothingAndSaysWhatHoldsTheQueue() throws {
        let sandbox = try SpawnSandbox(maxWorkers: 1)
        let running = try sandbox.spawn(["--", "sleep", "1000"])
        #expect(running.exitCode == 0, "\(running)")
        let queued = try sandbox.spawn(["--", "sleep", "1000"])
        #expect(queued.exitCode == 75, "\(queued)")
        func promotes() throws -> Int { try foldJournal(sandbox.directory).records.filter { $0.record.kind == "worker.promote" }.count }
        let first = try sandbox.tool(["cortex-reap", "--dir", sandbox.root])
        #expect(first.exitCode == 0, "\(first)")
        #expect(first.stdout.contains("1 spawn still queued, held by pool full"), "\(first)")
        let before = try promotes()
        for _ in 1...3 { #expect(try sandbox.tool(["cortex-reap", "--dir", sandbox.root]).exitCode == 0) }
        #expect(try promotes() == before, "runs that started nothing appended promotes")
        let json = try #require(try sandbox.tool(["cortex-reap", "--dir", sandbox.root, "--json"]).json)
        #expect(json.int("queued") == 1, "\(json.jsonText)")
        // Room appears: the next run promotes and starts the queued spawn.
        let stop = try sandbox.tool(["cortex", "worker", "stop", running.stdout.trimmingCharacters(in: .newlines), "--dir", sandbox.root])
        #expect(stop.exitCode == 0, "\(stop)")
        try sandbox.waitUntil("the queued spawn starts") {
            _ = try sandbox.tool(["cortex-reap", "--dir", sandbox.root])
            return try sandbox.show(queued.stdout.trimmingCharacters(in: .newlines)).string("status") == "running"
        }
        _ = try sandbox.tool(["cortex", "worker", "stop", queued.stdout.trimmingCharacters(in: .newlines), "--dir", sandbox.root])
        try sandbox.expectNoProcessesLeft()
    }

    @Test func refusalsPrintSmallLimitsExactly() {
        #expect(Values.thousandths(20) == "0.02")
        #expect(Values.thousandths(3300) == "3.3")
        #expect(Values.thousandths(4000) == "4")
        #expect(Values.thousandths(5) == "0.005")
        #expect(Values.readableSize(100 << 40) == "100 TiB")
        #expect(Values.readableSize(512 << 20) == "512 MiB")
        #expect(Values.readableSize(1536 << 20) == "1.5 GiB")
        #expect(Values.readableSize(900) == "900 bytes")
    }

    @Test func workerLogsPrintWhatTheWorkerWroteAndFollowUntilItEnds() throws {
        let sandbox = try SpawnSandbox()
        let spawned = try sandbox.spawn(["--", bashPath, "-c", "echo out-line; echo err-line >&2"])
        let id = spawned.stdout.trimmingCharacters(in: .newlines)
        try sandbox.waitForStatus(id, "exited")
        let out = try sandbox.tool(["cortex", "worker", "logs", id, "--dir", sandbox.root])
        #expect(out.exitCode == 0 && out.stdout == "out-line\n", "\(out)")
        let err = try sandbox.tool(["cortex", "worker", "logs", id, "--stderr", "--dir", sandbox.root])
        #expect(err.exitCode == 0 && err.stdout == "err-line\n", "\(err)")

        // -f: what it writes while followed, until it ends.
        let slow = try sandbox.spawn([
            "--", bashPath, "-c", "echo first; while [ ! -e \"$0/release\" ]; do sleep 0.1; done; echo second", sandbox.scratch,
        ])
        let slowID = slow.stdout.trimmingCharacters(in: .newlines)
        let follower = try RunningTool(["cortex", "worker", "logs", slowID, "-f", "--dir", sandbox.root], scratch: sandbox.scratch)
        try sandbox.waitUntil("the follower printed the first line") { follower.stdoutSoFar().contains("first") }
        _ = FileManager.default.createFile(atPath: sandbox.scratch + "/release", contents: Data())
        let followed = follower.wait()
        #expect(followed.exitCode == 0 && followed.stdout == "first\nsecond\n", "\(followed)")
        let missing = try sandbox.tool(["cortex", "worker", "logs", "w-9.0", "--dir", sandbox.root])
        #expect(missing.exitCode == 66, "\(missing)")
    }

    /// A restart keeps the crashed run's logs as `*.previous.log` (`logs --previous`): the
    /// output before a crash is what one reads logs for.
    @Test func aRestartKeepsTheCrashedRunsLogAsThePreviousLog() throws {
        let sandbox = try SpawnSandbox()
        let script = "n=$(cat \"$0/runs\" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \"$0/runs\"; echo run $n; exec sleep 1000"
        let spawned = try sandbox.spawn(["--restart", "always", "--", bashPath, "-c", script, sandbox.scratch])
        let id = spawned.stdout.trimmingCharacters(in: .newlines)
        let first = try sandbox.waitUntilShown(id, "runs") { identity($0, "process") != nil }
        try sandbox.waitUntil("run 1 is in the log") {
            try sandbox.tool(["cortex", "worker", "logs", id, "--dir", sandbox.root]).stdout == "run 1\n"
        }
        let process = try #require(identity(first, "process"))
        kill(process.pid, SIGKILL)
        try sandbox.waitUntil("run 2 is in the log") {
            try sandbox.tool(["cortex", "worker", "logs", id, "--dir", sandbox.root]).stdout == "run 2\n"
        }
        let previous = try sandbox.tool(["cortex", "worker", "logs", id, "--previous", "--dir", sandbox.root])
        #expect(previous.exitCode == 0 && previous.stdout == "run 1\n", "\(previous)")
        _ = try sandbox.tool(["cortex", "worker", "stop", id, "--dir", sandbox.root])
        try sandbox.expectNoProcessesLeft()
    }

    @Test func workerShowSpeaksInWords() throws {
        let sandbox = try SpawnSandbox()
        let spawned = try sandbox.spawn(["--", "sleep", "1000"])
        let id = spawned.stdout.trimmingCharacters(in: .newlines)
        let running = try sandbox.waitUntilShown(id, "runs") { identity($0, "process") != nil }
        let process = try #require(identity(running, "process"))
        kill(-process.pid, SIGKILL)
        let ended = try sandbox.waitForStatus(id, "exited")
        #expect(ended["last_exit"]?.int("signal") == 9, "the JSON keeps its shape: \(ended.jsonText)")
        let shown = try sandbox.tool(["cortex", "worker", "show", id, "--dir", sandbox.root])
        #expect(shown.exitCode == 0, "\(shown)")
        #expect(shown.stdout.contains("killed by SIGKILL"), "\(shown)")
        #expect(shown.stdout.contains(" ago)"), "\(shown)")
        #expect(!shown.stdout.contains("null"), "\(shown)")
        #expect(shown.stdout.range(of: "[0-9]{13}", options: .regularExpression) == nil, "no epoch milliseconds: \(shown)")
    }

    @Test func reapEveryRunsUntilSIGTERM() throws {
        let sandbox = try SpawnSandbox()
        let service = try RunningTool(["cortex-reap", "--every", "1s", "--dir", sandbox.root], scratch: sandbox.scratch)
        try sandbox.waitUntil("two runs") { service.stdoutSoFar().components(separatedBy: "reaped").count > 2 }
        #expect(service.isRunning)
        service.kill(SIGTERM)
        let result = service.wait()
        #expect(result.exitCode == 0, "\(result)")
        let bad = try sandbox.tool(["cortex-reap", "--every", "soon", "--dir", sandbox.root])
        #expect(bad.exitCode == 65, "\(bad)")
    }

    /// The master's loop issue 14 asks for, with a real pool: `cortex-spawn --pool 2 --name`
    /// drains the queue, `cortex-task wait --all` returns 0 once it has, and `cortex pool stop`
    /// leaves no member running.
    @Test(.enabled(if: jqPath != nil, "jq is not installed: examples/task-worker.sh uses it"))
    func waitReturnsZeroOnceASpawnedPoolDrainsTheQueue() throws {
        let sandbox = try SpawnSandbox()
        for index in 1...6 {
            let created = try sandbox.tool([
                "cortex-task", "create", "--dir", sandbox.root, "--type", "demo", "--description", "echo \(index)",
            ])
            #expect(created.exitCode == 0, "\(created)")
        }
        let pool = try sandbox.spawn([
            "--pool", "2", "--name", "drain", "--type", "demo", "--", bashPath, "-c",
            "PATH=\"$0:$PATH\" exec \"$1\" \"$2\"", toolsDirectory, bashPath, packageRoot + "/examples/task-worker.sh",
        ])
        #expect(pool.exitCode == 0 && pool.stdoutLines.count == 2, "\(pool)")
        let waited = try sandbox.tool(["cortex-task", "wait", "--all", "--timeout", "2m", "--dir", sandbox.root])
        #expect(waited.exitCode == 0, "\(waited)")
        // What the journal says (the view may still be on its way from the last completing worker).
        let done = try sandbox.tool(["cortex-task", "list", "--status", "done", "--type", "demo", "--dir", sandbox.root])
        #expect(done.exitCode == 0 && done.stdoutLines.count == 6, "\(done)")
        let stopped = try sandbox.tool(["cortex", "pool", "stop", "drain", "--wait", "30s", "--dir", sandbox.root])
        #expect(stopped.exitCode == 0, "\(stopped)")
        try sandbox.expectNoProcessesLeft()
    }

    /// `cortex-reap --every` as a service holds the same descriptors run after run: each run's
    /// store is let go when it ends (it kept every run's, ~11 descriptors a run, until the
    /// service could open nothing and reaped no more). `500ms` is a duration, as docs/cli.md says.
    @Test func reapEveryHoldsNoMoreDescriptorsAfterManyRuns() throws {
        let sandbox = try SpawnSandbox()
        let service = try RunningTool(["cortex-reap", "--every", "100ms", "--dir", sandbox.root], scratch: sandbox.scratch)
        func runs() -> Int { service.stdoutSoFar().components(separatedBy: "reaped").count - 1 }
        func descriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(service.pid)/fd").count) ?? -1 }
        try sandbox.waitUntil("three runs") { runs() >= 3 }
        let early = descriptors()
        let earlyRuns = runs()
        try sandbox.waitUntil("twenty more runs") { runs() >= earlyRuns + 20 }
        let late = descriptors()
        #expect(early > 0 && late <= early + 2, "descriptors went from \(early) to \(late) over \(runs() - earlyRuns) runs")
        service.kill(SIGTERM)
        #expect(service.wait().exitCode == 0)
        let halfSecond = try sandbox.tool(["cortex-reap", "--every", "500ms", "--dir", sandbox.root, "--help"])
        #expect(halfSecond.exitCode == 0, "\(halfSecond)")
    }

    /// `cortex worker logs -f` follows a worker that runs on: Ctrl-C (SIGINT) or SIGTERM ends
    /// it with exit 0 (both were swallowed), it holds no more descriptors as it polls (a
    /// follower that opened a store per poll ran out of them and then exited 0 as if the worker
    /// had ended), and it follows the worker across a restart, saying so once.
    @Test func workerLogsFollowEndsOnSignalsKeepsItsDescriptorsAndFollowsARestart() throws {
        let sandbox = try SpawnSandbox()
        let script = "n=$(cat \"$0/runs\" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \"$0/runs\"; echo run $n; exec sleep 1000"
        let spawned = try sandbox.spawn(["--restart", "always", "--", bashPath, "-c", script, sandbox.scratch])
        let id = spawned.stdout.trimmingCharacters(in: .newlines)
        let first = try sandbox.waitUntilShown(id, "runs") { identity($0, "process") != nil }
        for signal in [SIGINT, SIGTERM] {
            let follower = try RunningTool(["cortex", "worker", "logs", id, "-f", "--dir", sandbox.root], scratch: sandbox.scratch)
            try sandbox.waitUntil("the follower printed run 1") { follower.stdoutSoFar().contains("run 1") }
            follower.kill(signal)
            let ended = follower.wait()
            #expect(ended.exitCode == 0, "signal \(signal): \(ended)")
        }
        let follower = try RunningTool(["cortex", "worker", "logs", id, "-f", "--dir", sandbox.root], scratch: sandbox.scratch)
        func descriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(follower.pid)/fd").count) ?? -1 }
        try sandbox.waitUntil("the follower printed run 1") { follower.stdoutSoFar().contains("run 1") }
        let early = descriptors()
        usleep(3_500_000)  // about ten polls (one every 300 ms)
        let late = descriptors()
        #expect(early > 0 && late <= early + 2, "descriptors went from \(early) to \(late)")
        let process = try #require(identity(first, "process"))
        kill(process.pid, SIGKILL)
        try sandbox.waitUntil("the follower printed run 2") { follower.stdoutSoFar().contains("run 2") }
        #expect(follower.isRunning, "a restart does not end the follow")
        follower.kill(SIGTERM)
        let followed = follower.wait()
        #expect(followed.exitCode == 0, "\(followed)")
        #expect(followed.stdout.hasPrefix("run 1\n") && followed.stdout.hasSuffix("run 2\n"), "\(followed)")
        #expect(followed.stdout.components(separatedBy: "run 1").count == 2, "run 1 printed once: \(followed)")
        _ = try sandbox.tool(["cortex", "worker", "stop", id, "--dir", sandbox.root])
        try sandbox.expectNoProcessesLeft()
    }

    /// A tenant's worker limit (`cortex-budget quota --max-workers`, decision 041): its second
    /// spawn waits (exit 75 naming the quota) while another tenant's starts, and starts when the
    /// first one ends.
    @Test func aTenantAtItsWorkerLimitWaitsWhileAnotherTenantStarts() throws {
        let sandbox = try SpawnSandbox()
        let quota = try sandbox.tool(["cortex-budget", "quota", "--dir", sandbox.root, "--tenant", "acme", "--max-workers", "1"])
        #expect(quota.exitCode == 0, "\(quota)")
        let first = try sandbox.spawn(["--tenant", "acme", "--", "sleep", "1000"])
        #expect(first.exitCode == 0, "\(first)")
        let held = try sandbox.spawn(["--tenant", "acme", "--", "sleep", "1000"])
        #expect(held.exitCode == 75 && held.stderr.contains("tenant acme quota: 1 of 1 workers running"), "\(held)")
        let other = try sandbox.spawn(["--tenant", "globex", "--", "sleep", "1000"])
        #expect(other.exitCode == 0, "another tenant starts: \(other)")
        let status = try sandbox.tool(["cortex-budget", "status", "--dir", sandbox.root, "--json"])
        #expect(status.json?["tenant_workers"]?["acme"]?.int("max_workers") == 1, "\(status)")
        #expect(status.json?["tenant_workers"]?["acme"]?["held"]?.int("running") == 1, "\(status)")
        let refused = try sandbox.tool(["cortex-budget", "quota", "--dir", sandbox.root, "--tenant", "acme", "--max-workers", "many"])
        #expect([64, 65].contains(refused.exitCode) && refused.stderrLines.count == 1, "\(refused)")
        // A CPU quota beside it keeps the workers limit: the record holds the whole quota.
        let cpu = try sandbox.tool(["cortex-budget", "quota", "--dir", sandbox.root, "--tenant", "acme", "--cpu", "64"])
        #expect(cpu.exitCode == 0 && cpu.stdout.contains("acme  workers 1 of 1  cpu_millicores 0 of 64000"), "\(cpu)")

        // acme's first worker ends: the held spawn starts.
        let firstID = first.stdout.trimmingCharacters(in: .newlines)
        let heldID = held.stdout.trimmingCharacters(in: .newlines)
        #expect(try sandbox.tool(["cortex", "worker", "stop", firstID, "--dir", sandbox.root]).exitCode == 0)
        try sandbox.waitUntilShown(heldID, "runs") { identity($0, "process") != nil }
        for id in [heldID, other.stdout.trimmingCharacters(in: .newlines)] {
            #expect(try sandbox.tool(["cortex", "worker", "stop", id, "--dir", sandbox.root]).exitCode == 0)
            try sandbox.waitForStatus(id, "stopped")
        }
        try sandbox.expectNoProcessesLeft()
    }
}
