import CortexCore
import CortexStorage
import Glibc

/// Settings from the command line.
struct BenchOptions {
    var quick = false
    var records = 1_000_000
    var base = "/tmp"
    var keep = false
    var sections: Set<String> = ["submit", "call", "fold", "tail"]

    init(_ arguments: [String]) {
        var cursor = ArgumentCursor(arguments, from: 1)
        func next() -> String { cursor.value() }
        while let argument = cursor.next() {
            switch argument {
            case "--quick":
                quick = true
                records = 100_000
            case "--records":
                guard let value = Int(next()), value >= 20_000 else { fail("--records needs a number ≥ 20000") }
                records = value
            case "--dir": base = next()
            case "--keep": keep = true
            case "--only": sections = Set(next().split(separator: ",").map(String.init))
            case "--help", "-h":
                print(
                    """
                    USAGE: cortex-bench [--quick] [--records N] [--dir BASE] [--only submit,call,fold,tail,growth] [--keep]

                    In-library measurements of CortexCore (no process start):
                      submit  append + fold + decide (store.submit) in one process
                      call    what one 'cortex-budget allocate' does, minus exec: open + submit + publish, by phase
                      fold    fold speed over an N-record journal (default 1,000,000), with and without a snapshot
                      tail    fold cost after a snapshot vs records since it and vs journal length
                    growth  N operations (default 1,000,000) with the reaper's compaction: call cost and folder sizes
                            at checkpoints (not in the default set; --only growth)
                    Scratch data goes to BASE/cortex-bench-PID (default /tmp), removed at the end unless --keep.
                    """)
                exit(0)
            default: fail("unknown argument \(argument) (see --help)")
            }
        }
    }
}

/// Entry point called from main.swift.
func runLibraryBenchmarks(_ arguments: [String]) {
    let options = BenchOptions(arguments)
    let scratch = ScratchFolder(base: options.base, name: "cortex-bench-\(getpid())")
    print("cortex-bench: CortexCore in-library measurements\(options.quick ? " (quick)" : ""), scratch \(scratch.path)")
    if options.sections.contains("submit") { benchSubmit(options, scratch) }
    if options.sections.contains("call") { benchCall(options, scratch) }
    var foldFolder: JournalBuilder?
    if options.sections.contains("fold") { foldFolder = benchFold(options, scratch) }
    if options.sections.contains("tail") { benchTail(options, scratch, big: foldFolder) }
    if options.sections.contains("growth") { benchGrowth(options, scratch) }
    if !options.keep { scratch.remove() }
}

// MARK: - (a) append + fold + decide

func benchSubmit(_ options: BenchOptions, _ scratch: ScratchFolder) {
    let count = options.quick ? 5_000 : 50_000
    var table = Table(
        "In-library append + fold + decide (`store.submit(.budgetAllocate)`), one process, \(grouped(count)) ops",
        ["variant", "ops", "ops/s", "p50 ms", "p95 ms", "p99 ms"])
    for variant in ["allocate only", "allocate + release"] {
        let root = scratch.path + "/submit-\(variant.hasSuffix("release") ? "pairs" : "alloc")"
        let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: true) }
        _ = must("set") { () throws(CortexError) in try store.submit(.budgetSet(total: 1_000_000_000_000_000)) }
        var samples = Samples()
        let pairs = variant.hasSuffix("release")
        let start = Clock.now()
        for index in 0..<count {
            let t0 = Clock.now()
            let submission = must("submit") { () throws(CortexError) in
                try store.submit(.budgetAllocate(BudgetRequest(tokens: 1 + Int64(index % 100))))
            }
            samples.add(Clock.now() - t0)
            guard case .granted(let id) = submission.outcome else { fail("allocation not granted: \(submission.outcome)") }
            if pairs {
                let t1 = Clock.now()
                _ = must("release") { () throws(CortexError) in try store.submit(.budgetRelease(allocation: id, used: 1)) }
                samples.add(Clock.now() - t1)
            }
        }
        let seconds = Clock.seconds(since: start)
        let ops = samples.values.count
        table.add([
            variant, grouped(ops), rate(ops, seconds), fixed(samples.p50, 4), fixed(samples.p95, 4),
            fixed(samples.percentileMilliseconds(99), 4),
        ])
        ScratchFolder.removeTree(root)
    }
    table.print()
}

// MARK: - what one CLI call does, minus process start

func benchCall(_ options: BenchOptions, _ scratch: ScratchFolder) {
    let calls = options.quick ? 300 : 1_500
    let outstandingCases = options.quick ? [0, 1_000] : [0, 100, 1_000, 10_000]
    var table = Table(
        "One `cortex-budget allocate` body in-process (open + submit + publish; each allocation released afterwards, untimed), \(grouped(calls)) calls per row",
        [
            "outstanding allocations", "calls/s", "p50 ms", "p95 ms", "open p50", "submit p50", "publish p50",
            "records folded at open (mean)", "snapshot load p50", "view render p50", "snapshot bytes", "view bytes",
        ])
    for outstanding in outstandingCases {
        let root = scratch.path + "/call-\(outstanding)"
        let builder = JournalBuilder(root: root, outstandingLimit: nil)
        builder.append(outstanding)
        do {
            let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: true) }
            must("snapshot") { () throws(CortexError) in try store.writeSnapshot() }
            must("views") { () throws(CortexError) in try store.publishViews() }
        }
        var total = Samples()
        var opening = Samples()
        var submitting = Samples()
        var publishing = Samples()
        var folded = 0
        for _ in 0..<calls {
            let t0 = Clock.now()
            let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: true) }
            let t1 = Clock.now()
            folded += store.recordsSinceSnapshot
            let submission = must("submit") { () throws(CortexError) in try store.submit(.budgetAllocate(BudgetRequest(tokens: 5))) }
            let t2 = Clock.now()
            must("publish") { () throws(CortexError) in try store.publish() }
            let t3 = Clock.now()
            guard case .granted(let id) = submission.outcome else { fail("allocation not granted: \(submission.outcome)") }
            // Untimed: a worker releases it, so the outstanding count stays where the row says.
            _ = must("release") { () throws(CortexError) in try store.submit(.budgetRelease(allocation: id, used: 5)) }
            opening.add(t1 - t0)
            submitting.add(t2 - t1)
            publishing.add(t3 - t2)
            total.add(t3 - t0)
        }
        // The snapshot's load cost on its own: map + parse the first line + rebuild the state.
        let layout = CoordinationLayout(root: root)
        var loading = Samples()
        for _ in 0..<50 {
            let t0 = Clock.now()
            guard let bytes = ImmutableBytes.map(layout.snapshot), SnapshotCodec.decode(bytes) != nil else {
                fail("snapshot unreadable")
            }
            loading.add(Clock.now() - t0)
        }
        // Rendering token-budget.json from the state (what publishViews does before writing it).
        var rendering = Samples()
        let finalStore = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: false) }
        for _ in 0..<50 {
            let t0 = Clock.now()
            let bytes = Views.budget(finalStore.state, nowMilliseconds: POSIX.wallClockMilliseconds()).prettySerialized()
            rendering.add(Clock.now() - t0)
            if bytes.isEmpty { fail("empty view") }
        }
        let snapshotBytes = (try? POSIX.readFile(layout.snapshot).count) ?? 0
        let viewBytes = (try? POSIX.readFile(layout.budgetView).count) ?? 0
        table.add([
            grouped(outstanding), rate(calls, Double(total.values.reduce(0, +)) / 1e9), fixed(total.p50), fixed(total.p95),
            fixed(opening.p50), fixed(submitting.p50), fixed(publishing.p50), fixed(Double(folded) / Double(calls), 1),
            fixed(loading.p50), fixed(rendering.p50), grouped(snapshotBytes), grouped(viewBytes),
        ])
        ScratchFolder.removeTree(root)
    }
    table.print()
    benchViewWrite(options, scratch)
    print(
        "\n(publish writes a snapshot when ≥ \(CortexConfig().snapshotEveryRecords) records were folded since the last one, and token-budget.json every call.)"
    )
}

// MARK: - (b) fold speed over a large journal

func benchFold(_ options: BenchOptions, _ scratch: ScratchFolder) -> JournalBuilder {
    let count = options.records
    let root = scratch.path + "/fold"
    let builder = JournalBuilder(root: root, outstandingLimit: 64)
    let buildStart = Clock.now()
    builder.append(count - 1)  // plus the budget.set record
    let buildSeconds = Clock.seconds(since: buildStart)
    let records = builder.recordsWritten
    let bytes = builder.journalBytes
    let reps = options.quick ? 2 : 3
    var table = Table(
        "Fold speed over a \(grouped(records))-record journal (\(grouped(Int(bytes >> 20))) MiB, \(builder.segment) segments of ≤ 8 MiB; best of \(reps))",
        ["what", "records", "seconds", "records/s", "MiB/s"])
    func row(_ what: String, _ folded: Int, _ seconds: Double, wholeJournal: Bool = true) {
        table.add([
            what, grouped(folded), fixed(seconds), rate(folded, seconds),
            wholeJournal ? fixed(Double(bytes) / 1_048_576 / seconds, 1) : "-",
        ])
    }
    row("build: RecordCodec.encode + batched write (not a fold)", records, buildSeconds)

    func best(_ body: () -> Int) -> (Int, Double) {
        var bestSeconds = Double.infinity
        var result = 0
        for _ in 0..<reps {
            let start = Clock.now()
            result = body()
            bestSeconds = min(bestSeconds, Clock.seconds(since: start))
        }
        return (result, bestSeconds)
    }

    // Floor: read every segment and count newlines, no decoding.
    let (lines, scanSeconds) = best {
        var lines = 0
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        for number in 1...builder.segment {
            let fd = open(builder.journal.path(ofSegment: number), O_RDONLY | O_CLOEXEC)
            while true {
                let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if got <= 0 { break }
                for index in 0..<got where chunk[index] == 0x0A { lines += 1 }
            }
            close(fd)
        }
        return lines
    }
    row("floor: read(2) + count newlines", lines, scanSeconds)

    let (decoded, decodeSeconds) = best {
        let journal = FileJournal(directory: builder.layout.journal)
        let summary = must("read") { () throws(CortexError) in try journal.readForward(from: .start) { _, _ in } }
        return summary.recordsRead
    }
    row("FileJournal.readForward (CRC + JSON decode), no reduce", decoded, decodeSeconds)

    let (reduced, reduceSeconds) = best {
        let journal = FileJournal(directory: builder.layout.journal)
        var state = CortexState()
        let summary = must("read") { () throws(CortexError) in
            try journal.readForward(from: .start) { record, position in _ = Reducer.reduce(&state, record, at: position) }
        }
        if !(1...64).contains(state.budget.allocations.count) { fail("unexpected fold: \(state.budget.allocations.count) outstanding") }
        return summary.recordsRead
    }
    row("readForward + Reducer.reduce (the fold)", reduced, reduceSeconds)

    // The reducer alone, over records already decoded (the first 100,000, folded repeatedly).
    do {
        var decodedRecords: [(Record, JournalPosition)] = []
        let journal = FileJournal(directory: builder.layout.journal)
        _ = must("read") { () throws(CortexError) in
            try journal.readForward(from: .start) { record, position in
                if decodedRecords.count < 100_000 { decodedRecords.append((record, position)) }
            }
        }
        let (folds, reduceOnlySeconds) = best {
            var state = CortexState()
            for (record, position) in decodedRecords { _ = Reducer.reduce(&state, record, at: position) }
            return decodedRecords.count
        }
        row("Reducer.reduce alone (records already decoded, first \(grouped(folds)))", folds, reduceOnlySeconds, wholeJournal: false)
    }

    let (opened, openSeconds) = best {
        let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: false) }
        return Int(store.state.recordsFolded)
    }
    row("CoordinationStore.open, no snapshot (full fold)", opened, openSeconds)

    let snapshotStart = Clock.now()
    do {
        let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: false) }
        let t0 = Clock.now()
        must("snapshot") { () throws(CortexError) in try store.writeSnapshot() }
        table.add(["writeSnapshot (fdatasync journal, write, fsync, rename)", "-", fixed(Clock.seconds(since: t0)), "-", "-"])
    }
    _ = snapshotStart
    let (afterSnapshot, snapshotOpenSeconds) = best {
        let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: false) }
        return store.recordsSinceSnapshot
    }
    table.add([
        "CoordinationStore.open, snapshot at the end", grouped(afterSnapshot) + " folded", fixed(snapshotOpenSeconds, 5), "-", "-",
    ])
    table.print()
    return builder
}

// MARK: - (c) fold cost after a snapshot

func benchTail(_ options: BenchOptions, _ scratch: ScratchFolder, big: JournalBuilder?) {
    let reps = options.quick ? 10 : 30
    func timeOpen(_ root: String) -> (Samples, Int) {
        var samples = Samples()
        var folded = 0
        for _ in 0..<reps {
            let t0 = Clock.now()
            let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: false) }
            samples.add(Clock.now() - t0)
            folded = store.recordsSinceSnapshot
        }
        return (samples, folded)
    }
    func snapshot(_ root: String) {
        let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: root, createIfMissing: false) }
        must("snapshot") { () throws(CortexError) in try store.writeSnapshot() }
    }

    // Records since the snapshot, in the big journal.
    let bigBuilder: JournalBuilder
    if let big {
        bigBuilder = big
    } else {
        bigBuilder = JournalBuilder(root: scratch.path + "/fold", outstandingLimit: 64)
        bigBuilder.append(options.records - 1)
    }
    snapshot(bigBuilder.root)
    var byTail = Table(
        "`CoordinationStore.open` (load snapshot + fold the records after it) in a \(grouped(bigBuilder.recordsWritten))-record journal, median of \(reps)",
        ["records since snapshot", "journal records", "p50 ms", "p95 ms", "µs per record after snapshot"])
    var previous = 0
    var baseline = 0.0
    for tail in [0, 100, 1_000, 10_000, 100_000] {
        bigBuilder.append(tail - previous)
        previous = tail
        let (samples, folded) = timeOpen(bigBuilder.root)
        if folded != tail { fail("expected \(tail) records after the snapshot, folded \(folded)") }
        if tail == 0 { baseline = samples.p50 }
        byTail.add([
            grouped(tail), grouped(bigBuilder.recordsWritten), fixed(samples.p50), fixed(samples.p95),
            tail == 0 ? "-" : fixed((samples.p50 - baseline) * 1000 / Double(tail), 2),
        ])
    }
    byTail.print()

    // Same tail, different journal lengths. All folders are built first and timed round-robin,
    // so a change in machine load (or the kernel writing back a freshly built journal) hits every row alike.
    let tail = 1_000
    var byLength = Table(
        "Fold cost after a snapshot vs journal length (\(grouped(tail)) records after the snapshot), \(reps) opens each, round-robin",
        ["journal records", "segments", "open p50 ms", "open p95 ms", "records folded"])
    var lengths = [10_000, 100_000]
    if options.records > 100_000 { lengths.append(options.records) }
    var builders: [JournalBuilder] = []
    for length in lengths {
        let builder = JournalBuilder(root: scratch.path + "/tail-\(length)", outstandingLimit: 64)
        builder.append(length - tail - 1)
        snapshot(builder.root)
        builder.append(tail)
        builders.append(builder)
    }
    var samples = [Samples](repeating: Samples(), count: builders.count)
    var folded = [Int](repeating: 0, count: builders.count)
    for _ in 0..<reps {
        for (index, builder) in builders.enumerated() {
            let t0 = Clock.now()
            let store = must("open") { () throws(CortexError) in try CoordinationStore.open(root: builder.root, createIfMissing: false) }
            samples[index].add(Clock.now() - t0)
            folded[index] = store.recordsSinceSnapshot
        }
    }
    for (index, builder) in builders.enumerated() {
        byLength.add([
            grouped(builder.recordsWritten), String(builder.segment), fixed(samples[index].p50), fixed(samples[index].p95),
            grouped(folded[index]),
        ])
        ScratchFolder.removeTree(builder.root)
    }
    byLength.print()
}

/// What publishing one file costs: `AtomicFile.replace` (temp file, write, rename) at view sizes.
func benchViewWrite(_ options: BenchOptions, _ scratch: ScratchFolder) {
    let writes = options.quick ? 300 : 2_000
    var table = Table(
        "`AtomicFile.replace` in one folder, \(grouped(writes)) writes per row (a view write; snapshots add fsyncs)",
        ["size", "durability", "p50 ms", "p95 ms"])
    let path = scratch.path + "/view.json"
    for (size, durability) in [
        (1_024, AtomicFile.Durability.processCrash), (32 * 1_024, .processCrash), (160 * 1_024, .processCrash), (32 * 1_024, .powerLoss),
    ] {
        let bytes = [UInt8](repeating: UInt8(ascii: "x"), count: size)
        var samples = Samples()
        for _ in 0..<(durability == .powerLoss ? writes / 10 : writes) {
            let t0 = Clock.now()
            must("replace") { () throws(CortexError) in try AtomicFile.replace(path, with: bytes, durability: durability) }
            samples.add(Clock.now() - t0)
        }
        table.add([
            "\(size / 1_024) KiB", durability == .powerLoss ? "powerLoss (fsync file + folder)" : "processCrash", fixed(samples.p50),
            fixed(samples.p95),
        ])
    }
    table.print()
}
