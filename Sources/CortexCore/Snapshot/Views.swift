/// The files people and `jq` read. They keep Cortex 1.0's names and field names
/// (docs/cli.md: `allocated` = `in_use` = reserved tokens, `available` = total - spent - allocated).
public enum Views {
    /// A view's `version`: how many records of its kind (budget records for `token-budget.json`
    /// and `token-allocations.json`, task records for `task-queue.json`, worker records for
    /// `worker-pool.json`); the same in every process for the same journal prefix, and unchanged by
    /// records of the other kinds. Found as the top-level key of the pretty-printed file: a newline,
    /// two spaces, then `"version": `. A string value cannot hold a raw newline, so no name a user
    /// chose (a worker's command, a holder) can pass for it. Keys are sorted, so in every view but
    /// `worker-pool.json` (whose `workers` sort after it) it is near the end: the caller reads the
    /// last `Views.tailBytes(forWorkerView:)` bytes.
    public static func coverage(inTail tail: [UInt8]) -> Int64? {
        let key = Array("\n  \"version\": ".utf8)
        guard tail.count >= key.count else { return nil }
        var index = tail.count - key.count
        while index >= 0 {
            if tail[index] == key[0] && tail[(index + 1)..<(index + key.count)].elementsEqual(key[1...]) { break }
            index -= 1
        }
        guard index >= 0 else { return nil }
        var value: Int64 = 0
        var position = index + key.count
        var digits = 0
        while position < tail.count, digits < 18, (0x30...0x39).contains(tail[position]) {
            value = value * 10 + Int64(tail[position] - 0x30)
            position += 1
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    /// How many of a view's last bytes hold its `version`: 4 KiB, or 1 MiB for `worker-pool.json`,
    /// whose `workers` list follows it (26 KiB at 100 workers). Reading that much costs far less than
    /// rendering and rewriting the view, which a missed `version` would cause on every call.
    public static func tailBytes(forWorkerView isWorkerView: Bool) -> Int { isWorkerView ? 1 << 20 : 4096 }

    /// `token-budget.json`: the totals, which cost the same to write however many allocations
    /// are outstanding (the list is `token-allocations.json`, docs/decisions/042).
    public static func budget(_ state: CortexState, nowMilliseconds: Int64) -> JSONValue {
        let budget = state.budget
        var tenantNames = Set(budget.quotas.keys)
        tenantNames.formUnion(budget.tenantSpent.keys)
        tenantNames.formUnion(budget.tenantReserved.keys)
        let tenants = tenantNames.sorted().map { tenant in
            let quota = budget.quotas[tenant]
            let held = budget.held(byTenant: tenant)
            return JSONMember(
                tenant,
                .object([
                    "available": .optional(quota.map { max(0, $0 - held) }), "quota": .optional(quota),
                    "reserved": .int(budget.tenantReserved[tenant, default: 0]), "spent": .int(budget.tenantSpent[tenant, default: 0]),
                ]))
        }
        return .object([
            "allocated": .int(budget.reserved),
            "available": .int(budget.available),
            "in_use": .int(budget.reserved),
            "outstanding_allocations": .int(Int64(budget.allocations.count)),
            "period": .int(budget.period),
            "period_started_at": .optional(budget.periodStartedMilliseconds.map { ISOTime.format(milliseconds: $0) }),
            "spent": .int(budget.spent),
            "tenants": .object(tenants),
            "total_budget": .int(budget.total),
            "updated_at": .string(ISOTime.format(milliseconds: nowMilliseconds)),
            "version": .int(budget.version),
        ])
    }

    /// `token-allocations.json`: every outstanding allocation in the order granted, with the
    /// tokens they hold together (`allocated`), so the file agrees with itself whenever it is read.
    public static func allocations(_ state: CortexState, nowMilliseconds: Int64) -> JSONValue {
        let budget = state.budget
        let allocations = IssuedID.sortedInIssueOrder(budget.allocations.values, .allocation, id: \.id).map { allocation in
            JSONValue.object([
                "allocated_at": .string(ISOTime.format(milliseconds: allocation.grantedMilliseconds)),
                "holder": .optional(allocation.holder), "id": .string(allocation.id),
                "lease_expires_at": .optional(allocation.leaseEndsMilliseconds.map { ISOTime.format(milliseconds: $0) }),
                "run": .optional(allocation.run), "task": .optional(allocation.task), "tenant": .optional(allocation.tenant),
                "tokens": .int(allocation.tokens), "worker": .optional(allocation.worker),
            ])
        }
        return .object([
            "allocated": .int(budget.reserved),
            "allocations": .array(allocations),
            "count": .int(Int64(allocations.count)),
            "updated_at": .string(ISOTime.format(milliseconds: nowMilliseconds)),
            "version": .int(budget.version),
        ])
    }

    /// Up to this many outstanding allocations, `token-allocations.json` is rewritten by every
    /// budget call (it stays small); above, at most once per `allocationsViewInterval`.
    public static let allocationsAlwaysListed = 100

    /// How often, at most, a large `token-allocations.json` is rewritten (milliseconds).
    public static let allocationsViewIntervalMilliseconds: Int64 = 1000

    /// How many waiting tasks `task-queue.json` lists (the next ones in claim order); `counts` has
    /// the totals and `cortex-task list` every task. Bounded so a view costs the same to write
    /// with 100 or 100,000 tasks waiting.
    public static let listedPendingTasks = 100

    /// `task-queue.json`: the next pending tasks in claim order (failed ones awaiting their retry
    /// among them), running tasks with worker and attempt, and counts by status.
    public static func taskQueue(_ state: CortexState, nowMilliseconds: Int64) -> JSONValue {
        let tasks = state.tasks
        let counts = tasks.counts
        let waiting = tasks.waiting(limit: listedPendingTasks).map { task in
            JSONValue.object([
                "attempt": .int(task.attempt), "created_at": .string(ISOTime.format(milliseconds: task.createdMilliseconds)),
                "description": .optional(task.spec.description), "id": .string(task.id),
                "last_error": .optional(task.lastError), "priority": .string(task.spec.priority.rawValue),
                "requires": task.spec.requires.isEmpty ? nil : .array(task.spec.requires.map { .string($0) }),
                "retry_at": .optional(task.notBeforeMilliseconds.map { ISOTime.format(milliseconds: $0) }),
                "status": .string(task.status.rawValue), "tenant": .optional(task.spec.tenant), "type": .string(task.spec.type),
            ])
        }
        let running = tasks.running.map { task in
            JSONValue.object([
                "attempt": .int(task.attempt), "claim": .int(task.attempt),
                "claimed_at": .optional(task.claimedMilliseconds.map { ISOTime.format(milliseconds: $0) }),
                "id": .string(task.id), "priority": .string(task.spec.priority.rawValue), "type": .string(task.spec.type),
                "worker": .optional(task.worker),
            ])
        }
        return .object([
            "counts": .object(TaskStatus.allCases.map { JSONMember($0.rawValue, .int(counts[$0, default: 0])) }),
            // Cortex 1.0's name for the number of done tasks, kept so a 1.0 `jq .done` reads the same.
            "done": .int(counts[.done, default: 0]),
            "pending": .array(waiting),
            "pending_listed": .int(waiting.count),
            "running": .array(running),
            "total_created": .int(tasks.created),
            "updated_at": .string(ISOTime.format(milliseconds: nowMilliseconds)),
            "version": .int(tasks.version),
        ])
    }

    /// `worker-pool.json`: capacity, supervised workers (live ones, then the last ones that ended)
    /// with state, pid, start time, task, tokens, restarts, last exit and heartbeat age, and the
    /// spawn queue in order. `heartbeatAge` reads a worker's heartbeat file age in seconds (the
    /// one environment fact of a view; the file is the heartbeat, docs/design.md). Where hosts
    /// share the journal, `capacity` is host `host`'s (its workers against its `max_workers`).
    public static func workerPool(
        _ state: CortexState, maxWorkers: Int, host: String? = nil, nowMilliseconds: Int64, heartbeatAge: (String) -> Double?
    ) -> JSONValue {
        let workers = state.workers
        func row(_ worker: WorkerEntry) -> JSONValue {
            JSONValue.object([
                "allocation": .optional(worker.allocation), "command": .array(worker.spec.command.map { .string($0) }),
                "ended_at": .optional(worker.endedMilliseconds.map { ISOTime.format(milliseconds: $0) }),
                "exit_code": worker.lastExit.flatMap { exit in
                    if case .exited(let code) = exit { return JSONValue.int(Int64(code)) }
                    return nil
                },
                "host": .optional(worker.spec.host),
                "heartbeat_age_s": worker.status.holdsCapacity ? heartbeatAge(worker.id).map { .double(($0 * 10).rounded() / 10) } : nil,
                "id": .string(worker.id), "pid": worker.process.map { .int(Int64($0.pid)) },
                "queued_reason": .optional(worker.queuedReason), "restarts": .int(worker.restarts),
                "signal": worker.lastExit.flatMap { exit in
                    if case .signaled(let signal) = exit { return JSONValue.int(Int64(signal.rawValue)) }
                    return nil
                },
                "start_ticks": worker.process.map { .int(Int64($0.startTicks)) },
                "started_at": .optional(worker.startedMilliseconds.map { ISOTime.format(milliseconds: $0) }),
                "state": .string(worker.status.rawValue), "supervisor_pid": worker.supervisor.map { .int(Int64($0.pid)) },
                "task": .optional(worker.spec.task), "timed_out": worker.timedOut ? .bool(true) : nil,
                "tokens": .optional(worker.spec.tokens), "type": .string(worker.spec.type),
            ])
        }
        let active = workers.active(on: host)
        var byType: [String: Int64] = [:]
        for worker in active { byType[worker.spec.type, default: 0] += 1 }
        return .object([
            "capacity": .object([
                "available": .int(Int64(max(0, maxWorkers - active.count))), "max_workers": .int(Int64(maxWorkers)),
                "running": .int(Int64(active.count)),
                "by_type": .object(byType.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) }),
            ]),
            "counts": .object(
                workers.counts.sorted { $0.key.rawValue < $1.key.rawValue }.map { JSONMember($0.key.rawValue, .int($0.value)) }),
            "queued": .array(workers.queue.compactMap { workers.live[$0] }.map(row)),
            "recent": .array(workers.recent.reversed().map(row)),
            "updated_at": .string(ISOTime.format(milliseconds: nowMilliseconds)),
            "version": .int(workers.version),
            "workers": .array(workers.all.filter { $0.status != .queued }.map(row)),
        ])
    }
}
