import Testing

@testable import CortexCore
@testable import CortexStorage

/// The metrics fold (docs/decisions/014-metrics.md) on journals with known answers: no files,
/// no clock, every time from the records.
@Suite struct MetricsTests {
    /// Records folded in time order (ties keep the order given), with their outcomes. The n-th
    /// event added (from 0) sits at offset n of segment 1, whatever its place in time order.
    struct History {
        var events: [(time: Int64, event: Event)] = []
        static let start: Int64 = 1_800_000_000_000

        mutating func add(_ offset: Int64, _ event: Event) { events.append((Self.start + offset, event)) }

        /// The id of the task the `k`-th `task.create` added so far (from 1) creates.
        func task(_ k: Int64) -> String {
            let creates = events.indices.filter { events[$0].event.kind == "task.create" }
            return JournalPosition(segment: 1, offset: Int64(creates[Int(k) - 1])).id(.task)
        }

        var records: [(Record, JournalPosition)] {
            events.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map {
                (record($0.element.event, at: $0.element.time), JournalPosition(segment: 1, offset: Int64($0.offset)))
            }
        }

        func fold(_ records: [(Record, JournalPosition)]? = nil, into state: CortexState = CortexState()) -> CortexState {
            var state = state
            for (record, position) in records ?? self.records { _ = Reducer.reduce(&state, record, at: position) }
            return state
        }
    }

    /// 100 tasks of type `a`: task k waits k ms for its claim, runs k ms and reports 10·k tokens;
    /// 10 of type `b` fail once (retried) and then complete; 5 of type `c` fail without retry;
    /// one of type `d` is held by a worker declared lost.
    static func knownHistory() -> History {
        var history = History()
        for _ in 1...100 { history.add(0, .taskCreate(TaskSpec(type: "a"))) }
        for k in Int64(1)...100 {
            history.add(k, .taskClaim(TaskClaim(worker: "w-\(k)", types: ["a"])))
            history.add(
                2 * k, .taskComplete(task: history.task(k), claim: 1, result: nil, tokensUsed: 10 * k))
        }
        // Type b: tasks 101...110, created at 1 s, fail once at 1.1 s, retried after the backoff.
        for _ in 1...10 { history.add(1_000, .taskCreate(TaskSpec(type: "b", backoffMilliseconds: 10))) }
        for k in Int64(101)...110 {
            history.add(1_050, .taskClaim(TaskClaim(worker: "wb-\(k)", types: ["b"])))
            history.add(1_100, .taskFail(task: history.task(k), claim: 1, error: "flaky", retry: true))
        }
        for k in Int64(101)...110 {
            history.add(2_000, .taskClaim(TaskClaim(worker: "wb-\(k)", types: ["b"])))
            history.add(2_100, .taskComplete(task: history.task(k), claim: 2, result: nil, tokensUsed: nil))
        }
        // Type c: tasks 111...115 fail for good.
        for _ in 1...5 { history.add(3_000, .taskCreate(TaskSpec(type: "c"))) }
        for k in Int64(111)...115 {
            history.add(3_010, .taskClaim(TaskClaim(worker: "wc", types: ["c"])))
            history.add(3_020, .taskFail(task: history.task(k), claim: 1, error: "bad", retry: false))
        }
        // Type d: task 116, its worker lost.
        history.add(4_000, .taskCreate(TaskSpec(type: "d")))
        history.add(4_001, .taskClaim(TaskClaim(worker: "gone", types: ["d"])))
        history.add(5_000, .workerLost(worker: "gone", reason: "test"))
        return history
    }

    @Test func sketchQuantilesAreExactBelow128AndWithinOnePercentAbove() {
        var small = QuantileSketch()
        for value in Int64(1)...100 { small.add(value) }
        #expect(small.quantile(0.5) == 50)
        #expect(small.quantile(0.95) == 95)
        #expect(small.quantile(0.99) == 99)
        #expect(small.quantile(0) == 1)
        #expect(small.quantile(1) == 100)
        #expect(small.count == 100 && small.sum == 5050 && small.minimum == 1 && small.maximum == 100)

        var large = QuantileSketch()
        let values = (1...10_000).map { Int64($0) * 997 }
        for value in values.reversed() { large.add(value) }
        for q in [0.5, 0.9, 0.95, 0.99] {
            let exact = values[Int((q * Double(values.count)).rounded(.up)) - 1]
            let estimate = large.quantile(q) ?? 0
            #expect(abs(Double(estimate - exact)) <= Double(exact) / 128, "q \(q): \(estimate) vs \(exact)")
        }
        #expect(large.buckets.count < 1_000, "bounded: \(large.buckets.count) buckets for 10,000 samples")
    }

    @Test func sketchesMergeAsIfEverySampleWereAddedToOne() {
        var all = QuantileSketch()
        var left = QuantileSketch()
        var right = QuantileSketch()
        for value in Int64(0)..<5_000 {
            let sample = (value * 7_919) % 100_003
            all.add(sample)
            if value % 3 == 0 { left.add(sample) } else { right.add(sample) }
        }
        left.merge(right)
        #expect(left == all)
        #expect(QuantileSketch(json: all.json) == all)
        #expect(QuantileSketch(json: .object(["n": 3, "sum": 1, "min": 0, "max": 0, "b": .array([1, 2])])) == nil)
    }

    @Test func queueWaitRunTimeAndTokensPerTypeHaveTheKnownQuantiles() throws {
        let state = Self.knownHistory().fold()
        let a = try #require(state.metrics.types["a"])
        #expect(a.created == 100 && a.attempts == 100 && a.done == 100)
        #expect(a.queueWait.quantile(0.5) == 50 && a.queueWait.quantile(0.95) == 95 && a.queueWait.quantile(0.99) == 99)
        #expect(a.runTime.quantile(0.5) == 50 && a.runTime.quantile(0.95) == 95 && a.runTime.quantile(0.99) == 99)
        #expect(a.runTime.sum == 5050)
        let tokensMedian = Double(try #require(a.tokensUsed.quantile(0.5)))
        #expect(abs(tokensMedian - 500) <= 500.0 / 128)
        #expect(a.successRatio == 1 && a.retryRatio == 0 && a.deadLetterRatio == 0)
    }

    @Test func retriesDeadLettersAndLostWorkersAreCountedPerType() throws {
        let state = Self.knownHistory().fold()
        let b = try #require(state.metrics.types["b"])
        #expect(b.attempts == 20 && b.retries == 10 && b.done == 10 && b.dead == 0)
        #expect(b.retryRatio == 0.5 && b.successRatio == 1)
        // The retry's wait is its backoff, not the queue: only first claims are in the sketch.
        #expect(b.queueWait.count == 10 && b.queueWait.quantile(0.5) == 50)
        #expect(b.runTime.count == 20 && b.runTime.quantile(0.5) == 50 && b.runTime.quantile(0.99) == 100)
        let c = try #require(state.metrics.types["c"])
        #expect(c.dead == 5 && c.done == 0 && c.deadLetterRatio == 1 && c.successRatio == 0)
        let d = try #require(state.metrics.types["d"])
        #expect(d.lostAttempts == 1 && d.retries == 1 && d.runTime.count == 0)
    }

    @Test func aFoldSplitByASnapshotGivesTheSameMetrics() throws {
        let history = Self.knownHistory()
        let records = history.records
        let whole = history.fold()
        for cut in [1, 57, 150, records.count - 3] {
            let first = history.fold(Array(records[..<cut]))
            let bytes = SnapshotCodec.encode(first, position: JournalPosition(segment: 1, offset: 99), writtenAtMilliseconds: 0)
            let (loaded, _) = try #require(SnapshotCodec.decode(ImmutableBytes(bytes)))
            #expect(loaded.metrics == first.metrics)
            #expect(loaded.metrics.delta == MetricsTotals(), "the snapshot's totals stay as bytes")
            // Written again with nothing folded since: the same bytes, copied.
            let again = SnapshotCodec.encode(loaded, position: JournalPosition(segment: 1, offset: 99), writtenAtMilliseconds: 0)
            #expect(again == bytes)
            let resumed = history.fold(Array(records[cut...]), into: loaded)
            #expect(resumed.metrics == whole.metrics, "cut at \(cut)")
        }
    }

    @Test func utilisationAndBurnRateComeFromBusyTimeAndSpendingInTheWindow() throws {
        var history = History()
        history.add(0, .budgetSet(total: 10_000))
        history.add(0, .taskCreate(TaskSpec(type: "a")))
        history.add(0, .taskCreate(TaskSpec(type: "a")))
        history.add(0, .budgetAllocate(BudgetRequest(tokens: 1_000, tenant: "acme")))
        history.add(0, .taskClaim(TaskClaim(worker: "w-1")))
        history.add(0, .taskClaim(TaskClaim(worker: "w-2")))
        history.add(60_000, .taskComplete(task: history.task(1), claim: 1, result: nil, tokensUsed: nil))
        history.add(60_000, .taskComplete(task: history.task(2), claim: 1, result: nil, tokensUsed: nil))
        history.add(60_000, .budgetRelease(allocation: "alloc-1.3", used: 600))
        let state = history.fold()
        let totals = state.metrics.totals
        #expect(totals.busyMilliseconds == 120_000)
        #expect(totals.tokensSpent == 600 && totals.tenantTokensSpent == ["acme": 600])
        let now = History.start + 60_000
        let report = MetricsReport(state, capacity: 4, nowMilliseconds: now)
        #expect(report.json["workers"]?["utilisation"]?.doubleValue == 0.5)
        #expect(report.json["tokens"]?["burn_rate_per_second"]?.doubleValue == 10)
        // A minute later with nothing running, the window (5 minutes) holds the same work over twice the span.
        let later = MetricsReport(state, capacity: 4, nowMilliseconds: now + 60_000)
        #expect(later.json["workers"]?["utilisation"]?.doubleValue == 0.25)
        #expect(later.json["tokens"]?["burn_rate_per_second"]?.doubleValue == 5)
    }

    @Test func prometheusTextHasHelpTypeAndQuantileLabels() {
        let state = Self.knownHistory().fold()
        let text = MetricsReport(state, capacity: 10, nowMilliseconds: History.start + 10_000).prometheusText
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains("# TYPE cortex_task_run_seconds summary"))
        #expect(lines.contains("cortex_task_run_seconds{type=\"a\",quantile=\"0.5\"} 0.05"))
        #expect(lines.contains("cortex_task_queue_wait_seconds{type=\"a\",quantile=\"0.99\"} 0.099"))
        #expect(lines.contains("cortex_task_run_seconds_count{type=\"a\"} 100"))
        #expect(lines.contains("cortex_tasks_finished_total{type=\"c\",status=\"dead\"} 5"))
        #expect(lines.contains("cortex_task_retry_ratio{type=\"b\"} 0.5"))
        for line in lines where !line.hasPrefix("#") { #expect(line.hasPrefix("cortex_"), "\(line)") }
        #expect(MetricsReport.escape("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
    }

    @Test func waitEstimatesMatchWhatTwoWorkersThenDo() throws {
        // History: type a always runs 100 ms.
        var history = History()
        for k in Int64(1)...20 {
            history.add(k * 1_000, .taskCreate(TaskSpec(type: "a")))
            history.add(k * 1_000, .taskClaim(TaskClaim(worker: "w-1")))
            history.add(k * 1_000 + 100, .taskComplete(task: history.task(k), claim: 1, result: nil, tokensUsed: nil))
        }
        // Five waiting tasks; one more is running since 30 ms before now.
        let now = History.start + 100_000
        history.add(99_970, .taskCreate(TaskSpec(type: "a")))
        history.add(99_970, .taskClaim(TaskClaim(worker: "w-1")))
        for _ in 1...5 { history.add(99_990, .taskCreate(TaskSpec(type: "a"))) }
        var state = history.fold()
        let waiting = (22...26).map { history.task(Int64($0)) }
        let estimates = try waiting.map { id in
            try #require(WaitEstimator.estimate(task: id, in: state, capacity: 2, nowMilliseconds: now))
        }
        #expect(estimates.map(\.position) == [1, 2, 3, 4, 5])
        #expect(estimates.map { ($0.startMilliseconds ?? 0) - now } == [0, 70, 100, 170, 200])

        // What happens: two workers take the queue in claim order, each task running 100 ms.
        var free: [Int64] = [now + 70, now]  // w-1 finishes task 21 at now + 70
        let workers = ["w-1", "w-2"]
        var actual: [String: Int64] = [:]
        var pendingCompletions: [(Int64, String)] = [(now + 70, history.task(21))]
        for _ in waiting {
            let slot = free.indices.min { free[$0] < free[$1] }!
            let start = free[slot]
            // Complete everything that ends by then, then claim.
            for (time, task) in pendingCompletions.sorted(by: { $0.0 < $1.0 }) where time <= start {
                _ = Reducer.reduce(&state, record(.taskComplete(task: task, claim: 1, result: nil, tokensUsed: nil), at: time))
            }
            pendingCompletions.removeAll { $0.0 <= start }
            let outcome = Reducer.reduce(&state, record(.taskClaim(TaskClaim(worker: workers[slot])), at: start))
            guard case .claimed(let claimed, _) = outcome else {
                Issue.record("claim failed: \(outcome)")
                return
            }
            actual[claimed] = start
            pendingCompletions.append((start + 100, claimed))
            free[slot] = start + 100
        }
        for (id, estimate) in zip(waiting, estimates) {
            #expect(actual[id] == estimate.startMilliseconds, "\(id)")
        }
    }

    @Test func typesPastTheLimitAreCountedTogether() {
        var state = CortexState()
        for index in 0..<(MetricsState.typeLimit + 5) {
            _ = Reducer.reduce(&state, record(.taskCreate(TaskSpec(type: "t\(index)")), at: 1_000))
        }
        #expect(state.metrics.types.count == MetricsState.typeLimit + 1)
        #expect(state.metrics.types[MetricsState.otherType]?.created == 5)
    }
}
