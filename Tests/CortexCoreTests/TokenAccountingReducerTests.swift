import Testing

@testable import CortexCore
@testable import CortexStorage

/// Token accounting on the pure reducer (docs/decisions/025-token-accounting.md): what
/// `task.complete` reports reaches the budget, allocations made inside a worker run end with the
/// run, leases lapse by record time, and the `unreported_tokens` rule. No files, no clock.
@Suite struct BudgetReducerTokenAccountingTests {
    typealias Fold = WorkerReducerTests.Fold

    /// A worker `w-1.1` (the record after `budget.set`) supervised and running.
    func runningWorker(restart: RestartPolicy = .never, unreported: UnreportedTokens = .reserved, total: Int64 = 100_000) -> Fold {
        var fold = Fold()
        fold.apply(.budgetSet(total: total))
        var spec = WorkerSpec(command: ["x"], restart: restart)
        spec.unreportedTokens = unreported
        _ = fold.spawn(spec)
        fold.apply(.worker(.supervise(worker: "w-1.1", supervisor: Self.supervisor)))
        fold.apply(.worker(.started(worker: "w-1.1", supervisor: Self.supervisor, process: Self.process)))
        return fold
    }

    static let supervisor = ProcessIdentity(pid: 100, startTicks: 1)
    static let process = ProcessIdentity(pid: 200, startTicks: 2)

    func exited(_ fold: inout Fold, tokensUsed: Int64? = nil) -> Outcome {
        fold.apply(
            .worker(
                .exited(
                    worker: "w-1.1", supervisor: Self.supervisor, exit: .signaled(.kill), timedOut: false, tokensUsed: tokensUsed,
                    evidence: .roomy)))
    }

    func allocateInRun(_ fold: inout Fold, tokens: Int64 = 5_000) -> String? {
        guard case .granted(let id) = fold.apply(.budgetAllocate(BudgetRequest(tokens: tokens, holder: "w-1.1", worker: "w-1.1")))
        else { return nil }
        return id
    }

    @Test func completeWithTokensUsedAddsThemToSpentWhenNoAllocationIsHeldForTheTask() {
        var fold = Fold()
        fold.apply(.budgetSet(total: 1_000_000))
        fold.apply(.taskCreate(TaskSpec(type: "t", tenant: "acme")))
        fold.apply(.taskClaim(TaskClaim(worker: "me")))
        #expect(fold.apply(.taskComplete(task: "task-1.1", claim: 1, result: nil, tokensUsed: 147_000)) == .completed(task: "task-1.1"))
        #expect(fold.state.budget.spent == 147_000)
        #expect(fold.state.budget.tenantSpent["acme"] == 147_000)
        #expect(fold.state.metrics.delta.tokensSpent == 147_000 && fold.state.metrics.delta.tenantTokensSpent["acme"] == 147_000)
        #expect(fold.state.budget.available == 853_000)
        // A stale claim's report is not counted.
        #expect(fold.apply(.taskComplete(task: "task-1.1", claim: 1, result: nil, tokensUsed: 5)).changesState == false)
        #expect(fold.state.budget.spent == 147_000)
    }

    @Test func completeWithTokensUsedReleasesTheAllocationHeldForTheTask() {
        var fold = Fold()
        fold.apply(.budgetSet(total: 10_000))
        fold.apply(.taskCreate(TaskSpec(type: "t")))
        fold.apply(.taskClaim(TaskClaim(worker: "me")))
        #expect(fold.apply(.budgetAllocate(BudgetRequest(tokens: 3_000, task: "task-1.1"))) == .granted(allocation: "alloc-1.3"))
        fold.apply(.taskComplete(task: "task-1.1", claim: 1, result: nil, tokensUsed: 1_200))
        #expect(fold.state.budget.allocations.isEmpty)
        #expect(fold.state.budget.reserved == 0)
        #expect(fold.state.budget.spent == 1_200)
        #expect(fold.state.budget.available == 8_800)
    }

    @Test func completeReportingMoreThanTheAllocationSpendsTheRestDirectlyAndSaturates() {
        var fold = Fold()
        fold.apply(.budgetSet(total: 10_000))
        fold.apply(.taskCreate(TaskSpec(type: "t")))
        fold.apply(.taskClaim(TaskClaim(worker: "me")))
        fold.apply(.budgetAllocate(BudgetRequest(tokens: 3_000, task: "task-1.1")))
        fold.apply(.taskComplete(task: "task-1.1", claim: 1, result: nil, tokensUsed: 50_000))
        #expect(fold.state.budget.spent == 50_000)
        #expect(fold.state.budget.reserved == 0)
        #expect(fold.state.budget.available == 0, "clamped at 0, never negative")
    }

    @Test func anAllocationMadeInAWorkerRunIsReleasedWhenTheRunIsKilledAndRestarted() {
        var fold = runningWorker(restart: .always)
        guard let first = allocateInRun(&fold) else {
            Issue.record("not granted")
            return
        }
        #expect(fold.state.budget.allocations[first]?.worker == "w-1.1")
        #expect(fold.state.budget.allocations[first]?.run == 0)
        #expect(exited(&fold) == .workerExited(worker: "w-1.1", restarting: true))
        #expect(fold.state.budget.allocations[first] == nil, "released with the run that took it")
        #expect(fold.state.budget.reserved == 0)
        #expect(fold.state.budget.spent == 5_000, "reported nothing: all reserved tokens count as spent")
        // The next run's allocation belongs to run 1, and goes with it in turn.
        fold.apply(.worker(.started(worker: "w-1.1", supervisor: Self.supervisor, process: Self.process)))
        guard let second = allocateInRun(&fold) else {
            Issue.record("not granted")
            return
        }
        #expect(fold.state.budget.allocations[second]?.run == 1)
        fold.apply(.worker(.stop(worker: "w-1.1")))
        #expect(fold.state.budget.reserved == 5_000, "still held while it drains")
        #expect(exited(&fold) == .workerExited(worker: "w-1.1", restarting: false))
        #expect(fold.state.budget.reserved == 0)
        #expect(fold.state.budget.spent == 10_000)
    }

    @Test func anAllocationMadeInAWorkerRunIsReleasedWhenTheWorkerIsLost() {
        var fold = runningWorker(restart: .always)
        _ = allocateInRun(&fold)
        fold.apply(.workerLost(worker: "w-1.1", reason: "supervisor gone"))
        #expect(fold.state.budget.reserved == 0)
        #expect(fold.state.budget.allocations.isEmpty)
    }

    @Test func anAllocationOutsideAnyLiveWorkerBelongsToNoRun() {
        var fold = runningWorker()
        // Named after a worker (holder) but not asked from inside it, or from a worker that ended.
        fold.apply(.budgetAllocate(BudgetRequest(tokens: 100, holder: "w-1.1")))
        fold.apply(.budgetAllocate(BudgetRequest(tokens: 100, worker: "w-9.9")))
        #expect(fold.state.budget.allocations.values.allSatisfy { $0.worker == nil && $0.run == nil })
        _ = exited(&fold)
        #expect(fold.state.budget.reserved == 200)
    }

    @Test func unreportedTokensZeroReturnsTheRunsReservationsAndItsSpawnTokens() {
        var fold = runningWorker(unreported: .zero)
        _ = allocateInRun(&fold)
        _ = exited(&fold)
        #expect(fold.state.budget.reserved == 0)
        #expect(fold.state.budget.spent == 0)

        var spawned = Fold()
        spawned.apply(.budgetSet(total: 1_000))
        var spec = WorkerSpec(command: ["x"])
        spec.tokens = 600
        spec.unreportedTokens = .zero
        _ = spawned.spawn(spec)
        spawned.run("w-1.1")
        #expect(spawned.state.budget.spent == 0)
        #expect(spawned.state.budget.available == 1_000)
        // The default charges all of it; a report wins over either rule.
        var reserved = Fold()
        reserved.apply(.budgetSet(total: 1_000))
        spec.unreportedTokens = .reserved
        _ = reserved.spawn(spec)
        reserved.run("w-1.1")
        #expect(reserved.state.budget.spent == 600)
        var reported = Fold()
        reported.apply(.budgetSet(total: 1_000))
        spec.unreportedTokens = .zero
        _ = reported.spawn(spec)
        reported.run("w-1.1", tokensUsed: 70)
        #expect(reported.state.budget.spent == 70)
    }

    @Test func aLapsedLeaseIsReleasedByTheFirstExpireAfterItAndARenewalKeepsIt() {
        var state = CortexState()
        func apply(_ event: Event, at time: Int64) -> Outcome { Reducer.reduce(&state, record(event, at: time)) }
        _ = apply(.budgetSet(total: 1_000), at: 1_000)
        #expect(
            apply(.budgetAllocate(BudgetRequest(tokens: 100, leaseMilliseconds: 60_000)), at: 2_000) == .granted(allocation: "alloc-1.1"))
        #expect(
            apply(.budgetAllocate(BudgetRequest(tokens: 200, leaseMilliseconds: 60_000)), at: 2_000) == .granted(allocation: "alloc-1.2"))
        _ = apply(.budgetAllocate(BudgetRequest(tokens: 300)), at: 2_000)
        #expect(state.budget.allocations["alloc-1.1"]?.leaseEndsMilliseconds == 62_000)
        #expect(apply(.budgetExpire, at: 61_999) == .ignored, "nothing lapsed yet")
        #expect(apply(.budgetRenew(allocation: "alloc-1.2", leaseMilliseconds: nil), at: 50_000) == .applied)
        #expect(state.budget.allocations["alloc-1.2"]?.leaseEndsMilliseconds == 110_000)
        #expect(apply(.budgetExpire, at: 62_000) == .applied)
        #expect(state.budget.allocations["alloc-1.1"] == nil)
        #expect(state.budget.allocations["alloc-1.2"] != nil, "renewed")
        #expect(state.budget.allocations["alloc-1.3"] != nil, "no lease, never expires")
        #expect(state.budget.spent == 100)
        #expect(
            apply(.budgetRenew(allocation: "alloc-1.1", leaseMilliseconds: nil), at: 63_000)
                == .refused("allocation alloc-1.1 was already released"))
        #expect(
            apply(.budgetRenew(allocation: "alloc-1.3", leaseMilliseconds: nil), at: 63_000)
                == .refused("allocation alloc-1.3 has no lease; give --lease to start one"))
        #expect(apply(.budgetRenew(allocation: "alloc-1.3", leaseMilliseconds: 1_000), at: 63_000) == .applied)
        #expect(apply(.budgetRenew(allocation: "alloc-9.9", leaseMilliseconds: nil), at: 63_000) == .rejected("no allocation alloc-9.9"))
        #expect(apply(.budgetExpire, at: 200_000) == .applied)
        #expect(state.budget.allocations.isEmpty)
        #expect(state.budget.spent == 600)
    }

    @Test func leasesAndRunsSurviveTheSnapshotEncoding() throws {
        var fold = runningWorker()
        _ = allocateInRun(&fold)
        fold.apply(.budgetAllocate(BudgetRequest(tokens: 7, leaseMilliseconds: 5_000)))
        let bytes = SnapshotCodec.encode(fold.state, position: .start, writtenAtMilliseconds: 0)
        let decoded = try #require(SnapshotCodec.decode(ImmutableBytes(bytes))?.0.budget)
        #expect(decoded == fold.state.budget)
        #expect(decoded.reserved == fold.state.budget.reserved && decoded.allocations.count == 2)
    }

    @Test func malformedLeaseRecordsAreRejected() {
        var state = CortexState()
        let tooLong = Record(
            id: "r1", timeMilliseconds: 1_000, kind: "budget.allocate",
            data: .object(["tokens": 1, "lease_ms": .int(Limits.maximumDurationMilliseconds + 1)]))
        #expect(Reducer.reduce(&state, tooLong).rejectionReason != nil)
        let noAllocation = Record(id: "r2", timeMilliseconds: 1_000, kind: "budget.renew", data: .object([:]))
        #expect(Reducer.reduce(&state, noAllocation).rejectionReason != nil)
    }

    @Test func unreportedTokensIsReadFromTheConfigAndAnythingElseIsAConfigurationError() throws {
        #expect(try CortexConfig(json: try JSONValue.parse("{}"), path: "c").unreportedTokens == .reserved)
        #expect(try CortexConfig(json: try JSONValue.parse(#"{"unreported_tokens":"zero"}"#), path: "c").unreportedTokens == .zero)
        #expect(throws: CortexError.configuration(#"c: 'unreported_tokens' must be "reserved" or "zero""#)) {
            try CortexConfig(json: try JSONValue.parse(#"{"unreported_tokens":"none"}"#), path: "c")
        }
        #expect(throws: CortexError.configuration(#"c: 'unreported_tokens' must be "reserved" or "zero""#)) {
            try CortexConfig(json: try JSONValue.parse(#"{"unreported_tokens":0}"#), path: "c")
        }
        // What init writes reads back the same.
        var config = CortexConfig()
        config.unreportedTokens = .zero
        #expect(try CortexConfig(json: config.json, path: "c") == config)
    }
}
