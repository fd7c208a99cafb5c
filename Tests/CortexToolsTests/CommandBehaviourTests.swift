import CortexCore
import CortexStorage
import Foundation
import Testing

/// docs/cli.md's contract with bash callers, one behaviour per test.
@Suite("Command behaviour")
struct CommandBehaviourTests {
    static let helpCommands: [[String]] = {
        var commands: [[String]] = [
            ["cortex", "--help"], ["cortex", "-h"], ["cortex-budget", "--help"], ["cortex", "budget", "--help"],
        ]
        for command in ["init", "status", "verify", "tail"] {
            commands.append(["cortex", command, "--help"])
        }
        for command in ["set", "allocate", "release", "status", "quota", "reset"] {
            commands.append(["cortex-budget", command, "--help"])
            commands.append(["cortex", "budget", command, "-h"])
        }
        return commands
    }()

    @Test(.timeLimit(.minutes(5)), arguments: helpCommands)
    func helpExitsZeroWithUsageOnStdout(_ command: [String]) throws {
        let directory = try TemporaryDirectory()
        // Required options and arguments are missing on purpose: --help wins over them.
        let result = try runTool(command, in: directory)
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.stdout.contains("USAGE: "), "\(result)")
        #expect(result.stderr.isEmpty, "\(result)")
        #expect(result.stdout.contains("--dir"), "help mentions --dir, which every command takes: \(result)")
        #expect(!FileManager.default.fileExists(atPath: directory.scratch + "/coordination"), "--help created a folder")
    }

    @Test(.timeLimit(.minutes(5)), arguments: ["cortex", "cortex-budget"])
    func versionPrintsTheToolNameAndAVersion(_ tool: String) throws {
        let directory = try TemporaryDirectory()
        let result = try runTool([tool, "--version"], in: directory)
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.stderr.isEmpty)
        #expect(result.stdoutLines.count == 1, "\(result)")
        let pattern = try Regex(#"^\#(tool) [0-9]+\.[0-9]+\.[0-9]+\n$"#)
        #expect(result.stdout.wholeMatch(of: pattern) != nil, "\(result)")
    }

    @Test(.timeLimit(.minutes(5)))
    func cortexBudgetAllocateWorksTheSameAsCortexDashBudgetAllocate() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        let dir = directory.coordination

        let nested = try runTool(["cortex", "budget", "allocate", "--dir", dir, "--tokens", "40"], in: directory)
        let dedicated = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "40"], in: directory)
        #expect(nested.exitCode == 0 && nested.stdout.hasPrefix("alloc-"), "\(nested)")
        #expect(dedicated.exitCode == 0 && dedicated.stdout.hasPrefix("alloc-") && dedicated.stdout != nested.stdout, "\(dedicated)")

        let nestedJSON = try runTool(["cortex", "budget", "allocate", "--dir", dir, "--tokens", "40", "--json"], in: directory)
        let dedicatedJSON = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "40", "--json"], in: directory)
        #expect(nestedJSON.exitCode == 1 && dedicatedJSON.exitCode == 1, "both refuse: 20 left\n\(nestedJSON)\n\(dedicatedJSON)")
        #expect(
            nestedJSON.json?.removing(["record"]) == dedicatedJSON.json?.removing(["record"]),
            "same answer\n\(nestedJSON)\n\(dedicatedJSON)")
        #expect(nestedJSON.stderr.hasPrefix("cortex budget allocate: "), "\(nestedJSON)")
        #expect(dedicatedJSON.stderr.hasPrefix("cortex-budget allocate: "), "\(dedicatedJSON)")
        #expect(
            nestedJSON.stderr.dropFirst("cortex budget allocate: ".count)
                == dedicatedJSON.stderr.dropFirst("cortex-budget allocate: ".count))

        let nestedStatus = try runTool(["cortex", "budget", "status", "--dir", dir, "--json"], in: directory)
        let dedicatedStatus = try runTool(["cortex-budget", "status", "--dir", dir, "--json"], in: directory)
        #expect(nestedStatus.json?.removing(["updated_at"]) == dedicatedStatus.json?.removing(["updated_at"]))
        #expect(dedicatedStatus.json?.int("allocated") == 80)
    }

    @Test(.timeLimit(.minutes(5)))
    func allocationIDIsPrintedAloneSoCommandSubstitutionCapturesIt() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        let script = #"""
            id=$("$0" allocate --dir "$1" --tokens 25 --holder w-1) || exit 9
            "$0" release "$id" --dir "$1" --used 5 >/dev/null || exit 10
            printf '[%s]' "$id"
            """#
        let result = try runTool([bashPath, "-c", script, toolPath("cortex-budget"), directory.coordination], in: directory)
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.stdout.wholeMatch(of: try Regex(#"\[alloc-[0-9]+\.[0-9]+\]"#)) != nil, "\(result)")
        #expect(try budgetView(directory).int("spent") == 5)
    }

    @Test(.timeLimit(.minutes(5)))
    func releaseReturnsTheUnusedRestToAvailableAndCountsTheUsedPartAsSpent() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination

        let first = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "100"], in: directory)
        let firstID = first.stdout.trimmingCharacters(in: .newlines)
        #expect(first.exitCode == 0 && first.stdoutLines.count == 1, "\(first)")
        #expect(try budgetView(directory).int("available") == 900)

        let release = try runTool(["cortex-budget", "release", firstID, "--dir", dir, "--used", "30", "--json"], in: directory)
        #expect(release.exitCode == 0, "\(release)")
        let json = try #require(release.json, "\(release)")
        #expect(json.string("outcome") == "released" && json.int("spent") == 30 && json.int("returned") == 70, "\(release)")
        var view = try budgetView(directory)
        #expect(view.int("spent") == 30 && view.int("allocated") == 0 && view.int("available") == 970, "\(view.jsonText)")

        // Without --used the whole reservation counts as spent.
        let second = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "50"], in: directory)
        let whole = try runTool(["cortex-budget", "release", second.stdout.trimmingCharacters(in: .newlines), "--dir", dir], in: directory)
        #expect(second.exitCode == 0 && whole.exitCode == 0, "\(second)\n\(whole)")
        #expect(whole.stdout.contains("50 spent, 0 returned"), "\(whole)")
        view = try budgetView(directory)
        #expect(view.int("spent") == 80 && view.int("available") == 920, "\(view.jsonText)")

        // A second release is a normal no, and changes nothing.
        let again = try runTool(["cortex-budget", "release", firstID, "--dir", dir, "--used", "0"], in: directory)
        #expect(again.exitCode == 1, "\(again)")
        #expect(again.stdout.isEmpty && again.stderrLines.count == 1, "\(again)")
        #expect(try budgetView(directory).int("spent") == 80)
    }

    @Test(.timeLimit(.minutes(5)))
    func aTenantCannotExceedItsQuota() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination

        let quota = try runTool(["cortex-budget", "quota", "--dir", dir, "--tenant", "acme", "--tokens", "100"], in: directory)
        #expect(quota.exitCode == 0, "\(quota)")
        let within = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "60", "--tenant", "acme"], in: directory)
        #expect(within.exitCode == 0 && within.stdoutLines.count == 1, "\(within)")

        let beyond = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "50", "--tenant", "acme"], in: directory)
        #expect(beyond.exitCode == 1, "\(beyond)")
        #expect(beyond.stdout.isEmpty, "\(beyond)")
        #expect(beyond.stderrLines.count == 1 && beyond.stderr.contains("quota"), "\(beyond)")

        // Spent tokens count against the quota too: 60 reserved, release 60 used → still 60 held.
        let withinID = within.stdout.trimmingCharacters(in: .newlines)
        let release = try runTool(["cortex-budget", "release", withinID, "--dir", dir], in: directory)
        #expect(release.exitCode == 0, "\(release)")
        let stillBeyond = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "41", "--tenant", "acme"], in: directory)
        #expect(stillBeyond.exitCode == 1, "\(stillBeyond)")
        let exactlyQuota = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "40", "--tenant", "acme"], in: directory)
        #expect(exactlyQuota.exitCode == 0, "\(exactlyQuota)")

        // Other tenants and untenanted allocations are not limited by acme's quota.
        let other = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "500", "--tenant", "globex"], in: directory)
        #expect(other.exitCode == 0, "\(other)")

        let acme = try budgetView(directory)["tenants"]?["acme"]
        #expect(acme?.int("quota") == 100 && acme?.int("reserved") == 40 && acme?.int("spent") == 60 && acme?.int("available") == 0)
    }

    @Test(.timeLimit(.minutes(5)))
    func resetSetsSpentToZeroAndKeepsReservations() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination
        var ids: [String] = []
        for tokens in ["100", "200"] {
            let result = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", tokens], in: directory)
            try #require(result.exitCode == 0, "\(result)")
            ids.append(result.stdout.trimmingCharacters(in: .newlines))
        }
        let release = try runTool(["cortex-budget", "release", ids[0], "--dir", dir, "--used", "40"], in: directory)
        try #require(release.exitCode == 0, "\(release)")
        var view = try budgetView(directory)
        #expect(view.int("spent") == 40 && view.int("allocated") == 200 && view.int("available") == 760, "\(view.jsonText)")

        let reset = try runTool(["cortex-budget", "reset", "--dir", dir], in: directory)
        #expect(reset.exitCode == 0, "\(reset)")
        view = try budgetView(directory)
        #expect(view.int("spent") == 0, "\(view.jsonText)")
        #expect(view.int("allocated") == 200 && view.int("available") == 800 && view.int("period") == 2, "\(view.jsonText)")
        #expect(try allocationsView(directory)["allocations"]?.arrayValue?.compactMap { $0.string("id") } == [ids[1]])
        #expect(view.string("period_started_at") != nil)

        // The kept reservation can still be released in the new period.
        let later = try runTool(["cortex-budget", "release", ids[1], "--dir", dir, "--used", "10"], in: directory)
        #expect(later.exitCode == 0, "\(later)")
        #expect(try budgetView(directory).int("spent") == 10)
    }

    @Test(.timeLimit(.minutes(5)))
    func tailJSONPrintsOneParsableEventPerLine() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination
        let steps: [[String]] = [
            ["cortex-budget", "allocate", "--dir", dir, "--tokens", "5", "--holder", "w-1"],
            ["cortex-budget", "quota", "--dir", dir, "--tenant", "acme", "--tokens", "9"],
            ["cortex-budget", "release", "{first}", "--dir", dir, "--used", "2"],
            ["cortex-budget", "allocate", "--dir", dir, "--tokens", "5000"],  // refused, still an event
            ["cortex-budget", "reset", "--dir", dir],
        ]
        var first = ""  // the first allocation's id
        for step in steps {
            let result = try runTool(step.map { $0 == "{first}" ? first : $0 }, in: directory)
            if first.isEmpty { first = result.stdout.trimmingCharacters(in: .newlines) }
        }
        let expectedKinds = ["budget.set", "budget.allocate", "budget.quota", "budget.release", "budget.allocate", "budget.reset"]

        let tail = try runTool(["cortex", "tail", "--dir", dir, "--json", "--lines", "100"], in: directory)
        #expect(tail.exitCode == 0, "\(tail)")
        #expect(tail.stderr.isEmpty, "\(tail)")
        var kinds: [String] = []
        for line in tail.stdoutLines {
            guard let event = try? JSONValue.parse(line) else {
                Issue.record("not JSON: \(line.debugDescription)")
                continue
            }
            guard event.objectMembers != nil else {
                Issue.record("cortex tail --json printed a line that is not an event object: \(line.debugDescription)")
                continue
            }
            kinds.append(event.string("kind") ?? "?")
            #expect(event.string("id")?.isEmpty == false && event.int("at_ms") != nil && event.string("at") != nil, "\(line)")
            #expect(event["data"]?.objectMembers != nil, "\(line)")
        }
        #expect(kinds.filter { !$0.hasPrefix("audit.") } == expectedKinds, "the audit trail's records aside (decision 044)")

        let lastTwo = try runTool(["cortex", "tail", "--dir", dir, "--lines", "2"], in: directory)
        #expect(lastTwo.exitCode == 0 && lastTwo.stdoutLines.count == 2, "\(lastTwo)")
        #expect(lastTwo.stdoutLines.last?.contains("budget.reset") == true, "\(lastTwo)")
    }

    @Test(.timeLimit(.minutes(5)))
    func tailFollowPrintsEveryEventOnceAsTheyAreAppended() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination
        // With past events included, what the follower prints does not depend on when it got
        // going: the whole journal, each event once, in order, whether read at start or followed.
        let follower = try RunningTool(
            ["cortex", "tail", "-f", "--json", "--lines", "1000", "--dir", dir], scratch: directory.scratch)
        for tokens in ["1", "2", "3"] {
            let result = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", tokens], in: directory)
            try #require(result.exitCode == 0, "\(result)")
        }
        // Wait for the four events (bounded, so a follower that never prints fails instead of
        // hanging the run; not a timing assertion).
        // (The audit trail's own records, decision 044, are printed too and not counted.)
        func workloadLines(_ text: String) -> [String] { ToolResult.lines(text).filter { !$0.contains(#""kind":"audit."#) } }
        for _ in 0..<1500 where workloadLines(follower.stdoutSoFar()).count < 4 && follower.isRunning { usleep(20_000) }
        #expect(follower.isRunning, "tail -f keeps running until stopped")
        follower.kill(SIGTERM)
        for _ in 0..<500 where follower.isRunning { usleep(20_000) }
        follower.kill(SIGKILL)
        let result = follower.wait()
        #expect(result.signal == SIGTERM, "tail -f ends on SIGTERM: \(result)")
        let events = workloadLines(result.stdout).compactMap { try? JSONValue.parse($0) }
        #expect(workloadLines(result.stdout).count == 4, "\(result)")
        #expect(events.map { $0.string("kind") } == ["budget.set", "budget.allocate", "budget.allocate", "budget.allocate"], "\(result)")
        #expect(events.dropFirst().map { $0["data"]?.int("tokens") } == [1, 2, 3], "\(result)")
    }

    @Test(.timeLimit(.minutes(5)))
    func statusJSONShowsTheBudgetAndAHealthyJournal() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 500)
        let dir = directory.coordination
        _ = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "120"], in: directory)
        let status = try runTool(["cortex", "status", "--dir", dir, "--json"], in: directory)
        #expect(status.exitCode == 0 && status.stdoutLines.count == 1 && status.stderr.isEmpty, "\(status)")
        let json = try #require(status.json, "\(status)")
        #expect(json["budget"]?.int("available") == 380 && json["budget"]?.int("allocated") == 120, "\(status)")
        let fold = try foldJournal(directory)
        #expect(fold.workload.count == 2, "budget.set and the allocation")
        #expect(
            json["journal"]?.int("records_folded") == Int64(fold.records.count)
                && json["journal"]?.int("damaged_lines_since_snapshot") == 0,
            "\(status)")
        // Where a journal of files ends: its live segment and that segment's size.
        #expect(json["journal"]?.int("live_segment") == 1 && (json["journal"]?.int("live_segment_bytes") ?? 0) > 0, "\(status)")
        let text = try runTool(["cortex", "status", "--dir", dir], in: directory)
        #expect(text.exitCode == 0 && text.stdout.contains("available 380"), "\(text)")
        #expect(text.stdout.contains(" · live segment 000000000001.jsonl at "), "\(text)")
    }
}
