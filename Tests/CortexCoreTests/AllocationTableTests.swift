import Testing

@testable import CortexCore
@testable import CortexStorage

/// Outstanding allocations stay in the snapshot's bytes until a call reaches them
/// (docs/decisions/042): a budget that goes through snapshots at random points decides everything
/// exactly as one that never does, and a grant or release decodes nothing else.
@Suite struct AllocationTableTests {
    static func throughSnapshot(_ state: CortexState) -> CortexState? {
        let bytes = SnapshotCodec.encode(state, position: JournalPosition(segment: 1, offset: 7), writtenAtMilliseconds: 0)
        return SnapshotCodec.decode(ImmutableBytes(bytes))?.0
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6] as [UInt64])
    func aBudgetReloadedFromSnapshotsDecidesExactlyAsOneThatNeverWas(seed: UInt64) throws {
        var random = LazySnapshotTests.SplitMix(state: seed)
        var eager = CortexState()
        var lazy = CortexState()
        var time: Int64 = 1_000
        var granted: [String] = []
        var running: [(String, Int64)] = []
        // Holders, tasks and tenants with characters JSON escapes, so ids and needles are escaped alike.
        let names = ["a", "b\"q", "c\\d", "é", "t-1"]
        func setup(_ event: Event, _ step: Int) {
            let folded = record(event, at: time, id: "s\(step)")
            _ = Reducer.reduce(&eager, folded, at: JournalPosition(segment: 9, offset: Int64(step)))
            _ = Reducer.reduce(&lazy, folded, at: JournalPosition(segment: 9, offset: Int64(step)))
        }
        setup(.budgetSet(total: 1_000_000), 0)
        setup(.budgetQuota(tenant: "é", tokens: 5_000), 1)
        for step in 0..<1_200 {
            time += Int64.random(in: 0...300, using: &random)
            let event: Event
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<40:
                let lease: Int64? = Int.random(in: 0..<4, using: &random) == 0 ? Int64.random(in: 100...5_000, using: &random) : nil
                event = .budgetAllocate(
                    BudgetRequest(
                        tokens: Int64.random(in: 1...200, using: &random), holder: names.randomElement(using: &random),
                        task: Bool.random(using: &random) ? running.randomElement(using: &random)?.0 : nil,
                        tenant: Bool.random(using: &random) ? names.randomElement(using: &random) : nil, leaseMilliseconds: lease))
            case 40..<65 where !granted.isEmpty:
                let id = granted.remove(at: Int.random(in: 0..<granted.count, using: &random))
                event = .budgetRelease(allocation: id, used: Int.random(in: 0..<3, using: &random) == 0 ? nil : 0)
            case 65..<70:
                event = .budgetRelease(allocation: granted.randomElement(using: &random) ?? "alloc-1.1", used: nil)
            case 70..<75 where !granted.isEmpty:
                event = .budgetRenew(allocation: granted.randomElement(using: &random)!, leaseMilliseconds: 2_000)
            case 75..<80:
                event = .budgetExpire
            case 80..<88:
                event = .taskCreate(TaskSpec(type: "t"))
            case 88..<93:
                event = .taskClaim(TaskClaim(worker: "w"))
            case 93..<98 where !running.isEmpty:
                let (task, claim) = running.remove(at: Int.random(in: 0..<running.count, using: &random))
                event = .taskComplete(task: task, claim: claim, result: nil, tokensUsed: Int64.random(in: 1...300, using: &random))
            default:
                event = .budgetAllocate(BudgetRequest(tokens: 1, holder: "h"))
            }
            let folded = record(event, at: time, id: "r\(step)")
            let position = JournalPosition(segment: 1, offset: Int64(step))
            let expected = Reducer.reduce(&eager, folded, at: position)
            let got = Reducer.reduce(&lazy, folded, at: position)
            try #require(got == expected, "seed \(seed) step \(step): \(event.kind)")
            if case .granted(let id) = expected { granted.append(id) }
            if case .claimed(let task, let claim) = expected { running.append((task, claim)) }
            if Int.random(in: 0..<30, using: &random) == 0 {
                eager.tasks.finished.removeAll()
                lazy.tasks.finished.removeAll()
                lazy = try #require(Self.throughSnapshot(lazy), "seed \(seed) step \(step): snapshot unreadable")
            }
            try #require(lazy.budget.reserved == eager.budget.reserved && lazy.budget.allocations.count == eager.budget.allocations.count)
        }
        #expect(lazy.budget == eager.budget)
        #expect(Views.allocations(lazy, nowMilliseconds: 0) == Views.allocations(eager, nowMilliseconds: 0))
        #expect(Views.budget(lazy, nowMilliseconds: 0) == Views.budget(eager, nowMilliseconds: 0))
    }

    @Test func aGrantOrAReleaseDecodesNoOtherAllocation() throws {
        var state = CortexState()
        _ = Reducer.reduce(&state, record(.budgetSet(total: 1_000_000), at: 1), at: JournalPosition(segment: 1, offset: 0))
        for index in 1...5_000 {
            _ = Reducer.reduce(
                &state, record(.budgetAllocate(BudgetRequest(tokens: 2, holder: "h\(index)", task: index == 77 ? "task-x" : nil)), at: 2),
                at: JournalPosition(segment: 1, offset: Int64(index)))
        }
        var lazy = try #require(Self.throughSnapshot(state))
        #expect(lazy.budget.allocations.changedCount == 0, "nothing decoded by loading")
        #expect(lazy.budget.allocations.count == 5_000 && lazy.budget.reserved == 10_000)
        let granted = Reducer.reduce(
            &lazy, record(.budgetAllocate(BudgetRequest(tokens: 5, holder: "new")), at: 3), at: JournalPosition(segment: 2, offset: 0))
        #expect(granted == .granted(allocation: "alloc-2.0"))
        #expect(
            Reducer.reduce(
                &lazy, record(.budgetRelease(allocation: "alloc-1.2500", used: 1), at: 4), at: JournalPosition(segment: 2, offset: 1))
                == .released(allocation: "alloc-1.2500", spent: 1, returned: 1))
        #expect(lazy.budget.allocations.changedCount == 2, "only the granted and the released one")
        #expect(lazy.budget.allocations["alloc-1.4999"]?.holder == "h4999")
        #expect(lazy.budget.allocations["alloc-1.2500"] == nil && lazy.budget.allocations["alloc-9.9"] == nil)
        #expect(lazy.budget.allocations.count == 5_000 && lazy.budget.reserved == 10_003)
        // A task's allocation is found by its lines, not by decoding all of them.
        #expect(lazy.budget.allocations.matching("task", "task-x") { $0.task == "task-x" }.map(\.id) == ["alloc-1.77"])
        #expect(lazy.budget.allocations.changedCount == 2)
        // The next snapshot keeps every line in id order, the untouched ones copied as they were.
        let again = try #require(Self.throughSnapshot(lazy))
        #expect(again.budget == lazy.budget)
        #expect(again.budget.allocations["alloc-2.0"]?.holder == "new")
    }
}

/// `token-budget.json` stays the same size however many allocations are held; the list goes to
/// `token-allocations.json`, rewritten by every call while it is short, then at most once per
/// interval, and always when a reaper or an idle session asks (docs/decisions/042).
@Suite struct AllocationViewTests {
    @Test func theListIsRewrittenAtABoundedRateOnceItIsLong() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        _ = try store.submit(.budgetSet(total: 1_000_000))
        func listVersion() throws -> Int64? { try JSONValue.parse(try POSIX.readFile(layout.allocationsView))["version"]?.intValue }
        func budgetBytes() throws -> Int { try POSIX.readFile(layout.budgetView).count }
        _ = try store.submit(.budgetAllocate(BudgetRequest(tokens: 1, holder: "first")))
        try store.publishViews()
        let smallBudget = try budgetBytes()
        #expect(try listVersion() == store.state.budget.version, "a short list is written by every call")

        for index in 0..<Views.allocationsAlwaysListed {
            _ = try store.submit(.budgetAllocate(BudgetRequest(tokens: 1, holder: "h\(index)")))
        }
        let first = try #require(layout.folder.modificationMilliseconds(layout.folder.relativeName(layout.allocationsView)))
        try store.publishViews(nowMilliseconds: first + 10)
        #expect(try listVersion() == 2, "past the short list, not rewritten within the interval of its last write")
        try store.publishViews(everyList: true)
        #expect(try listVersion() == store.state.budget.version)
        #expect(try budgetBytes() <= smallBudget + 8, "token-budget.json does not grow with the allocations")
        let written = try #require(layout.folder.modificationMilliseconds(layout.folder.relativeName(layout.allocationsView)))

        _ = try store.submit(.budgetAllocate(BudgetRequest(tokens: 1, holder: "soon")))
        try store.publishViews(nowMilliseconds: written + 10)
        #expect(try listVersion() == store.state.budget.version - 1, "a long list is not rewritten within the interval")
        #expect(try JSONValue.parse(try POSIX.readFile(layout.budgetView))["version"]?.intValue == store.state.budget.version)
        try store.publishViews(nowMilliseconds: written + Views.allocationsViewIntervalMilliseconds)
        #expect(try listVersion() == store.state.budget.version, "rewritten once the interval is over")

        _ = try store.submit(.budgetAllocate(BudgetRequest(tokens: 1, holder: "reaped")))
        let now = try #require(layout.folder.modificationMilliseconds(layout.folder.relativeName(layout.allocationsView)))
        try store.publishViews(nowMilliseconds: now + 10, everyList: true)
        let list = try JSONValue.parse(try POSIX.readFile(layout.allocationsView))
        #expect(list["version"]?.intValue == store.state.budget.version, "a reaper run brings it up to date")
        #expect(
            list["count"]?.intValue == Int64(Views.allocationsAlwaysListed + 3) && list["allocated"]?.intValue == list["count"]?.intValue)
    }
}

/// A view's `version` is found wherever its kind puts it, and nothing a user names can pass for it.
@Suite struct ViewCoverageTests {
    static func view(workers: Int, command: String) -> [UInt8] {
        let entries = (0..<workers).map { index in
            JSONValue.object([
                "command": .array([.string(command), .string("\(index)")]), "id": .string("w-1.\(index)"),
                "state": .string("running"),
            ])
        }
        return JSONValue.object([
            "capacity": .object([:]), "counts": .object([:]), "updated_at": .string("now"), "version": .int(41),
            "workers": .array(entries),
        ]).prettySerialized()
    }

    @Test func theWorkerViewsVersionIsFoundPastItsWorkers() {
        // 100 workers put 4 KiB and more after `version` (the view was rewritten by every call).
        let long = Self.view(workers: 100, command: String(repeating: "x", count: 60))
        #expect(long.count > 8_192)
        #expect(Views.coverage(inTail: Array(long.suffix(Views.tailBytes(forWorkerView: true)))) == 41)
        #expect(Views.coverage(inTail: Array(long.suffix(4096))) == nil, "the tail an ordinary view needs misses it")
        // A command that spells a larger version, after the real one, is not taken for it.
        let hostile = Self.view(workers: 3, command: "\n  \"version\": 99999")
        #expect(Views.coverage(inTail: hostile) == 41)
        let budget = JSONValue.object(["allocated": .int(0), "version": .int(7)]).prettySerialized()
        #expect(Views.coverage(inTail: budget) == 7)
    }
}
