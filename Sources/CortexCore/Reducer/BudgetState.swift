/// The token budget as the fold sees it. Over-allocation is impossible by construction: a grant
/// happens only at the grant's place in the journal, against everything granted before it.
public struct BudgetState: Equatable, Sendable {
    /// How many budget records have been folded: the version of `token-budget.json`.
    public var version: Int64 = 0
    /// The total budget in tokens.
    public var total: Int64 = 0
    /// Tokens spent in the current period (released allocations' used tokens).
    public var spent: Int64 = 0
    /// The budget period, starting at 1; `budget.reset` starts the next one.
    public var period: Int64 = 1
    /// When the current period began (the reset record's time), if it was ever reset.
    public var periodStartedMilliseconds: Int64?
    /// Outstanding allocations by id (those from a snapshot decoded only where a call looks).
    public var allocations = AllocationTable()
    /// How many allocations have been granted (ids are positions, see `Allocation.id`).
    public var allocationsIssued: Int64 = 0
    /// Quota per tenant: the most it may hold (reserved + spent in the period).
    public var quotas: [String: Int64] = [:]
    /// Tokens spent per tenant in the current period.
    public var tenantSpent: [String: Int64] = [:]
    /// Sum of outstanding allocations. Kept up to date by the reducer (and rebuilt on load) so a
    /// grant costs O(1) however many allocations are outstanding.
    public private(set) var reserved: Int64 = 0
    /// Outstanding tokens per tenant, maintained like `reserved`.
    public private(set) var tenantReserved: [String: Int64] = [:]

    /// An empty budget of 0 tokens.
    public init() {}

    /// Tokens that may still be granted: `total - spent - reserved`, never negative.
    public var available: Int64 { max(0, total.saturatingSubtract(spent).saturatingSubtract(reserved)) }

    /// What tenant `tenant` holds now (reserved + spent this period).
    public func held(byTenant tenant: String) -> Int64 { tenantReserved[tenant, default: 0].saturatingAdd(tenantSpent[tenant, default: 0]) }

    /// Why `request` would be refused now (the budget, or its tenant's quota, would be
    /// exceeded), or nil when it fits: the check the fold makes when it grants an allocation,
    /// and what `cortex-budget allocate --wait` looks at before it asks.
    public func refusal(for request: BudgetRequest) -> String? {
        if request.tokens > available {
            return "budget would be exceeded: \(request.tokens) tokens requested, \(available) of \(total) available"
        }
        if let tenant = request.tenant, let quota = quotas[tenant] {
            let held = held(byTenant: tenant)
            if held.saturatingAdd(request.tokens) > quota {
                return "tenant \(tenant) quota would be exceeded: \(request.tokens) tokens requested, holds \(held) of \(quota)"
            }
        }
        return nil
    }

    /// Why `request` cannot be granted in this period whatever is released: it asks for more
    /// than the budget less what was spent, or than its tenant's quota less what the tenant spent
    /// (spent tokens come back only with a `budget.reset` or a larger total).
    public func neverFits(_ request: BudgetRequest) -> String? {
        let left = max(0, total.saturatingSubtract(spent))
        if request.tokens > left {
            return "\(request.tokens) tokens requested, more than the \(left) of \(total) this period has not spent"
        }
        if let tenant = request.tenant, let quota = quotas[tenant] {
            let spent = tenantSpent[tenant, default: 0]
            if spent.saturatingAdd(request.tokens) > quota {
                return "\(request.tokens) tokens requested, more than tenant \(tenant)'s quota of \(quota) less the \(spent) it spent"
            }
        }
        return nil
    }

    /// Takes a snapshot's allocations with the sums it recorded for them (format 5: the
    /// allocations stay lines in the snapshot, so the sums are not rebuilt by decoding them).
    mutating func restore(_ table: AllocationTable, reserved: Int64, tenantReserved: [String: Int64]) {
        allocations = table
        self.reserved = reserved
        self.tenantReserved = tenantReserved
    }

    mutating func insert(_ allocation: Allocation) {
        allocations[allocation.id] = allocation
        reserved = reserved.saturatingAdd(allocation.tokens)
        if let tenant = allocation.tenant { tenantReserved[tenant] = tenantReserved[tenant, default: 0].saturatingAdd(allocation.tokens) }
    }

    mutating func remove(_ id: String) -> Allocation? {
        guard let allocation = allocations.removeValue(forKey: id) else { return nil }
        reserved = reserved.saturatingSubtract(allocation.tokens)
        if let tenant = allocation.tenant {
            tenantReserved[tenant] = tenantReserved[tenant, default: 0].saturatingSubtract(allocation.tokens)
            if tenantReserved[tenant] == 0 { tenantReserved[tenant] = nil }
        }
        return allocation
    }
}

/// An outstanding reservation of tokens.
public struct Allocation: Equatable, Sendable {
    /// `alloc-` and the position of the record that asked for it (`alloc-3.1048576`); a
    /// worker's reservation is named by the record that created the worker (`WorkerState.allocationID`).
    public var id: String
    /// Tokens reserved.
    public var tokens: Int64
    /// Who holds it.
    public var holder: String?
    /// The task it is for.
    public var task: String?
    /// The tenant it counts against.
    public var tenant: String?
    /// When it was granted (the record's time).
    public var grantedMilliseconds: Int64
    /// The supervised worker whose run holds it (`CORTEX_WORKER_ID` of the allocating tool), when
    /// it was asked for inside a worker run: the fold releases it when that run ends.
    public var worker: String? = nil
    /// Which run of `worker` holds it (0 for the first, then one more per restart).
    public var run: Int64? = nil
    /// How long each lease (and renewal) lasts, for an allocation taken with `--lease`.
    public var leaseMilliseconds: Int64? = nil
    /// When the lease lapses (a record time); a `budget.expire` at or after it releases the allocation.
    public var leaseEndsMilliseconds: Int64? = nil
}
