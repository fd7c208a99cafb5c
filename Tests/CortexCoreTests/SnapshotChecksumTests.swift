import Foundation
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// Snapshots carry a CRC-32C (docs/decisions/018): an edit is caught, the store falls back to the
/// checkpoint or the journal, and a snapshot of an earlier format is accepted unverified.
@Suite struct SnapshotChecksumTests {
    /// `bytes` with the first occurrence of `old` replaced by `new` (the same length).
    static func replacing(_ old: String, with new: String, in bytes: [UInt8]) throws -> [UInt8] {
        let needle = Array(old.utf8)
        let replacement = Array(new.utf8)
        try #require(needle.count == replacement.count)
        let start = try #require(
            bytes.indices.first { bytes.count - $0 >= needle.count && Array(bytes[$0..<($0 + needle.count)]) == needle })
        var edited = bytes
        edited.replaceSubrange(start..<(start + needle.count), with: replacement)
        return edited
    }

    /// The CPU's crc32 instruction and the tables give the same CRC-32C, in one piece or two.
    @Test func theHardwareAndTableChecksumsAgree() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        var generator = SplitMix64(seed: 7)
        for length in [0, 1, 7, 8, 9, 63, 64, 65, 1_000, 4_099] {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            bytes.withUnsafeBytes { buffer in
                let table = CRC32C.tableChecksum(buffer)
                #expect(CRC32C.checksum(buffer) == table, "length \(length)")
                let split = length / 3
                let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[..<split]))
                #expect(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[split...]), continuing: first) == table)
            }
        }
    }

    @Test func aSameLengthEditIsCaught() throws {
        var state = CortexState()
        _ = Reducer.reduce(&state, record(.budgetSet(total: 1_000), at: 1))
        _ = Reducer.reduce(&state, record(.taskCreate(TaskSpec(type: "t")), at: 2))
        let bytes = SnapshotCodec.encode(state, position: .start, writtenAtMilliseconds: 0)
        #expect(SnapshotCodec.integrity(ImmutableBytes(bytes)) == .verified)
        #expect(SnapshotCodec.decode(ImmutableBytes(bytes))?.0 == state)
        let edited = try Self.replacing("\"total\":1000", with: "\"total\":9000", in: bytes)
        #expect(SnapshotCodec.integrity(ImmutableBytes(edited)) == .mismatch)
        #expect(SnapshotCodec.decode(ImmutableBytes(edited)) == nil)
        // A waiting task's line (a lazily read section) is covered too.
        let task = try Self.replacing("\"type\":\"t\"", with: "\"type\":\"u\"", in: bytes)
        #expect(SnapshotCodec.integrity(ImmutableBytes(task)) == .mismatch)
    }

    @Test func aSnapshotOfAnEarlierFormatIsAcceptedUnverified() throws {
        var state = CortexState()
        _ = Reducer.reduce(&state, record(.budgetSet(total: 1_000), at: 1))
        let bytes = SnapshotCodec.encode(state, position: .start, writtenAtMilliseconds: 0, writingFormat: 4)
        // Format 3 was format 4 without the crc field.
        let newline = try #require(bytes.firstIndex(of: 0x0A))
        var header = Array(bytes[..<newline])
        header.removeSubrange((header.count - 18)..<(header.count - 1))
        let old = try Self.replacing("\"format\":4", with: "\"format\":3", in: header + bytes[newline...])
        #expect(SnapshotCodec.integrity(ImmutableBytes(old)) == .unverified)
        #expect(SnapshotCodec.decode(ImmutableBytes(old))?.0.budget.total == 1_000)
        // A format-4 snapshot without its checksum is not one.
        let stripped = header + bytes[newline...]
        #expect(SnapshotCodec.integrity(ImmutableBytes(stripped)) == .unreadable)
        #expect(SnapshotCodec.decode(ImmutableBytes(stripped)) == nil)
    }

    @Test func theStoreFallsBackToTheCheckpointThenTheJournal() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        _ = try store.submit(.budgetSet(total: 1_000))
        try store.writeSnapshot()
        // The checkpoint: an older snapshot under a second name.
        try AtomicFile.replace(layout.checkpoint, with: try POSIX.readFile(layout.snapshot), durability: .processCrash)
        _ = try store.submit(.budgetSet(total: 2_000))
        try store.writeSnapshot()
        let edited = try Self.replacing("\"total\":2000", with: "\"total\":7000", in: try POSIX.readFile(layout.snapshot))
        try AtomicFile.replace(layout.snapshot, with: edited, durability: .processCrash)

        let reopened = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(reopened.state.budget.total == 2_000, "the checkpoint and the journal after it, not the edit")
        #expect(reopened.rejectedSnapshots == ["\(layout.snapshot): checksum mismatch"])

        let checkpointEdited = try Self.replacing(
            "\"total\":1000", with: "\"total\":5000", in: try POSIX.readFile(layout.checkpoint))
        try AtomicFile.replace(layout.checkpoint, with: checkpointEdited, durability: .processCrash)
        let fromJournal = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(fromJournal.state.budget.total == 2_000, "the journal from its beginning")
        #expect(fromJournal.rejectedSnapshots.count == 2)
    }

    /// The checksum pass over every byte runs once per snapshot file: the marker
    /// (`state/snapshot.verified`) names the file verified, and an edit after it changes the
    /// file's change time, so the edit is still caught (decision 042).
    @Test func aVerifiedSnapshotIsNotChecksummedAgainButAnEditAfterIsCaught() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        _ = try store.submit(.budgetSet(total: 2_000))
        try store.writeSnapshot()
        let written = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(written.checksumPassSkipped, "its writer left the marker")
        #expect(written.state.budget.total == 2_000)

        // Without the marker, the first reader verifies and leaves it; the next skips the pass.
        POSIX.unlinkIfPresent(layout.snapshotVerified)
        let first = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(!first.checksumPassSkipped && first.rejectedSnapshots.isEmpty)
        #expect(try CoordinationStore.open(root: layout.root, createIfMissing: false).checksumPassSkipped)

        // An edit in place, same length: a new change time, so the marker no longer matches.
        usleep(20_000)
        let edited = try Self.replacing("\"total\":2000", with: "\"total\":7000", in: try POSIX.readFile(layout.snapshot))
        let handle = try #require(FileHandle(forUpdatingAtPath: layout.snapshot))
        try handle.write(contentsOf: Data(edited))
        try handle.close()
        let reopened = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        #expect(!reopened.checksumPassSkipped)
        #expect(reopened.state.budget.total == 2_000, "the journal, not the edit")
        #expect(reopened.rejectedSnapshots == ["\(layout.snapshot): checksum mismatch"])
    }

    /// A FIFO or a symlink planted at `state/snapshot.verified` by another writer of the folder
    /// neither hangs a load nor is followed: the snapshot is verified as if there were no marker,
    /// and the next snapshot's marker replaces the planted file, not what the link names.
    @Test func aPlantedMarkerIsNeitherFollowedNorWaitedOn() throws {
        let folder = try TemporaryDirectory()
        let layout = try folder.coordination()
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        _ = try store.submit(.budgetSet(total: 2_000))
        let target = folder.path + "/elsewhere"
        Array("precious\n".utf8).withUnsafeBytes { _ = FileManager.default.createFile(atPath: target, contents: Data($0)) }
        for plant in ["fifo", "symlink"] {
            try store.writeSnapshot()
            POSIX.unlinkIfPresent(layout.snapshotVerified)
            if plant == "fifo" {
                #expect(mkfifo(layout.snapshotVerified, 0o666) == 0)
            } else {
                try FileManager.default.createSymbolicLink(atPath: layout.snapshotVerified, withDestinationPath: target)
            }
            let opened = try CoordinationStore.open(root: layout.root, createIfMissing: false)
            #expect(!opened.checksumPassSkipped && opened.rejectedSnapshots.isEmpty, "\(plant)")
            #expect(opened.state.budget.total == 2_000, "\(plant)")
            try opened.writeSnapshot()
            #expect(try String(contentsOfFile: target, encoding: .utf8) == "precious\n", "\(plant)")
            let marker = try FileManager.default.attributesOfItem(atPath: layout.snapshotVerified)
            #expect(marker[.type] as? FileAttributeType == .typeRegular, "\(plant)")
        }
    }
}
