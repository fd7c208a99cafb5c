/// One event in the journal: who wrote it is irrelevant, where it sits decides everything.
public struct Record: Equatable, Sendable {
    /// Unique id (random, 64 bits), the same when a void record is appended again.
    public var id: String
    /// The writer's wall clock, milliseconds since the Unix epoch: the only time the reducer knows.
    public var timeMilliseconds: Int64
    /// What happened, e.g. `budget.allocate`.
    public var kind: String
    /// The payload; its shape depends on `kind`.
    public var data: JSONValue

    /// A record with every field given.
    public init(id: String, timeMilliseconds: Int64, kind: String, data: JSONValue) {
        self.id = id
        self.timeMilliseconds = timeMilliseconds
        self.kind = kind
        self.data = data
    }

    /// The kind of the record that ends a segment (docs/design.md, "Sealing and rotation").
    public static let sealKind = "journal.seal"

    /// True for a seal record.
    public var isSeal: Bool { kind == Record.sealKind }
}
