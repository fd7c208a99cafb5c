import CortexCore
import CortexStorage
import Foundation
import Testing

/// Issue 6 end to end: `cortex status`, `cortex tail`, `cortex metrics` and the wait estimates
/// of `cortex-task`, run as real processes against journals the tests write with known answers.
@Suite("Operator tools")
struct OpsTests {
    /// A history appended straight to the journal (after `cortex init`), times relative to `base`:
    /// a whole minute ten minutes ago, so every time is in the past.
    struct History {
        let base: Int64 = (Int64(Date().timeIntervalSince1970 * 1000) / 60_000 - 10) * 60_000
        var events: [(time: Int64, event: Event)] = []

        mutating func add(_ offset: Int64, _ event: Event) { events.append((base + offset, event)) }

        /// Stands for the id of the `k`-th task created (from 1, in time order) until `write`
        /// learns where its record lands.
        static func task(_ k: Int64) -> String { "#task\(k)" }

        /// Stands for the id of the `k`-th allocation asked for, like `task(_:)`.
        static func allocation(_ k: Int64) -> String { "#alloc\(k)" }

        /// The ids the written records created, in time order.
        struct Written {
            var tasks: [String] = []
            var allocations: [String] = []

            /// `event` with the stand-ins of `History.task(_:)` and `allocation(_:)` replaced.
            func resolving(_ event: Event) -> Event {
                func id(_ text: String) -> String {
                    if text.hasPrefix("#task"), let k = Int(text.dropFirst(5)) { return tasks[k - 1] }
                    if text.hasPrefix("#alloc"), let k = Int(text.dropFirst(6)) { return allocations[k - 1] }
                    return text
                }
                switch event {
                case .taskComplete(let task, let claim, let result, let used):
                    return .taskComplete(task: id(task), claim: claim, result: result, tokensUsed: used)
                case .taskFail(let task, let claim, let error, let retry):
                    return .taskFail(task: id(task), claim: claim, error: error, retry: retry)
                case .budgetRelease(let allocation, let used): return .budgetRelease(allocation: id(allocation), used: used)
                default: return event
                }
            }
        }

        /// Appends the events in time order (ties in the order given) to the journal's live segment.
        @discardableResult
        func write(to directory: TemporaryDirectory) throws -> Written {
            let journal = FileJournal(directory: directory.coordination + "/journal")
            let ordered = events.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }
            var segment = 1
            while try journal.segmentExists(segment + 1) { segment += 1 }
            var written = Written()
            for (_, item) in ordered {
                let event = written.resolving(item.event)
                let record = Record(id: Record.newID(), timeMilliseconds: item.time, kind: event.kind, data: event.data)
                guard case .appended(let position) = try journal.appendLine(try RecordCodec.encode(record), toSegment: segment) else {
                    throw SupportError("torn append")
                }
                if case .taskCreate = event { written.tasks.append(position.id(.task)) }
                if case .budgetAllocate = event { written.allocations.append(position.id(.allocation)) }
            }
            return written
        }

        /// 100 tasks of type `a` (task k waits k ms, runs k ms, reports 10·k tokens) and 5 of type
        /// `c` that fail without retry: the same answers as the unit tests.
        static func known() -> History {
            var history = History()
            for _ in 1...100 { history.add(0, .taskCreate(TaskSpec(type: "a"))) }
            for k in Int64(1)...100 {
                history.add(k, .taskClaim(TaskClaim(worker: "w-\(k)", types: ["a"])))
                history.add(2 * k, .taskComplete(task: History.task(k), claim: 1, result: nil, tokensUsed: 10 * k))
            }
            for _ in 1...5 { history.add(3_000, .taskCreate(TaskSpec(type: "c"))) }
            for k in Int64(101)...105 {
                history.add(3_010, .taskClaim(TaskClaim(worker: "wc", types: ["c"])))
                history.add(3_020, .taskFail(task: History.task(k), claim: 1, error: "bad", retry: false))
            }
            return history
        }
    }

    static func ready(_ history: History, config: [String: JSONValue] = [:]) throws -> TemporaryDirectory {
        try readyWithIDs(history, config: config).0
    }

    /// `ready`, with the ids the history's records created.
    static func readyWithIDs(_ history: History, config: [String: JSONValue] = [:]) throws -> (TemporaryDirectory, History.Written) {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000)
        if !config.isEmpty { try updateConfig(directory, config) }
        let written = try history.write(to: directory)
        return (directory, written)
    }

    func run(_ arguments: [String], _ directory: TemporaryDirectory) throws -> ToolResult {
        try runTool([arguments[0]] + Array(arguments.dropFirst()) + ["--dir", directory.coordination], in: directory)
    }

    // MARK: metrics

    @Test func metricsReportTheKnownQuantilesCountsAndRates() throws {
        let directory = try Self.ready(History.known())
        let text = try run(["cortex", "metrics"], directory)
        #expect(text.exitCode == 0, "\(text)")
        let lines = Set(text.stdoutLines)
        for expected in [
            "cortex_task_queue_wait_seconds{type=\"a\",quantile=\"0.5\"} 0.05",
            "cortex_task_queue_wait_seconds{type=\"a\",quantile=\"0.95\"} 0.095",
            "cortex_task_queue_wait_seconds{type=\"a\",quantile=\"0.99\"} 0.099",
            "cortex_task_run_seconds{type=\"a\",quantile=\"0.5\"} 0.05", "cortex_task_run_seconds_count{type=\"a\"} 100",
            "cortex_task_run_seconds_sum{type=\"a\"} 5.05", "cortex_tasks_finished_total{type=\"a\",status=\"done\"} 100",
            "cortex_tasks_finished_total{type=\"c\",status=\"dead\"} 5", "cortex_task_success_ratio{type=\"a\"} 1",
            "cortex_task_dead_letter_ratio{type=\"c\"} 1", "cortex_tasks{status=\"done\"} 100", "cortex_tasks{status=\"dead\"} 5",
            "# TYPE cortex_task_run_seconds summary",
        ] {
            #expect(lines.contains(expected), "missing \(expected)")
        }
        let json = try #require(try run(["cortex", "metrics", "--json"], directory).json)
        #expect(json["task_types"]?["a"]?["run_time_seconds"]?["p95"]?.doubleValue == 0.095)
        #expect(json["task_types"]?["a"]?["queue_wait_seconds"]?["count"]?.intValue == 100)
        #expect(json["task_types"]?["c"]?["success_ratio"]?.doubleValue == 0)
    }

    @Test func metricsOutReplacesTheFileWhole() throws {
        let directory = try Self.ready(History.known())
        let out = directory.scratch + "/cortex.prom"
        try "stale\n".write(toFile: out, atomically: false, encoding: .utf8)
        let result = try run(["cortex", "metrics", "--out", out], directory)
        #expect(result.exitCode == 0, "\(result)")
        let written = try String(contentsOfFile: out, encoding: .utf8)
        #expect(written.hasPrefix("# HELP cortex_"))
        #expect(written.contains("cortex_task_run_seconds{type=\"a\",quantile=\"0.99\"} 0.099\n"))
        #expect(!written.contains("stale"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.scratch).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty, "temporary files left: \(leftovers)")
        // With --json the file gets the JSON (the shape cortex dashboard reads as metrics.json).
        let jsonOut = directory.scratch + "/metrics.json"
        #expect(try run(["cortex", "metrics", "--json", "--out", jsonOut], directory).exitCode == 0)
        let json = try JSONValue.parse(try String(contentsOfFile: jsonOut, encoding: .utf8))
        #expect(json["task_types"]?["a"]?["run_time_seconds"]?["p99"]?.doubleValue == 0.099)
        #expect(json["updated_at"]?.stringValue != nil)
        // The reaper refreshes metrics.json beside the views, and the Prometheus file if asked, on every run.
        try FileManager.default.removeItem(atPath: out)
        let reaped = try run(["cortex-reap", "--metrics-out", out], directory)
        #expect(reaped.exitCode == 0, "\(reaped)")
        #expect(try String(contentsOfFile: out, encoding: .utf8).contains("cortex_tasks_created_total{type=\"a\"} 100"))
        let beside = try JSONValue.parse(try String(contentsOfFile: directory.coordination + "/metrics.json", encoding: .utf8))
        #expect(beside["task_types"]?["a"]?["queue_wait_seconds"]?["p50"]?.doubleValue == 0.05)
    }

    static let prometheusParser: Bool = {
        guard let python = executableOnPath("python3") else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", "import prometheus_client"]
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }()

    @Test(
        .enabled(
            if: prometheusParser,
            "SKIPPED: python3 with prometheus_client is not installed (.ci/run installs it: pip install prometheus_client)"))
    func metricsParseWithThePrometheusClientParser() throws {
        let directory = try Self.ready(History.known())
        let out = directory.scratch + "/cortex.prom"
        #expect(try run(["cortex", "metrics", "--out", out], directory).exitCode == 0)
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            families = {}
            for family in text_string_to_metric_families(open(sys.argv[1]).read()):
                families[family.name] = {"type": family.type, "samples": [[s.name, s.labels, s.value] for s in family.samples]}
            print(json.dumps(families))
            """
        try script.write(toFile: directory.scratch + "/parse.py", atomically: true, encoding: .utf8)
        let parsed = try runTool([executableOnPath("python3")!, directory.scratch + "/parse.py", out], in: directory)
        #expect(parsed.exitCode == 0, "\(parsed)")
        let families = try #require(parsed.json)
        #expect(families["cortex_task_run_seconds"]?["type"]?.stringValue == "summary")
        #expect(families["cortex_tasks_finished"]?["type"]?.stringValue == "counter")
        #expect(families["cortex_worker_utilisation"]?["type"]?.stringValue == "gauge")
        let samples = families["cortex_task_run_seconds"]?["samples"]?.arrayValue ?? []
        let p99 = samples.first {
            $0.arrayValue?[1]["quantile"]?.stringValue == "0.99" && $0.arrayValue?[1]["type"]?.stringValue == "a"
        }
        #expect(p99?.arrayValue?[2].doubleValue == 0.099)
    }

    // MARK: estimates

    @Test func estimateGivesDurationAndTokensFromHistory() throws {
        let directory = try Self.ready(History.known())
        let result = try run(["cortex-task", "estimate", "--type", "a", "--json"], directory)
        #expect(result.exitCode == 0, "\(result)")
        let json = try #require(result.json)
        #expect(json["run_time_seconds"]?["p50"]?.doubleValue == 0.05)
        #expect(json["run_time_seconds"]?["p99"]?.doubleValue == 0.099)
        #expect(json["run_time_seconds"]?["mean"]?.doubleValue == 0.0505)
        #expect(json["tokens_used"]?["mean"]?.doubleValue == 505)
        let tokensMedian = try #require(json["tokens_used"]?["p50"]?.intValue)
        #expect(abs(tokensMedian - 500) <= 4)
        let text = try run(["cortex-task", "estimate", "--type", "a"], directory)
        #expect(text.stdout.contains("P50 0.05s"), "\(text)")
        let none = try run(["cortex-task", "estimate", "--type", "nosuch"], directory)
        #expect(none.exitCode == 66 && none.stderrLines.count == 1, "\(none)")
    }

    @Test func showGivesAWaitingTaskItsPositionAndEstimatedStart() throws {
        // Type slow always ran 60 s; two live claimers hold a slow task each (long overdue, so
        // both slots are free now); three slow tasks waiting. Slots are the claimers seen, not
        // `max_workers` (with no live worker there is no estimate: MasterVerbsTests).
        var history = History()
        for k in Int64(1)...5 {
            history.add(k * 100_000, .taskCreate(TaskSpec(type: "slow")))
            history.add(k * 100_000, .taskClaim(TaskClaim(worker: "w-1")))
            history.add(k * 100_000 + 60_000, .taskComplete(task: History.task(k), claim: 1, result: nil, tokensUsed: nil))
        }
        // Claimed at 520 s, due at 580 s: before "now", which is at least 600 s after `base`.
        for _ in 1...5 { history.add(520_000, .taskCreate(TaskSpec(type: "slow"))) }
        history.add(520_000, .taskClaim(TaskClaim(worker: "w-6")))
        history.add(520_000, .taskClaim(TaskClaim(worker: "w-7")))
        let (directory, written) = try Self.readyWithIDs(history, config: ["max_workers": 4])
        var waits: [Int64] = []
        for number in 8...10 {
            let shown = try run(["cortex-task", "show", written.tasks[number - 1], "--json"], directory)
            let wait = try #require(shown.json?["wait"], "\(shown)")
            #expect(wait["position"]?.intValue == Int64(number - 7))
            #expect(wait["slots"]?.intValue == 2)
            #expect(wait["live_workers"]?.intValue == 2)
            waits.append(try #require(wait["estimated_wait_seconds"]?.intValue))
        }
        #expect(waits == [0, 0, 60])
        let text = try run(["cortex-task", "show", written.tasks[9]], directory)
        #expect(text.stdout.contains("position 3 in the queue"), "\(text)")
        let done = try run(["cortex-task", "show", written.tasks[0], "--json"], directory)
        #expect(done.exitCode == 0 && done.json?["wait"] == nil)
    }

    // MARK: status

    @Test func statusShowsQueueAndTokensAndExitsZeroWhenAllIsWell() throws {
        var history = History()
        history.add(0, .taskCreate(TaskSpec(type: "a", priority: .high)))
        history.add(1, .taskCreate(TaskSpec(type: "a", priority: .high)))
        history.add(2, .taskCreate(TaskSpec(type: "b", priority: .low)))
        history.add(3, .budgetQuota(tenant: "acme", tokens: 500))
        history.add(4, .budgetAllocate(BudgetRequest(tokens: 100, tenant: "acme")))
        history.add(5, .budgetAllocate(BudgetRequest(tokens: 50, tenant: "acme")))
        history.add(6, .budgetRelease(allocation: History.allocation(2), used: 30))
        let (directory, written) = try Self.readyWithIDs(history)
        let result = try run(["cortex", "status", "--json"], directory)
        #expect(result.exitCode == 0, "\(result)")
        let json = try #require(result.json)
        #expect(json["attention"]?.arrayValue == [])
        #expect(json["queue"]?["waiting_by_priority"]?["high"]?.intValue == 2)
        #expect(json["queue"]?["waiting_by_priority"]?["low"]?.intValue == 1)
        #expect(json["queue"]?["oldest_task"]?.stringValue == written.tasks[0])
        #expect((json["queue"]?["oldest_age_seconds"]?.intValue ?? 0) >= 600)
        #expect(json["budget"]?["reserved"]?.intValue == 100 && json["budget"]?["spent"]?.intValue == 30)
        #expect(json["budget"]?["available"]?.intValue == 870)
        #expect(json["budget"]?["tenant_detail"]?["acme"] == .object(["quota": 500, "reserved": 100, "spent": 30]))
        #expect(json["tasks"]?["pending"]?.intValue == 3)
        #expect(json["reaper"] == .null)
        let text = try run(["cortex", "status"], directory)
        #expect(text.exitCode == 0 && text.stderr.isEmpty, "\(text)")
        #expect(text.stdout.contains("oldest \(written.tasks[0]) waiting 10m"), "\(text)")
        #expect(!text.stdout.contains("\u{1B}["), "no colour when stdout is not a terminal")
        // After a reaper run, status says when it ran.
        #expect(try run(["cortex-reap"], directory).exitCode == 0)
        let after = try #require(try run(["cortex", "status", "--json"], directory).json)
        #expect(after["reaper"]?["lost"]?.intValue == 0)
        #expect((after["reaper"]?["age_seconds"]?.intValue ?? 99) < 60)
    }

    @Test func statusExitsOneWhenTheBudgetIsExhaustedWithWorkWaiting() throws {
        var history = History()
        history.add(0, .taskCreate(TaskSpec(type: "a")))
        history.add(1, .budgetAllocate(BudgetRequest(tokens: 1_000)))
        let directory = try Self.ready(history)
        let result = try run(["cortex", "status"], directory)
        #expect(result.exitCode == 1, "\(result)")
        #expect(result.stderrLines.count == 1 && result.stderr.contains("token budget exhausted"), "\(result)")
    }

    @Test func statusExitsOneForALostWorkerNotYetReapedAndForADamagedLine() throws {
        var history = History()
        history.add(0, .taskCreate(TaskSpec(type: "a")))
        history.add(1, .taskClaim(TaskClaim(worker: "ghost")))  // no heartbeat file: lost
        let directory = try Self.ready(history)
        let lost = try run(["cortex", "status", "--json"], directory)
        #expect(lost.exitCode == 1, "\(lost)")
        #expect(lost.json?["workers"]?["lost_unreaped"]?.arrayValue == ["ghost"])
        #expect(try run(["cortex-reap"], directory).exitCode == 0)
        #expect(try run(["cortex", "status"], directory).exitCode == 0)
        try appendBytes(Array("{\"not\":\"a record\"}\n".utf8), to: directory.coordination + "/journal/" + segmentFiles(directory).last!)
        let damaged = try run(["cortex", "status", "--json"], directory)
        #expect(damaged.exitCode == 1, "\(damaged)")
        #expect(damaged.json?["journal"]?["damaged_lines_since_snapshot"]?.intValue == 1)
    }

    // MARK: tail

    static func tailHistory() -> History {
        var history = History()
        for k in Int64(1)...3 { history.add(k * 1_000, .taskCreate(TaskSpec(type: "a"))) }
        for k in Int64(1)...3 {
            history.add(10_000 + k * 1_000, .taskClaim(TaskClaim(worker: "w-\(k)")))
            history.add(20_000 + k * 1_000, .taskComplete(task: History.task(k), claim: 1, result: nil, tokensUsed: nil))
        }
        history.add(30_000, .budgetAllocate(BudgetRequest(tokens: 10, holder: "w-2")))
        return history
    }

    @Test func tailFiltersByKindTaskWorkerAndTime() throws {
        let history = Self.tailHistory()
        let (directory, written) = try Self.readyWithIDs(history)
        let claims = try run(["cortex", "tail", "--kind", "task.claim"], directory)
        #expect(claims.exitCode == 0, "\(claims)")
        #expect(claims.stdoutLines.count == 3)
        #expect(claims.stdoutLines.first?.hasSuffix("task.claim w-1 → \(written.tasks[0]) claim 1") == true, "\(claims)")
        let task = try run(["cortex", "tail", "--task", written.tasks[1]], directory)
        #expect(task.stdoutLines.map { $0.split(separator: " ")[1] } == ["task.create", "task.claim", "task.complete"], "\(task)")
        let worker = try run(["cortex", "tail", "--worker", "w-2", "--json"], directory)
        #expect(worker.stdoutLines.compactMap { try? JSONValue.parse($0)["kind"]?.stringValue } == ["task.claim", "budget.allocate"])
        let prefix = try run(["cortex", "tail", "--kind", "budget.", "--kind", "task.complete", "--lines", "2"], directory)
        #expect(prefix.stdoutLines.map { $0.split(separator: " ")[1] } == ["task.complete", "budget.allocate"], "\(prefix)")
        let since = ISOTime.format(milliseconds: history.base + 22_000)
        let recent = try run(["cortex", "tail", "--since", since], directory)
        #expect(recent.stdoutLines.map { $0.split(separator: " ")[1] } == ["task.complete", "task.complete", "budget.allocate"])
        let lastTwo = try run(["cortex", "tail", "--lines", "2", "--json"], directory)
        let kinds = lastTwo.stdoutLines.compactMap { try? JSONValue.parse($0)["kind"]?.stringValue }
        #expect(kinds == ["task.complete", "budget.allocate"], "\(lastTwo)")
        #expect(try JSONValue.parse(lastTwo.stdoutLines[1])["outcome"]?["outcome"]?.stringValue == "granted")
        let ago = try run(["cortex", "tail", "--since", "1h", "--kind", "task.create"], directory)
        #expect(ago.stdoutLines.count == 3)
    }

    @Test func tailStartsFromTheEndOfALongJournalAcrossSegments() throws {
        var history = History()
        for k in Int64(1)...400 { history.add(k, .budgetAllocate(BudgetRequest(tokens: 1, holder: "h-\(k)"))) }
        let directory = try Self.ready(History(), config: ["segment_max_bytes": 1024])
        // Write through the tools' rotation rule: split the history over sealed segments.
        let journal = FileJournal(directory: directory.coordination + "/journal")
        var segment = 1
        var last = JournalPosition.start
        for (time, event) in history.events {
            let record = Record(id: Record.newID(), timeMilliseconds: time, kind: event.kind, data: event.data)
            if case .appended(let position) = try journal.appendLine(try RecordCodec.encode(record), toSegment: segment) {
                last = position
            }
            if try journal.sizeOfSegment(segment) > 1024 {
                try journal.rotate(segment: segment, timeMilliseconds: time)
                segment += 1
            }
        }
        #expect(try segmentFiles(directory).count > 50)
        let result = try run(["cortex", "tail", "--lines", "150"], directory)
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.stdoutLines.count == 150)
        #expect(result.stdoutLines.first?.contains("holder=h-251") == true, "\(result.stdoutLines.first ?? "")")
        #expect(result.stdoutLines.last?.contains("holder=h-400") == true)
        #expect(result.stdoutLines.last?.hasSuffix("→ \(last.id(.allocation))") == true, "\(result.stdoutLines.last ?? "")")
    }

    @Test func tailReadsBackIntoArchivedSegments() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000)
        try updateConfig(directory, ["segment_max_bytes": 1024, "rotate_bytes": 1024])
        for index in 1...40 {
            #expect(try run(["cortex-budget", "allocate", "--tokens", "1", "--holder", "h-\(index)"], directory).exitCode == 0)
        }
        #expect(try run(["cortex-reap"], directory).exitCode == 0)  // archives the covered sealed segments
        let archived = try FileManager.default.contentsOfDirectory(atPath: directory.coordination + "/journal/archive")
        #expect(archived.count > 3, "segments archived: \(archived)")
        let result = try run(["cortex", "tail", "--kind", "budget.allocate", "--lines", "40"], directory)
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.stdoutLines.count == 40, "\(result)")
        #expect(result.stdoutLines.first?.contains("holder=h-1 ") == true || result.stdoutLines.first?.hasSuffix("holder=h-1") == true)
        #expect(result.stdoutLines.last?.contains("holder=h-40") == true)
    }

    @Test func tailGivesOutcomesAlsoToRecordsTheSnapshotCovers() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000)
        for index in 1...3 {
            #expect(try run(["cortex-budget", "allocate", "--tokens", "1", "--holder", "before-\(index)"], directory).exitCode == 0)
        }
        #expect(try run(["cortex-reap"], directory).exitCode == 0)  // writes a fresh snapshot
        var printed: [String] = []
        for index in 1...2 {
            let allocated = try run(["cortex-budget", "allocate", "--tokens", "1", "--holder", "after-\(index)"], directory)
            #expect(allocated.exitCode == 0)
            printed.append(allocated.stdout.trimmingCharacters(in: .newlines))
        }
        let result = try run(["cortex", "tail", "--kind", "budget.allocate"], directory)
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.stdoutLines.count == 5, "\(result)")
        let before = result.stdoutLines.filter { $0.contains("holder=before-") }
        let after = result.stdoutLines.filter { $0.contains("holder=after-") }
        // The snapshot covers them, and the journal is still readable from its start: folded from there.
        #expect(before.count == 3 && before.allSatisfy { $0.contains("→ ") }, "outcomes before the snapshot too: \(before)")
        #expect(after.map { $0.components(separatedBy: "→ ").last ?? "" } == printed, "\(after)")
    }

    @Test func statusIsColouredOnlyOnATerminalAndNotWithNoColor() throws {
        guard let script = executableOnPath("script") else {
            print("SKIPPED: statusIsColouredOnlyOnATerminal needs script(1) from util-linux for a pseudo-terminal")
            return
        }
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000)
        let command = "\(toolPath("cortex")) status --dir \(directory.coordination)"
        // The test runner's environment may carry NO_COLOR itself.
        let coloured = try runTool([script, "-qec", "env -u NO_COLOR " + command, "/dev/null"], in: directory)
        #expect(coloured.stdout.contains("\u{1B}[32m"), "\(coloured)")
        let plain = try runTool([script, "-qec", "env NO_COLOR=1 " + command, "/dev/null"], in: directory)
        #expect(plain.stdout.contains("attention") && !plain.stdout.contains("\u{1B}["), "\(plain)")
    }

    @Test(.timeLimit(.minutes(5))) func tailFollowsAppendsAcrossSegmentRotation() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000)
        try forceRotation(directory)
        let tail = try RunningTool(
            ["cortex", "tail", "-f", "--lines", "0", "--kind", "budget.allocate", "--dir", directory.coordination],
            scratch: directory.scratch)
        // Give the tail time to arm its watch; records before that are still read (it reads
        // after arming), so this only keeps the test honest about following.
        usleep(200_000)
        var printed: [String] = []
        for index in 1...30 {
            let allocated = try run(["cortex-budget", "allocate", "--tokens", "1", "--holder", "h-\(index)"], directory)
            try #require(allocated.exitCode == 0, "\(allocated)")
            printed.append(allocated.stdout.trimmingCharacters(in: .newlines))
        }
        var lines: [String] = []
        for _ in 0..<200 {
            lines = ToolResult.lines(tail.stdoutSoFar())
            if lines.count >= 30 { break }
            usleep(50_000)
        }
        tail.kill(SIGTERM)
        _ = tail.wait()
        #expect(try segmentFiles(directory).count >= 4, "rotation happened")
        #expect(lines.count == 30, "\(lines)")
        #expect(lines.map { $0.components(separatedBy: "→ ").last ?? "" } == printed)
    }
}
