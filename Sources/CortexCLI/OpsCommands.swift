import CortexCore
import CortexProcesses
import CortexStorage

/// The operator's commands: `cortex status`, `cortex tail`, `cortex metrics` (issue 6).
extension CortexTool {
    // MARK: - status

    /// The exit code of `cortex status` when something needs a person (documented in its help).
    static let attentionExitCode: Int32 = 1

    static func status(_ invocation: Invocation) throws(CortexError) -> Report {
        let store = try invocation.openStore()
        let now = POSIX.wallClockMilliseconds()
        let state = store.state
        let config = store.config
        let colour = Colour(enabled: !invocation.arguments[CommonOptions.json] && Terminal.colourEnabled)
        var attention: [String] = []

        // Workers: supervised ones by type, plus claimers that are not supervised.
        let workers = state.workers
        let running = state.tasks.running
        let busyWorkers = Set(running.compactMap(\.worker))
        // A journal shared by hosts: what the registry says of each (read only: the reaper announces).
        var sightings: [HostSighting] = []
        do { sightings = try HostScope.announceAndSight(store, ttlMilliseconds: 0, announce: false) } catch {
            attention.append("the hosts' liveness could not be read: \(error.description)")
        }
        let unreaped = Reaper.observe(
            store, now: now, heartbeatTimeout: config.heartbeatTimeoutMilliseconds,
            stampedNoEarlierThan: Reaper.lastRun(store.layout)?.clockStepAtMilliseconds, hosts: sightings
        ).lost.map(\.worker)
        if !unreaped.isEmpty {
            attention.append(
                "\(unreaped.count) lost worker\(unreaped.count == 1 ? "" : "s") not yet reaped (\(unreaped.joined(separator: " "))): run cortex-reap"
            )
        }
        // Granted workers no launcher has started (the granting record's writer was not their
        // requester, or died): owed to a launcher running as the requester, or root.
        for worker in workers.live.values.sorted(by: { $0.id < $1.id })
        where worker.status == .starting && worker.supervisor == nil && now - worker.requestedMilliseconds > 2_000 {
            if let owner = worker.spec.request.flatMap({ WorkerRequest.owner($0, in: store.layout) }) {
                attention.append(
                    "\(worker.id) owed to user \(UserDatabase.system.describe(owner)): not started yet; cortex-reap run as that user or root starts it"
                )
            } else {
                attention.append("\(worker.id) cannot start: its request file is gone (cortex-reap ends it)")
            }
        }
        // Spawns waiting past `queued_spawn_alarm`: a stall a person must see, with what holds them.
        let stalled = workers.queue.compactMap { workers.live[$0] }.filter {
            now - $0.requestedMilliseconds > config.queuedSpawnAlarmMilliseconds
        }
        if let oldest = stalled.first {
            let head = workers.queue.first.flatMap { workers.live[$0] }
            let holding = head?.queuedReason ?? oldest.queuedReason ?? "waiting for room"
            // The reason is the one recorded when the spawn was last judged: without a reaper run
            // since, nothing judged it again (a queue is re-checked by the reaper and when room frees).
            let reapedSince = Reaper.lastRun(store.layout).map { $0.milliseconds >= oldest.requestedMilliseconds } ?? false
            let unjudged = reapedSince ? "" : "; no reaper has run since it was queued (cortex-reap: cron, or --every D)"
            attention.append(
                "\(stalled.count) spawn\(stalled.count == 1 ? "" : "s") queued longer than \(Wording.duration(config.queuedSpawnAlarmMilliseconds)) (oldest \(oldest.id), \(Wording.duration(now - oldest.requestedMilliseconds))), held by \(holding) when last judged\(unjudged)"
            )
        }
        struct TypeCounts {
            var running = 0
            var idle = 0
            var starting = 0
            var queued = 0
        }
        var byType: [String: TypeCounts] = [:]
        for worker in workers.live.values {
            var counts = byType[worker.spec.type, default: TypeCounts()]
            switch worker.status {
            case .running, .stopping:
                counts.running += 1
                if !busyWorkers.contains(worker.id) { counts.idle += 1 }
            case .starting: counts.starting += 1
            case .queued: counts.queued += 1
            default: break
            }
            byType[worker.spec.type] = counts
        }
        let supervised = Set(workers.live.keys)
        let claimers = busyWorkers.subtracting(supervised)
        let workerCounts = workers.counts
        // Capacity is each host's own (decision 037): this host's workers against its max_workers.
        let activeCount = workers.active(on: config.hostID).count
        let hosts = HostRow.rows(state, sightings: sightings, here: config.hostID)
        let idleCount = byType.values.map(\.idle).reduce(0, +)

        // Tasks.
        let counts = state.tasks.counts
        let queue = QueueSummary(state.tasks)
        let oldestAge = queue.oldest.map { max(0, now - $0.createdMilliseconds) }

        // Tokens.
        let budget = state.budget
        let waitingWork = queue.waiting + Int64(workers.queue.count)
        if budget.available == 0 && waitingWork > 0 {
            attention.append(
                "token budget exhausted (0 of \(budget.total) available) with \(waitingWork) task\(waitingWork == 1 ? "" : "s")/spawn\(waitingWork == 1 ? "" : "s") waiting"
            )
        }
        // Reservations whose holder is gone: a lapsed lease, or a worker run that ended or is lost
        // but not yet reaped. The reaper (or the fold, at the run's end) releases them.
        let unreapedSet = Set(unreaped)
        let orphaned = budget.allocations.values.filter { allocation in
            if let ends = allocation.leaseEndsMilliseconds, ends <= now { return true }
            guard let worker = allocation.worker else { return false }
            return workers.live[worker] == nil || unreapedSet.contains(worker)
        }.sorted { $0.id < $1.id }
        if !orphaned.isEmpty {
            let tokens = orphaned.reduce(Int64(0)) { $0.saturatingAdd($1.tokens) }
            attention.append(
                "\(orphaned.count) reservation\(orphaned.count == 1 ? "" : "s") (\(tokens) tokens) whose holder is gone (\(orphaned.map(\.id).joined(separator: " "))): run cortex-reap"
            )
        }
        var tenants = Set(budget.quotas.keys).union(budget.tenantSpent.keys)
        for allocation in budget.allocations.values { if let tenant = allocation.tenant { tenants.insert(tenant) } }

        // Journal health.
        for rejected in store.rejectedSnapshots {
            attention.append("snapshot not used (\(rejected)): run 'cortex verify'")
        }
        // The reaper's incremental audit of sealed segments (decision 044).
        if store.config.audit, let problem = AuditProgress.load(store.layout)?.problem {
            attention.append("the audit of the sealed journal failed at \(problem): run 'cortex verify --audit'")
        }
        let damaged = store.damagedLines.count
        // Where the journal ends, as its backend says it (a segment and its size, a revision).
        let end = store.journal.endPlace(store.position)
        var journalPlace = " · \(end.text)"
        var backendJSON: JSONMember?
        if case .etcd(let settings) = config.backend {
            // A journal on etcd (docs/decisions/033): its position is the cluster's revision.
            journalPlace = " · etcd namespace '\(settings.namespace)' (this host: \(settings.hostID)) at \(end.text)"
            backendJSON = JSONMember("backend", settings.json)
        }
        if damaged > 0 {
            attention.append("\(damaged) damaged journal line\(damaged == 1 ? "" : "s") since the snapshot: run 'cortex verify'")
        }

        // The reaper's last run (cortex-reap leaves state/reaper.json).
        let reaper = Reaper.lastRun(store.layout)

        var lines: [String] = []
        func row(_ label: String, _ text: String) { lines.append(padded(label, to: 14) + text) }
        row("coordination", store.layout.root)
        row(
            "journal",
            (damaged > 0 ? colour.red("\(damaged) damaged line\(damaged == 1 ? "" : "s")") : colour.green("ok"))
                + journalPlace + " · \(state.recordsFolded) records"
        )
        row(
            "workers",
            "\(activeCount) of \(config.maxWorkers) running (\(idleCount) idle) · \(workers.queue.count) spawn\(workers.queue.count == 1 ? "" : "s") queued · "
                + (unreaped.isEmpty ? "0 lost unreaped" : colour.red("\(unreaped.count) lost unreaped"))
                + " · ended: exited \(workerCounts[.exited, default: 0]) · stopped \(workerCounts[.stopped, default: 0]) · lost \(workerCounts[.lost, default: 0])"
        )
        for (type, typeCounts) in byType.sorted(by: { $0.key < $1.key }) {
            let limit = config.typeLimits[type].map { " of \($0)" } ?? ""
            row(
                "  \(type)",
                "\(typeCounts.running)\(limit) running (\(typeCounts.idle) idle) · \(typeCounts.starting) starting · \(typeCounts.queued) queued"
            )
        }
        if !claimers.isEmpty { row("  claimers", "\(claimers.count) unsupervised worker\(claimers.count == 1 ? "" : "s") holding tasks") }
        for host in hosts { row(host == hosts.first ? "hosts" : "", host.text(colour)) }
        row("tasks", TaskStatus.allCases.map { "\($0.rawValue) \(counts[$0, default: 0])" }.joined(separator: " · "))
        var waitingText = Priority.allCases.map { "\($0.rawValue) \(queue.waitingByPriority[$0, default: 0])" }.joined(separator: " · ")
        if let oldest = queue.oldest, let oldestAge {
            waitingText += " · oldest \(oldest.id) waiting \(Wording.duration(oldestAge))"
        }
        row("  waiting", waitingText)
        let available = budget.available == 0 && budget.total > 0 ? colour.red("available 0") : "available \(budget.available)"
        row(
            "tokens",
            "total \(budget.total) · reserved \(budget.reserved) (\(budget.allocations.count)) · spent \(budget.spent) · \(available) · period \(budget.period)"
        )
        for tenant in tenants.sorted() {
            let quota = budget.quotas[tenant].map { " · quota \($0)" } ?? ""
            row(
                "  \(tenant)",
                "reserved \(budget.held(byTenant: tenant) - budget.tenantSpent[tenant, default: 0]) · spent \(budget.tenantSpent[tenant, default: 0])\(quota)"
            )
        }
        let enforcement = LimitEnforcement.detect(environment: processEnvironment(onlyCortex: false))
        row("limits", enforcement.summary)
        if let reaper {
            row(
                "reaper",
                "last run \(Wording.duration(max(0, now - reaper.milliseconds))) ago (\(ISOTime.format(milliseconds: reaper.milliseconds))) · \(reaper.lost) lost"
            )
        } else {
            row("reaper", colour.yellow("never run here") + " (add cortex-reap to cron: examples/)")
        }
        if attention.isEmpty {
            row("attention", colour.green("none"))
        } else {
            for reason in attention { row("attention", colour.red(reason)) }
        }

        let tenantDetail = JSONValue.object(
            tenants.sorted().map { tenant in
                let spent = budget.tenantSpent[tenant, default: 0]
                let detail = JSONValue.object([
                    "quota": .optional(budget.quotas[tenant]), "reserved": .int(budget.held(byTenant: tenant) - spent),
                    "spent": .int(spent),
                ])
                return JSONMember(tenant, detail)
            })
        let budgetJSON = merge(
            Views.budget(state, nowMilliseconds: now),
            [
                "orphaned": .array(
                    orphaned.map { .object(["id": .string($0.id), "holder": .optional($0.holder), "tokens": .int($0.tokens)]) }),
                "reserved": .int(budget.reserved), "tenant_detail": tenantDetail,
            ])
        let journalJSON = JSONValue.object(
            [JSONMember("damaged_lines_since_snapshot", .int(damaged)), JSONMember("records_folded", .int(state.recordsFolded))]
                + end.members
        ).adding(backendJSON)
        let byPriority = JSONValue.object(
            Priority.allCases.map { JSONMember($0.rawValue, .int(queue.waitingByPriority[$0, default: 0])) })
        let queueJSON = JSONValue.object([
            "oldest_age_seconds": .optional(oldestAge.map { $0 / 1000 }), "oldest_task": .optional(queue.oldest?.id),
            "waiting": .int(queue.waiting), "waiting_by_priority": byPriority,
        ])
        var reaperJSON = JSONValue.null
        if let reaper {
            reaperJSON = .object([
                "age_seconds": .int(max(0, now - reaper.milliseconds) / 1000),
                "last_run": .string(ISOTime.format(milliseconds: reaper.milliseconds)), "lost": .int(reaper.lost),
            ])
        }
        var typesJSON: [JSONMember] = []
        for (type, typeCounts) in byType.sorted(by: { $0.key < $1.key }) {
            let detail = JSONValue.object([
                "idle": .int(typeCounts.idle), "limit": .optional(config.typeLimits[type]), "queued": .int(typeCounts.queued),
                "running": .int(typeCounts.running), "starting": .int(typeCounts.starting),
            ])
            typesJSON.append(JSONMember(type, detail))
        }
        var workerMembers = [
            JSONMember("claimers", .int(claimers.count)), JSONMember("idle", .int(idleCount)),
            JSONMember("lost_unreaped", .array(unreaped.map { .string($0) })),
            JSONMember("max_workers", .int(config.maxWorkers)), JSONMember("queued", .int(workers.queue.count)),
            JSONMember("running", .int(activeCount)), JSONMember("types", .object(typesJSON)),
        ]
        for status in [WorkerStatus.exited, .stopped, .lost] {
            workerMembers.append(JSONMember(status.rawValue, .int(workerCounts[status, default: 0])))
        }
        let json = JSONValue.object([
            "attention": .array(attention.map { .string($0) }), "budget": budgetJSON, "dir": .string(store.layout.root),
            "journal": journalJSON, "limits": enforcement.json, "queue": queueJSON, "reaper": reaperJSON,
            "hosts": hosts.isEmpty ? nil : .array(hosts.map(\.json)),
            "tasks": .object(TaskStatus.allCases.map { JSONMember($0.rawValue, .int(counts[$0, default: 0])) }),
            "workers": .object(workerMembers),
        ])
        return Report(
            exitCode: attention.isEmpty ? 0 : attentionExitCode, text: lines.joined(separator: "\n"), json: json,
            diagnostic: attention.isEmpty ? nil : "needs attention: " + attention.joined(separator: "; "))
    }

    /// One host of a journal shared by hosts, as `cortex status` shows it: its liveness and
    /// what it holds (supervised workers by state, tasks its claimers hold).
    struct HostRow: Equatable {
        var host: String
        var isHere: Bool
        /// Known to the registry (its reaper announced it once).
        var known: Bool
        var alive: Bool
        var running = 0
        var queued = 0
        var claims = 0

        /// Every host the registry knows or a live worker or running task names; none for a
        /// folder of files. This host first, then by name.
        static func rows(_ state: CortexState, sightings: [HostSighting], here: String?) -> [HostRow] {
            guard let here else { return [] }
            var rows: [String: HostRow] = [:]
            func touch(_ host: String) -> HostRow {
                rows[host] ?? HostRow(host: host, isHere: host == here, known: false, alive: false)
            }
            rows[here] = touch(here)
            for sighting in sightings {
                var row = touch(sighting.host)
                row.known = true
                row.alive = sighting.alive
                rows[sighting.host] = row
            }
            for worker in state.workers.live.values {
                guard let host = worker.spec.host else { continue }
                var row = touch(host)
                if worker.status.holdsCapacity { row.running += 1 } else if worker.status == .queued { row.queued += 1 }
                rows[host] = row
            }
            for task in state.tasks.running {
                guard let host = task.host else { continue }
                var row = touch(host)
                row.claims += 1
                rows[host] = row
            }
            return rows.values.sorted { ($0.isHere ? 0 : 1, $0.host) < ($1.isHere ? 0 : 1, $1.host) }
        }

        /// `alive`, `down` (known, its lease expired: its work is taken for lost) or `no reaper`.
        var liveness: String { known ? (alive ? "alive" : "down") : "no reaper" }

        func text(_ colour: Colour) -> String {
            let word = known ? (alive ? colour.green(liveness) : colour.red(liveness)) : colour.yellow(liveness)
            return "\(host)\(isHere ? " (this host)" : "") \(word) · \(running) workers · \(queued) queued · \(claims) tasks held"
        }

        var json: JSONValue {
            .object([
                "alive": .bool(alive), "claims": .int(Int64(claims)), "host": .string(host), "known": .bool(known),
                "liveness": .string(liveness), "queued": .int(Int64(queued)), "running": .int(Int64(running)),
                "this_host": .bool(isHere),
            ])
        }
    }

    // MARK: - metrics

    static func metrics(_ invocation: Invocation) throws(CortexError) -> Report {
        let out = invocation.arguments[Metrics.out]
        let store = try invocation.openStore()
        let report = MetricsReport(store.state, capacity: store.config.maxWorkers, nowMilliseconds: POSIX.wallClockMilliseconds())
        if let out {
            // With --json the file gets the JSON (metrics.json beside the views, for the dashboard).
            let json = invocation.arguments[CommonOptions.json]
            try Reaper.writeMetrics(json ? report.json.jsonText + "\n" : report.prometheusText, to: out)
            return Report(text: "wrote metrics to \(out)", json: .object(["out": .string(out)]))
        }
        return Report(text: report.prometheusText, json: report.json)
    }
}

/// ANSI colour for people on a terminal only (no-color.org: `NO_COLOR` set turns it off).
struct Colour {
    var enabled: Bool
    func red(_ text: String) -> String { paint(text, "31") }
    func green(_ text: String) -> String { paint(text, "32") }
    func yellow(_ text: String) -> String { paint(text, "33") }
    private func paint(_ text: String, _ code: String) -> String { enabled ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
}

extension Terminal {
    /// True when stdout is a terminal and `NO_COLOR` is unset or empty.
    static var colourEnabled: Bool {
        guard stdoutIsTerminal else { return false }
        if let value = POSIX.environmentValue("NO_COLOR"), !value.isEmpty { return false }
        return true
    }
}

// MARK: - tail

extension CortexTool {
    static func tail(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        var filter = RecordFilter()
        filter.kinds = arguments[Tail.kind]
        filter.task = arguments[Tail.task]
        filter.worker = arguments[Tail.worker]
        switch arguments[Tail.since] {
        case .time(let time): filter.sinceMilliseconds = time
        case .ago(let ago): filter.sinceMilliseconds = POSIX.wallClockMilliseconds() - ago
        case nil: break
        }
        // With --since alone, everything since then; otherwise the last --lines (10) events.
        let count: Int? = arguments[Tail.lines].map { Int($0) } ?? (filter.sinceMilliseconds == nil ? 10 : nil)
        let json = arguments[CommonOptions.json]
        let follow = arguments[Tail.follow]

        let source = try JournalTail.source(root: invocation.root, count: count, filter: filter, follow: follow)
        let journal = source.journal
        var state = source.state
        let foldFrom = source.foldFrom
        let start = source.start
        let watcher = source.waiter
        let readFrom = source.readFrom

        var recent: [String] = []
        var printed = 0
        func show(_ record: Record, _ outcome: Outcome?, requeued: [String], streaming: Bool) {
            // A limit is named with the value the worker asked for (`memory limit 64M reached`).
            let spec = record.data["limit"] == nil ? nil : record.data["worker"]?.stringValue.flatMap { state.workers.worker($0)?.spec }
            let line = EventFormatter.line(record, outcome: outcome, requeued: requeued, json: json, spec: spec)
            if streaming {
                Terminal.writeOut(line + "\n")
                return
            }
            recent.append(line)
            if let count, recent.count > count { recent.removeFirst(recent.count - count) }
        }
        func visit(_ record: Record, _ position: JournalPosition, streaming: Bool) {
            var outcome: Outcome?
            var requeued: [String] = []
            if position >= foldFrom {
                // A worker record may hand its run's claims back to the queue (an exit or a loss).
                let worker = record.kind.hasPrefix("worker.") ? record.data["worker"]?.stringValue : nil
                let held = worker.map { name in state.tasks.running.filter { $0.worker == name }.map(\.id) } ?? []
                outcome = Reducer.reduce(&state, record, at: position)
                requeued = held.filter { state.tasks.activeTask($0)?.status != .running }
                if case .requeued = outcome { requeued = [] }  // named by the outcome itself
                // Finished tasks pile up in the outbox (a store compacts it into files): drop them.
                if state.tasks.finished.count > 1024 { state.tasks.finished.removeAll() }
            }
            guard position >= start, filter.matches(record, outcome: outcome, requeued: requeued) else { return }
            printed += 1
            show(record, outcome, requeued: requeued, streaming: streaming)
        }
        var summary = try journal.readForward(from: readFrom) { (record, position) throws(CortexError) in
            visit(record, position, streaming: false)
        }
        if !recent.isEmpty { Terminal.writeOut(recent.joined(separator: "\n") + "\n") }
        guard let watcher else { return Report(text: "", json: .null).silent }
        while true {
            summary = try journal.readForward(from: summary.end) { (record, position) throws(CortexError) in
                visit(record, position, streaming: true)
            }
            _ = watcher.wait(timeoutMilliseconds: 1000)
        }
    }
}

extension JSONValue {
    /// This object with `member` added first (unchanged when there is none).
    fileprivate func adding(_ member: JSONMember?) -> JSONValue {
        guard let member, case .object(let members) = self else { return self }
        return .object([member] + members)
    }
}
