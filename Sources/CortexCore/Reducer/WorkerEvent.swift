/// Records about supervised workers (`cortex-spawn`, its supervisors, `cortex worker`, the reaper).
public enum WorkerEvent: Equatable, Sendable {
    /// `worker.spawn`: start a worker if feasible now, else queue it (or refuse when `queue` is false).
    case spawn(WorkerSpec, queue: Bool, evidence: MachineEvidence)
    /// `worker.supervise`: a supervisor takes charge of a starting worker; the first one wins.
    case supervise(worker: String, supervisor: ProcessIdentity)
    /// `worker.started`: the supervisor started the worker's process.
    case started(worker: String, supervisor: ProcessIdentity, process: ProcessIdentity)
    /// `worker.exited`: the worker's process ended; the fold decides whether it restarts.
    /// `limit` is the limit the run reached, if any (docs/decisions/043-enforced-worker-limits.md).
    case exited(
        worker: String, supervisor: ProcessIdentity, exit: TerminationStatus, timedOut: Bool, tokensUsed: Int64?,
        evidence: MachineEvidence, limit: WorkerLimit? = nil)
    /// `worker.stop`: drain the worker (or drop it from the spawn queue).
    case stop(worker: String)
    /// `worker.promote`: start queued workers that fit now (the reaper, after losses).
    case promote(evidence: MachineEvidence)
    /// `worker.replace`: spawn the replacement a lost pool member is owed (the reaper). The first
    /// such record for a lost worker wins; later ones change nothing.
    case replace(worker: String, evidence: MachineEvidence)
    /// `worker.cancel-replacement`: the replacement lost worker `worker` is owed is never spawned
    /// (`cortex pool stop`). Refused when none is owed (never lost, or already replaced).
    case cancelReplacement(worker: String)
    /// `worker.tenant-limit`: tenant `tenant`'s hardware quota (its spawns' `--tenant`) over every
    /// host (`cortex-budget quota --max-workers --cpu --memory`); the record holds all of it, and
    /// empty limits lift the quota.
    case tenantLimit(tenant: String, limits: TenantLimits)

    /// The record kind.
    public var kind: String {
        switch self {
        case .spawn: "worker.spawn"
        case .supervise: "worker.supervise"
        case .started: "worker.started"
        case .exited: "worker.exited"
        case .stop: "worker.stop"
        case .promote: "worker.promote"
        case .replace: "worker.replace"
        case .cancelReplacement: "worker.cancel-replacement"
        case .tenantLimit: "worker.tenant-limit"
        }
    }

    /// The record payload.
    public var data: JSONValue {
        switch self {
        case .spawn(let spec, let queue, let evidence):
            .object(["evidence": evidence.json, "queue": .bool(queue), "spec": spec.json])
        case .supervise(let worker, let supervisor): .object(["supervisor": supervisor.json, "worker": .string(worker)])
        case .started(let worker, let supervisor, let process):
            .object(["process": process.json, "supervisor": supervisor.json, "worker": .string(worker)])
        case .exited(let worker, let supervisor, let exit, let timedOut, let tokensUsed, let evidence, let limit):
            .object([
                "evidence": evidence.json, "exit": exit.json, "limit": .optional(limit?.rawValue), "supervisor": supervisor.json,
                "timed_out": .bool(timedOut),
                "tokens_used": .optional(tokensUsed), "worker": .string(worker),
            ])
        case .stop(let worker): .object(["worker": .string(worker)])
        case .promote(let evidence): .object(["evidence": evidence.json])
        case .replace(let worker, let evidence): .object(["evidence": evidence.json, "worker": .string(worker)])
        case .cancelReplacement(let worker): .object(["worker": .string(worker)])
        case .tenantLimit(let tenant, let limits):
            .object((limits.json.objectMembers ?? []) + [JSONMember("tenant", .string(tenant))])
        }
    }

    /// Decodes a `worker.*` record (nil for a kind this version does not know).
    public static func decode(kind: String, data: JSONValue) throws(EventDecodingError) -> WorkerEvent? {
        func worker() throws(EventDecodingError) -> String {
            guard let id = data["worker"]?.stringValue else { throw EventDecodingError("\(kind): 'worker' must be a string") }
            return id
        }
        func identity(_ key: String) throws(EventDecodingError) -> ProcessIdentity {
            guard let json = data[key], let identity = ProcessIdentity(json: json) else {
                throw EventDecodingError("\(kind): '\(key)' must be {pid, start_ticks}")
            }
            return identity
        }
        func evidence() throws(EventDecodingError) -> MachineEvidence {
            guard let json = data["evidence"], let evidence = MachineEvidence(json: json) else {
                throw EventDecodingError("\(kind): 'evidence' is missing or malformed")
            }
            return evidence
        }
        func tokensUsed() throws(EventDecodingError) -> Int64? {
            guard let raw = data["tokens_used"], raw != .null else { return nil }
            guard let value = raw.intValue, value >= 0, value <= Limits.maximumTokens else {
                throw EventDecodingError("\(kind): 'tokens_used' must be a whole number from 0 to \(Limits.maximumTokens)")
            }
            return value
        }
        switch kind {
        case "worker.spawn":
            guard let json = data["spec"], let spec = WorkerSpec(json: json) else {
                throw EventDecodingError("worker.spawn: 'spec' is missing or malformed")
            }
            return .spawn(spec, queue: data["queue"]?.boolValue ?? true, evidence: try evidence())
        case "worker.supervise": return .supervise(worker: try worker(), supervisor: try identity("supervisor"))
        case "worker.started":
            return .started(worker: try worker(), supervisor: try identity("supervisor"), process: try identity("process"))
        case "worker.exited":
            guard let json = data["exit"], let exit = TerminationStatus(json: json) else {
                throw EventDecodingError("worker.exited: 'exit' must be {exit_code} or {signal}")
            }
            var limit: WorkerLimit?
            if let raw = data["limit"], raw != .null {
                guard let kind = raw.stringValue.flatMap(WorkerLimit.init(rawValue:)) else {
                    throw EventDecodingError("worker.exited: 'limit' must be memory, pids or cpu")
                }
                limit = kind
            }
            return .exited(
                worker: try worker(), supervisor: try identity("supervisor"), exit: exit,
                timedOut: data["timed_out"]?.boolValue ?? false, tokensUsed: try tokensUsed(),
                evidence: try evidence(), limit: limit)
        case "worker.stop": return .stop(worker: try worker())
        case "worker.promote": return .promote(evidence: try evidence())
        case "worker.replace": return .replace(worker: try worker(), evidence: try evidence())
        case "worker.cancel-replacement": return .cancelReplacement(worker: try worker())
        case "worker.tenant-limit":
            guard let tenant = data["tenant"]?.stringValue, !tenant.isEmpty else {
                throw EventDecodingError("worker.tenant-limit: 'tenant' must be a non-empty string")
            }
            func limit(_ key: String, atMost most: Int64) throws(EventDecodingError) -> Int64? {
                guard let raw = data[key], raw != .null else { return nil }
                guard let value = raw.intValue, value >= 0, value <= most else {
                    throw EventDecodingError("worker.tenant-limit: '\(key)' must be a whole number from 0 to \(most)")
                }
                return value
            }
            return .tenantLimit(
                tenant: tenant,
                limits: TenantLimits(
                    maxWorkers: try limit("max_workers", atMost: Limits.maximumCount),
                    cpuMillicores: try limit("cpu_millicores", atMost: Limits.maximumCPUMillicores),
                    memoryBytes: try limit("memory_bytes", atMost: Limits.maximumSizeBytes)))
        default: return nil
        }
    }
}

extension WorkerSpec {
    /// The spec as JSON (records, snapshots).
    public var json: JSONValue {
        .object([
            "command": .array(command.map { .string($0) }), "cpu_millicores": .optional(cpuMillicores),
            "grace_ms": .int(graceMilliseconds), "log_head_bytes": .int(logHeadBytes), "log_tail_bytes": .int(logTailBytes),
            "memory_bytes": .optional(memoryBytes), "path": .optional(path), "pids": .optional(pids), "pool": .optional(pool),
            "request": .optional(request),
            "restart": .string(restart.rawValue),
            "task": .optional(task), "tenant": .optional(tenant), "timeout_ms": .optional(timeoutMilliseconds),
            "tokens": .optional(tokens), "type": .string(type), "host": .optional(host),
            "unreported_tokens": unreportedTokens == .reserved ? nil : .string(unreportedTokens.rawValue),
            "workdir": .optional(workingDirectory),
        ])
    }

    /// Reads a spec written by `json`; nil when malformed.
    public init?(json: JSONValue) {
        guard let type = json["type"]?.stringValue, let items = json["command"]?.arrayValue else { return nil }
        let command = items.compactMap(\.stringValue)
        guard command.count == items.count, !command.isEmpty,
            let restart = RestartPolicy(rawValue: json["restart"]?.stringValue ?? "never")
        else { return nil }
        // A number out of its range makes the spec malformed (docs/journal-format.md, "Limits").
        var malformed = false
        func count(_ key: String, atMost limit: Int64) -> Int64? {
            guard let raw = json[key], raw != .null else { return nil }
            guard let value = raw.intValue, value >= 0, value <= limit else {
                malformed = true
                return nil
            }
            return value
        }
        let duration = Limits.maximumDurationMilliseconds
        let size = Limits.maximumSizeBytes
        self.init(
            type: type, command: command, task: json["task"]?.stringValue, tokens: count("tokens", atMost: Limits.maximumTokens),
            tenant: json["tenant"]?.stringValue, cpuMillicores: count("cpu_millicores", atMost: Limits.maximumCPUMillicores),
            memoryBytes: count("memory_bytes", atMost: size), timeoutMilliseconds: count("timeout_ms", atMost: duration),
            graceMilliseconds: count("grace_ms", atMost: duration) ?? 10_000, restart: restart,
            logHeadBytes: count("log_head_bytes", atMost: size) ?? 10 * 1024,
            logTailBytes: count("log_tail_bytes", atMost: size) ?? 30 * 1024,
            workingDirectory: json["workdir"]?.stringValue, path: json["path"]?.stringValue,
            request: json["request"]?.stringValue, pool: json["pool"]?.stringValue)
        if let raw = json["pids"], raw != .null {
            guard let value = raw.intValue, value >= 1, value <= Limits.maximumPIDs else { return nil }
            pids = value
        }
        if let raw = json["host"], raw != .null {
            guard let host = raw.stringValue, EtcdSettings.isValidName(host) else { return nil }
            self.host = host
        }
        if let raw = json["unreported_tokens"], raw != .null {
            guard let rule = raw.stringValue.flatMap(UnreportedTokens.init(rawValue:)) else { return nil }
            unreportedTokens = rule
        }
        if malformed { return nil }
    }
}

extension MachineEvidence {
    /// The evidence as JSON.
    public var json: JSONValue {
        var members: [JSONMember] = [
            JSONMember("cores", .int(cores)), JSONMember("load_millis", .int(loadMillis)),
            JSONMember("max_load_per_core_millis", .int(maxLoadPerCoreMillis)), JSONMember("max_workers", .int(maxWorkers)),
            JSONMember("memory_available", .int(memoryAvailableBytes)),
            JSONMember("type_limits", .object(typeLimits.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) })),
        ]
        // Written only where the kernel reports pressure, so such records are judged by it and
        // records without it (older ones, kernels without PSI) by the load, as they always were.
        if let cpuPressureMillis {
            members.append(JSONMember("cpu_pressure_millis", .int(cpuPressureMillis)))
            members.append(JSONMember("max_cpu_pressure_millis", .int(maxCPUPressureMillis)))
        }
        // Only where the journal is shared by hosts, so a file folder's records stay as they were.
        if let host { members.append(JSONMember("host", .string(host))) }
        return .object(members)
    }

    /// Reads evidence written by `json`; nil when malformed.
    public init?(json: JSONValue) {
        func count(_ value: JSONValue?) -> Int64? {
            guard let number = value?.intValue, number >= 0, number <= Limits.maximumCount else { return nil }
            return number
        }
        guard let cores = count(json["cores"]), cores <= Limits.maximumCores, let load = count(json["load_millis"]),
            let memory = count(json["memory_available"]), let maxWorkers = count(json["max_workers"])
        else { return nil }
        var typeLimits: [String: Int64] = [:]
        for member in json["type_limits"]?.objectMembers ?? [] {
            guard let limit = count(member.value) else { return nil }
            if typeLimits[member.key] == nil { typeLimits[member.key] = limit }
        }
        let loadPerCore = json["max_load_per_core_millis"].map(count) ?? 4_000
        guard let loadPerCore else { return nil }
        var pressure: Int64?
        var maxPressure: Int64 = 95_000
        if let raw = json["cpu_pressure_millis"] {
            guard let value = count(raw), value <= 100_000, let limit = count(json["max_cpu_pressure_millis"]) else {
                return nil
            }
            pressure = value
            maxPressure = limit
        }
        var host: String?
        if let raw = json["host"], raw != .null {
            guard let name = raw.stringValue, EtcdSettings.isValidName(name) else { return nil }
            host = name
        }
        self.init(
            cores: cores, loadMillis: load, memoryAvailableBytes: memory, maxWorkers: maxWorkers, typeLimits: typeLimits,
            maxLoadPerCoreMillis: loadPerCore, cpuPressureMillis: pressure, maxCPUPressureMillis: maxPressure, host: host)
    }
}

extension ProcessIdentity {
    /// Reads `{"pid": …, "start_ticks": …}`; nil when malformed.
    public init?(json: JSONValue) {
        guard let pid = json["pid"]?.intValue, pid > 0, pid <= Int64(Int32.max), let ticks = json["start_ticks"]?.intValue,
            ticks >= 0
        else { return nil }
        self.init(pid: Int32(pid), startTicks: UInt64(ticks))
    }
}

extension TerminationStatus {
    /// Reads `{"exit_code": N}` or `{"signal": N}`; nil when malformed.
    public init?(json: JSONValue) {
        if let code = json["exit_code"]?.intValue, (0...255).contains(code) {
            self = .exited(Int32(code))
        } else if let signal = json["signal"]?.intValue, (1...64).contains(signal) {
            self = .signaled(Signal(rawValue: Int32(signal)))
        } else {
            return nil
        }
    }
}
