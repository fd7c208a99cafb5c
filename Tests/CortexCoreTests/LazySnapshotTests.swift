import Testing

@testable import CortexCore
@testable import CortexStorage

/// Waiting tasks and keys stay in the snapshot's bytes until a call reaches them
/// (docs/decisions/011). These tests hold the lazy state to the eager one: a state that goes
/// through a snapshot at random points must decide everything exactly as one that never does.
@Suite struct LazySnapshotTests {
    /// A small deterministic generator (SplitMix64), so a failure can be replayed from its seed.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func throughSnapshot(_ state: CortexState) -> CortexState? {
        let bytes = SnapshotCodec.encode(state, position: JournalPosition(segment: 1, offset: 7), writtenAtMilliseconds: 0)
        return SnapshotCodec.decode(ImmutableBytes(bytes))?.0
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func aStateReloadedFromSnapshotsDecidesExactlyAsOneThatNeverWas(seed: UInt64) throws {
        var random = SplitMix(state: seed)
        var eager = CortexState()
        var lazy = CortexState()
        var time: Int64 = 1_000
        var running: [(String, Int64, String)] = []  // task, claim, worker
        let types = ["a", "b", "c"]
        let priorities = Priority.allCases
        for step in 0..<1_500 {
            time += Int64.random(in: 0...400, using: &random)
            let event: Event
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<40:
                let key: String? = Bool.random(using: &random) ? "key-\(Int.random(in: 0..<300, using: &random))" : nil
                event = .taskCreate(
                    TaskSpec(
                        type: types.randomElement(using: &random)!, priority: priorities.randomElement(using: &random)!,
                        maxAttempts: Int64.random(in: 1...3, using: &random),
                        requires: Int.random(in: 0..<5, using: &random) == 0 ? ["gpu"] : [], key: key,
                        backoffMilliseconds: 100))
            case 40..<65:
                let worker = "w-\(Int.random(in: 0..<6, using: &random))"
                let wanted = Bool.random(using: &random) ? [] : [types.randomElement(using: &random)!]
                event = .taskClaim(
                    TaskClaim(worker: worker, types: wanted, capabilities: Bool.random(using: &random) ? ["gpu"] : []))
            case 65..<80 where !running.isEmpty:
                let (task, claim, _) = running.remove(at: Int.random(in: 0..<running.count, using: &random))
                event = .taskComplete(task: task, claim: claim, result: nil, tokensUsed: nil)
            case 80..<90 where !running.isEmpty:
                let (task, claim, _) = running.remove(at: Int.random(in: 0..<running.count, using: &random))
                event = .taskFail(task: task, claim: claim, error: "e", retry: Bool.random(using: &random))
            case 90..<95:
                let offset = Int64.random(in: 0...Int64(step) + 1, using: &random)
                event = .taskCancel(task: JournalPosition(segment: 1, offset: offset).id(.task))
            case 95..<98:
                let worker = "w-\(Int.random(in: 0..<6, using: &random))"
                running.removeAll { $0.2 == worker }
                event = .workerLost(worker: worker, reason: "test")
            default:
                event = .taskCreate(TaskSpec(type: "a", key: "key-\(Int.random(in: 0..<300, using: &random))"))
            }
            let folded = record(event, at: time, id: "r\(step)")
            let position = JournalPosition(segment: 1, offset: Int64(step))
            let expected = Reducer.reduce(&eager, folded, at: position)
            let got = Reducer.reduce(&lazy, folded, at: position)
            try #require(got == expected, "seed \(seed) step \(step): \(event.kind)")
            if case .claimed(let task, let claim) = expected, case .taskClaim(let request) = event {
                running.append((task, claim, request.worker))
            }
            if Int.random(in: 0..<25, using: &random) == 0 {
                // What a snapshot writer does first: finished tasks leave for state/finished/.
                eager.tasks.finished.removeAll()
                lazy.tasks.finished.removeAll()
                lazy = try #require(Self.throughSnapshot(lazy), "seed \(seed) step \(step): snapshot unreadable")
            }
        }
        #expect(lazy == eager)
        #expect(lazy.tasks.counts == eager.tasks.counts)
        #expect(lazy.tasks.waiting() == eager.tasks.waiting())
        #expect(lazy.tasks.allKeys == eager.tasks.allKeys)
    }

    @Test func aClaimReadsOnlyTheHeadOfALargeQueue() throws {
        var state = CortexState()
        for index in 0..<5_000 {
            _ = Reducer.reduce(
                &state, record(.taskCreate(TaskSpec(type: "t", priority: index == 4_999 ? .critical : .low, key: "k\(index)")), at: 1))
        }
        var lazy = try #require(Self.throughSnapshot(state))
        #expect(lazy.tasks.live.isEmpty, "nothing decoded by loading")
        #expect(Reducer.reduce(&lazy, record(.taskClaim(TaskClaim(worker: "w")), at: 2)) == .claimed(task: "task-1.4999", claim: 1))
        #expect(Reducer.reduce(&lazy, record(.taskClaim(TaskClaim(worker: "w")), at: 2)) == .claimed(task: "task-1.0", claim: 1))
        #expect(lazy.tasks.live.count == 2, "only the claimed tasks were decoded into live state")
        #expect(lazy.tasks.key("k2500")?.task == "task-1.2500")
        #expect(lazy.tasks.key("k-missing") == nil)
        #expect(lazy.tasks.activeTask("task-1.2999")?.spec.key == "k2999")
        #expect(lazy.tasks.counts[.pending] == 4_998 && lazy.tasks.counts[.running] == 2)
    }

    @Test func aDamagedSnapshotIsIgnored() throws {
        var state = CortexState()
        _ = Reducer.reduce(&state, record(.taskCreate(TaskSpec(type: "t")), at: 1))
        let bytes = SnapshotCodec.encode(state, position: .start, writtenAtMilliseconds: 0)
        #expect(SnapshotCodec.decode(ImmutableBytes(Array(bytes.dropLast(3)))) == nil, "sections shorter than the header says")
        #expect(SnapshotCodec.decode(ImmutableBytes(bytes + [0x0A])) == nil, "sections longer than the header says")
        #expect(SnapshotCodec.decode(ImmutableBytes([])) == nil)
        #expect(SnapshotCodec.decode(ImmutableBytes(Array("{\"format\":1}\n".utf8))) == nil)
    }
}
