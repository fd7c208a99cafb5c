import CortexCore

/// `state/snapshot.verified`: which `state/snapshot.json` had its checksum verified, so the next
/// loads of that same file skip the pass over every byte (decision 042: 17 MB of waiting tasks
/// cost a call 2 ms of CRC-32C, 42% of a claim). One line: the file's inode, change time in
/// nanoseconds, size and the checksum its first line carries. Any write to the file changes its
/// change time, which no one can set back, so an edit after the verification is caught as before.
/// Anyone who can write the folder can forge the marker, but they could as well write a
/// snapshot with a valid checksum: the checksum catches accidents, not intent (docs/threat-model.md).
enum VerifiedSnapshot {
    /// The marker's line for a snapshot file.
    static func line(identity: FileIdentity, size: Int, checksum: UInt32) -> [UInt8] {
        Array("\(identity.inode) \(identity.changedNanoseconds) \(size) \(checksum)\n".utf8)
    }

    /// True when the marker names these very bytes (the mapped snapshot's inode and change time,
    /// its size, and its first line's checksum).
    static func matches(_ bytes: ImmutableBytes, layout: CoordinationLayout) -> Bool {
        guard let identity = bytes.fileIdentity, let checksum = SnapshotCodec.storedChecksum(bytes),
            let marker = AtomicFile.tail(of: layout.snapshotVerified, in: layout.folder, bytes: 128)
        else { return false }
        return marker == line(identity: identity, size: bytes.buffer.count, checksum: checksum)
    }

    /// Leaves the marker for bytes whose checksum was just verified (or just written); silent when
    /// it cannot (a reader may not be allowed to write the folder: the marker is only a cache).
    static func record(_ bytes: ImmutableBytes, layout: CoordinationLayout, mode: CreationMode) {
        guard let identity = bytes.fileIdentity, let checksum = SnapshotCodec.storedChecksum(bytes) else { return }
        record(identity: identity, size: bytes.buffer.count, checksum: checksum, layout: layout, mode: mode)
    }

    /// Leaves the marker for the snapshot this process just wrote as `bytes` (the file now at
    /// `state/snapshot.json`, if another writer did not replace it meanwhile: then the size or
    /// checksum differ and the marker names nothing).
    static func recordWritten(_ bytes: [UInt8], layout: CoordinationLayout, mode: CreationMode) {
        guard let identity = FileIdentity.of(layout.snapshot, in: layout.folder), let newline = bytes.firstIndex(of: 0x0A),
            let checksum = SnapshotCodec.storedChecksum(ImmutableBytes(Array(bytes[...newline])))
        else { return }
        record(identity: identity, size: bytes.count, checksum: checksum, layout: layout, mode: mode)
    }

    /// Leaves the marker for the snapshot file `identity` of `size` bytes carrying `checksum`.
    static func record(identity: FileIdentity, size: Int, checksum: UInt32, layout: CoordinationLayout, mode: CreationMode) {
        try? AtomicFile.replace(
            layout.snapshotVerified, in: layout.folder, with: line(identity: identity, size: size, checksum: checksum),
            durability: .processCrash, mode: mode)
    }
}
