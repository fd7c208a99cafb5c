import CortexCore

/// Appending a record and learning its outcome (docs/design.md, "Writer"): encode, append, fold
/// through it, append again when the journal made it void; over a `SharedJournal`, the append and
/// its fold in one round trip.
extension CoordinationStore {
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
            if sharedJournal != nil {
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

    /// Appends `record` to a `SharedJournal` (etcd) and folds through it in the append's own round trip.
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
            compacted = sharedJournal?.isCompaction(error) == true
            guard deferred, snapshotMismatched || compacted else { throw error }
        }
        if found == nil, deferred {
            // The stored snapshot as it was when the record went in: one stored since may cover
            // the record, and its outcome is learnt only by folding it. The records after that
            // older snapshot's last one are kept (compaction runs one snapshot behind).
            forgetSnapshot()
            found = try foldFromSnapshot(local: false, storedFirst: compacted, storedAt: lastAppendedPosition, watchingFor: record.id)
        }
        guard let found else {
            throw .corrupt("record \(record.id) was appended to the etcd journal but not found by the fold")
        }
        return found
    }
}
