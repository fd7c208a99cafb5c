import CortexCore

/// Finds where to start reading so that the last records of a journal can be shown without
/// reading (or folding) everything before them: segments are scanned backwards from the end,
/// one chunk at a time, until enough records match or an older record is reached. Only a
/// start position comes out of here; the records themselves are then read forward with
/// `FileJournal.readForward`, which applies the seal rules (docs/design.md, "Reader").
public enum JournalTail {
    static let chunkBytes = 64 * 1024

    /// The position of the `count`th last record that `matches` (nil count: no limit), or of the
    /// first record at or after `sinceMilliseconds` if that comes later; the journal's start
    /// when neither is reached.
    /// - Parameter hint: a position known to exist (the snapshot's, a store's fold); the scan
    ///   starts at the highest segment from its segment on.
    public static func start(
        of journal: FileJournal, near hint: JournalPosition, count: Int?, sinceMilliseconds: Int64?, matches: (Record) -> Bool
    ) throws(CortexError) -> JournalPosition {
        var last = max(1, hint.segment)
        while try journal.segmentExists(last + 1) { last += 1 }
        var found = 0
        if count == 0 {
            let size = (try? journal.sizeOfSegment(last)) ?? 0
            return JournalPosition(segment: last, offset: size)
        }
        var segment = last
        while segment >= 1 {
            // An archived segment is read from its copy under journal/archive/ (the same bytes at
            // the same offsets). A missing segment or a purged copy is where the scan stops.
            guard case .open(let fd, let path, _) = try journal.openForReading(segment: segment) else {
                return JournalPosition(segment: segment + 1, offset: 0)
            }
            defer { POSIX.close(fd) }
            var stop: JournalPosition?
            try scanBackwards(fd: fd, path: path) { (line, start, end) in
                guard case .record(let record, _) = RecordCodec.decode(line), !record.isSeal else { return true }
                if let since = sinceMilliseconds, record.timeMilliseconds < since {
                    stop = JournalPosition(segment: segment, offset: end)
                    return false
                }
                if matches(record) {
                    found += 1
                    if let count, found >= count {
                        stop = JournalPosition(segment: segment, offset: start)
                        return false
                    }
                }
                return true
            }
            if let stop { return stop }
            segment -= 1
        }
        return .start
    }

    /// Calls `visit` with each complete line of the file open at `fd` (without its newline), its
    /// start offset and the offset past its newline, last line first, until `visit` returns false.
    /// A final line without a newline (a write in progress) is skipped.
    static func scanBackwards(
        fd: Int32, path: String, visit: (UnsafeBufferPointer<UInt8>, Int64, Int64) throws(CortexError) -> Bool
    ) throws(CortexError) {
        let size = try withPath("stat", path) { () throws(Errno) in try POSIX.status(fd).size }
        // `buffer` holds the file's bytes from `bufferStart` up to the end of the line being assembled.
        var buffer: [UInt8] = []
        var bufferStart = size
        func readMore() throws(CortexError) -> Bool {
            guard bufferStart > 0 else { return false }
            let from = max(0, bufferStart - Int64(chunkBytes))
            let chunk = try withPath("read", path) { () throws(Errno) in
                try POSIX.read(fd, at: from, count: Int(bufferStart - from))
            }
            buffer = chunk + buffer
            bufferStart = from
            return true
        }
        // Drop a partial last line.
        while buffer.lastIndex(of: 0x0A) == nil {
            guard try readMore() else { return }
        }
        buffer.removeSubrange((buffer.lastIndex(of: 0x0A)! + 1)...)
        // `buffer` now ends with a newline.
        while !buffer.isEmpty {
            let lineEndIndex = buffer.count - 1  // the newline
            var searchFrom = lineEndIndex
            var startIndex: Int
            while true {
                if let newline = buffer[..<searchFrom].lastIndex(of: 0x0A) {
                    startIndex = newline + 1
                    break
                }
                let before = buffer.count
                if try readMore() {
                    searchFrom += buffer.count - before
                    continue
                }
                startIndex = 0
                break
            }
            let lineEndIndexNow = buffer.count - 1
            let start = bufferStart + Int64(startIndex)
            let end = bufferStart + Int64(lineEndIndexNow) + 1
            let keepGoing = try buffer.withUnsafeBufferPointer { (bytes) throws(CortexError) in
                try visit(UnsafeBufferPointer(rebasing: bytes[startIndex..<lineEndIndexNow]), start, end)
            }
            if !keepGoing { return }
            buffer.removeSubrange(startIndex...)
        }
    }
}
