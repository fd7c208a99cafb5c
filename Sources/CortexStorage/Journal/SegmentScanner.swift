import CCortexBytes
import CortexCore

/// Reads the complete lines of one segment file from an offset, in chunks, without
/// holding more than one chunk plus one line in memory however large the file or a line is.
struct SegmentScanner {
    /// One line handed to the visitor.
    struct Line {
        /// The line's bytes without its newline. For a line longer than the maximum, only its last
        /// `RecordCodec.maximumLineBytes` bytes (where a whole record may still be recovered).
        var bytes: UnsafeBufferPointer<UInt8>
        /// Offset of the line's first byte.
        var start: Int64
        /// Offset just past the newline.
        var end: Int64
        /// True when the head of an oversized line was dropped.
        var truncatedHead: Bool
    }

    /// Where the scan ended.
    struct End {
        /// Just past the last complete line visited.
        var offset: Int64
        /// The file size the scan saw (a partial last line lies between `offset` and here).
        var sizeSeen: Int64
        /// True when the visitor asked to stop.
        var stopped: Bool
    }

    static let chunkBytes = 256 * 1024

    /// Calls `visit` for each complete line from `offset` on; `visit` returns false to stop.
    static func scan(
        fd: Int32, path: String, from offset: Int64,
        visit: (Line) throws(CortexError) -> Bool
    ) throws(CortexError) -> End {
        var fileOffset = offset  // where the next read starts
        var lineStart = offset  // start of the line being assembled
        var carry: [UInt8] = []  // bytes of the line being assembled that came from earlier chunks
        var carryDroppedHead = false
        let limit = RecordCodec.maximumLineBytes
        // Read only what the file holds past the offset (usually a few KiB), not a whole chunk.
        var knownSize = try withPath("stat", path) { () throws(Errno) in try POSIX.status(fd).size }
        while true {
            if fileOffset >= knownSize {
                // Appends may have landed since the stat: look once more before calling it the end.
                knownSize = try withPath("stat", path) { () throws(Errno) in try POSIX.status(fd).size }
                if fileOffset >= knownSize { return End(offset: lineStart, sizeSeen: fileOffset, stopped: false) }
            }
            let wanted = Int(min(Int64(chunkBytes), knownSize - fileOffset))
            let chunk = try withPath("read", path) { () throws(Errno) in
                try POSIX.read(fd, at: fileOffset, count: wanted)
            }
            if chunk.isEmpty { return End(offset: lineStart, sizeSeen: fileOffset, stopped: false) }
            let chunkStartOffset = fileOffset
            fileOffset += Int64(chunk.count)
            var stop = false
            try chunk.withUnsafeBufferPointer { (buffer) throws(CortexError) in
                var cursor = 0
                while cursor < buffer.count {
                    guard let found = cortex_memchr(buffer.baseAddress! + cursor, 0x0A, buffer.count - cursor) else {
                        carry.append(contentsOf: buffer[cursor...])
                        if carry.count > limit {
                            carry.removeFirst(carry.count - limit)
                            carryDroppedHead = true
                        }
                        return
                    }
                    let newline = buffer.baseAddress!.distance(to: found.assumingMemoryBound(to: UInt8.self))
                    let end = chunkStartOffset + Int64(newline) + 1
                    let keepGoing: Bool
                    if carry.isEmpty {
                        let piece = UnsafeBufferPointer(rebasing: buffer[cursor..<newline])
                        let tooLong = piece.count > limit
                        let bytes = tooLong ? UnsafeBufferPointer(rebasing: piece[(piece.count - limit)...]) : piece
                        keepGoing = try visit(Line(bytes: bytes, start: lineStart, end: end, truncatedHead: tooLong))
                    } else {
                        carry.append(contentsOf: buffer[cursor..<newline])
                        if carry.count > limit {
                            carry.removeFirst(carry.count - limit)
                            carryDroppedHead = true
                        }
                        let dropped = carryDroppedHead
                        keepGoing = try carry.withUnsafeBufferPointer { (bytes) throws(CortexError) in
                            try visit(Line(bytes: bytes, start: lineStart, end: end, truncatedHead: dropped))
                        }
                        carry.removeAll(keepingCapacity: true)
                        carryDroppedHead = false
                    }
                    lineStart = end
                    cursor = newline + 1
                    if !keepGoing {
                        stop = true
                        return
                    }
                }
            }
            if stop { return End(offset: lineStart, sizeSeen: fileOffset, stopped: true) }
        }
    }
}
