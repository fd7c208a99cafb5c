import CortexCore
import CortexStorage
import Foundation
import Testing

/// Invariant 5 (docs/design.md): `kill -9` of any process at any moment loses no acknowledged record.
@Suite("kill -9 during allocations")
struct KillTests {
    /// Damage `cortex verify` may report after processes were killed mid-write: torn fragments and
    /// the lines they leave. Anything structural (missing segments, broken seals) is a failure.
    static let damageAKillMayLeave: Set<String> = [
        "torn fragment before a whole record", "truncated record", "truncated record (no checksum)",
        "unterminated last line",
    ]

    @Test(.timeLimit(.minutes(5)))
    func killingProcessesAtRandomMomentsLosesNoAcknowledgedAllocationOrRelease() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        try forceRotation(directory)  // kills also land between creating a segment and sealing the old one

        // 15 allocations exist before the race; each gets one releaser during it.
        let preallocated = 15
        var preallocatedIDs: [String] = []
        for _ in 1...preallocated {
            let result = try runTool(["cortex-budget", "allocate", "--dir", directory.coordination, "--tokens", "10"], in: directory)
            try #require(result.exitCode == 0, "\(result)")
            preallocatedIDs.append(result.stdout.trimmingCharacters(in: .newlines))
        }

        var commands: [[String]] = (0..<60).map { _ in
            ["cortex-budget", "allocate", "--dir", directory.coordination, "--tokens", "7", "--json"]
        }
        for number in 1...preallocated {
            commands.append(
                [
                    "cortex-budget", "release", preallocatedIDs[number - 1], "--dir", directory.coordination, "--used", "3",
                    "--json",
                ])
        }
        commands.shuffle()

        // About a third are victims, each killed a random number of launches after its own,
        // with random pauses in between: kills land at every stage of a process's life.
        var generator = SystemRandomNumberGenerator()
        var killAfterLaunch: [Int: Int] = [:]
        for index in commands.indices where Int.random(in: 0..<3, using: &generator) == 0 {
            killAfterLaunch[index] = index + Int.random(in: 0...4, using: &generator)
        }
        var started: [RunningTool] = []
        var killsSent = 0
        func killDue(upTo step: Int) {
            for (victim, due) in killAfterLaunch where due <= step {
                if started[victim].kill(SIGKILL) { killsSent += 1 }
                killAfterLaunch[victim] = nil
            }
        }
        for (index, command) in commands.enumerated() {
            started.append(try RunningTool(command, scratch: directory.scratch))
            // Victims due now die right after their launch (in start-up): a static tool can end
            // within the pause below, and a kill that reaches only a finished process tests nothing.
            killDue(upTo: index)
            usleep(UInt32.random(in: 0...3000, using: &generator))
        }
        killDue(upTo: Int.max)
        let results = started.map { $0.wait() }

        let killed = results.filter { $0.signal == SIGKILL }
        #expect(killsSent > 0 && !killed.isEmpty, "the test must actually kill some processes (sent \(killsSent))")
        for result in results where result.signal == nil {
            // A survivor finished normally: every allocation fits the budget, every release is its allocation's only one.
            #expect(result.exitCode == 0, "\(result)")
        }

        // The fold never fails, and it keeps everything a survivor was told.
        let fold = try foldJournal(directory)
        #expect(fold.duplicatedRecordIDs.isEmpty, "\(fold.duplicatedRecordIDs)")
        #expect(fold.overAllocations.isEmpty, "\(fold.overAllocations)")
        let outcomes = fold.outcomesByRecordID
        var acknowledgedAllocations = 0
        for result in results where result.exitCode == 0 {
            let json = try #require(result.json, "\(result)")
            let record = try #require(json.string("record"), "\(result)")
            #expect(outcomes[record] != nil, "acknowledged record \(record) is missing from the journal: \(result)")
            let allocation = try #require(json.string("allocation"), "\(result)")
            if result.command[1] == "allocate" {
                acknowledgedAllocations += 1
                #expect(fold.state.budget.allocations[allocation]?.tokens == 7, "acknowledged \(allocation) is not held: \(result)")
            } else {
                #expect(fold.state.budget.allocations[allocation] == nil, "acknowledged release of \(allocation) is undone: \(result)")
                #expect(json.string("outcome") == "released" && json.int("spent") == 3, "\(result)")
            }
        }
        #expect(acknowledgedAllocations > 0)
        // Killed processes may or may not have landed their records; the books must balance either way.
        let released = fold.records.filter { if case .released = $0.outcome { return true } else { return false } }.count
        #expect(fold.state.budget.spent == Int64(released) * 3)
        #expect(
            fold.state.budget.reserved
                == fold.state.budget.allocations.values.reduce(0) { $0 + $1.tokens })

        // Read-only status agrees with the fresh fold.
        let status = try runTool(["cortex-budget", "status", "--dir", directory.coordination, "--json"], in: directory)
        #expect(status.exitCode == 0, "\(status)")
        #expect(status.json?.int("allocated") == fold.state.budget.reserved, "\(status)")
        #expect(status.json?.int("spent") == fold.state.budget.spent, "\(status)")

        // verify: no structural problem; damage only of the kinds a kill can leave.
        let verify = try runTool(["cortex", "verify", "--dir", directory.coordination, "--json"], in: directory)
        let report = try #require(verify.json, "\(verify)")
        #expect(report["problems"]?.arrayValue == [], "\(verify)")
        let damaged = report["damaged"]?.arrayValue ?? []
        for line in damaged {
            #expect(Self.damageAKillMayLeave.contains(line.string("reason") ?? ""), "unexpected damage after kill -9: \(line.jsonText)")
        }
        #expect(verify.exitCode == (damaged.isEmpty ? 0 : 1), "\(verify)")

        // The folder keeps working: the next allocation is named by where its record landed.
        let next = try runTool(["cortex-budget", "allocate", "--dir", directory.coordination, "--tokens", "1"], in: directory)
        #expect(next.exitCode == 0, "\(next)")
        let last = try #require(try foldJournal(directory).records.last)
        #expect(last.outcome == .granted(allocation: last.position.id(.allocation)), "\(last.outcome)")
        #expect(next.stdout == last.position.id(.allocation) + "\n", "\(next)")
    }
}
