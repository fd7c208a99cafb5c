import CortexCore
import CortexProcesses
import CortexStorage
import Foundation
import Glibc
import Testing

/// `cortex-spawn` end to end: the built tools start real supervisors and workers, and the tests
/// watch them through `/proc`, the worker files, `cortex worker show` and `worker-pool.json`.
/// Serialized: several tests count processes or time a restart, and 2 noisy cores are enough
/// noise without the suite competing with itself.
@Suite("Spawn: supervised workers", .serialized, .timeLimit(.minutes(5)))
struct SpawnTests {
    // MARK: - Tokens

    @Test func tokensAreReservedBeforeTheWorkerStartsAndSettledWhenItEnds() throws {
        let sandbox = try SpawnSandbox(totalTokens: 1000)
        // The worker looks at the budget the moment it starts, then reports 120 tokens used.
        let script = #"""
            "$1/cortex-budget" status --json > "$2/seen-budget.json"
            printf '%s %s %s\n' "$CORTEX_ALLOCATION" "$CORTEX_TOKENS" "$CORTEX_WORKER_ID" > "$2/seen-env"
            echo 120 > "$CORTEX_DIR/workers/$CORTEX_WORKER_ID/tokens_used"
            """#
        let spawned = try sandbox.spawn(["--tokens", "300", "--", bashPath, "-c", script, "worker", toolsDirectory, sandbox.scratch])
        #expect(spawned.exitCode == 0, "\(spawned)")
        let first = spawned.stdout.trimmingCharacters(in: .newlines)
        #expect(JournalPosition(id: first, .worker) != nil, "\(spawned)")
        #expect(spawned.stderr.isEmpty, "\(spawned)")
        try sandbox.waitForStatus(first, "exited")

        // What the worker saw at its start: its reservation already held, in its name.
        let seenEnvironment = try String(contentsOfFile: sandbox.scratch + "/seen-env", encoding: .utf8)
        let reservation = WorkerState.allocationID(forWorker: first)
        #expect(seenEnvironment == "\(reservation) 300 \(first)\n")
        let seen = try JSONValue.parse(try String(contentsOfFile: sandbox.scratch + "/seen-budget.json", encoding: .utf8))
        #expect(seen.int("allocated") == 300, "\(seen.jsonText)")
        #expect(seen.int("available") == 700, "\(seen.jsonText)")
        let held = try #require(seen["allocations"]?.arrayValue, "\(seen.jsonText)")
        #expect(held.count == 1, "\(seen.jsonText)")
        #expect(held.first?.string("id") == reservation && held.first?.int("tokens") == 300, "\(seen.jsonText)")
        #expect(held.first?.string("holder") == first, "\(seen.jsonText)")

        // Settled at its end: nothing left reserved, spent as reported.
        let settled = try sandbox.budgetStatus()
        #expect(settled.int("allocated") == 0, "\(settled.jsonText)")
        #expect(settled.int("spent") == 120, "\(settled.jsonText)")
        #expect(settled.int("available") == 880, "\(settled.jsonText)")
        #expect(settled["allocations"]?.arrayValue?.isEmpty == true, "\(settled.jsonText)")
        let shown = try sandbox.show(first)
        #expect(shown["allocation"] == nil || shown["allocation"] == .null, "\(shown.jsonText)")
        #expect(shown["last_exit"]?.int("exit_code") == 0, "\(shown.jsonText)")
        #expect(try budgetView(sandbox.directory).int("spent") == 120, "token-budget.json agrees")

        // A worker that reports nothing: its whole reservation counts as spent.
        let silent = try sandbox.spawn(["--tokens", "200", "--", "true"])
        let second = silent.stdout.trimmingCharacters(in: .newlines)
        #expect(silent.exitCode == 0 && second != first && JournalPosition(id: second, .worker) != nil, "\(silent)")
        try sandbox.waitForStatus(second, "exited")
        let after = try sandbox.budgetStatus()
        #expect(after.int("allocated") == 0, "\(after.jsonText)")
        #expect(after.int("spent") == 320, "\(after.jsonText)")
        #expect(after.int("available") == 680, "\(after.jsonText)")
        try sandbox.expectNoProcessesLeft()
    }

    @Test func theSpawnRecordCarriesCPUPressureWhereTheKernelReportsItAndTheLimitFromConfig() throws {
        let sandbox = try SpawnSandbox()
        try updateConfig(sandbox.directory, ["max_cpu_pressure": .double(99.5)])
        let spawned = try sandbox.spawn(["--no-queue", "--", "true"])
        try #require(spawned.exitCode == 0, "\(spawned)")
        let fold = try foldJournal(sandbox.directory)
        let spawn = try #require(fold.records.first { $0.record.kind == "worker.spawn" })
        let evidence = try #require(spawn.record.data["evidence"])
        if access("/proc/pressure/cpu", R_OK) == 0 {
            let pressure = try #require(evidence["cpu_pressure_millis"]?.intValue, "\(evidence)")
            #expect((0...100_000).contains(pressure))
            #expect(evidence["max_cpu_pressure_millis"]?.intValue == 99_500)
        } else {
            #expect(evidence["cpu_pressure_millis"] == nil, "no PSI here: the load decides, as before")
        }
    }

    @Test func aReservationThatDoesNotFitStartsNothing() throws {
        let sandbox = try SpawnSandbox(totalTokens: 1000)
        let hold = try sandbox.tool(["cortex-budget", "allocate", "--dir", sandbox.root, "--tokens", "900"])
        try #require(hold.exitCode == 0, "\(hold)")
        let marker = sandbox.scratch + "/ran"
        let worker = ["--", bashPath, "-c", #"touch "$1""#, "worker", marker]

        // Over what is available, with --no-queue: refused.
        let refused = try sandbox.spawn(["--tokens", "200", "--no-queue"] + worker)
        #expect(refused.exitCode == 1, "\(refused)")
        #expect(refused.stdout.isEmpty, "no worker id for a refused spawn: \(refused)")
        #expect(refused.stderrLines.count == 1 && refused.stderr.contains("tokens"), "\(refused)")
        // More than the whole budget: refused even without --no-queue (it could never start).
        let tooBig = try sandbox.spawn(["--tokens", "2000"] + worker)
        #expect(tooBig.exitCode == 1, "\(tooBig)")
        #expect(tooBig.stdout.isEmpty && tooBig.stderrLines.count == 1, "\(tooBig)")

        // No worker was issued, no supervisor or worker process exists, no worker folder or log.
        let fold = try foldJournal(sandbox.directory)
        #expect(fold.state.workers.issued == 0)
        #expect(fold.state.workers.live.isEmpty)
        #expect(fold.state.budget.reserved == 900, "the held reservation is untouched")
        #expect(fold.state.budget.allocations.count == 1)
        #expect(sandbox.processes().isEmpty, "processes of this folder: \(sandbox.processes())")
        let workerFolders = (try? FileManager.default.contentsOfDirectory(atPath: sandbox.root + "/workers")) ?? []
        #expect(workerFolders.isEmpty, "worker folders: \(workerFolders)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the refused worker ran")
        let budget = try sandbox.budgetStatus()
        #expect(budget.int("allocated") == 900 && budget.int("spent") == 0, "\(budget.jsonText)")
    }

    @Test func aSpawnQueuedForTokensStartsWhenABudgetReleaseReturnsThem() throws {
        let sandbox = try SpawnSandbox(totalTokens: 1000)
        let hold = try sandbox.tool(["cortex-budget", "allocate", "--dir", sandbox.root, "--tokens", "900", "--json"])
        let allocation = try #require(hold.json?.string("allocation"), "\(hold)")
        let marker = sandbox.scratch + "/ran"
        let queued = try sandbox.spawn(["--tokens", "300", "--", bashPath, "-c", #"touch "$1""#, "worker", marker])
        #expect(queued.exitCode == 75, "queued for tokens: \(queued)")
        let worker = queued.stdout.trimmingCharacters(in: .newlines)
        #expect(JournalPosition(id: worker, .worker) != nil, "\(queued)")
        // Releasing with 100 used returns 800: the queued worker starts now, not at the next reaper run.
        let release = try sandbox.tool(["cortex-budget", "release", allocation, "--dir", sandbox.root, "--used", "100"])
        #expect(release.exitCode == 0, "\(release)")
        try sandbox.waitForStatus(worker, "exited")
        #expect(FileManager.default.fileExists(atPath: marker), "the worker ran")
        let budget = try sandbox.budgetStatus()
        #expect(budget.int("allocated") == 0 && budget.int("spent") == 400, "\(budget.jsonText)")
        // A release that returns nothing (all of it spent) appends no promotion.
        let second = try sandbox.tool(["cortex-budget", "allocate", "--dir", sandbox.root, "--tokens", "10", "--json"])
        let before = try foldJournal(sandbox.directory).records.count
        let spentAll = try sandbox.tool([
            "cortex-budget", "release", try #require(second.json?.string("allocation")), "--dir", sandbox.root,
        ])
        #expect(spentAll.exitCode == 0, "\(spentAll)")
        #expect(try foldJournal(sandbox.directory).records.count == before + 1, "only the release record")
        try sandbox.expectNoProcessesLeft()
    }

    // MARK: - Capacity under concurrency

    /// 50 `cortex-spawn` processes at once against `max_workers` 5: never more than 5 workers
    /// alive (sampled in /proc throughout), the rest queued (exit 75), and every one runs in the end.
    /// Invariants 2 and 4 for spawns: 30 concurrent `cortex-spawn --no-queue --tokens 100` against a
    /// budget of 1,000 with room for every worker: exactly 10 granted, never more than the budget
    /// at any point of the journal, and each caller's answer is what a fresh fold gives its record.
    @Test func concurrentSpawnsNeverOverReserveAndEachAnswerMatchesTheFold() throws {
        let sandbox = try SpawnSandbox(maxWorkers: 100, totalTokens: 1_000)
        let command = ["cortex-spawn", "--dir", sandbox.root, "--no-queue", "--tokens", "100", "--json", "--", "sleep", "5"]
        let results = try runConcurrently(Array(repeating: command, count: 30), in: sandbox.directory)
        let granted = results.filter { $0.exitCode == 0 }
        #expect(granted.count == 10, "\(results)")
        #expect(results.allSatisfy { $0.exitCode == 0 || $0.exitCode == 1 }, "\(results)")
        let fold = try foldJournal(sandbox.directory)
        #expect(fold.overAllocations.isEmpty, "\(fold.overAllocations)")
        // What each process printed is the fold's outcome for its own record.
        let printed = results.compactMap { $0.json?["workers"]?.arrayValue?.first }
        #expect(printed.count == 30)
        let folded = fold.records.filter { $0.record.kind == "worker.spawn" }.map(\.outcome.json)
        #expect(
            printed.filter { $0.string("outcome") == "spawned" }.compactMap { $0.string("worker") }.sorted()
                == folded.filter { $0.string("outcome") == "spawned" }.compactMap { $0.string("worker") }.sorted())
        #expect(printed.filter { $0.string("outcome") == "refused" }.count == folded.filter { $0.string("outcome") == "refused" }.count)
        #expect(fold.state.budget.reserved == 1_000)
        sandbox.killEverything()
    }

    @Test func fiftyConcurrentSpawnsNeverRunMoreThanMaxWorkersAndAllRunInTheEnd() throws {
        let sandbox = try SpawnSandbox(maxWorkers: 5)
        // Each worker writes "pid start_ticks started ended" (bash's own clock) when it is done.
        let script = #"""
            read -r -a stat < /proc/$$/stat
            started=$EPOCHREALTIME
            sleep 0.3
            echo "$$ ${stat[21]} $started $EPOCHREALTIME" > "$1/ran-$CORTEX_WORKER_ID.part"
            mv "$1/ran-$CORTEX_WORKER_ID.part" "$1/ran-$CORTEX_WORKER_ID"
            """#
        let markers = sandbox.path + "/markers"
        try FileManager.default.createDirectory(atPath: markers, withIntermediateDirectories: false)
        let command = ["cortex-spawn", "--dir", sandbox.root, "--", bashPath, "-c", script, "worker", markers]

        var gate: [Int32] = [-1, -1]
        try #require(pipe(&gate) == 0)
        var started: [RunningTool] = []
        for _ in 1...50 { started.append(try RunningTool(command, scratch: sandbox.scratch, barrier: gate[0])) }
        close(gate[1])
        close(gate[0])

        // Sample the workers alive until all 50 have run and the pool is idle.
        var mostAlive = 0
        var samples = 0
        var overfull: [Set<String>] = []
        let deadline = ContinuousClock.now + .seconds(150)
        while true {
            let alive = Set(sandbox.processes().compactMap(\.worker))
            samples += 1
            mostAlive = max(mostAlive, alive.count)
            if alive.count > 5 { overfull.append(alive) }
            let done =
                started.allSatisfy { !$0.isRunning }
                && ((try? FileManager.default.contentsOfDirectory(atPath: markers)) ?? []).filter { !$0.hasSuffix(".part") }.count
                    == 50
                && (try? sandbox.pool())?["counts"]?.int("exited") == 50
            if done { break }
            if ContinuousClock.now > deadline {
                Issue.record("not all 50 workers ran within 150 s")
                break
            }
            usleep(2_000)
        }
        let results = started.map { $0.wait() }

        #expect(overfull.isEmpty, "more than 5 workers alive at once (\(samples) samples): \(overfull.prefix(3))")
        #expect(mostAlive >= 1, "the sampler saw no worker at all in \(samples) samples")
        let exits = results.map(\.exitCode)
        #expect(exits.allSatisfy { $0 == 0 || $0 == 75 }, "\(results.filter { $0.exitCode != 0 && $0.exitCode != 75 })")
        // More than 5 may be granted at once: a worker of 0.3 s can end before the last call appends.
        #expect(exits.contains(0), "some spawns started at once")
        #expect(exits.contains(75), "some spawns were queued")
        for result in results where result.exitCode == 75 {
            #expect(result.stderrLines.count == 1 && result.stderr.contains("queued"), "\(result)")
        }
        let ids = results.map { $0.stdout.trimmingCharacters(in: .newlines) }
        #expect(Set(ids).count == 50 && ids.allSatisfy { JournalPosition(id: $0, .worker) != nil }, "every call printed its own worker id")

        // Every worker ran once, each as its own process; never more than 5 at once by their own clocks either.
        var intervals: [(start: Double, end: Double)] = []
        var pids = Set<String>()
        var identities: [ProcessIdentity] = []
        for id in ids {
            let line = try String(contentsOfFile: markers + "/ran-" + id, encoding: .utf8)
            let fields = line.split(separator: " ").map { String($0).trimmingCharacters(in: .newlines) }
            try #require(fields.count == 4, "marker of \(id): \(line)")
            pids.insert(fields[0])
            if let pid = Int32(fields[0]), let ticks = UInt64(fields[1]) { identities.append(ProcessIdentity(pid: pid, startTicks: ticks)) }
            intervals.append((try #require(Double(fields[2])), try #require(Double(fields[3]))))
        }
        #expect(pids.count == 50)
        var events: [(time: Double, change: Int)] = []
        for interval in intervals { events += [(interval.start, 1), (interval.end, -1)] }
        // At equal times an end comes before a start.
        events.sort { $0.time != $1.time ? $0.time < $1.time : $0.change < $1.change }
        var running = 0
        var mostRunning = 0
        for event in events {
            running += event.change
            mostRunning = max(mostRunning, running)
        }
        #expect(mostRunning <= 5, "the workers' own clocks show \(mostRunning) running at once")

        let pool = try sandbox.pool()
        #expect(pool["capacity"]?.int("running") == 0, "\(pool.jsonText)")
        #expect(pool["counts"]?.int("exited") == 50, "\(pool.jsonText)")
        #expect(pool["workers"]?.arrayValue?.isEmpty == true && pool["queued"]?.arrayValue?.isEmpty == true, "\(pool.jsonText)")
        let recent = pool["recent"]?.arrayValue ?? []
        #expect(recent.count == 50 && recent.allSatisfy { $0.int("exit_code") == 0 && $0.string("state") == "exited" })
        try sandbox.expectNoProcessesLeft(alsoChecking: identities)
    }

    // MARK: - Exits

    @Test func exitCodesAndSignalsAreRecordedAndNoZombieIsLeft() throws {
        let sandbox = try SpawnSandbox()
        let three = try sandbox.spawn(["--", bashPath, "-c", "exit 3"])
        // Through `cortex spawn`: its supervisor is started as `cortex spawn _supervise`.
        let nine = try sandbox.tool(["cortex", "spawn", "--dir", sandbox.root, "--", bashPath, "-c", "kill -9 $$"])
        let term = try sandbox.spawn(["--", bashPath, "-c", "kill -TERM $$"])
        for result in [three, nine, term] { try #require(result.exitCode == 0, "\(result)") }
        let printed = [three, nine, term].map { $0.stdout.trimmingCharacters(in: .newlines) }
        let expected: [(id: String, key: String, value: Int64)] = [
            (printed[0], "exit_code", 3), (printed[1], "signal", 9), (printed[2], "signal", 15),
        ]
        #expect(Set(printed).count == 3 && printed.allSatisfy { JournalPosition(id: $0, .worker) != nil }, "\(printed)")
        for worker in expected {
            try sandbox.waitForStatus(worker.id, "exited")
            let shown = try sandbox.show(worker.id)
            #expect(shown["last_exit"] == .object([JSONMember(worker.key, .int(worker.value))]), "\(shown.jsonText)")
            #expect(shown["restarts"]?.intValue == 0 && shown["timed_out"]?.boolValue == false, "\(shown.jsonText)")
        }
        let pool = try sandbox.pool()
        for worker in expected {
            let row = try #require(SpawnSandbox.row(worker.id, in: pool), "\(pool.jsonText)")
            #expect(row.int(worker.key) == worker.value, "\(row.jsonText)")
            #expect(row.string("state") == "exited", "\(row.jsonText)")
            #expect(row["exit_code"] == nil || row["signal"] == nil, "one of exit_code and signal: \(row.jsonText)")
        }
        #expect(pool["counts"]?.int("exited") == 3, "\(pool.jsonText)")
        let listed = try sandbox.tool(["cortex", "worker", "list", "--all", "--dir", sandbox.root])
        #expect(listed.stdout.contains("\(printed[0])  exited") && listed.stdout.contains("last exit 3"), "\(listed)")
        #expect(listed.stdout.contains("last signal 9"), "\(listed)")
        try sandbox.expectNoProcessesLeft()
    }

    // MARK: - A supervisor killed

    /// `kill -9` of a supervisor: nothing records the exit, so the worker stays `running` with
    /// the dead supervisor's identity, which a reaper can tell is gone (pid + start time). The
    /// orphaned worker keeps running in its own session and process group (pgid = its pid), now
    /// a child of init; its stdout pipe has no reader, so its next write kills it with SIGPIPE.
    /// Until then only its recorded identity can stop it, which is what the reaper does.
    @Test func aKilledSupervisorLeavesItsIdentityForAReaperAndItsWorkerRunsOnInItsOwnGroup() throws {
        let sandbox = try SpawnSandbox()
        let script = #"""
            while :; do
              sleep 0.1
              if [ -e "$1/speak-$CORTEX_WORKER_ID" ]; then echo hello; fi
            done
            """#
        var ids: [String] = []
        for _ in 1...2 {
            let spawned = try sandbox.spawn(["--", bashPath, "-c", script, "worker", sandbox.scratch])
            try #require(spawned.exitCode == 0, "\(spawned)")
            ids.append(spawned.stdout.trimmingCharacters(in: .newlines))
        }
        var supervisors: [String: ProcessIdentity] = [:]
        var workers: [String: ProcessIdentity] = [:]
        for id in ids {
            let shown = try sandbox.waitForStatus(id, "running")
            let supervisor = try #require(identity(shown, "supervisor"), "\(shown.jsonText)")
            let worker = try #require(identity(shown, "process"), "\(shown.jsonText)")
            #expect(worker.isAlive && supervisor.isAlive, "\(shown.jsonText)")
            supervisors[id] = supervisor
            workers[id] = worker
        }
        for (_, supervisor) in supervisors { #expect(kill(supervisor.pid, SIGKILL) == 0) }
        for (id, supervisor) in supervisors {
            try sandbox.waitUntil("the supervisor of \(id) is gone") { !ProcStat.exists(supervisor) }
        }

        for id in ids {
            let supervisor = try #require(supervisors[id])
            let worker = try #require(workers[id])
            // The record keeps the dead supervisor's identity; the identity check says it is gone.
            let shown = try sandbox.show(id)
            #expect(shown.string("status") == "running", "\(shown.jsonText)")
            let recorded = try #require(identity(shown, "supervisor"), "\(shown.jsonText)")
            #expect(recorded == supervisor)
            #expect(!recorded.isAlive, "a reaper must see the recorded supervisor as gone")
            #expect(identity(shown, "process") == worker, "\(shown.jsonText)")
            let row = try #require(SpawnSandbox.row(id, in: try sandbox.pool()))
            #expect(row.int("supervisor_pid") == Int64(supervisor.pid) && row.int("pid") == Int64(worker.pid), "\(row.jsonText)")
            // The orphan: alive, its own session and group leader, no longer the supervisor's child.
            let stat = try #require(ProcStat.read(worker.pid), "the orphaned worker \(id) is gone")
            #expect(worker.isAlive)
            #expect(stat.group == worker.pid && stat.session == worker.pid, "\(stat)")
            #expect(stat.parent != supervisor.pid, "\(stat)")
        }

        // The first writes to its stdout, whose only reader was the supervisor: SIGPIPE ends it.
        let speaker = try #require(workers[ids[0]])
        #expect(FileManager.default.createFile(atPath: sandbox.scratch + "/speak-\(ids[0])", contents: nil))
        try sandbox.waitUntil("the orphan that wrote to its dead pipe is gone") { !ProcStat.exists(speaker) }
        // The second is stopped the way a reaper would: SIGKILL to its group, only if pid and start time match.
        let silent = try #require(workers[ids[1]])
        #expect(silent.signalGroup(.kill), "the recorded identity still names the orphan")
        try sandbox.waitUntil("the orphan's group is gone") { ProcStat.all().allSatisfy { $0.group != silent.pid } }
        #expect(!silent.signalGroup(.kill), "a dead identity is never signalled")
        // Nothing recorded either end: that is left to the reaper.
        #expect(try sandbox.show(ids[0]).string("status") == "running")
        try sandbox.expectNoProcessesLeft()
    }

    // MARK: - Logs

    @Test func aWorkerWriting200MegabytesLeavesOnlyTheBoundedHeadAndTail() throws {
        let sandbox = try SpawnSandbox()
        let body = 200_000_000
        let script = #"""
            printf 'BEGIN\n'
            head -c "$1" /dev/zero | tr '\0' x
            printf '\nEND\n'
            head -c 5000000 /dev/zero | tr '\0' e >&2
            """#
        let spawned = try sandbox.spawn(["--log-head", "1K", "--log-tail", "2K", "--", bashPath, "-c", script, "worker", String(body)])
        try #require(spawned.exitCode == 0, "\(spawned)")
        let worker = spawned.stdout.trimmingCharacters(in: .newlines)
        let shown = try sandbox.waitForStatus(worker, "exited", timeoutSeconds: 150)
        #expect(shown["last_exit"]?.int("exit_code") == 0, "\(shown.jsonText)")

        let stdout = try Array(Data(contentsOf: URL(fileURLWithPath: sandbox.root + "/workers/\(worker)/stdout.log")))
        let total = 6 + body + 5
        let head = Array("BEGIN\n".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 1024 - 6)
        let marker = Array("\n[… \(total - 1024 - 2048) bytes omitted by cortex …]\n".utf8)
        let tail = [UInt8](repeating: UInt8(ascii: "x"), count: 2048 - 5) + Array("\nEND\n".utf8)
        #expect(stdout.count <= 1024 + 2048 + marker.count, "stdout.log is \(stdout.count) bytes")
        #expect(stdout == head + marker + tail, "stdout.log: \(String(decoding: stdout.prefix(40), as: UTF8.self))…")

        // stderr has the same bounds.
        let stderr = try Array(Data(contentsOf: URL(fileURLWithPath: sandbox.root + "/workers/\(worker)/stderr.log")))
        let stderrMarker = Array("\n[… \(5_000_000 - 1024 - 2048) bytes omitted by cortex …]\n".utf8)
        let e = UInt8(ascii: "e")
        #expect(stderr == [UInt8](repeating: e, count: 1024) + stderrMarker + [UInt8](repeating: e, count: 2048), "\(stderr.count) bytes")
    }

    // MARK: - Timeouts

    @Test func aTimeoutKillsTheWholeProcessGroupEvenWhenTermIsIgnored() throws {
        let sandbox = try SpawnSandbox()
        let script = #"""
            trap '' TERM
            echo $$ > "$1/worker.part" && mv "$1/worker.part" "$1/worker"
            sleep 1000 &
            echo $! > "$1/grandchild.part" && mv "$1/grandchild.part" "$1/grandchild"
            wait
            """#
        let spawned = try sandbox.spawn(["--timeout", "1s", "--grace", "1s", "--", bashPath, "-c", script, "worker", sandbox.scratch])
        try #require(spawned.exitCode == 0, "\(spawned)")
        // Their identities while they run (the timeout is 1 s away, the kill 2 s).
        var started: [String: ProcessIdentity?] = [:]
        try sandbox.waitUntil("the worker started its grandchild") { sandbox.lines("grandchild").count == 1 }
        for name in ["worker", "grandchild"] {
            started[name] = sandbox.lines(name).first.flatMap(Int32.init).flatMap { ProcessIdentity.of(pid: $0) }
        }
        let worker = spawned.stdout.trimmingCharacters(in: .newlines)
        let shown = try sandbox.waitForStatus(worker, "exited")
        #expect(shown["last_exit"] == .object([JSONMember("signal", .int(9))]), "\(shown.jsonText)")
        #expect(shown["timed_out"]?.boolValue == true, "\(shown.jsonText)")
        let row = try #require(SpawnSandbox.row(worker, in: try sandbox.pool()))
        #expect(row.int("signal") == 9 && row["timed_out"]?.boolValue == true, "\(row.jsonText)")

        // Both the worker and the grandchild it left in its group are gone (and reaped).
        var identities: [ProcessIdentity] = []
        for name in ["worker", "grandchild"] {
            let text = try String(contentsOfFile: sandbox.scratch + "/" + name, encoding: .utf8)
            _ = try #require(Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), "\(name): \(text)")
            if let identity = started[name] ?? nil { identities.append(identity) }
        }
        #expect(identities.count == 2, "both processes were seen alive before the timeout: \(started)")
        try sandbox.expectNoProcessesLeft(alsoChecking: identities)
    }

    // MARK: - Pools

    @Test func aKilledPoolMemberIsRestartedAndAStoppedOneDrainsAndStaysStopped() throws {
        let sandbox = try SpawnSandbox()
        let script = #"""
            echo $$ >> "$1/pids-$CORTEX_WORKER_ID"
            trap 'echo term >> "$1/term-$CORTEX_WORKER_ID"; exit 0' TERM
            while :; do sleep 0.1; done
            """#
        let spawned = try sandbox.spawn(["--pool", "2", "--restart", "always", "--", bashPath, "-c", script, "worker", sandbox.scratch])
        try #require(spawned.exitCode == 0, "\(spawned)")
        #expect(spawned.stdoutLines.count == 2 && Set(spawned.stdoutLines).count == 2, "\(spawned)")
        let (one, two) = (spawned.stdoutLines[0], spawned.stdoutLines[1])
        let first = try sandbox.waitForStatus(one, "running")
        try sandbox.waitForStatus(two, "running")
        let victim = try #require(identity(first, "process"), "\(first.jsonText)")
        let supervisor = try #require(identity(first, "supervisor"), "\(first.jsonText)")
        try #require(victim.isAlive)

        // kill -9 of the member's process: a new process for the same worker id, within 10 s.
        let killedAt = ContinuousClock.now
        #expect(kill(victim.pid, SIGKILL) == 0)
        let restarted = try sandbox.waitUntilShown(one, "restarted with a new pid") { shown in
            shown.string("status") == "running" && shown["process"]?.int("pid").map({ $0 != Int64(victim.pid) }) == true
        }
        let restartDelay = ContinuousClock.now - killedAt
        #expect(restartDelay < .seconds(10), "restarted after \(restartDelay)")
        #expect(restarted["restarts"]?.intValue == 1, "\(restarted.jsonText)")
        #expect(restarted["last_exit"] == .object([JSONMember("signal", .int(9))]), "\(restarted.jsonText)")
        #expect(identity(restarted, "supervisor") == supervisor, "the same supervisor restarts it")
        let replacement = try #require(identity(restarted, "process"))
        #expect(replacement.isAlive)
        try sandbox.waitUntil("the new process wrote its pid") { sandbox.lines("pids-\(one)").count == 2 }
        #expect(sandbox.lines("pids-\(one)") == [String(victim.pid), String(replacement.pid)])

        // `cortex worker stop`: SIGTERM reaches the worker (its trap runs), it ends `stopped`, no restart.
        let stop = try sandbox.tool(["cortex", "worker", "stop", one, "--dir", sandbox.root])
        #expect(stop.exitCode == 0 && stop.stdout == "\(one) stopping\n", "\(stop)")
        let stopped = try sandbox.waitForStatus(one, "stopped")
        #expect(sandbox.lines("term-\(one)") == ["term"], "the worker's TERM trap ran once")
        #expect(stopped["last_exit"]?.int("exit_code") == 0, "\(stopped.jsonText)")
        #expect(stopped["restarts"]?.intValue == 1, "\(stopped.jsonText)")
        try sandbox.waitUntil("\(one)'s supervisor is gone") { !ProcStat.exists(supervisor) }
        // With its supervisor gone nothing can start it again.
        #expect(sandbox.lines("pids-\(one)").count == 2, "restarted after a stop: \(sandbox.lines("pids-\(one)"))")
        #expect(!ProcStat.exists(replacement))
        let again = try sandbox.tool(["cortex", "worker", "stop", one, "--dir", sandbox.root])
        #expect(again.exitCode == 1 && again.stderrLines.count == 1, "a stopped worker cannot be stopped again: \(again)")

        // The other member was never disturbed.
        let other = try sandbox.show(two)
        #expect(other.string("status") == "running" && other["restarts"]?.intValue == 0, "\(other.jsonText)")
        let pool = try sandbox.pool()
        #expect(pool["capacity"]?.int("running") == 1, "\(pool.jsonText)")
        #expect(SpawnSandbox.row(one, in: pool)?.string("state") == "stopped", "\(pool.jsonText)")
        let stopOther = try sandbox.tool(["cortex", "worker", "stop", two, "--dir", sandbox.root])
        #expect(stopOther.exitCode == 0, "\(stopOther)")
        try sandbox.waitForStatus(two, "stopped")
        #expect(sandbox.lines("term-\(two)") == ["term"])
        try sandbox.expectNoProcessesLeft()
    }

    /// A SIGTERM to the supervisor of a crash-looping member (so almost surely during a restart
    /// backoff, with no `worker.stop` record) stops it for good: it ends `stopped` and its
    /// supervisor exits instead of recording SIGTERM exits for ever.
    @Test func aStopSignalToASupervisorBetweenRestartsStopsTheMember() throws {
        let sandbox = try SpawnSandbox()
        let spawned = try sandbox.spawn(["--pool", "1", "--restart", "on-failure", "--", bashPath, "-c", "exit 1"])
        try #require(spawned.exitCode == 0, "\(spawned)")
        let member = spawned.stdout.trimmingCharacters(in: .newlines)
        // From the third restart on the backoff is 2 s, then 4 s; a run lasts a few milliseconds.
        let looping = try sandbox.waitUntilShown(member, "restarted 3 times") { ($0["restarts"]?.intValue ?? 0) >= 3 }
        let supervisor = try #require(identity(looping, "supervisor"), "\(looping.jsonText)")
        #expect(kill(supervisor.pid, SIGTERM) == 0)
        let stopped = try sandbox.waitForStatus(member, "stopped")
        try sandbox.waitUntil("the supervisor is gone") { !ProcStat.exists(supervisor) }
        let exits = try foldJournal(sandbox.directory).records.filter { $0.record.kind == "worker.exited" }.count
        #expect(Int64(exits) == (stopped["restarts"]?.intValue ?? -1) + 1, "one exit per run: \(exits), \(stopped.jsonText)")
        try sandbox.expectNoProcessesLeft()
    }

    /// A stop that comes while the supervisor is still starting must end the worker as
    /// `stopped`: the supervisor must not die of the SIGTERM it is sent once it has claimed the
    /// worker, or the worker stays `stopping` for ever. The test sends SIGTERM the moment the
    /// claim (`worker.supervise`) is in the journal, as `cortex worker stop` would.
    @Test func aSupervisorSignalledRightAfterItClaimedItsWorkerStillStopsIt() throws {
        let sandbox = try SpawnSandbox(maxWorkers: 30)
        var ids: [String] = []
        for _ in 1...10 {
            let spawned = try sandbox.spawn(["--", "sleep", "600"])
            try #require(spawned.exitCode == 0, "\(spawned)")
            let id = spawned.stdout.trimmingCharacters(in: .newlines)
            ids.append(id)
            let supervisor = try sandbox.waitForClaim(of: id)
            #expect(kill(supervisor.pid, SIGTERM) == 0)
        }
        // And through `cortex worker stop`, right after each spawn.
        for _ in 1...10 {
            let spawned = try sandbox.spawn(["--", "sleep", "600"])
            try #require(spawned.exitCode == 0, "\(spawned)")
            let id = spawned.stdout.trimmingCharacters(in: .newlines)
            ids.append(id)
            let stop = try sandbox.tool(["cortex", "worker", "stop", id, "--dir", sandbox.root])
            #expect(stop.exitCode == 0, "\(stop)")
        }
        for id in ids { try sandbox.waitForStatus(id, "stopped") }
        try sandbox.expectNoProcessesLeft()
    }

    // MARK: - Foreground

    @Test func foregroundExitsWithTheWorkersExitCode() throws {
        let sandbox = try SpawnSandbox()
        let seven = try sandbox.spawn(["--foreground", "--", bashPath, "-c", "echo out; exit 7"])
        #expect(seven.exitCode == 7, "\(seven)")
        let killed = try sandbox.spawn(["--foreground", "--", bashPath, "-c", "kill -9 $$"])
        #expect(killed.exitCode == 137, "128 + SIGKILL: \(killed)")
        let zero = try sandbox.spawn(["--foreground", "--", "true"])
        #expect(zero.exitCode == 0, "\(zero)")
        // Recorded like any supervised worker.
        let workers = try foldJournal(sandbox.directory).records.compactMap { folded -> String? in
            if case .spawned(let worker, _) = folded.outcome { return worker }
            return nil
        }
        try #require(workers.count == 3, "\(workers)")
        #expect(try sandbox.show(workers[0])["last_exit"]?.int("exit_code") == 7)
        #expect(try sandbox.show(workers[1])["last_exit"]?.int("signal") == 9)
        #expect(try sandbox.show(workers[2]).string("status") == "exited")
        let log = try String(contentsOfFile: sandbox.root + "/workers/\(workers[0])/stdout.log", encoding: .utf8)
        #expect(log == "out\n")
        try sandbox.expectNoProcessesLeft()
    }

    // MARK: - Bad input

    static let badInput: [(label: String, arguments: [String], exitCode: Int32)] = [
        ("unknown restart policy", ["--restart", "sometimes", "--", "true"], 65),
        ("pool of 0", ["--pool", "0", "--", "true"], 65),
        ("pool of 1001", ["--pool", "1001", "--", "true"], 65),
        ("zero tokens", ["--tokens", "0", "--", "true"], 65),
        ("bad timeout", ["--timeout", "soon", "--", "true"], 65),
        ("bad log size", ["--log-head", "lots", "--", "true"], 65),
        ("missing command", [], 64),
        ("missing command after --", ["--"], 64),
        ("foreground pool", ["--pool", "2", "--foreground", "--", "true"], 64),
        ("unknown flag", ["--bogus", "--", "true"], 64),
    ]

    @Test(arguments: badInput.indices)
    func badInputGetsItsExitCodeAndOneStderrLineAndChangesNothing(_ index: Int) throws {
        let testCase = Self.badInput[index]
        let sandbox = try SpawnSandbox()
        let before = try folderContents(sandbox.root)
        let result = try sandbox.spawn(testCase.arguments)
        #expect(result.exitCode == testCase.exitCode, "\(testCase.label): \(result)")
        #expect(result.stderrLines.count == 1 && !result.stderr.hasPrefix("\n"), "\(testCase.label): \(result)")
        #expect(result.stdout.isEmpty, "\(testCase.label): \(result)")
        #expect(changedPaths(before, try folderContents(sandbox.root)) == [], "\(testCase.label) changed files")
        #expect(sandbox.processes().isEmpty)
    }
}

// MARK: - Support

/// A coordination folder for spawn tests, and the processes started in it. Going away, it
/// SIGKILLs every supervisor and worker process of the folder (and their groups), so a failed
/// test leaves nothing running.
final class SpawnSandbox {
    let directory: TemporaryDirectory
    /// The coordination folder's real path: what supervisors get as `--dir` and workers as `CORTEX_DIR`.
    let root: String

    init(maxWorkers: Int = 10, totalTokens: Int = 1_000_000) throws {
        directory = try TemporaryDirectory()
        let result = try runTool(
            [
                "cortex", "init", "--dir", directory.coordination, "--total-tokens", String(totalTokens), "--max-workers",
                String(maxWorkers),
            ], in: directory)
        try #require(result.exitCode == 0, "cortex init failed: \(result)")
        // A loaded 2-core machine must not make spawns wait for the load average.
        try updateConfig(directory, ["max_load_per_core": .int(1000), "max_cpu_pressure": .int(100)])
        guard let resolved = realpath(directory.coordination, nil) else { throw SupportError("realpath failed") }
        root = String(cString: resolved)
        free(resolved)
    }

    deinit { killEverything() }

    var path: String { directory.path }
    var scratch: String { directory.scratch }

    /// `cortex-spawn --dir ROOT ARGUMENTS…`, run to its end.
    func spawn(_ arguments: [String]) throws -> ToolResult { try tool(["cortex-spawn", "--dir", root] + arguments) }

    func tool(_ arguments: [String]) throws -> ToolResult { try runTool(arguments, in: directory) }

    /// `cortex worker show ID --json`.
    func show(_ id: String) throws -> JSONValue {
        let result = try tool(["cortex", "worker", "show", id, "--dir", root, "--json"])
        try #require(result.exitCode == 0, "\(result)")
        return try #require(result.json, "\(result)")
    }

    func budgetStatus() throws -> JSONValue {
        let result = try tool(["cortex-budget", "status", "--dir", root, "--json"])
        try #require(result.exitCode == 0, "\(result)")
        return try #require(result.json, "\(result)")
    }

    /// `worker-pool.json`.
    func pool() throws -> JSONValue { try JSONValue.parse(try String(contentsOfFile: root + "/worker-pool.json", encoding: .utf8)) }

    /// A worker's row in `worker-pool.json` (running, queued or recently ended).
    static func row(_ id: String, in pool: JSONValue) -> JSONValue? {
        for list in ["workers", "queued", "recent"] {
            if let row = pool[list]?.arrayValue?.first(where: { $0.string("id") == id }) { return row }
        }
        return nil
    }

    /// The lines of a file in the scratch folder ([] when it does not exist).
    func lines(_ name: String) -> [String] {
        ((try? String(contentsOfFile: scratch + "/" + name, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Polls `condition` every 50 ms for up to `timeoutSeconds` (a safety net, not a speed limit);
    /// records an issue and throws when it never holds.
    func waitUntil(_ what: @autoclosure () -> String, timeoutSeconds: Int = 30, _ condition: () throws -> Bool) throws {
        let deadline = ContinuousClock.now + .seconds(timeoutSeconds)
        while try !condition() {
            if ContinuousClock.now > deadline { throw SupportError("timed out after \(timeoutSeconds) s waiting until \(what())") }
            usleep(50_000)
        }
    }

    /// Polls `cortex worker show` until `condition` holds; returns what it showed last.
    @discardableResult
    func waitUntilShown(_ id: String, _ what: String, timeoutSeconds: Int = 30, _ condition: (JSONValue) -> Bool) throws -> JSONValue {
        var last = JSONValue.null
        try waitUntil("\(id) \(what) (last shown: \(last.jsonText))", timeoutSeconds: timeoutSeconds) {
            last = try show(id)
            return condition(last)
        }
        return last
    }

    @discardableResult
    func waitForStatus(_ id: String, _ status: String, timeoutSeconds: Int = 30) throws -> JSONValue {
        try waitUntilShown(id, "is \(status)", timeoutSeconds: timeoutSeconds) { $0.string("status") == status }
    }

    /// Waits until the journal has the `worker.supervise` record of worker `id` (read straight
    /// from the segment files, so it is seen within moments) and returns the supervisor in it.
    func waitForClaim(of id: String) throws -> ProcessIdentity {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            for segment in try segmentFiles(directory) {
                let bytes = (try? POSIX.readFile(root + "/journal/" + segment)) ?? []
                for line in bytes.split(separator: UInt8(ascii: "\n")) {
                    let text = String(decoding: line, as: UTF8.self)
                    guard text.contains("\"worker.supervise\""), let record = try? JSONValue.parse(text),
                        let data = record["data"], data.string("worker") == id, let supervisor = identity(data, "supervisor")
                    else { continue }
                    return supervisor
                }
            }
            usleep(200)
        }
        throw SupportError("no worker.supervise record for \(id) within 30 s")
    }

    /// Live processes of this folder: supervisors (`_supervise … --dir ROOT`) and workers with
    /// their descendants (`CORTEX_DIR=ROOT` in their environment). Zombies have neither.
    func processes() -> [ProcStat] { folderProcesses(root: root) }

    /// Waits until no process of this folder is left, and none that the journal ever recorded
    /// (supervisors and workers, by pid and start time) nor any of `identities` is alive or a zombie.
    func expectNoProcessesLeft(alsoChecking identities: [ProcessIdentity] = []) throws {
        var recorded = identities
        for folded in try foldJournal(directory).records where folded.record.kind.hasPrefix("worker.") {
            for key in ["supervisor", "process"] {
                if let identity = identity(folded.record.data, key) { recorded.append(identity) }
            }
        }
        try waitUntil("every supervisor and worker has ended and been reaped") {
            processes().isEmpty && recorded.allSatisfy { !ProcStat.exists($0) }
        }
        let zombies = ProcStat.all().filter { stat in
            stat.state == "Z" && recorded.contains { $0.pid == stat.pid && $0.startTicks == stat.startTicks }
        }
        #expect(zombies.isEmpty, "zombies: \(zombies)")
    }

    /// SIGKILL to every supervisor (first, so none restarts its worker), then to every worker's group.
    func killEverything() { killFolderProcesses(root: root) }
}

/// Live processes of the folder at `root`: supervisors (`_supervise … --dir ROOT`) and workers
/// with their descendants (`CORTEX_DIR=ROOT` in their environment). Zombies have neither.
func folderProcesses(root: String) -> [ProcStat] {
    ProcStat.all().compactMap { stat in
        var stat = stat
        if let worker = stat.cortexWorker(root: root) {
            stat.worker = worker
            return stat
        }
        let arguments = (try? POSIX.readFile("/proc/\(stat.pid)/cmdline")) ?? []
        let words = arguments.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return words.contains("_supervise") && words.contains(root) ? stat : nil
    }
}

/// SIGKILL to every supervisor of the folder at `root` (first, so none restarts its worker),
/// then to every worker's group, until none is left.
func killFolderProcesses(root: String) {
    for _ in 0..<200 {
        let left = folderProcesses(root: root)
        if left.isEmpty { return }
        for stat in left where stat.worker == nil { kill(stat.pid, SIGKILL) }
        for stat in left where stat.worker != nil {
            kill(-stat.group, SIGKILL)
            kill(stat.pid, SIGKILL)
        }
        usleep(50_000)
    }
}

/// The process identity `{pid, start_ticks}` under `key` of a worker as `cortex worker show --json` prints it.
func identity(_ worker: JSONValue, _ key: String) -> ProcessIdentity? {
    guard let json = worker[key] else { return nil }
    return ProcessIdentity(json: json)
}

/// A process as `/proc/<pid>/stat` shows it.
struct ProcStat: CustomStringConvertible {
    var pid: Int32
    /// R, S, D, Z, …
    var state: String
    var parent: Int32
    var group: Int32
    var session: Int32
    var startTicks: UInt64
    /// `CORTEX_WORKER_ID` when the process belongs to a worker of the sandbox being scanned.
    var worker: String?

    static func read(_ pid: Int32) -> ProcStat? {
        guard let bytes = try? POSIX.readFile("/proc/\(pid)/stat"), let close = bytes.lastIndex(of: UInt8(ascii: ")")) else {
            return nil
        }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        guard fields.count > 19, let parent = Int32(fields[1]), let group = Int32(fields[2]), let session = Int32(fields[3]),
            let ticks = UInt64(fields[19])
        else { return nil }
        return ProcStat(pid: pid, state: fields[0], parent: parent, group: group, session: session, startTicks: ticks)
    }

    /// Every process now.
    static func all() -> [ProcStat] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0).flatMap(read) }
    }

    /// True while `identity` names a process, zombie or not (a zombie is not yet reaped).
    static func exists(_ identity: ProcessIdentity) -> Bool { read(identity.pid)?.startTicks == identity.startTicks }

    /// The process's `CORTEX_WORKER_ID` if its environment has `CORTEX_DIR=root`, else nil.
    func cortexWorker(root: String) -> String? {
        guard let bytes = try? POSIX.readFile("/proc/\(pid)/environ") else { return nil }
        let entries = bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard entries.contains("CORTEX_DIR=" + root) else { return nil }
        return entries.first { $0.hasPrefix("CORTEX_WORKER_ID=") }.map { String($0.dropFirst("CORTEX_WORKER_ID=".count)) } ?? ""
    }

    var description: String { "pid \(pid) \(state) ppid \(parent) pgid \(group) sid \(session) start \(startTicks)" }
}
