import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// A seeded fuzz of the fold (issue 13, "a total fold"): random, hostile and mutated records and
/// sequences go through `Reducer.reduce`, the snapshot round trip and `RecordCodec.decode`.
/// Nothing may trap (a trap kills the test process, which fails the run). The seed of each run is
/// printed before it starts, so a crash names it; `CORTEX_FUZZ_SEED=N` adds seed N to the list.
@Suite struct FoldFuzzTests {
    /// Seeds run on every CI run.
    static let fixedSeeds: [UInt64] = [1, 2, 3, 42, 1_337, 20_261_207, 0xDEAD_BEEF, 0x5EED_F00D]
    /// Records folded per seed.
    static let recordsPerSeed = 2_500

    static var seeds: [UInt64] {
        var seeds = fixedSeeds
        if let text = getenv("CORTEX_FUZZ_SEED").map({ String(cString: $0) }), let seed = UInt64(text) { seeds.append(seed) }
        return seeds
    }

    @Test(arguments: FoldFuzzTests.seeds) func foldSurvivesHostileRecords(seed: UInt64) throws {
        print("FoldFuzzTests: seed \(seed) (rerun with CORTEX_FUZZ_SEED=\(seed))")
        var fuzzer = Fuzzer(seed: seed)
        var state = CortexState()
        var previous: [Record] = []
        for index in 0..<Self.recordsPerSeed {
            let record = fuzzer.record(previous: previous)
            let outcome = Reducer.reduce(&state, record)
            fuzzer.learn(from: outcome)
            if !Limits.isRecordTime(record.timeMilliseconds) {
                #expect(outcome.rejectionReason != nil, "seed \(seed): record at \(record.timeMilliseconds) folded")
            }
            previous.append(record)
            if previous.count > 64 { previous.removeFirst() }
            try checkInvariants(state, seed: seed)
            if index % 250 == 249 {
                try roundTrip(&state, seed: seed, fuzzer: &fuzzer)
            }
        }
    }

    /// Mutated and torn journal lines decode to a record or to invalid, never trap; a record that
    /// decodes is folded.
    @Test(arguments: FoldFuzzTests.seeds) func codecSurvivesMutatedLines(seed: UInt64) throws {
        print("FoldFuzzTests: codec seed \(seed) (rerun with CORTEX_FUZZ_SEED=\(seed))")
        var fuzzer = Fuzzer(seed: seed)
        var state = CortexState()
        for _ in 0..<(Self.recordsPerSeed / 2) {
            let record = fuzzer.record(previous: [])
            guard var line = try? RecordCodec.encode(record) else { continue }
            line.removeLast()  // the newline
            let mutated = fuzzer.mutate(line)
            if case .record(let decoded, _) = RecordCodec.decode(mutated) {
                fuzzer.learn(from: Reducer.reduce(&state, decoded))
            }
        }
        try checkInvariants(state, seed: seed)
    }

    /// A snapshot written by another process may be hostile: mutated bytes and extreme numbers in
    /// well-formed JSON decode to nil (the store then folds from the journal) or to a state the
    /// fold can go on with.
    @Test(arguments: FoldFuzzTests.seeds) func snapshotDecodingSurvivesHostileBytes(seed: UInt64) throws {
        print("FoldFuzzTests: snapshot seed \(seed) (rerun with CORTEX_FUZZ_SEED=\(seed))")
        var fuzzer = Fuzzer(seed: seed)
        var state = CortexState()
        for _ in 0..<300 { fuzzer.learn(from: Reducer.reduce(&state, fuzzer.record(previous: [], hostility: 0))) }
        let bytes = SnapshotCodec.encode(state, position: .start, writtenAtMilliseconds: 1_000)
        var used = 0
        for _ in 0..<80 {
            let mutated = fuzzer.mutateSnapshot(bytes)
            guard var (decoded, _) = SnapshotCodec.decode(ImmutableBytes(mutated)) else { continue }
            used += 1
            _ = decoded.tasks.waiting()
            _ = decoded.tasks.allKeys
            _ = decoded.metrics.totals
            _ = decoded.budget.allocations.values
            _ = decoded.budget.allocations.leased
            _ = MetricsReport(decoded, capacity: 4, nowMilliseconds: 2_000_000)
            for _ in 0..<20 { fuzzer.learn(from: Reducer.reduce(&decoded, fuzzer.record(previous: []))) }
            _ = SnapshotCodec.encode(decoded, position: .start, writtenAtMilliseconds: 1_000)
        }
        #expect(used > 0, "seed \(seed): every mutated snapshot was refused, so none was folded on")
        print("FoldFuzzTests: snapshot seed \(seed): \(used) of 80 hostile snapshots loaded")
    }

    /// The issue's reproduction: a backoff of 104249991 days failed until its 12th attempt.
    @Test func hugeBackoffFailsWithoutOverflow() {
        var state = CortexState()
        let spec = TaskSpec(type: "t", maxAttempts: 30, backoffMilliseconds: Limits.maximumDurationMilliseconds)
        #expect(Reducer.reduce(&state, record(.taskCreate(spec), at: 1_000)).changesState)
        var time: Int64 = 2_000
        for attempt in 1...29 {
            time += 400_000
            guard case .claimed(let task, let claim) = Reducer.reduce(&state, record(.taskClaim(TaskClaim(worker: "w")), at: time))
            else {
                Issue.record("attempt \(attempt) was not claimed")
                return
            }
            let outcome = Reducer.reduce(&state, record(.taskFail(task: task, claim: claim, error: nil, retry: true), at: time))
            guard case .retrying(_, _, let retryAt) = outcome else {
                Issue.record("attempt \(attempt): \(outcome)")
                return
            }
            #expect(retryAt == time + TaskRules.maximumBackoffMilliseconds || retryAt - time < TaskRules.maximumBackoffMilliseconds)
        }
    }

    /// Numbers past the documented limits are refused at decode, with the outcome `.rejected`.
    @Test func outOfRangeNumbersAreRejected() {
        let cases: [(String, JSONValue)] = [
            ("budget.set", .object(["total": .int(Limits.maximumTokens + 1)])),
            ("budget.allocate", .object(["tokens": .int(Int64.max)])),
            ("budget.quota", .object(["tenant": "a", "tokens": .int(Int64.max)])),
            ("task.create", .object(["type": "t", "backoff_ms": .int(104_249_991 * 86_400_000)])),
            ("task.create", .object(["type": "t", "max_attempts": .int(Limits.maximumAttempts + 1)])),
            ("task.create", .object(["type": "t", "timeout_ms": .int(-1)])),
            ("task.create", .object(["type": "t", "tokens": .double(1e300)])),
            ("task.complete", .object(["task": "task-000001", "claim": .int(1), "tokens_used": .int(Int64.max)])),
        ]
        for (kind, data) in cases {
            var state = CortexState()
            let outcome = Reducer.reduce(&state, Record(id: "r1", timeMilliseconds: 1_000, kind: kind, data: data))
            #expect(outcome.rejectionReason != nil, "\(kind) \(data.jsonText): \(outcome)")
        }
        for time in Fuzzer.extremes { #expect(ISOTime.format(milliseconds: time).count == 20) }
        for time in [Int64.min, -1, Limits.latestRecordMilliseconds + 1, Int64.max] {
            var state = CortexState()
            let outcome = Reducer.reduce(&state, record(.budgetSet(total: 10), at: time))
            #expect(outcome.rejectionReason != nil, "at_ms \(time): \(outcome)")
            #expect(state.budget.total == 0 && state.lastRecordMilliseconds == 0)
        }
    }

    // MARK: Checks

    private func checkInvariants(_ state: CortexState, seed: UInt64) throws {
        let budget = state.budget
        #expect(budget.available >= 0, "seed \(seed)")
        #expect(budget.reserved >= 0 && budget.spent >= 0, "seed \(seed): reserved \(budget.reserved), spent \(budget.spent)")
        #expect(Limits.isRecordTime(state.lastRecordMilliseconds) || state.lastRecordMilliseconds == 0, "seed \(seed)")
        _ = state.tasks.counts
        _ = state.workers.counts
    }

    /// Encodes the state, decodes it and checks that the copy is the same state and folds on
    /// the same way as the original.
    private func roundTrip(_ state: inout CortexState, seed: UInt64, fuzzer: inout Fuzzer) throws {
        let bytes = SnapshotCodec.encode(state, position: .start, writtenAtMilliseconds: state.lastRecordMilliseconds)
        let decoded = try #require(SnapshotCodec.decode(ImmutableBytes(bytes)), "seed \(seed): a folded state's snapshot does not decode")
        var copy = decoded.0
        #expect(copy == state, "seed \(seed): the snapshot round trip changed the state")
        for _ in 0..<25 {
            let record = fuzzer.record(previous: [])
            let outcome = Reducer.reduce(&state, record)
            #expect(Reducer.reduce(&copy, record) == outcome, "seed \(seed): outcome differs after the round trip")
            fuzzer.learn(from: outcome)
        }
        #expect(copy == state, "seed \(seed): folds diverged after the round trip")
        state = copy
    }
}

extension Outcome {
    /// The reason of a rejection, nil for any other outcome.
    var rejectionReason: String? {
        if case .rejected(let reason) = self { return reason }
        return nil
    }
}

/// Generates records: mostly well formed, many hostile (extreme numbers, wrong types, unknown
/// kinds, names of things that do not exist or belong to others).
struct Fuzzer {
    private var generator: SplitMix64
    private var time: Int64 = 1_700_000_000_000
    private var tasks: [String] = ["task-000001"]
    private var claims: [Int64] = [1]
    private var allocations: [String] = ["alloc-000001"]
    private var workers: [String] = ["w-000001"]

    init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    static let extremes: [Int64] = [
        0, 1, -1, 2, Int64.max, Int64.min, Int64.max - 1, Int64.min + 1, 1 << 53, (1 << 53) - 1, 1 << 62,
        Limits.maximumTokens, Limits.maximumTokens + 1, Limits.maximumDurationMilliseconds,
        Limits.maximumDurationMilliseconds + 1, 104_249_991 * 86_400_000, Limits.latestRecordMilliseconds,
        Limits.latestRecordMilliseconds + 1, 1000, 1001, 300_000, Int64(Int32.max), Int64(Int32.max) + 1,
    ]

    mutating func next(_ bound: Int) -> Int { Int(generator.next() % UInt64(bound)) }
    mutating func chance(_ percent: Int) -> Bool { next(100) < percent }
    mutating func pick<T>(_ items: [T]) -> T { items[next(items.count)] }

    /// Remembers the ids an outcome names, so later records refer to real things.
    mutating func learn(from outcome: Outcome) {
        switch outcome {
        case .created(let task, _): tasks.append(task)
        case .claimed(let task, let claim):
            tasks.append(task)
            claims.append(claim)
        case .granted(let allocation): allocations.append(allocation)
        case .spawned(let worker, let allocation):
            workers.append(worker)
            if let allocation { allocations.append(allocation) }
        case .spawnQueued(let worker, _): workers.append(worker)
        default: break
        }
        if tasks.count > 200 { tasks.removeFirst(100) }
        if allocations.count > 200 { allocations.removeFirst(100) }
        if workers.count > 200 { workers.removeFirst(100) }
        if claims.count > 50 { claims.removeFirst(25) }
    }

    /// A number: usually small and sane, sometimes extreme, sometimes of the wrong type.
    mutating func number(_ sane: ClosedRange<Int64>, hostility: Int) -> JSONValue {
        guard chance(hostility) else { return .int(Int64(next(Int(sane.upperBound - sane.lowerBound + 1))) + sane.lowerBound) }
        switch next(8) {
        case 0: return .string("12")
        case 1: return .double(pick([1e300, -1e300, 0.5, 9.3e18, -9.3e18, 1e15 + 0.5]))
        case 2: return .null
        case 3: return .array([.int(1)])
        case 4: return .bool(true)
        default: return .int(pick(Self.extremes))
        }
    }

    mutating func text(_ known: [String], hostility: Int) -> JSONValue {
        guard chance(hostility) else { return .string(known.isEmpty ? "x" : pick(known)) }
        switch next(5) {
        case 0: return .int(7)
        case 1: return .string("")
        case 2: return .string("task-" + String(pick(Self.extremes)))
        case 3: return .null
        default: return .string("alloc-999999999999999999999")
        }
    }

    mutating func time(hostility: Int) -> Int64 {
        if chance(hostility / 3) { return pick(Self.extremes + [-86_400_000, time - 3_600_000]) }
        if chance(10) { time -= Int64(next(100_000)) } else { time += Int64(next(5_000)) }
        return time
    }

    mutating func evidence(hostility: Int) -> JSONValue {
        var members = [
            JSONMember("cores", number(1...8, hostility: hostility)), JSONMember("load_millis", number(0...4_000, hostility: hostility)),
            JSONMember("max_load_per_core_millis", number(1_000...4_000, hostility: hostility)),
            JSONMember("max_workers", number(1...6, hostility: hostility)),
            JSONMember("memory_available", number(1...1 << 34, hostility: hostility)),
            JSONMember("type_limits", .object([JSONMember("t", number(1...3, hostility: hostility))])),
        ]
        if chance(50) {
            members.append(JSONMember("cpu_pressure_millis", number(0...100_000, hostility: hostility)))
            members.append(JSONMember("max_cpu_pressure_millis", number(50_000...100_000, hostility: hostility)))
        }
        return .object(members)
    }

    mutating func identity(hostility: Int) -> JSONValue {
        .object(["pid": number(1...40_000, hostility: hostility), "start_ticks": number(0...1 << 30, hostility: hostility)])
    }

    /// The next record; `hostility` is the percentage of fields that are hostile.
    mutating func record(previous: [Record], hostility: Int? = nil) -> Record {
        if !previous.isEmpty && chance(3) {
            // A record appended again (same id, maybe a different time).
            var again = pick(previous)
            if chance(50) { again.timeMilliseconds = time(hostility: 30) }
            return again
        }
        let hostility = hostility ?? pick([0, 0, 5, 20, 60])
        let tokens: ClosedRange<Int64> = 0...5_000
        let kinds = [
            "budget.set", "budget.allocate", "budget.release", "budget.quota", "budget.reset", "budget.renew", "budget.expire",
            "task.create", "task.create",
            "task.claim", "task.claim", "task.complete", "task.fail", "task.fail", "task.cancel", "worker.lost", "worker.spawn",
            "worker.supervise", "worker.started", "worker.exited", "worker.stop", "worker.promote", "worker.replace",
            "journal.seal", "task.unknown", "x",
        ]
        let kind = pick(kinds)
        var data: [String: JSONValue] = [:]
        switch kind {
        case "budget.set": data["total"] = number(0...100_000, hostility: hostility)
        case "budget.allocate":
            data["tokens"] = number(tokens, hostility: hostility)
            if chance(40) { data["tenant"] = text(["a", "b"], hostility: hostility) }
            if chance(30) { data["worker"] = text(workers + ["w-x"], hostility: hostility) }
            if chance(30) { data["lease_ms"] = number(0...100_000, hostility: hostility) }
            if chance(20) { data["task"] = text(tasks, hostility: hostility) }
        case "budget.renew":
            data["allocation"] = text(allocations, hostility: hostility)
            if chance(60) { data["lease_ms"] = number(0...100_000, hostility: hostility) }
        case "budget.expire": break
        case "budget.release":
            data["allocation"] = text(allocations, hostility: hostility)
            if chance(60) { data["used"] = number(tokens, hostility: hostility) }
        case "budget.quota":
            data["tenant"] = text(["a", "b"], hostility: hostility)
            data["tokens"] = number(tokens, hostility: hostility)
        case "task.create":
            data["type"] = text(["t", "u"], hostility: hostility)
            if chance(50) { data["backoff_ms"] = number(0...400_000, hostility: hostility) }
            if chance(50) { data["max_attempts"] = number(1...12, hostility: hostility) }
            if chance(30) { data["tokens"] = number(tokens, hostility: hostility) }
            if chance(30) { data["timeout_ms"] = number(0...100_000, hostility: hostility) }
            if chance(30) { data["key"] = text(["k1", "k2", "k3"], hostility: hostility) }
            if chance(20) { data["priority"] = text(["low", "high", "critical", "medium", "urgent"], hostility: hostility) }
            if chance(20) { data["requires"] = chance(80) ? .array([text(["gpu"], hostility: hostility)]) : .string("gpu") }
        case "task.claim":
            data["worker"] = text(workers + ["w-x"], hostility: hostility)
            if chance(30) { data["types"] = .array([text(["t", "u"], hostility: hostility)]) }
            if chance(20) { data["capabilities"] = .array([.string("gpu")]) }
        case "task.complete", "task.fail":
            data["task"] = text(tasks, hostility: hostility)
            data["claim"] = chance(70) ? .int(pick(claims)) : number(0...5, hostility: hostility)
            if kind == "task.complete", chance(50) { data["tokens_used"] = number(tokens, hostility: hostility) }
            if kind == "task.fail" { data["retry"] = chance(80) ? .bool(true) : .bool(false) }
        case "task.cancel": data["task"] = text(tasks, hostility: hostility)
        case "worker.lost":
            data["worker"] = text(workers + ["w-x"], hostility: hostility)
            data["reason"] = "gone"
        case "worker.spawn":
            var spec: [String: JSONValue] = [
                "type": text(["t"], hostility: hostility / 2),
                "command": chance(95) ? .array([.string("true")]) : .array([]),
                "restart": .string(pick(["never", "on-failure", "always"])),
            ]
            if chance(30) { spec["unreported_tokens"] = text(["reserved", "zero"], hostility: hostility) }
            for key in ["tokens", "cpu_millicores", "memory_bytes", "timeout_ms", "grace_ms", "log_head_bytes", "log_tail_bytes"]
            where chance(40) {
                spec[key] = number(0...4_000, hostility: hostility)
            }
            data["spec"] = .object(spec.map { JSONMember($0.key, $0.value) })
            data["queue"] = .bool(chance(70))
            data["evidence"] = evidence(hostility: hostility)
        case "worker.supervise", "worker.started", "worker.exited", "worker.stop", "worker.replace":
            data["worker"] = text(workers, hostility: hostility)
            data["supervisor"] = identity(hostility: hostility)
            data["process"] = identity(hostility: hostility)
            data["exit"] = chance(50) ? .object(["exit_code": number(0...2, hostility: hostility)]) : .object(["signal": .int(9)])
            data["evidence"] = evidence(hostility: hostility)
            if chance(40) { data["tokens_used"] = number(tokens, hostility: hostility) }
        case "worker.promote": data["evidence"] = evidence(hostility: hostility)
        default:
            data["anything"] = number(0...1, hostility: 100)
        }
        let payload: JSONValue =
            chance(hostility / 10)
            ? pick([.null, .array([]), .string("data"), .int(1)])
            : .object(data.map { JSONMember($0.key, $0.value) })
        return Record(id: "r\(generator.next() % 100_000)", timeMilliseconds: time(hostility: hostility), kind: kind, data: payload)
    }

    /// A journal line damaged as a crash, a disk or a hostile writer might damage it.
    mutating func mutate(_ line: [UInt8]) -> [UInt8] {
        var bytes = line
        switch next(7) {
        case 0: bytes = Array(bytes.prefix(next(bytes.count + 1)))  // torn
        case 1:
            for _ in 0...next(4) where !bytes.isEmpty { bytes[next(bytes.count)] ^= UInt8(1 << next(8)) }
        case 2: bytes = Array(bytes.prefix(next(bytes.count + 1))) + line  // a fragment, then the record
        case 3: bytes.insert(pick(Array("{}[]\",:0-9e\\".utf8)), at: next(bytes.count + 1))
        case 4: bytes = Array(repeating: pick(Array("{\"0 ".utf8)), count: next(200))
        case 5: bytes = line + line
        default: break
        }
        return bytes
    }

    /// A snapshot whose bytes were changed: random flips (which the checksum catches), or, as a
    /// hostile writer would, one number in the first line or a section swapped for an extreme,
    /// with the section lengths and the checksum made right again.
    mutating func mutateSnapshot(_ snapshot: [UInt8]) -> [UInt8] {
        var bytes = snapshot
        if chance(20) {
            for _ in 0...next(3) where !bytes.isEmpty { bytes[next(bytes.count)] ^= UInt8(1 << next(8)) }
            return bytes
        }
        guard let newline = bytes.firstIndex(of: 0x0A), let header = try? JSONValue.parse(Array(bytes[..<newline])),
            let waiting = header["waiting_bytes"]?.intValue, let keys = header["key_bytes"]?.intValue,
            let metrics = header["metrics_bytes"]?.intValue, let allocations = header["allocation_bytes"]?.intValue
        else { return bytes }
        var members = (header.objectMembers ?? []).filter { $0.key != "crc" }
        var start = newline + 1
        var sections: [[UInt8]] = []
        for length in [waiting, keys, metrics, allocations] {
            sections.append(Array(bytes[start..<(start + Int(length))]))
            start += Int(length)
        }
        let part = next(5)
        if part == 0 {
            guard let mutated = try? JSONValue.parse(replaceNumber(in: JSONValue.object(members).serialized())),
                let mutatedMembers = mutated.objectMembers
            else { return bytes }
            members = mutatedMembers
        } else {
            sections[part - 1] = replaceNumber(in: sections[part - 1])
        }
        // Lengths and checksum as the writer computes them.
        for (key, section) in zip(["waiting_bytes", "key_bytes", "metrics_bytes", "allocation_bytes"], sections) {
            if let index = members.firstIndex(where: { $0.key == key }) { members[index].value = .int(Int64(section.count)) }
        }
        var first = JSONValue.object(members).serialized()
        first.removeLast()
        var crc = first.withUnsafeBytes { CRC32C.checksum($0) }
        for section in sections { crc = section.withUnsafeBytes { CRC32C.checksum($0, continuing: crc) } }
        let hex = String(crc, radix: 16)
        first += Array(",\"crc\":\"\(String(repeating: "0", count: 8 - hex.count) + hex)\"}\n".utf8)
        return first + sections.joined()
    }

    /// `bytes` with the digits of one number replaced by an extreme value.
    mutating func replaceNumber(in bytes: [UInt8]) -> [UInt8] {
        func isDigit(_ index: Int) -> Bool { (0x30...0x39).contains(bytes[index]) }
        let starts = bytes.indices.filter { isDigit($0) && $0 > 0 && !isDigit($0 - 1) && bytes[$0 - 1] != UInt8(ascii: "-") }
        guard !starts.isEmpty else { return bytes }
        let start = pick(starts)
        var end = start
        while end < bytes.count, isDigit(end) { end += 1 }
        var mutated = bytes
        mutated.replaceSubrange(start..<end, with: Array(String(pick(Self.extremes)).utf8))
        return mutated
    }
}

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64).
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D4_9BB8_2331_11EB
        return z ^ (z >> 31)
    }
}
