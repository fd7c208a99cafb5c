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

    /// Reads a task written by `json`.
    public init(json: JSONValue) throws(CortexError) {
        guard let id = json["id"]?.stringValue, let number = json["number"]?.intValue,
            let status = json["status"]?.stringValue.flatMap(TaskStatus.init(rawValue:)),
            let created = json["created_ms"]?.intValue
        else { throw .corrupt("task entry without id, number, status or created_ms") }
        let spec: TaskSpec
        do {
            guard case .taskCreate(let decoded)? = try Event.decode(kind: "task.create", data: json) else {
                throw CortexError.corrupt("task \(id) has no spec")
            }
            spec = decoded
        } catch let error as EventDecodingError {
            throw .corrupt("task \(id): \(error.reason)")
        } catch {
            throw .corrupt("task \(id) has no spec")
        }
        self.init(id: id, number: number, spec: spec, status: status, createdMilliseconds: created)
        attempt = json["attempt"]?.intValue ?? 0
        worker = json["worker"]?.stringValue
        claimedMilliseconds = json["claimed_ms"]?.intValue
        finishedMilliseconds = json["finished_ms"]?.intValue
        notBeforeMilliseconds = json["not_before_ms"]?.intValue
        lastError = json["last_error"]?.stringValue
        result = json["result"]?.stringValue
        tokensUsed = json["tokens_used"]?.intValue
    }
}
