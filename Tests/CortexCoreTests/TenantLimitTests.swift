import Testing

@testable import CortexCore

/// Tenants' worker limits (`worker.tenant-limit`, docs/decisions/041) on the pure reducer: a
/// tenant at its limit waits, another tenant's spawns start beside it, and a spawn held only by
/// its tenant's limit never holds back a spawn of another tenant queued behind it.
@Suite struct TenantLimitTests {
    typealias Fold = WorkerReducerTests.Fold

    func spec(_ tenant: String?) -> WorkerSpec {
        var spec = WorkerSpec(command: ["sleep", "1000"])
        spec.tenant = tenant
        return spec
    }

    func worker(_ outcome: Outcome) -> String? {
        switch outcome {
        case .spawned(let id, _), .spawnQueued(let id, _): id
        default: nil
        }
    }

    @Test func aTenantAtItsLimitWaitsWhileAnotherStarts() throws {
        var fold = Fold()
        #expect(fold.apply(.worker(.tenantLimit(tenant: "acme", maxWorkers: 1))) == .applied)
        let first = try #require(worker(fold.spawn(spec("acme"))))
        #expect(fold.state.workers.live[first]?.status == .starting)
        #expect(fold.spawn(spec("acme"), queue: false) == .refused("tenant acme quota: 1 of 1 workers running"))
        guard case .spawned = fold.spawn(spec("globex"), queue: false) else {
            Issue.record("another tenant starts while acme is at its limit")
            return
        }
        // Queued behind acme's held spawn, globex's next one still starts at once.
        guard case .spawnQueued(let held, let reason) = fold.spawn(spec("acme")) else {
            Issue.record("acme's second spawn queues")
            return
        }
        #expect(reason == "tenant acme quota: 1 of 1 workers running")
        guard case .spawned = fold.spawn(spec("globex")) else {
            Issue.record("a spawn held by its tenant's limit held back another tenant's")
            return
        }
        // acme's first worker ends: its queued spawn starts.
        fold.run(first)
        #expect(fold.state.workers.live[held]?.status == .starting)
        // Lifting the limit: no more waiting for acme.
        #expect(fold.apply(.worker(.tenantLimit(tenant: "acme", maxWorkers: nil))) == .applied)
        guard case .spawned = fold.spawn(spec("acme"), queue: false) else {
            Issue.record("no limit, no wait")
            return
        }
    }

    @Test func whenThePoolFreesASlotTheTenantUnderItsLimitGetsIt() throws {
        var fold = Fold()
        let pool = MachineEvidence.roomy.withMaxWorkers(2)
        fold.apply(.worker(.tenantLimit(tenant: "acme", maxWorkers: 1)))
        let acme = try #require(worker(fold.spawn(spec("acme"), evidence: pool)))
        let globex = try #require(worker(fold.spawn(spec("globex"), evidence: pool)))
        // The pool is full: both queue, acme's first.
        let acmeQueued = try #require(worker(fold.spawn(spec("acme"), evidence: pool)))
        let globexQueued = try #require(worker(fold.spawn(spec("globex"), evidence: pool)))
        #expect(fold.state.workers.queue == [acmeQueued, globexQueued])
        // globex's worker ends: the free slot goes to globex's queued spawn, not to acme's
        // (acme is at its limit), which stays first in the queue and names its tenant's limit.
        fold.run(globex, evidence: pool)
        #expect(fold.state.workers.live[globexQueued]?.status == .starting)
        #expect(fold.state.workers.live[acmeQueued]?.queuedReason == "tenant acme quota: 1 of 1 workers running")
        #expect(fold.state.workers.queue == [acmeQueued])
        fold.run(acme, evidence: pool)
        #expect(fold.state.workers.live[acmeQueued]?.status == .starting)
    }

    @Test func theLimitSurvivesRecordsAndSnapshots() throws {
        let event = WorkerEvent.tenantLimit(tenant: "acme", maxWorkers: 3)
        #expect(try WorkerEvent.decode(kind: event.kind, data: event.data) == event)
        #expect(
            try WorkerEvent.decode(kind: "worker.tenant-limit", data: .object(["tenant": "acme"]))
                == .tenantLimit(tenant: "acme", maxWorkers: nil))
        for hostile: JSONValue in [.object(["tenant": "acme", "max_workers": -1]), .object(["max_workers": 1]), .object(["tenant": ""])] {
            #expect(throws: EventDecodingError.self) { try WorkerEvent.decode(kind: "worker.tenant-limit", data: hostile) }
        }
        var fold = Fold()
        fold.apply(.worker(event))
        let bytes = SnapshotCodec.encode(fold.state, position: .start, writtenAtMilliseconds: 0)
        let decoded = try #require(SnapshotCodec.decode(ImmutableBytes(bytes))?.0)
        #expect(decoded.workers.tenantMaxWorkers == ["acme": 3])
    }
}
