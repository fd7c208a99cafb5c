import CortexCore

/// Reading the journal into the store's state (docs/design.md, "Fold"): from the snapshot loaded,
/// with the fallbacks when the journal does not confirm it, and the fold through a record to learn
/// its outcome. Only `Journal` calls, and `SharedJournal`'s when the journal adopts it.
extension CoordinationStore {
    /// Folds the journal past the snapshot loaded (`local`: the folder's own was), falling back
    /// when the journal does not confirm it. For a `SharedJournal` (etcd) the fallback is the
    /// snapshot stored in it (docs/decisions/035), asked for only when the fold meets a compaction
    /// or contradicts the local snapshot: a folder without a snapshot folds from the beginning
    /// first, which costs no extra round trip while the namespace is young and reads at most the
    /// records compaction left (one or two snapshot intervals) once it is not. Then the
    /// journal's beginning. `storedFirst`: the caller knows the journal was compacted past it,
    /// so the stored snapshot is loaded before any fold. `storedAt`: the stored snapshot as it was
    /// when the record there was appended (the snapshot before a record whose outcome is wanted:
    /// a later one may already cover the record).
    /// - Returns: the outcome of the record `watchedID` when the fold met it.
    @discardableResult
    func foldFromSnapshot(
        local: Bool, storedFirst: Bool = false, storedAt: JournalPosition? = nil, watchingFor watchedID: String? = nil
    ) throws(CortexError) -> Outcome? {
        let shared = snapshotSharer
        var triedStored = shared == nil
        var believing = local
        if storedFirst, !local, let shared {
            triedStored = true
            believing = loadStoredSnapshot(shared, asOf: storedAt)
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
                guard snapshotMismatched || (shared?.isCompaction(error) == true && (believing || !triedStored)) else {
                    throw error
                }
            }
            forgetSnapshot()
            believing = false
            if !triedStored, let shared {
                triedStored = true
                believing = loadStoredSnapshot(shared, asOf: storedAt)
            }
        }
    }

    /// A waiter on this store's journal, armed now, with the fold caught up to the arming: a
    /// waiter hears only appends from its arming on, so a record appended after the last fold
    /// but before the arming is folded here instead of lost. What `claim --wait`,
    /// `cortex-task wait` and `allocate --wait` sleep on.
    public func makeCaughtUpWaiter() throws(CortexError) -> any JournalWaiter {
        let waiter = try journal.makeWaiter()
        try catchUp()
        return waiter
    }

    /// Folds every record appended since the last fold.
    /// Over a `SharedJournal` (etcd), a fold that finds the records after its position deleted by
    /// a compaction starts again from the snapshot stored in it (docs/decisions/035).
    public func catchUp() throws(CortexError) {
        if foldDeferred {
            foldDeferred = false
            try foldFromSnapshot(local: deferredFromLocalSnapshot)
            return
        }
        do {
            _ = try foldForward(watchingFor: nil)
        } catch {
            guard let shared = snapshotSharer, shared.isCompaction(error) else { throw error }
            forgetSnapshot()
            try foldFromSnapshot(local: false, storedFirst: true)
        }
    }

    /// Folds to the end of the journal; returns the outcome of the record with id `watchedID` if it was folded.
    func foldForward(watchingFor watchedID: String?) throws(CortexError) -> Outcome? {
        try foldForward(watchingFor: watchedID, appending: nil).outcome
    }

    /// Folds to the end of the journal, or, with `line` on a `SharedJournal`, appends it and folds
    /// through it in the same round trip (`SharedJournal.appendThenRead`, docs/decisions/035).
    /// Returns the outcome of the record with id `watchedID` if it was folded, and the append.
    func foldForward(watchingFor watchedID: String?, appending line: [UInt8]?) throws(CortexError) -> (
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
        if let line, let shared = sharedJournal {
            let (append, read) = try shared.appendThenRead(
                line, from: position, appended: { self.lastAppendedPosition = $0.position }, visit: visit)
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
}
