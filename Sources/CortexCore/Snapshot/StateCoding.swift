/// The state as JSON for `state/snapshot.json`, and back. Loading rebuilds the derived totals,
/// so a snapshot cannot carry a total that disagrees with its allocations.
extension CortexState {
    /// The whole state as JSON.
    public var json: JSONValue {
        .object([
            "budget": budget.json, "last_record_ms": .int(lastRecordMilliseconds), "records_folded": .int(recordsFolded),
            "tasks": tasks.json,
        ])
    }

    /// Reads a state written by `json`.
    /// - Throws: `CortexError.corrupt` when a field is missing or of the wrong type.
    public init(json: JSONValue) throws(CortexError) {
        self.init()
        guard let budgetJSON = json["budget"] else { throw .corrupt("snapshot state has no budget") }
        budget = try BudgetState(json: budgetJSON)
        if let tasksJSON = json["tasks"] { tasks = try TaskState(json: tasksJSON) }
        recordsFolded = json["records_folded"]?.intValue ?? 0
        lastRecordMilliseconds = json["last_record_ms"]?.intValue ?? 0
    }
}

extension BudgetState {
    var json: JSONValue {
        .object([
            "allocations": .array(allocations.values.sorted { $0.id < $1.id }.map(\.json)),
            "allocations_issued": .int(allocationsIssued),
            "period": .int(period),
            "period_started_ms": .optional(periodStartedMilliseconds),
            "quotas": .object(quotas.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) }),
            "spent": .int(spent),
            "tenant_spent": .object(tenantSpent.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) }),
            "total": .int(total),
            "version": .int(version),
        ])
    }

    init(json: JSONValue) throws(CortexError) {
        self.init()
        func count(_ key: String) throws(CortexError) -> Int64 {
            guard let value = json[key]?.intValue else { throw .corrupt("snapshot budget has no '\(key)'") }
            return value
        }
        total = try count("total")
        version = json["version"]?.intValue ?? 0
        spent = try count("spent")
        period = try count("period")
        allocationsIssued = try count("allocations_issued")
        periodStartedMilliseconds = json["period_started_ms"]?.intValue
        for member in json["quotas"]?.objectMembers ?? [] { quotas[member.key] = member.value.intValue ?? 0 }
        for member in json["tenant_spent"]?.objectMembers ?? [] { tenantSpent[member.key] = member.value.intValue ?? 0 }
        for item in json["allocations"]?.arrayValue ?? [] {
            guard let id = item["id"]?.stringValue, let tokens = item["tokens"]?.intValue else {
                throw .corrupt("snapshot allocation without id or tokens")
            }
            insert(
                Allocation(
                    id: id, tokens: tokens, holder: item["holder"]?.stringValue, task: item["task"]?.stringValue,
                    tenant: item["tenant"]?.stringValue, grantedMilliseconds: item["granted_ms"]?.intValue ?? 0))
        }
    }
}

extension Allocation {
    var json: JSONValue {
        .object([
            "granted_ms": .int(grantedMilliseconds), "holder": .optional(holder), "id": .string(id),
            "task": .optional(task), "tenant": .optional(tenant), "tokens": .int(tokens),
        ])
    }
}

extension TaskState {
    var json: JSONValue {
        .object([
            "active": .array(active.values.sorted { $0.number < $1.number }.map(\.json)),
            "created": .int(created),
            "finished": .array(finished.map(\.json)),
            "finished_counts": .object(
                finishedCounts.sorted { $0.key.rawValue < $1.key.rawValue }.map { JSONMember($0.key.rawValue, .int($0.value)) }),
            "keys": .object(
                keys.sorted { $0.key < $1.key }.map {
                    JSONMember(
                        $0.key,
                        .object(["finished_ms": .optional($0.value.finishedMilliseconds), "task": .string($0.value.task)]))
                }),
            "version": .int(version),
        ])
    }

    init(json: JSONValue) throws(CortexError) {
        self.init()
        guard let created = json["created"]?.intValue else { throw .corrupt("snapshot tasks have no 'created'") }
        version = json["version"]?.intValue ?? 0
        self.created = created
        for item in json["active"]?.arrayValue ?? [] {
            let entry = try TaskEntry(json: item)
            active[entry.id] = entry
        }
        finished = try (json["finished"]?.arrayValue ?? []).map { (item) throws(CortexError) in try TaskEntry(json: item) }
        for member in json["finished_counts"]?.objectMembers ?? [] {
            if let status = TaskStatus(rawValue: member.key) { finishedCounts[status] = member.value.intValue ?? 0 }
        }
        for member in json["keys"]?.objectMembers ?? [] {
            guard let task = member.value["task"]?.stringValue else { throw .corrupt("snapshot key without task") }
            keys[member.key] = KeyEntry(task: task, finishedMilliseconds: member.value["finished_ms"]?.intValue)
        }
        rebuildQueue()
    }
}

extension TaskEntry {
    /// The task as JSON (snapshots, `results/`-side task files, `cortex-task show --json`).
    public var json: JSONValue {
        var members = Event.taskCreate(spec).data.objectMembers ?? []
        members +=
            JSONValue.object([
                "attempt": .int(attempt), "claimed_ms": .optional(claimedMilliseconds), "created_ms": .int(createdMilliseconds),
                "finished_ms": .optional(finishedMilliseconds), "id": .string(id), "last_error": .optional(lastError),
                "not_before_ms": .optional(notBeforeMilliseconds), "number": .int(number), "result": .optional(result),
                "status": .string(status.rawValue), "tokens_used": .optional(tokensUsed), "worker": .optional(worker),
            ]).objectMembers ?? []
        return .object(members)
    }

    /// Reads a task written by `json`, in one pass over its members (snapshots hold every
    /// pending task and every call loads them, so this is on the hot path).
    public init(json: JSONValue) throws(CortexError) {
        guard let members = json.objectMembers else { throw .corrupt("task entry is not an object") }
        var id: String?
        var number: Int64?
        var status: TaskStatus?
        var created: Int64?
        var type: String?
        var spec = TaskSpec(type: "")
        var entry = TaskEntry(id: "", number: 0, spec: spec, status: .pending, createdMilliseconds: 0)
        for member in members {
            let value = member.value
            switch member.key {
            case "id": id = value.stringValue
            case "number": number = value.intValue
            case "status": status = value.stringValue.flatMap(TaskStatus.init(rawValue:))
            case "created_ms": created = value.intValue
            case "type": type = value.stringValue
            case "description": spec.description = value.stringValue
            case "priority":
                guard let priority = value.stringValue.flatMap(Priority.init(rawValue:)) else {
                    throw .corrupt("task entry with an unknown priority")
                }
                spec.priority = priority
            case "tokens": spec.tokens = value.intValue
            case "timeout_ms": spec.timeoutMilliseconds = value.intValue
            case "max_attempts": spec.maxAttempts = value.intValue ?? 3
            case "requires": spec.requires = value.arrayValue?.compactMap(\.stringValue) ?? []
            case "tenant": spec.tenant = value.stringValue
            case "key": spec.key = value.stringValue
            case "context": spec.context = value.stringValue
            case "backoff_ms": spec.backoffMilliseconds = value.intValue ?? 1000
            case "attempt": entry.attempt = value.intValue ?? 0
            case "worker": entry.worker = value.stringValue
            case "claimed_ms": entry.claimedMilliseconds = value.intValue
            case "finished_ms": entry.finishedMilliseconds = value.intValue
            case "not_before_ms": entry.notBeforeMilliseconds = value.intValue
            case "last_error": entry.lastError = value.stringValue
            case "result": entry.result = value.stringValue
            case "tokens_used": entry.tokensUsed = value.intValue
            default: break
            }
        }
        guard let id, let number, let status, let created, let type else {
            throw .corrupt("task entry without id, number, status, created_ms or type")
        }
        spec.type = type
        entry.id = id
        entry.number = number
        entry.status = status
        entry.createdMilliseconds = created
        entry.spec = spec
        self = entry
    }
}
