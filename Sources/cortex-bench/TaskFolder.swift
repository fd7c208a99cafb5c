import CortexCore
import CortexStorage
import Glibc

/// `cortex-bench task-folder DIR --done N --pending P [--allocations A] [--type T] [--snapshot-every R]`:
/// builds a coordination folder for the task-queue benchmarks (bench/run-tasks) through the
/// public API, far faster than the CLI could: N tasks created, claimed and completed (so the
/// journal holds 3·N records of finished work), then P pending tasks of type T, then a
/// snapshot and the views, exactly the files a CLI-built folder has. A snapshot is written every
/// R records on the way (default: the folder's `snapshot_every_records`, as the tools do), so
/// finished tasks are compacted under `state/finished/` as they would be in real use. With
/// `--allocations A`, the budget is set to 10⁹ tokens and A allocations of one token each stay
/// outstanding (holders `bench-1` … `bench-A`), for the budget's cost-in-the-state benchmark.
func runTaskFolder(_ arguments: [String]) {
    guard arguments.count >= 3 else {
        fail("usage: cortex-bench task-folder DIR [--done N] [--pending P] [--allocations A] [--type T] [--snapshot-every R]")
    }
    let root = arguments[2]
    var done = 0
    var pending = 0
    var allocations = 0
    var type = "bench"
    var snapshotEvery: Int?
    var cursor = ArgumentCursor(arguments, from: 3)
    func next() -> String { cursor.value() }
    while let argument = cursor.next() {
        switch argument {
        case "--done": done = Int(next()) ?? -1
        case "--pending": pending = Int(next()) ?? -1
        case "--allocations": allocations = Int(next()) ?? -1
        case "--type": type = next()
        case "--snapshot-every": snapshotEvery = Int(next())
        default: fail("unknown argument \(argument)")
        }
    }
    guard done >= 0, pending >= 0, allocations >= 0 else { fail("--done, --pending and --allocations need whole numbers") }
    let start = Clock.now()
    let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: true) }
    let every = max(1, snapshotEvery ?? store.config.snapshotEveryRecords)
    var snapshots = 0
    func maybeSnapshot() {
        if store.recordsSinceSnapshot >= every {
            must("snapshot") { () throws(CortexError) in try store.writeSnapshot() }
            snapshots += 1
        }
    }
    for _ in 0..<done {
        let created = must("create") { () throws(CortexError) in try store.submit(.taskCreate(TaskSpec(type: type))) }
        guard case .created = created.outcome else { fail("create: \(created.outcome)") }
        let claimed = must("claim") { () throws(CortexError) in try store.submit(.taskClaim(TaskClaim(worker: "builder"))) }
        guard case .claimed(let id, let token) = claimed.outcome else { fail("claim: \(claimed.outcome)") }
        let completed = must("complete") { () throws(CortexError) in
            try store.submit(.taskComplete(task: id, claim: token, result: nil, tokensUsed: nil))
        }
        guard case .completed = completed.outcome else { fail("complete: \(completed.outcome)") }
        maybeSnapshot()
    }
    for _ in 0..<pending {
        _ = must("create") { () throws(CortexError) in try store.submit(.taskCreate(TaskSpec(type: type))) }
        maybeSnapshot()
    }
    if allocations > 0 {
        _ = must("budget") { () throws(CortexError) in try store.submit(.budgetSet(total: 1_000_000_000)) }
        for number in 1...allocations {
            let granted = must("allocate") { () throws(CortexError) in
                try store.submit(.budgetAllocate(BudgetRequest(tokens: 1, holder: "bench-\(number)")))
            }
            guard case .granted = granted.outcome else { fail("allocate: \(granted.outcome)") }
            maybeSnapshot()
        }
    }
    must("snapshot") { () throws(CortexError) in try store.writeSnapshot() }
    must("views") { () throws(CortexError) in try store.publishViews() }
    let counts = store.state.tasks.counts
    print(
        "task-folder \(root): \(counts[.done, default: 0]) done, \(counts[.pending, default: 0]) pending, "
            + "\(allocations) allocations, \(store.state.recordsFolded) records, \(snapshots + 1) snapshots, \(fixed(Clock.seconds(since: start), 1)) s"
    )
}
