/// What a worker run that reports no tokens used is charged for the tokens it reserved
/// (`unreported_tokens` in `config.json`, recorded in each spawn's spec).
public enum UnreportedTokens: String, CaseIterable, Sendable {
    /// All of them count as spent (the default: nothing was said, so assume the worst).
    case reserved
    /// None of them: they all return to the budget.
    case zero
}

/// When a supervised worker that ended is started again.
public enum RestartPolicy: String, CaseIterable, Sendable {
    /// Never: the worker's end is final.
    case never
    /// When it exited non-zero or was killed by a signal.
    case onFailure = "on-failure"
    /// Whenever it ends, until stopped.
    case always

    /// Parses a policy name.
    public static func parse(_ text: String) throws(CortexError) -> RestartPolicy {
        guard let policy = RestartPolicy(rawValue: text) else {
            throw .badInput("invalid restart policy '\(Values.printable(text))': use never, on-failure or always")
        }
        return policy
    }
}

/// A limit a worker run can reach (docs/decisions/043-enforced-worker-limits.md); recorded in
/// its `worker.exited` record as `limit`.
public enum WorkerLimit: String, CaseIterable, Sendable {
    /// Its memory limit (`--memory`): the kernel killed a process of its tree for it.
    case memory
    /// Its process limit (`--pids`): a fork of its tree was refused.
    case pids
    /// Its CPU time limit (`--cpu` with `--timeout`, where only rlimits enforce it): SIGXCPU.
    case cpu

    /// The reason in words, with the limit `spec` asked for (`memory limit 64M reached`).
    public func reason(_ spec: WorkerSpec) -> String {
        switch self {
        case .memory: "memory limit \(spec.memoryBytes.map(WorkerLimit.size) ?? "?") reached"
        case .pids: "pids limit \(spec.pids.map(String.init) ?? "?") reached"
        case .cpu: "cpu time limit reached"
        }
    }

    /// Bytes as the largest whole unit (K, M, G, T) that divides them, else bytes.
    public static func size(_ bytes: Int64) -> String {
        for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] where bytes >= Int64(1) << shift {
            if bytes % (Int64(1) << shift) == 0 { return "\(bytes >> shift)\(unit)" }
        }
        return "\(bytes)"
    }
}

/// What `cortex-spawn` asks for: the command and everything the feasibility check and the
/// supervisor need. Stored in the journal, so any process can start the worker later.
public struct WorkerSpec: Equatable, Sendable {
    /// The worker's type (pool limits and `worker-pool.json` group by it).
    public var type: String
    /// The program and its arguments.
    public var command: [String]
    /// The task it works on, if one.
    public var task: String?
    /// Tokens reserved for it before it starts.
    public var tokens: Int64?
    /// The tenant those tokens count against.
    public var tenant: String?
    /// CPU it needs, in thousandths of a core.
    public var cpuMillicores: Int64?
    /// Memory it needs, in bytes (checked against `MemAvailable`), and the most its process tree
    /// may use (docs/decisions/043-enforced-worker-limits.md).
    public var memoryBytes: Int64?
    /// The most processes its process tree may hold at once (`--pids`), or nil for no limit.
    public var pids: Int64?
    /// How long it may run before SIGTERM to its group.
    public var timeoutMilliseconds: Int64?
    /// Between SIGTERM and SIGKILL.
    public var graceMilliseconds: Int64
    /// Restart policy.
    public var restart: RestartPolicy
    /// Bytes of stdout/stderr kept from the start and from the end.
    public var logHeadBytes: Int64
    /// See `logHeadBytes`.
    public var logTailBytes: Int64
    /// The caller's working directory and `PATH`, so a worker started later by another process
    /// runs where and as it would have run at once.
    public var workingDirectory: String?
    /// See `workingDirectory`.
    public var path: String?
    /// The name of the requester's private request file (`requests/<name>`, `WorkerRequest`):
    /// what actually runs, and as whom (its owner). The command, directory and `PATH` above are
    /// for people reading the journal; no launcher executes them. Nil in records written before
    /// requests existed: such a worker is never started again by anyone.
    public var request: String?
    /// What a run that reports no `tokens_used` is charged for its reservations (`unreported_tokens`
    /// in `config.json` when it was spawned).
    public var unreportedTokens: UnreportedTokens = .reserved
    /// The pool it belongs to (`cortex-spawn --pool N --name NAME`): `cortex pool` acts on every
    /// member by this name, and the replacement of a lost member keeps it.
    public var pool: String?
    /// The host it runs on, when the journal is shared by several hosts (decision 037): only
    /// that host's supervisors and reaper start, judge or signal it, and it counts against that
    /// host's `max_workers`, CPU and memory. Nil on a folder of files (one host).
    public var host: String?

    /// A spec with defaults for what is left out.
    public init(
        type: String = "default", command: [String], task: String? = nil, tokens: Int64? = nil, tenant: String? = nil,
        cpuMillicores: Int64? = nil, memoryBytes: Int64? = nil, timeoutMilliseconds: Int64? = nil,
        graceMilliseconds: Int64 = 10_000, restart: RestartPolicy = .never, logHeadBytes: Int64 = 10 * 1024,
        logTailBytes: Int64 = 30 * 1024, workingDirectory: String? = nil, path: String? = nil, request: String? = nil,
        pool: String? = nil
    ) {
        self.request = request
        self.pool = pool
        self.type = type
        self.command = command
        self.task = task
        self.tokens = tokens
        self.tenant = tenant
        self.cpuMillicores = cpuMillicores
        self.memoryBytes = memoryBytes
        self.timeoutMilliseconds = timeoutMilliseconds
        self.graceMilliseconds = graceMilliseconds
        self.restart = restart
        self.logHeadBytes = logHeadBytes
        self.logTailBytes = logTailBytes
        self.workingDirectory = workingDirectory
        self.path = path
    }
}

/// What the caller observed and the limits it read, written into the record as evidence
/// (docs/design.md, "The reducer": the fold never reads the machine, it judges the evidence).
public struct MachineEvidence: Equatable, Sendable {
    /// Online cores.
    public var cores: Int64
    /// One-minute load average, in thousandths.
    public var loadMillis: Int64
    /// `MemAvailable` in bytes.
    public var memoryAvailableBytes: Int64
    /// `max_workers` from config.json.
    public var maxWorkers: Int64
    /// The most workers of each limited type (config.json `type_limits`).
    public var typeLimits: [String: Int64]
    /// Load per core above which nothing new starts, in thousandths (config.json `max_load_per_core`).
    /// Judged only when the record has no `cpuPressureMillis` (decision 026).
    public var maxLoadPerCoreMillis: Int64
    /// CPU pressure (`some avg10` of `/proc/pressure/cpu`: the share of the last 10 s in which a
    /// runnable task waited for a CPU), in thousandths of a percent; nil where the kernel has no PSI.
    public var cpuPressureMillis: Int64?
    /// CPU pressure above which nothing new starts, in thousandths of a percent (`max_cpu_pressure`).
    public var maxCPUPressureMillis: Int64
    /// The host these facts were read on (decision 037); nil on a folder of files. The fold
    /// judges a spawn or promotion only against the workers of this host.
    public var host: String?

    /// Evidence from its parts.
    public init(
        cores: Int64, loadMillis: Int64, memoryAvailableBytes: Int64, maxWorkers: Int64, typeLimits: [String: Int64] = [:],
        maxLoadPerCoreMillis: Int64 = 4_000, cpuPressureMillis: Int64? = nil, maxCPUPressureMillis: Int64 = 95_000,
        host: String? = nil
    ) {
        self.host = host
        self.cpuPressureMillis = cpuPressureMillis
        self.maxCPUPressureMillis = maxCPUPressureMillis
        self.cores = cores
        self.loadMillis = loadMillis
        self.memoryAvailableBytes = memoryAvailableBytes
        self.maxWorkers = maxWorkers
        self.typeLimits = typeLimits
        self.maxLoadPerCoreMillis = maxLoadPerCoreMillis
    }
}

/// Where a supervised worker is.
public enum WorkerStatus: String, CaseIterable, Sendable {
    /// Not feasible yet: waiting for capacity, tokens, CPU or memory.
    case queued
    /// Granted: capacity and tokens held, its supervisor not yet running it.
    case starting
    /// Its process runs under a supervisor.
    case running
    /// Asked to stop: draining (SIGTERM, then SIGKILL after the grace).
    case stopping
    /// Ended on its own (exit or signal) and not restarted.
    case exited
    /// Stopped on request (or cancelled while queued).
    case stopped
    /// Declared lost by the reaper.
    case lost

    /// Holds a place against `max_workers`.
    public var holdsCapacity: Bool { self == .starting || self == .running || self == .stopping }
    /// Over: nothing changes it any more.
    public var isFinal: Bool { self == .exited || self == .stopped || self == .lost }
}

/// One supervised worker as the fold knows it.
public struct WorkerEntry: Equatable, Sendable {
    /// `w-` and the position of the record that created it: `w-3.1048576`.
    public var id: String
    /// What was asked for.
    public var spec: WorkerSpec
    /// Where it is.
    public var status: WorkerStatus
    /// When it was asked for.
    public var requestedMilliseconds: Int64
    /// Why it is queued.
    public var queuedReason: String?
    /// Its token reservation while it holds one.
    public var allocation: String?
    /// The id of the record whose writer must start its supervisor (the grant, or the
    /// promotion out of the queue). Only that writer does, so no worker starts twice.
    public var launchRecord: String?
    /// The supervisor that claimed it.
    public var supervisor: ProcessIdentity?
    /// Its current process.
    public var process: ProcessIdentity?
    /// When its current process started.
    public var startedMilliseconds: Int64?
    /// Times it was started again after ending.
    public var restarts: Int64 = 0
    /// How its last process ended.
    public var lastExit: TerminationStatus?
    /// Whether its last process was killed for running past its timeout.
    public var timedOut = false
    /// The limit its last run reached (docs/decisions/043-enforced-worker-limits.md), if any.
    public var limitReached: WorkerLimit?
    /// When it reached a final status.
    public var endedMilliseconds: Int64?
    /// Why it was declared lost.
    public var lostReason: String?
    /// The id of the record that ended it (so a reaper knows whether its own record did).
    public var endRecord: String?
}

/// A lost worker's claim to a replacement (see `WorkerState.owedReplacements`).
public struct OwedReplacement: Equatable, Sendable {
    /// The lost worker.
    public var worker: String
    /// Its spec: the replacement is spawned with it.
    public var spec: WorkerSpec
    /// Its supervisor and process when it was declared lost: a reaper stops what is left of
    /// them (pid and start time checked) before the replacement starts.
    public var leftover: [ProcessIdentity]

    /// A claim to a replacement.
    public init(worker: String, spec: WorkerSpec, leftover: [ProcessIdentity]) {
        self.worker = worker
        self.spec = spec
        self.leftover = leftover
    }
}

/// The supervised workers as the fold sees them: live ones by id, the spawn queue in order, and
/// the last few that ended (for `worker-pool.json` and `cortex worker show`).
public struct WorkerState: Equatable, Sendable {
    /// How many worker records changed this state: the version of `worker-pool.json`.
    public var version: Int64 = 0
    /// Workers created so far (ids are positions, see `WorkerEntry.id`).
    public var issued: Int64 = 0
    /// Queued, starting, running and stopping workers by id.
    public var live: [String: WorkerEntry] = [:]
    /// Queued worker ids, oldest first: started in this order as capacity frees.
    public var queue: [String] = []
    /// The most recently ended workers, newest last (at most `recentLimit`).
    public var recent: [WorkerEntry] = []
    /// How many workers ever reached each final status.
    public var endedCounts: [WorkerStatus: Int64] = [:]
    /// Lost workers whose restart policy owes them a replacement not yet spawned, oldest first.
    /// Kept in the state (not in a reaper's memory) so a reaper killed between declaring a pool
    /// member lost and replacing it leaves the replacement to the next one.
    public var owedReplacements: [OwedReplacement] = []
    /// Each tenant's hardware quota over every host (`worker.tenant-limit`, docs/decisions/041).
    public var tenantLimits: [String: TenantLimits] = [:]

    /// The workers of `tenant` starting, running or stopping, on every host.
    public func active(ofTenant tenant: String) -> [WorkerEntry] {
        live.values.filter { $0.spec.tenant == tenant && $0.status != .queued }
    }

    /// How many workers of `tenant` are starting, running or stopping, on every host.
    public func activeCount(ofTenant tenant: String) -> Int64 { Int64(active(ofTenant: tenant).count) }

    /// Why a spawn of `spec`'s tenant must wait for its tenant's quota, or nil when it fits.
    public func tenantQuotaRefusal(_ spec: WorkerSpec) -> String? {
        guard let tenant = spec.tenant, let limits = tenantLimits[tenant] else { return nil }
        let active = active(ofTenant: tenant)
        if let limit = limits.maxWorkers, Int64(active.count) >= limit {
            return "tenant \(tenant) quota: \(active.count) of \(limit) workers running"
        }
        if let limit = limits.cpuMillicores, let asked = spec.cpuMillicores {
            let held = active.reduce(Int64(0)) { $0.saturatingAdd($1.spec.cpuMillicores ?? 0) }
            if held.saturatingAdd(asked) > limit {
                return
                    "tenant \(tenant) quota: CPU \(TenantLimits.cores(held)) of \(TenantLimits.cores(limit)) cores held, \(TenantLimits.cores(asked)) asked"
            }
        }
        if let limit = limits.memoryBytes, let asked = spec.memoryBytes {
            let held = active.reduce(Int64(0)) { $0.saturatingAdd($1.spec.memoryBytes ?? 0) }
            if held.saturatingAdd(asked) > limit {
                return "tenant \(tenant) quota: memory \(held) of \(limit) bytes held, \(asked) asked"
            }
        }
        return nil
    }

    /// True when a spawn of tenant `tenant` asking nothing more would wait for its workers quota
    /// (a queued spawn so held is passed over, docs/decisions/041).
    public func tenantIsFull(_ spec: WorkerSpec) -> Bool { tenantQuotaRefusal(spec) != nil }

    /// How many ended workers are remembered.
    public static let recentLimit = 50

    /// No workers.
    public init() {}

    /// The id of the token reservation of worker `worker`: `alloc-` and the position that names
    /// the worker (`w-3.1048576` reserves `alloc-3.1048576`). A record creates at most one worker
    /// and a worker holds at most one reservation in its life, so no other allocation has this
    /// id. A worker with a counted id from an older version reserves `alloc-w-000042`.
    public static func allocationID(forWorker worker: String) -> String {
        guard let position = JournalPosition(id: worker, .worker) else { return IDKind.allocation.prefix + worker }
        return position.id(.allocation)
    }

    /// The live or recently ended worker `id`.
    public func worker(_ id: String) -> WorkerEntry? { live[id] ?? recent.last { $0.id == id } }

    /// Workers holding capacity.
    public var active: [WorkerEntry] {
        IssuedID.sortedInIssueOrder(live.values.filter { $0.status.holdsCapacity }, .worker, id: \.id)
    }

    /// Workers holding capacity on host `host` (nil: a folder of files, whose workers have none).
    public func active(on host: String?) -> [WorkerEntry] { active.filter { $0.spec.host == host } }

    /// Live workers in the order they were created (queued ones included).
    public var all: [WorkerEntry] { IssuedID.sortedInIssueOrder(live.values, .worker, id: \.id) }

    /// Workers whose supervisor the writer of record `recordID` must start.
    public func toLaunch(by recordID: String) -> [WorkerEntry] {
        live.values.filter { $0.status == .starting && $0.launchRecord == recordID && $0.supervisor == nil }.sorted {
            IssuedID.issueOrder($0.id, $1.id, .worker)
        }
    }

    /// The worker (live, or lost and owed a replacement) whose spec names request `name`.
    public func holder(ofRequest name: String) -> String? {
        if let worker = live.values.first(where: { $0.spec.request == name }) { return worker.id }
        return owedReplacements.first { $0.spec.request == name }?.worker
    }

    /// How many workers are in each status now.
    public var counts: [WorkerStatus: Int64] {
        var counts = endedCounts
        for worker in live.values { counts[worker.status, default: 0] += 1 }
        return counts
    }
}

/// A tenant's hardware quota (`cortex-budget quota --max-workers --cpu --memory`): what its
/// workers starting, running or stopping may hold at once over every host; nil is no limit.
/// CPU and memory count what the spawns declare (`cortex-spawn --cpu`, `--memory`).
public struct TenantLimits: Equatable, Sendable {
    /// The most workers at once.
    public var maxWorkers: Int64?
    /// The most cores (in millicores) its workers' `--cpu` add up to.
    public var cpuMillicores: Int64?
    /// The most bytes its workers' `--memory` add up to.
    public var memoryBytes: Int64?

    /// Limits from their parts.
    public init(maxWorkers: Int64? = nil, cpuMillicores: Int64? = nil, memoryBytes: Int64? = nil) {
        self.maxWorkers = maxWorkers
        self.cpuMillicores = cpuMillicores
        self.memoryBytes = memoryBytes
    }

    /// True when nothing is limited.
    public var isEmpty: Bool { maxWorkers == nil && cpuMillicores == nil && memoryBytes == nil }

    /// The limits as a record's or snapshot's JSON.
    public var json: JSONValue {
        .object([
            "cpu_millicores": .optional(cpuMillicores), "max_workers": .optional(maxWorkers), "memory_bytes": .optional(memoryBytes),
        ])
    }

    /// Millicores as cores, e.g. `1.5`.
    static func cores(_ millicores: Int64) -> String { Values.thousandths(millicores) }
}
