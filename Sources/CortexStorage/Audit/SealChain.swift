import CortexCore

/// The hash chain the seals carry (docs/journal-format.md, "Seal chain"; decision 044).
///
/// The seal that ends segment N carries `chain`: the SHA-256, in hex, of segment N-1's bytes
/// from its start through the end of its first seal line (nothing for N = 1). That seal line
/// holds segment N-1's own `chain`, so each seal covers every sealed byte before it. A seal
/// cannot cover its own segment: it is appended with `O_APPEND` by whoever rotates, while
/// records may still land before it, so it cannot know where it will stand. The segment before
/// the newest seal is therefore covered by the next seal, and until then by `cortex audit head`.
extension FileJournal {
    /// What the seal ending `segment` carries as `chain`, or nil when segment `segment - 1` cannot
    /// be read whole (missing, purged from the archive) or has no seal.
    /// The segment is read in 1 MiB pieces (a writer that rotates never holds a whole segment).
    public func chain(forSealEnding segment: Int) throws(CortexError) -> String? {
        guard segment > 1 else { return Hex.encode(SHA256Digest.of([])) }
        guard case .open(let fd, let path, _) = try openForReading(segment: segment - 1) else { return nil }
        defer { POSIX.close(fd) }
        let digest = SHA256Digest()
        var offset: Int64 = 0
        // The start of a line the last piece ended in; `tooLong` once it is past any record's length.
        var pending: [UInt8] = []
        var tooLong = false
        while true {
            let piece = try withPath("read", path) { () throws(Errno) in try POSIX.read(fd, at: offset, count: 1 << 20) }
            if piece.isEmpty { return nil }
            offset += Int64(piece.count)
            var start = 0
            while let newline = piece[start...].firstIndex(of: 0x0A) {
                let line = pending + piece[start..<newline]
                digest.update(line + [0x0A])
                if !tooLong, SealChain.isSeal(line) { return Hex.encode(digest.finish()) }
                pending = []
                tooLong = false
                start = newline + 1
            }
            pending += piece[start...]
            if pending.count > RecordCodec.maximumLineBytes {
                digest.update(pending)
                pending = []
                tooLong = true
            }
        }
    }

    /// Segment `segment`'s bytes (its archived copy's, behind a tombstone) from its start through
    /// the end of its first seal line, or nil when it cannot be read or has no seal yet.
    public func sealedBytes(ofSegment segment: Int) throws(CortexError) -> [UInt8]? {
        guard let bytes = try segmentBytes(segment) else { return nil }
        guard let end = SealChain.firstSealEnd(in: bytes) else { return nil }
        return Array(bytes[..<end])
    }

    /// The most bytes an audit reads of one segment: far above what writers and the reaper let a
    /// segment grow to (`segment_max_bytes`, 8 MiB by default). A larger file is refused, not read.
    public static let largestAuditedSegmentBytes = 256 << 20

    /// Every byte of segment `segment` (read through a tombstone), or nil when it is missing or purged.
    /// - Throws: `corrupt` for a segment over `largestAuditedSegmentBytes` (planted, not written
    ///   by Cortex), an I/O error.
    public func segmentBytes(_ segment: Int) throws(CortexError) -> [UInt8]? {
        guard case .open(let fd, let path, _) = try openForReading(segment: segment) else { return nil }
        defer { POSIX.close(fd) }
        let size = try withPath("stat", path) { () throws(Errno) in try POSIX.status(fd).size }
        guard size <= Int64(FileJournal.largestAuditedSegmentBytes) else {
            throw .corrupt(
                "journal segment \(segment) is \(size) bytes, more than the \(FileJournal.largestAuditedSegmentBytes) an audit reads of one segment"
            )
        }
        return try withPath("read", path) { () throws(Errno) in
            var bytes: [UInt8] = []
            bytes.reserveCapacity(Int(size))
            while bytes.count < Int(size) {
                let chunk = try POSIX.read(fd, at: Int64(bytes.count), count: min(1 << 20, Int(size) - bytes.count))
                if chunk.isEmpty { break }
                bytes += chunk
            }
            return bytes
        }
    }
}

/// Finding seals in a segment's bytes.
public enum SealChain {
    private static let sealKindBytes: [UInt8] = Array(#""kind":"journal.seal""#.utf8)

    /// The offset just past the first seal line in `bytes` (its newline included), or nil.
    public static func firstSealEnd(in bytes: [UInt8]) -> Int? {
        var start = 0
        while start < bytes.count {
            guard let newline = bytes[start...].firstIndex(of: 0x0A) else { return nil }
            if contains(bytes, sealKindBytes, from: start, to: newline), isSeal(Array(bytes[start..<newline])) { return newline + 1 }
            start = newline + 1
        }
        return nil
    }

    /// True when `line` (without its newline) holds a whole seal record, after a torn fragment or not.
    public static func isSeal(_ line: [UInt8]) -> Bool {
        guard contains(line, sealKindBytes, from: 0, to: line.count), case .record(let record, _) = RecordCodec.decode(line) else {
            return false
        }
        return record.isSeal
    }

    private static func contains(_ bytes: [UInt8], _ needle: [UInt8], from start: Int, to end: Int) -> Bool {
        guard end - start >= needle.count else { return false }
        var index = start
        while index + needle.count <= end {
            if bytes[index] == needle[0] {
                var matched = true
                for offset in 1..<needle.count where bytes[index + offset] != needle[offset] {
                    matched = false
                    break
                }
                if matched { return true }
            }
            index += 1
        }
        return false
    }
}
