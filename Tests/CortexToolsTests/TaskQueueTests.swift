import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// `cortex-task` end to end: the built tools as real, concurrent processes.
@Suite("Task queue", .timeLimit(.minutes(5)))
struct TaskQueueTests {
    /// A claimer loop as a bash master would write it: claim until nothing is left, complete
    /// each task, and print `done|stale TASK CLAIM RECORD` per task.
    static let claimerScript = #"""
        bin=$0 dir=$1 worker=$2
        while out=$("$bin/cortex-task" claim --worker "$worker" --dir "$dir"); do
          id=${out#*\"id\":\"}; id=${id%%\"*}
          claim=${out#*\"claim\":}; claim=${claim%%[,\}]*}
          record=${out#*\"record\":\"}; record=${record%%\"*}
          if "$bin/cortex-task" complete "$id" --claim "$claim" --dir "$dir" >/dev/null; then
            echo "done $id $claim $record"
          else
            echo "stale $id $claim $record"
          fi
        done
        """#

    func createTasks(_ count: Int, in directory: TemporaryDirectory, extra: String = "") throws {
        let script = "for i in $(seq \(count)); do \"$0/cortex-task\" create --dir \"$1\" --type work \(extra) >/dev/null || exit 1; done"
        let result = try runTool([bashPath, "-c", script, toolsDirectory, directory.coordination], in: directory)
        try #require(result.exitCode == 0, "\(result)")
    }

    @Test func twoHundredTasksAndTwentyClaimersClaimEachTaskExactlyOnceWithStableDecisions() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        try forceRotation(directory)
        try createTasks(200, in: directory)
        let claimers = (1...20).map { [bashPath, "-c", Self.claimerScript, toolsDirectory, directory.coordination, "w-\($0)"] }
        let results = try runConcurrently(claimers, in: directory)
        var done: [String] = []
        var reported: [String: (task: String, claim: Int64)] = [:]
        for result in results {
            #expect(result.exitCode == 0, "\(result)")
            for line in result.stdoutLines {
                let fields = line.split(separator: " ").map(String.init)
                try #require(fields.count == 4, "unexpected line \(line)")
                #expect(fields[0] == "done", "a completion was refused: \(line)")
                done.append(fields[1])
                reported[fields[3]] = (fields[1], Int64(fields[2]) ?? -1)
            }
        }
        #expect(done.count == 200)
        #expect(Set(done).count == 200, "a task was claimed twice")
        // Decision stability: each claimer's outcome is the fresh fold's outcome for its record.
        var state = CortexState()
        var claimRecords = 0
        _ = try FileJournal(directory: directory.coordination + "/journal").readForward(from: .start) { record, position in
            let outcome = Reducer.reduce(&state, record, at: position)
            guard record.kind == "task.claim", case .claimed(let task, let claim) = outcome else { return }
            claimRecords += 1
            if let mine = reported[record.id] {
                #expect(mine.task == task && mine.claim == claim, "record \(record.id): fold says \(task)/\(claim), process said \(mine)")
            } else {
                Issue.record("claim record \(record.id) granted \(task) but no process reported it")
            }
        }
        #expect(claimRecords == 200)
        #expect(state.tasks.counts[.done] == 200)
        #expect(try segmentFiles(directory).count > 1, "rotation was not forced")
        let view = try JSONValue.parse(try String(contentsOfFile: directory.coordination + "/task-queue.json", encoding: .utf8))
        #expect(view["counts"]?["done"]?.intValue == 200)
        #expect(view["pending"]?.arrayValue?.isEmpty == true)
        #expect(try runTool(["cortex", "verify", "--dir", directory.coordination], in: directory).exitCode == 0)
    }

    @Test func claimOrderIsPriorityThenAgeAndGpuTasksGoOnlyToGpuClaimers() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        var ids: [String: String] = [:]
        for (name, arguments) in [
            ("low", ["--priority", "low"]), ("medium-1", []), ("gpu", ["--priority", "critical", "--requires", "gpu"]),
            ("high", ["--priority", "high"]), ("medium-2", ["--priority", "medium"]), ("critical", ["--priority", "critical"]),
        ] {
            let result = try runTool(
                ["cortex-task", "create", "--dir", directory.coordination, "--type", "work"] + arguments, in: directory)
            ids[name] = result.stdout.trimmingCharacters(in: .newlines)
        }
        var order: [String] = []
        while true {
            let result = try runTool(["cortex-task", "claim", "--dir", directory.coordination, "--worker", "cpu-1"], in: directory)
            if result.exitCode == 1 { break }
            try #require(result.exitCode == 0, "\(result)")
            order.append(result.json?["id"]?.stringValue ?? "?")
        }
        #expect(order == ["critical", "high", "medium-1", "medium-2", "low"].map { ids[$0]! })
        let gpu = try runTool(
            ["cortex-task", "claim", "--dir", directory.coordination, "--worker", "gpu-1", "--capability", "gpu"], in: directory)
        #expect(gpu.json?["id"]?.stringValue == ids["gpu"])
    }

    @Test func afterWorkerLostTheOldTokenIsRefusedAndTheNewClaimantCompletes() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let task = try runTool(
            ["cortex-task", "create", "--dir", directory.coordination, "--type", "work", "--backoff", "0"], in: directory
        ).stdout.trimmingCharacters(in: .newlines)
        let first = try runTool(["cortex-task", "claim", "--dir", directory.coordination, "--worker", "w-old"], in: directory)
        #expect(first.json?["claim"]?.intValue == 1)
        // What the reaper will append (issue 5); here the test plays the reaper.
        let store = try CoordinationStore.open(root: directory.coordination, createIfMissing: false)
        #expect(try store.submit(.workerLost(worker: "w-old", reason: "test")).outcome == .requeued(tasks: [task]))
        try store.publish()
        let second = try runTool(["cortex-task", "claim", "--dir", directory.coordination, "--worker", "w-new"], in: directory)
        #expect(second.json?["claim"]?.intValue == 2)
        for command in [
            ["complete", task, "--claim", "1", "--result", "{\"by\":\"old\"}"], ["fail", task, "--claim", "1"],
            ["heartbeat", task, "--claim", "1"],
        ] {
            let stale = try runTool(["cortex-task"] + command + ["--dir", directory.coordination], in: directory)
            #expect(stale.exitCode == 1, "\(stale)")
            #expect(stale.stderrLines.count == 1 && stale.stderr.contains("lease lost"), "\(stale)")
        }
        let done = try runTool(
            ["cortex-task", "complete", task, "--claim", "2", "--result", "{\"by\":\"new\"}", "--dir", directory.coordination],
            in: directory)
        #expect(done.exitCode == 0, "\(done)")
        let result = try String(contentsOfFile: directory.coordination + "/results/\(task).json", encoding: .utf8)
        #expect(result == "{\"by\":\"new\"}")
        let stray = try FileManager.default.contentsOfDirectory(atPath: directory.coordination + "/results")
        #expect(Set(stray) == ["\(task).json", "\(task).attempt-2.json"], "the stale attempt left a result behind")
    }

    @Test func failuresRetryAfterTheirBackoffAndDieAfterTheLastAttempt() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let task = try runTool(
            ["cortex-task", "create", "--dir", directory.coordination, "--type", "work", "--max-attempts", "3", "--backoff", "1s"],
            in: directory
        ).stdout.trimmingCharacters(in: .newlines)
        for attempt in 1...3 {
            // --wait sleeps through the backoff: woken by the retry time, not by a journal change.
            let claim = try runTool(
                ["cortex-task", "claim", "--dir", directory.coordination, "--worker", "w", "--wait", "30s"], in: directory)
            #expect(claim.json?["id"]?.stringValue == task, "\(claim)")
            #expect(claim.json?["claim"]?.intValue == Int64(attempt))
            let fail = try runTool(
                [
                    "cortex-task", "fail", task, "--claim", String(attempt), "--error", "boom \(attempt)", "--json", "--dir",
                    directory.coordination,
                ],
                in: directory)
            #expect(fail.json?["outcome"]?.stringValue == (attempt < 3 ? "retrying" : "dead"), "\(fail)")
            if attempt < 3 {
                let early = try runTool(["cortex-task", "claim", "--dir", directory.coordination, "--worker", "w"], in: directory)
                #expect(early.exitCode == 1, "claimable before its backoff: \(early)")
            }
        }
        let show = try runTool(["cortex-task", "show", task, "--json", "--dir", directory.coordination], in: directory)
        #expect(show.json?["status"]?.stringValue == "dead")
        #expect(show.json?["attempt"]?.intValue == 3)
        #expect(show.json?["last_error"]?.stringValue == "boom 3")
    }

    @Test func concurrentCreatesWithOneKeyMakeOneTask() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let commands = (0..<20).map { _ in
            ["cortex-task", "create", "--dir", directory.coordination, "--type", "work", "--key", "nightly-42"]
        }
        let results = try runConcurrently(commands, in: directory)
        #expect(results.allSatisfy { $0.exitCode == 0 })
        #expect(Set(results.map(\.stdout)).count == 1, "one id: \(Set(results.map(\.stdout)))")
        #expect(try foldJournal(directory).state.tasks.created == 1)
    }

    @Test func waitingClaimersWakeOnCreateAndExactlyOneGetsEachTask() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let waiters = try (1...3).map {
            try RunningTool(
                ["cortex-task", "claim", "--dir", directory.coordination, "--worker", "w-\($0)", "--wait", "60s"],
                scratch: directory.scratch)
        }
        usleep(300_000)
        #expect(waiters.allSatisfy { $0.isRunning }, "a claimer returned with nothing to claim")
        let created = try runTool(["cortex-task", "create", "--dir", directory.coordination, "--type", "work"], in: directory)
        var finished: [ToolResult] = []
        for _ in 0..<200 where finished.isEmpty {
            usleep(20_000)
            finished = waiters.filter { !$0.isRunning }.map { $0.wait() }
        }
        #expect(finished.count == 1, "exactly one waiting claimer gets the one task")
        #expect(finished.first?.json?["id"]?.stringValue == created.stdout.trimmingCharacters(in: .newlines))
        usleep(300_000)
        let stillWaiting = waiters.filter { $0.isRunning }
        #expect(stillWaiting.count == 2, "the others keep waiting")
        let more = try (0..<2).map { _ in
            try runTool(["cortex-task", "create", "--dir", directory.coordination, "--type", "work"], in: directory).stdout
                .trimmingCharacters(in: .newlines)
        }
        let rest = stillWaiting.map { $0.wait() }
        #expect(Set(rest.compactMap { $0.json?["id"]?.stringValue }) == Set(more), "\(rest)")
    }

    @Test func claimWaitTimesOutWithExit75() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let result = try runTool(["cortex-task", "claim", "--dir", directory.coordination, "--worker", "w", "--wait", "1s"], in: directory)
        #expect(result.exitCode == 75)
        #expect(result.stdout.isEmpty && result.stderrLines.count == 1)
    }
}
