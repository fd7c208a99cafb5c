/// The files people and `jq` read. They keep Cortex 1.0's names and field names
/// (SPEC.md: `allocated` = `in_use` = reserved tokens, `available` = total - spent - allocated).
public enum Views {
    /// A view's `version`: how many records of its kind (budget records for `token-budget.json`,
    /// task records for `task-queue.json`) it reflects; the same in every process for the same
    /// journal prefix, and unchanged by records of the other kind. Keys are sorted, so `version`
    /// is always the last key of a view and can be read from the file's last bytes.
    public static func coverage(inTail tail: [UInt8]) -> Int64? {
        let key = Array("\"version\": ".utf8)
        guard tail.count >= key.count else { return nil }
        var index = tail.count - key.count
        while index >= 0 {
            if tail[index] == key[0] && Array(tail[index..<(index + key.count)]) == key { break }
            index -= 1
        }
        guard index >= 0 else { return nil }
        var value: Int64 = 0
        var position = index + key.count
        var digits = 0
        while position < tail.count, (0x30...0x39).contains(tail[position]) {
            value = value * 10 + Int64(tail[position] - 0x30)
            position += 1
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    /// `token-budget.json`.
    public static func budget(_ state: CortexState, nowMilliseconds: Int64) -> JSONValue {
        let budget = state.budget
        let allocations = budget.allocations.values.sorted { $0.id < $1.id }.map { allocation in
            JSONValue.object([
                "allocated_at": .string(ISOTime.format(milliseconds: allocation.grantedMilliseconds)),
                "holder": .optional(allocation.holder), "id": .string(allocation.id), "task": .optional(allocation.task),
                "tenant": .optional(allocation.tenant), "tokens": .int(allocation.tokens),
            ])
        }
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
            "allocations": .array(allocations),
            "available": .int(budget.available),
            "in_use": .int(budget.reserved),
            "period": .int(budget.period),
            "period_started_at": .optional(budget.periodStartedMilliseconds.map { ISOTime.format(milliseconds: $0) }),
            "spent": .int(budget.spent),
            "tenants": .object(tenants),
            "total_budget": .int(budget.total),
            "updated_at": .string(ISOTime.format(milliseconds: nowMilliseconds)),
            "version": .int(budget.version),
        ])
    }

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
            "pending": .array(waiting),
            "pending_listed": .int(waiting.count),
            "running": .array(running),
            "total_created": .int(tasks.created),
            "updated_at": .string(ISOTime.format(milliseconds: nowMilliseconds)),
            "version": .int(tasks.version),
        ])
    }
}
