/// `state/snapshot.json` (docs/decisions/011): a first line with the position it covers and
/// every part of the state that stays small (budget, counters, running tasks, workers), then the waiting
/// tasks one per line in claim order, then the idempotency keys one per line in byte order, then
/// (format 3) one line of metrics totals (docs/decisions/014), then (format 5) the outstanding
/// allocations one per line sorted by id (docs/decisions/042).
/// The first line says how many bytes each section takes. Loading parses the first line only;
/// the sections stay in the (mapped) file and are read where a call looks. Every line is JSON,
/// so `jq -c . state/snapshot.json` reads it all.
///
/// Format 4 ends the first line with `,"crc":"xxxxxxxx"}`: the CRC-32C of every byte of the file
/// except that field, checked on the raw bytes before anything is parsed (docs/decisions/018).
public enum SnapshotCodec {
    /// The format number this code writes; it also reads formats 2 and 3 (no checksum) and 4
    /// (allocations in the first line), other
    /// snapshots are ignored (the fold starts from the journal's beginning instead: a snapshot
    /// is a cache).
    public static let format: Int64 = 5

    /// What the checksum says about a snapshot's bytes.
    public enum Integrity: Equatable, Sendable {
        /// The checksum matches.
        case verified
        /// An earlier format, written without a checksum: accepted as it is.
        case unverified
        /// The checksum does not match: the bytes were changed after they were written.
        case mismatch
        /// Not a snapshot this version can read (empty, truncated, malformed, unknown format).
        case unreadable
    }

    private static let checksumMarker: [UInt8] = Array(#","crc":""#.utf8)
    /// `,"crc":"` + 8 hex digits + `"}`.
    private static let checksumSuffixLength = 18

    /// The snapshot of `state` at `position`.
    /// - Parameter journal: which journal the snapshot folds (a shared journal's namespace and
    ///   last record, docs/decisions/033), written as the header's `journal`; nil (a folder's own
    ///   journal) writes no such member, so those snapshots are what they always were.
    /// - Parameter writingFormat: `format`; 4 writes the allocations in the first line as
    ///   earlier versions did (only tests of the reading path ask for it).
    public static func encode(
        _ state: CortexState, position: JournalPosition, writtenAtMilliseconds: Int64, journal: JSONValue? = nil,
        writingFormat: Int64 = format
    ) -> [UInt8] {
        let tasks = state.tasks
        var waiting: [UInt8] = []
        tasks.forEachWaitingItem { item in
            switch item {
            case .live(let entry): waiting += SnapshotTasks.waitingLine(entry)
            case .line(let line): waiting += line  // untouched since the last snapshot: copied as bytes
            }
            waiting.append(0x0A)
            return true
        }
        var keys: [UInt8] = []
        for (key, entry) in tasks.allKeys.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            keys += SnapshotTasks.keyLine(key, entry) + [0x0A]
        }
        // The metrics' totals: a last line, decoded only by a call that reports them.
        let metrics = state.metrics.totalsLine
        var allocations = state.budget.allocations.encodedLines()
        var budget = state.budget.json
        if writingFormat < 5, case .object(var members) = budget {
            let listed = state.budget.allocations.values.sorted { $0.id < $1.id }.map(\.json)
            members.append(JSONMember("allocations", .array(listed)))
            members.sort { $0.key < $1.key }
            budget = .object(members)
            allocations = []
        }
        var header = JSONValue.object([
            "allocation_bytes": .int(Int64(allocations.count)), "allocation_count": .int(Int64(state.budget.allocations.count)),
            "format": .int(writingFormat), "key_bytes": .int(Int64(keys.count)), "metrics_bytes": .int(Int64(metrics.count)),
            "position": position.json,
            "state": .object([
                "budget": budget, "last_record_ms": .int(state.lastRecordMilliseconds),
                "metrics": state.metrics.clockJSON, "records_folded": .int(state.recordsFolded), "tasks": tasks.headerJSON,
                "workers": state.workers.json,
            ]),
            "waiting_bytes": .int(Int64(waiting.count)),
            "written_at": .string(ISOTime.format(milliseconds: writtenAtMilliseconds)),
        ])
        if let journal, case .object(var members) = header {
            members.append(JSONMember("journal", journal))
            members.sort { $0.key < $1.key }
            header = .object(members)
        }
        // The checksum covers the first line up to its crc field, then every section.
        var first = header.serialized()
        first.removeLast()  // the closing brace: the crc field goes last
        var crc = first.withUnsafeBytes { CRC32C.checksum($0) }
        for section in [waiting, keys, metrics, allocations] {
            crc = section.withUnsafeBytes { CRC32C.checksum($0, continuing: crc) }
        }
        first += checksumMarker
        first += Array(hex(crc).utf8)
        first += [UInt8(ascii: "\""), UInt8(ascii: "}"), 0x0A]
        return first + waiting + keys + metrics + allocations
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// Checks a snapshot's checksum (one pass over its bytes, no parsing but the format field).
    public static func integrity(_ bytes: ImmutableBytes) -> Integrity {
        let all = LazyLines(storage: bytes, start: 0, end: bytes.buffer.count)
        guard !all.isEmpty else { return .unreadable }
        let (header, sectionsStart) = all.line(at: 0)
        let count = header.count
        let markerStart = count - checksumSuffixLength
        guard markerStart > 0, header[markerStart..<(markerStart + checksumMarker.count)].elementsEqual(checksumMarker),
            header[count - 2] == UInt8(ascii: "\""), header[count - 1] == UInt8(ascii: "}")
        else {
            // No checksum: an earlier format is accepted as it is, anything else is not a snapshot.
            guard let json = try? JSONValue.parse(header.assumingMemoryBound(to: UInt8.self)),
                let version = json["format"]?.intValue, version == 2 || version == 3
            else { return .unreadable }
            return .unverified
        }
        var stored: UInt32 = 0
        for byte in header[(markerStart + checksumMarker.count)..<(count - 2)] {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): stored = stored << 4 | UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): stored = stored << 4 | UInt32(byte - UInt8(ascii: "a") + 10)
            default: return .mismatch
            }
        }
        var crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: header[..<markerStart]))
        if sectionsStart < bytes.buffer.count {
            crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes.buffer[sectionsStart...]), continuing: crc)
        }
        return crc == stored ? .verified : .mismatch
    }

    /// The checksum a snapshot's first line carries (format 4 and later), read without computing
    /// anything: what a verification marker names (`state/snapshot.verified`, decision 042).
    public static func storedChecksum(_ bytes: ImmutableBytes) -> UInt32? {
        let all = LazyLines(storage: bytes, start: 0, end: bytes.buffer.count)
        guard !all.isEmpty else { return nil }
        let header = all.line(at: 0).bytes
        let markerStart = header.count - checksumSuffixLength
        guard markerStart > 0, header[markerStart..<(markerStart + checksumMarker.count)].elementsEqual(checksumMarker) else {
            return nil
        }
        var stored: UInt32 = 0
        for byte in header[(markerStart + checksumMarker.count)..<(header.count - 2)] {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): stored = stored << 4 | UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): stored = stored << 4 | UInt32(byte - UInt8(ascii: "a") + 10)
            default: return nil
            }
        }
        return stored
    }

    /// The header's `journal` member (which shared journal the snapshot folds), or nil when it
    /// has none or is no snapshot.
    public static func journalIdentity(_ bytes: ImmutableBytes) -> JSONValue? {
        let all = LazyLines(storage: bytes, start: 0, end: bytes.buffer.count)
        guard !all.isEmpty else { return nil }
        let (headerBytes, _) = all.line(at: 0)
        return (try? JSONValue.parse(headerBytes.assumingMemoryBound(to: UInt8.self)))?["journal"]
    }

    /// The state and position in a snapshot's bytes, or nil when they are not a readable
    /// snapshot of this format.
    /// A snapshot whose checksum does not match is not readable: the caller falls back.
    /// - Parameter checksumVerified: true when these very bytes were verified before (the store's
    ///   marker for the file, decision 042), so the checksum pass over every byte is skipped.
    public static func decode(_ bytes: ImmutableBytes, checksumVerified: Bool = false) -> (CortexState, JournalPosition)? {
        if !checksumVerified {
            let check = integrity(bytes)
            guard check == .verified || check == .unverified else { return nil }
        }
        let all = LazyLines(storage: bytes, start: 0, end: bytes.buffer.count)
        guard !all.isEmpty else { return nil }
        let (headerBytes, sectionsStart) = all.line(at: 0)
        guard let header = try? JSONValue.parse(headerBytes.assumingMemoryBound(to: UInt8.self)),
            let version = header["format"]?.intValue, (2...format).contains(version),
            let position = header["position"].flatMap(JournalPosition.init(json:)),
            let waitingBytes = header["waiting_bytes"]?.intValue, let keyBytes = header["key_bytes"]?.intValue,
            let metricsBytes = version == 2 ? 0 : header["metrics_bytes"]?.intValue,
            let allocationBytes = version < 5 ? 0 : header["allocation_bytes"]?.intValue,
            waitingBytes >= 0, keyBytes >= 0, metricsBytes >= 0, allocationBytes >= 0,
            // Each size bounded first, so a hostile header cannot overflow the sum.
            waitingBytes <= bytes.buffer.count, keyBytes <= bytes.buffer.count, metricsBytes <= bytes.buffer.count,
            allocationBytes <= bytes.buffer.count,
            sectionsStart + Int(waitingBytes) + Int(keyBytes) + Int(metricsBytes) + Int(allocationBytes) == bytes.buffer.count,
            let stateJSON = header["state"], let budgetJSON = stateJSON["budget"], let tasksJSON = stateJSON["tasks"]
        else { return nil }
        let waitingEnd = sectionsStart + Int(waitingBytes)
        let sections = SnapshotTasks(
            waiting: LazyLines(storage: bytes, start: sectionsStart, end: waitingEnd),
            keys: LazyLines(storage: bytes, start: waitingEnd, end: waitingEnd + Int(keyBytes)))
        let metricsStart = waitingEnd + Int(keyBytes)
        let allocationsStart = metricsStart + Int(metricsBytes)
        let allocationLines =
            version < 5 ? nil : LazyLines(storage: bytes, start: allocationsStart, end: allocationsStart + Int(allocationBytes))
        guard
            let budget = try? BudgetState(json: budgetJSON, allocationLines: allocationLines, allocationCount: header["allocation_count"]),
            let tasks = try? TaskState(header: tasksJSON, sections: sections)
        else { return nil }
        var state = CortexState()
        state.budget = budget
        state.tasks = tasks
        if let workersJSON = stateJSON["workers"] {
            guard let workers = try? WorkerState(json: workersJSON) else { return nil }
            state.workers = workers
        }
        state.metrics = MetricsState(
            clock: stateJSON["metrics"] ?? .null,
            totals: metricsBytes > 0 ? LazyLines(storage: bytes, start: metricsStart, end: allocationsStart) : nil)
        guard let recordsFolded = stateJSON["records_folded"].snapshotCount(default: 0),
            let lastRecord = stateJSON["last_record_ms"].snapshotTime(default: 0),
            Limits.isRecordTime(state.metrics.clockMilliseconds), Limits.isRecordTime(state.metrics.firstMilliseconds)
        else { return nil }
        state.recordsFolded = recordsFolded
        state.lastRecordMilliseconds = lastRecord
        return (state, position)
    }
}

extension BudgetState {
    /// The budget for a snapshot's first line: the allocations go in their own section, the
    /// sums kept for them here.
    var json: JSONValue {
        .object([
            "allocations_issued": .int(allocationsIssued),
            "period": .int(period),
            "period_started_ms": .optional(periodStartedMilliseconds),
            "quotas": .object(quotas.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) }),
            "reserved": .int(reserved),
            "spent": .int(spent),
            "tenant_reserved": .object(tenantReserved.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) }),
            "tenant_spent": .object(tenantSpent.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) }),
            "total": .int(total),
            "version": .int(version),
        ])
    }

    /// Reads a snapshot's budget: with `allocationLines` (format 5) the allocations stay in those
    /// lines and the sums come from the first line; without (formats 2–4) they are in `json`.
    init(json: JSONValue, allocationLines: LazyLines?, allocationCount: JSONValue?) throws(CortexError) {
        self.init()
        // Every number within the limits a record's would be in (docs/journal-format.md, "Limits").
        func count(_ key: String, atMost limit: Int64 = Limits.maximumCount) throws(CortexError) -> Int64 {
            guard let value = json[key].snapshotCount(atMost: limit) else {
                throw .corrupt("snapshot budget has no '\(key)' in range")
            }
            return value
        }
        func tokens(_ value: JSONValue) throws(CortexError) -> Int64 {
            guard let tokens = value.intValue, tokens >= 0, tokens <= Limits.maximumTokens else {
                throw .corrupt("snapshot budget has tokens out of range")
            }
            return tokens
        }
        total = try count("total", atMost: Limits.maximumTokens)
        version = try json["version"] == nil ? 0 : count("version")
        spent = try count("spent", atMost: Limits.maximumTokens)
        period = try count("period")
        allocationsIssued = try count("allocations_issued")
        guard let started = json["period_started_ms"].snapshotOptionalTime() else {
            throw .corrupt("snapshot budget period start out of range")
        }
        periodStartedMilliseconds = started
        for member in json["quotas"]?.objectMembers ?? [] { quotas[member.key] = try tokens(member.value) }
        for member in json["tenant_spent"]?.objectMembers ?? [] { tenantSpent[member.key] = try tokens(member.value) }
        if let allocationLines {
            guard let outstanding = allocationCount.snapshotCount() else { throw .corrupt("snapshot has no allocation count in range") }
            var tenantReserved: [String: Int64] = [:]
            for member in json["tenant_reserved"]?.objectMembers ?? [] { tenantReserved[member.key] = try tokens(member.value) }
            restore(
                AllocationTable(lines: allocationLines, count: Int(outstanding)),
                reserved: try count("reserved", atMost: Limits.maximumTokens), tenantReserved: tenantReserved)
            return
        }
        for item in json["allocations"]?.arrayValue ?? [] { insert(try Allocation(snapshotJSON: item)) }
    }
}

extension Allocation {
    /// An allocation as a snapshot holds it, every number within the limits a record's would be in.
    init(snapshotJSON item: JSONValue) throws(CortexError) {
        guard let id = item["id"]?.stringValue, let tokens = item["tokens"]?.intValue, tokens >= 0, tokens <= Limits.maximumTokens
        else {
            throw .corrupt("snapshot allocation without id or tokens in range")
        }
        self.init(
            id: id, tokens: tokens, holder: item["holder"]?.stringValue, task: item["task"]?.stringValue,
            tenant: item["tenant"]?.stringValue, grantedMilliseconds: item["granted_ms"]?.intValue ?? 0)
        worker = item["worker"]?.stringValue
        run = item["run"]?.intValue
        leaseMilliseconds = item["lease_ms"]?.intValue
        leaseEndsMilliseconds = item["lease_ends_ms"]?.intValue
        if (leaseMilliseconds ?? 0) < 0 || (leaseEndsMilliseconds ?? 0) < 0 || (run ?? 0) < 0 {
            throw .corrupt("snapshot allocation lease or run out of range")
        }
    }

    var json: JSONValue {
        .object([
            "granted_ms": .int(grantedMilliseconds), "holder": .optional(holder), "id": .string(id),
            "lease_ends_ms": .optional(leaseEndsMilliseconds), "lease_ms": .optional(leaseMilliseconds), "run": .optional(run),
            "task": .optional(task), "tenant": .optional(tenant), "tokens": .int(tokens), "worker": .optional(worker),
        ])
    }
}

extension TaskState {
    /// The small part of the task state, for a snapshot's first line.
    var headerJSON: JSONValue {
        func counted(_ counts: [TaskStatus: Int64]) -> JSONValue {
            .object(
                counts.filter { $0.value != 0 }.sorted { $0.key.rawValue < $1.key.rawValue }.map {
                    JSONMember($0.key.rawValue, .int($0.value))
                })
        }
        return .object([
            "active_counts": counted(activeCounts), "created": .int(created), "finished": .array(finished.map(\.json)),
            "finished_counts": counted(finishedCounts), "running": .array(running.map(\.json)), "version": .int(version),
        ])
    }

    /// Reads a snapshot's first-line task state over its sections.
    init(header json: JSONValue, sections: SnapshotTasks) throws(CortexError) {
        guard let created = json["created"].snapshotCount(), let version = json["version"].snapshotCount(default: 0) else {
            throw .corrupt("snapshot tasks have no 'created' in range")
        }
        func counts(_ key: String) throws(CortexError) -> [TaskStatus: Int64] {
            var counts: [TaskStatus: Int64] = [:]
            for member in json[key]?.objectMembers ?? [] {
                guard let count = Optional(member.value).snapshotCount() else { throw .corrupt("snapshot task count out of range") }
                if let status = TaskStatus(rawValue: member.key) { counts[status] = count }
            }
            return counts
        }
        let running = try (json["running"]?.arrayValue ?? []).map { (item) throws(CortexError) in try TaskEntry(json: item) }
        self.init(
            version: version, created: created, finishedCounts: try counts("finished_counts"),
            activeCounts: try counts("active_counts"), running: running, snapshot: sections)
        finished = try (json["finished"]?.arrayValue ?? []).map { (item) throws(CortexError) in try TaskEntry(json: item) }
    }
}

extension TaskEntry {
    /// The task as JSON (snapshots, `results/`-side task files, `cortex-task show --json`).
    public var json: JSONValue {
        var members = Event.taskCreate(spec).data.objectMembers ?? []
        members +=
            JSONValue.object([
                "attempt": .int(attempt), "claimed_ms": .optional(claimedMilliseconds), "created_ms": .int(createdMilliseconds),
                "finished_ms": .optional(finishedMilliseconds), "id": .string(id), "last_error": .optional(lastError),
                "not_before_ms": .optional(notBeforeMilliseconds), "number": .int(number), "result": .optional(result),
                "status": .string(status.rawValue), "tokens_used": .optional(tokensUsed), "worker": .optional(worker),
                "host": .optional(host),
            ]).objectMembers ?? []
        return .object(members)
    }

    /// Reads a task written by `json`, in one pass over its members (a claim decodes the
    /// snapshot's waiting tasks it walks past, so this is on the hot path).
    public init(json: JSONValue) throws(CortexError) {
        guard let members = json.objectMembers else { throw .corrupt("task entry is not an object") }
        var id: String?
        var number: Int64?
        var status: TaskStatus?
        var created: Int64?
        var type: String?
        var spec = TaskSpec(type: "")
        var entry = TaskEntry(id: "", number: 0, spec: spec, status: .pending, createdMilliseconds: 0)
        for member in members {
            let value = member.value
            switch member.key {
            case "id": id = value.stringValue
            case "number": number = value.intValue
            case "status": status = value.stringValue.flatMap(TaskStatus.init(rawValue:))
            case "created_ms": created = value.intValue
            case "type": type = value.stringValue
            case "description": spec.description = value.stringValue
            case "priority":
                guard let priority = value.stringValue.flatMap(Priority.init(rawValue:)) else {
                    throw .corrupt("task entry with an unknown priority")
                }
                spec.priority = priority
            case "tokens": spec.tokens = value.intValue
            case "timeout_ms": spec.timeoutMilliseconds = value.intValue
            case "max_attempts": spec.maxAttempts = value.intValue ?? 3
            case "requires": spec.requires = value.arrayValue?.compactMap(\.stringValue) ?? []
            case "tenant": spec.tenant = value.stringValue
            case "key": spec.key = value.stringValue
            case "context": spec.context = value.stringValue
            case "backoff_ms": spec.backoffMilliseconds = value.intValue ?? 1000
            case "attempt": entry.attempt = value.intValue ?? 0
            case "worker": entry.worker = value.stringValue
            case "host": entry.host = value.stringValue
            case "claimed_ms": entry.claimedMilliseconds = value.intValue
            case "finished_ms": entry.finishedMilliseconds = value.intValue
            case "not_before_ms": entry.notBeforeMilliseconds = value.intValue
            case "last_error": entry.lastError = value.stringValue
            case "result": entry.result = value.stringValue
            case "tokens_used": entry.tokensUsed = value.intValue
            default: break
            }
        }
        guard let id, let number, let status, let created, let type else {
            throw .corrupt("task entry without id, number, status, created_ms or type")
        }
        // The limits a record's numbers are held to (a few comparisons: this is on the claim path).
        func within(_ value: Int64?, _ limit: Int64) -> Bool { value.map { $0 >= 0 && $0 <= limit } ?? true }
        func time(_ value: Int64?) -> Bool { value.map(Limits.isRecordTime) ?? true }
        guard within(number, Limits.maximumCount), within(entry.attempt, Limits.maximumCount), time(created),
            time(entry.claimedMilliseconds), time(entry.finishedMilliseconds), within(entry.notBeforeMilliseconds, Int64.max / 2),
            within(spec.tokens, Limits.maximumTokens), within(entry.tokensUsed, Limits.maximumTokens),
            within(spec.timeoutMilliseconds, Limits.maximumDurationMilliseconds),
            within(spec.backoffMilliseconds, Limits.maximumDurationMilliseconds), spec.maxAttempts >= 1,
            spec.maxAttempts <= Limits.maximumAttempts
        else { throw .corrupt("task entry \(id) with a number out of range") }
        spec.type = type
        entry.id = id
        entry.number = number
        entry.status = status
        entry.createdMilliseconds = created
        entry.spec = spec
        self = entry
    }
}

extension Optional where Wrapped == JSONValue {
    /// A snapshot's count: a whole number from 0 to `limit`; `default` when absent; nil when out
    /// of range (the snapshot is then not used).
    func snapshotCount(atMost limit: Int64 = Limits.maximumCount, default fallback: Int64? = nil) -> Int64? {
        guard let value = self, value != .null else { return fallback }
        guard let number = value.intValue, number >= 0, number <= limit else { return nil }
        return number
    }

    /// A snapshot's record time; `default` when absent; nil when out of range.
    func snapshotTime(default fallback: Int64? = nil) -> Int64? {
        guard let value = self, value != .null else { return fallback }
        guard let number = value.intValue, Limits.isRecordTime(number) else { return nil }
        return number
    }

    /// An optional record time: `.some(nil)` when absent, nil when out of range.
    func snapshotOptionalTime() -> Int64?? {
        guard let value = self, value != .null else { return .some(nil) }
        guard let number = value.intValue, Limits.isRecordTime(number) else { return nil }
        return .some(number)
    }
}
