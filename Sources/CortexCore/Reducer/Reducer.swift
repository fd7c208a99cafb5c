/// Everything the fold of the journal knows. A value: folding is `reduce` over records.
public struct CortexState: Equatable, Sendable {
    /// The token budget.
    public var budget = BudgetState()
    /// The task queue.
    public var tasks = TaskState()
    /// The supervised workers and the spawn queue.
    public var workers = WorkerState()
    /// How many records (seals excluded) have been folded into this state.
    public var recordsFolded: Int64 = 0
    /// The time of the newest record folded, the fold's notion of "now".
    public var lastRecordMilliseconds: Int64 = 0
    /// Operational metrics (queue wait, run time, rates), folded like the rest.
    public var metrics = MetricsState()

    /// The state before any record.
    public init() {}
}

/// The pure reducer: `(state, record, position) → (state, outcome)`. No clock, no file system, no
/// randomness; time comes from the records, and the ids of what a record creates from its
/// position in the journal (`JournalPosition.id(_:)`). Any process folding the same records
/// reaches the same state and the same outcomes.
public enum Reducer {
    /// Folds `record`, which starts at `position` in the journal, into `state` in place and
    /// returns the outcome for it.
    public static func reduce(_ state: inout CortexState, _ record: Record, at position: JournalPosition) -> Outcome {
        state.recordsFolded += 1
        // A time outside the limits would reach every duration the fold computes: refused first.
        guard Limits.isRecordTime(record.timeMilliseconds) else {
            return .rejected("at_ms \(record.timeMilliseconds) is outside 0...\(Limits.latestRecordMilliseconds)")
        }
        state.lastRecordMilliseconds = max(state.lastRecordMilliseconds, record.timeMilliseconds)
        state.metrics.advance(to: record.timeMilliseconds, running: state.tasks.activeCounts[.running, default: 0])
        let event: Event
        do {
            guard let decoded = try Event.decode(kind: record.kind, data: record.data) else { return .ignored }
            event = decoded
        } catch {
            return .rejected(error.reason)
        }
        let before = MetricsRules.before(event, in: state)
        let spentBefore = state.budget.spent
        let outcome = apply(event, record: record, at: position, to: &state)
        let spent = state.budget.spent.saturatingSubtract(spentBefore)
        MetricsRules.record(event, outcome: outcome, before: before, spent: spent, at: record.timeMilliseconds, in: &state)
        return outcome
    }

    /// Why the fold refuses `record` whatever the state (its time or a number out of the limits,
    /// a malformed payload), or nil when it is valid or of a kind this version does not know.
    /// No tool writes such a record: `cortex verify` reports them.
    public static func invalidity(of record: Record) -> String? {
        guard Limits.isRecordTime(record.timeMilliseconds) else {
            return "at_ms \(record.timeMilliseconds) is outside 0...\(Limits.latestRecordMilliseconds)"
        }
        do {
            _ = try Event.decode(kind: record.kind, data: record.data)
            return nil
        } catch {
            return error.reason
        }
    }

    /// Applies a decoded event (the rules, without the metrics).
    private static func apply(_ event: Event, record: Record, at position: JournalPosition, to state: inout CortexState)
        -> Outcome
    {
        let time = record.timeMilliseconds
        switch event {
        case .budgetAllocate(let request):
            // Inside a live worker's run the allocation belongs to that run (released when it ends).
            let run = request.worker.flatMap { state.workers.live[$0] }.flatMap { $0.status == .queued ? nil : $0.restarts }
            let outcome = BudgetRules.allocate(request, id: position.id(.allocation), run: run, at: time, in: &state.budget)
            if outcome.changesState { state.budget.version += 1 }
            return outcome
        case .budgetSet, .budgetRelease, .budgetQuota, .budgetReset, .budgetRenew, .budgetExpire:
            let outcome = BudgetRules.apply(event, at: time, position, to: &state.budget)
            if outcome.changesState { state.budget.version += 1 }
            return outcome
        case .taskCreate, .taskClaim, .taskComplete, .taskFail, .taskCancel, .taskRetry:
            let tenant = taskTenant(event, in: state.tasks)
            let quotas: ClaimQuotas
            if case .taskClaim = event { quotas = ClaimQuotas(state) } else { quotas = .none }
            let outcome = taskOutcome(event, at: time, position, quotas: quotas, in: &state.tasks)
            if outcome.changesState { state.tasks.version += 1 }
            if case .completed(let task) = outcome, case .taskComplete(_, _, _, let used?) = event, used > 0 {
                if BudgetRules.charge(used, forTask: task, tenant: tenant, in: &state.budget) { state.budget.version += 1 }
            }
            return outcome
        case .workerLost(let worker, let reason, let host):
            // Its tasks go back to the queue; a supervised worker also frees its place and tokens.
            if WorkerRules.lost(worker, host: host, reason: reason, recordID: record.id, at: time, in: &state) {
                state.workers.version += 1
            }
            let outcome = taskOutcome(event, at: time, position, in: &state.tasks)
            if outcome.changesState { state.tasks.version += 1 }
            return outcome
        case .worker(let workerEvent):
            let outcome = WorkerRules.apply(workerEvent, recordID: record.id, at: time, position, in: &state)
            if outcome.changesState { state.workers.version += 1 }
            if case .workerExited(let worker, let restarting) = outcome {
                // The run that held these claims has ended (its supervisor killed what was left of
                // its group before recording the exit), so no one will complete them: a restarted
                // worker keeps its id and a fresh heartbeat, and the reaper would never see them.
                let how = restarting ? "exited and was restarted" : "exited"
                let requeued = TaskRules.workerLost(worker, reason: "the run \(how)", at: time, in: &state.tasks)
                if case .requeued(let tasks) = requeued, !tasks.isEmpty { state.tasks.version += 1 }
            }
            return outcome
        }
    }

    private static func taskOutcome(
        _ event: Event, at time: Int64, _ position: JournalPosition, quotas: ClaimQuotas = .none, in tasks: inout TaskState
    ) -> Outcome {
        switch event {
        case .budgetSet, .budgetAllocate, .budgetRelease, .budgetQuota, .budgetReset, .budgetRenew, .budgetExpire, .worker:
            return .ignored  // routed to BudgetRules and WorkerRules above
        case .taskCreate(let spec): return TaskRules.create(spec, at: time, position, in: &tasks)
        case .taskClaim(let claim): return TaskRules.claim(claim, at: time, quotas: quotas, in: &tasks)
        case .taskComplete(let task, let claim, let result, let tokensUsed):
            return TaskRules.complete(task, claim: claim, result: result, tokensUsed: tokensUsed, at: time, position, in: &tasks)
        case .taskFail(let task, let claim, let error, let retry):
            return TaskRules.fail(task, claim: claim, error: error, retry: retry, at: time, position, in: &tasks)
        case .taskCancel(let task): return TaskRules.cancel(task, at: time, position, in: &tasks)
        case .taskRetry(let task, let number, let spec):
            return TaskRules.retry(task, number: number, spec: spec, at: time, position, in: &tasks)
        case .workerLost(let worker, let reason, let host):
            return TaskRules.workerLost(worker, host: host, reason: reason, at: time, in: &tasks)
        }
    }

    /// The tenant of the task a `task.complete` names (read before the task is finished).
    private static func taskTenant(_ event: Event, in tasks: TaskState) -> String? {
        guard case .taskComplete(let task, _, _, _) = event else { return nil }
        return tasks.activeTask(task)?.spec.tenant
    }

    /// The functional form of `reduce(_:_:at:)`.
    public static func reducing(_ state: CortexState, _ record: Record, at position: JournalPosition) -> (CortexState, Outcome) {
        var next = state
        let outcome = reduce(&next, record, at: position)
        return (next, outcome)
    }
}

/// The budget's rules (docs/design.md, "The reducer": Budget).
enum BudgetRules {
    static func apply(_ event: Event, at time: Int64, _ position: JournalPosition, to budget: inout BudgetState) -> Outcome {
        switch event {
        case .budgetSet(let total):
            budget.total = total
            return .applied
        case .budgetQuota(let tenant, let tokens):
            budget.quotas[tenant] = tokens
            return .applied
        case .budgetReset:
            budget.period += 1
            budget.periodStartedMilliseconds = time
            budget.spent = 0
            budget.tenantSpent = [:]
            return .applied
        case .budgetAllocate(let request):
            return allocate(request, id: position.id(.allocation), run: nil, at: time, in: &budget)
        case .budgetRelease(let id, let used):
            return release(id, used: used, before: position, in: &budget)
        case .budgetRenew(let id, let lease):
            return renew(id, lease: lease, at: time, before: position, in: &budget)
        case .budgetExpire:
            return expire(at: time, in: &budget)
        case .taskCreate, .taskClaim, .taskComplete, .taskFail, .taskCancel, .taskRetry, .workerLost, .worker:
            return .ignored  // the reducer routes only budget events here
        }
    }

    /// Grants `request` under `id` (`alloc-` and the position of the record that asked for it,
    /// or for a worker, of the record that created the worker) if it fits.
    /// `run` is the run of `request.worker` when that worker is live (the allocation then belongs to it).
    static func allocate(_ request: BudgetRequest, id: String, run: Int64? = nil, at time: Int64, in budget: inout BudgetState)
        -> Outcome
    {
        guard request.tokens > 0 else { return .rejected("an allocation needs at least 1 token") }
        if let reason = budget.refusal(for: request) { return .refused(reason) }
        // Unique by construction (one allocation per record or worker); never replace one.
        guard budget.allocations[id] == nil else { return .rejected("allocation \(id) already exists") }
        budget.allocationsIssued += 1
        var allocation = Allocation(
            id: id, tokens: request.tokens, holder: request.holder, task: request.task, tenant: request.tenant,
            grantedMilliseconds: time)
        if let run {
            allocation.worker = request.worker
            allocation.run = run
        }
        if let lease = request.leaseMilliseconds {
            allocation.leaseMilliseconds = lease
            allocation.leaseEndsMilliseconds = time.saturatingAdd(lease)
        }
        budget.insert(allocation)
        return .granted(allocation: id)
    }

    /// Extends a leased allocation's lease from `time`. A lapsed lease not yet expired may still
    /// be renewed: the journal order of the renewal and the reaper's `budget.expire` decides.
    static func renew(_ id: String, lease: Int64?, at time: Int64, before position: JournalPosition, in budget: inout BudgetState)
        -> Outcome
    {
        guard var allocation = budget.allocations[id] else {
            if IssuedID.issued(id, .allocation, before: position, counted: budget.allocationsIssued) {
                return .refused("allocation \(id) was already released")
            }
            return .rejected("no allocation \(id)")
        }
        guard let length = lease ?? allocation.leaseMilliseconds else {
            return .refused("allocation \(id) has no lease; give --lease to start one")
        }
        allocation.leaseMilliseconds = length
        allocation.leaseEndsMilliseconds = time.saturatingAdd(length)
        budget.allocations[id] = allocation
        return .applied
    }

    /// Releases every allocation whose lease lapsed at or before `time`; their holders reported
    /// nothing, so all their reserved tokens count as spent.
    static func expire(at time: Int64, in budget: inout BudgetState) -> Outcome {
        let lapsed = budget.allocations.leased.filter { ($0.leaseEndsMilliseconds ?? Int64.max) <= time }.map(\.id)
        guard !lapsed.isEmpty else { return .ignored }
        for id in lapsed.sorted() { _ = release(id, used: nil, before: .start, in: &budget) }
        return .applied
    }

    /// `task.complete --tokens-used used`: releases the oldest allocation held for `task` (`--task`
    /// on allocate) with `used` tokens spent (at most its reservation); what is left over, or all of
    /// `used` when no allocation is held for the task, is added to `spent` directly (and to the
    /// tenant's: the allocation's, else the task's). Returns whether the budget changed.
    static func charge(_ used: Int64, forTask task: String, tenant: String?, in budget: inout BudgetState) -> Bool {
        guard used > 0 else { return false }
        var rest = used
        var chargedTenant = tenant
        let held = budget.allocations.matching("task", task) { $0.task == task }.min {
            ($0.grantedMilliseconds, $0.id) < ($1.grantedMilliseconds, $1.id)
        }
        if let held {
            let spent = min(rest, held.tokens)
            _ = release(held.id, used: spent, before: .start, in: &budget)
            rest = rest.saturatingSubtract(spent)
            chargedTenant = held.tenant ?? tenant
        }
        if rest > 0 {
            budget.spent = budget.spent.saturatingAdd(rest)
            if let chargedTenant { budget.tenantSpent[chargedTenant] = budget.tenantSpent[chargedTenant, default: 0].saturatingAdd(rest) }
        }
        return true
    }

    /// Releases allocation `id` for the record at `position`. An id issued before that record
    /// but no longer held was released (a normal "no"); any other is unknown.
    static func release(_ id: String, used: Int64?, before position: JournalPosition, in budget: inout BudgetState) -> Outcome {
        guard let allocation = budget.allocations[id] else {
            if IssuedID.issued(id, .allocation, before: position, counted: budget.allocationsIssued) {
                return .refused("allocation \(id) was already released")
            }
            return .rejected("no allocation \(id)")
        }
        let spent = used ?? allocation.tokens
        guard spent >= 0, spent <= allocation.tokens else {
            return .rejected("allocation \(id) reserved \(allocation.tokens) tokens; --used \(spent) is more")
        }
        _ = budget.remove(id)
        budget.spent = budget.spent.saturatingAdd(spent)
        if let tenant = allocation.tenant, spent > 0 {
            budget.tenantSpent[tenant] = budget.tenantSpent[tenant, default: 0].saturatingAdd(spent)
        }
        return .released(allocation: id, spent: spent, returned: allocation.tokens.saturatingSubtract(spent))
    }
}
