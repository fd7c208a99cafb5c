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

    /// The record kind.
    public var kind: String {
        switch self {
        case .budgetSet: "budget.set"
        case .budgetAllocate: "budget.allocate"
        case .budgetRelease: "budget.release"
        case .budgetQuota: "budget.quota"
        case .budgetReset: "budget.reset"
        }
    }

    /// The record payload.
    public var data: JSONValue {
        switch self {
        case .budgetSet(let total): .object(["total": .int(total)])
        case .budgetAllocate(let request):
            .object([
                "holder": .optional(request.holder), "task": .optional(request.task), "tenant": .optional(request.tenant),
                "tokens": .int(request.tokens),
            ])
        case .budgetRelease(let allocation, let used):
            .object(["allocation": .string(allocation), "used": .optional(used)])
        case .budgetQuota(let tenant, let tokens): .object(["tenant": .string(tenant), "tokens": .int(tokens)])
        case .budgetReset: .object([])
        }
    }

    /// Decodes a record's kind and payload.
    /// - Returns: nil for a kind this version does not know.
    /// - Throws: a reason when the kind is known but the payload is malformed.
    public static func decode(kind: String, data: JSONValue) throws(EventDecodingError) -> Event? {
        func count(_ key: String) throws(EventDecodingError) -> Int64 {
            guard let value = data[key]?.intValue, value >= 0 else {
                throw EventDecodingError("\(kind): '\(key)' must be a whole number ≥ 0")
            }
            return value
        }
        func optionalCount(_ key: String) throws(EventDecodingError) -> Int64? {
            guard let raw = data[key], raw != .null else { return nil }
            guard let value = raw.intValue, value >= 0 else { throw EventDecodingError("\(kind): '\(key)' must be a whole number ≥ 0") }
            return value
        }
        func text(_ key: String) throws(EventDecodingError) -> String {
            guard let value = data[key]?.stringValue else { throw EventDecodingError("\(kind): '\(key)' must be a string") }
            return value
        }
        func optionalText(_ key: String) -> String? { data[key]?.stringValue }

        switch kind {
        case "budget.set": return .budgetSet(total: try count("total"))
        case "budget.allocate":
            return .budgetAllocate(
                BudgetRequest(
                    tokens: try count("tokens"), holder: optionalText("holder"), task: optionalText("task"),
                    tenant: optionalText("tenant")))
        case "budget.release": return .budgetRelease(allocation: try text("allocation"), used: try optionalCount("used"))
        case "budget.quota": return .budgetQuota(tenant: try text("tenant"), tokens: try count("tokens"))
        case "budget.reset": return .budgetReset
        default: return nil
        }
    }
}

/// Why a record's payload could not be read as its kind's event.
public struct EventDecodingError: Error, Equatable, Sendable {
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

    /// A request with every field given.
    public init(tokens: Int64, holder: String? = nil, task: String? = nil, tenant: String? = nil) {
        self.tokens = tokens
        self.holder = holder
        self.task = task
        self.tenant = tenant
    }
}
