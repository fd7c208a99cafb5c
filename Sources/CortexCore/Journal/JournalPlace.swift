/// Where a position lies, in the words of the backend that issued it: what `cortex status` and
/// `cortex verify` print and put in their JSON, so that nothing above the journal reads a
/// position's numbers (docs/decisions/027).
public struct JournalPlace: Equatable, Sendable {
    /// For people: `000000000003.jsonl@1048576`, `live segment 000000000003.jsonl at 1048576
    /// bytes`, `revision 1234`.
    public var text: String
    /// For scripts: the backend's coordinates as JSON members (`segment` and `offset`,
    /// `revision`, `record`).
    public var members: [JSONMember]

    /// A place from its two forms.
    public init(text: String, members: [JSONMember]) {
        self.text = text
        self.members = members
    }

    /// `members` with `prefix` before each name (`first_segment`, `first_offset`).
    public func members(prefixed prefix: String) -> [JSONMember] {
        members.map { JSONMember(prefix + $0.key, $0.value) }
    }
}

extension Journal {
    /// A backend that does not say: the position's own text, and its snapshot encoding.
    public func place(of position: JournalPosition) -> JournalPlace {
        JournalPlace(text: position.description, members: [JSONMember("position", position.json)])
    }

    /// A backend that does not say: where `end` lies (`place(of:)`), named as the journal's end.
    public func endPlace(_ end: JournalPosition) -> JournalPlace {
        let place = place(of: end)
        return JournalPlace(text: "end at \(place.text)", members: place.members(prefixed: "end_"))
    }
}
