/// The spawner's rules (issue 4): feasibility judged in journal order, so concurrent
/// `cortex-spawn` calls never overshoot `max_workers` or the budget; a FIFO spawn queue that
/// capacity drains in order; restarts; settlement of reservations. Pure: the machine facts
/// come from the evidence in each record.
enum WorkerRules {
    static func apply(
        _ event: WorkerEvent, recordID: String, at time: Int64, _ position: JournalPosition, in state: inout CortexState
    ) -> Outcome {
        switch event {
        case .spawn(let spec, let queue, let evidence):
            return spawn(spec, queue: queue, evidence, recordID, position, time, &state)
        case .supervise(let id, let supervisor):
            guard var worker = state.workers.live[id] else { return unknown(id, before: position, state.workers) }
            guard worker.status == .starting || worker.status == .stopping, worker.supervisor == nil else {
                let holder = worker.supervisor.map { "supervised by pid \($0.pid)" } ?? worker.status.rawValue
                return .refused("\(id) is \(holder)")
            }
            worker.supervisor = supervisor
            state.workers.live[id] = worker
            return .supervising(worker: id)
        case .started(let id, let supervisor, let process):
            guard var worker = state.workers.live[id] else { return unknown(id, before: position, state.workers) }
            guard worker.supervisor == supervisor else { return .refused("\(id) is not supervised by pid \(supervisor.pid)") }
            if worker.status == .starting { worker.status = .running }
            worker.process = process
            worker.startedMilliseconds = time
            state.workers.live[id] = worker
            return .workerStarted(worker: id)
        case .exited(let id, let supervisor, let exit, let timedOut, let tokensUsed, let evidence, let limit):
            guard var worker = state.workers.live[id] else { return unknown(id, before: position, state.workers) }
            guard worker.supervisor == supervisor else { return .refused("\(id) is not supervised by pid \(supervisor.pid)") }
            worker.lastExit = exit
            worker.timedOut = timedOut
            worker.limitReached = limit
            if let limit { state.metrics.countLimitKill(limit) }
            worker.process = nil
            // The run has ended (restarted or not): what it reserved and did not release goes with it.
            releaseRunAllocations(of: worker, in: &state)
            let failed = exit != .exited(0)
            let restart =
                worker.status != .stopping && (worker.spec.restart == .always || (worker.spec.restart == .onFailure && failed))
            if restart {
                worker.status = .starting
                worker.restarts += 1
                state.workers.live[id] = worker
                return .workerExited(worker: id, restarting: true)
            }
            worker.endRecord = recordID
            end(&worker, as: worker.status == .stopping ? .stopped : .exited, tokensUsed: tokensUsed, at: time, in: &state)
            promote(evidence, recordID, time, &state)
            return .workerExited(worker: id, restarting: false)
        case .stop(let id):
            guard var worker = state.workers.live[id] else { return unknown(id, before: position, state.workers) }
            switch worker.status {
            case .queued:
                worker.endRecord = recordID
                end(&worker, as: .stopped, tokensUsed: nil, at: time, in: &state)
            case .starting, .running:
                worker.status = .stopping
                state.workers.live[id] = worker
            case .stopping, .exited, .stopped, .lost:
                return .refused("\(id) is already \(worker.status.rawValue)")
            }
            return .stopping(worker: id)
        case .promote(let evidence):
            return .promoted(workers: promote(evidence, recordID, time, &state))
        case .tenantLimit(let tenant, let limits):
            state.workers.tenantLimits[tenant] = limits.isEmpty ? nil : limits
            return .applied
        case .cancelReplacement(let id):
            // `cortex pool stop`: a lost member not yet replaced is never replaced.
            guard let owed = state.workers.owedReplacements.firstIndex(where: { $0.worker == id }) else {
                return .refused("\(id) is owed no replacement")
            }
            state.workers.owedReplacements.remove(at: owed)
            return .stopping(worker: id)
        case .replace(let id, let evidence):
            guard let index = state.workers.owedReplacements.firstIndex(where: { $0.worker == id }) else {
                return .refused("\(id) is owed no replacement (never lost, not restartable, or already replaced)")
            }
            guard state.workers.owedReplacements[index].spec.host == evidence.host else {
                // Its request file, and so its replacement, is on its own host.
                return .refused(
                    "\(id) ran on host \(state.workers.owedReplacements[index].spec.host ?? "(none)"): only that host replaces it")
            }
            let owed = state.workers.owedReplacements.remove(at: index)
            return spawn(owed.spec, queue: true, evidence, recordID, position, time, &state)
        }
    }

    /// `worker.lost` for a supervised worker: its reservation is settled and its place freed; a
    /// pool member (restart policy other than never, not being stopped) is owed a replacement,
    /// which the reaper spawns with `worker.replace`. (Queued spawns are started by the
    /// `worker.promote` the reaper appends next.)
    static func lost(_ id: String, host: String? = nil, reason: String, recordID: String, at time: Int64, in state: inout CortexState)
        -> Bool
    {
        guard var worker = state.workers.live[id], worker.status != .queued else { return false }
        // A record naming a host ends only a worker of that host (ids are unique, but a claimer
        // of the same name on another host must not end a supervised worker here).
        if let host, worker.spec.host != host { return false }
        if worker.status != .stopping && worker.spec.restart != .never {
            let leftover = [worker.supervisor, worker.process].compactMap { $0 }
            state.workers.owedReplacements.append(OwedReplacement(worker: id, spec: worker.spec, leftover: leftover))
        }
        worker.lostReason = reason
        worker.endRecord = recordID
        releaseRunAllocations(of: worker, in: &state)
        end(&worker, as: .lost, tokensUsed: nil, at: time, in: &state)
        return true
    }

    private static func spawn(
        _ spec: WorkerSpec, queue: Bool, _ evidence: MachineEvidence, _ recordID: String, _ position: JournalPosition,
        _ time: Int64, _ state: inout CortexState
    ) -> Outcome {
        guard !spec.command.isEmpty else { return .rejected("a worker needs a command") }
        guard !spec.type.isEmpty else { return .rejected("a worker needs a type") }
        // Judged on the machine it runs on: evidence read on another host says nothing of it.
        guard spec.host == evidence.host else {
            return .rejected(
                "worker of host \(spec.host ?? "(none)") judged by evidence of host \(evidence.host ?? "(none)")")
        }
        if let request = spec.request, let holder = state.workers.holder(ofRequest: request) {
            // A replayed request: one request file starts one worker (and its replacements), never two.
            return .rejected("request \(request) already belongs to worker \(holder)")
        }
        if let tokens = spec.tokens, tokens > state.budget.total {
            return .refused("\(tokens) tokens requested, more than the whole budget (\(state.budget.total))")
        }
        // Each host's spawns queue in their own order: another host's full pool holds nothing here,
        // and neither does a spawn whose tenant has its most workers (decision 041).
        let waiting = state.workers.queue.filter {
            guard let queued = state.workers.live[$0], queued.spec.host == spec.host else { return false }
            return !state.workers.tenantIsFull(queued.spec)
        }.count
        var reason = waiting > 0 ? "\(waiting) spawn\(waiting == 1 ? "" : "s") queued ahead" : nil
        let id = position.id(.worker)
        var allocation: String?
        if reason == nil {
            switch admit(spec, id: id, evidence, at: time, in: &state) {
            case .failure(let refusal): reason = refusal.reason
            case .success(let granted): allocation = granted
            }
        }
        if let reason, !queue { return .refused(reason) }
        state.workers.issued += 1
        var worker = WorkerEntry(id: id, spec: spec, status: .queued, requestedMilliseconds: time)
        if let reason {
            worker.queuedReason = reason
            state.workers.queue.append(id)
            state.workers.live[id] = worker
            return .spawnQueued(worker: id, reason: reason)
        }
        worker.status = .starting
        worker.allocation = allocation
        worker.launchRecord = recordID
        state.workers.live[id] = worker
        return .spawned(worker: id, allocation: allocation)
    }

    struct Infeasible: Error {
        var reason: String
        /// Held by its tenant's own limit only: spawns of other tenants may go ahead of it.
        var byTenantLimit = false
    }

    /// Checks capacity, CPU and memory against the evidence, then reserves the tokens. Returns
    /// the allocation id (nil when no tokens were asked for).
    private static func admit(
        _ spec: WorkerSpec, id: String, _ evidence: MachineEvidence, at time: Int64, in state: inout CortexState
    ) -> Result<String?, Infeasible> {
        if let refusal = state.workers.tenantQuotaRefusal(spec) {
            return .failure(Infeasible(reason: refusal, byTenantLimit: true))
        }
        // Capacity, CPU and memory are the host's own (decision 037); tokens are shared.
        let active = state.workers.active(on: evidence.host)
        if active.count >= evidence.maxWorkers {
            return .failure(Infeasible(reason: "pool full: \(active.count) of \(evidence.maxWorkers) workers running"))
        }
        if let limit = evidence.typeLimits[spec.type] {
            let ofType = active.filter { $0.spec.type == spec.type }.count
            if ofType >= limit {
                return .failure(Infeasible(reason: "type \(spec.type) full: \(ofType) of \(limit) workers running"))
            }
        }
        let coresMillis = evidence.cores.saturatingMultiply(1000)
        if let cpu = spec.cpuMillicores {
            let reserved = active.reduce(Int64(0)) { $0.saturatingAdd($1.spec.cpuMillicores ?? 0) }
            if reserved.saturatingAdd(cpu) > coresMillis {
                return .failure(
                    Infeasible(
                        reason:
                            "CPU: \(millis(cpu)) cores requested, \(millis(max(0, coresMillis.saturatingSubtract(reserved)))) of \(evidence.cores) free"
                    ))
            }
        }
        if let pressure = evidence.cpuPressureMillis {
            // Pressure where the kernel reports it: the load average also counts tasks waiting
            // on disk or NFS, and a busy machine that still makes progress sits above it (026).
            if pressure > evidence.maxCPUPressureMillis {
                return .failure(
                    Infeasible(
                        reason:
                            "CPU: pressure \(millis(pressure))% over \(millis(evidence.maxCPUPressureMillis))% (max_cpu_pressure)"))
            }
        } else {
            let loadLimit = evidence.cores.saturatingMultiply(evidence.maxLoadPerCoreMillis)
            if evidence.loadMillis > loadLimit {
                return .failure(
                    Infeasible(reason: "CPU: load \(millis(evidence.loadMillis)) over \(millis(loadLimit)) (\(evidence.cores) cores)"))
            }
        }
        if let memory = spec.memoryBytes {
            // Workers granted but not yet running have not taken their memory yet: count it as taken.
            let pending = active.filter { $0.status == .starting }.reduce(Int64(0)) {
                $0.saturatingAdd($1.spec.memoryBytes ?? 0)
            }
            let free = evidence.memoryAvailableBytes.saturatingSubtract(pending)
            if memory > free {
                return .failure(Infeasible(reason: "memory: \(memory) bytes requested, \(max(0, free)) available"))
            }
        }
        guard let tokens = spec.tokens else { return .success(nil) }
        let request = BudgetRequest(tokens: tokens, holder: id, task: spec.task, tenant: spec.tenant)
        switch BudgetRules.allocate(request, id: WorkerState.allocationID(forWorker: id), at: time, in: &state.budget) {
        case .granted(let allocation):
            state.budget.version += 1
            return .success(allocation)
        case .refused(let reason), .rejected(let reason): return .failure(Infeasible(reason: "tokens: \(reason)"))
        default: return .failure(Infeasible(reason: "tokens: not granted"))
        }
    }

    /// Starts queued workers in order while they fit; returns their ids.
    @discardableResult
    private static func promote(_ evidence: MachineEvidence, _ recordID: String, _ time: Int64, _ state: inout CortexState)
        -> [String]
    {
        var promoted: [String] = []
        // Only the queue of the evidence's host: a spawn waits for room on its own host. In order;
        // a spawn held only by its tenant's limit is passed over, so one tenant at its quota never
        // holds back another's (decision 041); anything else that does not fit stops the walk.
        var passedOver: Set<String> = []
        while let id = state.workers.queue.first(where: {
            !passedOver.contains($0) && state.workers.live[$0]?.spec.host == evidence.host
        }),
            var worker = state.workers.live[id]
        {
            let admission = admit(worker.spec, id: id, evidence, at: time, in: &state)
            guard case .success(let allocation) = admission else {
                // What holds it now (`cortex status` names the head's).
                if case .failure(let refusal) = admission {
                    if worker.queuedReason != refusal.reason {
                        worker.queuedReason = refusal.reason
                        state.workers.live[id] = worker
                    }
                    if refusal.byTenantLimit {
                        passedOver.insert(id)
                        continue
                    }
                }
                break
            }
            state.workers.queue.removeAll { $0 == id }
            worker.status = .starting
            worker.queuedReason = nil
            worker.allocation = allocation
            worker.launchRecord = recordID
            state.workers.live[id] = worker
            promoted.append(id)
        }
        return promoted
    }

    /// Releases every allocation taken inside `worker`'s runs (`budget.allocate` with its
    /// `CORTEX_WORKER_ID`) that is still held: its holder reported nothing, so each is charged by
    /// the worker's `unreported_tokens` rule (all reserved tokens, or none).
    static func releaseRunAllocations(of worker: WorkerEntry, in state: inout CortexState) {
        let held = state.budget.allocations.matching("worker", worker.id) { $0.worker == worker.id }.map(\.id).sorted()
        guard !held.isEmpty else { return }
        let used: Int64? = worker.spec.unreportedTokens == .zero ? 0 : nil
        for id in held { _ = BudgetRules.release(id, used: used, before: .start, in: &state.budget) }
        state.budget.version += 1
    }

    /// Moves a worker to a final status: its reservation settled, its place freed.
    private static func end(
        _ worker: inout WorkerEntry, as status: WorkerStatus, tokensUsed: Int64?, at time: Int64, in state: inout CortexState
    ) {
        if let allocation = worker.allocation {
            let held = state.budget.allocations[allocation]?.tokens ?? 0
            // Nothing reported: the worker's `unreported_tokens` rule decides (all reserved, or none).
            let reported = tokensUsed ?? (worker.spec.unreportedTokens == .zero ? 0 : nil)
            let used = reported.map { max(0, min($0, held)) }
            // The worker holds it, so where "before" is does not matter.
            if BudgetRules.release(allocation, used: used, before: .start, in: &state.budget).changesState {
                state.budget.version += 1
            }
            worker.allocation = nil
        }
        worker.status = status
        worker.endedMilliseconds = time
        state.workers.live[worker.id] = nil
        state.workers.queue.removeAll { $0 == worker.id }
        state.workers.recent.append(worker)
        if state.workers.recent.count > WorkerState.recentLimit {
            state.workers.recent.removeFirst(state.workers.recent.count - WorkerState.recentLimit)
        }
        state.workers.endedCounts[status, default: 0] += 1
    }

    /// The outcome for a worker that is not live, for the record at `position`: ended (a normal
    /// "no") when its id was issued before that record, otherwise never created.
    private static func unknown(_ id: String, before position: JournalPosition, _ workers: WorkerState) -> Outcome {
        if IssuedID.issued(id, .worker, before: position, counted: workers.issued) {
            return .refused("\(id) has already ended")
        }
        return .rejected("no worker \(id)")
    }

    static func millis(_ value: Int64) -> String { Values.thousandths(value) }
}
