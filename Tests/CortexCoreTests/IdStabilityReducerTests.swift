import Foundation
import Testing

@testable import CortexCore
@testable import CortexStorage

/// Ids come from the position of the record that created the thing (docs/decisions/019), so a
/// skipped record moves no other id. On the pure reducer, with positions given explicitly.
@Suite struct IdStabilityReducerTests {
    /// Records at explicit positions: record n at offset `step`·n of `segment`.
    struct Journal {
        var segment = 1
        var step: Int64 = 100
        var entries: [(Record, JournalPosition)] = []

        mutating func append(_ event: Event) {
            let position = JournalPosition(segment: segment, offset: Int64(entries.count) * step)
            entries.append((record(event, at: Int64(entries.count)), position))
        }

        /// Folds every record except those at `skipped` (damaged ones a fold passes over).
        func fold(skipping skipped: Set<Int> = [], into start: CortexState = CortexState()) -> (CortexState, [Outcome?]) {
            var state = start
            var outcomes: [Outcome?] = []
            for (index, (record, position)) in entries.enumerated() {
                outcomes.append(skipped.contains(index) ? nil : Reducer.reduce(&state, record, at: position))
            }
            return (state, outcomes)
        }
    }

    @Test func allocationIdsStayWhenAnEarlierGrantIsSkipped() throws {
        var journal = Journal()
        journal.append(.budgetSet(total: 1000))
        for holder in ["h1", "h2", "h3"] { journal.append(.budgetAllocate(BudgetRequest(tokens: 100, holder: holder))) }
        let (whole, printed) = journal.fold()
        let h2 = try #require({ if case .granted(let id) = printed[2] { id } else { nil } }())
        let h3 = try #require({ if case .granted(let id) = printed[3] { id } else { nil } }())
        #expect(h2 == "alloc-1.200" && h3 == "alloc-1.300")
        #expect(whole.budget.allocations[h2]?.holder == "h2")

        // h1's record damaged: every other id names what it named before.
        let (damaged, outcomes) = journal.fold(skipping: [1])
        #expect(outcomes[2] == printed[2] && outcomes[3] == printed[3])
        #expect(damaged.budget.allocations[h2]?.holder == "h2" && damaged.budget.allocations[h3]?.holder == "h3")
        journal.append(.budgetRelease(allocation: h2, used: nil))
        let (released, _) = journal.fold(skipping: [1])
        #expect(released.budget.allocations[h2] == nil, "h2 released")
        #expect(released.budget.allocations[h3]?.tokens == 100, "h3 still reserved")
        #expect(released.budget.allocations.count == 1)
    }

    @Test func taskAndWorkerIdsStayWhenAnEarlierCreateIsSkipped() throws {
        var journal = Journal()
        for name in ["t1", "t2", "t3"] { journal.append(.taskCreate(TaskSpec(type: "build", description: name))) }
        for _ in 1...3 {
            journal.append(.worker(.spawn(WorkerSpec(command: ["x"]), queue: true, evidence: .roomy)))
        }
        let (_, printed) = journal.fold()
        let (damaged, outcomes) = journal.fold(skipping: [0, 3])
        #expect(outcomes[1] == printed[1] && outcomes[2] == printed[2], "tasks t2, t3")
        #expect(outcomes[4] == printed[4] && outcomes[5] == printed[5], "workers 2 and 3")
        let t2 = try #require({ if case .created(let id, _) = printed[1] { id } else { nil } }())
        #expect(t2 == "task-1.100")
        #expect(damaged.tasks.activeTask(t2)?.spec.description == "t2")
        #expect(printed[4] == .spawned(worker: "w-1.400", allocation: nil))
        #expect(damaged.workers.live["w-1.400"] != nil && damaged.workers.live["w-1.300"] == nil)
    }

    @Test func anIdBeforeTheRecordIsFinishedAndOneAfterItOrMalformedIsUnknown() {
        var journal = Journal()
        journal.append(.budgetSet(total: 1000))
        journal.append(.budgetAllocate(BudgetRequest(tokens: 10)))  // alloc-1.100
        journal.append(.taskCreate(TaskSpec(type: "t")))  // task-1.200
        journal.append(.budgetRelease(allocation: "alloc-1.100", used: nil))
        journal.append(.taskCancel(task: "task-1.200"))
        journal.append(.budgetRelease(allocation: "alloc-1.100", used: nil))
        journal.append(.budgetRelease(allocation: "alloc-1.900", used: nil))
        journal.append(.budgetRelease(allocation: "alloc-01.100", used: nil))
        journal.append(.taskCancel(task: "task-1.200"))
        journal.append(.taskCancel(task: "task-2.0"))
        journal.append(.worker(.stop(worker: "w-1.100")))
        journal.append(.worker(.stop(worker: "w-1.5000")))
        let (_, outcomes) = journal.fold()
        #expect(outcomes[5] == .refused("allocation alloc-1.100 was already released"))
        #expect(outcomes[6] == .rejected("no allocation alloc-1.900"), "not issued yet")
        #expect(outcomes[7] == .rejected("no allocation alloc-01.100"), "not the form ids are written in")
        #expect(outcomes[8] == .refused("task-1.200 has already finished"))
        #expect(outcomes[9] == .rejected("no task task-2.0"))
        #expect(outcomes[10] == .refused("w-1.100 has already ended"), "an earlier position: a normal no")
        #expect(outcomes[11] == .rejected("no worker w-1.5000"))
    }

    @Test func aWorkersReservationIsNamedAfterTheWorkerEvenWhenGrantedLater() {
        var journal = Journal()
        journal.append(.budgetSet(total: 100))
        journal.append(.budgetAllocate(BudgetRequest(tokens: 100)))  // alloc-1.100 holds everything
        var spec = WorkerSpec(command: ["x"])
        spec.tokens = 60
        journal.append(.worker(.spawn(spec, queue: true, evidence: .roomy)))  // w-1.200, queued for tokens
        journal.append(.worker(.spawn(spec, queue: true, evidence: .roomy)))  // w-1.300, queued
        journal.append(.budgetRelease(allocation: "alloc-1.100", used: 0))
        journal.append(.worker(.promote(evidence: .roomy)))
        let (state, outcomes) = journal.fold()
        #expect(
            outcomes[2]
                == .spawnQueued(worker: "w-1.200", reason: "tokens: budget would be exceeded: 60 tokens requested, 0 of 100 available"))
        #expect(outcomes[5] == .promoted(workers: ["w-1.200"]))
        #expect(state.workers.live["w-1.200"]?.allocation == "alloc-1.200")
        #expect(state.budget.allocations["alloc-1.200"]?.holder == "w-1.200")
        #expect(WorkerState.allocationID(forWorker: "w-000042") == "alloc-w-000042", "a counted worker id of an older version")
    }

    /// A folder written by an older version: its snapshot holds counted ids, which keep working.
    @Test func countedIdsInAnOldSnapshotStillWork() throws {
        var journal = Journal(step: 1000)
        journal.append(.budgetSet(total: 1000))
        journal.append(.budgetAllocate(BudgetRequest(tokens: 10, holder: "h1")))
        journal.append(.budgetAllocate(BudgetRequest(tokens: 20, holder: "h2")))
        journal.append(.taskCreate(TaskSpec(type: "t")))
        let (state, _) = journal.fold()
        // Make it the snapshot an older version wrote: the same state under counted ids (of the
        // same lengths, so the snapshot's section sizes still hold).
        var text = String(
            decoding: SnapshotCodec.encode(state, position: .start, writtenAtMilliseconds: 0, writingFormat: 4), as: UTF8.self)
        let renames = [("alloc-1.1000", "alloc-000001"), ("alloc-1.2000", "alloc-000002"), ("task-1.3000", "task-000001")]
        for (positional, counted) in renames {
            text = text.replacingOccurrences(of: "\"\(positional)\"", with: "\"\(counted)\"")
        }
        // Older versions wrote format 3, with no checksum (accepted unverified).
        text = text.replacingOccurrences(of: "\"format\":4", with: "\"format\":3")
        text = text.replacingOccurrences(of: #",\"crc\":\"[0-9a-f]{8}\"\}\n"#, with: "}\n", options: .regularExpression)
        let (old, _) = try #require(SnapshotCodec.decode(ImmutableBytes(Array(text.utf8))))
        #expect(old.budget.allocations["alloc-000002"]?.holder == "h2")

        var later = Journal(segment: 2)  // past the snapshot
        later.append(.budgetRelease(allocation: "alloc-000002", used: 5))
        later.append(.budgetRelease(allocation: "alloc-000002", used: 5))
        later.append(.budgetRelease(allocation: "alloc-000009", used: 5))
        later.append(.taskClaim(TaskClaim(worker: "w")))
        later.append(.budgetAllocate(BudgetRequest(tokens: 1)))
        let (after, outcomes) = later.fold(into: old)
        #expect(outcomes[0] == .released(allocation: "alloc-000002", spent: 5, returned: 15), "h2's, as the old id said")
        #expect(outcomes[1] == .refused("allocation alloc-000002 was already released"))
        #expect(outcomes[2] == .rejected("no allocation alloc-000009"), "never counted that far")
        #expect(outcomes[3] == .claimed(task: "task-000001", claim: 1))
        #expect(outcomes[4] == .granted(allocation: "alloc-2.400"), "new ids are positional")
        #expect(after.budget.allocations["alloc-000001"]?.holder == "h1")
    }

    @Test func idsAreWrittenAndReadInExactlyOneForm() {
        let position = JournalPosition(segment: 12, offset: 1_048_576)
        #expect(position.id(.task) == "task-12.1048576")
        #expect(position.id(.allocation) == "alloc-12.1048576")
        #expect(position.id(.worker) == "w-12.1048576")
        for kind in IDKind.allCases {
            #expect(JournalPosition(id: position.id(kind), kind) == position)
            #expect((try? Values.validateIdentifier(position.id(kind), what: "id")) != nil, "usable as a file name and argument")
        }
        #expect(JournalPosition(id: "task-1.0", .task) == .start)
        for bad in [
            "task-01.5", "task-1.05", "task-1", "task-1.", "task-.5", "task-1.2.3", "task-0.5", "task--1.5", "task-+1.5", "task-1.5 ",
            "alloc-1.5", "task-000042", "task-1.99999999999999999999",
        ] {
            #expect(JournalPosition(id: bad, .task) == nil, "\(bad)")
        }
        #expect(IssuedID("task-000042", .task) == .counted(42))
        #expect(IssuedID("task-7.9", .task) == .positional(JournalPosition(segment: 7, offset: 9)))
        #expect(IssuedID("task-42", .task) == nil, "counted ids had at least six digits")
        let created = ["w-000007", "w-1.900", "w-1.1000", "w-2.0", "w-10.5"]
        #expect(created.shuffled().sorted { IssuedID.issueOrder($0, $1, .worker) } == created, "listed in the order created")
    }
}
