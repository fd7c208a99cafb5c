import CortexCore
import CortexStorage
import Foundation
import Testing

/// Issue 17: a read-only command that folded far past the last snapshot leaves one, so the next
/// reader does not repeat the long fold while no writer comes (the snapshot is a cache; the
/// journal stays the truth).
@Suite("Snapshots left by readers")
struct ReadOnlySnapshotTests {
    /// The position `state/snapshot.json` covers, or nil when there is none.
    func snapshotPosition(_ directory: TemporaryDirectory) -> JournalPosition? {
        guard let bytes = ImmutableBytes.map(directory.coordination + "/state/snapshot.json") else { return nil }
        return SnapshotCodec.decode(bytes)?.1
    }

    @Test func aReaderFarPastTheSnapshotWritesOneAndAReaderCloseToItDoesNot() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        // Writers that never take a snapshot: the journal runs far past the last one.
        try updateConfig(directory, ["snapshot_every_records": .int(1_000_000)])
        for index in 0..<24 {
            let made = try runTool(
                ["cortex-task", "create", "--dir", directory.coordination, "--type", "t", "--key", "k\(index)"], in: directory)
            #expect(made.exitCode == 0, "\(made)")
        }
        let before = snapshotPosition(directory)
        try updateConfig(directory, ["snapshot_every_records": .int(5)])
        // 24 records past the snapshot, more than 4 × 5: the reader leaves a snapshot after answering.
        let status = try runTool(["cortex", "status", "--dir", directory.coordination], in: directory)
        #expect(status.exitCode == 0, "\(status)")
        let after = try #require(snapshotPosition(directory), "the reader wrote a snapshot")
        if let before { #expect(after > before, "the new snapshot covers the records the reader folded") }
        let fold = try foldJournal(directory)
        #expect(fold.records.count >= 24)
        // The next reader starts from it and is close to it: it writes nothing.
        let listed = try runTool(["cortex-task", "list", "--dir", directory.coordination], in: directory)
        #expect(listed.exitCode == 0 && listed.stdoutLines.count == 24, "\(listed)")
        #expect(snapshotPosition(directory) == after)
        // What readers print does not change with the snapshot.
        let again = try runTool(["cortex", "status", "--dir", directory.coordination], in: directory)
        #expect(
            again.stdout.replacingOccurrences(of: #"\d+ bytes"#, with: "", options: .regularExpression)
                == status.stdout.replacingOccurrences(of: #"\d+ bytes"#, with: "", options: .regularExpression))
    }
}
