import CortexCore
import CortexStorage
import Glibc

/// `cortex-bench ops-journal DIR [--records N] [--pending P]`: a coordination folder for the
/// operator benchmarks (bench/run-ops): N journal records of task work in four types (create,
/// allocate, claim, complete or fail, release: five records a task) with synthetic times, P
/// tasks left waiting, then a fresh snapshot. Records are written in 1 MiB batches and rotated
/// at the configured segment size, as `JournalBuilder` does; the builder folds each record as it
/// goes (the claims' winners come from the fold) and writes the snapshot of that fold.
func runOpsJournal(_ arguments: [String]) {
    guard arguments.count >= 3 else { fail("usage: cortex-bench ops-journal DIR [--records N] [--pending P]") }
    let root = arguments[2]
    var records = 1_000_000
    var pending = 100
    var cursor = ArgumentCursor(arguments, from: 3)
    while let argument = cursor.next() {
        switch argument {
        case "--records": records = Int(cursor.value()) ?? -1
        case "--pending": pending = Int(cursor.value()) ?? -1
        default: fail("unknown argument \(argument)")
        }
    }
    guard records > pending, pending >= 0 else { fail("--records must exceed --pending") }
    let start = Clock.now()
    let layout = CoordinationLayout(root: root)
    must("create layout") { () throws(CortexError) in try CoordinationStore.createLayout(layout, config: CortexConfig()) }
    let journal = FileJournal(directory: layout.journal)
    let segmentMaxBytes = CortexConfig().segmentMaxBytes
    var segment = 1
    var segmentSize: Int64 = 0
    var fd = open(journal.path(ofSegment: segment), O_WRONLY | O_APPEND | O_CLOEXEC)
    var buffer: [UInt8] = []
    buffer.reserveCapacity(1 << 20 + 4096)
    var state = CortexState()
    var written = 0
    var clock: Int64 = 1_800_000_000_000

    func flush() {
        guard !buffer.isEmpty else { return }
        let count = buffer.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if count != buffer.count { fail("short write to journal") }
        segmentSize += Int64(count)
        buffer.removeAll(keepingCapacity: true)
    }
    @discardableResult
    func emit(_ event: Event, at time: Int64) -> Outcome {
        let record = Record(id: Record.newID(), timeMilliseconds: time, kind: event.kind, data: event.data)
        let line = must("encode") { () throws(CortexError) in try RecordCodec.encode(record) }
        if segmentSize + Int64(buffer.count + line.count) > segmentMaxBytes {
            flush()
            must("rotate") { () throws(CortexError) in try journal.rotate(segment: segment, timeMilliseconds: time) }
            close(fd)
            segment += 1
            segmentSize = 0
            fd = open(journal.path(ofSegment: segment), O_WRONLY | O_APPEND | O_CLOEXEC)
        }
        let position = JournalPosition(segment: segment, offset: segmentSize + Int64(buffer.count))
        buffer.append(contentsOf: line)
        written += 1
        if buffer.count >= 1 << 20 { flush() }
        let outcome = Reducer.reduce(&state, record, at: position)
        // The fold's outbox of finished tasks is compacted into files by a store; here it is dropped.
        if state.tasks.finished.count > 4096 { state.tasks.finished.removeAll() }
        return outcome
    }

    emit(.budgetSet(total: 1_000_000_000_000_000), at: clock)
    let types = ["build", "test", "lint", "deploy"]
    let runMilliseconds: [Int64] = [4_000, 1_200, 300, 9_000]
    var random: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next(_ bound: Int64) -> Int64 {
        random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int64((random >> 33) % UInt64(bound))
    }
    var number: Int64 = 0
    while written + 5 <= records - pending {
        number += 1
        let index = Int(number % Int64(types.count))
        let type = types[index]
        clock += 3
        guard case .created(let task, _) = emit(.taskCreate(TaskSpec(type: type, tokens: 100)), at: clock) else {
            fail("create was not created")
        }
        guard case .granted(let allocation) = emit(.budgetAllocate(BudgetRequest(tokens: 100, task: task)), at: clock) else {
            fail("allocate was not granted")
        }
        let claimAt = clock + next(2_000)
        guard case .claimed(let claimed, let token) = emit(.taskClaim(TaskClaim(worker: "w-\(number % 50)")), at: claimAt) else {
            fail("claim found nothing")
        }
        let endAt = claimAt + runMilliseconds[index] / 2 + next(runMilliseconds[index])
        let used = 20 + next(80)
        if next(20) == 0 {
            emit(.taskFail(task: claimed, claim: token, error: "bench failure", retry: false), at: endAt)
        } else {
            emit(.taskComplete(task: claimed, claim: token, result: nil, tokensUsed: used), at: endAt)
        }
        emit(.budgetRelease(allocation: allocation, used: used), at: endAt)
        clock = claimAt
    }
    while written < records {
        clock += 1
        emit(.taskCreate(TaskSpec(type: types[written % types.count], priority: written % 3 == 0 ? .high : .medium)), at: clock)
    }
    flush()
    close(fd)
    state.tasks.finished.removeAll()
    let position = JournalPosition(segment: segment, offset: must("size") { () throws(CortexError) in try journal.sizeOfSegment(segment) })
    let snapshot = SnapshotCodec.encode(state, position: position, writtenAtMilliseconds: POSIX.wallClockMilliseconds())
    must("snapshot") { () throws(CortexError) in try AtomicFile.replace(layout.snapshot, with: snapshot, durability: .powerLoss) }
    print(
        "ops-journal \(root): \(written) records in \(segment) segments, \(state.tasks.counts[.pending, default: 0]) pending, snapshot \(snapshot.count / 1024) KiB, \(fixed(Clock.seconds(since: start), 1)) s"
    )
}
