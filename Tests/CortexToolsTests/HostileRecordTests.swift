import CortexCore
import CortexStorage
import Foundation
import Testing

/// Issue 13, "a total fold" and "snapshots are checked": a well-formed record (valid CRC) with
/// numbers no tool would write, or a flag past its limit, crashes no tool; the record is refused
/// by the fold and reported by `cortex verify`; an edited snapshot is not believed.
@Suite("Hostile records")
struct HostileRecordTests {
    /// Appends `records` to the live segment as a hostile writer would: whole lines with a valid
    /// checksum, one `write(2)` each with `O_APPEND`.
    static func appendRecords(_ records: [(kind: String, atMilliseconds: Int64, data: JSONValue)], in directory: TemporaryDirectory)
        throws
    {
        let live = try #require(try segmentFiles(directory).last)
        let fd = open(directory.coordination + "/journal/" + live, O_WRONLY | O_APPEND)
        try #require(fd >= 0, "cannot open \(live): errno \(errno)")
        defer { close(fd) }
        for (kind, time, data) in records {
            let line = try RecordCodec.encode(Record(id: Record.newID(), timeMilliseconds: time, kind: kind, data: data))
            let written = line.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
            try #require(written == line.count)
        }
    }

    /// Every command the issue saw die with SIGILL runs and exits normally.
    static func expectEveryToolStillWorks(_ directory: TemporaryDirectory) throws {
        let dir = directory.coordination
        let commands: [([String], Set<Int32>)] = [
            (["cortex", "status", "--dir", dir], [0, 1]),
            (["cortex-task", "list", "--dir", dir], [0]),
            (["cortex-reap", "--dir", dir], [0]),
            (["cortex-budget", "allocate", "--dir", dir, "--tokens", "1"], [0]),
            (["cortex-budget", "status", "--dir", dir], [0]),
            (["cortex", "tail", "--dir", dir, "--lines", "100"], [0]),
            (["cortex", "metrics", "--dir", dir], [0]),
        ]
        for (command, codes) in commands {
            let result = try runTool(command, in: directory)
            #expect(result.signal == nil && codes.contains(result.exitCode ?? -1), "\(result)")
        }
    }

    /// `cortex verify` exits 1 and names each refused record.
    static func expectVerifyReportsInvalidRecords(_ directory: TemporaryDirectory, count: Int) throws {
        let verify = try runTool(["cortex", "verify", "--dir", directory.coordination], in: directory)
        #expect(verify.exitCode == 1, "\(verify)")
        let invalid = verify.stdoutLines.filter { $0.hasPrefix("invalid ") }
        #expect(invalid.count == count, "\(verify)")
    }

    @Test(.timeLimit(.minutes(5))) func aHugeBackoffFailedTwelveTimesBricksNothing() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination
        // The flag is refused at once: 65 and one line.
        let refused = try runTool(
            ["cortex-task", "create", "--dir", dir, "--type", "t", "--backoff", "104249991d", "--max-attempts", "30"], in: directory)
        #expect(refused.exitCode == 65 && refused.stderrLines.count == 1, "\(refused)")
        let attempts = try runTool(["cortex-task", "create", "--dir", dir, "--type", "t", "--max-attempts", "1001"], in: directory)
        #expect(attempts.exitCode == 65 && attempts.stderrLines.count == 1, "\(attempts)")

        // A hostile writer records the same task; the key lets the tool name it.
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        try Self.appendRecords(
            [
                (
                    "task.create", now,
                    .object([
                        "backoff_ms": .int(104_249_991 * 86_400_000), "key": "hostile", "max_attempts": .int(30),
                        "priority": "medium", "type": "hostile",
                    ])
                )
            ], in: directory)
        let named = try runTool(["cortex-task", "create", "--dir", dir, "--type", "hostile", "--key", "hostile"], in: directory)
        try #require(named.exitCode == 0, "\(named)")
        let task = named.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // Twelve claims and failures, each past the longest backoff.
        var records: [(kind: String, atMilliseconds: Int64, data: JSONValue)] = []
        for attempt in 1...12 {
            let time = now + Int64(attempt) * 400_000
            records.append(("task.claim", time, .object(["types": .array(["hostile"]), "worker": "w1"])))
            records.append(("task.fail", time, .object(["claim": .int(Int64(attempt)), "retry": true, "task": .string(task)])))
        }
        try Self.appendRecords(records, in: directory)
        try Self.expectEveryToolStillWorks(directory)
        try Self.expectVerifyReportsInvalidRecords(directory, count: 1)
    }

    @Test(.timeLimit(.minutes(5))) func aWaitOfCenturiesIsRefusedNotACrash() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let claim = try runTool(
            ["cortex-task", "claim", "--dir", directory.coordination, "--worker", "w1", "--wait", "300000d"], in: directory)
        #expect(claim.exitCode == 65 && claim.stderrLines.count == 1, "\(claim)")
        let timeout = try runTool(
            ["cortex-task", "create", "--dir", directory.coordination, "--type", "t", "--timeout", "9999999999d"], in: directory)
        #expect(timeout.exitCode == 65 && timeout.stderrLines.count == 1, "\(timeout)")
        let tokens = try runTool(
            ["cortex-budget", "allocate", "--dir", directory.coordination, "--tokens", "9007199254740992"], in: directory)
        #expect(tokens.exitCode == 65 && tokens.stderrLines.count == 1, "\(tokens)")
    }

    @Test(.timeLimit(.minutes(5))) func aRecordAtTheEndOfTimeBricksNothing() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        try Self.appendRecords(
            [
                ("task.create", Int64.min, .object(["priority": "medium", "type": "hostile"])),
                ("budget.set", Int64.max, .object(["total": .int(5)])),
                ("task.create", now, .object(["priority": "medium", "type": "fine"])),
            ], in: directory)
        let claim = try runTool(
            ["cortex-task", "claim", "--dir", directory.coordination, "--worker", "w1", "--type", "hostile"], in: directory)
        #expect(claim.exitCode == 1 && claim.signal == nil, "the task of the refused record does not exist: \(claim)")
        let fine = try runTool(
            ["cortex-task", "claim", "--dir", directory.coordination, "--worker", "w1", "--type", "fine"], in: directory)
        #expect(fine.exitCode == 0, "\(fine)")
        try Self.expectEveryToolStillWorks(directory)
        let budget = try runTool(["cortex-budget", "status", "--dir", directory.coordination, "--json"], in: directory)
        #expect(budget.json?["total_budget"]?.intValue == 1000, "the budget.set at Int64.max is refused: \(budget)")
        try Self.expectVerifyReportsInvalidRecords(directory, count: 2)
    }

    @Test(.timeLimit(.minutes(5))) func hugeTokenCountsBrickNothing() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        /// Releases (with the tool) the allocation a hostile record made for `holder`, if the fold granted one.
        func releaseAllocation(of holder: String) throws {
            let status = try runTool(["cortex-budget", "status", "--dir", dir, "--json"], in: directory)
            #expect(status.exitCode == 0, "\(status)")
            let allocations = status.json?["allocations"]?.arrayValue ?? []
            guard let id = allocations.first(where: { $0["holder"]?.stringValue == holder })?["id"]?.stringValue else { return }
            let release = try runTool(["cortex-budget", "release", id, "--dir", dir], in: directory)
            #expect(release.signal == nil, "\(release)")
        }
        // Twice the whole of Int64 spent: the tokens-spent total would overflow.
        try Self.appendRecords(
            [
                ("budget.set", now, .object(["total": .int(Int64.max)])),
                ("budget.quota", now, .object(["tenant": "a", "tokens": .int(Int64.max)])),
                ("budget.allocate", now, .object(["holder": "h1", "tokens": .int(Int64.max)])),
            ], in: directory)
        try releaseAllocation(of: "h1")
        try Self.appendRecords(
            [
                ("budget.reset", now + 1, .object([:])),
                ("budget.allocate", now + 1, .object(["holder": "h2", "tokens": .int(Int64.max)])),
            ], in: directory)
        try releaseAllocation(of: "h2")
        let allocate = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tenant", "a", "--tokens", "20"], in: directory)
        #expect(allocate.exitCode == 0, "\(allocate)")
        try Self.expectEveryToolStillWorks(directory)
        let budget = try runTool(["cortex-budget", "status", "--dir", dir, "--json"], in: directory)
        #expect(budget.json?["total_budget"]?.intValue == 1000, "\(budget)")
        try Self.expectVerifyReportsInvalidRecords(directory, count: 4)
    }

    @Test(.timeLimit(.minutes(5))) func anEditedSnapshotIsNotBelieved() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        // The allocation is the record whose number calls for a snapshot; a reader that does not
        // believe it folds fewer than 4 × that many records, so it writes none over the edit.
        let recordsSoFar = try foldJournal(directory).records.count
        try updateConfig(directory, ["snapshot_every_records": .int(Int64(recordsSoFar + 1))])
        let dir = directory.coordination
        let allocate = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "10"], in: directory)
        try #require(allocate.exitCode == 0, "\(allocate)")
        let path = dir + "/state/snapshot.json"
        let original = try String(contentsOfFile: path, encoding: .utf8)
        try #require(original.contains("\"total\":1000"), "\(original)")
        let edited = original.replacingOccurrences(of: "\"total\":1000", with: "\"total\":9000")
        try edited.write(toFile: path, atomically: false, encoding: .utf8)

        let status = try runTool(["cortex-budget", "status", "--dir", dir, "--json"], in: directory)
        #expect(status.exitCode == 0 && status.json?["total_budget"]?.intValue == 1000, "the journal's total, not the edit: \(status)")
        let verify = try runTool(["cortex", "verify", "--dir", dir], in: directory)
        #expect(verify.exitCode == 1, "\(verify)")
        #expect(verify.stdout.contains("problem  \(path): checksum mismatch"), "\(verify)")
        let overview = try runTool(["cortex", "status", "--dir", dir], in: directory)
        #expect(overview.stdout.contains("snapshot not used"), "\(overview)")
    }
}
