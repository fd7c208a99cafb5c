/// The typed meaning of a record's `kind` and `data`. Writers build events; the journal
/// stores them as records; the reducer decodes them back. Unknown kinds decode to nil and
/// are ignored, so an older reader survives records from a newer writer.
public enum Event: Equatable, Sendable {
    /// `budget.set`: the total token budget.
    case budgetSet(total: Int64)
    /// `budget.allocate`: a request to reserve tokens.
    case budgetAllocate(BudgetRequest)
    /// `budget.release`: an allocation ends; `used` tokens (all when nil) count as spent.
    case budgetRelease(allocation: String, used: Int64?)
    /// `budget.quota`: the most tokens a tenant may hold (reserved + spent) in a period.
    case budgetQuota(tenant: String, tokens: Int64)
    /// `budget.reset`: a new budget period: spent goes back to 0, reservations stay.
    case budgetReset
    /// `budget.renew`: extend a leased allocation's lease from the record's time (by `lease`, or
    /// by the allocation's own lease length when nil).
    case budgetRenew(allocation: String, leaseMilliseconds: Int64?)
    /// `budget.expire`: release every allocation whose lease lapsed at or before the record's time
    /// (the reaper appends it); all their reserved tokens count as spent.
    case budgetExpire
    /// `task.create`: a new task (or, with a known idempotency key, the existing one).
    case taskCreate(TaskSpec)
    /// `task.claim`: take the first claimable task this claimer may run.
    case taskClaim(TaskClaim)
    /// `task.complete`: the holder of fencing token `claim` finished the task.
    case taskComplete(task: String, claim: Int64, result: String?, tokensUsed: Int64?)
    /// `task.fail`: the holder of `claim` failed; retried with backoff unless `retry` is false.
    case taskFail(task: String, claim: Int64, error: String?, retry: Bool)
    /// `task.cancel`: stop a task that has not finished.
    case taskCancel(task: String)
    /// `task.retry`: a dead task comes back as pending under its own id, with fresh attempts.
    /// The record carries the task's spec and creation number, copied from its finished entry
    /// (a dead task may already be compacted out of the state the reducer folds).
    case taskRetry(task: String, number: Int64, spec: TaskSpec)
    /// `worker.lost`: the reaper (or a test) saw the worker gone; its tasks go back to the queue.
    /// With `host` (a journal shared by hosts, decision 037), only what the worker ran or
    /// claimed on that host is given back: one claimer id may be used on several hosts.
    case workerLost(worker: String, reason: String, host: String? = nil)
    /// `worker.*`: supervised workers (spawn, supervise, started, exited, stop, promote).
    case worker(WorkerEvent)

    /// The record kind.
    public var kind: String {
        switch self {
        case .budgetSet: "budget.set"
        case .budgetAllocate: "budget.allocate"
        case .budgetRelease: "budget.release"
        case .budgetQuota: "budget.quota"
        case .budgetReset: "budget.reset"
        case .budgetRenew: "budget.renew"
        case .budgetExpire: "budget.expire"
        case .taskCreate: "task.create"
        case .taskClaim: "task.claim"
        case .taskComplete: "task.complete"
        case .taskFail: "task.fail"
        case .taskCancel: "task.cancel"
        case .taskRetry: "task.retry"
        case .workerLost: "worker.lost"
        case .worker(let event): event.kind
        }
    }

    /// The record payload.
    public var data: JSONValue {
        switch self {
        case .budgetSet(let total): .object(["total": .int(total)])
        case .budgetAllocate(let request):
            .object([
                "holder": .optional(request.holder), "lease_ms": .optional(request.leaseMilliseconds),
                "task": .optional(request.task), "tenant": .optional(request.tenant), "tokens": .int(request.tokens),
                "worker": .optional(request.worker),
            ])
        case .budgetRelease(let allocation, let used):
            .object(["allocation": .string(allocation), "used": .optional(used)])
        case .budgetQuota(let tenant, let tokens): .object(["tenant": .string(tenant), "tokens": .int(tokens)])
        case .budgetReset: .object([])
        case .budgetRenew(let allocation, let lease): .object(["allocation": .string(allocation), "lease_ms": .optional(lease)])
        case .budgetExpire: .object([])
        case .taskCreate(let spec): Event.specData(spec, extra: [])
        case .taskRetry(let task, let number, let spec):
            Event.specData(spec, extra: [("number", .int(number)), ("task", .string(task))])
        case .taskClaim(let claim):
            .object([
                "capabilities": claim.capabilities.isEmpty ? nil : .array(claim.capabilities.map { .string($0) }),
                "types": claim.types.isEmpty ? nil : .array(claim.types.map { .string($0) }), "worker": .string(claim.worker),
                "host": .optional(claim.host),
            ])
        case .taskComplete(let task, let claim, let result, let tokensUsed):
            .object([
                "claim": .int(claim), "result": .optional(result), "task": .string(task), "tokens_used": .optional(tokensUsed),
            ])
        case .taskFail(let task, let claim, let error, let retry):
            .object(["claim": .int(claim), "error": .optional(error), "retry": .bool(retry), "task": .string(task)])
        case .taskCancel(let task): .object(["task": .string(task)])
        case .workerLost(let worker, let reason, let host):
            .object(["host": .optional(host), "reason": .string(reason), "worker": .string(worker)])
        case .worker(let event): event.data
        }
    }

    /// A task spec as a record payload (`task.create`, and `task.retry` with its extra members).
    private static func specData(_ spec: TaskSpec, extra: [(String, JSONValue)]) -> JSONValue {
        let base: JSONValue = .object([
            "backoff_ms": .int(spec.backoffMilliseconds), "context": .optional(spec.context),
            "description": .optional(spec.description), "key": .optional(spec.key), "max_attempts": .int(spec.maxAttempts),
            "priority": .string(spec.priority.rawValue),
            "requires": spec.requires.isEmpty ? nil : .array(spec.requires.map { .string($0) }),
            "tenant": .optional(spec.tenant), "timeout_ms": .optional(spec.timeoutMilliseconds), "tokens": .optional(spec.tokens),
            "type": .string(spec.type),
        ])
        guard !extra.isEmpty else { return base }
        let members = (base.objectMembers ?? []) + extra.map { JSONMember($0.0, $0.1) }
        return .object(members.sorted { $0.key < $1.key })
    }

    /// Decodes a record's kind and payload.
    /// - Returns: nil for a kind this version does not know.
    /// - Throws: a reason when the kind is known but the payload is malformed.
    public static func decode(kind: String, data: JSONValue) throws(EventDecodingError) -> Event? {
        // Every number is checked against its limit here, so the rules' arithmetic cannot overflow.
        func count(_ key: String, atMost limit: Int64 = Limits.maximumCount) throws(EventDecodingError) -> Int64 {
            guard let value = data[key]?.intValue, value >= 0, value <= limit else {
                throw EventDecodingError("\(kind): '\(key)' must be a whole number from 0 to \(limit)")
            }
            return value
        }
        func optionalCount(_ key: String, atMost limit: Int64 = Limits.maximumCount) throws(EventDecodingError) -> Int64? {
            guard let raw = data[key], raw != .null else { return nil }
            return try count(key, atMost: limit)
        }
        let tokens = Limits.maximumTokens
        let duration = Limits.maximumDurationMilliseconds
        func text(_ key: String) throws(EventDecodingError) -> String {
            guard let value = data[key]?.stringValue else { throw EventDecodingError("\(kind): '\(key)' must be a string") }
            return value
        }
        func optionalText(_ key: String) -> String? { data[key]?.stringValue }
        func optionalHost() throws(EventDecodingError) -> String? {
            guard let raw = data["host"], raw != .null else { return nil }
            guard let host = raw.stringValue, EtcdSettings.isValidName(host) else {
                throw EventDecodingError("\(kind): 'host' must be 1 to 128 letters, digits, '-', '_' or '.'")
            }
            return host
        }
        func texts(_ key: String) throws(EventDecodingError) -> [String] {
            guard let raw = data[key], raw != .null else { return [] }
            guard let items = raw.arrayValue?.compactMap(\.stringValue), items.count == raw.arrayValue?.count else {
                throw EventDecodingError("\(kind): '\(key)' must be an array of strings")
            }
            return items
        }

        func spec() throws(EventDecodingError) -> TaskSpec {
            guard let priority = Priority(rawValue: optionalText("priority") ?? "medium") else {
                throw EventDecodingError("\(kind): unknown priority")
            }
            return TaskSpec(
                type: try text("type"), description: optionalText("description"), priority: priority,
                tokens: try optionalCount("tokens", atMost: tokens),
                timeoutMilliseconds: try optionalCount("timeout_ms", atMost: duration),
                maxAttempts: try optionalCount("max_attempts", atMost: Limits.maximumAttempts) ?? 3, requires: try texts("requires"),
                tenant: optionalText("tenant"), key: optionalText("key"), context: optionalText("context"),
                backoffMilliseconds: try optionalCount("backoff_ms", atMost: duration) ?? 1000)
        }

        switch kind {
        case "budget.set": return .budgetSet(total: try count("total", atMost: tokens))
        case "budget.allocate":
            return .budgetAllocate(
                BudgetRequest(
                    tokens: try count("tokens", atMost: tokens), holder: optionalText("holder"), task: optionalText("task"),
                    tenant: optionalText("tenant"), worker: optionalText("worker"),
                    leaseMilliseconds: try optionalCount("lease_ms", atMost: duration)))
        case "budget.release": return .budgetRelease(allocation: try text("allocation"), used: try optionalCount("used", atMost: tokens))
        case "budget.quota": return .budgetQuota(tenant: try text("tenant"), tokens: try count("tokens", atMost: tokens))
        case "budget.reset": return .budgetReset
        case "budget.renew":
            return .budgetRenew(allocation: try text("allocation"), leaseMilliseconds: try optionalCount("lease_ms", atMost: duration))
        case "budget.expire": return .budgetExpire
        case "task.create": return .taskCreate(try spec())
        case "task.retry": return .taskRetry(task: try text("task"), number: try count("number"), spec: try spec())
        case "task.claim":
            return .taskClaim(
                TaskClaim(
                    worker: try text("worker"), types: try texts("types"), capabilities: try texts("capabilities"),
                    host: try optionalHost()))
        case "task.complete":
            return .taskComplete(
                task: try text("task"), claim: try count("claim"), result: optionalText("result"),
                tokensUsed: try optionalCount("tokens_used", atMost: tokens))
        case "task.fail":
            return .taskFail(
                task: try text("task"), claim: try count("claim"), error: optionalText("error"),
                retry: data["retry"]?.boolValue ?? true)
        case "task.cancel": return .taskCancel(task: try text("task"))
        case "worker.lost":
            return .workerLost(worker: try text("worker"), reason: optionalText("reason") ?? "lost", host: try optionalHost())
        default: return try WorkerEvent.decode(kind: kind, data: data).map(Event.worker)
        }
    }
}

/// Why a record's payload could not be read as its kind's event.
public struct EventDecodingError: Error, Equatable, Sendable {
    /// What is wrong with the payload.
    public var reason: String
    init(_ reason: String) { self.reason = reason }
}

/// What an allocation asks for.
public struct BudgetRequest: Equatable, Sendable {
    /// Tokens to reserve (≥ 1).
    public var tokens: Int64
    /// Who holds it, free text for people reading the views.
    public var holder: String?
    /// The task it is for.
    public var task: String?
    /// The tenant it counts against, if tenants have quotas.
    public var tenant: String?
    /// The supervised worker the asking tool runs in (`CORTEX_WORKER_ID`): the allocation belongs
    /// to that worker's current run and is released when the run ends.
    public var worker: String?
    /// A lease: the allocation is released by the first `budget.expire` after it lapses unless renewed.
    public var leaseMilliseconds: Int64?

    /// A request with every field given.
    public init(
        tokens: Int64, holder: String? = nil, task: String? = nil, tenant: String? = nil, worker: String? = nil,
        leaseMilliseconds: Int64? = nil
    ) {
        self.tokens = tokens
        self.holder = holder
        self.task = task
        self.tenant = tenant
        self.worker = worker
        self.leaseMilliseconds = leaseMilliseconds
    }
}
