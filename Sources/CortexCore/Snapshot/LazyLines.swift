import CCortexBytes

/// Immutable bytes that outlive the call that read them: a file mapped read-only (by the
/// storage module, `ImmutableBytes.map`), or an array. A mapping stays valid after the file is
/// replaced by a rename (it holds the old inode), and only the pages a reader touches are ever
/// read from the page cache.
public final class ImmutableBytes: @unchecked Sendable {
    // @unchecked: the bytes are never written after init, and are released only in deinit.
    /// The bytes.
    public let buffer: UnsafeRawBufferPointer
    /// Which file was mapped (nil for a copy).
    public let fileIdentity: FileIdentity?
    private let release: (@Sendable (UnsafeRawBufferPointer) -> Void)?

    /// A copy of `bytes`.
    public init(_ bytes: [UInt8]) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, bytes.count), alignment: 1)
        bytes.withUnsafeBytes { copy.copyMemory(from: $0) }
        buffer = UnsafeRawBufferPointer(rebasing: copy[0..<bytes.count])
        fileIdentity = nil
        release = nil
    }

    /// Bytes someone else owns (a mapping), handed back to `release` when these go away.
    public init(
        borrowing buffer: UnsafeRawBufferPointer, identity: FileIdentity?,
        release: @escaping @Sendable (UnsafeRawBufferPointer) -> Void
    ) {
        self.buffer = buffer
        fileIdentity = identity
        self.release = release
    }

    /// The largest file `map` maps (a snapshot of a million tasks is a few hundred MiB).
    public static let maximumMappedBytes = 1 << 30

    deinit {
        if let release { release(buffer) } else { buffer.deallocate() }
    }
}

/// A run of newline-terminated lines inside `ImmutableBytes`, read one line at a time. The large
/// parts of a snapshot (waiting tasks, idempotency keys) are kept like this and decoded only
/// where a call looks, so a call's cost does not grow with their number (docs/decisions/011).
public struct LazyLines: Sendable {
    /// The bytes the lines live in.
    public let storage: ImmutableBytes
    /// Where the first line starts.
    public let start: Int
    /// Just past the last line's newline.
    public let end: Int

    /// Lines in `storage` from `start` to `end`.
    public init(storage: ImmutableBytes, start: Int, end: Int) {
        self.storage = storage
        self.start = start
        self.end = end
    }

    /// No lines.
    public static let empty = LazyLines(storage: ImmutableBytes([]), start: 0, end: 0)

    /// True when there are no lines.
    public var isEmpty: Bool { start >= end }

    /// The line starting at `offset` (without its newline), and where the next one starts.
    public func line(at offset: Int) -> (bytes: UnsafeRawBufferPointer, next: Int) {
        let base = storage.buffer.baseAddress!
        let found = cortex_memchr(base + offset, 0x0A, end - offset)
        let stop = found.map { UnsafeRawPointer($0) - base } ?? end
        return (UnsafeRawBufferPointer(rebasing: storage.buffer[offset..<stop]), min(end, stop + 1))
    }

    /// Calls `body` with each line's offset and bytes in order, from the line at `offset` (or the
    /// first), until it returns false.
    public func forEach(from offset: Int? = nil, _ body: (Int, UnsafeRawBufferPointer) -> Bool) {
        var offset = offset ?? start
        while offset < end {
            let (bytes, next) = line(at: offset)
            if !body(offset, bytes) { return }
            offset = next
        }
    }

    /// Where the line after `line` (bytes returned by `line(at:)`) starts.
    public func offset(after line: UnsafeRawBufferPointer) -> Int {
        min(end, (line.baseAddress! - storage.buffer.baseAddress!) + line.count + 1)
    }

    /// The start of the line that contains `offset`.
    func lineStart(containing offset: Int) -> Int {
        var position = offset
        while position > start && storage.buffer[position - 1] != 0x0A { position -= 1 }
        return position
    }

    /// Binary search over lines sorted by a key: `compare` says whether the line's key is before
    /// (-1), at (0) or after (1) the one wanted. Touches O(log n) lines.
    public func search(_ compare: (UnsafeRawBufferPointer) -> Int) -> UnsafeRawBufferPointer? {
        var low = start
        var high = end
        while low < high {
            let lineStart = lineStart(containing: low + (high - low) / 2)
            let (bytes, next) = line(at: lineStart)
            switch compare(bytes) {
            case 0: return bytes
            case ..<0: low = next
            default: high = lineStart
            }
        }
        return nil
    }

    /// The offsets of lines containing `needle`, found with `memmem` (a scan at memory speed).
    public func lines(containing needle: [UInt8]) -> [Int] {
        var found: [Int] = []
        var offset = start
        let base = storage.buffer.baseAddress!
        while offset < end {
            guard let hit = cortex_memmem(base + offset, end - offset, needle, needle.count) else { break }
            let at = UnsafeRawPointer(hit) - base
            let lineStart = lineStart(containing: at)
            found.append(lineStart)
            offset = line(at: lineStart).next
        }
        return found
    }
}
