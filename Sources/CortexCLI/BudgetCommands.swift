import CortexCore
import CortexProcesses
import CortexStorage

/// `cortex-budget`: a token budget that can never be over-allocated (docs/cli.md).
public enum BudgetTool {
    /// The tool and its commands.
    public static let tool = ToolSpec(
        name: "cortex-budget",
        abstract: "A token budget that can never be over-allocated.",
        commands: commands(prefix: "cortex-budget"),
        examples: [
            "cortex-budget set --total 1000000",
            "id=$(cortex-budget allocate --tokens 5000 --holder \"$WORKER\") || echo 'over budget, try later'",
            "cortex-budget release \"$id\" --used 3200",
            "jq .available coordination/token-budget.json",
        ])

    /// The commands, named under `prefix` (`cortex-budget` or `cortex budget`).
    public static func commands(prefix: String) -> [Command] {
        [
            Command(
                CommandSpec(
                    name: "\(prefix) set", abstract: "Set the total token budget.",
                    options: [SetTotal.total],
                    examples: ["\(prefix) set --total 1000000"]),
                body: set),
            Command(
                CommandSpec(
                    name: "\(prefix) allocate",
                    abstract: "Reserve tokens; prints the allocation id (exit 1 if the budget or a quota would be exceeded).",
                    options: [Allocate.tokens, Allocate.holder, Allocate.task, Allocate.tenant, Allocate.lease, Allocate.wait],
                    examples: [
                        "id=$(\(prefix) allocate --tokens 5000 --holder w-1) || echo denied",
                        "\(prefix) allocate --tokens 100 --tenant acme --json",
                        "id=$(\(prefix) allocate --tokens 5000 --lease 10m)   # renew it: \(prefix) renew \"$id\"",
                        "id=$(\(prefix) allocate --tokens 5000 --holder w-1 --wait 5m)   # sleeps until a release makes room",
                    ]),
                body: allocate),
            Command(
                CommandSpec(
                    name: "\(prefix) renew",
                    abstract: "Extend a leased allocation's lease from now (exit 1 if it was already released).",
                    positionals: [Renew.allocation], options: [Renew.lease],
                    examples: ["while sleep 60; do \(prefix) renew \"$id\" || break; done &"]),
                body: renew),
            Command(
                CommandSpec(
                    name: "\(prefix) release",
                    abstract: "End an allocation; the unused rest returns to the pool (without --used all of it counts as spent).",
                    positionals: [Release.allocation], options: [Release.used],
                    examples: ["\(prefix) release alloc-1.244 --used 3200"]),
                body: release),
            Command(
                CommandSpec(
                    name: "\(prefix) status",
                    abstract: "Show the budget (with --json: token-budget.json's fields and every outstanding allocation).",
                    examples: ["\(prefix) status --json | jq .available"]),
                body: status),
            Command(
                CommandSpec(
                    name: "\(prefix) quota",
                    abstract:
                        "Cap what a tenant may hold: tokens (reserved + spent in the period), and workers, cores and memory at once over every host (its spawns' --tenant, --cpu, --memory; beyond it they wait, exit 75 without --queue). Limits not given stay as they were.",
                    options: [Quota.tenant, Quota.tokens, Quota.maxWorkers, Quota.cpu, Quota.memory],
                    examples: [
                        "\(prefix) quota --tenant acme --tokens 50000", "\(prefix) quota --tenant acme --max-workers 4",
                        "\(prefix) quota --tenant acme --cpu 1.5 --memory 4G", "\(prefix) quota --tenant acme --max-workers none",
                    ]),
                body: quota),
            Command(
                CommandSpec(
                    name: "\(prefix) reset", abstract: "Start a new budget period: spent goes back to 0, reservations stay.",
                    examples: ["\(prefix) reset   # e.g. from a daily cron job"]),
                body: reset),
        ]
    }

    /// `set`'s arguments.
    enum SetTotal {
        static let total = Option.tokens("total", "N", "Total tokens in the budget.").required
    }

    /// `allocate`'s arguments.
    enum Allocate {
        static let tokens = Option.tokens("tokens", "N", "Tokens to reserve.")
            .checked({ $0 > 0 }, else: { _ in "invalid --tokens '0': an allocation needs at least 1 token" }).required
        static let holder = Option.identifier("holder", "NAME", "Who holds the reservation (shown in the view).")
        static let task = Option.identifier("task", "ID", "The task the tokens are for.")
        static let tenant = Option.identifier("tenant", "T", "The tenant whose quota the tokens count against.")
        static let lease = Option.duration(
            "lease", "D", "Hold it for D (90s, 5m, 2h) unless renewed; the reaper releases it once lapsed, all tokens spent."
        ).checked({ $0 > 0 }, else: { _ in "invalid --lease '0': a lease lasts at least 1 ms" })
        static let wait = Option.duration(
            "wait", "D",
            "Wait up to D for the tokens to fit (sleeping until a release or a reset, no polling); exit 75 when D passes, 1 at once if they never can this period."
        )
    }

    /// `renew`'s arguments.
    enum Renew {
        static let allocation = Positional.identifier("ALLOCATION", "The id printed by allocate.", what: "allocation id")
        static let lease = Option.duration("lease", "D", "The new lease length (default: the one it was taken with).")
            .checked({ $0 > 0 }, else: { _ in "invalid --lease '0': a lease lasts at least 1 ms" })
    }

    /// `release`'s arguments.
    enum Release {
        static let allocation = Positional.identifier("ALLOCATION", "The id printed by allocate.", what: "allocation id")
        static let used = Option.tokens("used", "N", "Tokens actually used (at most the reservation).")
    }

    /// `quota`'s arguments.
    enum Quota {
        static let tenant = Option.identifier("tenant", "T", "The tenant.").required
        static let tokens = Option.tokens("tokens", "N", "Its quota in tokens.")
        static let maxWorkers = Option.count("max-workers", "N", "The most workers of the tenant at once over every host;").orNone()
        static let cpu = Option.cores("cpu", "CORES", "The most cores its workers' --cpu add up to at once;").orNone()
        static let memory = Option.size("memory", "SIZE", "The most memory its workers' --memory add up to at once;").orNone()
    }

    static func set(_ invocation: Invocation) throws(CortexError) -> Report {
        let total = invocation.arguments[SetTotal.total]
        return try change(invocation, [.budgetSet(total: total)])
    }

    static func quota(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let tenant = arguments[Quota.tenant]
        let tokens = arguments[Quota.tokens]
        let (workers, cpu, memory) = (arguments[Quota.maxWorkers], arguments[Quota.cpu], arguments[Quota.memory])
        guard tokens != nil || workers != nil || cpu != nil || memory != nil else {
            throw .usage("quota needs --tokens, --max-workers, --cpu or --memory")
        }
        var events: [Event] = tokens.map { [.budgetQuota(tenant: tenant, tokens: $0)] } ?? []
        if workers != nil || cpu != nil || memory != nil {
            // The record holds the whole quota: what was not given stays as the fold has it.
            let store = try invocation.openStore()
            var limits = store.state.workers.tenantLimits[tenant] ?? TenantLimits()
            if let workers { limits.maxWorkers = workers }
            if let cpu { limits.cpuMillicores = cpu }
            if let memory { limits.memoryBytes = memory }
            events.append(.worker(.tenantLimit(tenant: tenant, limits: limits)))
        }
        return try change(invocation, events)
    }

    static func reset(_ invocation: Invocation) throws(CortexError) -> Report {
        try change(invocation, [.budgetReset])
    }

    /// Appends changes that always apply and reports the budget after them.
    private static func change(_ invocation: Invocation, _ events: [Event]) throws(CortexError) -> Report {
        let store = try invocation.openStore()
        for event in events {
            let submission = try store.submit(event)
            guard submission.outcome == .applied else { throw unexpected(submission.outcome) }
        }
        // A larger total, a new period or a higher tenant limit may make room for queued spawns.
        WorkerSupervision.startQueuedThatFitAfterRecording(store)
        store.publishAfterRecording()
        return budgetReport(store.state)
    }

    static func allocate(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let tokens = arguments[Allocate.tokens]
        let lease = arguments[Allocate.lease]
        // Inside a supervised worker the allocation belongs to its run: released when the run ends.
        // (A malformed id is no worker's: the allocation is then an ordinary one.)
        let worker = invocation.environment["CORTEX_WORKER_ID"].flatMap {
            try? Values.validateIdentifier($0, what: "CORTEX_WORKER_ID")
        }
        let request = BudgetRequest(
            tokens: tokens, holder: arguments[Allocate.holder], task: arguments[Allocate.task], tenant: arguments[Allocate.tenant],
            worker: worker, leaseMilliseconds: lease)
        guard let waitMilliseconds = arguments[Allocate.wait] else {
            // The store is first used by the submit: on etcd the whole call is one read-and-append
            // transaction (decision 035).
            let store = try invocation.openStore(foldOnOpen: false)
            return try allocationReport(try store.submit(.budgetAllocate(request)), tokens: tokens, store: store)
        }
        // --wait: ask only when the fold says the tokens fit, so waiters do not append refusals
        // that wake each other; sleep on the journal until a record may have made room.
        let store = try invocation.openStore()
        let deadline = POSIX.monotonicNanoseconds() + UInt64(waitMilliseconds) * 1_000_000
        let waiter = try store.makeCaughtUpWaiter()
        defer { waiter.disarm() }
        while true {
            if let never = store.state.budget.neverFits(request) {
                return Report(exitCode: 1, text: "", json: .object(["refused": .string(never)]), diagnostic: never)
            }
            if store.state.budget.refusal(for: request) == nil {
                let submission = try store.submit(.budgetAllocate(request))
                if case .granted = submission.outcome { return try allocationReport(submission, tokens: tokens, store: store) }
                try waiter.rearm()  // another caller's grant folded first: look again before sleeping
                try store.catchUp()
                continue
            }
            let remaining = Int64(deadline) - Int64(POSIX.monotonicNanoseconds())
            guard remaining > 0 else {
                let reason = store.state.budget.refusal(for: request) ?? "no room"
                throw .tryLater("no room for \(tokens) tokens within \(arguments.text(of: Allocate.wait) ?? ""): \(reason)")
            }
            _ = waiter.wait(timeoutMilliseconds: Int32(min(remaining / 1_000_000 + 1, 60_000)))
            try store.catchUp()
        }
    }

    /// What `allocate` prints for its submission: the id when granted, the reason (exit 1) when refused.
    static func allocationReport(_ submission: CoordinationStore.Submission, tokens: Int64, store: CoordinationStore)
        throws(CortexError) -> Report
    {
        store.publishAfterRecording()
        let json = merge(submission.outcome.json, ["record": .string(submission.record.id), "tokens": .int(tokens)])
        switch submission.outcome {
        case .granted(let allocation):
            return Report(text: allocation, json: json)
        case .refused(let reason):
            return Report(exitCode: 1, text: "", json: json, diagnostic: reason)
        default:
            throw unexpected(submission.outcome)
        }
    }

    static func release(_ invocation: Invocation) throws(CortexError) -> Report {
        let allocation = invocation.arguments[Release.allocation]
        let used = invocation.arguments[Release.used]
        let store = try invocation.openStore()
        // Checks against the folded state. Allocations never come back once released, and an id
        // from before the end of the fold was issued there or never, so what these checks find
        // cannot change before our record lands.
        guard let outstanding = store.state.budget.allocations[allocation] else {
            if IssuedID.issued(allocation, .allocation, before: store.position, counted: store.state.budget.allocationsIssued) {
                throw .refused("allocation \(allocation) was already released")
            }
            throw .notFound("no allocation \(allocation)")
        }
        if let used, used > outstanding.tokens {
            throw .badInput("invalid --used \(used): allocation \(allocation) reserved only \(outstanding.tokens) tokens")
        }
        let submission = try store.submit(.budgetRelease(allocation: allocation, used: used))
        // Returned tokens may make room for spawns queued for tokens: start them now, not at the next reaper run.
        if case .released(_, _, let returned) = submission.outcome, returned > 0 {
            WorkerSupervision.startQueuedThatFitAfterRecording(store)
        }
        store.publishAfterRecording()
        let json = merge(submission.outcome.json, ["record": .string(submission.record.id)])
        switch submission.outcome {
        case .released(_, let spent, let returned):
            return Report(text: "released \(allocation): \(spent) spent, \(returned) returned", json: json)
        case .refused(let reason):
            // Another release of the same allocation folded first.
            return Report(exitCode: 1, text: "", json: json, diagnostic: reason)
        default:
            throw unexpected(submission.outcome)
        }
    }

    static func renew(_ invocation: Invocation) throws(CortexError) -> Report {
        let allocation = invocation.arguments[Renew.allocation]
        let lease = invocation.arguments[Renew.lease]
        let store = try invocation.openStore()
        guard store.state.budget.allocations[allocation] != nil else {
            if IssuedID.issued(allocation, .allocation, before: store.position, counted: store.state.budget.allocationsIssued) {
                throw .refused("allocation \(allocation) was already released")
            }
            throw .notFound("no allocation \(allocation)")
        }
        let submission = try store.submit(.budgetRenew(allocation: allocation, leaseMilliseconds: lease))
        store.publishAfterRecording()
        let ends = store.state.budget.allocations[allocation]?.leaseEndsMilliseconds
        let json = merge(
            submission.outcome.json,
            ["allocation": .string(allocation), "lease_ends_ms": ends.map { .int($0) } ?? .null, "record": .string(submission.record.id)])
        switch submission.outcome {
        case .applied:
            let until = ends.map { ISOTime.format(milliseconds: $0) } ?? "?"
            return Report(text: "renewed \(allocation) until \(until)", json: json)
        case .refused(let reason):
            return Report(exitCode: 1, text: "", json: json, diagnostic: reason)
        default:
            throw unexpected(submission.outcome)
        }
    }

    static func status(_ invocation: Invocation) throws(CortexError) -> Report {
        let store = try invocation.openStore()
        return budgetReport(store.state)
    }

    /// The budget as text, and as the `token-budget.json` object with `token-allocations.json`'s
    /// `allocations` list added (every outstanding allocation, as of this call's fold).
    static func budgetReport(_ state: CortexState) -> Report {
        let budget = state.budget
        var lines = [
            "total_budget  \(budget.total)",
            "allocated     \(budget.reserved) (\(budget.allocations.count) allocation\(budget.allocations.count == 1 ? "" : "s"))",
            "spent         \(budget.spent)",
            "available     \(budget.available)",
            "period        \(budget.period)",
        ]
        let view = Views.budget(state, nowMilliseconds: POSIX.wallClockMilliseconds())
        if let tenants = view["tenants"]?.objectMembers, !tenants.isEmpty {
            lines.append("tenants:")
            for tenant in tenants {
                let quota = tenant.value["quota"]?.intValue.map(String.init) ?? "none"
                lines.append(
                    "  \(tenant.key)  quota \(quota)  reserved \(tenant.value["reserved"]?.intValue ?? 0)  spent \(tenant.value["spent"]?.intValue ?? 0)"
                )
            }
        }
        // Tenants' hardware quotas (worker records, so not in token-budget.json): as of this fold.
        let limits = state.workers.tenantLimits.sorted { $0.key < $1.key }
        var held: [JSONMember] = []
        if !limits.isEmpty { lines.append("tenant workers:") }
        let runningTasks = state.tasks.runningCounts(ofTenants: Set(limits.map(\.key)))
        for (tenant, limit) in limits {
            let active = state.workers.active(ofTenant: tenant)
            let tasks = runningTasks[tenant, default: 0]
            let cpu = active.reduce(Int64(0)) { $0.saturatingAdd($1.spec.cpuMillicores ?? 0) }
            let memory = active.reduce(Int64(0)) { $0.saturatingAdd($1.spec.memoryBytes ?? 0) }
            func of(_ limit: Int64?) -> String { limit.map { " of \($0)" } ?? "" }
            lines.append(
                "  \(tenant)  workers \(active.count)\(of(limit.maxWorkers))  cpu_millicores \(cpu)\(of(limit.cpuMillicores))  memory_bytes \(memory)\(of(limit.memoryBytes))  tasks running \(tasks)\(of(limit.maxWorkers))"
            )
            let usage = JSONValue.object([
                "cpu_millicores": .int(cpu), "memory_bytes": .int(memory), "running": .int(Int64(active.count)),
                "tasks_running": .int(tasks),
            ])
            held.append(JSONMember(tenant, .object((limit.json.objectMembers ?? []) + [JSONMember("held", usage)])))
        }
        var members = view.objectMembers ?? []
        members.append(JSONMember("allocations", Views.allocations(state, nowMilliseconds: 0)["allocations"] ?? .array([])))
        members.append(JSONMember("tenant_workers", .object(held)))
        members.sort { $0.key < $1.key }
        return Report(text: lines.joined(separator: "\n"), json: .object(members))
    }
}
