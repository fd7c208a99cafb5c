import CortexCore

/// The file backend behind the `Journal` protocol (docs/design.md, "The journal seam"). A position
/// is a segment number and a byte offset in it; the file facts the store used to know (short
/// writes, seals, segment sizes, per-segment `fdatasync`, tombstones) stay here. What it supports:
/// parts (`rollOver` rotates the live segment), compaction by the reaper (`compact` archives the
/// segments a snapshot covers), durability by `fdatasync`. One host's folder: not a `SharedJournal`.
extension FileJournal: Journal {
    /// How many short writes of one record are written again before giving up.
    static let maximumTornAttempts = 16

    /// Appends `line` to `tail`'s segment with one `write(2)`. A short write leaves a fragment
    /// that readers skip; the whole line is appended again. Once the segment reaches
    /// `segmentMaxBytes`, it rotates: the record is in, and a seal can only land after it (if
    /// rotating fails, the warning says so and the next writer, also past the limit, rotates).
    public func append(_ line: [UInt8], tail: JournalPosition) throws(CortexError) -> JournalAppend {
        var torn = 0
        while true {
            switch try appendLine(line, toSegment: tail.segment) {
            case .torn:
                torn += 1
                guard torn < FileJournal.maximumTornAttempts else {
                    throw .corrupt("could not append a whole record to \(path(ofSegment: tail.segment)) after \(torn) attempts")
                }
            case .appended(let start):
                ringDoorbell()
                var result = JournalAppend(position: start, tornAttempts: torn)
                if start.offset + Int64(line.count) >= segmentMaxBytes {
                    do { try rotate(segment: tail.segment, timeMilliseconds: POSIX.wallClockMilliseconds()) } catch {
                        result.warnings.append("journal segment not rotated (\(error.description)); the next writer rotates it")
                    }
                }
                return result
            }
        }
    }

    /// A record is void when the read that should have met it followed a seal into a later
    /// segment first (the seal landed before it).
    public func isVoid(_ appended: JournalPosition, readTo end: JournalPosition) -> Bool { end.segment > appended.segment }

    /// True when a later segment exists or the live segment's size changed since the read.
    public func hasAppended(since extent: JournalPosition) throws(CortexError) -> Bool {
        if try segmentExists(extent.segment + 1) { return true }
        return try sizeOfSegment(extent.segment) != extent.offset
    }

    /// `fdatasync`s every existing segment from `start`'s through `end`'s, then records `end` as
    /// `durableThrough` (when it is further).
    public func makeDurable(from start: JournalPosition, through end: JournalPosition) throws(CortexError) {
        for segment in min(start.segment, end.segment)...end.segment where try segmentExists(segment) {
            try syncSegment(segment)
        }
        if durableThrough.map({ $0 < end }) ?? true { durableThrough = end }
    }

    /// A waiter on the doorbell every append rings (docs/decisions/039-wake.md), falling back to an
    /// inotify watch on the journal folder, then to short sleeps: it never fails.
    public func makeWaiter() throws(CortexError) -> any JournalWaiter { FileJournalWaiter(journal: self) }

    /// Rotates `tail`'s segment when it is larger than `bytes`.
    /// - Returns: the start of the next segment, or nil.
    public func rollOver(at tail: JournalPosition, ifLargerThan bytes: Int64, timeMilliseconds: Int64, dryRun: Bool)
        throws(CortexError) -> JournalPosition?
    {
        guard try sizeOfSegment(tail.segment) > bytes else { return nil }
        if !dryRun { try rotate(segment: tail.segment, timeMilliseconds: timeMilliseconds) }
        return JournalPosition(segment: tail.segment + 1, offset: 0)
    }

    /// Archives every segment before `position`'s behind a tombstone (docs/decisions/013), then
    /// removes archived copies below it last changed before `nowMilliseconds - retentionMilliseconds`.
    /// A dry run lists the segments not yet archived and removes nothing.
    public func compact(before position: JournalPosition, retentionMilliseconds: Int64, nowMilliseconds: Int64, dryRun: Bool)
        throws(CortexError) -> JournalCompaction
    {
        var result = JournalCompaction()
        for segment in try segmentNumbers() where segment < position.segment {
            if dryRun {
                if try !isTombstone(segment) { result.archived.append(segment) }
            } else if try archive(segment: segment, timeMilliseconds: nowMilliseconds) {
                result.archived.append(segment)
            }
        }
        if !dryRun { result.purged = try purgeArchives(below: position.segment, olderThan: nowMilliseconds - retentionMilliseconds) }
        return result
    }
}

extension JournalWatcher: JournalWaiter {}
