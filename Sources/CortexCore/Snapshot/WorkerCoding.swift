/// Workers as JSON: snapshots, `cortex worker show --json`, `worker-pool.json`.
extension WorkerEntry {
    /// The worker as JSON.
    public var json: JSONValue {
        .object([
            "allocation": .optional(allocation), "end_record": .optional(endRecord), "ended_ms": .optional(endedMilliseconds),
            "id": .string(id),
            "last_exit": lastExit?.json ?? .null, "launch_record": .optional(launchRecord),
            "limit_reached": .optional(limitReached?.rawValue), "lost_reason": .optional(lostReason),
            "process": process?.json ?? .null, "queued_reason": .optional(queuedReason),
            "requested_ms": .int(requestedMilliseconds), "restarts": .int(restarts), "spec": spec.json,
            "started_ms": .optional(startedMilliseconds), "status": .string(status.rawValue),
            "supervisor": supervisor?.json ?? .null, "timed_out": .bool(timedOut),
        ])
    }

    /// Reads a worker written by `json`.
    public init(json: JSONValue) throws(CortexError) {
        guard let id = json["id"]?.stringValue, let specJSON = json["spec"], let spec = WorkerSpec(json: specJSON),
            let status = json["status"]?.stringValue.flatMap(WorkerStatus.init(rawValue:)),
            let requested = json["requested_ms"]?.intValue, Limits.isRecordTime(requested),
            let restarts = json["restarts"].snapshotCount(default: 0), let started = json["started_ms"].snapshotOptionalTime(),
            let ended = json["ended_ms"].snapshotOptionalTime()
        else { throw .corrupt("worker entry without id, spec, status or requested_ms, or with a number out of range") }
        self.init(id: id, spec: spec, status: status, requestedMilliseconds: requested)
        queuedReason = json["queued_reason"]?.stringValue
        allocation = json["allocation"]?.stringValue
        launchRecord = json["launch_record"]?.stringValue
        supervisor = json["supervisor"].flatMap(ProcessIdentity.init(json:))
        process = json["process"].flatMap(ProcessIdentity.init(json:))
        startedMilliseconds = started
        self.restarts = restarts
        lastExit = json["last_exit"].flatMap(TerminationStatus.init(json:))
        timedOut = json["timed_out"]?.boolValue ?? false
        limitReached = json["limit_reached"]?.stringValue.flatMap(WorkerLimit.init(rawValue:))
        endedMilliseconds = ended
        lostReason = json["lost_reason"]?.stringValue
        endRecord = json["end_record"]?.stringValue
    }
}

extension WorkerState {
    /// The whole worker state (bounded: live workers and the last `recentLimit` ended).
    var json: JSONValue {
        .object([
            "ended_counts": .object(
                endedCounts.sorted { $0.key.rawValue < $1.key.rawValue }.map { JSONMember($0.key.rawValue, .int($0.value)) }),
            "issued": .int(issued), "live": .array(all.map(\.json)),
            "owed_replacements": .array(
                owedReplacements.map {
                    .object(["leftover": .array($0.leftover.map(\.json)), "spec": $0.spec.json, "worker": .string($0.worker)])
                }),
            "queue": .array(queue.map { .string($0) }),
            "recent": .array(recent.map(\.json)),
            "tenant_limits": .object(tenantLimits.sorted { $0.key < $1.key }.map { JSONMember($0.key, $0.value.json) }),
            "version": .int(version),
        ])
    }

    init(json: JSONValue) throws(CortexError) {
        self.init()
        guard let version = json["version"].snapshotCount(default: 0), let issued = json["issued"].snapshotCount(default: 0) else {
            throw .corrupt("snapshot workers with a count out of range")
        }
        self.version = version
        self.issued = issued
        for item in json["live"]?.arrayValue ?? [] {
            let worker = try WorkerEntry(json: item)
            live[worker.id] = worker
        }
        queue = (json["queue"]?.arrayValue ?? []).compactMap(\.stringValue)
        for item in json["owed_replacements"]?.arrayValue ?? [] {
            guard let worker = item["worker"]?.stringValue, let spec = item["spec"].flatMap(WorkerSpec.init(json:)) else {
                throw .corrupt("owed replacement without worker or spec")
            }
            let leftover = (item["leftover"]?.arrayValue ?? []).compactMap(ProcessIdentity.init(json:))
            owedReplacements.append(OwedReplacement(worker: worker, spec: spec, leftover: leftover))
        }
        recent = try (json["recent"]?.arrayValue ?? []).map { (item) throws(CortexError) in try WorkerEntry(json: item) }
        for member in json["ended_counts"]?.objectMembers ?? [] {
            guard let count = Optional(member.value).snapshotCount() else { throw .corrupt("snapshot worker count out of range") }
            if let status = WorkerStatus(rawValue: member.key) { endedCounts[status] = count }
        }
        for member in json["tenant_limits"]?.objectMembers ?? [] {
            let limits = member.value
            func limit(_ key: String) throws(CortexError) -> Int64? {
                guard let raw = limits[key], raw != .null else { return nil }
                guard let value = Optional(raw).snapshotCount() else { throw .corrupt("snapshot tenant limit out of range") }
                return value
            }
            tenantLimits[member.key] = TenantLimits(
                maxWorkers: try limit("max_workers"), cpuMillicores: try limit("cpu_millicores"), memoryBytes: try limit("memory_bytes"))
        }
    }
}
