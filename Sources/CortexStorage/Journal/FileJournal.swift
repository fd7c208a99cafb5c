import CortexCore

/// The append-only journal kept as numbered segment files in one folder (docs/design.md, "The journal").
///
/// No lock is ever taken. Appends are one `write(2)` on an `O_APPEND` descriptor; a segment
/// ends at its first seal record, which any process may append once the next segment exists.
/// Not thread-safe: give each thread its own instance (descriptors are cached per instance
/// and opened close-on-exec, so no other thread or child shares them).
public final class FileJournal {
    /// The `journal/` folder.
    public let directory: String
    /// The folder every segment is opened through (no link is ever followed below its root).
    public let folder: FolderDescriptor
    /// How the folder's files are created: new segments, tombstones and `archive/` are shared content.
    public let permissions: FolderPermissions
    /// The mode of a new segment or tombstone.
    var segmentMode: CreationMode { permissions.file(.shared) }
    /// The size past which an append (`append(_:tail:)`) rotates its segment (`segment_max_bytes`).
    public let segmentMaxBytes: Int64
    private var appendDescriptor: (segment: Int, fd: Int32)?
    private var readDescriptor: (segment: Int, fd: Int32)?
    /// The doorbell this journal rings after each append, opened on the first (`ringDoorbell()`).
    private var doorbell: JournalDoorbell?
    /// The furthest position this instance `fdatasync`ed through (`Journal.durableThrough`).
    public internal(set) var durableThrough: JournalPosition?

    /// A journal in `directory` (which must exist), opened as a folder of its own, whose new
    /// files follow `permissions`, and whose segments rotate past `segmentMaxBytes`.
    public init(directory: String, permissions: FolderPermissions = .personal, segmentMaxBytes: Int64 = .max) {
        self.folder = FolderDescriptor(root: directory)
        self.directory = folder.root
        self.permissions = permissions
        self.segmentMaxBytes = segmentMaxBytes
    }

    /// A journal in `directory`, a folder below `folder`'s root (as the layout spells it), reached
    /// through `folder`'s descriptor, whose new files follow `permissions`, and whose segments
    /// rotate past `segmentMaxBytes`.
    public init(
        folder: FolderDescriptor, directory: String, permissions: FolderPermissions = .personal, segmentMaxBytes: Int64 = .max
    ) {
        self.folder = folder
        self.directory = directory
        self.permissions = permissions
        self.segmentMaxBytes = segmentMaxBytes
    }

    deinit {
        if let appendDescriptor { POSIX.close(appendDescriptor.fd) }
        if let readDescriptor { POSIX.close(readDescriptor.fd) }
    }

    /// The path of segment `segment`.
    public func path(ofSegment segment: Int) -> String { directory + "/" + JournalSegment.fileName(segment) }

    /// True when segment `segment` exists.
    public func segmentExists(_ segment: Int) throws(CortexError) -> Bool {
        let path = path(ofSegment: segment)
        return try withPath("stat", path) { () throws(Errno) in try folder.status(path) } != nil
    }

    /// Creates segment `segment` with `O_CREAT|O_EXCL` and the mode of shared content. An exact mode (a group
    /// folder) is set on an empty temp file that is then linked in (`link` never replaces), so
    /// no other member can find the segment before it is writable by the group.
    /// - Returns: false when it already existed (someone else created it, which is fine).
    @discardableResult
    public func createSegment(_ segment: Int) throws(CortexError) -> Bool {
        let path = path(ofSegment: segment)
        if segmentMode.exact { return try AtomicFile.createIfAbsent(path, in: folder, with: [], mode: segmentMode) }
        do {
            let fd = try folder.open(path, [.writeOnly, .create, .exclusive], mode: segmentMode.bits)
            POSIX.close(fd)
            return true
        } catch {
            if error == .fileExists { return false }
            throw .system("create", path, error)
        }
    }

    /// The outcome of one append.
    public enum AppendResult: Equatable, Sendable {
        /// The whole line went in with one write, starting at this position.
        case appended(JournalPosition)
        /// Only part of it did (a torn record); the caller appends the whole line again.
        case torn(JournalPosition, bytesWritten: Int)
    }

    /// Appends `line` to segment `segment` with exactly one `write(2)`; never loops over a short
    /// write, because a second piece would land after other writers' lines.
    public func appendLine(_ line: [UInt8], toSegment segment: Int) throws(CortexError) -> AppendResult {
        let path = path(ofSegment: segment)
        let fd = try descriptorForAppending(segment: segment, path: path)
        return try withPath("append to", path) { () throws(Errno) in
            let written = try line.withUnsafeBytes { buffer in
                Result { () throws(Errno) in try POSIX.writeOnce(fd, buffer) }
            }.get()
            let end = try POSIX.currentOffset(fd)
            let start = JournalPosition(segment: segment, offset: end - Int64(written))
            return written == line.count ? .appended(start) : .torn(start, bytesWritten: written)
        }
    }

    /// Creates the doorbell (`journal/doorbell`, docs/decisions/039-wake.md) with the mode of shared
    /// content unless it exists. Returns false when it already existed.
    @discardableResult
    public func createDoorbell() throws(CortexError) -> Bool {
        try AtomicFile.createIfAbsent(
            directory + "/" + JournalDoorbell.fileName, in: folder, with: [UInt8](repeating: 0, count: JournalDoorbell.size),
            mode: segmentMode)
    }

    /// Rings the doorbell: wakes every waiter (`FileJournalWaiter`) after an append. Opens it on
    /// first use (creating it in a folder made before it existed) and again when its name has been
    /// given to another file. Never fails the append: a doorbell that cannot be rung leaves the
    /// waiters to their fallback and their timeouts.
    public func ringDoorbell() {
        if let doorbell, doorbell.isStillInPlace(), (try? doorbell.ring()) != nil { return }
        doorbell = try? JournalDoorbell(folder: folder, directory: directory, writable: true, creating: segmentMode)
        try? doorbell?.ring()
    }

    /// Flushes segment `segment`'s data to stable storage (before a snapshot covering it is published).
    public func syncSegment(_ segment: Int) throws(CortexError) {
        let path = path(ofSegment: segment)
        let fd = try withPath("open", path) { () throws(Errno) in try folder.openRegular(path).fd }
        defer { POSIX.close(fd) }
        try withPath("fdatasync", path) { () throws(Errno) in try POSIX.fdatasync(fd) }
    }

    /// The current size of segment `segment` in bytes.
    public func sizeOfSegment(_ segment: Int) throws(CortexError) -> Int64 {
        let path = path(ofSegment: segment)
        guard let info = try withPath("stat", path, { () throws(Errno) in try folder.status(path) }) else {
            throw .corrupt("journal segment \(path) is missing")
        }
        return info.size
    }

    /// Appends a seal to segment `segment`, naming `segment + 1` and carrying the hash chain over
    /// the segment before (`chain(forSealEnding:)`). Any process may do this once `segment + 1`
    /// exists; only the first seal in a segment counts.
    public func appendSeal(toSegment segment: Int, timeMilliseconds: Int64) throws(CortexError) {
        var data: [JSONMember] = [JSONMember("next", .int(segment + 1))]
        if let chain = try? chain(forSealEnding: segment) { data.insert(JSONMember("chain", .string(chain)), at: 0) }
        let seal = Record(id: Record.newID(), timeMilliseconds: timeMilliseconds, kind: Record.sealKind, data: .object(data))
        let line = try RecordCodec.encode(seal)
        for _ in 0..<3 {
            if case .appended = try appendLine(line, toSegment: segment) { return }
        }
        throw .corrupt("cannot append a whole seal record to \(path(ofSegment: segment))")
    }

    /// Rotates: creates `segment + 1`, then seals `segment`. If another process created it first,
    /// that process seals (or any reader does, docs/design.md), so this one does nothing more.
    public func rotate(segment: Int, timeMilliseconds: Int64) throws(CortexError) {
        if try createSegment(segment + 1) {
            try appendSeal(toSegment: segment, timeMilliseconds: timeMilliseconds)
        }
    }

    /// What a forward read saw (`extent`: the live segment and its size when last read; bytes
    /// between `end` and it are a partial line).
    public typealias ReadSummary = JournalRead

    /// Reads every record after `position` in journal order, following seals into later segments
    /// and sealing a segment whose successor exists but which has no seal yet (docs/design.md, "Reader").
    /// Seal records are consumed here and never reach `visit`.
    /// - Parameter visit: called with each record and the position where it starts.
    public func readForward(
        from position: JournalPosition,
        visit: (Record, JournalPosition) throws(CortexError) -> Void
    ) throws(CortexError) -> ReadSummary {
        var segment = position.segment
        var offset = position.offset
        var recordsRead = 0
        var damaged: [DamagedLine] = []
        var sealsAppended = 0
        while true {
            let path = path(ofSegment: segment)
            guard let fd = try descriptorForReading(segment: segment, path: path) else {
                if segment == 1 && offset == 0 {
                    return ReadSummary(end: position, extent: position, recordsRead: 0, damaged: [])
                }
                throw .corrupt("journal segment \(path) is missing")
            }
            var sealed = false
            let currentSegment = segment
            let scan = try SegmentScanner.scan(fd: fd, path: path, from: offset) { (line) throws(CortexError) in
                var decoded = RecordCodec.decode(line.bytes)
                if case .invalid = decoded, !line.truncatedHead {
                    // It may still have been being copied in at the live tail: read it once more.
                    let again = try withPath("read", path) { () throws(Errno) in
                        try POSIX.read(fd, at: line.start, count: Int(line.end - line.start) - 1)
                    }
                    decoded = RecordCodec.decode(again)
                }
                switch decoded {
                case .invalid(let reason):
                    damaged.append(
                        DamagedLine(
                            position: JournalPosition(segment: currentSegment, offset: line.start),
                            length: line.end - line.start, reason: line.truncatedHead ? "line longer than 64 KiB" : reason))
                    return true
                case .record(let record, let skipped):
                    let droppedHead = line.truncatedHead ? (line.end - 1 - line.start) - Int64(line.bytes.count) : 0
                    let recordStart = line.start + droppedHead + Int64(skipped)
                    if skipped > 0 || line.truncatedHead {
                        damaged.append(
                            DamagedLine(
                                position: JournalPosition(segment: currentSegment, offset: line.start),
                                length: recordStart - line.start, reason: "torn fragment before a whole record"))
                    }
                    if record.isSeal {
                        sealed = true
                        return false
                    }
                    recordsRead += 1
                    try visit(record, JournalPosition(segment: currentSegment, offset: recordStart))
                    return true
                }
            }
            offset = scan.offset
            if sealed {
                segment += 1
                offset = 0
                sealsAppended = 0
                continue
            }
            if try segmentExists(segment + 1) {
                // A rotation whose seal has not landed (its rotator may have died): seal it ourselves,
                // then read on up to the first seal, which may be ours or someone else's.
                guard sealsAppended < 3 else { throw .corrupt("cannot seal journal segment \(path)") }
                try appendSeal(toSegment: segment, timeMilliseconds: POSIX.wallClockMilliseconds())
                sealsAppended += 1
                continue
            }
            return ReadSummary(
                end: JournalPosition(segment: segment, offset: offset), extent: JournalPosition(segment: segment, offset: scan.sizeSeen),
                recordsRead: recordsRead, damaged: damaged)
        }
    }

    private func descriptorForAppending(segment: Int, path: String) throws(CortexError) -> Int32 {
        if let appendDescriptor, appendDescriptor.segment == segment { return appendDescriptor.fd }
        // No O_CREAT: a segment is only ever created by createSegment (O_EXCL).
        // A link or a non-regular file in a segment's place is refused, never written through.
        let fd = try withPath("open", path) { () throws(Errno) in try folder.openRegular(path, [.writeOnly, .append]).fd }
        if let appendDescriptor { POSIX.close(appendDescriptor.fd) }
        appendDescriptor = (segment, fd)
        return fd
    }

    private func descriptorForReading(segment: Int, path: String) throws(CortexError) -> Int32? {
        if let readDescriptor, readDescriptor.segment == segment { return readDescriptor.fd }
        let fd: Int32
        switch try openForReading(segment: segment) {
        case .missing: return nil
        case .purged(let archived):
            throw .corrupt(
                "journal segment \(path) was archived and its archived copy \(archived) has been purged; a snapshot past it is needed (state/snapshot.json)"
            )
        case .open(let opened, _, _): fd = opened
        }
        if let readDescriptor { POSIX.close(readDescriptor.fd) }
        readDescriptor = (segment, fd)
        return fd
    }
}

/// File systems known to serialise `O_APPEND` writes to one file (docs/design.md).
public enum SupportedFileSystem {
    /// The name of an accepted file system by its `statfs` magic number, or nil. (A `switch`,
    /// not a dictionary: every call checks this, and a dictionary type costs a fresh process a
    /// metadata instantiation.)
    public static func acceptedName(_ type: Int64) -> String? {
        switch type {
        case 0xEF53: "ext4"
        case 0x5846_5342: "xfs"
        case 0x9123_683E: "btrfs"
        case 0x0102_1994: "tmpfs"
        case 0x794C_7630: "overlayfs"
        default: nil
        }
    }

    /// Names of a few refused ones, for a clearer message.
    static func refusedName(_ type: Int64) -> String? {
        switch type {
        case 0x6969: "nfs"
        case 0xFF53_4D42: "cifs"
        case 0xFE53_4D42: "smb2"
        case 0x0102_1997: "9p"
        case 0x6573_5546: "fuse"
        case 0x9FA0: "proc"
        case 0x6265_6572: "sysfs"
        default: nil
        }
    }

    /// Throws `CortexError.configuration` unless `path` (or its nearest existing ancestor) lies
    /// on an accepted file system.
    public static func check(_ path: String) throws(CortexError) {
        var probe = path
        while true {
            let exists = try withPath("stat", probe) { () throws(Errno) in try POSIX.status(probe) } != nil
            if exists { break }
            guard let slash = probe.lastIndex(of: "/"), slash != probe.startIndex else {
                probe = probe.hasPrefix("/") ? "/" : "."
                break
            }
            probe = String(probe[..<slash])
        }
        let checked = probe
        let type = try withPath("statfs", checked) { () throws(Errno) in try POSIX.fileSystemType(checked) }
        if acceptedName(type) == nil {
            let name = refusedName(type) ?? "file system type 0x\(String(type, radix: 16))"
            throw .configuration(
                "\(path) is on \(name), which does not serialise O_APPEND writes; use a local ext4, xfs, btrfs, tmpfs or overlayfs folder")
        }
    }
}
