import CortexProcesses
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// The spawner's rules on the pure reducer: feasibility in journal order, the spawn queue,
/// restarts and settlement. No processes, no clock.
@Suite struct WorkerReducerTests {
    struct Fold {
        var state = CortexState()
        var time: Int64 = 1_000
        var next = 0
        var lastRecordID = ""

        @discardableResult
        mutating func apply(_ event: Event) -> Outcome {
            time += 1
            next += 1
            lastRecordID = "r\(next)"
            return Reducer.reduce(&state, record(event, at: time, id: lastRecordID))
        }

        mutating func spawn(
            _ spec: WorkerSpec = WorkerSpec(command: ["true"]), queue: Bool = true, evidence: MachineEvidence = .roomy
        ) -> Outcome {
            apply(.worker(.spawn(spec, queue: queue, evidence: evidence)))
        }

        /// Supervises, starts and ends worker `id` with `exit`.
        @discardableResult
        mutating func run(
            _ id: String, exit: TerminationStatus = .exited(0), tokensUsed: Int64? = nil, evidence: MachineEvidence = .roomy
        ) -> Outcome {
            let supervisor = ProcessIdentity(pid: 100, startTicks: 1)
            apply(.worker(.supervise(worker: id, supervisor: supervisor)))
            apply(.worker(.started(worker: id, supervisor: supervisor, process: ProcessIdentity(pid: 200, startTicks: 2))))
            return apply(
                .worker(
                    .exited(worker: id, supervisor: supervisor, exit: exit, timedOut: false, tokensUsed: tokensUsed, evidence: evidence)))
        }
    }

    @Test func capacityIsDecidedInJournalOrderAndTheRestQueueInOrder() {
        var fold = Fold()
        let small = MachineEvidence.roomy.withMaxWorkers(2)
        #expect(fold.spawn(evidence: small) == .spawned(worker: "w-1.0", allocation: nil))
        #expect(fold.state.workers.toLaunch(by: fold.lastRecordID).map(\.id) == ["w-1.0"])
        #expect(fold.spawn(evidence: small) == .spawned(worker: "w-1.1", allocation: nil))
        #expect(fold.spawn(evidence: small) == .spawnQueued(worker: "w-1.2", reason: "pool full: 2 of 2 workers running"))
        #expect(fold.spawn(evidence: small) == .spawnQueued(worker: "w-1.3", reason: "1 spawn queued ahead"))
        #expect(fold.spawn(queue: false, evidence: small) == .refused("2 spawns queued ahead"))
        #expect(fold.state.workers.issued == 4, "a refused spawn takes no id")
        // Limits come from each record's evidence (the writer's config.json), here the same.
        #expect(fold.run("w-1.0", evidence: small) == .workerExited(worker: "w-1.0", restarting: false))
        // The exit made room: the head of the queue starts, and the exit's writer launches it.
        #expect(fold.state.workers.live["w-1.2"]?.status == .starting)
        #expect(fold.state.workers.toLaunch(by: fold.lastRecordID).map(\.id) == ["w-1.2"])
        #expect(fold.state.workers.live["w-1.3"]?.status == .queued)
        #expect(fold.state.workers.active.count == 2)
    }

    @Test func typeLimitsCpuLoadAndMemoryAreJudgedFromTheEvidence() {
        var fold = Fold()
        var evidence = MachineEvidence.roomy
        evidence.typeLimits = ["gpu": 1]
        #expect(fold.spawn(WorkerSpec(type: "gpu", command: ["x"]), evidence: evidence) == .spawned(worker: "w-1.0", allocation: nil))
        #expect(
            fold.spawn(WorkerSpec(type: "gpu", command: ["x"]), queue: false, evidence: evidence)
                == .refused("type gpu full: 1 of 1 workers running"))
        #expect(fold.spawn(WorkerSpec(type: "cpu", command: ["x"]), evidence: evidence) == .spawned(worker: "w-1.2", allocation: nil))
        var cpu = WorkerSpec(command: ["x"])
        cpu.cpuMillicores = 1_500
        #expect(fold.spawn(cpu, evidence: .roomy) == .spawned(worker: "w-1.3", allocation: nil))
        #expect(fold.spawn(cpu, queue: false, evidence: .roomy) == .refused("CPU: 1.5 cores requested, 0.5 of 2 free"))
        var loaded = MachineEvidence.roomy
        loaded.loadMillis = 9_000
        #expect(fold.spawn(queue: false, evidence: loaded) == .refused("CPU: load 9 over 8 (2 cores)"))
        // Where the record carries CPU pressure, pressure is the gate and the load is not judged.
        loaded.cpuPressureMillis = 40_000
        #expect(fold.spawn(queue: false, evidence: loaded) == .spawned(worker: "w-1.6", allocation: nil))
        loaded.cpuPressureMillis = 97_250
        #expect(fold.spawn(queue: false, evidence: loaded) == .refused("CPU: pressure 97.25% over 95% (max_cpu_pressure)"))
        loaded.maxCPUPressureMillis = 100_000
        #expect(fold.spawn(queue: false, evidence: loaded) == .spawned(worker: "w-1.8", allocation: nil))
        var memory = WorkerSpec(command: ["x"])
        memory.memoryBytes = 3 << 30
        #expect(fold.spawn(memory, queue: false, evidence: .roomy) == .refused("memory: 3221225472 bytes requested, 2147483648 available"))
    }

    @Test func tokensAreReservedBeforeTheStartAndSettledAtTheEnd() {
        var fold = Fold()
        fold.apply(.budgetSet(total: 1_000))
        var spec = WorkerSpec(command: ["x"])
        spec.tokens = 600
        #expect(fold.spawn(spec) == .spawned(worker: "w-1.1", allocation: "alloc-1.1"))
        #expect(fold.state.budget.reserved == 600)
        #expect(fold.state.budget.allocations["alloc-1.1"]?.holder == "w-1.1")
        guard case .spawnQueued(_, let reason) = fold.spawn(spec) else {
            Issue.record("not queued")
            return
        }
        #expect(reason.hasPrefix("tokens: budget would be exceeded"))
        spec.tokens = 5_000
        #expect(fold.spawn(spec, queue: false) == .refused("5000 tokens requested, more than the whole budget (1000)"))
        fold.run("w-1.1", tokensUsed: 250)
        #expect(fold.state.budget.spent == 250)
        // The queued worker took the freed tokens when the first one ended.
        #expect(fold.state.workers.live["w-1.2"]?.status == .starting)
        #expect(fold.state.budget.reserved == 600)
        #expect(fold.state.budget.version == 4, "set, grant, settle + grant")
    }

    @Test func restartPoliciesAndStops() {
        var fold = Fold()
        var spec = WorkerSpec(command: ["x"])
        spec.restart = .onFailure
        _ = fold.spawn(spec)
        #expect(fold.run("w-1.0", exit: .signaled(.kill)) == .workerExited(worker: "w-1.0", restarting: true))
        #expect(fold.state.workers.live["w-1.0"]?.restarts == 1)
        #expect(fold.state.workers.live["w-1.0"]?.lastExit == .signaled(.kill))
        // The same supervisor keeps it: started again, then a clean exit ends it.
        let supervisor = ProcessIdentity(pid: 100, startTicks: 1)
        fold.apply(.worker(.started(worker: "w-1.0", supervisor: supervisor, process: ProcessIdentity(pid: 300, startTicks: 3))))
        #expect(
            fold.apply(
                .worker(
                    .exited(
                        worker: "w-1.0", supervisor: supervisor, exit: .exited(0), timedOut: false, tokensUsed: nil, evidence: .roomy)))
                == .workerExited(worker: "w-1.0", restarting: false))
        #expect(fold.state.workers.recent.last?.status == .exited)

        spec.restart = .always
        _ = fold.spawn(spec)
        fold.run("w-1.6")
        #expect(fold.state.workers.live["w-1.6"]?.status == .starting, "always restarts a clean exit too")
        #expect(fold.apply(.worker(.stop(worker: "w-1.6"))) == .stopping(worker: "w-1.6"))
        #expect(
            fold.apply(
                .worker(
                    .exited(
                        worker: "w-1.6", supervisor: supervisor, exit: .signaled(.terminate), timedOut: false, tokensUsed: nil,
                        evidence: .roomy)))
                == .workerExited(worker: "w-1.6", restarting: false))
        #expect(fold.state.workers.recent.last?.status == .stopped)
        #expect(fold.apply(.worker(.stop(worker: "w-1.6"))) == .refused("w-1.6 has already ended"))
        #expect(fold.apply(.worker(.stop(worker: "w-1.99"))) == .rejected("no worker w-1.99"))
    }

    @Test func onlyTheFirstSupervisorGetsAWorkerAndOnlyItMayReport() {
        var fold = Fold()
        _ = fold.spawn()
        let first = ProcessIdentity(pid: 10, startTicks: 1)
        let second = ProcessIdentity(pid: 11, startTicks: 1)
        #expect(fold.apply(.worker(.supervise(worker: "w-1.0", supervisor: first))) == .supervising(worker: "w-1.0"))
        #expect(fold.apply(.worker(.supervise(worker: "w-1.0", supervisor: second))) == .refused("w-1.0 is supervised by pid 10"))
        #expect(
            fold.apply(.worker(.started(worker: "w-1.0", supervisor: second, process: first)))
                == .refused("w-1.0 is not supervised by pid 11"))
    }

    @Test func aLostWorkerFreesItsPlaceAndTokensAndItsTasksGoBack() {
        var fold = Fold()
        fold.apply(.budgetSet(total: 100))
        var spec = WorkerSpec(command: ["x"])
        spec.tokens = 100
        _ = fold.spawn(spec)
        fold.apply(.taskCreate(TaskSpec(type: "t")))
        fold.apply(.taskClaim(TaskClaim(worker: "w-1.1")))
        #expect(fold.apply(.workerLost(worker: "w-1.1", reason: "supervisor gone")) == .requeued(tasks: ["task-1.2"]))
        #expect(fold.state.workers.live.isEmpty)
        #expect(fold.state.workers.recent.last?.status == .lost)
        #expect(fold.state.budget.reserved == 0)
        #expect(fold.state.tasks.counts[.failed] == 1)
    }

    /// The replacement a lost pool member is owed lives in the state, not in a reaper's memory:
    /// a reaper killed between `worker.lost` and the respawn leaves it to the next one, and two
    /// reapers replacing the same worker spawn one replacement.
    @Test func aLostPoolMemberIsOwedExactlyOneReplacement() throws {
        var fold = Fold()
        let pooled = WorkerSpec(type: "build", command: ["loop"], restart: .always)
        _ = fold.spawn(pooled)
        _ = fold.spawn(WorkerSpec(command: ["once"]))  // restart: never
        _ = fold.spawn(pooled)
        fold.apply(.worker(.supervise(worker: "w-1.0", supervisor: ProcessIdentity(pid: 100, startTicks: 1))))
        fold.apply(.worker(.stop(worker: "w-1.2")))  // stopping: its loss is not replaced
        for id in ["w-1.0", "w-1.1", "w-1.2"] { fold.apply(.workerLost(worker: id, reason: "supervisor gone")) }
        #expect(fold.state.workers.owedReplacements.map(\.worker) == ["w-1.0"])
        #expect(fold.state.workers.owedReplacements.first?.leftover == [ProcessIdentity(pid: 100, startTicks: 1)])
        #expect(fold.state.workers.owedReplacements.first?.spec == pooled)
        // Survives a snapshot (a later reaper loads it from there).
        let bytes = SnapshotCodec.encode(fold.state, position: .start, writtenAtMilliseconds: 0)
        #expect(try #require(SnapshotCodec.decode(ImmutableBytes(bytes))).0.workers == fold.state.workers)
        // A second loss record for the same worker owes nothing more.
        fold.apply(.workerLost(worker: "w-1.0", reason: "seen again"))
        #expect(fold.state.workers.owedReplacements.count == 1)
        // The first replace spawns it with the same spec; a second (another reaper) changes nothing.
        #expect(fold.apply(.worker(.replace(worker: "w-1.0", evidence: .roomy))) == .spawned(worker: "w-1.9", allocation: nil))
        #expect(fold.state.workers.live["w-1.9"]?.spec == pooled)
        #expect(fold.state.workers.owedReplacements.isEmpty)
        guard case .refused = fold.apply(.worker(.replace(worker: "w-1.0", evidence: .roomy))) else {
            Issue.record("a second replacement was not refused")
            return
        }
        guard case .refused = fold.apply(.worker(.replace(worker: "w-1.1", evidence: .roomy))) else {
            Issue.record("a worker that never restarts got a replacement")
            return
        }
        #expect(fold.state.workers.issued == 4)
        // Capacity still decides: with the pool full the replacement waits in the queue.
        fold.apply(.workerLost(worker: "w-1.9", reason: "gone"))
        _ = fold.spawn(evidence: MachineEvidence.roomy.withMaxWorkers(1))
        #expect(
            fold.apply(.worker(.replace(worker: "w-1.9", evidence: MachineEvidence.roomy.withMaxWorkers(1))))
                == .spawnQueued(worker: "w-1.14", reason: "pool full: 1 of 1 workers running"))
    }

    /// A pool member killed while it held a task is restarted under the same id with a fresh
    /// heartbeat, so the reaper never declares it lost: its exit must give the task back.
    @Test func aRunThatEndsHoldingTasksGivesThemBackAndTheLastAttemptDies() {
        var fold = Fold()
        var spec = WorkerSpec(command: ["x"])
        spec.restart = .always
        _ = fold.spawn(spec)
        _ = fold.spawn(WorkerSpec(command: ["y"]))
        fold.apply(.taskCreate(TaskSpec(type: "t", maxAttempts: 2)))
        fold.apply(.taskCreate(TaskSpec(type: "t", maxAttempts: 1)))
        fold.apply(.taskCreate(TaskSpec(type: "t")))
        let supervisor = ProcessIdentity(pid: 100, startTicks: 1)
        fold.apply(.worker(.supervise(worker: "w-1.0", supervisor: supervisor)))
        fold.apply(.worker(.started(worker: "w-1.0", supervisor: supervisor, process: ProcessIdentity(pid: 200, startTicks: 2))))
        #expect(fold.apply(.taskClaim(TaskClaim(worker: "w-1.0"))) == .claimed(task: "task-1.2", claim: 1))
        #expect(fold.apply(.taskClaim(TaskClaim(worker: "w-1.0"))) == .claimed(task: "task-1.3", claim: 1))
        #expect(fold.apply(.taskClaim(TaskClaim(worker: "w-1.1"))) == .claimed(task: "task-1.4", claim: 1))
        let version = fold.state.tasks.version
        let exit = fold.apply(
            .worker(
                .exited(
                    worker: "w-1.0", supervisor: supervisor, exit: .signaled(.kill), timedOut: false, tokensUsed: nil,
                    evidence: .roomy)))
        #expect(exit == .workerExited(worker: "w-1.0", restarting: true), "the supervisor still learns it restarts")
        #expect(fold.state.tasks.version == version + 1)
        #expect(fold.state.tasks.activeTask("task-1.2")?.status == .failed, "retried: attempts are left")
        #expect(fold.state.tasks.activeTask("task-1.3") == nil, "its only attempt is used up: dead")
        #expect(fold.state.tasks.finished.last?.status == .dead)
        #expect(fold.state.tasks.activeTask("task-1.4")?.worker == "w-1.1", "another worker's claim is untouched")
        // The dead run's late complete is fenced off.
        #expect(fold.apply(.taskComplete(task: "task-1.2", claim: 1, result: nil, tokensUsed: nil)) != .completed(task: "task-1.2"))
        // An exit that holds nothing changes no task.
        fold.apply(.worker(.started(worker: "w-1.0", supervisor: supervisor, process: ProcessIdentity(pid: 201, startTicks: 3))))
        let before = (fold.state.tasks.version, fold.state.tasks.counts)
        fold.apply(
            .worker(
                .exited(
                    worker: "w-1.0", supervisor: supervisor, exit: .exited(0), timedOut: false, tokensUsed: nil, evidence: .roomy)))
        #expect(fold.state.tasks.version == before.0 && fold.state.tasks.counts == before.1)
    }

    @Test func workerStateSurvivesItsSnapshotEncoding() throws {
        var fold = Fold()
        _ = fold.spawn(evidence: MachineEvidence.roomy.withMaxWorkers(1))
        _ = fold.spawn(evidence: MachineEvidence.roomy.withMaxWorkers(1))
        fold.run("w-1.0", exit: .exited(3))
        let bytes = SnapshotCodec.encode(fold.state, position: .start, writtenAtMilliseconds: 0)
        let decoded = try #require(SnapshotCodec.decode(ImmutableBytes(bytes))).0
        #expect(decoded.workers == fold.state.workers)
    }

    @Test func malformedWorkerRecordsAreRejected() {
        var state = CortexState()
        let bad: [Record] = [
            Record(id: "a", timeMilliseconds: 1, kind: "worker.spawn", data: .object(["spec": .object(["type": "t"])])),
            Record(id: "b", timeMilliseconds: 1, kind: "worker.started", data: .object(["worker": "w-1.0"])),
            Record(id: "c", timeMilliseconds: 1, kind: "worker.exited", data: .object(["worker": "w-1.0", "exit": .object([:])])),
            Record(id: "d", timeMilliseconds: 1, kind: "worker.promote", data: .object([:])),
        ]
        for item in bad {
            guard case .rejected = Reducer.reduce(&state, item) else {
                Issue.record("\(item.id) was not rejected")
                continue
            }
        }
        #expect(state.workers == WorkerState())
    }
}

extension MachineEvidence {
    /// Two cores, idle, 2 GiB free, 10 workers allowed.
    static let roomy = MachineEvidence(cores: 2, loadMillis: 0, memoryAvailableBytes: 2 << 30, maxWorkers: 10)

    func withMaxWorkers(_ count: Int64) -> MachineEvidence {
        var copy = self
        copy.maxWorkers = count
        return copy
    }
}

@Suite struct CPUPressureEvidenceTests {
    @Test func theProbeReadsSomeAvg10InThousandthsOfAPercent() {
        let text = Array("some avg10=97.25 avg60=6.37 avg300=15.60 total=4702377063\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n".utf8)
        #expect(SystemProbe.parseCPUPressureMillis(text) == 97_250)
        #expect(SystemProbe.parseCPUPressureMillis(Array("full avg10=1.00\n".utf8)) == nil)
        #expect(SystemProbe.parseCPUPressureMillis(Array("some avg10=nan\n".utf8)) == nil)
        #expect(SystemProbe.parseCPUPressureMillis(Array("some avg10=250.00\n".utf8)) == nil)
    }

    @Test func evidenceKeepsPressureThroughTheRecordAndOlderRecordsHaveNone() throws {
        var evidence = MachineEvidence(cores: 2, loadMillis: 9_000, memoryAvailableBytes: 1 << 30, maxWorkers: 4)
        #expect(MachineEvidence(json: evidence.json) == evidence)
        #expect(evidence.json["cpu_pressure_millis"] == nil)
        evidence.cpuPressureMillis = 12_500
        evidence.maxCPUPressureMillis = 80_000
        #expect(MachineEvidence(json: evidence.json) == evidence)
        var forged = evidence
        forged.cpuPressureMillis = 100_001
        #expect(MachineEvidence(json: forged.json) == nil)
    }

    @Test func configReadsMaxCPUPressureAsAPercentage() throws {
        #expect(try CortexConfig(json: .object(["max_cpu_pressure": .int(80)]), path: "c").maxCPUPressureMillis == 80_000)
        #expect(CortexConfig().maxCPUPressureMillis == 95_000)
        #expect(throws: CortexError.self) { try CortexConfig(json: .object(["max_cpu_pressure": .int(101)]), path: "c") }
        #expect(throws: CortexError.self) { try CortexConfig(json: .object(["max_cpu_pressure": .int(0)]), path: "c") }
    }
}
