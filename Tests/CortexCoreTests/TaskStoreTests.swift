import Testing

@testable import CortexCore
@testable import CortexStorage

/// Tasks through the store: compaction of finished work, lookup across hot state and files;
/// over a folder and over a `MemoryJournal` (whose store keeps finished tasks in memory).
@Suite struct TaskStoreTests {
    /// A journal whose store writes snapshots only when a test asks, with `count` tasks of type
    /// `t` created (keyed `k0`, `k1`, … when `keyed`); their ids in order.
    static func storeWithTasks(_ backend: StoreBackend, _ count: Int, keyed: Bool = false) throws -> (
        StoreUnderTest, CoordinationStore, [String]
    ) {
        var config = CortexConfig()
        config.snapshotEveryRecords = 10_000
        let subject = try StoreUnderTest(backend, config: config)
        let store = try subject.open()
        var ids: [String] = []
        for index in 0..<count {
            let created = try store.submit(.taskCreate(TaskSpec(type: "t", key: keyed ? "k\(index)" : nil))).outcome
            guard case .created(let id, _) = created else { throw CortexError.corrupt("create failed: \(created)") }
            ids.append(id)
        }
        return (subject, store, ids)
    }

    @Test(arguments: StoreBackend.allCases)
    func finishedTasksLeaveTheSnapshotButStayFindable(_ backend: StoreBackend) throws {
        let (subject, store, ids) = try Self.storeWithTasks(backend, 30, keyed: true)
        for index in 0..<25 {
            guard case .claimed(let id, let claim) = try store.submit(.taskClaim(TaskClaim(worker: "w"))).outcome else {
                Issue.record("claim failed")
                return
            }
            _ = try store.submit(
                index % 5 == 0 ? .taskCancel(task: id) : .taskComplete(task: id, claim: claim, result: nil, tokensUsed: nil))
        }
        try store.writeSnapshot()
        if let layout = subject.layout {
            #expect(store.state.tasks.finished.isEmpty)
            let lines = try POSIX.readFile(layout.snapshot).split(separator: 0x0A).map { try JSONValue.parse($0) }
            #expect(lines.count == 1 + 5 + 30 + 1, "first line, 5 waiting tasks, 30 keys, the metrics totals")
            #expect(lines.first?["state"]?["tasks"]?["finished"]?.arrayValue?.isEmpty == true)
            #expect(lines.dropFirst().prefix(5).map { $0["id"]?.stringValue } == ids.suffix(5).map { $0 })
        } else {
            #expect(store.state.tasks.finished.count == 25, "no snapshot over memory: finished tasks stay in the state")
        }

        let reopened = try subject.open()
        #expect(try reopened.task(ids[1])?.status == .done)
        #expect(try reopened.task(ids[0])?.status == .cancelled)
        #expect(try reopened.task(ids[29])?.status == .pending)
        #expect(try reopened.task("task-9.0") == nil, "no record there yet")
        #expect(try reopened.finishedTasks().count == 25)
        #expect(reopened.state.tasks.counts[.done] == 20)
        #expect(reopened.state.tasks.counts[.cancelled] == 5)
        // Keys of finished tasks still return their task.
        guard case .created(let again, true) = try reopened.submit(.taskCreate(TaskSpec(type: "t", key: "k1"))).outcome else {
            Issue.record("key not kept")
            return
        }
        #expect(again == ids[1])
    }

    @Test func aWaitingClaimerLearnsWhenABackoffEnds() {
        var tasks = TaskState()
        _ = TaskRules.create(TaskSpec(type: "a", backoffMilliseconds: 500), at: 0, .start, in: &tasks)
        _ = TaskRules.claim(TaskClaim(worker: "w"), at: 1, quotas: .none, in: &tasks)
        _ = TaskRules.fail("task-1.0", claim: 1, error: nil, retry: true, at: 10, JournalPosition(segment: 1, offset: 2), in: &tasks)
        #expect(tasks.firstClaimable(by: TaskClaim(worker: "w"), at: 100) == nil)
        #expect(tasks.nextRetryTime(for: TaskClaim(worker: "w"), after: 100) == 510)
        #expect(tasks.nextRetryTime(for: TaskClaim(worker: "w", types: ["b"]), after: 100) == nil)
        #expect(tasks.firstClaimable(by: TaskClaim(worker: "w"), at: 510)?.id == "task-1.0")
    }
}

/// `TaskState.activeIDs(among:)` (docs/decisions/040-streaming-list.md): one walk of the
/// snapshot's waiting lines answers what `activeTask` answers id by id.
@Suite struct ActiveIDsTests {
    @Test(arguments: StoreBackend.allCases)
    func oneWalkAgreesWithActiveTaskForEveryId(_ backend: StoreBackend) throws {
        let (subject, store, ids) = try TaskStoreTests.storeWithTasks(backend, 12)
        // Three die, and one finishes done; then a snapshot: they leave for state/finished/.
        var dead: [String] = []
        for index in 0..<4 {
            guard case .claimed(let id, let claim) = try store.submit(.taskClaim(TaskClaim(worker: "w"))).outcome else {
                Issue.record("claim failed")
                return
            }
            _ = try store.submit(
                index == 3
                    ? .taskComplete(task: id, claim: claim, result: nil, tokensUsed: nil)
                    : .taskFail(task: id, claim: claim, error: nil, retry: false))
            if index < 3 { dead.append(id) }
        }
        try store.writeSnapshot()
        // Two come back: one is in the next snapshot's waiting lines, one only in the live state.
        let number = try #require(store.task(dead[0])?.number)
        _ = try store.submit(.taskRetry(task: dead[0], number: number, spec: TaskSpec(type: "t")))
        try store.writeSnapshot()
        let reopened = try subject.open()
        let second = try #require(reopened.task(dead[1])?.number)
        _ = try reopened.submit(.taskRetry(task: dead[1], number: second, spec: TaskSpec(type: "t")))
        // One waiting task of the snapshot is claimed since: it stays active (running).
        _ = try reopened.submit(.taskClaim(TaskClaim(worker: "w")))
        let tasks = reopened.state.tasks
        let asked = Set(ids + ["task-9.999", "not-an-id"])
        let expected = asked.filter { tasks.activeTask($0) != nil }
        #expect(tasks.activeIDs(among: asked) == expected)
        #expect(expected.contains(dead[0]) && expected.contains(dead[1]) && !expected.contains(dead[2]))
        #expect(expected.count == 12 - 2)
        #expect(tasks.activeIDs(among: [dead[2]]).isEmpty)
    }
}
