import CortexCore
import CortexStorage

/// `cortex audit`: the signed journal's trail (docs/decisions/044-signed-journal.md).
public enum AuditTool {
    /// The commands, named under `prefix` (`cortex audit`).
    public static func commands(prefix: String) -> [Command] {
        [
            Command(
                CommandSpec(
                    name: "\(prefix) show",
                    abstract:
                        "Who created, claimed, completed, failed or cancelled task TASK and when: the user (name and uid) each record's key is registered to, from records whose signature holds. Exit 1 when some record about the task could not be verified (it is named), 66 when no record names the task.",
                    positionals: [Show.task],
                    examples: [
                        "\(prefix) show task-2.4096", "\(prefix) show task-2.4096 --json | jq -r '.events[] | .kind + \" \" + .user'",
                    ]),
                body: show),
            Command(
                CommandSpec(
                    name: "\(prefix) head",
                    abstract:
                        "The digest over every sealed byte of the journal so far (the newest sealed segment and a SHA-256): keep it outside the folder to anchor the chain.",
                    examples: ["\(prefix) head", "\(prefix) head --json >> /var/backups/cortex-anchors.jsonl"]),
                body: head),
            Command(
                CommandSpec(
                    name: "\(prefix) start",
                    abstract:
                        "Start the audited era of a folder made before signing (new folders start with it): turn 'audit' on in config.json and append the record that opens the era; from it on every record must be signed.",
                    examples: ["\(prefix) start && cortex verify --audit"]),
                body: start),
        ]
    }

    /// `show`'s arguments.
    enum Show {
        static let task = Positional.identifier("TASK", "The task id.", what: "task id")
    }

    /// The journal of files `audit` reads; an etcd folder is refused (its records carry no seal chain).
    static func fileJournal(_ invocation: Invocation) throws(CortexError) -> FileJournal {
        try AuditVerifier.fileJournal(root: invocation.root)
    }

    static func show(_ invocation: Invocation) throws(CortexError) -> Report {
        let task = invocation.arguments[Show.task]
        let journal = try fileJournal(invocation)
        let layout = CoordinationLayout(root: invocation.root)
        let users = UserDatabase.system
        var state = CortexState()
        var filter = RecordFilter()
        filter.task = task
        var lines: [String] = []
        var events: [JSONValue] = []
        var unverified: [String] = []
        let audited = try CoordinationStore.existingConfig(root: invocation.root)?.audit ?? false
        let report = try AuditVerifier.verify(journal, layout: layout, audited: audited) { (record, position, owner) in
            let worker = record.kind.hasPrefix("worker.") ? record.data["worker"]?.stringValue : nil
            let held = worker.map { name in state.tasks.running.filter { $0.worker == name }.map(\.id) } ?? []
            let outcome = Reducer.reduce(&state, record, at: position)
            var requeued = held.filter { state.tasks.activeTask($0)?.status != .running }
            if case .requeued = outcome { requeued = [] }
            if state.tasks.finished.count > 1024 { state.tasks.finished.removeAll() }
            guard filter.matches(record, outcome: outcome, requeued: requeued) else { return }
            let at = ISOTime.format(milliseconds: record.timeMilliseconds)
            guard let owner else {
                unverified.append("\(position) \(Values.printable(record.kind)) (record \(Values.printable(record.id)))")
                return
            }
            let who = users.user(uid: owner.uid)?.name ?? "uid \(owner.uid)"
            lines.append("\(at)  \(Values.printable(record.kind))  by \(who) (uid \(owner.uid))  key \(owner.key)")
            events.append(
                .object([
                    "at": .string(at), "at_ms": .int(record.timeMilliseconds), "key": .string(owner.key), "kind": .string(record.kind),
                    "record": .string(record.id), "uid": .int(Int64(owner.uid)), "user": .string(who),
                ]))
        }
        guard !lines.isEmpty || !unverified.isEmpty else { throw .notFound("no record names task \(task)") }
        lines += unverified.map { "UNVERIFIED  \($0): its signature is missing, unregistered or does not hold" }
        if report.eraStart == nil { lines.append("note: this folder has no audited era yet ('cortex audit start')") }
        let json = JSONValue.object([
            "events": .array(events), "task": .string(task), "unverified": .array(unverified.map { .string($0) }),
        ])
        let diagnostic = unverified.isEmpty ? nil : "\(unverified.count) record(s) about \(task) could not be verified (listed above)"
        return Report(exitCode: unverified.isEmpty ? 0 : 1, text: lines.joined(separator: "\n"), json: json, diagnostic: diagnostic)
    }

    static func head(_ invocation: Invocation) throws(CortexError) -> Report {
        let journal = try fileJournal(invocation)
        guard let head = try AuditVerifier.head(journal) else {
            return Report(
                exitCode: 1, text: "no sealed segment yet", json: .object(["segment": .null, "sha256": .null]),
                diagnostic: "nothing is sealed yet: the journal has one segment")
        }
        return Report(
            text: "segment \(head.segment) sha256 \(head.digest)",
            json: .object(["segment": .int(Int64(head.segment)), "sha256": .string(head.digest)]))
    }

    static func start(_ invocation: Invocation) throws(CortexError) -> Report {
        _ = try fileJournal(invocation)
        let layout = CoordinationLayout(root: invocation.root)
        let before = try invocation.openStore()
        if before.config.audit {
            return Report(
                text: "the audited era has already started in \(layout.root) (config.json: \"audit\": true)",
                json: .object(["started": .bool(false)]))
        }
        try layout.updateConfig(key: "audit", value: .bool(true))
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        let submission = try store.submit(kind: Record.auditStartKind, data: JSONValue.object([]))
        store.publishAfterRecording()
        return Report(
            text: "audited era started in \(layout.root) at record \(submission.record.id): every record from now on is signed",
            json: .object(["record": .string(submission.record.id), "started": .bool(true)]))
    }
}
