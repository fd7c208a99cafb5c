import CortexCore

extension JournalVerifier {
    /// Checks a journal on etcd (`cortex verify` on an etcd folder): reads every record that
    /// compaction kept (from the last compaction's marker on), in revision order. A value that is
    /// no record is damaged, a record the fold refuses whatever the state is invalid, and the
    /// snapshot stored in etcd must pass its checksum and name this namespace. The journal is one
    /// part ordered by revisions: no segments, seals, void records or torn tails to find.
    /// Never writes.
    /// - Throws: `tryLater` when the cluster does not answer.
    public static func verify(_ journal: EtcdJournal) throws(CortexError) -> Report {
        var report = Report()
        report.segments = [1]
        var tries = 0
        while true {
            tries += 1
            let start = try journal.firstKeptPosition()
            var records = 0
            var invalid: [InvalidRecord] = []
            var acknowledged = Set<JournalPosition>()
            let read: JournalRead
            do {
                read = try journal.readForward(from: start) { (record, position) throws(CortexError) in
                    records += 1
                    for named in acknowledgedPositions(record) { acknowledged.insert(named) }
                    if let reason = Reducer.invalidity(of: record) {
                        invalid.append(InvalidRecord(position: position, id: record.id, reason: reason))
                    }
                }
            } catch {
                // A compaction ran between finding its marker and the read: read from the new one.
                guard EtcdJournal.isCompaction(error), tries < 3 else { throw error }
                continue
            }
            report.records = records
            report.invalid = invalid
            report.damaged = read.damaged.filter { !acknowledged.contains($0.position) }
            report.acknowledged = read.damaged.filter { acknowledged.contains($0.position) }
            break
        }
        if let stored = try journal.storedSnapshot(), journal.lastRecordRevision(ofSnapshot: stored) == nil {
            report.problems.append(
                "the snapshot stored in etcd (\(journal.namespace)/snapshot) fails its checksum or names another journal: no host uses it (they fold the records)"
            )
        }
        return report
    }
}
