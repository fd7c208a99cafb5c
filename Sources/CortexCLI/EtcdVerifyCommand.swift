import CortexCore
import CortexStorage

extension CortexTool {
    /// `cortex verify` on a folder whose journal is on etcd: the namespace's records that
    /// compaction kept (`JournalVerifier.verify(_: EtcdJournal)`), the snapshot stored in etcd,
    /// and this host's local snapshot cache. `--acknowledge` records the damaged values found as
    /// known; `--audit` is for a journal of files (decision 044) and is refused.
    static func verifyEtcd(_ invocation: Invocation, _ settings: EtcdSettings) throws(CortexError) -> Report {
        if invocation.arguments[Verify.audit] {
            throw .configuration(
                "\(invocation.root)'s journal is on etcd (namespace '\(settings.namespace)'): the signed journal (--audit) is for a journal of files"
            )
        }
        let journal = try CoordinationStore.etcdJournal(settings)
        var report = try JournalVerifier.verify(journal)
        let place = "etcd \(settings.namespace)/journal"
        var lines: [String] = []
        var acknowledgement: String?
        if invocation.arguments[Verify.acknowledge] {
            if report.damaged.isEmpty {
                lines.append("note     nothing to acknowledge: no damaged value")
            } else {
                // A record of its own naming the revisions: later damage is elsewhere, still reported.
                let submission = try invocation.openStore().submit(
                    kind: JournalVerifier.acknowledgementKind, data: JournalVerifier.acknowledgement(of: report.damaged))
                acknowledgement = submission.record.id
                lines.append("acknowledged \(report.damaged.count) damaged value(s) in record \(submission.record.id)")
                report = try JournalVerifier.verify(journal)
            }
        }
        for line in report.damaged {
            lines.append("damaged  \(place) at \(journal.place(of: line.position).text): \(line.reason) (\(line.length) bytes)")
        }
        for record in report.invalid {
            lines.append(
                "invalid  \(place) at \(journal.place(of: record.position).text): record \(record.id) refused by the fold: \(record.reason)"
            )
        }
        lines += report.problems.map { "problem  \($0)" }
        for line in report.acknowledged {
            lines.append(
                "known    \(place) at \(journal.place(of: line.position).text): \(line.reason) (\(line.length) bytes), acknowledged")
        }
        // This host's cache of the snapshot (calls check it before use, as a folder's own).
        let layout = CoordinationLayout(root: invocation.root)
        var snapshotProblems: [String] = []
        for path in [layout.snapshot, layout.checkpoint] {
            guard let bytes = ImmutableBytes.map(path), bytes.buffer.count > 0 else { continue }
            if SnapshotCodec.integrity(bytes) == .mismatch || SnapshotCodec.decode(bytes) == nil {
                snapshotProblems.append("\(path): fails its checksum or does not decode; not used (calls read the one in etcd)")
            }
        }
        lines += snapshotProblems.map { "problem  \($0)" }
        let clean = report.isClean && snapshotProblems.isEmpty
        var summary =
            "\(report.isClean ? "journal ok" : "journal DAMAGED"): etcd namespace '\(settings.namespace)', \(report.records) records kept, \(report.damaged.count) damaged value\(report.damaged.count == 1 ? "" : "s")"
        if !report.acknowledged.isEmpty { summary += ", \(report.acknowledged.count) acknowledged" }
        lines.append(summary)
        let members = { (position: JournalPosition) in journal.place(of: position).members }
        return Report(
            exitCode: clean ? 0 : 1, text: lines.joined(separator: "\n"),
            json: .object([
                "acknowledged": .int(report.acknowledged.count), "acknowledgement_record": .optional(acknowledgement),
                "backend": "etcd",
                "damaged": .array(
                    report.damaged.map {
                        .object([JSONMember("length", .int($0.length)), JSONMember("reason", .string($0.reason))] + members($0.position))
                    }),
                "invalid": .array(
                    report.invalid.map {
                        .object([JSONMember("id", .string($0.id)), JSONMember("reason", .string($0.reason))] + members($0.position))
                    }),
                "namespace": .string(settings.namespace), "ok": .bool(clean), "problems": .array(report.problems.map { .string($0) }),
                "records": .int(report.records), "snapshot_problems": .array(snapshotProblems.map { .string($0) }),
            ]),
            diagnostic: clean ? nil : "the etcd journal has damaged values, invalid records or a bad stored snapshot (listed above)")
    }
}
