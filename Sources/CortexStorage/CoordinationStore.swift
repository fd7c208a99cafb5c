import CortexCore

/// A coordination folder opened by one process: the journal, the state folded from it, and
/// the files derived from that state. This is the library's main entry point; each tool is a
/// thin layer over it.
///
/// The protocol (docs/design.md): load the snapshot, fold the journal past it, append a record,
/// fold up to that record to learn its outcome, append again if the journal made it void.
/// Nothing here takes a lock. Not thread-safe: one instance per thread.
///
/// The journal is any `Journal` (docs/decisions/027): a store opened on a folder (`open(root:)`)
/// uses its `FileJournal` and keeps its snapshot, views and finished tasks as files there; a
/// store over another journal (`over(_:config:)`, e.g. a `MemoryJournal`) keeps everything in
/// memory and never touches the disk. What a journal shared by hosts does differently comes
/// through `SharedJournal`; the store names no backend.
///
/// This file holds the state and how a store is made; each job is an extension in a file of its
/// own: `+Fold` (reading the journal into the state), `+Submit` (appending a record and learning
/// its outcome), `+Snapshots` (snapshot duty), `+Views` (publishing the views), `+Layout` (the
/// folder and `config.json`), `Snapshot/…+Compaction` and `Snapshot/…+FinishedTasks`.
public final class CoordinationStore {
    /// Paths of the folder's files.
    public let layout: CoordinationLayout
    /// Settings from `config.json`.
    public let config: CortexConfig
    /// How this folder's files are created (a group folder or not), from the root's mode.
    public let permissions: FolderPermissions
    /// The journal.
    public let journal: any Journal
    /// The journal's `SharedJournal` side when its backend adopts it, found once when the store is
    /// made (no cast per call): appends then fold in their own round trip, snapshots are stored in
    /// it too.
    let sharedJournal: (any SharedJournal)?
    /// True when the snapshot, views and finished tasks are files in the folder (`open(root:)`);
    /// false for a store over a journal alone, which writes and reads no file.
    public let persistsFiles: Bool
    /// The state folded so far.
    public internal(set) var state = CortexState()
    /// Just past the last record folded.
    public internal(set) var position = JournalPosition.start
    /// Records replayed since the snapshot this store loaded or wrote.
    public internal(set) var recordsSinceSnapshot = 0
    /// Lines skipped by this store's folds (torn, corrupt), in journal order.
    public internal(set) var damagedLines: [DamagedLine] = []
    /// Appends that came out short and were written again whole.
    public internal(set) var tornAppends = 0
    /// Snapshots this store did not trust when it loaded (checksum mismatch, unreadable), with
    /// why; it folded from the checkpoint or the journal's beginning instead.
    public internal(set) var rejectedSnapshots: [String] = []
    /// True when the loaded snapshot's checksum was not computed again: its marker named that very
    /// file as verified (`state/snapshot.verified`, decision 042).
    public internal(set) var checksumPassSkipped = false
    /// How far the last fold saw the journal (`JournalRead.extent`), for `journalMovedSinceFold`.
    var readExtent = JournalPosition.start
    var snapshotPosition: JournalPosition?
    /// `snapshotPosition` as `open` left it (`readyForNextCommand`: has this store written one since?).
    var loadedSnapshotPosition: JournalPosition?
    /// Which `state/snapshot.json` this store loaded or wrote (inode and change time), to see
    /// whether another process has written a newer one since.
    var snapshotFileIdentity: FileIdentity?
    /// True once this store submitted a record whose number in the journal is a multiple of
    /// `snapshotEveryRecords`: its turn to write the snapshot.
    var holdsSnapshotDuty = false
    /// The id of the last record folded, and of the last record this store submitted.
    var lastFoldedRecordID: String?
    /// Where the last record folded starts.
    var lastFoldedRecordPosition: JournalPosition?
    /// A shared journal's snapshot is believed only if its last record is the first one the
    /// fold meets again (its id at its position): set by `loadSnapshot`, checked by the fold.
    var pendingSnapshotCheck: (id: String, position: JournalPosition)?
    /// True when the fold met another record than `pendingSnapshotCheck` names.
    var snapshotMismatched = false
    /// The bytes of the snapshot loaded from etcd, kept as the local snapshot once the fold
    /// confirms them (`cacheStoredSnapshot`).
    var storedSnapshotToCache: [UInt8]?
    /// True when the last fold was an etcd append's own read (`appendThenRead`).
    var foldEndsAtOwnAppend = false
    /// An etcd folder's store opened with `foldOnOpen: false` that has not folded yet: its
    /// first `submit` folds in the append's transaction, its first `catchUp` as `open` would.
    var foldDeferred = false
    /// Whether the deferred fold starts from the folder's own snapshot.
    var deferredFromLocalSnapshot = false
    /// Other writers' records written (by their clocks) after this store opened with its fold
    /// deferred: were others busy meanwhile (`sawConcurrentWriters`)? `Int64.max`: not counted.
    var concurrentSince = Int64.max
    var recordsSinceOpening = 0
    /// True once `auditSigner` has looked for the writer's key; `signer` is what it found.
    var signerLookedUp = false
    var signer: SigningKey?
    /// Where this store's last append to a `SharedJournal` went in.
    var lastAppendedPosition: JournalPosition?
    var lastSubmittedRecordID: String?
    /// True when other writers' records landed between this store's first fold and its own
    /// record: the journal is busy, and a later writer is likely to publish the views.
    var sawConcurrentWriters = false
    /// Problems met after a record of this store reached the journal (a view, snapshot or
    /// `fdatasync` that failed). They do not change the record's outcome, which is what the
    /// command reports; the command-line layer prints each as one line on stderr
    /// (docs/decisions/021-outcome-is-the-truth.md).
    public internal(set) var warnings: [String] = []
    /// Set by a long-lived process (`cortex session`): `publish` and `writeSnapshotAfterReading`
    /// hand the fold to it, to be written off the request path and coalesced, instead of writing
    /// the views and the snapshot before returning (docs/decisions/005-dispatch-io.md).
    public var backgroundPublisher: BackgroundPublisher?

    private init(
        layout: CoordinationLayout, config: CortexConfig, permissions: FolderPermissions, journal: any Journal,
        sharedJournal: (any SharedJournal)?, persistsFiles: Bool
    ) {
        self.layout = layout
        self.config = config
        self.permissions = permissions
        self.journal = journal
        self.persistsFiles = persistsFiles
        self.sharedJournal = sharedJournal
    }

    /// The journal that keeps this store's snapshots beside the folder's (`sharedJournal`, for a
    /// store that keeps files): where a fold falls back to when it meets a compaction.
    var snapshotSharer: (any SharedJournal)? { persistsFiles ? sharedJournal : nil }

    /// A store over `journal` alone, folded to its end: no snapshot is loaded or written, no view
    /// published, finished tasks stay in memory; nothing is read from or written to `layout`
    /// (whose root, by default, cannot even be created). For tests and embedding programs.
    public static func over(
        _ journal: any Journal, config: CortexConfig = CortexConfig(),
        layout: CoordinationLayout = CoordinationLayout(root: "/dev/null/cortex-journal-only")
    ) throws(CortexError) -> CoordinationStore {
        let store = CoordinationStore(
            layout: layout, config: config, permissions: .personal, journal: journal, sharedJournal: journal as? any SharedJournal,
            persistsFiles: false)
        try store.catchUp()
        return store
    }

    /// Opens the coordination folder at `root` and folds the journal to its end.
    /// - Parameter createIfMissing: create the layout with default settings when it is not there
    ///   (`cortex init` and benchmarks; the tools' commands pass false).
    /// - Throws: `configuration` on an unsupported file system, a bad `config.json`, or a journal
    ///   without `config.json` (when not created), `notFound` when the folder is missing and may
    ///   not be created, `io`/`corrupt` otherwise.
    public static func open(root: String, createIfMissing: Bool) throws(CortexError) -> CoordinationStore {
        try open(root: root, createIfMissing: createIfMissing, etcd: nil)
    }

    /// `open(root:createIfMissing:)`, with the cluster of an etcd folder given (tests: an
    /// in-memory `EtcdKV`) instead of a client built from its settings.
    static func open(root: String, createIfMissing: Bool, etcd: (any EtcdKV)?) throws(CortexError) -> CoordinationStore {
        try open(root: root, createIfMissing: createIfMissing, etcd: etcd, foldOnOpen: true)
    }

    /// `open(root:createIfMissing:)` for a command whose first use of the store is `submit`
    /// (`cortex-budget allocate`): with `foldOnOpen` false, an etcd folder's store loads its
    /// snapshot but does not fold past it; the first `submit` folds in the append's own
    /// transaction (one round trip for the whole call, docs/decisions/035), the first `catchUp`
    /// as `open` would. Until then `state` is the snapshot's. A file folder folds at open either way.
    public static func open(root: String, createIfMissing: Bool, foldOnOpen: Bool) throws(CortexError) -> CoordinationStore {
        try open(root: root, createIfMissing: createIfMissing, etcd: nil, foldOnOpen: foldOnOpen)
    }

    static func open(root: String, createIfMissing: Bool, etcd: (any EtcdKV)?, foldOnOpen: Bool) throws(CortexError)
        -> CoordinationStore
    {
        let layout = CoordinationLayout(root: root)
        try SupportedFileSystem.check(layout.root)
        // config.json is written last when a layout is created: its absence means no layout.
        var configBytes = try readConfig(layout)
        if configBytes == nil {
            guard createIfMissing else {
                if try withPath("stat", layout.journal, { () throws(Errno) in try POSIX.status(layout.journal) }) != nil {
                    // A folder with a journal but no settings: never guess them (a silent default
                    // max_workers or segment size would change what every writer decides).
                    throw .configuration(
                        "\(layout.config) is missing: run 'cortex init --dir \(layout.root)' to write the default settings")
                }
                throw .notFound("no coordination folder at \(layout.root) (create it with 'cortex init --dir \(layout.root)')")
            }
            try createLayout(layout, config: CortexConfig(), permissions: FolderPermissions.detect(root: layout.root))
            configBytes = try readConfig(layout)
        }
        guard let configBytes else { throw .configuration("\(layout.config) vanished while the folder was created") }
        let config = try parseConfig(configBytes, layout)
        let permissions = FolderPermissions.detect(root: layout.root)
        let (journal, shared) = try config.backend.openJournal(
            layout: layout, permissions: permissions, segmentMaxBytes: config.segmentMaxBytes, etcd: etcd)
        let store = CoordinationStore(
            layout: layout, config: config, permissions: permissions, journal: journal, sharedJournal: shared, persistsFiles: true)
        let local = store.loadSnapshot()
        if !foldOnOpen, store.sharedJournal != nil {
            store.foldDeferred = true
            store.deferredFromLocalSnapshot = local
            store.concurrentSince = POSIX.wallClockMilliseconds()
            return store
        }
        try store.foldFromSnapshot(local: local)
        store.loadedSnapshotPosition = store.snapshotPosition
        return store
    }

    /// The liveness registry of the hosts sharing this folder's journal (decision 037), or nil
    /// for a journal no other host shares (one host: nothing to register).
    public var hostRegistry: (any HostRegistry)? { snapshotSharer?.hostRegistry }

    /// Empties the outbox of finished tasks once they are written under `state/finished/`.
    func clearFinishedOutbox() { state.tasks.finished.removeAll() }

    /// Readies this store for one more command in the same process (`cortex session`): forgets
    /// what the last command left (its warnings, its submitted record, the writers it saw) and
    /// folds what was appended since, so the next command sees what a fresh `open` would.
    /// - Returns: false, without folding, when the store should be opened again instead: another
    ///   snapshot replaced the one it loaded (a fresh open would start from that one), or this
    ///   store wrote one itself.
    public func readyForNextCommand() throws(CortexError) -> Bool {
        if persistsFiles {
            guard snapshotPosition == loadedSnapshotPosition, FileIdentity.of(layout.snapshot, in: layout.folder) == snapshotFileIdentity
            else { return false }
        }
        warnings = []
        tornAppends = 0
        lastSubmittedRecordID = nil
        sawConcurrentWriters = false
        foldEndsAtOwnAppend = false
        concurrentSince = Int64.max
        recordsSinceOpening = 0
        try catchUp()
        return true
    }

    /// Notes a problem met after this store's record reached the journal (see `warnings`).
    public func warn(_ message: String) { warnings.append(message) }

    /// True when records may have been appended since the last fold.
    public func journalMovedSinceFold() throws(CortexError) -> Bool {
        try journal.hasAppended(since: readExtent)
    }
}
