import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// Units of docs/decisions/021-outcome-is-the-truth.md: clock steps, temp file names, acknowledged damage.
@Suite struct OutcomeTests {
    @Test func aStepIsAMoveOfTheWallClocksOffsetFromBootTimeBeyondTheTolerance() {
        let boot: Int64 = 1_700_000_000_000
        #expect(FolderClock.step(from: nil, to: boot) == nil, "no earlier reading: nothing to compare")
        #expect(FolderClock.step(from: boot, to: boot + 150) == nil, "slew and drift are not steps")
        #expect(FolderClock.step(from: boot, to: boot + 3_600_000) == 3_600_000)
        #expect(FolderClock.step(from: boot, to: boot - 90_000) == -90_000)
    }

    /// The age computation with a stepped wall clock: a heartbeat stamped before a forward step
    /// of an hour is an hour "old" by its own time, but counted from the run that saw the step it
    /// is as old as the time since then.
    @Test func aHeartbeatStampedBeforeAStepCountsFromTheRunThatSawIt() {
        let touched: Int64 = 1_000_000
        let step: Int64 = 3_600_000
        let sawStep = touched + step + 10_000  // the reaper run after the step, on the new clock
        let now = sawStep + 20_000
        #expect(FolderClock.age(heartbeatMilliseconds: touched, nowMilliseconds: now) > 3600)
        #expect(FolderClock.age(heartbeatMilliseconds: max(touched, sawStep), nowMilliseconds: now) == 20)
        // A heartbeat from the future (a backward step) is fresh, never negative.
        #expect(FolderClock.age(heartbeatMilliseconds: now + 5_000, nowMilliseconds: now) == 0)
    }

    @Test func temporaryNamesAreRecognisedExactly() {
        let layout = CoordinationLayout(root: "/srv/c")
        let made = AtomicFile.temporaryName(beside: layout.budgetView, in: layout.folder)
        #expect(AtomicFile.isTemporaryName(String(made.split(separator: "/").last!)))
        #expect(AtomicFile.isTemporaryName(".task-000001.json.tmp-123-0a1b2c3d"))
        for name in ["token-budget.json", ".token-budget.json", "task-000001.attempt-1.json", ".x.tmp-12", ".x.tmp-a1-ff", ".x.tmp-1-XY"] {
            #expect(!AtomicFile.isTemporaryName(name), "\(name)")
        }
    }

    /// Over a folder, `cortex verify` and the store; over a `MemoryJournal`, the store alone.
    @Test(arguments: StoreBackend.allCases)
    func anAcknowledgedFragmentIsNoLongerDamageForVerifyOrTheStore(_ backend: StoreBackend) throws {
        let subject = try StoreUnderTest(backend)
        let store = try subject.open()
        _ = try store.submit(.budgetSet(total: 100))
        let fragment = Array(#"{"cortex":1,"id":"r1234"#.utf8)
        if let layout = subject.layout {
            try appendRaw(fragment, to: layout.journal + "/000000000001.jsonl")
        } else {
            _ = try subject.memory!.append(fragment, tail: store.position)
        }
        _ = try store.submit(.budgetSet(total: 200))
        let journal = subject.layout.map { FileJournal(directory: $0.journal) }
        let damaged = try journal.map { try JournalVerifier.verify($0) }
        if let damaged { #expect(damaged.damaged.count == 1 && !damaged.isClean) }
        let found = try subject.open().damagedLines
        #expect(found.count == 1)

        let harmless = damaged.map(JournalVerifier.acknowledgeable) ?? found
        if let damaged { #expect(harmless == damaged.damaged) }
        let submission = try store.submit(kind: JournalVerifier.acknowledgementKind, data: JournalVerifier.acknowledgement(of: harmless))
        #expect(submission.outcome == .ignored, "the reducer does not fold acknowledgements")
        #expect(JournalVerifier.acknowledgedPositions(submission.record) == harmless.map(\.position))
        if let journal {
            let green = try JournalVerifier.verify(journal)
            #expect(green.isClean && green.acknowledged == harmless)
        }
        #expect(try subject.open().damagedLines.isEmpty)
        #expect(try subject.open().state.budget.total == 200)
    }

    @Test func aJournalWithoutConfigJSONIsAConfigurationErrorNotNewDefaults() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        unlink(layout.config)
        #expect(throws: CortexError.self) { try CoordinationStore.open(root: layout.root, createIfMissing: false) }
        do {
            _ = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        } catch {
            guard case .configuration(let message) = error else {
                Issue.record("expected a configuration error, got \(error)")
                return
            }
            #expect(message.contains("cortex init"))
        }
        #expect(access(layout.config, F_OK) != 0, "no default settings written")
    }
}
