import CortexCore

extension AuditVerifier {
    /// The journal of files of the folder at `root`, for the audit; an etcd folder is refused
    /// (its records carry no seal chain).
    /// - Throws: `configuration` for a journal on etcd; `notFound` for no folder.
    public static func fileJournal(root: String) throws(CortexError) -> FileJournal {
        if case .etcd = try CoordinationStore.journalBackend(root: root) {
            throw .configuration(
                "\(root)'s journal is on etcd: the signed journal and its audit are for a journal of files in this version")
        }
        return try CoordinationStore.existingJournal(root: root)
    }
}

/// The audit of a folder's signed journal as `cortex verify --audit` prints it: its lines, its
/// JSON (`audit` in `cortex verify --json`) and whether it holds.
public struct AuditSummary: Sendable {
    /// The lines for people: problems, unattributed keys, key owners, and a closing summary.
    public var lines: [String]
    /// The same for scripts.
    public var json: JSONValue
    /// True when every signature, key and seal-chain link holds.
    public var isClean: Bool

    /// Audits the folder at `root` (`AuditVerifier.verify`) and words what it found, with the
    /// key owners' user names from `users`.
    public static func verify(root: String, users: UserDatabase = .system) throws(CortexError) -> AuditSummary {
        let journal = try AuditVerifier.fileJournal(root: root)
        let layout = CoordinationLayout(root: root)
        let audited = try CoordinationStore.existingConfig(root: root)?.audit ?? false
        let report = try AuditVerifier.verify(journal, layout: layout, audited: audited)
        var lines: [String] = []
        if let first = report.problems.first {
            lines.append("broken   \(journal.directory)/\(first.position): \(first.reason)")
        }
        for problem in report.problems.dropFirst() {
            lines.append("problem  \(journal.directory)/\(problem.position): \(problem.reason)")
        }
        for key in report.unattributed {
            lines.append(
                "unattributed key \(key.key): \(key.records) record\(key.records == 1 ? "" : "s"), the first at \(journal.directory)/\(key.first)"
            )
        }
        for owner in report.owners.values.sorted(by: { $0.key < $1.key }) {
            lines.append("key      \(owner.key): \(users.describe(owner.uid))")
        }
        if !report.purged.isEmpty {
            lines.append(
                "note     segments \(report.purged.map(String.init).joined(separator: ", ")) were purged: the chain is checked after them")
        }
        let era = report.eraStart.map { "audited era from \($0)" } ?? "no audited era ('cortex audit start' opens one)"
        lines.append(
            "\(report.isClean ? "audit ok" : "audit FAILED"): \(report.verified) of \(report.records) records signed and verified, \(report.sealsChecked) seal chain link\(report.sealsChecked == 1 ? "" : "s") checked, \(era)"
        )
        let eraStart: JSONValue = report.eraStart.map { .string("\($0)") } ?? .null
        let firstBroken: JSONValue = report.problems.first.map { .string("\($0.position)") } ?? .null
        var head: JSONValue = .null
        if let newest = report.head { head = .object(["segment": .int(Int64(newest.segment)), "sha256": .string(newest.digest)]) }
        let keys: [JSONValue] = report.owners.values.sorted(by: { $0.key < $1.key }).map { (owner: KeyOwner) -> JSONValue in
            let name: JSONValue = users.user(uid: owner.uid).map { .string($0.name) } ?? .null
            return .object(["key": .string(owner.key), "uid": .int(Int64(owner.uid)), "user": name])
        }
        let problems: [JSONValue] = report.problems.map { (problem: AuditVerifier.Problem) -> JSONValue in
            .object([JSONMember("reason", .string(problem.reason))] + journal.place(of: problem.position).members)
        }
        let unattributed: [JSONValue] = report.unattributed.map { (key: AuditVerifier.Unattributed) -> JSONValue in
            .object(
                [JSONMember("key", .string(key.key)), JSONMember("records", .int(Int64(key.records)))]
                    + journal.place(of: key.first).members(prefixed: "first_"))
        }
        let json = JSONValue.object([
            "era_start": eraStart, "first_broken": firstBroken, "head": head, "keys": .array(keys), "ok": .bool(report.isClean),
            "problems": .array(problems), "records": .int(Int64(report.records)), "seals_checked": .int(Int64(report.sealsChecked)),
            "unattributed": .array(unattributed), "verified": .int(Int64(report.verified)),
        ])
        return AuditSummary(lines: lines, json: json, isClean: report.isClean)
    }
}
