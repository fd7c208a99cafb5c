import CortexCore
import CortexProcesses
import CortexStorage
import Foundation
import Testing

/// `cortex-reap` end to end: real supervisors, real `kill -9`, real processes that must or must
/// not be signalled.
@Suite(.serialized) struct ReapTests {
    /// A folder for worker tests: load never blocks a spawn on this noisy machine.
    func folder(maxWorkers: Int = 4) throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        try updateConfig(
            directory, ["max_workers": .int(Int64(maxWorkers)), "max_load_per_core": .int(1000), "max_cpu_pressure": .int(100)])
        return directory
    }

    func pool(_ directory: TemporaryDirectory) throws -> JSONValue {
        try JSONValue.parse(String(contentsOfFile: directory.coordination + "/worker-pool.json", encoding: .utf8))
    }

    /// Waits (at most `seconds`) until `condition` holds.
    func eventually(_ seconds: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }

    func running(_ directory: TemporaryDirectory) throws -> [JSONValue] {
        (try pool(directory)["workers"]?.arrayValue ?? []).filter { $0.string("state") == "running" && $0.int("pid") != nil }
    }

    /// Stops every worker and kills what is left of their groups.
    func cleanUp(_ directory: TemporaryDirectory) {
        guard let workers = try? pool(directory)["workers"]?.arrayValue else { return }
        for worker in workers {
            if let id = worker.string("id") {
                _ = try? runTool(["cortex", "worker", "stop", id, "--dir", directory.coordination], in: directory)
            }
            if let pid = worker.int("supervisor_pid") { kill(-Int32(pid), SIGKILL) }
            if let pid = worker.int("pid") { kill(-Int32(pid), SIGKILL) }
        }
    }

    func alive(_ pid: Int64) -> Bool { ProcessIdentity.of(pid: Int32(pid)) != nil }

    @Test func aKilledSupervisorIsReapedItsWorkerStoppedAndThePoolMemberRestarted() throws {
        let directory = try folder()
        defer { cleanUp(directory) }
        let spawned = try runTool(["cortex-spawn", "--dir", directory.coordination, "--pool", "2", "--", "sleep", "300"], in: directory)
        try #require(spawned.exitCode == 0, "\(spawned)")
        try #require(try eventually { try running(directory).count == 2 })
        let victim = try #require(try running(directory).first)
        let supervisor = try #require(victim.int("supervisor_pid"))
        let worker = try #require(victim.int("pid"))
        kill(Int32(supervisor), SIGKILL)
        #expect(eventually { !alive(supervisor) })

        let reaped = try runTool(["cortex-reap", "--dir", directory.coordination, "--json", "--grace", "2s"], in: directory)
        #expect(reaped.exitCode == 0, "\(reaped)")
        let report = try #require(reaped.json)
        #expect(report["lost"]?.arrayValue?.compactMap(\.stringValue) == [victim.string("id")!])
        #expect(report["signalled"]?.arrayValue?.compactMap(\.stringValue) == ["\(worker)"])
        #expect(report["restarted"]?.arrayValue?.count == 1)
        #expect(eventually { !alive(worker) }, "the orphaned worker's group was stopped")
        #expect(try eventually { try running(directory).count == 2 }, "the pool is whole again")
        let lost = try #require(try pool(directory)["recent"]?.arrayValue?.first { $0.string("id") == victim.string("id") })
        #expect(lost.string("state") == "lost")

        // A second run finds nothing more to do.
        let again = try runTool(["cortex-reap", "--dir", directory.coordination, "--json"], in: directory)
        #expect(again.json?["lost"]?.arrayValue?.isEmpty == true, "\(again)")
    }

    /// A reaper killed right after its `worker.lost` record (before it stopped the leftovers or
    /// spawned the replacement) leaves both to the next reaper: the replacement a pool member is
    /// owed is in the journal, and so are the identities of what is left of it.
    @Test func aReaperKilledAfterDeclaringALossLeavesTheReplacementToTheNextOne() throws {
        let directory = try folder()
        defer { cleanUp(directory) }
        let spawned = try runTool(
            ["cortex-spawn", "--dir", directory.coordination, "--pool", "1", "--", "sleep", "300"], in: directory)
        try #require(spawned.exitCode == 0, "\(spawned)")
        try #require(try eventually { try running(directory).count == 1 })
        let victim = try #require(try running(directory).first)
        let id = try #require(victim.string("id"))
        let supervisor = try #require(victim.int("supervisor_pid"))
        let worker = try #require(victim.int("pid"))
        // What the killed reaper managed to append: the loss, and nothing after it.
        let store = try CoordinationStore.open(root: directory.coordination, createIfMissing: false)
        _ = try store.submit(.workerLost(worker: id, reason: "test: the reaper was killed after this record"))
        #expect(store.state.workers.owedReplacements.map(\.worker) == [id])

        let next = try runTool(["cortex-reap", "--dir", directory.coordination, "--json", "--grace", "2s"], in: directory)
        #expect(next.exitCode == 0, "\(next)")
        #expect(next.json?["restarted"]?.arrayValue?.count == 1, "\(next)")
        #expect(eventually { !alive(worker) && !alive(supervisor) }, "what was left of the lost member was stopped")
        #expect(try eventually { try running(directory).count == 1 && running(directory).first?.string("id") != id })
        // Nothing is replaced twice.
        let again = try runTool(["cortex-reap", "--dir", directory.coordination, "--json"], in: directory)
        #expect(again.json?["restarted"]?.arrayValue?.isEmpty == true, "\(again)")
        let fold = try foldJournal(directory)
        #expect(fold.state.workers.owedReplacements.isEmpty)
        #expect(fold.state.workers.issued == 2, "one member, one replacement")
    }

    /// Supervisors touch the heartbeat every quarter of `heartbeat_timeout` (at most every 5 s):
    /// a short timeout must not find a healthy worker's heartbeat stale.
    @Test func aShortHeartbeatTimeoutNeverLosesAHealthyWorker() throws {
        let directory = try folder()
        defer { cleanUp(directory) }
        try updateConfig(directory, ["heartbeat_timeout": .string("1s")])
        let spawned = try runTool(["cortex-spawn", "--dir", directory.coordination, "--", "sleep", "300"], in: directory)
        try #require(spawned.exitCode == 0, "\(spawned)")
        try #require(try eventually { try running(directory).count == 1 })
        for _ in 0..<3 {
            usleep(900_000)
            let reaped = try runTool(["cortex-reap", "--dir", directory.coordination, "--json"], in: directory)
            #expect(reaped.exitCode == 0 && reaped.json?["lost"]?.arrayValue?.isEmpty == true, "\(reaped)")
        }
        #expect(try running(directory).count == 1)
    }

    /// Hung workers (supervisor stopped, heartbeat stale, worker ignoring SIGTERM) are all
    /// declared lost and their tasks given back first; then every leftover group gets SIGTERM at
    /// once and SIGKILL after one shared grace. One grace each (4 × 2 groups × 2 s) would be 16 s.
    @Test func hungWorkersAreStoppedWithinOneSharedGrace() throws {
        let directory = try folder(maxWorkers: 8)
        defer { cleanUp(directory) }
        let spawned = try runTool(
            ["cortex-spawn", "--dir", directory.coordination, "--pool", "4", "--", bashPath, "-c", "trap '' TERM; sleep 300"],
            in: directory)
        try #require(spawned.exitCode == 0, "\(spawned)")
        try #require(try eventually { try running(directory).count == 4 })
        let hung = try running(directory)
        for worker in hung {
            kill(Int32(worker.int("supervisor_pid")!), SIGSTOP)
            let beat = directory.coordination + "/workers/" + worker.string("id")! + "/heartbeat"
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: beat)
        }
        let started = ContinuousClock.now
        let reaped = try runTool(["cortex-reap", "--dir", directory.coordination, "--json", "--grace", "2s"], in: directory)
        let took = ContinuousClock.now - started
        #expect(reaped.exitCode == 0, "\(reaped)")
        #expect(reaped.json?["lost"]?.arrayValue?.count == 4, "\(reaped)")
        #expect(reaped.json?["signalled"]?.arrayValue?.count == 8, "each worker and its hung supervisor: \(reaped)")
        #expect(took < .seconds(8), "took \(took): the graces ran one after another")
        for worker in hung {
            #expect(eventually { !alive(worker.int("pid")!) && !alive(worker.int("supervisor_pid")!) }, "\(worker.jsonText)")
        }
    }

    @Test func aRecycledPidIsDeclaredLostAndNeverSignalled() throws {
        let directory = try folder()
        // A process of ours that merely has the recorded pid: its start time differs.
        let bystander = try RunningTool(["/bin/sleep", "60"], scratch: directory.scratch)
        defer { bystander.kill(SIGKILL) }
        let real = try #require(ProcessIdentity.of(pid: bystander.pid))
        let impostor = ProcessIdentity(pid: real.pid, startTicks: real.startTicks + 7)
        let store = try CoordinationStore.open(root: directory.coordination, createIfMissing: false)
        let evidence = MachineEvidence(cores: 2, loadMillis: 0, memoryAvailableBytes: 1 << 30, maxWorkers: 4)
        let spawned = try store.submit(.worker(.spawn(WorkerSpec(command: ["sleep", "1"]), queue: true, evidence: evidence)))
        guard case .spawned(let worker, _) = spawned.outcome else { throw SupportError("not spawned: \(spawned.outcome)") }
        _ = try store.submit(.worker(.supervise(worker: worker, supervisor: impostor)))
        _ = try store.submit(.worker(.started(worker: worker, supervisor: impostor, process: impostor)))
        try store.publish()

        let reaped = try runTool(["cortex-reap", "--dir", directory.coordination, "--json", "--grace", "1s"], in: directory)
        #expect(reaped.exitCode == 0, "\(reaped)")
        #expect(reaped.json?["lost"]?.arrayValue?.compactMap(\.stringValue) == [worker])
        #expect(reaped.json?["signalled"]?.arrayValue?.isEmpty == true, "a recycled pid must never be signalled")
        #expect(bystander.isRunning, "the process that reused the pid is untouched")
    }

    @Test func twoReapersAtOnceDoubleNothing() throws {
        let directory = try folder()
        defer { cleanUp(directory) }
        let spawned = try runTool(["cortex-spawn", "--dir", directory.coordination, "--pool", "3", "--", "sleep", "300"], in: directory)
        try #require(spawned.exitCode == 0, "\(spawned)")
        try #require(try eventually { try running(directory).count == 3 })
        let victims = Array(try running(directory).prefix(2))
        for victim in victims { kill(Int32(victim.int("supervisor_pid")!), SIGKILL) }
        #expect(eventually { victims.allSatisfy { !alive($0.int("supervisor_pid")!) } })
        // A claimer that vanished holding a task.
        _ = try runTool(["cortex-task", "create", "--dir", directory.coordination, "--type", "t"], in: directory)
        _ = try runTool(["cortex-task", "claim", "--dir", directory.coordination, "--worker", "ghost"], in: directory)
        let stale = directory.coordination + "/workers/ghost/heartbeat"
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: stale)

        let command = ["cortex-reap", "--dir", directory.coordination, "--json", "--grace", "2s"]
        let results = try runConcurrently([command, command], in: directory)
        for result in results { #expect(result.exitCode == 0, "\(result)") }
        let lost = results.flatMap { $0.json?["lost"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        #expect(lost.sorted() == (victims.map { $0.string("id")! } + ["ghost"]).sorted(), "each loss declared once: \(results)")
        let restarted = results.flatMap { $0.json?["restarted"]?.arrayValue ?? [] }
        #expect(restarted.count == 2, "each lost pool member restarted once")
        let requeued = results.flatMap { $0.json?["requeued"]?.arrayValue ?? [] }
        #expect(requeued.count == 1)
        #expect(try eventually { try running(directory).count == 3 }, "the pool is whole again, not larger")
        let fold = try foldJournal(directory)
        #expect(fold.state.workers.active.count == 3)
        #expect(fold.state.workers.endedCounts[.lost] == 2)
        // The same end state as one reaper: one spawn per lost pool member, the task back in the
        // queue once, and a third run finds nothing left to do.
        #expect(fold.records.filter { $0.record.kind == "worker.spawn" }.count == 3)
        let replacements = fold.records.filter {
            if case .spawned = $0.outcome { return $0.record.kind == "worker.replace" }
            return false
        }
        #expect(replacements.count == 2, "one replacement per lost member, whichever reaper appended it")
        #expect(fold.state.workers.issued == 3 + 2)
        #expect(fold.state.workers.owedReplacements.isEmpty)
        #expect(fold.state.tasks.counts[.failed] == 1 && fold.state.tasks.running.isEmpty)
        let third = try runTool(command, in: directory)
        #expect(third.exitCode == 0, "\(third)")
        for key in ["lost", "requeued", "restarted", "signalled", "launched"] {
            #expect(third.json?[key]?.arrayValue?.isEmpty == true, "\(key): \(third)")
        }
    }
}
