import Testing

@testable import CortexCore

/// Hosts sharing one journal, on the pure reducer (docs/decisions/037): capacity, queues,
/// replacements and losses judged per host; tokens shared; host names checked like host ids.
@Suite struct HostReducerTests {
    typealias Fold = WorkerReducerTests.Fold

    func spec(_ host: String?, restart: RestartPolicy = .never, tokens: Int64? = nil) -> WorkerSpec {
        var spec = WorkerSpec(command: ["sleep", "1000"], tokens: tokens, restart: restart)
        spec.host = host
        return spec
    }

    func evidence(_ host: String?, maxWorkers: Int64 = 1) -> MachineEvidence {
        var evidence = MachineEvidence.roomy.withMaxWorkers(maxWorkers)
        evidence.host = host
        return evidence
    }

    @Test func capacityAndQueuesArePerHostAndTokensAreShared() {
        var fold = Fold()
        fold.apply(.budgetSet(total: 100))
        #expect(fold.spawn(spec("a", tokens: 60), evidence: evidence("a")) == .spawned(worker: "w-1.1", allocation: "alloc-1.1"))
        // Host b has room of its own (max_workers 1 each) ...
        guard case .spawned(let onB, _) = fold.spawn(spec("b"), evidence: evidence("b")) else {
            Issue.record("host b's first worker must start")
            return
        }
        // ... but tokens are shared: 60 of 100 are held by host a's worker.
        #expect(
            fold.spawn(spec("c", tokens: 60), evidence: evidence("c"))
                == .spawnQueued(worker: "w-1.3", reason: "tokens: budget would be exceeded: 60 tokens requested, 40 of 100 available"))
        // A full host queues its own spawns; another host's queue holds nothing of its own.
        #expect(
            fold.spawn(spec("a"), evidence: evidence("a")) == .spawnQueued(worker: "w-1.4", reason: "pool full: 1 of 1 workers running"))
        #expect(
            fold.spawn(spec("b", restart: .always), evidence: evidence("b", maxWorkers: 2))
                != .spawnQueued(worker: "w-1.5", reason: "2 spawns queued ahead"))
        // A promotion read on host b starts none of host a's queue.
        fold.run(onB, evidence: evidence("b"))
        #expect(fold.state.workers.live["w-1.4"]?.status == .queued)
        #expect(fold.apply(.worker(.promote(evidence: evidence("b")))) == .promoted(workers: []))
        #expect(fold.state.workers.active(on: "a").map(\.id) == ["w-1.1"])
    }

    @Test func aSpawnJudgedByAnotherHostsEvidenceIsRejected() {
        var fold = Fold()
        guard case .rejected(let reason) = fold.spawn(spec("a"), evidence: evidence("b")) else {
            Issue.record("evidence read on host b must not judge a worker of host a")
            return
        }
        #expect(reason.contains("host a") && reason.contains("host b"))
        guard case .rejected = fold.spawn(spec(nil), evidence: evidence("b")) else {
            Issue.record("a worker of no host judged by a host's evidence")
            return
        }
        #expect(fold.state.workers.issued == 0)
    }

    @Test func aLostWorkerIsReplacedOnlyOnItsOwnHost() {
        var fold = Fold()
        guard case .spawned(let id, _) = fold.spawn(spec("b", restart: .always), evidence: evidence("b")) else {
            Issue.record("host b's worker must start")
            return
        }
        let lost = fold.apply(.workerLost(worker: id, reason: "host b is down", host: "b"))
        #expect(lost == .requeued(tasks: []))
        #expect(fold.state.workers.owedReplacements.map(\.worker) == [id])
        guard case .refused(let reason) = fold.apply(.worker(.replace(worker: id, evidence: evidence("a")))) else {
            Issue.record("host a must not replace host b's worker")
            return
        }
        #expect(reason.contains("host b"))
        #expect(fold.state.workers.owedReplacements.map(\.worker) == [id])
        guard case .spawned = fold.apply(.worker(.replace(worker: id, evidence: evidence("b")))) else {
            Issue.record("host b replaces its own worker")
            return
        }
    }

    /// One claimer id on two hosts: a loss named for one host gives back only what was claimed
    /// there, and ends no supervised worker of another host.
    @Test func aLossNamingAHostTouchesOnlyThatHost() {
        var fold = Fold()
        for _ in 0..<2 { fold.apply(.taskCreate(TaskSpec(type: "t"))) }
        guard case .claimed(let onA, _) = fold.apply(.taskClaim(TaskClaim(worker: "w-1", host: "a"))),
            case .claimed(let onB, _) = fold.apply(.taskClaim(TaskClaim(worker: "w-1", host: "b")))
        else {
            Issue.record("both claims must succeed")
            return
        }
        #expect(fold.apply(.workerLost(worker: "w-1", reason: "host b is down", host: "b")) == .requeued(tasks: [onB]))
        #expect(fold.state.tasks.running.map(\.id) == [onA])
        _ = fold.spawn(spec("a"), evidence: evidence("a"))
        let supervised = "w-1.5"
        #expect(fold.state.workers.live[supervised] != nil)
        _ = fold.apply(.workerLost(worker: supervised, reason: "host b is down", host: "b"))
        #expect(fold.state.workers.live[supervised] != nil, "a loss on host b ends no worker of host a")
    }

    /// A host name that is no host id makes the record malformed: skipped, never folded.
    @Test func aBadHostMakesTheRecordMalformed() {
        for bad: JSONValue in [.string(""), .string("a/b"), .int(3), .string(String(repeating: "h", count: 129))] {
            let claim = JSONValue.object(["worker": .string("w-1"), "host": bad])
            #expect(throws: EventDecodingError.self) { try Event.decode(kind: "task.claim", data: claim) }
            let lost = JSONValue.object(["worker": .string("w-1"), "reason": .string("x"), "host": bad])
            #expect(throws: EventDecodingError.self) { try Event.decode(kind: "worker.lost", data: lost) }
            var specJSON = WorkerSpec(command: ["true"]).json
            if case .object(var members) = specJSON {
                members.append(JSONMember("host", bad))
                specJSON = .object(members)
            }
            #expect(WorkerSpec(json: specJSON) == nil)
        }
        // A file folder's records name no host and read back the same.
        #expect(Event.taskClaim(TaskClaim(worker: "w-1")).data["host"] == nil)
        #expect(MachineEvidence.roomy.json["host"] == nil)
    }
}
