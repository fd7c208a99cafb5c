import CortexCore

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
        /// Files of finished tasks merged into hourly files by this call.
        public var finishedFilesMerged = 0

        /// Nothing done.
        public init() {}
    }

    /// Rotates the live segment once it is larger than `rotateAboveBytes`, writes a durable
    /// snapshot for the fold, keeps that snapshot under a second name (`state/checkpoint.json`,
    /// the fallback once archived copies are gone), archives every sealed segment that snapshot
    /// lies past, and removes archived copies last changed before `nowMilliseconds - retentionMilliseconds`
    /// (the segment and tombstone work is the journal's: `Journal.rollOver` and `Journal.compact`).
    ///
    /// Every step is safe to repeat, and to interrupt with `kill -9`: both snapshots are durable
    /// before any segment they cover is archived, and an archived copy is linked in before its
    /// tombstone replaces the segment's name. A store without files compacts nothing, nor does a
    /// folder over a `SharedJournal` (etcd: its snapshot writer compacts, one stored snapshot
    /// behind, docs/decisions/035).
    public func compactJournal(rotateAboveBytes: Int64, retentionMilliseconds: Int64, nowMilliseconds: Int64)
        throws(CortexError) -> Compaction
    {
        var result = Compaction()
        try catchUp()
        guard persistsFiles, sharedJournal == nil else { return result }
        if try journal.rollOver(at: position, ifLargerThan: rotateAboveBytes, timeMilliseconds: nowMilliseconds, dryRun: false) != nil {
            result.rotated = true
            try catchUp()  // through the seal, into the new live segment
        }
        try writeSnapshot(nowMilliseconds: nowMilliseconds)
        // The checkpoint covers every segment archived below: removing their copies is safe as
        // long as one of the two snapshots is readable. Written from this fold, not linked from
        // snapshot.json, which a slower writer may have replaced with an older snapshot meanwhile.
        let checkpoint = SnapshotCodec.encode(state, position: position, writtenAtMilliseconds: nowMilliseconds)
        try AtomicFile.replace(
            layout.checkpoint, in: layout.folder, with: checkpoint, durability: .powerLoss, mode: permissions.file(.shared))
        let compacted = try journal.compact(
            before: position, retentionMilliseconds: retentionMilliseconds, nowMilliseconds: nowMilliseconds, dryRun: false)
        result.archived = compacted.archived
        result.purged = compacted.purged
        result.finishedFilesMerged = try mergeFinishedTaskFiles(nowMilliseconds: nowMilliseconds)
        return result
    }

    /// What `compactJournal` would do to the journal now (rotate, archive), without doing it:
    /// the reaper's dry run. Purges and merges are not predicted.
    public func compactionPreview(rotateAboveBytes: Int64, nowMilliseconds: Int64) throws(CortexError) -> Compaction {
        var result = Compaction()
        let next =
            (try? journal.rollOver(at: position, ifLargerThan: rotateAboveBytes, timeMilliseconds: nowMilliseconds, dryRun: true))
            ?? nil
        result.rotated = next != nil
        result.archived =
            try journal.compact(before: next ?? position, retentionMilliseconds: 0, nowMilliseconds: nowMilliseconds, dryRun: true).archived
        return result
    }

    /// Merges the small files of finished tasks (one per snapshot that compacted some, so up to
    /// one per `snapshot_every_records` records) into one file per hour they were written in,
    /// once that hour is over: `state/finished/hour-H-RANDOM.jsonl`. Lookups then open a few
    /// hundred files at most, and the reaper's `result_ttl` purge removes whole hours.
    ///
    /// Safe with two reapers at once: every merge writes a file of its own name and removes only
    /// the files it read, after its own file is durable. The worst a race leaves is a task in two
    /// files (merged again on a later run); every lookup takes a task's first copy, and a
    /// finished task never changes.
    /// - Returns: how many files were merged.
    func mergeFinishedTaskFiles(nowMilliseconds: Int64) throws(CortexError) -> Int {
        let folder = layout.finishedTasks
        let hour: Int64 = 3_600_000
        var byHour: [Int64: [String]] = [:]
        for name in (try? layout.folder.entries(folder)) ?? [] where name.hasSuffix(".jsonl") && !name.hasPrefix(".") {
            let bucket: Int64
            if name.hasPrefix("hour-"), let number = Int64(name.dropFirst(5).prefix { $0 != "-" }) {
                bucket = number
            } else if let modified = layout.folder.modificationMilliseconds(folder + "/" + name) {
                bucket = modified / hour
            } else {
                continue
            }
            if bucket < nowMilliseconds / hour { byHour[bucket, default: []].append(name) }
        }
        var merged = 0
        for (bucket, names) in byHour.sorted(by: { $0.key < $1.key }) where names.count > 1 || !names[0].hasPrefix("hour-") {
            var seen = Set<[UInt8]>()
            var lines: [UInt8] = []
            for name in names.sorted() {
                let path = folder + "/" + name
                let bytes = try withPath("read", path) { () throws(Errno) in
                    try layout.folder.readFile(path, limit: FileLimits.finishedTasksFile)
                }
                for line in bytes.split(separator: 0x0A) where seen.insert(Array(line)).inserted { lines += line + [0x0A] }
            }
            let target = folder + "/hour-\(bucket)-\(POSIX.randomHex(bytes: 4)).jsonl"
            try AtomicFile.replace(target, in: layout.folder, with: lines, durability: .powerLoss, mode: permissions.file(.shared))
            for name in names { layout.folder.unlink(folder + "/" + name) }
            merged += names.count
        }
        return merged
    }
}
