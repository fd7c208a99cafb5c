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
        #expect(fold.apply(.worker(.tenantLimit(tenant: "acme", limits: TenantLimits(maxWorkers: 1)))) == .applied)
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
        #expect(fold.apply(.worker(.tenantLimit(tenant: "acme", limits: TenantLimits()))) == .applied)
        guard case .spawned = fold.spawn(spec("acme"), queue: false) else {
            Issue.record("no limit, no wait")
            return
        }
    }

    @Test func whenThePoolFreesASlotTheTenantUnderItsLimitGetsIt() throws {
        var fold = Fold()
        let pool = MachineEvidence.roomy.withMaxWorkers(2)
        fold.apply(.worker(.tenantLimit(tenant: "acme", limits: TenantLimits(maxWorkers: 1))))
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
        let event = WorkerEvent.tenantLimit(tenant: "acme", limits: TenantLimits(maxWorkers: 3, cpuMillicores: 1500, memoryBytes: 1 << 30))
        #expect(try WorkerEvent.decode(kind: event.kind, data: event.data) == event)
        #expect(
            try WorkerEvent.decode(kind: "worker.tenant-limit", data: .object(["tenant": "acme"]))
                == .tenantLimit(tenant: "acme", limits: TenantLimits()))
        for hostile: JSONValue in [
            .object(["tenant": "acme", "max_workers": -1]), .object(["max_workers": 1]), .object(["tenant": ""]),
            .object(["tenant": "acme", "cpu_millicores": .int(Limits.maximumCPUMillicores + 1)]),
            .object(["tenant": "acme", "memory_bytes": "lots"]),
        ] {
            #expect(throws: EventDecodingError.self) { try WorkerEvent.decode(kind: "worker.tenant-limit", data: hostile) }
        }
        var fold = Fold()
        fold.apply(.worker(event))
        let bytes = SnapshotCodec.encode(fold.state, position: .start, writtenAtMilliseconds: 0)
        let decoded = try #require(SnapshotCodec.decode(ImmutableBytes(bytes))?.0)
        #expect(decoded.workers.tenantLimits == ["acme": TenantLimits(maxWorkers: 3, cpuMillicores: 1500, memoryBytes: 1 << 30)])
    }

    @Test func cpuAndMemoryQuotasCountWhatTheTenantsSpawnsDeclare() throws {
        var fold = Fold()
        fold.apply(.worker(.tenantLimit(tenant: "acme", limits: TenantLimits(cpuMillicores: 1500, memoryBytes: 1_000))))
        func spec(_ tenant: String, cpu: Int64? = nil, memory: Int64? = nil) -> WorkerSpec {
            var spec = self.spec(tenant)
            spec.cpuMillicores = cpu
            spec.memoryBytes = memory
            return spec
        }
        let first = try #require(worker(fold.spawn(spec("acme", cpu: 1000, memory: 600))))
        #expect(
            fold.spawn(spec("acme", cpu: 1000), queue: false) == .refused("tenant acme quota: CPU 1 of 1.5 cores held, 1 asked"))
        #expect(
            fold.spawn(spec("acme", memory: 500), queue: false) == .refused("tenant acme quota: memory 600 of 1000 bytes held, 500 asked"))
        guard case .spawned = fold.spawn(spec("acme", cpu: 500, memory: 400), queue: false) else {
            Issue.record("what still fits the quota starts")
            return
        }
        guard case .spawned = fold.spawn(spec("globex", cpu: 100, memory: 600), queue: false) else {
            Issue.record("another tenant's spawn is not held by acme's quota")
            return
        }
        fold.run(first)
        guard case .spawned = fold.spawn(spec("acme", cpu: 1000), queue: false) else {
            Issue.record("the first worker's end gave its CPU back to the quota")
            return
        }
    }
}

/// Tenants' quotas on claims (docs/decisions/041): a shared pool's claimers pass over the tasks
/// of a tenant at its limit, so it never holds back another tenant's, and take them again as
/// its usage drops.
@Suite struct TenantClaimQuotaTests {
    typealias Fold = TaskReducerTests.Fold

    func create(_ tenant: String, tokens: Int64? = nil, in fold: inout Fold) -> String {
        var spec = TaskSpec(type: "build", tokens: tokens)
        spec.tenant = tenant
        guard case .created(let id, _) = fold.apply(.taskCreate(spec)) else { return "?" }
        return id
    }

    @Test func aTenantAtItsLimitIsPassedOverAndComesBackWhenATaskEnds() {
        var fold = Fold()
        fold.apply(.worker(.tenantLimit(tenant: "acme", limits: TenantLimits(maxWorkers: 1))))
        let acmeFirst = create("acme", in: &fold)
        let acmeSecond = create("acme", in: &fold)
        let globex = create("globex", in: &fold)
        #expect(fold.claim("w-1") == .claimed(task: acmeFirst, claim: 1))
        // acme's second task is older than globex's, but acme is at its limit.
        #expect(fold.claim("w-2") == .claimed(task: globex, claim: 1))
        #expect(fold.claim("w-3") == .refused("tenant acme quota: 1 of 1 tasks running"))
        #expect(
            fold.state.tasks.claimLook(by: TaskClaim(worker: "w-3"), at: fold.time, quotas: ClaimQuotas(fold.state)).heldBy
                == "tenant acme quota: 1 of 1 tasks running")
        #expect(fold.apply(.taskComplete(task: acmeFirst, claim: 1, result: nil, tokensUsed: nil)) == .completed(task: acmeFirst))
        #expect(fold.claim("w-3") == .claimed(task: acmeSecond, claim: 1))
    }

    @Test func aTenantWhoseTokenQuotaIsUsedUpWaitsForTokens() {
        var fold = Fold()
        fold.apply(.budgetSet(total: 10_000))
        fold.apply(.budgetQuota(tenant: "acme", tokens: 1_000))
        let big = create("acme", tokens: 800, in: &fold)
        let small = create("acme", tokens: 100, in: &fold)
        let held = fold.apply(.budgetAllocate(BudgetRequest(tokens: 300, tenant: "acme")))
        // 700 left: the 800-token task waits, the 100-token one behind it does not.
        #expect(fold.claim("w-1") == .claimed(task: small, claim: 1))
        #expect(fold.claim("w-2") == .refused("tenant acme quota: 800 tokens asked, 700 left"))
        let rest = fold.apply(.budgetAllocate(BudgetRequest(tokens: 700, tenant: "acme")))
        #expect(fold.claim("w-2") == .refused("tenant acme quota: 1000 of 1000 tokens held"))
        guard case .granted(let first) = held, case .granted(let second) = rest else {
            Issue.record("both allocations were granted: \(held), \(rest)")
            return
        }
        fold.apply(.budgetRelease(allocation: first, used: 0))
        fold.apply(.budgetRelease(allocation: second, used: 0))
        #expect(fold.claim("w-2") == .claimed(task: big, claim: 1))
    }

    @Test func withoutQuotasClaimsKeepPriorityThenAge() {
        var fold = Fold()
        let acme = create("acme", in: &fold)
        let globex = create("globex", in: &fold)
        #expect(ClaimQuotas(fold.state).isEmpty)
        #expect(fold.claim("w-1") == .claimed(task: acme, claim: 1))
        #expect(fold.claim("w-2") == .claimed(task: globex, claim: 1))
    }
}
