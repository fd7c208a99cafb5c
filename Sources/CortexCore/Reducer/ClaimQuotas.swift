/// What tenants' quotas hold back from a claim (docs/decisions/041): a tenant at its
/// `max_workers` has that many tasks running already, or its token quota is used up. Claims pass
/// over such a tenant's tasks, so it never holds back another tenant's, and a claimer that finds
/// only such tasks is told which quota it waits for. Computed once per claim, from the state the
/// claim folds against; empty (and free) when no tenant has a quota.
public struct ClaimQuotas: Sendable {
    /// Why each tenant held back is, e.g. `tenant acme quota: 2 of 2 tasks running`.
    private var heldTenants: [String: String] = [:]
    /// Token quotas still open: tenant → tokens left, for tasks that declare `tokens`.
    private var tokensLeft: [String: Int64] = [:]

    /// No quota holds anything back.
    public static let none = ClaimQuotas()

    private init() {}

    /// The quotas as they stand in `state`.
    public init(_ state: CortexState) {
        let taskLimits = state.workers.tenantLimits.compactMapValues(\.maxWorkers)
        let tokenQuotas = state.budget.quotas
        guard !taskLimits.isEmpty || !tokenQuotas.isEmpty else { return }
        if !taskLimits.isEmpty {
            let running = state.tasks.runningCounts(ofTenants: Set(taskLimits.keys))
            for (tenant, limit) in taskLimits where running[tenant, default: 0] >= limit {
                heldTenants[tenant] = "tenant \(tenant) quota: \(running[tenant, default: 0]) of \(limit) tasks running"
            }
        }
        for (tenant, quota) in tokenQuotas where heldTenants[tenant] == nil {
            let held = state.budget.held(byTenant: tenant)
            if held >= quota {
                heldTenants[tenant] = "tenant \(tenant) quota: \(held) of \(quota) tokens held"
            } else {
                tokensLeft[tenant] = quota - held
            }
        }
    }

    /// True when no tenant is held back (the claim walk needs no look at tenants).
    public var isEmpty: Bool { heldTenants.isEmpty && tokensLeft.isEmpty }

    /// Why `task` may not be claimed now for its tenant's quota, or nil when it may.
    public func refusal(for task: TaskEntry) -> String? {
        guard let tenant = task.spec.tenant else { return nil }
        if let reason = heldTenants[tenant] { return reason }
        if let left = tokensLeft[tenant], let tokens = task.spec.tokens, tokens > left {
            return "tenant \(tenant) quota: \(tokens) tokens asked, \(left) left"
        }
        return nil
    }
}
