/// The journal as `CoordinationStore` uses it: an append-only, totally ordered sequence of
/// records, whatever holds it (docs/design.md, "The journal seam"; docs/decisions/027).
///
/// Nothing here is file-shaped. A position (`JournalPosition`) is an opaque cursor to the store:
/// it compares, it is saved in snapshots and turned into ids, but only the backend that issued it
/// knows what its two numbers mean. `FileJournal` keeps segment files in a folder;
/// `MemoryJournal` keeps records in memory, for tests and for programs that embed Cortex.
///
/// Every call is synchronous and throws `CortexError` (docs/decisions/027): each tool is a
/// short-lived process that folds once and appends once, the reducer is synchronous, and a
/// network backend does blocking requests with timeouts under the same calls.
///
/// What a backend guarantees:
/// - **One order.** Appends are totally ordered, and every reader reads the same records in
///   that order; positions increase along it.
/// - **Final positions.** The position an append returns never changes, and neither does
///   whether the record at it is read (a void record stays void).
/// - **Damage is skipped.** A torn, void or invalid line is never handed to a reader; damage is
///   reported in `JournalRead.damaged`, never fatal. An append that a backend voids (a file
///   record after a seal) is detected by the writer's next read (`isVoid`) and appended again.
/// - **Durability.** `makeDurable(from:through:)` returns once the records through that position
///   survive a power loss (or, for a memory backend, as long as the process lives), and
///   `durableThrough` then says so.
/// - **Compaction keeps what follows.** After `compact(before:)`, reading from that position on
///   gives the same records at the same positions.
public protocol Journal: AnyObject {
    /// Appends `line` (one record as `RecordCodec.encode` writes it) after every record appended
    /// so far, whole, and returns where it starts. `tail` is the caller's read position: where the
    /// caller believes the journal ends (the file backend appends to that segment).
    func append(_ line: [UInt8], tail: JournalPosition) throws(CortexError) -> JournalAppend

    /// Reads every record after `position` in journal order and hands each to `visit` with the
    /// position where it starts. Torn, void and invalid lines are skipped and reported.
    func readForward(
        from position: JournalPosition, visit: (Record, JournalPosition) throws(CortexError) -> Void
    ) throws(CortexError) -> JournalRead

    /// True when the record appended at `appended` is void: a read that ended at `end` went
    /// past it without handing it out. Its writer appends it again.
    func isVoid(_ appended: JournalPosition, readTo end: JournalPosition) -> Bool

    /// True when a record may have been appended since a read whose `extent` was `extent`.
    func hasAppended(since extent: JournalPosition) throws(CortexError) -> Bool

    /// Makes every record from `start` through `end` durable (`start` may be where the caller
    /// knows the journal was already durable).
    func makeDurable(from start: JournalPosition, through end: JournalPosition) throws(CortexError)

    /// The furthest position this journal object made durable: at least the `end` of every
    /// `makeDurable(from:through:)` that returned, never moving back; nil before the first.
    /// What a caller (or a test) can check that durability was asked for and given.
    var durableThrough: JournalPosition? { get }

    /// A waiter armed now: it wakes on any record appended from now on.
    func makeWaiter() throws(CortexError) -> any JournalWaiter

    /// Starts a new live part of the journal when the part `tail` lies in holds more than
    /// `bytes`, so that the part before it can be compacted once a snapshot covers it.
    /// - Returns: the position the new part starts at, or nil when none was started (or, with
    ///   `dryRun`, would be). A backend without parts returns nil.
    func rollOver(at tail: JournalPosition, ifLargerThan bytes: Int64, timeMilliseconds: Int64, dryRun: Bool)
        throws(CortexError) -> JournalPosition?

    /// Compacts the journal before `position`, which a durable snapshot covers: reading from
    /// `position` on gives the same records, reading from before it may fail once compacted
    /// records are discarded (after `retentionMilliseconds`). With `dryRun`, says what it would
    /// compact and changes nothing.
    func compact(before position: JournalPosition, retentionMilliseconds: Int64, nowMilliseconds: Int64, dryRun: Bool)
        throws(CortexError) -> JournalCompaction

    /// Where `position` lies, in this backend's words (`JournalPlace`): what the CLI prints and
    /// puts in JSON instead of reading the position's numbers.
    func place(of position: JournalPosition) -> JournalPlace

    /// Where the journal ends when a read ended at `end`, in this backend's words (the file
    /// backend: the live segment and its size; etcd: the revision), for `cortex status`.
    func endPlace(_ end: JournalPosition) -> JournalPlace
}

/// One append's result.
public struct JournalAppend: Equatable, Sendable {
    /// Where the record starts.
    public var position: JournalPosition
    /// Partial copies the backend wrote and appended again (short writes; readers skip them).
    public var tornAttempts: Int
    /// Problems after the record was in (a rotation that failed); the record stands.
    public var warnings: [String]

    /// An append at `position`.
    public init(position: JournalPosition, tornAttempts: Int = 0, warnings: [String] = []) {
        self.position = position
        self.tornAttempts = tornAttempts
        self.warnings = warnings
    }
}

/// What a forward read saw.
public struct JournalRead: Sendable {
    /// Just past the last record read: where the next read starts.
    public var end: JournalPosition
    /// How far the backend saw the journal, partial records included: give it to
    /// `hasAppended(since:)`. Opaque, like every position.
    public var extent: JournalPosition
    /// Records handed to the visitor.
    public var recordsRead: Int
    /// Lines that could not be trusted (skipped, counted, never fatal).
    public var damaged: [DamagedLine]

    /// A read summary with every field given.
    public init(end: JournalPosition, extent: JournalPosition, recordsRead: Int, damaged: [DamagedLine]) {
        self.end = end
        self.extent = extent
        self.recordsRead = recordsRead
        self.damaged = damaged
    }
}

/// What one compaction of the journal did (or, dry, would do).
public struct JournalCompaction: Equatable, Sendable {
    /// Parts compacted, by number (the file backend: segments archived behind a tombstone).
    public var archived: [Int] = []
    /// Compacted parts discarded past their retention, by number.
    public var purged: [Int] = []

    /// Nothing done.
    public init() {}
}

/// Sleeps until records are appended to a journal. Arm it before the look that decides to
/// wait, so a record appended in between still wakes it.
public protocol JournalWaiter: AnyObject {
    /// Sleeps until a record may have been appended since the waiter was armed or last woke,
    /// or `timeoutMilliseconds` pass (-1: no limit).
    /// - Returns: true when woken by an append.
    func wait(timeoutMilliseconds: Int32) -> Bool
    /// Stops watching (cheap to close later); `rearm` watches again.
    func disarm()
    /// Watches again after `disarm()`; look at the journal again before waiting.
    func rearm() throws(CortexError)
}
