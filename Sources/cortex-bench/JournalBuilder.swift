import CortexCore
import CortexStorage
import Glibc

/// Writes a realistic budget journal fast: records encoded with `RecordCodec.encode`, written in
/// 1 MiB batches instead of one `write(2)` each, rotated with seals at the configured segment size
/// exactly as `submit` would. Every allocation is granted (the budget is 10^15 tokens), so
/// allocation ids are predictable (`alloc-` and the allocate record's position) and the builder
/// can release the oldest ones to keep the state a realistic size.
final class JournalBuilder {
    let root: String
    let layout: CoordinationLayout
    let journal: FileJournal
    let segmentMaxBytes: Int64
    /// Keep at most this many allocations outstanding (nil: never release).
    let outstandingLimit: Int?
    private(set) var segment = 1
    private var segmentSize: Int64 = 0
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private var allocationsIssued: Int64 = 0
    private var allocationsReleased: Int64 = 0
    /// Ids of the allocations granted and not yet released, oldest first from `oldestOutstanding`.
    private var unreleased: [String] = []
    private var oldestOutstanding = 0
    private(set) var recordsWritten = 0
    private var clock: Int64 = 1_800_000_000_000

    init(root: String, outstandingLimit: Int?) {
        self.root = root
        let layout = CoordinationLayout(root: root)
        self.layout = layout
        self.outstandingLimit = outstandingLimit
        must("create layout") { () throws(CortexError) in try CoordinationStore.createLayout(layout, config: CortexConfig()) }
        self.segmentMaxBytes = CortexConfig().segmentMaxBytes
        self.journal = FileJournal(directory: layout.journal)
        buffer.reserveCapacity(1 << 20 + 4096)
        openSegment()
        emit(kind: "budget.set", data: Event.budgetSet(total: 1_000_000_000_000_000).data)
    }

    deinit { if fd >= 0 { close(fd) } }

    private func openSegment() {
        if fd >= 0 { close(fd) }
        let path = journal.path(ofSegment: segment)
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        if fd < 0 { fail("open \(path): errno \(errno)") }
        var info = stat()
        fstat(fd, &info)
        segmentSize = Int64(info.st_size)
    }

    /// Appends `count` records (allocations, and releases of the oldest allocation once
    /// `outstandingLimit` are outstanding), then flushes.
    func append(_ count: Int) {
        for _ in 0..<count {
            let outstanding = allocationsIssued - allocationsReleased
            if let limit = outstandingLimit, outstanding >= Int64(limit) {
                allocationsReleased += 1
                let id = unreleased[oldestOutstanding]
                oldestOutstanding += 1
                if oldestOutstanding >= 4096 && oldestOutstanding * 2 >= unreleased.count {
                    unreleased.removeFirst(oldestOutstanding)
                    oldestOutstanding = 0
                }
                emit(kind: "budget.release", data: Event.budgetRelease(allocation: id, used: 7).data)
            } else {
                allocationsIssued += 1
                let request = BudgetRequest(tokens: 10 + allocationsIssued % 90, holder: "w-\(allocationsIssued % 50)")
                let position = emit(kind: "budget.allocate", data: Event.budgetAllocate(request).data)
                unreleased.append(position.id(.allocation))
            }
        }
        flush()
    }

    /// Appends a record; returns the position it will start at.
    @discardableResult
    private func emit(kind: String, data: JSONValue) -> JournalPosition {
        clock += 1
        let record = Record(id: Record.newID(), timeMilliseconds: clock, kind: kind, data: data)
        let line = must("encode") { () throws(CortexError) in try RecordCodec.encode(record) }
        if segmentSize > 0 && segmentSize + Int64(buffer.count + line.count) > segmentMaxBytes {
            flush()
            must("rotate") { () throws(CortexError) in try journal.rotate(segment: segment, timeMilliseconds: clock) }
            segment += 1
            openSegment()
        }
        let position = JournalPosition(segment: segment, offset: segmentSize + Int64(buffer.count))
        buffer.append(contentsOf: line)
        recordsWritten += 1
        if buffer.count >= 1 << 20 { flush() }
        return position
    }

    func flush() {
        guard !buffer.isEmpty else { return }
        let written = buffer.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written != buffer.count { fail("short write to journal: \(written) of \(buffer.count)") }
        segmentSize += Int64(written)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Bytes in all segments.
    var journalBytes: Int64 {
        var total: Int64 = 0
        for number in 1...segment { total += (try? journal.sizeOfSegment(number)) ?? 0 }
        return total
    }
}
