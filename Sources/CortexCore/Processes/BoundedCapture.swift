/// Keeps the head and the tail of an output stream within fixed bounds, so a worker that
/// prints gigabytes never grows memory or disk past `headLimit + tailLimit` bytes.
public struct BoundedCapture: Sendable {
    /// Bytes kept from the start.
    public let headLimit: Int
    /// Bytes kept from the end.
    public let tailLimit: Int
    private(set) var head: [UInt8] = []
    private var ring: [UInt8]
    private var ringStart = 0
    /// Every byte seen, kept or not.
    public private(set) var totalBytes: Int64 = 0

    /// A capture keeping at most `headLimit` + `tailLimit` bytes (defaults 10 KiB + 30 KiB).
    public init(headLimit: Int = 10 * 1024, tailLimit: Int = 30 * 1024) {
        self.headLimit = max(0, headLimit)
        self.tailLimit = max(0, tailLimit)
        ring = []
        ring.reserveCapacity(self.tailLimit)
    }

    /// Adds bytes read from the stream.
    public mutating func append(_ bytes: some Collection<UInt8>) {
        totalBytes += Int64(bytes.count)
        var rest = bytes[...]
        if head.count < headLimit {
            let taken = rest.prefix(headLimit - head.count)
            head.append(contentsOf: taken)
            rest = rest.dropFirst(taken.count)
        }
        guard tailLimit > 0 else { return }
        // Whole spans, not byte by byte: a supervisor appends 64 KiB reads of a fast writer.
        var kept = rest.suffix(tailLimit)
        if ring.count < tailLimit {  // Still filling: ringStart is 0.
            let filling = kept.prefix(tailLimit - ring.count)
            ring.append(contentsOf: filling)
            kept = kept.dropFirst(filling.count)
        }
        while !kept.isEmpty {  // Full: overwrite the oldest bytes, wrapping at the end.
            let span = min(kept.count, tailLimit - ringStart)
            ring.replaceSubrange(ringStart..<(ringStart + span), with: kept.prefix(span))
            ringStart = (ringStart + span) % tailLimit
            kept = kept.dropFirst(span)
        }
    }

    /// Bytes seen but not kept.
    public var omittedBytes: Int64 { totalBytes - Int64(head.count) - Int64(ring.count) }

    /// What a log file holds: the head, a marker line saying how much was left out (if anything),
    /// and the tail.
    public var rendered: [UInt8] {
        let tail = Array(ring[ringStart...] + ring[..<ringStart])
        guard omittedBytes > 0 else { return head + tail }
        return head + Array("\n[… \(omittedBytes) bytes omitted by cortex …]\n".utf8) + tail
    }
}
