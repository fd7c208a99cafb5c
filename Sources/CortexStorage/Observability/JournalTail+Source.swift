import CortexCore

extension JournalTail {
    /// Where `cortex tail` reads a folder's journal from, whatever its backend.
    public struct Source {
        /// The folder's journal.
        public var journal: any Journal
        /// The state folded up to `foldFrom`, which gives the records after it their outcomes.
        public var state: CortexState
        /// Records from here on are folded (and get outcomes); records before it are shown without.
        public var foldFrom: JournalPosition
        /// The first record to show.
        public var start: JournalPosition
        /// Armed before anything was read (with `follow`), so no record appended after is missed.
        public var waiter: (any JournalWaiter)?

        /// Where reading starts: the earlier of `start` and `foldFrom`.
        public var readFrom: JournalPosition { min(start, foldFrom) }
    }

    /// Where to read the last `count` records that `filter` keeps (nil: no limit) of the folder
    /// at `root`, with the state that gives them their outcomes. A journal of files is scanned
    /// backwards from its end (`start(of:near:…)`) and folded from the snapshot, or from its
    /// start when the records to show lie before the snapshot and are still readable. A journal
    /// on etcd has no backward scan: it is read from what compaction kept, with outcomes from
    /// the snapshot stored in etcd on (docs/decisions/035). With `follow`, a waiter is armed
    /// before the read.
    public static func source(root: String, count: Int?, filter: RecordFilter, follow: Bool) throws(CortexError) -> Source {
        if case .etcd(let settings) = try CoordinationStore.journalBackend(root: root) {
            let shared = try CoordinationStore.etcdJournal(settings)
            let waiter = follow ? try shared.makeWaiter() : nil
            var state = CortexState()
            var foldFrom = JournalPosition.start
            if let (snapshotState, snapshotPosition) = try shared.storedSnapshotState() {
                state = snapshotState
                foldFrom = snapshotPosition
            }
            let start = try shared.firstKeptPosition()
            // No snapshot to give the kept records their outcomes: shown without them.
            if foldFrom < start { foldFrom = EtcdJournal.position(revision: .max) }
            return Source(journal: shared, state: state, foldFrom: foldFrom, start: start, waiter: waiter)
        }
        let journal = try CoordinationStore.existingJournal(root: root)
        let layout = CoordinationLayout(root: root)
        // The snapshot's state lets the fold give outcomes (a claim's task, a grant's id) to the
        // records after it without folding the whole journal.
        let snapshot = ImmutableBytes.map(layout.snapshot, in: layout.folder).flatMap { SnapshotCodec.decode($0) }
        var state = snapshot?.0 ?? CortexState()
        var foldFrom = snapshot?.1 ?? .start
        let waiter = follow ? try journal.makeWaiter() : nil
        let start = try JournalTail.start(
            of: journal, near: foldFrom, count: count, sinceMilliseconds: filter.sinceMilliseconds, matches: filter.matchesRecord)
        if start < foldFrom, case .open(let fd, _, _) = try journal.openForReading(segment: 1) {
            // Records the snapshot covers are shown too: fold them from the journal's start (still
            // readable, live or archived) so each gets its outcome (a claim's task, a fail's `dead`).
            POSIX.close(fd)
            state = CortexState()
            foldFrom = .start
        }
        return Source(journal: journal, state: state, foldFrom: foldFrom, start: start, waiter: waiter)
    }
}
