import Dispatch
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// The store over a `MemoryJournal`: the same submit, fold, claim and allocate as over a
/// folder, without touching the disk (docs/decisions/027).
@Suite struct MemoryStoreTests {
    /// The names in `path` (a folder), or nil when it does not exist.
    private func entries(_ path: String) -> [String]? { try? POSIX.directoryEntries(path) }

    @Test func aStoreOverAMemoryJournalWritesNoFile() throws {
        let folder = try TemporaryDirectory()
        // The layout names a folder that does not exist: any write under it would create it or fail.
        let layout = CoordinationLayout(root: folder.path + "/coordination")
        var config = CortexConfig()
        config.snapshotEveryRecords = 2
        let store = try CoordinationStore.over(MemoryJournal(), config: config, layout: layout)
        #expect(!store.persistsFiles)
        _ = try store.submit(.budgetSet(total: 100))
        guard case .granted(let allocation) = try store.submit(.budgetAllocate(BudgetRequest(tokens: 40))).outcome else {
            Issue.record("not granted")
            return
        }
        guard case .created(let task, false) = try store.submit(.taskCreate(TaskSpec(type: "t"))).outcome,
            case .claimed(task, let claim) = try store.submit(.taskClaim(TaskClaim(worker: "w"))).outcome
        else {
            Issue.record("not created and claimed")
            return
        }
        #expect(try store.submit(.taskComplete(task: task, claim: claim, result: nil, tokensUsed: nil)).outcome == .completed(task: task))
        _ = try store.submit(.budgetRelease(allocation: allocation, used: 10))
        store.publishAfterRecording()
        try store.writeSnapshot()
        _ = try store.compactJournal(rotateAboveBytes: 0, retentionMilliseconds: 0, nowMilliseconds: POSIX.wallClockMilliseconds())
        #expect(try store.task(task)?.status == .done, "a finished task stays findable in memory")
        #expect(try store.finishedTasks().map(\.id) == [task])
        #expect(store.warnings.isEmpty)
        #expect(entries(layout.root) == nil, "the coordination folder was never created")
        #expect(entries(folder.path) == [], "nothing was written beside it")
    }

    @Test func storesOverOneMemoryJournalSeeEachOthersRecords() throws {
        let journal = MemoryJournal()
        let master = try CoordinationStore.over(journal)
        let worker = try CoordinationStore.over(journal)
        _ = try master.submit(.taskCreate(TaskSpec(type: "t")))
        _ = try master.submit(.taskCreate(TaskSpec(type: "t")))
        guard case .claimed(let first, _) = try worker.submit(.taskClaim(TaskClaim(worker: "a"))).outcome,
            case .claimed(let second, _) = try master.submit(.taskClaim(TaskClaim(worker: "b"))).outcome
        else {
            Issue.record("both claims should be granted")
            return
        }
        #expect(first != second, "each claim takes its own task")
        #expect(try worker.submit(.taskClaim(TaskClaim(worker: "c"))).outcome == .refused("nothing to claim"))
        #expect(try master.journalMovedSinceFold())
        try master.catchUp()
        #expect(try !master.journalMovedSinceFold())
        #expect(master.state.recordsFolded == worker.state.recordsFolded)
    }

    /// A waiter hears only appends from its arming on: `makeCaughtUpWaiter` folds what came
    /// after the store's last fold and before the arming, so `claim --wait`, `cortex-task wait`
    /// and `allocate --wait` cannot sleep through a record appended in that gap.
    @Test func aCaughtUpWaiterFoldsWhatCameBeforeItsArming() throws {
        let journal = MemoryJournal()
        let waiting = try CoordinationStore.over(journal)
        _ = try CoordinationStore.over(journal).submit(.taskCreate(TaskSpec(type: "t")))  // in the gap
        let waiter = try waiting.makeCaughtUpWaiter()
        defer { waiter.disarm() }
        #expect(waiting.state.recordsFolded == (try CoordinationStore.over(journal)).state.recordsFolded)
        #expect(try !waiting.journalMovedSinceFold())
    }

    @Test func concurrentAllocationsOverOneMemoryJournalNeverExceedTheBudget() throws {
        let journal = MemoryJournal()
        _ = try CoordinationStore.over(journal).submit(.budgetSet(total: 100))
        // 40 writers on as many threads as Dispatch gives, each with a store of its own.
        DispatchQueue.concurrentPerform(iterations: 40) { _ in
            _ = try? CoordinationStore.over(journal).submit(.budgetAllocate(BudgetRequest(tokens: 10)))
        }
        let reader = try CoordinationStore.over(journal)
        #expect(reader.state.recordsFolded == 41)
        #expect(reader.state.budget.allocations.count == 10)
        #expect(journal.count == 41)
    }
}
