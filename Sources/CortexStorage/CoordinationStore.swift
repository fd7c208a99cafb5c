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
/// memory and never touches the disk.
public final class CoordinationStore {
    /// Paths of the folder's files.
    public let layout: CoordinationLayout
    /// Settings from `config.json`.
    public let config: CortexConfig
    /// How this folder's files are created (a group folder or not), from the root's mode.
    public let permissions: FolderPermissions
    /// The journal.
    public let journal: any Journal
    /// True when the snapshot, views and finished tasks are files in the folder (`open(root:)`);
    /// false for a store over a journal alone, which writes and reads no file.
    public let persistsFiles: Bool
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
    /// Snapshots this store did not trust when it loaded (checksum mismatch, unreadable), with
    /// why; it folded from the checkpoint or the journal's beginning instead.
    public private(set) var rejectedSnapshots: [String] = []
    /// True when the loaded snapshot's checksum was not computed again: its marker named that very
    /// file as verified (`state/snapshot.verified`, decision 042).
    public private(set) var checksumPassSkipped = false
    /// How far the last fold saw the journal (`JournalRead.extent`), for `journalMovedSinceFold`.
    private var readExtent = JournalPosition.start
    private var snapshotPosition: JournalPosition?
    /// `snapshotPosition` as `open` left it (`readyForNextCommand`: has this store written one since?).
    private var loadedSnapshotPosition: JournalPosition?
    /// Which `state/snapshot.json` this store loaded or wrote (inode and change time), to see
    /// whether another process has written a newer one since.
    private var snapshotFileIdentity: FileIdentity?
    /// True once this store submitted a record whose number in the journal is a multiple of
    /// `snapshotEveryRecords`: its turn to write the snapshot.
    private var holdsSnapshotDuty = false
    /// The id of the last record folded, and of the last record this store submitted.
    private var lastFoldedRecordID: String?
    /// Where the last record folded starts.
    private var lastFoldedRecordPosition: JournalPosition?
    /// A shared journal's snapshot is believed only if its last record is the first one the
    /// fold meets again (its id at its position): set by `loadSnapshot`, checked by the fold.
    private var pendingSnapshotCheck: (id: String, position: JournalPosition)?
    /// True when the fold met another record than `pendingSnapshotCheck` names.
    private var snapshotMismatched = false
    /// The bytes of the snapshot loaded from etcd, kept as the local snapshot once the fold
    /// confirms them (`cacheStoredSnapshot`).
    private var storedSnapshotToCache: [UInt8]?
    /// True when the last fold was an etcd append's own read (`appendThenRead`).
    private var foldEndsAtOwnAppend = false
    /// An etcd folder's store opened with `foldOnOpen: false` that has not folded yet: its
    /// first `submit` folds in the append's transaction, its first `catchUp` as `open` would.
    private var foldDeferred = false
    /// Whether the deferred fold starts from the folder's own snapshot.
    private var deferredFromLocalSnapshot = false
    /// Other writers' records written (by their clocks) after this store opened with its fold
    /// deferred: were others busy meanwhile (`sawConcurrentWriters`)? `Int64.max`: not counted.
    private var concurrentSince = Int64.max
    private var recordsSinceOpening = 0
    /// True once `auditSigner` has looked for the writer's key; `signer` is what it found.
    private var signerLookedUp = false
    private var signer: SigningKey?
    /// The revision of this store's last append to an etcd journal.
    private var lastAppendedRevision: Int64?
    private var lastSubmittedRecordID: String?
    /// True when other writers' records landed between this store's first fold and its own
    /// record: the journal is busy, and a later writer is likely to publish the views.
    private var sawConcurrentWriters = false
    /// Problems met after a record of this store reached the journal (a view, snapshot or
    /// `fdatasync` that failed). They do not change the record's outcome, which is what the
    /// command reports; the command-line layer prints each as one line on stderr
    /// (docs/decisions/021-outcome-is-the-truth.md).
    public private(set) var warnings: [String] = []
    /// Set by a long-lived process (`cortex session`): `publish` and `writeSnapshotAfterReading`
    /// hand the fold to it, to be written off the request path and coalesced, instead of writing
    /// the views and the snapshot before returning (docs/decisions/005-dispatch-io.md).
    public var backgroundPublisher: BackgroundPublisher?

    private init(
        layout: CoordinationLayout, config: CortexConfig, permissions: FolderPermissions, journal: any Journal, persistsFiles: Bool
    ) {
        self.layout = layout
        self.config = config
        self.permissions = permissions
        self.journal = journal
        self.persistsFiles = persistsFiles
    }

    /// A store over `journal` alone, folded to its end: no snapshot is loaded or written, no view
    /// published, finished tasks stay in memory; nothing is read from or written to `layout`
    /// (whose root, by default, cannot even be created). For tests and embedding programs.
    public static func over(
        _ journal: any Journal, config: CortexConfig = CortexConfig(),
        layout: CoordinationLayout = CoordinationLayout(root: "/dev/null/cortex-journal-only")
    ) throws(CortexError) -> CoordinationStore {
        let store = CoordinationStore(
            layout: layout, config: config, permissions: .personal, journal: journal, persistsFiles: false)
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
        let journal: any Journal
        switch config.backend {
        case .file:
            journal = FileJournal(
                folder: layout.folder, directory: layout.journal, permissions: permissions, segmentMaxBytes: config.segmentMaxBytes)
        case .etcd(let settings):
            if let etcd {
                journal = try EtcdJournal(kv: etcd, namespace: settings.namespace)
            } else {
                journal = try etcdJournal(settings)
            }
        }
        let store = CoordinationStore(layout: layout, config: config, permissions: permissions, journal: journal, persistsFiles: true)
        let local = store.loadSnapshot()
        if !foldOnOpen, journal is EtcdJournal {
            store.foldDeferred = true
            store.deferredFromLocalSnapshot = local
            store.concurrentSince = POSIX.wallClockMilliseconds()
            return store
        }
        try store.foldFromSnapshot(local: local)
        store.loadedSnapshotPosition = store.snapshotPosition
        return store
    }

    /// Folds the journal past the snapshot loaded (`local`: the folder's own was), falling back
    /// when the journal does not confirm it. For an etcd folder the fallback is the snapshot
    /// stored in etcd (docs/decisions/035), asked for only when the fold meets a compaction or
    /// contradicts the local snapshot: a folder without a snapshot folds from the beginning
    /// first, which costs no extra round trip while the namespace is young and reads at most the
    /// records compaction left (one or two snapshot intervals) once it is not. Then the
    /// journal's beginning. `storedFirst`: the caller knows the journal was compacted past it,
    /// so the stored snapshot is loaded before any fold.
    /// - Returns: the outcome of the record `watchedID` when the fold met it.
    @discardableResult
    /// `storedAt`: the stored snapshot as it was at that revision (the snapshot before a record
    /// whose outcome is wanted: a later one may already cover the record).
    private func foldFromSnapshot(
        local: Bool, storedFirst: Bool = false, storedAt: Int64? = nil, watchingFor watchedID: String? = nil
    ) throws(CortexError) -> Outcome? {
        let shared = persistsFiles ? journal as? EtcdJournal : nil
        var triedStored = shared == nil
        var believing = local
        if storedFirst, !local, let shared {
            triedStored = true
            believing = loadStoredSnapshot(shared, atRevision: storedAt)
        }
        while true {
            do {
                let outcome = try foldForward(watchingFor: watchedID)
                // Not one record at or after the snapshot's last: the namespace was emptied or replaced.
                if pendingSnapshotCheck == nil {
                    cacheStoredSnapshot()
                    return outcome
                }
            } catch {
                guard snapshotMismatched || (shared != nil && EtcdJournal.isCompaction(error) && (believing || !triedStored)) else {
                    throw error
                }
            }
            forgetSnapshot()
            believing = false
            if !triedStored, let shared {
                triedStored = true
                believing = loadStoredSnapshot(shared, atRevision: storedAt)
            }
        }
    }

    /// Where the journal of the folder at `root` lives, from its `config.json` (the file backend
    /// when there is none yet).
    /// - Throws: `configuration` for a bad `config.json`, `io` when it cannot be read.
    public static func journalBackend(root: String) throws(CortexError) -> JournalBackend {
        let layout = CoordinationLayout(root: root)
        guard let bytes = try readConfig(layout) else { return .file }
        return try parseConfig(bytes, layout).backend
    }

    /// The journal a folder over etcd shares with other hosts (its records under the namespace).
    /// - Throws: `configuration` for bad settings.
    public static func etcdJournal(_ settings: EtcdSettings) throws(CortexError) -> EtcdJournal {
        try EtcdJournal(kv: etcdClient(settings), namespace: settings.namespace)
    }

    /// The liveness registry of the hosts sharing this folder's journal (decision 037), or nil
    /// for a folder of files (one host: nothing to register).
    public var hostRegistry: (any HostRegistry)? {
        guard case .etcd(let settings) = config.backend, let client = (journal as? EtcdJournal)?.kv as? EtcdClient else {
            return nil
        }
        return EtcdHostRegistry(client: client, namespace: settings.namespace)
    }

    /// The client `settings` describe: plain or TLS members (`ca_file`, `cert_file`, `key_file`),
    /// and an etcd user whose password is read from `password_file` (decision 034).
    /// - Throws: `configuration` for TLS files or a password file that cannot be used.
    public static func etcdClient(_ settings: EtcdSettings) throws(CortexError) -> EtcdClient {
        let tls = settings.caFile.map { EtcdTLSFiles(caFile: $0, certificateFile: settings.certificateFile, keyFile: settings.keyFile) }
        var password: String?
        if let file = settings.passwordFile {
            let bytes = try withPath("read the etcd password file", file) { () throws(Errno) in
                try POSIX.readFile(file, limit: FileLimits.smallFile)
            }
            password = String(decoding: bytes, as: UTF8.self).trimmingTrailingNewlines
        }
        // `etcd_timeout` bounds a whole operation; one attempt gets a half (one member) or a
        // third (more) of it, 0.5 s to 5 s, so a silent member leaves time to try others (decision 030).
        let total = settings.timeoutMilliseconds
        let share = Int64(min(3, max(2, settings.endpoints.count)))
        return try EtcdClient(
            endpoints: settings.endpoints, tls: tls, username: settings.user, password: password,
            timeoutMilliseconds: min(5000, max(500, total / share)), operationTimeoutMilliseconds: total)
    }

    /// The journal of an existing coordination folder, for readers that need no state (verify, tail).
    /// - Throws: `configuration` on an unsupported file system, `notFound` when there is no journal.
    public static func existingJournal(root: String) throws(CortexError) -> FileJournal {
        let layout = CoordinationLayout(root: root)
        try SupportedFileSystem.check(layout.root)
        if case .etcd(let settings) = try journalBackend(root: root) {
            throw .configuration(
                "\(layout.root)'s journal is on etcd (namespace '\(settings.namespace)'): this command reads a journal of files only")
        }
        guard try withPath("stat", layout.journal, { () throws(Errno) in try layout.folder.status(layout.journal) }) != nil else {
            throw .notFound("no journal at \(layout.journal) (create it with 'cortex init --dir \(layout.root)')")
        }
        return FileJournal(folder: layout.folder, directory: layout.journal, permissions: FolderPermissions.detect(root: layout.root))
    }

    /// Creates the folders, the first segment and `config.json` if they are missing, with the
    /// modes `permissions` gives (the root's own when it already exists). Safe to run from many
    /// processes at once: every step either creates or finds the thing already there.
    public static func createLayout(
        _ layout: CoordinationLayout, config: CortexConfig, permissions: FolderPermissions = .personal
    ) throws(CortexError) {
        try SupportedFileSystem.check(layout.root)
        try makeDirectories(layout.root, mode: permissions.directory(.shared))
        let folders: [(String, FolderPermissions.Content)] = [
            (layout.stateFolder, .shared), (layout.finishedTasks, .shared),
            (layout.workers, .private), (layout.results, .private), (layout.contexts, .private),
            (layout.requests, .private),
        ]
        // An etcd folder has no journal of its own: no journal/ for file-only readers to find.
        let journalFolders: [(String, FolderPermissions.Content)] =
            config.backend == .file ? [(layout.journal, .shared), (layout.archive, .shared)] : []
        for (folder, content) in journalFolders + folders {
            try Files.makeDirectory(folder, in: layout.folder, mode: permissions.directory(content))
        }
        if config.backend == .file {
            let journal = FileJournal(folder: layout.folder, directory: layout.journal, permissions: permissions)
            try journal.createSegment(1)
            try journal.createDoorbell()
        }
        try AtomicFile.createIfAbsent(
            layout.config, in: layout.folder, with: config.json.prettySerialized(), mode: permissions.file(.shared))
    }

    /// `mkdir -p`: the parents under the umask, the last folder with `mode`.
    private static func makeDirectories(_ path: String, mode: CreationMode) throws(CortexError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        let components = path.split(separator: "/").filter { $0 != "." }
        for (index, component) in components.enumerated() {
            prefix += "/" + component
            // The user's path to the folder may pass through links (their choice): each level is
            // made in the folder that holds it, as the path names it.
            let (parent, name) = FolderDescriptor.containing(prefix)
            try Files.makeDirectory(name, in: parent, mode: index == components.count - 1 ? mode : .masked(0o777))
        }
    }

    /// The folder's `config.json` as it is now, or nil when the folder has none.
    /// - Throws: `configuration` for a file that is not valid, an I/O error.
    public static func existingConfig(root: String) throws(CortexError) -> CortexConfig? {
        let layout = CoordinationLayout(root: root)
        guard let bytes = try readConfig(layout) else { return nil }
        return try parseConfig(bytes, layout)
    }

    /// `config.json`'s bytes, or nil when it does not exist (one read, no separate stat). A link,
    /// a FIFO or a file over `FileLimits.config` is refused.
    private static func readConfig(_ layout: CoordinationLayout) throws(CortexError) -> [UInt8]? {
        do {
            return try layout.folder.readFile(layout.config, limit: FileLimits.config)
        } catch {
            if error == .noSuchFileOrDirectory { return nil }
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
    private func loadSnapshot() -> Bool {
        // The checkpoint is an older snapshot kept under a second name by the reaper (compactJournal).
        // A snapshot failing its checksum (or its limits) is not used: the checkpoint, then the
        // journal from its beginning, give the same state (docs/decisions/018).
        func load(_ path: String, mapped: ImmutableBytes?) -> (CortexState, JournalPosition)? {
            guard let mapped, mapped.buffer.count > 0 else { return nil }
            // The snapshot's checksum is verified once per file, not by every call (decision 042).
            let verifiedBefore = path == layout.snapshot && VerifiedSnapshot.matches(mapped, layout: layout)
            if let decoded = SnapshotCodec.decode(mapped, checksumVerified: verifiedBefore) {
                checksumPassSkipped = verifiedBefore
                if path == layout.snapshot, !verifiedBefore {
                    VerifiedSnapshot.record(mapped, layout: layout, mode: permissions.file(.shared))
                }
                return decoded
            }
            let why = SnapshotCodec.integrity(mapped) == .mismatch ? "checksum mismatch" : "unreadable"
            rejectedSnapshots.append("\(path): \(why)")
            return nil
        }
        let mapped = ImmutableBytes.map(layout.snapshot, in: layout.folder)
        snapshotFileIdentity = mapped?.fileIdentity
        guard case .etcd(let settings) = config.backend else {
            // A snapshot of a shared journal is never this folder's own journal's.
            let ownJournal = { (bytes: ImmutableBytes?) in bytes.map { SnapshotCodec.journalIdentity($0) == nil } ?? false }
            let checkpoint = ImmutableBytes.map(layout.checkpoint, in: layout.folder)
            let decoded =
                (ownJournal(mapped) ? load(layout.snapshot, mapped: mapped) : nil)
                ?? (ownJournal(checkpoint) ? load(layout.checkpoint, mapped: checkpoint) : nil)
            guard let (snapshotState, snapshotPosition) = decoded else { return false }
            state = snapshotState
            position = snapshotPosition
            self.snapshotPosition = snapshotPosition
            return true
        }
        // A shared journal's snapshot: believed only for this namespace, and only if the fold
        // from its last record meets that record first (checked in foldForward).
        guard let mapped else { return false }
        return believeShared(mapped, namespace: settings.namespace) { load(layout.snapshot, mapped: mapped) }
    }

    /// Starts from a shared journal's snapshot (`bytes`) when it names `namespace` and its last
    /// record and `decode` reads it; the fold then checks that record (foldForward).
    private func believeShared(_ bytes: ImmutableBytes, namespace: String, decode: () -> (CortexState, JournalPosition)?) -> Bool {
        guard let identity = SnapshotCodec.journalIdentity(bytes),
            identity["backend"]?.stringValue == "etcd", identity["namespace"]?.stringValue == namespace,
            let lastID = identity["last_record"]?.stringValue,
            let lastPosition = identity["last_position"].flatMap(JournalPosition.init(json:)),
            (try? EtcdJournal.revision(of: lastPosition)) != nil,
            let (snapshotState, snapshotPosition) = decode()
        else { return false }
        state = snapshotState
        position = lastPosition
        self.snapshotPosition = snapshotPosition
        pendingSnapshotCheck = (lastID, lastPosition)
        return true
    }

    /// Starts from the snapshot stored in etcd, checked as a local one is (decision 033): its
    /// namespace, its checksum, then its last record met first by the fold. A value that fails,
    /// or a cluster that does not answer, is not used (the fold starts from the beginning).
    /// - Returns: true when the snapshot was loaded (the fold still has to confirm it).
    private func loadStoredSnapshot(_ shared: EtcdJournal, atRevision revision: Int64? = nil) -> Bool {
        guard let stored = try? shared.storedSnapshot(atRevision: revision), !stored.isEmpty else { return false }
        let bytes = ImmutableBytes(stored)
        let believed = believeShared(bytes, namespace: shared.namespace) {
            if let decoded = SnapshotCodec.decode(bytes) { return decoded }
            rejectedSnapshots.append("the snapshot in etcd (\(shared.namespace)): unreadable or checksum mismatch")
            return nil
        }
        if believed { storedSnapshotToCache = stored }
        return believed
    }

    /// Once the fold confirmed the snapshot loaded from etcd: keeps it as this folder's
    /// `state/snapshot.json` (the next call starts from it without asking etcd) and writes the
    /// finished tasks stored with snapshots that this folder lacks under `state/finished/`.
    /// Failures only cost the next call the same work: nothing is reported.
    private func cacheStoredSnapshot() {
        guard let stored = storedSnapshotToCache, let shared = journal as? EtcdJournal else { return }
        storedSnapshotToCache = nil
        if let files = try? shared.storedFinishedTasks(), !files.isEmpty,
            (try? Files.makeDirectory(layout.finishedTasks, in: layout.folder, mode: permissions.directory(.shared))) != nil
        {
            for file in files where CoordinationStore.isFinishedTasksFileName(file.name) {
                let path = layout.finishedTasks + "/" + file.name
                guard (try? layout.folder.status(path)) == nil else { continue }
                try? AtomicFile.replace(path, in: layout.folder, with: file.lines, durability: .powerLoss, mode: permissions.file(.shared))
            }
        }
        do {
            try AtomicFile.replace(
                layout.snapshot, in: layout.folder, with: stored, durability: .powerLoss, mode: permissions.file(.shared))
            snapshotFileIdentity = FileIdentity.of(layout.snapshot, in: layout.folder)
        } catch {}
    }

    /// A name a finished tasks file stored in etcd may have here: letters, digits, `.`, `_`, `-`,
    /// not starting with `.`, ending `.jsonl` (a hostile name cannot leave `state/finished/`).
    static func isFinishedTasksFileName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        return bytes.count <= 128 && name.hasSuffix(".jsonl") && bytes.first != UInt8(ascii: ".")
            && bytes.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == 0x2E || byte == 0x5F || byte == 0x2D
            }
    }

    /// Drops a snapshot the journal does not confirm: the fold starts again from the beginning.
    private func forgetSnapshot() {
        state = CortexState()
        position = .start
        snapshotPosition = nil
        pendingSnapshotCheck = nil
        snapshotMismatched = false
        storedSnapshotToCache = nil
        recordsSinceSnapshot = 0
        damagedLines = []
        lastFoldedRecordID = nil
        lastFoldedRecordPosition = nil
    }

    /// Which journal a snapshot of this store's fold covers: nil for the folder's own journal;
    /// for a shared one, the backend, namespace and last record (nil when none was folded).
    private var snapshotJournalIdentity: JSONValue? {
        guard case .etcd(let settings) = config.backend, let id = lastFoldedRecordID, let at = lastFoldedRecordPosition else {
            return nil
        }
        return .object([
            JSONMember("backend", "etcd"), JSONMember("last_position", at.json), JSONMember("last_record", .string(id)),
            JSONMember("namespace", .string(settings.namespace)),
        ])
    }

    /// Empties the outbox of finished tasks once they are written under `state/finished/`.
    func clearFinishedOutbox() { state.tasks.finished.removeAll() }

    /// Folds every record appended since the last fold.
    /// On an etcd folder, a fold that finds the records after its position deleted by a
    /// compaction starts again from the snapshot stored in etcd (docs/decisions/035).
    public func catchUp() throws(CortexError) {
        if foldDeferred {
            foldDeferred = false
            try foldFromSnapshot(local: deferredFromLocalSnapshot)
            return
        }
        do {
            _ = try foldForward(watchingFor: nil)
        } catch {
            guard persistsFiles, EtcdJournal.isCompaction(error) else { throw error }
            forgetSnapshot()
            try foldFromSnapshot(local: false, storedFirst: true)
        }
    }

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

    /// Folds to the end of the journal; returns the outcome of the record with id `watchedID` if it was folded.
    private func foldForward(watchingFor watchedID: String?) throws(CortexError) -> Outcome? {
        try foldForward(watchingFor: watchedID, appending: nil).outcome
    }

    /// Folds to the end of the journal, or, with `line` on an etcd journal, appends it and folds
    /// through it in the same round trip (`EtcdJournal.appendThenRead`, docs/decisions/035).
    /// Returns the outcome of the record with id `watchedID` if it was folded, and the append.
    private func foldForward(watchingFor watchedID: String?, appending line: [UInt8]?) throws(CortexError) -> (
        outcome: Outcome?, appended: JournalAppend?
    ) {
        var watchedOutcome: Outcome?
        var acknowledged = Set<JournalPosition>()
        let visit = { (record: Record, recordPosition: JournalPosition) throws(CortexError) in
            if let check = self.pendingSnapshotCheck {
                self.pendingSnapshotCheck = nil
                // The snapshot's last record, already in its state: confirmed, not folded again.
                if record.id == check.id && recordPosition == check.position {
                    self.lastFoldedRecordID = check.id
                    self.lastFoldedRecordPosition = check.position
                    return
                }
                self.snapshotMismatched = true
                throw CortexError.corrupt("the snapshot's last record is not at its position in the journal")
            }
            self.lastFoldedRecordPosition = recordPosition
            if record.timeMilliseconds > self.concurrentSince, record.id != watchedID { self.recordsSinceOpening += 1 }
            let outcome = Reducer.reduce(&self.state, record, at: recordPosition)
            if watchedOutcome == nil, record.id == watchedID {
                watchedOutcome = outcome
                // Every snapshotEveryRecords-th record of the journal makes its writer the one
                // to write the next snapshot (see publish).
                if self.state.recordsFolded % Int64(self.config.snapshotEveryRecords) == 0 { self.holdsSnapshotDuty = true }
            }
            self.lastFoldedRecordID = record.id
            if record.kind == JournalVerifier.acknowledgementKind {
                acknowledged.formUnion(JournalVerifier.acknowledgedPositions(record))
            }
        }
        let summary: JournalRead
        var appended: JournalAppend?
        if let line, let shared = journal as? EtcdJournal {
            let (append, read) = try shared.appendThenRead(
                line, from: position, appended: { self.lastAppendedRevision = $0.position.offset }, visit: visit)
            appended = append
            summary = read
        } else {
            summary = try journal.readForward(from: position, visit: visit)
        }
        foldEndsAtOwnAppend = appended != nil
        position = summary.end
        readExtent = summary.extent
        recordsSinceSnapshot += summary.recordsRead
        damagedLines += summary.damaged
        // Damage `cortex verify --acknowledge` recorded as known and harmless is not reported again.
        if !acknowledged.isEmpty { damagedLines.removeAll { acknowledged.contains($0.position) } }
        return (watchedOutcome, appended)
    }

    /// A record that reached the journal and the outcome the fold gave it.
    public struct Submission: Sendable {
        /// The record as written.
        public var record: Record
        /// What the fold decided for it.
        public var outcome: Outcome
    }

    /// Appends `event` as a record and returns the outcome the fold gives it: the same outcome
    /// every other process folding the journal will give it (docs/design.md, "Writer").
    public func submit(_ event: Event) throws(CortexError) -> Submission {
        try submit(kind: event.kind, data: event.data)
    }

    /// Appends a record of `kind` with `data`, as `submit(_:)` does for an event. For records the
    /// reducer does not fold (an acknowledgement of damage): their outcome is `ignored`.
    public func submit(kind: String, data: JSONValue) throws(CortexError) -> Submission {
        // The key first: registering it appends its own record, which comes before this one.
        let signer = try auditSigner()
        let record = Record(id: Record.newID(), timeMilliseconds: POSIX.wallClockMilliseconds(), kind: kind, data: data)
        let line = try RecordCodec.encode(record, signer: signer)
        var attempts = 0
        while true {
            attempts += 1
            guard attempts <= 16 else {
                throw .corrupt("could not append record \(record.id) after \(attempts - 1) attempts (journal \(layout.journal))")
            }
            let foldedBefore = state.recordsFolded
            if journal is EtcdJournal {
                // One round trip: the append and the fold through it (etcd acknowledges durable records).
                let outcome = try appendAndFold(record, line)
                let others = concurrentSince == Int64.max ? state.recordsFolded - foldedBefore - 1 : Int64(recordsSinceOpening)
                if others > 0 { sawConcurrentWriters = true }
                lastSubmittedRecordID = record.id
                return Submission(record: record, outcome: outcome)
            }
            // Short writes and rotation are the journal's business (FileJournal.append).
            let appended = try journal.append(line, tail: position)
            tornAppends += appended.tornAttempts
            attempts += appended.tornAttempts
            if config.syncAppends {
                // The record is in the journal: every other process already folds it. A failed
                // flush cannot take it back, so the caller still gets its outcome, with a warning.
                do { try journal.makeDurable(from: appended.position, through: appended.position) } catch {
                    warn(
                        "record \(record.id) is in the journal but was not flushed to disk (\(error.description)); it may not survive a power loss"
                    )
                }
            }
            if let outcome = try foldForward(watchingFor: record.id) {
                if state.recordsFolded - foldedBefore > 1 { sawConcurrentWriters = true }
                for warning in appended.warnings { warn(warning) }
                lastSubmittedRecordID = record.id
                return Submission(record: record, outcome: outcome)
            }
            guard journal.isVoid(appended.position, readTo: position) else {
                throw .corrupt("record \(record.id) appended at \(appended.position) was not found by the fold")
            }
            // The fold went past our record without meeting it (a seal landed first): it is void. Append it again.
        }
    }

    /// The key this store signs its records with (docs/decisions/044-signed-journal.md): the
    /// writer's own, in a folder whose `config.json` says `audit`; nil otherwise, or when the user
    /// has no usable place for a key (the records then go unsigned and `cortex verify --audit`
    /// names them). Looked up once per store (the key itself once per process); the first time,
    /// a key not yet registered in this folder is (`AuditKeys.register`) and its `audit.key`
    /// record appended before the record being signed.
    private func auditSigner() throws(CortexError) -> SigningKey? {
        guard config.audit, persistsFiles else { return nil }
        if signerLookedUp { return signer }
        let key = SigningKeyFile.currentUser()
        signerLookedUp = true
        signer = key
        guard let key else { return nil }
        if try AuditKeys.register(key, in: layout, permissions: permissions) {
            _ = try submit(
                kind: Record.auditKeyKind,
                data: .object([
                    "key": .string(key.keyFingerprint), "public": .string(Hex.encode(key.publicKey)),
                    "uid": .int(Int64(POSIX.effectiveUserID)),
                ]))
        }
        return key
    }

    /// Appends `record` to an etcd journal and folds through it in the append's transaction.
    /// After a deferred open the fold also checks the snapshot; when the journal contradicts it
    /// or was compacted past it, the record is in, and the store folds again from the stored
    /// snapshot or the beginning (as `open` would) to learn the record's outcome.
    private func appendAndFold(_ record: Record, _ line: [UInt8]) throws(CortexError) -> Outcome {
        let deferred = foldDeferred
        foldDeferred = false
        var found: Outcome?
        var compacted = false
        do {
            let (outcome, appended) = try foldForward(watchingFor: record.id, appending: line)
            if appended != nil, pendingSnapshotCheck == nil { found = outcome }
        } catch {
            compacted = EtcdJournal.isCompaction(error)
            guard deferred, snapshotMismatched || compacted else { throw error }
        }
        if found == nil, deferred {
            // The stored snapshot as it was when the record went in: one stored since may cover
            // the record, and its outcome is learnt only by folding it. The records after that
            // older snapshot's last one are kept (compaction runs one snapshot behind).
            forgetSnapshot()
            found = try foldFromSnapshot(local: false, storedFirst: compacted, storedAt: lastAppendedRevision, watchingFor: record.id)
        }
        guard let found else {
            throw .corrupt("record \(record.id) was appended to the etcd journal but not found by the fold")
        }
        return found
    }

    /// `publish`, for a command whose record is already in the journal: a failure (a full disk,
    /// an unwritable view) becomes a warning that the views are stale, never an error, because
    /// the record's outcome stands whatever happens to the derived files. The next writer or
    /// reaper run republishes them.
    public func publishAfterRecording(nowMilliseconds: Int64 = POSIX.wallClockMilliseconds()) {
        do { try publish(nowMilliseconds: nowMilliseconds) } catch {
            warn("the views are stale: \(error.description) (the record is in the journal; the next writer republishes them)")
        }
    }

    /// Notes a problem met after this store's record reached the journal (see `warnings`).
    public func warn(_ message: String) { warnings.append(message) }

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
    /// A store without files (`persistsFiles` false) publishes nothing. A store with a
    /// `backgroundPublisher` (a session) hands its fold to it instead and returns at once.
    public func publish(nowMilliseconds: Int64 = POSIX.wallClockMilliseconds()) throws(CortexError) {
        guard persistsFiles else { return }
        if let publisher = backgroundPublisher {
            try offerPublication(to: publisher, nowMilliseconds: nowMilliseconds)
            return
        }
        // After an etcd append read in its own transaction, the fold is as fresh as another
        // round trip would make it: a later record's writer publishes what this one misses.
        if !foldEndsAtOwnAppend, try journalMovedSinceFold() { try catchUp() }
        try writeSnapshotIfDue(nowMilliseconds: nowMilliseconds)
        if let submitted = lastSubmittedRecordID, lastFoldedRecordID != submitted { return }
        if lastSubmittedRecordID != nil && sawConcurrentWriters {
            POSIX.sleep(microseconds: CoordinationStore.contendedPublishDelayMicroseconds)
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
        guard snapshotIsDue else { return }
        try writeSnapshot(nowMilliseconds: nowMilliseconds)
    }

    /// True when this store's turn to write the snapshot came (see `writeSnapshotIfDue`).
    private var snapshotIsDue: Bool {
        let every = config.snapshotEveryRecords
        guard recordsSinceSnapshot >= every, holdsSnapshotDuty || recordsSinceSnapshot >= 4 * every else { return false }
        return FileIdentity.of(layout.snapshot, in: layout.folder) == snapshotFileIdentity
    }

    /// `publish` for a store with a `backgroundPublisher`: hands it this fold's views, and the
    /// snapshot when one is due, and returns without writing them. What must precede a snapshot
    /// is done here, in order: the journal up to it made durable and the finished tasks compacted
    /// (a durable file, and the outbox emptied); the snapshot's own bytes are encoded and written
    /// by the publisher. An etcd folder's snapshot, which is also stored in etcd, is written here.
    private func offerPublication(to publisher: BackgroundPublisher, nowMilliseconds: Int64) throws(CortexError) {
        let mode = permissions.file(.shared)
        var snapshot: BackgroundPublisher.SnapshotJob?
        if journal is EtcdJournal {
            try writeSnapshotIfDue(nowMilliseconds: nowMilliseconds)
        } else if snapshotIsDue {
            snapshot = try prepareBackgroundSnapshot(nowMilliseconds: nowMilliseconds)
        }
        publisher.offer(
            views: .init(state: state, config: config, layout: layout, mode: mode, nowMilliseconds: nowMilliseconds), snapshot: snapshot)
    }

    /// Makes the journal durable up to this fold and compacts the finished tasks, then takes the
    /// snapshot's turn as `writeSnapshot` does; returns what the publisher is to write.
    private func prepareBackgroundSnapshot(nowMilliseconds: Int64) throws(CortexError) -> BackgroundPublisher.SnapshotJob {
        try journal.makeDurable(from: snapshotPosition ?? .start, through: position)
        try compactFinishedTasks()
        holdsSnapshotDuty = false
        snapshotPosition = position
        recordsSinceSnapshot = 0
        return .init(state: state, position: position, layout: layout, mode: permissions.file(.shared), nowMilliseconds: nowMilliseconds)
    }

    /// For a command that only read: writes a snapshot when its fold went far past the last one
    /// (`4 × snapshot_every_records`, the lag at which any writer writes one whatever the turn),
    /// so the next reader does not repeat the long fold while no writer comes. Silent when it
    /// cannot (a reader may not be allowed to write the folder): the snapshot is only a cache.
    public func writeSnapshotAfterReading(nowMilliseconds: Int64 = POSIX.wallClockMilliseconds()) {
        guard persistsFiles, lastSubmittedRecordID == nil, recordsSinceSnapshot >= 4 * config.snapshotEveryRecords else { return }
        guard FileIdentity.of(layout.snapshot, in: layout.folder) == snapshotFileIdentity else { return }
        if let publisher = backgroundPublisher, !(journal is EtcdJournal) {
            if let snapshot = try? prepareBackgroundSnapshot(nowMilliseconds: nowMilliseconds) { publisher.offer(snapshot: snapshot) }
            return
        }
        try? writeSnapshot(nowMilliseconds: nowMilliseconds)
    }

    /// Writes `state/snapshot.json` for the current fold. The journal up to the snapshot's position
    /// is `fdatasync`ed first, so a snapshot is never ahead of durable journal data. Tasks that
    /// finished since the last snapshot are compacted first into one durable file under
    /// `state/finished/`, so the snapshot (loaded by every call) holds only live work.
    /// A store without files writes nothing (its finished tasks stay in memory).
    public func writeSnapshot(nowMilliseconds: Int64 = POSIX.wallClockMilliseconds()) throws(CortexError) {
        guard persistsFiles else { return }
        let journalIdentity = snapshotJournalIdentity
        if case .etcd = config.backend, journalIdentity == nil { return }  // nothing folded yet: nothing to check it by
        try journal.makeDurable(from: snapshotPosition ?? .start, through: position)
        let finished = try compactFinishedTasks()
        let snapshot = SnapshotCodec.encode(
            state, position: position, writtenAtMilliseconds: nowMilliseconds, journal: journalIdentity)
        try AtomicFile.replace(layout.snapshot, in: layout.folder, with: snapshot, durability: .powerLoss, mode: permissions.file(.shared))
        snapshotFileIdentity = FileIdentity.of(layout.snapshot, in: layout.folder)
        // Written and checksummed here: the next loads need not verify it again.
        VerifiedSnapshot.recordWritten(snapshot, layout: layout, mode: permissions.file(.shared))
        if let shared = journal as? EtcdJournal, let last = lastFoldedRecordPosition {
            // Stored in etcd for every host, then the records below the previous stored snapshot
            // deleted (docs/decisions/035). Every record it covers is acknowledged, so durable.
            do { _ = try shared.storeSnapshot(snapshot, lastRecord: last, finished: finished) } catch {
                warn("the snapshot was written here but not stored in etcd: \(error.description)")
            }
        }
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
    ///
    /// `token-allocations.json` grows with the outstanding allocations, so above
    /// `Views.allocationsAlwaysListed` of them it is rewritten at most once per
    /// `Views.allocationsViewIntervalMilliseconds` (its modification time says when it was last),
    /// unless `everyList` (the reaper's run, an idle session) asks for it to be brought up to date.
    public func publishViews(nowMilliseconds: Int64 = POSIX.wallClockMilliseconds(), everyList: Bool = false) throws(CortexError) {
        guard persistsFiles else { return }
        for _ in 0..<8 {
            var regressed = false
            let views = CoordinationStore.views(of: state, config: config, layout: layout, nowMilliseconds: nowMilliseconds)
            for view in views {
                let (path, coverage, render, tailBytes) = (view.path, view.coverage, view.render, view.tailBytes)
                if let onDisk = AtomicFile.tail(of: path, in: layout.folder, bytes: tailBytes).flatMap(Views.coverage(inTail:)),
                    onDisk >= coverage
                {
                    continue
                }
                if view.isRateLimited, !everyList, !allocationsViewDue(nowMilliseconds: nowMilliseconds) { continue }
                let rendered = render().prettySerialized()
                switch try AtomicFile.exchange(
                    path, in: layout.folder, with: rendered, mode: permissions.file(.shared), tailBytes: tailBytes)
                {
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

    /// Whether a stale `token-allocations.json` is rewritten now: always while it is small, else
    /// once its last write is `Views.allocationsViewIntervalMilliseconds` old (or from the future:
    /// a clock set back never stops it for long).
    private func allocationsViewDue(nowMilliseconds: Int64) -> Bool {
        CoordinationStore.allocationsViewDue(state, layout: layout, nowMilliseconds: nowMilliseconds)
    }

    /// `allocationsViewDue` for any fold (the `BackgroundPublisher` asks it too).
    public static func allocationsViewDue(_ state: CortexState, layout: CoordinationLayout, nowMilliseconds: Int64) -> Bool {
        guard state.budget.allocations.count > Views.allocationsAlwaysListed,
            let written = layout.folder.modificationMilliseconds(layout.folder.relativeName(layout.allocationsView))
        else { return true }
        let age = nowMilliseconds - written
        return age >= Views.allocationsViewIntervalMilliseconds || age < 0
    }

    /// One view file: where it goes, its `version` for this fold, and how to render it.
    public struct ViewRendering {
        /// The view's path in the folder.
        public var path: String
        /// The view's `version` (records of its kind folded).
        public var coverage: Int64
        /// How many of the file's last bytes hold its `version` (`Views.tailBytes(forWorkerView:)`).
        public var tailBytes = 4096
        /// True for `token-allocations.json`, written at a bounded rate once long (decision 042).
        public var isRateLimited = false
        /// Renders the view.
        public var render: () -> JSONValue
    }

    /// The views of `state` (the one list, for `publishViews` and the `BackgroundPublisher`).
    public static func views(of state: CortexState, config: CortexConfig, layout: CoordinationLayout, nowMilliseconds: Int64)
        -> [ViewRendering]
    {
        [
            ViewRendering(path: layout.budgetView, coverage: state.budget.version) {
                Views.budget(state, nowMilliseconds: nowMilliseconds)
            },
            ViewRendering(path: layout.allocationsView, coverage: state.budget.version, isRateLimited: true) {
                Views.allocations(state, nowMilliseconds: nowMilliseconds)
            },
            ViewRendering(path: layout.taskView, coverage: state.tasks.version) {
                Views.taskQueue(state, nowMilliseconds: nowMilliseconds)
            },
            ViewRendering(path: layout.workerView, coverage: state.workers.version, tailBytes: Views.tailBytes(forWorkerView: true)) {
                Views.workerPool(
                    state, maxWorkers: config.maxWorkers, host: config.hostID, nowMilliseconds: nowMilliseconds,
                    heartbeatAge: { layout.heartbeatAge($0, nowMilliseconds: nowMilliseconds) })
            },
        ]
    }

    /// How long a writer in a busy journal waits for a later writer before publishing views itself.
    public static let contendedPublishDelayMicroseconds: UInt32 = 2000

    /// True when records may have been appended since the last fold.
    public func journalMovedSinceFold() throws(CortexError) -> Bool {
        try journal.hasAppended(since: readExtent)
    }
}

extension String {
    /// The text without the newlines (and carriage returns) at its end: a password file's content.
    fileprivate var trimmingTrailingNewlines: String {
        var text = Substring(self)
        while let last = text.last, last == "\n" || last == "\r" { text.removeLast() }
        return String(text)
    }
}
