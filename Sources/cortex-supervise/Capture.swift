/// Keeps the head and the tail of one output stream within fixed bounds, so a worker that
/// prints gigabytes never grows memory or disk past `headLimit + tailLimit` bytes.
struct Capture {
    let headLimit: Int
    let tailLimit: Int
    var head: [UInt8] = []
    /// The tail as a ring: filled in order up to `tailLimit`, then overwritten from `ringStart`.
    var ring: [UInt8] = []
    var ringStart = 0
    /// Every byte seen, kept or not.
    var totalBytes: Int64 = 0

    init(headLimit: Int, tailLimit: Int) {
        self.headLimit = max(0, headLimit)
        self.tailLimit = max(0, tailLimit)
        head.reserveCapacity(self.headLimit)
        ring.reserveCapacity(self.tailLimit)
    }

    /// Bytes seen but not kept.
    var omittedBytes: Int64 { totalBytes - Int64(head.count) - Int64(ring.count) }

    /// Bytes kept (head and tail, without the marker line).
    var keptBytes: Int { head.count + ring.count }

    /// Adds bytes read from the stream, in whole spans (a fast writer comes in 64 KiB reads).
    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        totalBytes += Int64(bytes.count)
        var next = 0
        if head.count < headLimit {
            next = min(headLimit - head.count, bytes.count)
            head.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[0..<next]))
        }
        guard tailLimit > 0 else { return }
        // Only the last `tailLimit` bytes of what is left can stay.
        next = max(next, bytes.count - tailLimit)
        if ring.count < tailLimit {  // Still filling: ringStart is 0.
            let filling = min(tailLimit - ring.count, bytes.count - next)
            ring.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[next..<(next + filling)]))
            next += filling
        }
        while next < bytes.count {  // Full: overwrite the oldest bytes, wrapping at the end.
            let span = min(bytes.count - next, tailLimit - ringStart)
            for offset in 0..<span { ring[ringStart + offset] = bytes[next + offset] }
            ringStart = (ringStart + span) % tailLimit
            next += span
        }
    }

    /// What the log file holds: the head, a line saying how much was left out (if anything),
    /// and the tail.
    var rendered: [UInt8] {
        var bytes = head
        let omitted = omittedBytes
        if omitted > 0 {
            bytes.append(contentsOf: Array("\n[… ".utf8))
            bytes.append(contentsOf: Array(String(omitted).utf8))
            bytes.append(contentsOf: Array(" bytes omitted by cortex …]\n".utf8))
        }
        bytes.append(contentsOf: ring[ringStart...])
        bytes.append(contentsOf: ring[..<ringStart])
        return bytes
    }
}
