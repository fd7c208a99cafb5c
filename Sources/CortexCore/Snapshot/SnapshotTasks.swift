/// The parts of a snapshot's task state that grow with the queue, left as lines in the
/// snapshot's bytes and decoded only where a call looks (docs/decisions/011):
///
/// - `waiting`: pending and failed tasks in claim order, one task per line, each line starting
///   `{"number":N,"priority":"P",` so its place in the queue is read without decoding the rest;
/// - `keys`: idempotency keys sorted by their UTF-8 bytes, one `{"key":…,"task":…}` per line,
///   found by binary search.
///
/// Pure: reading memory that never changes. A line that does not decode is skipped the same way
/// in every process, since every process reads the same bytes.
public struct SnapshotTasks: Sendable {
    /// Waiting tasks in claim order.
    public var waiting: LazyLines = .empty
    /// Idempotency keys in byte order.
    public var keys: LazyLines = .empty

    /// No tasks.
    public init() {}

    /// Lines over a snapshot's sections.
    public init(waiting: LazyLines, keys: LazyLines) {
        self.waiting = waiting
        self.keys = keys
    }

    /// Calls `body` with each waiting task's number, priority rank and line, without decoding it,
    /// until it returns false.
    func forEachWaitingLine(from offset: Int? = nil, _ body: (Int64, Int, UnsafeRawBufferPointer) -> Bool) {
        waiting.forEach(from: offset) { _, bytes in
            guard let (number, rank) = SnapshotTasks.queuePlace(bytes) else { return true }
            return body(number, rank, bytes)
        }
    }

    /// The waiting task `id`, found with a scan at memory speed (cancel and show only).
    func waitingTask(_ id: String) -> TaskEntry? {
        for offset in waiting.lines(containing: Array("\"id\":\"\(id)\"".utf8)) {
            if let entry = SnapshotTasks.decodeTask(waiting.line(at: offset).bytes), entry.id == id { return entry }
        }
        return nil
    }

    /// The entry of idempotency key `key`, by binary search.
    func key(_ key: String) -> TaskState.KeyEntry? {
        let wanted = Array(key.utf8)
        guard
            let line = keys.search({ bytes in
                guard let (lineKey, _) = SnapshotTasks.decodeKey(bytes) else { return -1 }
                let found = Array(lineKey.utf8)
                return found == wanted ? 0 : (found.lexicographicallyPrecedes(wanted) ? -1 : 1)
            })
        else { return nil }
        return SnapshotTasks.decodeKey(line)?.1
    }

    /// Every key (snapshot writing and pruning).
    func allKeys() -> [String: TaskState.KeyEntry] {
        var all: [String: TaskState.KeyEntry] = [:]
        keys.forEach { _, bytes in
            if let (key, entry) = SnapshotTasks.decodeKey(bytes) { all[key] = entry }
            return true
        }
        return all
    }

    // MARK: Line formats

    /// A waiting task's line (without newline): its queue place first, then the rest of its JSON.
    static func waitingLine(_ entry: TaskEntry) -> [UInt8] {
        let rest = (entry.json.objectMembers ?? []).filter { $0.key != "number" && $0.key != "priority" }
        return Array("{\"number\":\(entry.number),\"priority\":\"\(entry.spec.priority.rawValue)\",".utf8)
            + JSONValue.object(rest).serialized().dropFirst()
    }

    private static let numberKey = Array("{\"number\":".utf8)
    private static let priorityKey = Array(",\"priority\":\"".utf8)
    private static let priorityNames = Priority.allCases.map { (Array($0.rawValue.utf8) + [UInt8(ascii: "\"")], $0.rank) }

    /// The number and priority rank at the start of a waiting task's line.
    static func queuePlace(_ line: UnsafeRawBufferPointer) -> (Int64, Int)? {
        guard line.count > numberKey.count + 16, line.starts(with: numberKey) else { return nil }
        var index = numberKey.count
        var number: Int64 = 0
        while index < line.count, (0x30...0x39).contains(line[index]) {
            number = number &* 10 &+ Int64(line[index] - 0x30)
            index += 1
        }
        guard index + priorityKey.count < line.count, line[index..<(index + priorityKey.count)].elementsEqual(priorityKey) else {
            return nil
        }
        index += priorityKey.count
        for (name, rank) in priorityNames where index + name.count <= line.count {
            if line[index..<(index + name.count)].elementsEqual(name) { return (number, rank) }
        }
        return nil
    }

    /// A key's line (without newline).
    static func keyLine(_ key: String, _ entry: TaskState.KeyEntry) -> [UInt8] {
        JSONValue.object([
            "finished_ms": .optional(entry.finishedMilliseconds), "key": .string(key), "task": .string(entry.task),
        ]).serialized()
    }

    static func decodeTask(_ line: UnsafeRawBufferPointer) -> TaskEntry? {
        guard let json = try? JSONValue.parse(line.assumingMemoryBound(to: UInt8.self)) else { return nil }
        return try? TaskEntry(json: json)
    }

    static func decodeKey(_ line: UnsafeRawBufferPointer) -> (String, TaskState.KeyEntry)? {
        guard let json = try? JSONValue.parse(line.assumingMemoryBound(to: UInt8.self)), let key = json["key"]?.stringValue,
            let task = json["task"]?.stringValue
        else { return nil }
        return (key, TaskState.KeyEntry(task: task, finishedMilliseconds: json["finished_ms"]?.intValue))
    }
}
