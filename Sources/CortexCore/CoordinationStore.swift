import Glibc

/// A coordination folder opened by one process: the journal, the state folded from it, and
/// the files derived from that state. This is the library's main entry point; each tool is a
/// thin layer over it.
///
/// The protocol (DESIGN.md): load the snapshot, fold the journal past it, append a record
/// with one `write(2)`, fold up to that record to learn its outcome, append again if a seal
/// made it void. Nothing here takes a lock. Not thread-safe: one instance per thread.
public final class CoordinationStore {
    /// Paths of the folder's files.
    public let layout: CoordinationLayout
    /// Settings from `config.json`.
    public let config: CortexConfig
    /// The journal.
    public let journal: FileJournal
    /// The state folded so far.
    public private(set) var state = CortexState()
    /// Just past the last record folded.
    public private(set) var position = JournalPosition.start
    /// Records replayed since the snapshot this store loaded or wrote.
    public private(set) var recordsSinceSnapshot = 0
    /// Lines skipped by this store's folds (torn, corrupt), in journal order.
    public private(set) var damagedLines: [DamagedLine] = []
    /// Appends that came out short and were written again whole.
    public private(set) var tornAppends = 0
    private var liveSizeSeen: Int64 = 0
    private var snapshotPosition: JournalPosition?
    /// Which `state/snapshot.json` this store loaded or wrote (inode and change time), to see
    /// whether another process has written a newer one since.
    private var snapshotFileIdentity: FileIdentity?
    /// True once this store submitted a record whose number in the journal is a multiple of
    /// `snapshotEveryRecords`: its turn to write the snapshot.
    private var holdsSnapshotDuty = false
    /// The id of the last record folded, and of the last record this store submitted.
    private var lastFoldedRecordID: String?
    private var lastSubmittedRecordID: String?
    /// True when other writers' records landed between this store's first fold and its own
    /// record: the journal is busy, and a later writer is likely to publish the views.
    private var sawConcurrentWriters = false

    private init(layout: CoordinationLayout, config: CortexConfig) {
        self.layout = layout
        self.config = config
        self.journal = FileJournal(folder: layout.folder, directory: layout.journal)
    }

    /// Opens the coordination folder at `root` and folds the journal to its end.
    /// - Parameter createIfMissing: create the layout with default settings when it is not there
    ///   (mutating tools do; read-only ones report `notFound`).
    /// - Throws: `configuration` on an unsupported file system or a bad `config.json`,
    ///   `notFound` when the folder is missing and may not be created, `io`/`corrupt` otherwise.
    public static func open(root: String, createIfMissing: Bool) throws(CortexError) -> CoordinationStore {
        let layout = CoordinationLayout(root: root)
        try SupportedFileSystem.check(layout.root)
        // config.json is written last when a layout is created: its absence means no layout.
        var configBytes = try readConfig(layout)
        if configBytes == nil {
            guard createIfMissing else {
                throw .notFound("no coordination folder at \(layout.root) (create it with 'cortex init --dir \(layout.root)')")
            }
            try createLayout(layout, config: CortexConfig())
            configBytes = try readConfig(layout)
        }
        guard let configBytes else { throw .configuration("\(layout.config) vanished while the folder was created") }
        let store = CoordinationStore(layout: layout, config: try parseConfig(configBytes, layout))
        store.loadSnapshot()
        try store.catchUp()
        return store
    }

    /// The journal of an existing coordination folder, for readers that need no state (verify, tail).
    /// - Throws: `configuration` on an unsupported file system, `notFound` when there is no journal.
    public static func existingJournal(root: String) throws(CortexError) -> FileJournal {
        let layout = CoordinationLayout(root: root)
        try SupportedFileSystem.check(layout.root)
        guard try withPath("stat", layout.journal, { () throws(Errno) in try layout.folder.status(layout.journal) }) != nil else {
            throw .notFound("no journal at \(layout.journal) (create it with 'cortex init --dir \(layout.root)')")
        }
        return FileJournal(folder: layout.folder, directory: layout.journal)
    }

    /// Creates the folders, the first segment and `config.json` if they are missing. Safe to run
    /// from many processes at once: every step either creates or finds the thing already there.
    public static func createLayout(_ layout: CoordinationLayout, config: CortexConfig) throws(CortexError) {
        try SupportedFileSystem.check(layout.root)
        try makeDirectories(layout.root)
        for folder in [
            layout.journal, layout.archive, layout.stateFolder, layout.finishedTasks, layout.workers, layout.results,
            layout.contexts,
        ] {
            try Files.makeDirectory(folder, in: layout.folder)
        }
        try FileJournal(folder: layout.folder, directory: layout.journal).createSegment(1)
        try AtomicFile.createIfAbsent(layout.config, in: layout.folder, with: config.json.prettySerialized())
    }

    private static func makeDirectories(_ path: String) throws(CortexError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            let folder = prefix
            try withPath("create folder", folder) { () throws(Errno) in try POSIX.makeDirectory(folder) }
        }
    }

    /// `config.json`'s bytes, or nil when it does not exist (one read, no separate stat). A link,
    /// a FIFO or a file over `FileLimits.config` is refused.
    private static func readConfig(_ layout: CoordinationLayout) throws(CortexError) -> [UInt8]? {
        do {
            return try layout.folder.readFile(layout.config, limit: FileLimits.config)
        } catch {
            if error.rawValue == ENOENT { return nil }
            throw .system("read", layout.config, error)
        }
    }

    private static func parseConfig(_ bytes: [UInt8], _ layout: CoordinationLayout) throws(CortexError) -> CortexConfig {
        let json: JSONValue
        do { json = try JSONValue.parse(bytes) } catch {
            throw .configuration("\(layout.config) is not valid JSON: \(error)")
        }
        return try CortexConfig(json: json, path: layout.config)
    }

    /// Starts from `state/snapshot.json` when it is readable. A missing or unreadable snapshot is
    /// not an error: the snapshot is a cache, and the fold starts from the beginning instead.
    private func loadSnapshot() {
        // The checkpoint is an older snapshot kept under a second name by the reaper (compactJournal).
        let mapped = ImmutableBytes.map(layout.snapshot, in: layout.folder)
        snapshotFileIdentity = mapped?.fileIdentity
        let decoded =
            mapped.flatMap(SnapshotCodec.decode) ?? ImmutableBytes.map(layout.checkpoint, in: layout.folder).flatMap(SnapshotCodec.decode)
        guard let (snapshotState, snapshotPosition) = decoded else { return }
        state = snapshotState
        position = snapshotPosition
        self.snapshotPosition = snapshotPosition
    }

    /// Empties the outbox of finished tasks once they are written under `state/finished/`.
    func clearFinishedOutbox() { state.tasks.finished.removeAll() }

    /// Folds every record appended since the last fold.
    public func catchUp() throws(CortexError) {
        _ = try foldForward(watchingFor: nil)
    }

    /// Folds to the end of the journal; returns the outcome of the record with id `watchedID` if it was folded.
    private func foldForward(watchingFor watchedID: String?) throws(CortexError) -> Outcome? {
        var watchedOutcome: Outcome?
        let summary = try journal.readForward(from: position) { (record, _) throws(CortexError) in
            let outcome = Reducer.reduce(&self.state, record)
            if watchedOutcome == nil, record.id == watchedID {
                watchedOutcome = outcome
                // Every snapshotEveryRecords-th record of the journal makes its writer the one
                // to write the next snapshot (see publish).
                if self.state.recordsFolded % Int64(self.config.snapshotEveryRecords) == 0 { self.holdsSnapshotDuty = true }
            }
            self.lastFoldedRecordID = record.id
        }
        position = summary.end
        liveSizeSeen = summary.liveSizeSeen
        recordsSinceSnapshot += summary.recordsRead
        damagedLines += summary.damaged
        return watchedOutcome
    }

    /// A record that reached the journal and the outcome the fold gave it.
    public struct Submission: Sendable {
        /// The record as written.
        public var record: Record
        /// What the fold decided for it.
        public var outcome: Outcome
    }

    /// Appends `event` as a record and returns the outcome the fold gives it: the same outcome
    /// every other process folding the journal will give it (DESIGN.md, "Writer").
    public func submit(_ event: Event) throws(CortexError) -> Submission {
        let record = Record(
            id: Record.newID(), timeMilliseconds: POSIX.wallClockMilliseconds(), kind: event.kind, data: event.data)
        let line = try RecordCodec.encode(record)
        var attempts = 0
        while true {
            attempts += 1
            guard attempts <= 16 else {
                throw .corrupt("could not append record \(record.id) after \(attempts - 1) attempts (journal \(layout.journal))")
            }
            let target = position.segment
            let appended: JournalPosition
            switch try journal.appendLine(line, toSegment: target) {
            case .torn:
                // A short write left a fragment; readers skip it. Append the whole record again.
                tornAppends += 1
                continue
            case .appended(let start):
                appended = start
            }
            if config.syncAppends { try journal.syncSegment(target) }
            let foldedBefore = state.recordsFolded
            if let outcome = try foldForward(watchingFor: record.id) {
                if state.recordsFolded - foldedBefore > 1 { sawConcurrentWriters = true }
                if appended.offset + Int64(line.count) >= config.segmentMaxBytes {
                    // Our record is in; a seal can only land after it.
                    try journal.rotate(segment: target, timeMilliseconds: record.timeMilliseconds)
                }
                lastSubmittedRecordID = record.id
                return Submission(record: record, outcome: outcome)
            }
            guard position.segment > target else {
                throw .corrupt("record \(record.id) appended at \(appended) was not found by the fold")
            }
            // The fold met the segment's first seal before our record: it is void. Append it again.
        }
    }

    /// Writes a snapshot if enough records were replayed since the last one, then the views.
    /// Every command that submits a record calls this once at the end; that contract is what
    /// makes the shortcut below safe.
    ///
    /// Shortcut: if a later record already follows this store's own, the later record's writer
    /// will publish a view (and snapshot) covering ours, so this one writes nothing. Only the
    /// writer of the last record is certain to publish, and `publishViews` makes its view final.
    /// Under 50 concurrent callers this saves most of the view writes, which cost ~0.5 ms each.
    ///
    /// When the journal is busy, a writer that would publish first sleeps briefly
    /// (`contendedPublishDelayMicroseconds`) and looks again: under 50 concurrent callers a later
    /// record has usually arrived by then, and its writer carries the duty. The last writer of a
    /// burst still always publishes; a lone caller never waits.
    public func publish(nowMilliseconds: Int64 = POSIX.wallClockMilliseconds()) throws(CortexError) {
        if try journalMovedSinceFold() { try catchUp() }
        try writeSnapshotIfDue(nowMilliseconds: nowMilliseconds)
        if let submitted = lastSubmittedRecordID, lastFoldedRecordID != submitted { return }
        if lastSubmittedRecordID != nil && sawConcurrentWriters {
            usleep(CoordinationStore.contendedPublishDelayMicroseconds)
            if try journalMovedSinceFold() { try catchUp() }
            if lastFoldedRecordID != lastSubmittedRecordID { return }
        }
        try publishViews(nowMilliseconds: nowMilliseconds)
    }

    /// Writes a snapshot when this store's fold is `snapshotEveryRecords` past the one it loaded
    /// and it is this store's turn: it wrote the N-th, 2N-th, … record of the journal (every
    /// process agrees on those numbers), or the snapshot lags four times that (the process whose
    /// turn it was died). And only if no other process replaced the snapshot since this one
    /// loaded it. Before turns, every publisher that had loaded the last snapshot wrote its own:
    /// under 20 concurrent claimers of a 10,000-task queue, 211 snapshots of 1.6 MB for 2,000
    /// records instead of ~16.
    private func writeSnapshotIfDue(nowMilliseconds: Int64) throws(CortexError) {
        let every = config.snapshotEveryRecords
        guard recordsSinceSnapshot >= every, holdsSnapshotDuty || recordsSinceSnapshot >= 4 * every else { return }
        guard FileIdentity.of(layout.snapshot, in: layout.folder) == snapshotFileIdentity else { return }
        try writeSnapshot(nowMilliseconds: nowMilliseconds)
    }

    /// Writes `state/snapshot.json` for the current fold. The journal up to the snapshot's position
    /// is `fdatasync`ed first, so a snapshot is never ahead of durable journal data. Tasks that
    /// finished since the last snapshot are compacted first into one durable file under
    /// `state/finished/`, so the snapshot (loaded by every call) holds only live work.
    public func writeSnapshot(nowMilliseconds: Int64 = POSIX.wallClockMilliseconds()) throws(CortexError) {
        let firstSegment = min(snapshotPosition?.segment ?? 1, position.segment)
        for segment in firstSegment...position.segment where try journal.segmentExists(segment) {
            try journal.syncSegment(segment)
        }
        try compactFinishedTasks()
        let snapshot = SnapshotCodec.encode(state, position: position, writtenAtMilliseconds: nowMilliseconds)
        try AtomicFile.replace(layout.snapshot, in: layout.folder, with: snapshot, durability: .powerLoss)
        snapshotFileIdentity = FileIdentity.of(layout.snapshot, in: layout.folder)
        holdsSnapshotDuty = false
        snapshotPosition = position
        recordsSinceSnapshot = 0
    }

    /// Rewrites the views from the current state, so that the views left in place reflect every
    /// record once writers stop. Every view carries `version`, the number of records of its kind
    /// folded into it (the same in every process for the same journal prefix), so a writer can
    /// compare views, and a view that no record of its kind changed is never rewritten:
    ///
    /// - if the view on disk already covers this fold, it is not written at all;
    /// - otherwise the new view is swapped in with `RENAME_EXCHANGE`, which hands back the file
    ///   it displaced. Only if that file covered *more* (a slower writer raced a newer one) does
    ///   this writer fold further and publish again, so the coverage on disk never goes down for
    ///   long, and the last writer's view stays. Under 50 concurrent callers this is about one
    ///   write per publishing call, where re-checking the journal alone made writers loop
    ///   (the journal always moves under load).
    public func publishViews(nowMilliseconds: Int64 = POSIX.wallClockMilliseconds()) throws(CortexError) {
        for _ in 0..<8 {
            var regressed = false
            let views: [(String, Int64, () -> JSONValue)] = [
                (layout.budgetView, state.budget.version, { Views.budget(self.state, nowMilliseconds: nowMilliseconds) }),
                (layout.taskView, state.tasks.version, { Views.taskQueue(self.state, nowMilliseconds: nowMilliseconds) }),
                (
                    layout.workerView, state.workers.version,
                    {
                        Views.workerPool(
                            self.state, maxWorkers: self.config.maxWorkers, nowMilliseconds: nowMilliseconds,
                            heartbeatAge: { self.layout.heartbeatAge($0, nowMilliseconds: nowMilliseconds) })
                    }
                ),
            ]
            for (path, coverage, render) in views {
                if let onDisk = AtomicFile.tail(of: path, in: layout.folder).flatMap(Views.coverage(inTail:)), onDisk >= coverage {
                    continue
                }
                switch try AtomicFile.exchange(path, in: layout.folder, with: render().prettySerialized()) {
                case .nothing: break
                case .file(let tail):
                    if let displaced = Views.coverage(inTail: tail), displaced > coverage { regressed = true }
                case .unknown:
                    // No way to see what was replaced: fall back to re-checking the journal.
                    if try journalMovedSinceFold() { regressed = true }
                }
            }
            guard regressed else { return }
            try catchUp()
        }
    }

    /// How long a writer in a busy journal waits for a later writer before publishing views itself.
    public static let contendedPublishDelayMicroseconds: UInt32 = 2000

    /// True when records may have been appended since the last fold.
    public func journalMovedSinceFold() throws(CortexError) -> Bool {
        if try journal.segmentExists(position.segment + 1) { return true }
        return try journal.sizeOfSegment(position.segment) != liveSizeSeen
    }
}
