import CortexCore

/// A journal held in memory, for tests and for programs that embed Cortex without a
/// coordination folder (docs/decisions/027). Nothing touches the disk.
///
/// Records are kept as the lines `RecordCodec` wrote and decoded when appended, so a read skips
/// and reports invalid lines exactly as the file backend does. The record at index `i` (from 0)
/// starts at position `(1, i)`; a read that saw `n` lines ends at `(1, n)`. Thread-safe: every
/// operation holds one lock, so stores on several threads share one total order. Durability
/// lasts as long as the process; there is nothing to roll over or compact (every record is
/// kept). One process's journal: not a `SharedJournal`.
public final class MemoryJournal: Journal, @unchecked Sendable {
    /// One appended line.
    private struct Entry {
        var decoded: RecordCodec.Decoded
        var length: Int64
        /// Voided on purpose (`voidNextAppends`): never read, like a file record after a seal.
        var void: Bool
    }

    /// Guards every field below; its condition is signalled by every append.
    private let lock = ConditionLock()
    private var entries: [Entry] = []
    private var voidsPending = 0
    private var durable: JournalPosition?
    private var tearsPending = 0

    /// An empty journal.
    public init() {}

    private func locked<Value>(_ body: () throws(CortexError) -> Value) throws(CortexError) -> Value {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// How many lines were appended (records, void copies and torn fragments).
    public var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return entries.count
    }

    /// Makes the next `count` appends void (kept but never read), as a file record that lands
    /// after its segment's seal: for tests of the writer's re-append.
    public func voidNextAppends(_ count: Int = 1) {
        lock.lock()
        voidsPending += count
        lock.unlock()
    }

    /// Makes the next `count` appends leave a torn fragment (half the line, skipped and reported
    /// by readers) before the whole line goes in, as a short `write(2)` does: for tests.
    public func tearNextAppends(_ count: Int = 1) {
        lock.lock()
        tearsPending += count
        lock.unlock()
    }

    private static func position(_ index: Int) -> JournalPosition { JournalPosition(segment: 1, offset: Int64(index)) }

    /// Appends `line` at the end, whatever `tail` says (there is one order and no segments).
    public func append(_ line: [UInt8], tail: JournalPosition) throws(CortexError) -> JournalAppend {
        let body = line.last == 0x0A ? Array(line.dropLast()) : line
        return try locked { () throws(CortexError) in
            var torn = 0
            if tearsPending > 0 {
                tearsPending -= 1
                torn = 1
                let fragment = Array(body.prefix(body.count / 2))
                entries.append(Entry(decoded: RecordCodec.decode(fragment), length: Int64(fragment.count), void: false))
            }
            let isVoid = voidsPending > 0
            if isVoid { voidsPending -= 1 }
            entries.append(Entry(decoded: RecordCodec.decode(body), length: Int64(line.count), void: isVoid))
            lock.broadcast()
            return JournalAppend(position: MemoryJournal.position(entries.count - 1), tornAttempts: torn)
        }
    }

    /// Reads every record after `position`; invalid lines are reported, void ones and seals skipped.
    public func readForward(
        from position: JournalPosition, visit: (Record, JournalPosition) throws(CortexError) -> Void
    ) throws(CortexError) -> JournalRead {
        // The visitor runs outside the lock (it may append); the array is copied on write.
        let seen = try locked { () throws(CortexError) in entries }
        guard position.segment == 1, position.offset >= 0, position.offset <= Int64(seen.count) else {
            throw .corrupt("position \(position) is not in this memory journal (\(seen.count) lines)")
        }
        var recordsRead = 0
        var damaged: [DamagedLine] = []
        for index in Int(position.offset)..<seen.count {
            let entry = seen[index]
            guard !entry.void else { continue }
            switch entry.decoded {
            case .invalid(let reason):
                damaged.append(DamagedLine(position: MemoryJournal.position(index), length: entry.length, reason: reason))
            case .record(let record, _):
                guard !record.isSeal else { continue }
                recordsRead += 1
                try visit(record, MemoryJournal.position(index))
            }
        }
        let end = MemoryJournal.position(seen.count)
        return JournalRead(end: end, extent: end, recordsRead: recordsRead, damaged: damaged)
    }

    /// True when a read went past `appended` without handing it out.
    public func isVoid(_ appended: JournalPosition, readTo end: JournalPosition) -> Bool { end > appended }

    /// True when lines were appended since a read that ended at `extent`.
    public func hasAppended(since extent: JournalPosition) throws(CortexError) -> Bool {
        try locked { () throws(CortexError) in MemoryJournal.position(entries.count) != extent }
    }

    /// Nothing to write: records last as long as the process. Records `end` as `durableThrough`
    /// (when it is further).
    public func makeDurable(from start: JournalPosition, through end: JournalPosition) throws(CortexError) {
        try locked { () throws(CortexError) in
            if durable.map({ $0 < end }) ?? true { durable = end }
        }
    }

    /// The furthest `end` a `makeDurable` was given.
    public var durableThrough: JournalPosition? {
        lock.lock()
        defer { lock.unlock() }
        return durable
    }

    /// A waiter that wakes on the next append.
    public func makeWaiter() throws(CortexError) -> any JournalWaiter { Waiter(journal: self) }

    /// Never: a memory journal has one part.
    public func rollOver(at tail: JournalPosition, ifLargerThan bytes: Int64, timeMilliseconds: Int64, dryRun: Bool)
        throws(CortexError) -> JournalPosition?
    { nil }

    /// Nothing: a memory journal keeps every record (no durable snapshot could replace them).
    public func compact(before position: JournalPosition, retentionMilliseconds: Int64, nowMilliseconds: Int64, dryRun: Bool)
        throws(CortexError) -> JournalCompaction
    { JournalCompaction() }

    /// Sleeps until more than `seen` lines are in or `timeoutMilliseconds` pass (-1: no limit).
    /// - Returns: the number of lines then.
    fileprivate func waitForLines(beyond seen: Int, timeoutMilliseconds: Int32) -> Int {
        lock.lock()
        defer { lock.unlock() }
        let deadline =
            timeoutMilliseconds < 0 ? nil : POSIX.monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        while entries.count <= seen {
            if !lock.wait(until: deadline) { break }
        }
        return entries.count
    }

    /// The waiter of a memory journal: a condition variable signalled by every append.
    private final class Waiter: JournalWaiter {
        let journal: MemoryJournal
        var seen: Int
        var armed = true

        init(journal: MemoryJournal) {
            self.journal = journal
            seen = journal.count
        }

        func wait(timeoutMilliseconds: Int32) -> Bool {
            guard armed else { return false }
            let now = journal.waitForLines(beyond: seen, timeoutMilliseconds: timeoutMilliseconds)
            defer { seen = now }
            return now > seen
        }

        func disarm() { armed = false }

        func rearm() throws(CortexError) {
            guard !armed else { return }
            armed = true
            seen = journal.count
        }
    }
}
