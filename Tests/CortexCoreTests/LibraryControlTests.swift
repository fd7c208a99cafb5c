import CortexProcesses
import Testing

@testable import CortexCore
@testable import CortexStorage

/// What the CLI used to do itself, done by a program that links only the library: stopping a
/// worker, stopping a pool, claiming a task with a wait, editing `config.json`.
@Suite struct LibraryControlTests {
    /// A store over a journal in memory holding pool `p`: `count` spawns (capacity for one
    /// running, so the rest queue).
    func poolStore(_ count: Int) throws -> (CoordinationStore, [String]) {
        var config = CortexConfig()
        config.maxWorkers = 1
        let store = try CoordinationStore.over(MemoryJournal(), config: config)
        var ids: [String] = []
        for _ in 0..<count {
            let spec = WorkerSpec(type: "build", command: ["true"], pool: "p")
            switch try store.submit(
                .worker(
                    .spawn(
                        spec, queue: true, evidence: MachineEvidence(cores: 2, loadMillis: 0, memoryAvailableBytes: 2 << 30, maxWorkers: 1))
                )
            ).outcome {
            case .spawned(let worker, _), .spawnQueued(let worker, _): ids.append(worker)
            case let other: throw CortexError.corrupt("spawn: \(other)")
            }
        }
        return (store, ids)
    }

    @Test func aWorkerIsStoppedThroughOneLibraryCall() throws {
        let (store, ids) = try poolStore(2)
        let stop = try WorkerSupervision.stop(ids[1], in: store)
        #expect(stop.changedAnything, "\(stop.submission.outcome)")
        #expect(!stop.signalled, "a queued worker has no supervisor to signal")
        #expect(store.state.workers.worker(ids[1])?.status.isFinal == true, "stopped while queued: it never runs")
        let again = try WorkerSupervision.stop("w-9.9", in: store)
        #expect(!again.changedAnything && !again.signalled)
    }

    @Test func aPoolIsStoppedThroughOneLibraryCall() throws {
        let (store, ids) = try poolStore(3)
        #expect(Pool.members("p", in: store.state).map(\.id) == ids)
        #expect(Pool.wanted("p", in: store.state) == 3)
        #expect(try Pool.stop("nope", graceMilliseconds: nil, waitMilliseconds: nil, in: store) == .unknown)
        guard case .stopped(let stopped) = try Pool.stop("p", graceMilliseconds: nil, waitMilliseconds: nil, in: store) else {
            Issue.record("pool p not stopped")
            return
        }
        #expect(Set(stopped) == Set(ids))
        #expect(Pool.wanted("p", in: store.state) == 0)
    }

    @Test func aClaimWaitsThroughOneLibraryCall() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination(CortexConfig())
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        let request = TaskClaim(worker: "w-lib", types: ["t"], capabilities: [])
        guard case .nothing = try store.claim(request, waitMilliseconds: nil) else {
            Issue.record("claimed from an empty queue")
            return
        }
        guard case .waitedInVain = try store.claim(request, waitMilliseconds: 20) else {
            Issue.record("claimed from an empty queue after a wait")
            return
        }
        #expect(store.layout.heartbeatAge("w-lib", nowMilliseconds: POSIX.wallClockMilliseconds()) != nil, "the claimer's heartbeat")
        guard case .created(let id, _) = try store.submit(.taskCreate(TaskSpec(type: "t"))).outcome else {
            Issue.record("not created")
            return
        }
        guard case .claimed(let task, let token, _) = try store.claim(request, waitMilliseconds: 1000) else {
            Issue.record("not claimed")
            return
        }
        #expect(task.id == id && token >= 1)
    }

    @Test func oneConfigKeyIsSetAndTheOthersKept() throws {
        let folder = try TemporaryDirectory()
        var config = CortexConfig()
        config.maxWorkers = 3
        let layout = try folder.coordination(config)
        try layout.updateConfig(key: "max_workers", value: .int(7))
        let reopened = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(reopened.config.maxWorkers == 7)
        #expect(reopened.config.heartbeatTimeoutMilliseconds == config.heartbeatTimeoutMilliseconds)
    }
}
