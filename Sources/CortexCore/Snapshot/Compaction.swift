/// Keeping the journal bounded (docs/decisions/013): rotate the live segment past a size, write a
/// durable snapshot past it, archive the sealed segments the snapshot covers, and remove archived
/// copies past their retention. Run by the reaper; safe to run from two processes at once.
extension CoordinationStore {
    /// What one compaction did.
    public struct Compaction: Equatable, Sendable {
        /// True when this call rotated the live segment.
        public var rotated = false
        /// Segments archived by this call (a tombstone now stands under their names).
        public var archived: [Int] = []
        /// Archived copies removed by this call because their retention ran out.
        public var purged: [Int] = []

        /// Nothing done.
        public init() {}
    }

    /// Rotates the live segment once it is larger than `rotateAboveBytes`, writes a durable
    /// snapshot for the fold, archives every sealed segment that snapshot lies past, keeps that
    /// snapshot under a second name (`state/checkpoint.json`, the fallback once archived copies
    /// are gone), and removes archived copies last changed before `nowMilliseconds - retentionMilliseconds`.
    ///
    /// Every step is safe to repeat, and to interrupt with `kill -9`: the snapshot is durable
    /// before any segment it covers is archived, and an archived copy is linked in before its
    /// tombstone replaces the segment's name.
    public func compactJournal(rotateAboveBytes: Int64, retentionMilliseconds: Int64, nowMilliseconds: Int64)
        throws(CortexError) -> Compaction
    {
        var result = Compaction()
        try catchUp()
        let live = position.segment
        if try journal.sizeOfSegment(live) > rotateAboveBytes {
            try journal.rotate(segment: live, timeMilliseconds: nowMilliseconds)
            result.rotated = true
            try catchUp()  // through the seal, into the new live segment
        }
        try writeSnapshot(nowMilliseconds: nowMilliseconds)
        let covered = position.segment
        for segment in try journal.segmentNumbers() where segment < covered {
            if try journal.archive(segment: segment, timeMilliseconds: nowMilliseconds) { result.archived.append(segment) }
        }
        // The checkpoint covers every archived segment: removing their copies below is safe as
        // long as one of the two snapshots is readable. Written from this fold, not linked from
        // snapshot.json, which a slower writer may have replaced with an older snapshot meanwhile.
        let checkpoint = SnapshotCodec.encode(state, position: position, writtenAtMilliseconds: nowMilliseconds)
        try AtomicFile.replace(layout.checkpoint, with: checkpoint, durability: .powerLoss)
        result.purged = try journal.purgeArchives(below: covered, olderThan: nowMilliseconds - retentionMilliseconds)
        return result
    }
}
