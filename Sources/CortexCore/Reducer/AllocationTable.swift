/// The outstanding allocations, kept so that a grant, a release or a renewal costs the same
/// with 10 or 10,000 of them outstanding (docs/decisions/042). Those that came from a snapshot
/// stay in its bytes, one allocation per line sorted by id, and are found by binary search;
/// everything changed since lives in `changes`, which takes precedence. Only the calls that
/// need every allocation (the allocation list view, `cortex-budget status`, a lease expiry,
/// the end of a worker's run) decode them all, and those looking for one task's or one
/// worker's find their lines with a scan at memory speed first.
///
/// Pure: reading memory that never changes. A line that does not decode is skipped the same way
/// in every process, since every process reads the same bytes.
public struct AllocationTable: Sendable {
    /// The snapshot's allocations, one line each, sorted by the bytes of the id's JSON string.
    private var stored: LazyLines = .empty
    /// Allocations granted, changed or released since the snapshot (nil: released).
    private var changes: [String: Allocation?] = [:]
    /// How many allocations are outstanding.
    public private(set) var count = 0

    /// No allocations.
    public init() {}

    /// The allocations in a snapshot's section (`lines`, sorted as `encodedLines` writes them),
    /// `count` of them as the snapshot's first line says.
    init(lines: LazyLines, count: Int) {
        stored = lines
        self.count = count
    }

    /// How many allocations were granted, changed or released since the snapshot (the only ones
    /// held decoded).
    var changedCount: Int { changes.count }

    /// True when none is outstanding.
    public var isEmpty: Bool { count == 0 }

    /// The outstanding allocation `id`, if any; setting nil releases it.
    public subscript(id: String) -> Allocation? {
        get {
            if let changed = changes[id] { return changed }
            return storedAllocation(id)
        }
        set {
            let existed = self[id] != nil
            changes[id] = .some(newValue)
            count += (newValue == nil ? 0 : 1) - (existed ? 1 : 0)
        }
    }

    /// Releases `id`, returning what it was.
    @discardableResult
    public mutating func removeValue(forKey id: String) -> Allocation? {
        guard let allocation = self[id] else { return nil }
        self[id] = nil
        return allocation
    }

    /// Every outstanding allocation, in no particular order (decodes every line of the snapshot).
    public var values: [Allocation] {
        var all: [Allocation] = []
        stored.forEach { _, bytes in
            if let allocation = AllocationTable.decode(bytes), changes[allocation.id] == nil { all.append(allocation) }
            return true
        }
        for case .some(let allocation) in changes.values { all.append(allocation) }
        return all
    }

    /// Every outstanding allocation's id.
    public var keys: [String] { values.map(\.id) }

    /// The outstanding allocations whose `field` is `value` (a task's, a worker's): the snapshot's
    /// lines holding that member are found with `memmem`, and only they are decoded.
    func matching(_ field: String, _ value: String, where keep: (Allocation) -> Bool) -> [Allocation] {
        let needle = Array("\"\(field)\":".utf8) + JSONValue.string(value).serialized()
        var found: [Allocation] = []
        for offset in stored.lines(containing: needle) {
            if let allocation = AllocationTable.decode(stored.line(at: offset).bytes), changes[allocation.id] == nil, keep(allocation) {
                found.append(allocation)
            }
        }
        for case .some(let allocation) in changes.values where keep(allocation) { found.append(allocation) }
        return found
    }

    /// The allocations holding a lease (only their lines are decoded).
    public var leased: [Allocation] {
        var found: [Allocation] = []
        for offset in stored.lines(containing: Array("\"lease_ends_ms\":".utf8)) {
            if let allocation = AllocationTable.decode(stored.line(at: offset).bytes), changes[allocation.id] == nil,
                allocation.leaseEndsMilliseconds != nil
            {
                found.append(allocation)
            }
        }
        for case .some(let allocation) in changes.values where allocation.leaseEndsMilliseconds != nil { found.append(allocation) }
        return found
    }

    /// The snapshot section: every outstanding allocation, one line each, sorted by id. Lines
    /// untouched since the last snapshot are copied as bytes.
    func encodedLines() -> [UInt8] {
        var fresh = changes.values.compactMap { $0 }.map { (AllocationTable.idKey($0.id), $0) }
        fresh.sort { $0.0.lexicographicallyPrecedes($1.0) }
        var output: [UInt8] = []
        var next = 0
        func emitFresh(before key: [UInt8]?) {
            while next < fresh.count, key.map({ fresh[next].0.lexicographicallyPrecedes($0) }) ?? true {
                output += AllocationTable.line(fresh[next].1)
                output.append(0x0A)
                next += 1
            }
        }
        stored.forEach { _, bytes in
            guard let key = AllocationTable.storedID(bytes), let id = AllocationTable.idString(key), changes[id] == nil else { return true }
            emitFresh(before: Array(key))
            output += bytes
            output.append(0x0A)
            return true
        }
        emitFresh(before: nil)
        return output
    }

    // MARK: Lines

    private static let idPrefix = Array("{\"id\":".utf8)

    /// The id as the bytes of its JSON string: the sort key of the lines.
    static func idKey(_ id: String) -> [UInt8] { JSONValue.string(id).serialized() }

    /// An allocation's line (without newline): its id first, so lines sort and are searched by it.
    static func line(_ allocation: Allocation) -> [UInt8] {
        let rest = (allocation.json.objectMembers ?? []).filter { $0.key != "id" }
        return idPrefix + idKey(allocation.id) + [UInt8(ascii: ",")] + JSONValue.object(rest).serialized().dropFirst()
    }

    /// The bytes of the JSON string at the start of a line (`{"id":"…"`), without decoding the rest.
    static func storedID(_ line: UnsafeRawBufferPointer) -> ArraySlice<UInt8>? {
        guard line.count > idPrefix.count + 2, line.starts(with: idPrefix), line[idPrefix.count] == UInt8(ascii: "\"") else {
            return nil
        }
        var index = idPrefix.count + 1
        while index < line.count {
            switch line[index] {
            case UInt8(ascii: "\\"): index += 2
            case UInt8(ascii: "\""): return ArraySlice(line[idPrefix.count...index])
            default: index += 1
            }
        }
        return nil
    }

    private static func idString(_ key: ArraySlice<UInt8>) -> String? {
        key.withUnsafeBufferPointer { (try? JSONValue.parse($0))?.stringValue }
    }

    private func storedAllocation(_ id: String) -> Allocation? {
        let wanted = AllocationTable.idKey(id)
        guard
            let line = stored.search({ bytes in
                guard let key = AllocationTable.storedID(bytes) else { return -1 }
                return key.elementsEqual(wanted) ? 0 : (key.lexicographicallyPrecedes(wanted) ? -1 : 1)
            }), let allocation = AllocationTable.decode(line), allocation.id == id
        else { return nil }
        return allocation
    }

    static func decode(_ line: UnsafeRawBufferPointer) -> Allocation? {
        guard let json = try? JSONValue.parse(line.assumingMemoryBound(to: UInt8.self)) else { return nil }
        return try? Allocation(snapshotJSON: json)
    }
}

extension AllocationTable: Equatable {
    /// Equal when they hold the same allocations, however they are stored.
    public static func == (lhs: AllocationTable, rhs: AllocationTable) -> Bool {
        guard lhs.count == rhs.count else { return false }
        let left = Dictionary(lhs.values.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let right = Dictionary(rhs.values.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        return left == right
    }
}
