import CortexCore

/// Publishing the views (docs/decisions/004, 005, 042): who writes them after a record (the
/// writer of the last record; a short wait when the journal is busy), and writing them so that the
/// coverage on disk never goes down.
extension CoordinationStore {
    /// `publish`, for a command whose record is already in the journal: a failure (a full disk,
    /// an unwritable view) becomes a warning that the views are stale, never an error, because
    /// the record's outcome stands whatever happens to the derived files. The next writer or
    /// reaper run republishes them.
    public func publishAfterRecording(nowMilliseconds: Int64 = POSIX.wallClockMilliseconds()) {
        do { try publish(nowMilliseconds: nowMilliseconds) } catch {
            warn("the views are stale: \(error.description) (the record is in the journal; the next writer republishes them)")
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
    /// A store without files (`persistsFiles` false) publishes nothing. A store with a
    /// `backgroundPublisher` (a session) hands its fold to it instead and returns at once.
    public func publish(nowMilliseconds: Int64 = POSIX.wallClockMilliseconds()) throws(CortexError) {
        guard persistsFiles else { return }
        if let publisher = backgroundPublisher {
            try offerPublication(to: publisher, nowMilliseconds: nowMilliseconds)
            return
        }
        // After a shared journal's append read in its own round trip, the fold is as fresh as another
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

    /// `publish` for a store with a `backgroundPublisher`: hands it this fold's views, and the
    /// snapshot when one is due, and returns without writing them. What must precede a snapshot
    /// is done here, in order: the journal up to it made durable and the finished tasks compacted
    /// (a durable file, and the outbox emptied); the snapshot's own bytes are encoded and written
    /// by the publisher. The snapshot of a `SharedJournal`'s folder, which is also stored in the
    /// journal (etcd), is written here.
    private func offerPublication(to publisher: BackgroundPublisher, nowMilliseconds: Int64) throws(CortexError) {
        let mode = permissions.file(.shared)
        var snapshot: BackgroundPublisher.SnapshotJob?
        if sharedJournal != nil {
            try writeSnapshotIfDue(nowMilliseconds: nowMilliseconds)
        } else if snapshotIsDue {
            snapshot = try prepareBackgroundSnapshot(nowMilliseconds: nowMilliseconds)
        }
        publisher.offer(
            views: .init(state: state, config: config, layout: layout, mode: mode, nowMilliseconds: nowMilliseconds), snapshot: snapshot)
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
}
