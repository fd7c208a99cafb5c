/// The files people and `jq` read. They keep Cortex 1.0's names and field names
/// (SPEC.md: `allocated` = `in_use` = reserved tokens, `available` = total - spent - allocated).
public enum Views {
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
            "records_folded": .int(state.recordsFolded),
            "spent": .int(budget.spent),
            "tenants": .object(tenants),
            "total_budget": .int(budget.total),
            "updated_at": .string(ISOTime.format(milliseconds: nowMilliseconds)),
        ])
    }
}
