import CortexCore

/// Archiving sealed segments behind tombstones (docs/design.md, "Sealing and rotation"; docs/decisions/013).
///
/// Segment names never disappear: "N+1 exists" must stay true once true, and a number is never
/// created twice. So a sealed segment that a durable snapshot covers is archived in two steps,
/// each safe to repeat and safe to interrupt with `kill -9`:
///
/// 1. hard-link `journal/N.jsonl` into `journal/archive/N.jsonl` (the same bytes, the same inode);
/// 2. `rename` over `journal/N.jsonl` a tombstone: one seal record naming the archived copy.
///
/// A reader that opens a tombstone reads the archived copy instead, at the same offsets, so a
/// position, a decision and a fold are unchanged by archiving. Only once the retention has
/// purged the archived copy do readers depend on a snapshot that lies past it.
extension FileJournal {
    /// `journal/archive/`.
    public var archiveDirectory: String { directory + "/archive" }

    /// Where segment `segment` goes when it is archived.
    public func archivePath(ofSegment segment: Int) -> String { archiveDirectory + "/" + JournalSegment.fileName(segment) }

    /// The segment numbers in the journal folder (tombstones included), in order.
    public func segmentNumbers() throws(CortexError) -> [Int] {
        let names = try withPath("list", directory) { () throws(Errno) in try folder.entries(directory) }
        return names.compactMap(JournalSegment.number(fromFileName:)).sorted()
    }

    /// The archived segment numbers in `journal/archive/`, in order.
    public func archivedSegmentNumbers() -> [Int] {
        ((try? folder.entries(archiveDirectory)) ?? []).compactMap(JournalSegment.number(fromFileName:)).sorted()
    }

    /// Segment `segment` opened for reading (`FileJournal.openForReading`).
    public enum OpenedSegment {
        /// No such segment.
        case missing
        /// A tombstone stands under its name and its archived copy (this path) is gone.
        case purged(archive: String)
        /// Its bytes, open read-only at `fd` (the caller closes it): the segment file, or its
        /// archived copy when `archived` (the same bytes at the same offsets).
        case open(fd: Int32, path: String, archived: Bool)
    }

    /// Opens segment `segment` for reading, following a tombstone to the archived copy. The one
    /// place that knows how: the fold, `cortex verify` and `cortex tail` all read through it.
    /// (The archive's path is rebuilt from the number, never taken from the file.)
    public func openForReading(segment: Int) throws(CortexError) -> OpenedSegment {
        let path = path(ofSegment: segment)
        let fd: Int32
        do { fd = try folder.openRegular(path).fd } catch {
            if error == .noSuchFileOrDirectory { return .missing }
            throw .system("open", path, error)
        }
        guard (try? FileJournal.archiveNamed(byTombstoneAt: fd, path: path)) != nil else {
            return .open(fd: fd, path: path, archived: false)
        }
        POSIX.close(fd)
        let archived = archivePath(ofSegment: segment)
        do {
            return .open(fd: try folder.openRegular(archived).fd, path: archived, archived: true)
        } catch {
            if error == .noSuchFileOrDirectory { return .purged(archive: archived) }
            throw .system("open", archived, error)
        }
    }

    /// True when `journal/N.jsonl` is a tombstone (its segment was archived).
    public func isTombstone(_ segment: Int) throws(CortexError) -> Bool {
        let path = path(ofSegment: segment)
        let fd: Int32
        do { fd = try folder.openRegular(path).fd } catch {
            if error == .noSuchFileOrDirectory { return false }
            throw .system("open", path, error)
        }
        defer { POSIX.close(fd) }
        return try FileJournal.archiveNamed(byTombstoneAt: fd, path: path) != nil
    }

    /// The archive file a tombstone names (relative to the journal folder), or nil when the file
    /// open at `fd` is an ordinary segment. A tombstone is small and its first line is a seal
    /// with an `archive` member; an ordinary segment never starts with a seal.
    static func archiveNamed(byTombstoneAt fd: Int32, path: String) throws(CortexError) -> String? {
        let head = try withPath("read", path) { () throws(Errno) in try POSIX.read(fd, at: 0, count: 1024) }
        guard let newline = head.firstIndex(of: 0x0A) else { return nil }
        guard case .record(let record, 0) = RecordCodec.decode(Array(head[..<newline])), record.isSeal else { return nil }
        return record.data["archive"]?.stringValue
    }

    /// The tombstone's line for `segment`.
    func tombstoneLine(for segment: Int, timeMilliseconds: Int64) throws(CortexError) -> [UInt8] {
        let seal = Record(
            id: Record.newID(), timeMilliseconds: timeMilliseconds, kind: Record.sealKind,
            data: .object(["archive": .string("archive/" + JournalSegment.fileName(segment)), "next": .int(segment + 1)]))
        return try RecordCodec.encode(seal)
    }

    /// Archives sealed segment `segment`: link into `archive/`, then a tombstone over its name.
    /// The caller guarantees that a durable snapshot lies past the segment's seal (so the segment
    /// is sealed and nobody needs to append to it). Safe to run from two processes at once and to
    /// repeat after a crash at any step.
    /// - Returns: false when it was already a tombstone.
    @discardableResult
    public func archive(segment: Int, timeMilliseconds: Int64) throws(CortexError) -> Bool {
        if try isTombstone(segment) { return false }
        let source = path(ofSegment: segment)
        let target = archivePath(ofSegment: segment)
        try Files.makeDirectory(archiveDirectory, in: folder, mode: permissions.directory(.shared))
        do throws(Errno) {
            try folder.link(source, target)
        } catch {
            // EEXIST: an earlier or concurrent archiver linked it first. It linked the segment, not
            // a tombstone: the tombstone is renamed in only after the link exists.
            guard error == .fileExists else { throw .system("link into", target, error) }
        }
        let archive = archiveDirectory
        try withPath("fsync", archive) { () throws(Errno) in try folder.syncDirectory(archive) }
        try AtomicFile.replace(
            source, in: folder, with: try tombstoneLine(for: segment, timeMilliseconds: timeMilliseconds), durability: .powerLoss,
            mode: segmentMode)
        return true
    }

    /// Removes archived copies of segments below `segment` whose last change is older than
    /// `cutoffMilliseconds`. Only a segment whose name in the journal folder is a tombstone is
    /// removed (so a half-finished archive is never lost).
    /// - Returns: the segment numbers removed.
    public func purgeArchives(below segment: Int, olderThan cutoffMilliseconds: Int64) throws(CortexError) -> [Int] {
        var purged: [Int] = []
        for archived in archivedSegmentNumbers() where archived < segment {
            let path = archivePath(ofSegment: archived)
            // Only regular files (a link planted in archive/ is never followed, nor its target removed).
            guard let modified = folder.modificationMilliseconds(path), modified < cutoffMilliseconds else { continue }
            guard try isTombstone(archived) else { continue }
            if folder.unlink(path) { purged.append(archived) }
        }
        return purged
    }
}
