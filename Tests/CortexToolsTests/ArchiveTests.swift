import CortexCore
import CortexStorage
import Foundation
import Testing

/// Rotation and archiving by `cortex-reap` while writers append (issue 5, docs/decisions/013):
/// no record is lost, and every process's outcome still equals a fresh fold's across the
/// archive boundary (invariant 4).
@Suite("Archiving under concurrent writers")
struct ArchiveTests {
    @Test(.timeLimit(.minutes(5)))
    func decisionsStayStableWhileReapersArchiveUnder20Writers() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 2_000)
        try updateConfig(directory, ["segment_max_bytes": 2048, "rotate_bytes": 1024, "snapshot_every_records": 16])
        let dir = directory.coordination
        let budget = toolPath("cortex-budget")
        let reap = toolPath("cortex-reap")

        // 20 writers, 12 allocations each (240 × 5-40 tokens against 2,000: some are refused),
        // each printing its outcome as one JSON line; two reapers compacting in a loop meanwhile.
        var commands: [[String]] = (0..<20).map { writer in
            [
                bashPath, "-c",
                #"for i in $(seq 12); do "$0" allocate --dir "$1" --tokens $(( 5 + (i * 7 + $2) % 36 )) --holder "w$2-$i" --json; echo; done"#,
                budget, dir, String(writer),
            ]
        }
        for _ in 0..<2 {
            commands.append([
                bashPath, "-c", #"for i in $(seq 15); do "$0" --dir "$1" --json >/dev/null || exit 1; done"#, reap, dir,
            ])
        }
        let results = try runConcurrently(commands, in: directory)
        for result in results { #expect(result.exitCode == 0, "\(result)") }

        var reported: [String: JSONValue] = [:]
        for result in results.prefix(20) {
            for line in result.stdoutLines where !line.isEmpty {
                let json = try JSONValue.parse(line)
                let record = try #require(json.string("record"), "\(line)")
                #expect(reported[record] == nil, "two outcomes reported for \(record)")
                reported[record] = json.removing(["record", "tokens"])
            }
        }
        #expect(reported.count == 240, "every allocation reported its record")

        let journal = FileJournal(directory: dir + "/journal")
        #expect(!journal.archivedSegmentNumbers().isEmpty, "the reapers archived sealed segments during the run")
        // The fresh fold reads archived copies behind the tombstones: nothing lost, nothing twice,
        // every outcome the one its process reported.
        let fold = try foldJournal(directory)
        #expect(fold.duplicatedRecordIDs.isEmpty, "\(fold.duplicatedRecordIDs)")
        #expect(fold.overAllocations.isEmpty, "\(fold.overAllocations)")
        let folded = fold.outcomesByRecordID
        for (record, outcome) in reported {
            #expect(folded[record]?.json.jsonText == outcome.jsonText, "record \(record): process said \(outcome.jsonText)")
        }
        #expect(fold.records.filter { $0.record.kind == "budget.allocate" }.count == 240)

        // Archived copies past their retention go; the snapshot carries the state from then on.
        let last = try runTool(["cortex-reap", "--dir", dir, "--archive-retention", "0", "--json"], in: directory)
        #expect(last.exitCode == 0, "\(last)")
        #expect(journal.archivedSegmentNumbers().isEmpty, "\(last)")
        let status = try runTool(["cortex-budget", "status", "--dir", dir, "--json"], in: directory)
        #expect(status.json?.int("allocated") == fold.state.budget.reserved, "\(status)")
        #expect(status.json?.int("available") == fold.state.budget.available, "\(status)")
        let verify = try runTool(["cortex", "verify", "--dir", dir, "--json"], in: directory)
        #expect(verify.exitCode == 0, "\(verify)")
        #expect((verify.json?.int("purged") ?? 0) > 0, "\(verify)")
        // Readers of the last events start from the end, not the purged beginning.
        let dashboard = try runTool(["cortex", "dashboard", "--dir", dir, "--out", directory.scratch + "/d.html", "--json"], in: directory)
        #expect(dashboard.exitCode == 0, "\(dashboard)")
        #expect(dashboard.json?.int("events") != nil, "\(dashboard)")
        let tail = try runTool(["cortex", "tail", "--dir", dir, "--lines", "5"], in: directory)
        #expect(tail.exitCode == 0 && tail.stdoutLines.count <= 5, "only what is left after the purge: \(tail)")
        // Writers go on as before.
        let after = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "1", "--json"], in: directory)
        #expect(after.exitCode == 0 || after.exitCode == 1, "\(after)")
    }

    @Test func aDryRunArchivesNothing() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        try updateConfig(directory, ["segment_max_bytes": 1024, "rotate_bytes": 1024])
        for _ in 0..<30 {
            try #require(
                try runTool(["cortex-budget", "allocate", "--dir", directory.coordination, "--tokens", "1"], in: directory).exitCode == 0)
        }
        let before = try folderContents(directory.coordination + "/journal")
        let dry = try runTool(["cortex-reap", "--dir", directory.coordination, "--dry-run", "--json"], in: directory)
        #expect(dry.exitCode == 0, "\(dry)")
        #expect((dry.json?["archived"]?.arrayValue?.count ?? 0) > 0, "it says what it would archive: \(dry)")
        #expect(changedPaths(before, try folderContents(directory.coordination + "/journal")).isEmpty)
        let real = try runTool(["cortex-reap", "--dir", directory.coordination, "--json"], in: directory)
        #expect(real.json?["archived"]?.arrayValue?.count == dry.json?["archived"]?.arrayValue?.count, "\(real)")
    }
}
