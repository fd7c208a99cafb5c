import CortexCore

/// What a journal shared by several hosts does beyond `Journal`, and the store adapts to
/// (docs/decisions/027, 035). The store asks for it once, when it is made (`journal as?
/// SharedJournal`), and never names a backend: a backend that adopts it gets the paths below, one
/// that does not (`FileJournal`, `MemoryJournal`) is folded, snapshotted and compacted through
/// `Journal` alone. `EtcdJournal` adopts it.
///
/// - **Append and read in one round trip** (`appendThenRead`): a store may open without folding
///   (`open(root:createIfMissing:foldOnOpen:)`) and fold in its first append's own request.
/// - **Snapshots kept by the journal** for every host (`storedSnapshot`, `storeSnapshot`): the
///   folder's snapshot names the journal it folds (`backendName`, `namespace`), is written before
///   a call returns (not handed to a background publisher), and is stored in the journal too.
/// - **Compaction of what the stored snapshot covers**, by the snapshot writer (`storeSnapshot`
///   deletes the records below the previous stored snapshot), not by the reaper; a read that
///   meets it fails (`isCompaction`) and the store starts again from the stored snapshot.
/// - **Hosts** that share the journal announce their liveness (`hostRegistry`).
public protocol SharedJournal: Journal {
    /// The backend's name in a snapshot's `journal` header member (`"etcd"`, decision 033).
    var backendName: String { get }
    /// The namespace the journal's keys live under, also named in the snapshot header.
    var namespace: String { get }

    /// True when `position` can be where one of this journal's records starts (a snapshot naming
    /// another is never believed).
    func isRecordPosition(_ position: JournalPosition) -> Bool

    /// Appends `line` and reads from `position` through it in the same round trip: `visit` sees
    /// every record from `position` up to and including the new one, as `readForward` would;
    /// `appended` is told the append as soon as it is in (the read may still fail).
    func appendThenRead(
        _ line: [UInt8], from position: JournalPosition, appended: (JournalAppend) -> Void,
        visit: (Record, JournalPosition) throws(CortexError) -> Void
    ) throws(CortexError) -> (JournalAppend, JournalRead)

    /// True for the error a read throws when records it needs were compacted away.
    func isCompaction(_ error: CortexError) -> Bool

    /// The bytes of the snapshot the journal keeps (as it was when the record at `position` was
    /// appended, when given), or nil when there is none. Unchecked: believed only as a folder's
    /// own snapshot would be.
    func storedSnapshot(asOf position: JournalPosition?) throws(CortexError) -> [UInt8]?

    /// Stores `snapshot`, which folds the journal through the record at `lastRecord`, with the
    /// finished tasks file it took out of its state, then compacts what the previous stored
    /// snapshot covers.
    func storeSnapshot(_ snapshot: [UInt8], lastRecord: JournalPosition, finished: (name: String, lines: [UInt8])?)
        throws(CortexError) -> SnapshotStorage

    /// Every finished tasks file stored with a snapshot (name and lines), oldest first.
    func storedFinishedTasks() throws(CortexError) -> [(name: String, lines: [UInt8])]

    /// The liveness registry of the hosts sharing the journal (decision 037), or nil when the
    /// journal reaches its cluster through something that keeps no leases (a test's fake).
    var hostRegistry: (any HostRegistry)? { get }
}

/// What `SharedJournal.storeSnapshot` did.
public enum SnapshotStorage: Equatable, Sendable {
    /// Stored; `deletedRecords` records below the previous snapshot's last record were deleted.
    case stored(deletedRecords: Int)
    /// The stored snapshot was written after this one's last record: left as it is.
    case newerStored
    /// Too large for the journal to keep: not stored.
    case tooLarge
}
