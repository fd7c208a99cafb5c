import CortexCore

/// Snapshots in etcd and the compaction they allow (docs/decisions/035).
///
/// The namespace's snapshot is one key, `<namespace>/snapshot` (outside `<namespace>/journal/`,
/// so no journal read or watch ever meets it), whose value is a snapshot file's bytes as a
/// folder writes them (`SnapshotCodec`, with the `journal` header member of decision 033 naming
/// the namespace and the last record it folded). The finished tasks the writer took out of its
/// state for that snapshot go under `<namespace>/finished/<name>`, in the same transaction, so a
/// host that starts from the snapshot can still look them up.
///
/// A snapshot replaces the stored one only if the stored one's key was last written before the
/// new snapshot's last record: the stored snapshot then covers fewer records, so the snapshot in
/// etcd never goes back. Once it is in, the records below the *previous* snapshot's last record
/// are deleted: one snapshot interval of records stays, so a process that appended a moment
/// before still folds to its own record, and every host can start from the stored snapshot
/// (whose last record is never deleted while it is the stored one).
extension EtcdJournal {
    /// `<namespace>/snapshot`: the key of the namespace's snapshot.
    public var snapshotKey: [UInt8] { Array("\(namespace)/snapshot".utf8) }

    /// `<namespace>/finished/`: the prefix of the finished tasks taken out of snapshots.
    public var finishedPrefix: [UInt8] { Array("\(namespace)/finished/".utf8) }

    /// The largest snapshot (with its finished tasks) stored in etcd; a larger one stays a local
    /// cache only and nothing is compacted (etcd refuses requests over 1.5 MiB by default).
    public static let maximumStoredSnapshotBytes = 1 << 20

    /// What `storeSnapshot` did (`tooLarge`: over `maximumStoredSnapshotBytes`).
    public typealias SnapshotStorage = CortexStorage.SnapshotStorage

    /// The bytes of the namespace's snapshot in etcd (as it was at `revision` when given), or nil
    /// when there is none. Unchecked: the caller believes them only as it would a local snapshot
    /// (decision 033).
    public func storedSnapshot(atRevision revision: Int64? = nil) throws(CortexError) -> [UInt8]? {
        try kv.get(key: snapshotKey, atRevision: revision)?.value
    }

    /// `storedSnapshot(atRevision:)` at the revision of the record at `position`.
    public func storedSnapshot(asOf position: JournalPosition?) throws(CortexError) -> [UInt8]? {
        guard let position else { return try storedSnapshot(atRevision: nil) }
        return try storedSnapshot(atRevision: EtcdJournal.revision(of: position))
    }

    /// Stores `snapshot`, which folds the journal through the record at `lastRecord`, with the
    /// finished tasks file it took out of its state (`finished`: name and lines), then deletes the
    /// records below the previous stored snapshot's last record.
    public func storeSnapshot(_ snapshot: [UInt8], lastRecord: JournalPosition, finished: (name: String, lines: [UInt8])?)
        throws(CortexError) -> SnapshotStorage
    {
        let last = try EtcdJournal.revision(of: lastRecord)
        guard snapshot.count + (finished?.lines.count ?? 0) <= EtcdJournal.maximumStoredSnapshotBytes else { return .tooLarge }
        var puts: [(key: [UInt8], value: [UInt8])] = [(snapshotKey, snapshot)]
        if let finished { puts.append((finishedPrefix + Array(finished.name.utf8), finished.lines)) }
        guard let written = try kv.putAll(puts, ifModifiedBelow: last, key: snapshotKey) else { return .newerStored }
        guard let previous = written.previous, let previousLast = lastRecordRevision(ofSnapshot: previous.value), previousLast < last
        else { return .stored(deletedRecords: 0) }
        return .stored(deletedRecords: try deleteRecords(before: EtcdJournal.position(revision: previousLast)))
    }

    /// The revision of the last record a snapshot of this namespace folded, from its header's
    /// `journal` member; nil for bytes that are no snapshot of this namespace (or fail its checksum).
    func lastRecordRevision(ofSnapshot bytes: [UInt8]) -> Int64? {
        let snapshot = ImmutableBytes(bytes)
        guard SnapshotCodec.integrity(snapshot) == .verified, let identity = SnapshotCodec.journalIdentity(snapshot),
            identity["backend"]?.stringValue == "etcd", identity["namespace"]?.stringValue == namespace,
            let position = identity["last_position"].flatMap(JournalPosition.init(json:)), position.segment == 1, position.offset > 0
        else { return nil }
        return position.offset
    }

    /// Where the journal's records begin now: the revision of the last compaction (its marker),
    /// below which records were deleted; the start when it was never compacted. A read from
    /// there meets no compaction, unless another runs meanwhile.
    public func firstKeptPosition() throws(CortexError) -> JournalPosition {
        let markers = try kv.range(prefix: markerPrefix, minimumRevision: 0, maximumRevision: nil, limit: 16)
        let latest = markers.keyValues.compactMap { compactionMarker($0.key) }.max()
        return latest.map { EtcdJournal.position(revision: $0) } ?? .start
    }

    /// The state and position of the snapshot stored in etcd when it is one of this namespace
    /// whose checksum holds, for readers that show records rather than decide on them (`cortex
    /// tail`): nil otherwise.
    public func storedSnapshotState() throws(CortexError) -> (CortexState, JournalPosition)? {
        guard let bytes = try storedSnapshot(), lastRecordRevision(ofSnapshot: bytes) != nil else { return nil }
        return SnapshotCodec.decode(ImmutableBytes(bytes))
    }

    /// Every finished tasks file stored with a snapshot (name and lines), oldest first.
    public func storedFinishedTasks() throws(CortexError) -> [(name: String, lines: [UInt8])] {
        var files: [(name: String, lines: [UInt8])] = []
        var next: Int64 = 0
        while true {
            let page = try kv.range(prefix: finishedPrefix, minimumRevision: next, maximumRevision: nil, limit: pageSize)
            for keyValue in page.keyValues {
                next = max(next, keyValue.modRevision + 1)
                files.append((String(decoding: keyValue.key.dropFirst(finishedPrefix.count), as: UTF8.self), keyValue.value))
            }
            guard page.more, !page.keyValues.isEmpty else { return files }
        }
    }
}
