import CortexCore

/// Snapshot duty (docs/decisions/018, 033, 035, 042): loading the snapshot a fold starts from
/// (the folder's, or the one a `SharedJournal` keeps), whose turn it is to write the next one, and
/// writing it after the journal it covers is durable.
extension CoordinationStore {
    /// Starts from `state/snapshot.json` when it is readable. A missing or unreadable snapshot is
    /// not an error: the snapshot is a cache, and the fold starts from the beginning instead.
    func loadSnapshot() -> Bool {
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
        guard let shared = snapshotSharer else {
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
        return believeShared(mapped, of: shared) { load(layout.snapshot, mapped: mapped) }
    }

    /// Starts from a shared journal's snapshot (`bytes`) when it names `shared` (its backend and
    /// namespace) and one of its records as the last, and `decode` reads it; the fold then checks
    /// that record (foldForward).
    private func believeShared(_ bytes: ImmutableBytes, of shared: any SharedJournal, decode: () -> (CortexState, JournalPosition)?)
        -> Bool
    {
        guard let identity = SnapshotCodec.journalIdentity(bytes),
            identity["backend"]?.stringValue == shared.backendName, identity["namespace"]?.stringValue == shared.namespace,
            let lastID = identity["last_record"]?.stringValue,
            let lastPosition = identity["last_position"].flatMap(JournalPosition.init(json:)),
            shared.isRecordPosition(lastPosition),
            let (snapshotState, snapshotPosition) = decode()
        else { return false }
        state = snapshotState
        position = lastPosition
        self.snapshotPosition = snapshotPosition
        pendingSnapshotCheck = (lastID, lastPosition)
        return true
    }

    /// Starts from the snapshot stored in the shared journal (etcd), as it was when the record at
    /// `position` went in when given, checked as a local one is (decision 033): its namespace, its
    /// checksum, then its last record met first by the fold. A value that fails, or a cluster that
    /// does not answer, is not used (the fold starts from the beginning).
    /// - Returns: true when the snapshot was loaded (the fold still has to confirm it).
    func loadStoredSnapshot(_ shared: any SharedJournal, asOf position: JournalPosition? = nil) -> Bool {
        guard let stored = try? shared.storedSnapshot(asOf: position), !stored.isEmpty else { return false }
        let bytes = ImmutableBytes(stored)
        let believed = believeShared(bytes, of: shared) {
            if let decoded = SnapshotCodec.decode(bytes) { return decoded }
            rejectedSnapshots.append("the snapshot in \(shared.backendName) (\(shared.namespace)): unreadable or checksum mismatch")
            return nil
        }
        if believed { storedSnapshotToCache = stored }
        return believed
    }

    /// Once the fold confirmed the snapshot loaded from the shared journal: keeps it as this
    /// folder's `state/snapshot.json` (the next call starts from it without asking etcd) and writes
    /// the finished tasks stored with snapshots that this folder lacks under `state/finished/`.
    /// Failures only cost the next call the same work: nothing is reported.
    func cacheStoredSnapshot() {
        guard let stored = storedSnapshotToCache, let shared = snapshotSharer else { return }
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
    func forgetSnapshot() {
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
        guard let shared = snapshotSharer, let id = lastFoldedRecordID, let at = lastFoldedRecordPosition else { return nil }
        return .object([
            JSONMember("backend", .string(shared.backendName)), JSONMember("last_position", at.json),
            JSONMember("last_record", .string(id)), JSONMember("namespace", .string(shared.namespace)),
        ])
    }

    /// Writes a snapshot when this store's fold is `snapshotEveryRecords` past the one it loaded
    /// and it is this store's turn: it wrote the N-th, 2N-th, … record of the journal (every
    /// process agrees on those numbers), or the snapshot lags four times that (the process whose
    /// turn it was died). And only if no other process replaced the snapshot since this one
    /// loaded it. Before turns, every publisher that had loaded the last snapshot wrote its own:
    /// under 20 concurrent claimers of a 10,000-task queue, 211 snapshots of 1.6 MB for 2,000
    /// records instead of ~16.
    func writeSnapshotIfDue(nowMilliseconds: Int64) throws(CortexError) {
        guard snapshotIsDue else { return }
        try writeSnapshot(nowMilliseconds: nowMilliseconds)
    }

    /// True when this store's turn to write the snapshot came (see `writeSnapshotIfDue`).
    var snapshotIsDue: Bool {
        let every = config.snapshotEveryRecords
        guard recordsSinceSnapshot >= every, holdsSnapshotDuty || recordsSinceSnapshot >= 4 * every else { return false }
        return FileIdentity.of(layout.snapshot, in: layout.folder) == snapshotFileIdentity
    }

    /// Makes the journal durable up to this fold and compacts the finished tasks, then takes the
    /// snapshot's turn as `writeSnapshot` does; returns what the publisher is to write.
    func prepareBackgroundSnapshot(nowMilliseconds: Int64) throws(CortexError) -> BackgroundPublisher.SnapshotJob {
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
        if let publisher = backgroundPublisher, sharedJournal == nil {
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
        if snapshotSharer != nil, journalIdentity == nil { return }  // nothing folded yet: nothing to check it by
        try journal.makeDurable(from: snapshotPosition ?? .start, through: position)
        let finished = try compactFinishedTasks()
        let snapshot = SnapshotCodec.encode(
            state, position: position, writtenAtMilliseconds: nowMilliseconds, journal: journalIdentity)
        try AtomicFile.replace(layout.snapshot, in: layout.folder, with: snapshot, durability: .powerLoss, mode: permissions.file(.shared))
        snapshotFileIdentity = FileIdentity.of(layout.snapshot, in: layout.folder)
        // Written and checksummed here: the next loads need not verify it again.
        VerifiedSnapshot.recordWritten(snapshot, layout: layout, mode: permissions.file(.shared))
        if let shared = snapshotSharer, let last = lastFoldedRecordPosition {
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
}
