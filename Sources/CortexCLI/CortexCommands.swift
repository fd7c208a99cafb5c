import CortexCore
import CortexStorage

/// `cortex`: init, status, verify, tail, and the other tools as subcommands (docs/cli.md).
public enum CortexTool {
    /// The tool and its commands.
    public static let tool = ToolSpec(
        name: "cortex",
        abstract: "Coordinate many worker processes through plain files: init, status, tail, verify.",
        commands: [
            Command(
                CommandSpec(
                    name: "cortex init", abstract: "Create the coordination folder (safe to run again).",
                    options: [
                        Init.totalTokens, Init.maxWorkers, Init.group, Init.backend, Init.endpoints, Init.namespace, Init.hostID,
                        Init.caFile, Init.certFile, Init.keyFile, Init.user, Init.passwordFile, Init.etcdTimeout,
                    ],
                    examples: [
                        "cortex init --total-tokens 2000000 --max-workers 20", "cortex init --dir /srv/cortex",
                        "cortex init --dir /srv/cortex --group cortex   # several users' masters share it",
                        "cortex init --dir /srv/cortex --backend etcd --endpoints http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379 --namespace prod --host-id $(hostname)   # hosts share one budget and queue",
                    ]),
                body: initialise),
            Command(
                CommandSpec(
                    name: "cortex status",
                    abstract:
                        "One screen: workers against capacity, tasks by status and priority, tokens, the reaper, journal health. Exits 1 when something needs a person (lost workers not yet reaped, spawns queued longer than queued_spawn_alarm (config.json, default 2m) with the limit holding them, a damaged journal line, the budget exhausted with work waiting), the reasons on stderr.",
                    examples: [
                        "cortex status", "cortex status --json | jq .budget.available",
                        "cortex status >/dev/null || echo 'needs attention'   # cron or a health check",
                    ]),
                body: status),
            Command(
                CommandSpec(
                    name: "cortex metrics",
                    abstract:
                        "Queue wait and run time P50/P95/P99, success, retry and dead-letter rates per task type, utilisation, token burn rate, in the Prometheus text format.",
                    options: [Metrics.out],
                    examples: [
                        "cortex metrics", "cortex metrics --out /var/lib/node_exporter/textfile/cortex.prom",
                        "cortex metrics --json | jq '.task_types.build.run_time_seconds.p95'",
                        "cortex metrics --json --out $CORTEX_DIR/metrics.json   # what cortex dashboard reads",
                    ]),
                body: metrics),
            Command(
                CommandSpec(
                    name: "cortex verify",
                    abstract:
                        "Check the journal: checksums, seals, torn lines (exit 1 and where, if any). With --audit, also every signature and the seal chain: the first broken line and every key no user registered are named.",
                    options: [Verify.acknowledge, Verify.audit],
                    examples: [
                        "cortex verify || echo 'journal damaged: see above'",
                        "cortex verify --audit   # signatures and the seal chain (docs/decisions/044-signed-journal.md)",
                        "cortex verify --acknowledge   # after a full disk or kill -9 left torn fragments",
                    ]),
                body: verify),
            Command(
                CommandSpec(
                    name: "cortex tail", abstract: "Print the event stream, one line an event; -f follows it.",
                    options: [Tail.lines, Tail.follow, Tail.kind, Tail.task, Tail.worker, Tail.since],
                    examples: [
                        "cortex tail -f", "cortex tail -f --kind task. --worker w-1.5042", "cortex tail --since 10m --task task-2.4096",
                        "cortex tail --lines 100 --json | jq -c 'select(.kind==\"budget.allocate\")'",
                    ]),
                body: tail),
            DashboardTool.command,
            SessionCommand.command,
        ],
        examples: ["cortex init && cortex status", "cortex budget allocate --tokens 100"],
        nested: [
            (
                "budget",
                ToolSpec(
                    name: "cortex budget", abstract: BudgetTool.tool.abstract,
                    commands: BudgetTool.commands(prefix: "cortex budget"),
                    examples: nestedExamples(BudgetTool.tool.examples, tool: "cortex-budget", word: "budget"))
            ),
            (
                "task",
                ToolSpec(
                    name: "cortex task", abstract: TaskTool.tool.abstract, commands: TaskTool.commands(prefix: "cortex task"),
                    examples: nestedExamples(TaskTool.tool.examples, tool: "cortex-task", word: "task"))
            ),
            (
                "spawn",
                ToolSpec(
                    name: "cortex spawn", abstract: SpawnTool.tool.abstract, commands: [],
                    defaultCommand: SpawnTool.spawnCommand(name: "cortex spawn"), hidden: [SpawnTool.superviseCommand])
            ),
            (
                "reap",
                ToolSpec(
                    name: "cortex reap", abstract: ReapTool.tool.abstract, commands: [],
                    defaultCommand: ReapTool.reapCommand(name: "cortex reap"))
            ),
            (
                "worker",
                ToolSpec(
                    name: "cortex worker", abstract: "Supervised workers: list, show, logs, stop, heartbeat.",
                    commands: WorkerTool.commands(prefix: "cortex worker"),
                    examples: [
                        "cortex worker list", "cortex worker logs w-1.5042 -f",
                        "cortex worker stop w-1.5042   # SIGTERM, SIGKILL after --grace",
                    ])
            ),
            (
                "audit",
                ToolSpec(
                    name: "cortex audit",
                    abstract: "The signed journal: who did what to a task, the chain's head, starting the audited era.",
                    commands: AuditTool.commands(prefix: "cortex audit"),
                    examples: ["cortex audit show task-2.4096", "cortex audit head", "cortex verify --audit"])
            ),
            (
                "pool",
                ToolSpec(
                    name: "cortex pool", abstract: "Pools of workers (cortex-spawn --pool N --name NAME) as a unit: list, stop, scale.",
                    commands: PoolTool.commands(prefix: "cortex pool"),
                    examples: ["cortex pool list", "cortex pool stop builders", "cortex pool scale builders 8"])
            ),
        ])

    /// `init`'s arguments.
    enum Init {
        static let totalTokens = Option.tokens("total-tokens", "N", "Set the token budget (a new folder starts with 1000000).")
        static let maxWorkers = Option.count("max-workers", "N", "The most workers alive at once (config.json).")
            .checked({ $0 >= 1 }, else: { _ in "invalid --max-workers '0': at least 1" })
        static let group = Option<UInt32>(
            "group", "G",
            "Share the folder with group G (a name or number): folders set-group-ID 2770, files 0660, kept so by every member."
        ) { (name) throws(CortexError) in
            guard let gid = UserDatabase.system.groupID(name) else {
                throw .badInput("invalid --group '\(Values.printable(name))': no such group in /etc/group")
            }
            return gid
        }
        static let backend = Option.text("backend", "KIND", "Where the journal lives: file (the folder, the default) or etcd.")
            .checked({ $0 == "file" || $0 == "etcd" }, else: { "invalid --backend '\(Values.printable($0))': file or etcd" })
        static let endpoints = Option.text(
            "endpoints", "URL,URL,URL", "With --backend etcd: every member's client URL (http://host:2379), comma-separated.")
        static let namespace = Option.text(
            "namespace", "NAME", "With --backend etcd: the namespace the hosts share (the first init creates it, later ones join).")
        static let hostID = Option.text("host-id", "HOST", "With --backend etcd: this host's id (letters, digits, '-', '_', '.').")
        static let caFile = Option.text("ca-file", "FILE", "With https:// endpoints: the CA (PEM) the members' certificates chain to.")
        static let certFile = Option.text("cert-file", "FILE", "This host's client certificate (PEM), for members that ask for one.")
        static let keyFile = Option.text("key-file", "FILE", "The private key (PEM) of --cert-file.")
        static let user = Option.text("user", "NAME", "The etcd user, for a cluster with auth enabled (with --password-file).")
        static let passwordFile = Option.text(
            "password-file", "FILE", "A file holding the etcd user's password (keep it 0600; never on the command line).")
        static let etcdTimeout = Option.duration(
            "etcd-timeout", "D",
            "With --backend etcd: the most one etcd operation of a tool may take, every retry included, before exit 75 (default 10s; config.json's etcd_timeout)."
        ).checked(
            { (EtcdSettings.minimumTimeoutMilliseconds...EtcdSettings.maximumTimeoutMilliseconds).contains($0) },
            else: { _ in "invalid --etcd-timeout: a duration from 1s to 1h, such as 10s" })
    }

    /// The journal backend `init`'s options name: nil when none is named (keep the folder's own,
    /// or the file backend for a new folder).
    /// - Throws: `usage` for a missing or misplaced option, `badInput` for a bad value.
    static func requestedBackend(_ arguments: ParsedArguments) throws(CortexError) -> JournalBackend? {
        let endpoints = arguments[Init.endpoints]
        let namespace = arguments[Init.namespace]
        let hostID = arguments[Init.hostID]
        switch arguments[Init.backend] {
        case nil, "file":
            let security = [arguments[Init.caFile], arguments[Init.certFile], arguments[Init.keyFile], arguments[Init.user]]
            if endpoints != nil || namespace != nil || hostID != nil || arguments[Init.passwordFile] != nil
                || arguments[Init.etcdTimeout] != nil || security.contains(where: { $0 != nil })
            {
                throw .usage("--endpoints, --namespace, --host-id and the TLS and user options go with --backend etcd")
            }
            return arguments[Init.backend] == nil ? nil : .file
        default:
            guard let endpoints, let namespace, let hostID else {
                throw .usage("--backend etcd needs --endpoints URL,URL,URL, --namespace NAME and --host-id HOST")
            }
            do {
                let urls = endpoints.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                for url in urls { _ = try EtcdEndpoint(url: url) }
                var settings = try EtcdSettings(endpoints: urls, namespace: namespace, hostID: hostID, path: "cortex init")
                // Files are kept as absolute paths: config.json is read from anywhere.
                func absolute(_ path: String?, _ option: String) throws(CortexError) -> String? {
                    guard let path else { return nil }
                    guard let resolved = POSIX.canonicalPath(path) else { throw .badInput("--\(option) \(path): no such file") }
                    return resolved
                }
                settings.caFile = try absolute(arguments[Init.caFile], "ca-file")
                settings.certificateFile = try absolute(arguments[Init.certFile], "cert-file")
                settings.keyFile = try absolute(arguments[Init.keyFile], "key-file")
                settings.user = arguments[Init.user]
                settings.passwordFile = try absolute(arguments[Init.passwordFile], "password-file")
                if let timeout = arguments[Init.etcdTimeout] { settings.timeoutMilliseconds = timeout }
                _ = try CoordinationStore.etcdClient(settings)
                return .etcd(settings)
            } catch {
                throw .badInput("invalid etcd settings: \(error.description)")
            }
        }
    }

    /// `metrics`' arguments.
    enum Metrics {
        static let out = Option.text(
            "out", "FILE", "Write to FILE atomically instead of stdout (node_exporter's textfile collector; with --json, the JSON)."
        ).checked({ !$0.isEmpty && !$0.hasSuffix("/") }, else: { "invalid --out '\(Values.printable($0))': a file path" })
    }

    /// `verify`'s arguments.
    enum Verify {
        static let acknowledge = Flag(
            "acknowledge",
            "Record the harmless torn fragments found (heads of records written again whole) as known: verify is green again for them, red for new damage."
        )
        static let audit = Flag(
            "audit",
            "Also check every record's signature and the seals' hash chain: exit 1 naming the first broken line and every key no user registered."
        )
    }

    /// `tail`'s arguments.
    enum Tail {
        static let lines = Option.count("lines", "N", "How many past events to print first (default 10, or all since --since; 0 for none).")
        static let follow = Flag("follow", "Keep printing events as they are appended (across segment rotation).", short: "f")
        static let kind = Option<String>("kind", "K", "Only records whose kind starts with K (task., budget.allocate); repeatable.") {
            (kind) throws(CortexError) in
            guard !kind.isEmpty, kind.utf8.allSatisfy({ $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || (0x61...0x7A).contains($0) })
            else {
                throw .badInput("invalid --kind '\(Values.printable(kind))': a record kind or its prefix, such as task. or budget.allocate")
            }
            return kind
        }.repeatable
        static let task = Option.identifier("task", "ID", "Only records about task ID (a claim counts once the fold names its task).")
        static let worker = Option.identifier("worker", "ID", "Only records about worker (or holder) ID.")
        static let since = Option<Since>("since", "WHEN", "Only records from WHEN on: a duration ago (90s, 5m, 2h, 1d) or a UTC time.") {
            (since) throws(CortexError) in
            if let time = ISOTime.parse(since) { return .time(time) }
            if let ago = try? Values.parseDurationMilliseconds(since) { return .ago(ago) }
            throw .badInput(
                "invalid --since '\(Values.printable(since))': a duration ago (90s, 5m, 2h, 1d) or a UTC time (2026-12-02T10:00:00Z)")
        }

        /// `--since WHEN`: a UTC time, or a duration before now.
        enum Since: Sendable {
            /// Milliseconds since the epoch.
            case time(Int64)
            /// Milliseconds before now.
            case ago(Int64)
        }
    }

    static func initialise(_ invocation: Invocation) throws(CortexError) -> Report {
        var arguments = invocation.arguments
        // An etcd init may join a namespace whose budget is set: no questions, its options say it all.
        if InitPrompt.shouldAsk(arguments) && arguments[Init.backend] == nil {
            arguments = try InitPrompt.ask(arguments, root: invocation.root)
        }
        let maxWorkers = arguments[Init.maxWorkers]
        let totalTokens = arguments[Init.totalTokens]
        let group = arguments[Init.group]
        let layout = CoordinationLayout(root: invocation.root)
        let backend = try requestedBackend(arguments)
        var defaults = CortexConfig()
        if let maxWorkers { defaults.maxWorkers = Int(maxWorkers) }
        if let backend { defaults.backend = backend }
        // A new folder of files signs its records from its first (decision 044); an existing
        // folder keeps its config.json ('cortex audit start' turns signing on there).
        defaults.audit = defaults.backend == .file
        let permissions = group != nil ? .groupShared : FolderPermissions.detect(root: layout.root)
        // An etcd folder reaches its cluster before anything is written (decision 033): a cluster
        // that does not answer leaves no folder behind, and of two first inits of one namespace
        // at once exactly one creates it (and sets its budget); the other joins.
        var createdNamespace = false
        if case .etcd(let settings)? = backend {
            // A folder that has another journal is refused before the cluster is asked anything.
            if let existing = try CoordinationStore.existingConfig(root: layout.root)?.backend,
                sameJournal(existing) != sameJournal(.etcd(settings))
            {
                throw .configuration(
                    "\(layout.root) is already initialised with another journal backend (\(layout.config)): use another --dir")
            }
            createdNamespace = try CoordinationStore.etcdJournal(settings).createNamespace(
                hostID: settings.hostID, nowMilliseconds: POSIX.wallClockMilliseconds())
        }
        try CoordinationStore.createLayout(layout, config: defaults, permissions: permissions)
        // An existing folder keeps its config.json: another backend asked of it is refused, not
        // ignored (its etcd_timeout aside: --etcd-timeout sets it below).
        if let backend, try sameJournal(CoordinationStore.journalBackend(root: layout.root)) != sameJournal(backend) {
            throw .configuration(
                "\(layout.root) is already initialised with another journal backend (\(layout.config)): use another --dir")
        }
        if let timeout = arguments[Init.etcdTimeout] {
            try layout.updateConfig(key: "etcd_timeout", value: .string(timeout % 1000 == 0 ? "\(timeout / 1000)s" : "\(timeout)ms"))
        }
        // Created group-shared (exact modes); the group of everything, old and new, is set here.
        if let group { try GroupFolder.share(layout.root, group: group) }
        if let maxWorkers { try layout.updateConfig(key: "max_workers", value: .int(maxWorkers)) }
        let store = try invocation.openStore()
        // A namespace whose journal has records was created by another host's init: this one
        // joins it and leaves its budget alone (cortex-budget set changes it for every host).
        // So is a namespace another init is creating right now (its budget may not be set yet).
        let joined: String?
        if case .etcd(let settings) = store.config.backend, store.state.recordsFolded > 0 || (backend != nil && !createdNamespace) {
            joined = settings.namespace
        } else {
            joined = nil
        }
        let fresh = store.state.recordsFolded == 0 && joined == nil
        // A new audited folder's journal opens with its audited era.
        if fresh, store.config.audit { _ = try store.submit(kind: Record.auditStartKind, data: JSONValue.object([])) }
        if let totalTokens, joined == nil {
            _ = try store.submit(.budgetSet(total: totalTokens))
        } else if fresh {
            _ = try store.submit(.budgetSet(total: 1_000_000))
        }
        store.publishAfterRecording()
        let budget = store.state.budget
        let shared = group.map { ", shared with group \(arguments.text(of: Init.group) ?? String($0))" } ?? ""
        var text =
            "initialised \(layout.root): budget \(budget.total) tokens (\(budget.available) available), max \(store.config.maxWorkers) workers\(shared)"
        if let joined {
            text += "\njoined etcd namespace '\(joined)'"
            if store.state.recordsFolded == 0 {
                text += " (no budget yet: the init creating it has not set one; cortex-budget set N sets it)"
            }
            if let totalTokens, totalTokens != budget.total {
                text += ": its budget stays \(budget.total) (--total-tokens \(totalTokens) ignored; cortex-budget set changes it)"
            }
        }
        var backendJSON: JSONValue = "file"
        if case .etcd(let settings) = store.config.backend { backendJSON = settings.json }
        return Report(
            text: text,
            json: .object([
                "available": .int(budget.available), "backend": backendJSON, "dir": .string(layout.root),
                "group_shared": .bool(store.permissions.isGroupShared), "joined": .bool(joined != nil),
                "max_workers": .int(store.config.maxWorkers), "total_budget": .int(budget.total),
            ]))
    }

    /// `backend` with its `etcd_timeout` left out: the journal it names, compared by init.
    private static func sameJournal(_ backend: JournalBackend) -> JournalBackend {
        guard case .etcd(var settings) = backend else { return backend }
        settings.timeoutMilliseconds = EtcdSettings.defaultTimeoutMilliseconds
        return .etcd(settings)
    }

    static func verify(_ invocation: Invocation) throws(CortexError) -> Report {
        if case .etcd(let settings) = try CoordinationStore.journalBackend(root: invocation.root) {
            return try verifyEtcd(invocation, settings)
        }
        let journal = try CoordinationStore.existingJournal(root: invocation.root)
        var report = try JournalVerifier.verify(journal)
        var lines: [String] = []
        var acknowledgement: String?
        if invocation.arguments[Verify.acknowledge] {
            let harmless = JournalVerifier.acknowledgeable(report)
            if harmless.isEmpty {
                lines.append("note     nothing to acknowledge: no torn fragment")
            } else {
                // A record of its own, naming the positions: the journal stays append-only, and
                // any later damage is at another position, so verify still reports it.
                let store = try invocation.openStore()
                let submission = try store.submit(
                    kind: JournalVerifier.acknowledgementKind, data: JournalVerifier.acknowledgement(of: harmless))
                acknowledgement = submission.record.id
                lines.append(
                    "acknowledged \(harmless.count) torn fragment\(harmless.count == 1 ? "" : "s") in record \(submission.record.id)")
                report = try JournalVerifier.verify(journal)
            }
        }
        for line in report.damaged {
            lines.append("damaged  \(journal.directory)/\(line.position): \(line.reason) (\(line.length) bytes)")
        }
        for record in report.invalid {
            lines.append("invalid  \(journal.directory)/\(record.position): record \(record.id) refused by the fold: \(record.reason)")
        }
        lines += report.problems.map { "problem  \($0)" }
        lines += report.unsealed.map { "note     segment \($0) has a successor but no seal yet; the next reader seals it" }
        if !report.archived.isEmpty || !report.purged.isEmpty {
            lines.append(
                "note     \(report.archived.count) archived segment(s) checked in journal/archive/, \(report.purged.count) past their retention (covered by the snapshot)"
            )
        }
        for line in report.acknowledged {
            lines.append("known    \(journal.directory)/\(line.position): \(line.reason) (\(line.length) bytes), acknowledged")
        }
        // The snapshots carry a checksum (docs/decisions/018): one that fails it is reported and
        // not used by any call.
        var snapshotProblems: [String] = []
        let layout = CoordinationLayout(root: invocation.root)
        for path in [layout.snapshot, layout.checkpoint] {
            guard let bytes = ImmutableBytes.map(path), bytes.buffer.count > 0 else { continue }
            switch SnapshotCodec.integrity(bytes) {
            case .verified:
                if SnapshotCodec.decode(bytes) == nil { snapshotProblems.append("\(path): a number out of range, not used") }
            case .unverified: lines.append("note     \(path) has no checksum (an earlier format); the next snapshot will")
            case .mismatch:
                snapshotProblems.append("\(path): checksum mismatch, changed after it was written; not used (calls fold the journal)")
            case .unreadable: snapshotProblems.append("\(path): not a readable snapshot; not used")
            }
        }
        lines += snapshotProblems.map { "problem  \($0)" }
        let clean = report.isClean && snapshotProblems.isEmpty
        var summary =
            "\(report.isClean ? "journal ok" : "journal DAMAGED"): \(report.segments.count) segment\(report.segments.count == 1 ? "" : "s"), \(report.records) records, \(report.voidRecords) void (re-appended), \(report.damaged.count) damaged line\(report.damaged.count == 1 ? "" : "s")"
        if !report.acknowledged.isEmpty { summary += ", \(report.acknowledged.count) acknowledged" }
        if report.damaged.contains(where: { JournalVerifier.acknowledgeableReasons.contains($0.reason) }) {
            summary += " ('cortex verify --acknowledge' records the torn fragments as known)"
        }
        lines.append(summary)
        if !snapshotProblems.isEmpty { lines.append("snapshot DAMAGED: \(snapshotProblems.count) snapshot file(s) not used") }
        var audit: AuditSummary?
        if invocation.arguments[Verify.audit] {
            audit = try AuditSummary.verify(root: invocation.root)
            lines += audit?.lines ?? []
        }
        var json = JSONValue.object([
            "damaged": .array(
                report.damaged.map {
                    .object(
                        [JSONMember("length", .int($0.length)), JSONMember("reason", .string($0.reason))]
                            + journal.place(of: $0.position).members)
                }),
            "acknowledged": .int(report.acknowledged.count), "acknowledgement_record": .optional(acknowledgement),
            "archived": .int(report.archived.count),
            "invalid": .array(
                report.invalid.map {
                    .object(
                        [JSONMember("id", .string($0.id)), JSONMember("reason", .string($0.reason))]
                            + journal.place(of: $0.position).members)
                }),
            "ok": .bool(clean), "partial_tail_bytes": .int(report.partialTailBytes),
            "purged": .int(report.purged.count),
            "problems": .array(report.problems.map { .string($0) }), "records": .int(report.records),
            "segments": .int(report.segments.count), "snapshot_problems": .array(snapshotProblems.map { .string($0) }),
            "unsealed": .array(report.unsealed.map { .int($0) }),
            "void_records": .int(report.voidRecords),
        ])
        let journalProblem = "the journal has damaged lines, invalid records or a broken seal (listed above)"
        var diagnostic = clean ? nil : report.isClean ? "a snapshot failed its check (listed above)" : journalProblem
        if let audit {
            if case .object(var members) = json {
                members.append(JSONMember("audit", audit.json))
                json = .object(members)
            }
            if !audit.isClean, diagnostic == nil {
                diagnostic = "the audit failed: a signature, a key or the seal chain does not hold (listed above)"
            }
        }
        let ok = clean && audit?.isClean != false
        return Report(exitCode: ok ? 0 : 1, text: lines.joined(separator: "\n"), json: json, diagnostic: diagnostic)
    }

}

extension Report {
    /// A report that prints nothing (the command already streamed its output).
    var silent: Report { Report(exitCode: exitCode, text: "", json: .null, diagnostic: diagnostic) }
}
