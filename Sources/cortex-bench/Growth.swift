import CortexCore
import CortexStorage
import Glibc

// MARK: - (e) journal growth: 1,000,000 operations with the reaper's compaction

/// Issue 5: after N operations the live journal, the snapshot and the views stay bounded, and a
/// call costs what it cost at 1,000. One long-lived writer appends task and budget records
/// (create, allocate, claim, complete, release: a finished unit of work every 5 records), as many
/// tools would, publishing every 100 records; `compactJournal` runs every 20,000 records, as a
/// cron reaper would. At checkpoints, 300 tool-like calls (open + allocate + publish, then open +
/// release + publish) are timed in-process, and the folder's sizes are measured.
func benchGrowth(_ options: BenchOptions, _ scratch: ScratchFolder) {
    let total = options.records
    let root = scratch.path + "/growth"
    must("create") { () throws(CortexError) in try CoordinationStore.createLayout(CoordinationLayout(root: root), config: CortexConfig()) }
    let writer = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: false) }
    _ = must("set") { () throws(CortexError) in try writer.submit(.budgetSet(total: 1 << 60)) }
    var table = Table(
        "Journal growth: \(grouped(total)) operations, compaction every 20,000 (call = open + submit + publish, 300 allocate + 300 release)",
        [
            "operations", "call p50 ms", "call p95 ms", "live segment KiB", "snapshot KiB", "views KiB", "journal/ files",
            "archive/ files", "state/finished files",
        ])
    var checkpoints = [1_000, 10_000, 100_000]
    var next = 200_000
    while next <= total {
        checkpoints.append(next)
        next += 200_000
    }
    checkpoints = checkpoints.filter { $0 <= total }
    var done = 1
    for checkpoint in checkpoints {
        while done < checkpoint {
            let batch = min(100, (checkpoint - done) / 5 * 5)
            if batch < 5 { break }
            for _ in 0..<(batch / 5) {
                let created = must("create") { () throws(CortexError) in try writer.submit(.taskCreate(TaskSpec(type: "build"))).outcome }
                let allocated = must("allocate") { () throws(CortexError) in
                    try writer.submit(.budgetAllocate(BudgetRequest(tokens: 10))).outcome
                }
                guard case .created(let task, _) = created, case .granted(let allocation) = allocated,
                    case .claimed(_, let claim) = must(
                        "claim", { () throws(CortexError) in try writer.submit(.taskClaim(TaskClaim(worker: "w-1"))).outcome })
                else { fail("unexpected outcome while filling") }
                _ = must("complete") { () throws(CortexError) in
                    try writer.submit(.taskComplete(task: task, claim: claim, result: nil, tokensUsed: 7))
                }
                _ = must("release") { () throws(CortexError) in try writer.submit(.budgetRelease(allocation: allocation, used: 7)) }
            }
            done += batch
            must("publish") { () throws(CortexError) in try writer.publish() }
            if done % 20_000 < batch {
                _ = must("compact") { () throws(CortexError) in
                    try writer.compactJournal(
                        rotateAboveBytes: CortexConfig().reaperRotateBytes, retentionMilliseconds: 0,
                        nowMilliseconds: POSIX.wallClockMilliseconds())
                }
            }
        }
        var samples = Samples()
        for _ in 0..<300 {
            let start = Clock.now()
            let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: false) }
            guard
                case .granted(let allocation) = must(
                    "allocate", { () throws(CortexError) in try store.submit(.budgetAllocate(BudgetRequest(tokens: 1))).outcome })
            else { fail("allocation refused") }
            must("publish") { () throws(CortexError) in try store.publish() }
            let middle = Clock.now()
            let again = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: false) }
            _ = must("release") { () throws(CortexError) in try again.submit(.budgetRelease(allocation: allocation, used: 1)) }
            must("publish") { () throws(CortexError) in try again.publish() }
            let end = Clock.now()
            samples.add(middle - start)
            samples.add(end - middle)
        }
        must("catch up") { () throws(CortexError) in try writer.catchUp() }
        done += 600
        let layout = writer.layout
        func kib(_ path: String) -> String { fixed(Double((try? POSIX.status(path))??.st_size ?? 0) / 1024, 1) }
        let views = [layout.budgetView, layout.taskView, layout.workerView].reduce(0) {
            $0 + Int((try? POSIX.status($1))??.st_size ?? 0)
        }
        func count(_ folder: String) -> Int { ((try? POSIX.directoryEntries(folder)) ?? []).filter { !$0.hasPrefix(".") }.count }
        table.add([
            grouped(checkpoint), fixed(samples.p50), fixed(samples.p95),
            kib(FileJournal(directory: layout.journal).path(ofSegment: writer.position.segment)), kib(layout.snapshot),
            fixed(Double(views) / 1024, 1),
            grouped(count(layout.journal) - 1), grouped(count(layout.archive)), grouped(count(layout.finishedTasks)),
        ])
    }
    table.print()
    print(
        "\njournal/ files are the live segment and one tombstone (~170 bytes) per archived segment; archive/ is emptied by retention 0 here; state/finished/ holds one file per snapshot that compacted finished tasks, purged by the reaper after result_ttl (7 days by default)."
    )
}
