/// The state as JSON for `state/snapshot.json`, and back. Loading rebuilds the derived totals,
/// so a snapshot cannot carry a total that disagrees with its allocations.
extension CortexState {
    /// The whole state as JSON.
    public var json: JSONValue {
        .object([
            "budget": budget.json, "last_record_ms": .int(lastRecordMilliseconds), "records_folded": .int(recordsFolded),
        ])
    }

    /// Reads a state written by `json`.
    /// - Throws: `CortexError.corrupt` when a field is missing or of the wrong type.
    public init(json: JSONValue) throws(CortexError) {
        self.init()
        guard let budgetJSON = json["budget"] else { throw .corrupt("snapshot state has no budget") }
        budget = try BudgetState(json: budgetJSON)
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
        ])
    }

    init(json: JSONValue) throws(CortexError) {
        self.init()
        func count(_ key: String) throws(CortexError) -> Int64 {
            guard let value = json[key]?.intValue else { throw .corrupt("snapshot budget has no '\(key)'") }
            return value
        }
        total = try count("total")
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
