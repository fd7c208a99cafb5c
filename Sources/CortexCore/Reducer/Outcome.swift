/// What the fold decided for one record. A writer learns its outcome by folding up to its own
/// record; any other process folding the same prefix reaches the same outcome (invariant 4).
public enum Outcome: Equatable, Sendable {
    /// The change took effect (set, quota, reset).
    case applied
    /// An allocation was granted under this id.
    case granted(allocation: String)
    /// An allocation was released: `spent` tokens counted as spent, `returned` went back to the pool.
    case released(allocation: String, spent: Int64, returned: Int64)
    /// A normal "no" (budget exceeded, quota exceeded, already released), with the reason.
    case refused(String)
    /// The record's payload is malformed or names something that does not exist; nothing changed.
    case rejected(String)
    /// The record's kind is not one this version folds (a newer writer); nothing changed.
    case ignored

    /// The outcome as JSON: `{"outcome": "granted", "allocation": "alloc-000001"}`.
    public var json: JSONValue {
        switch self {
        case .applied: .object(["outcome": "applied"])
        case .granted(let allocation): .object(["allocation": .string(allocation), "outcome": "granted"])
        case .released(let allocation, let spent, let returned):
            .object([
                "allocation": .string(allocation), "outcome": "released", "returned": .int(returned), "spent": .int(spent),
            ])
        case .refused(let reason): .object(["outcome": "refused", "reason": .string(reason)])
        case .rejected(let reason): .object(["outcome": "rejected", "reason": .string(reason)])
        case .ignored: .object(["outcome": "ignored"])
        }
    }
}
