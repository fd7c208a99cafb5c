import CortexCore
import Glibc

/// `cortex-reap`: the cron-driven reaper (SPEC.md). Observes processes and heartbeat files,
/// appends what it saw as evidence (`worker.lost`), stops what is left of lost workers (only
/// processes whose pid and start time match and that belong to the caller), restarts lost pool
/// members, starts queued spawns that fit, purges expired results, writes a snapshot and the
/// views. Idempotent: the journal decides, so two reapers at once double nothing.
public enum ReapTool {
    /// The tool: one command.
    public static let tool = ToolSpec(
        name: "cortex-reap", abstract: reapCommand(name: "cortex-reap").spec.abstract, commands: [],
        defaultCommand: reapCommand(name: "cortex-reap"))

    /// The reap command under `name` (`cortex-reap` or `cortex reap`).
    public static func reapCommand(name: String) -> Command {
        Command(
            CommandSpec(
                name: name,
                abstract:
                    "Clean up after anything: lost workers and leases, queued spawns, expired results; a fresh snapshot and views. Safe to run twice at once.",
                options: [
                    .flag("dry-run", "Say what would be done; change nothing."),
                    .value("heartbeat-timeout", "D", "A heartbeat older than D means lost (default: config heartbeat_timeout, 60s)."),
                    .value("grace", "D", "Between SIGTERM and SIGKILL for what is left of a lost worker (default 5s)."),
                    .value("result-ttl", "D", "Purge results and finished-task files older than D (default: config result_ttl)."),
                    .value(
                        "archive-retention", "D",
                        "Remove archived journal segments older than D from journal/archive/ (default: config archive_retention, 7d)."),
                    .value("metrics-out", "FILE", "Also write 'cortex metrics' to FILE atomically (node_exporter's textfile collector)."),
                ],
                examples: [
                    "* * * * * cortex-reap --dir /srv/cortex/coordination >>/var/log/cortex-reap.log 2>&1   # crontab",
                    "\(name) --dry-run", "\(name) --json | jq .lost",
                ]),
            body: reap)
    }

    struct Plan {
        var lost: [(worker: String, reason: String, leftover: [ProcessIdentity])] = []
        var relaunch: [String] = []
    }

    static func reap(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let dryRun = arguments.has("dry-run")
        let store = try invocation.openStore(mutating: false)
        let layout = store.layout
        let heartbeatTimeout =
            try arguments.value("heartbeat-timeout").map { (text) throws(CortexError) in try Values.parseDurationMilliseconds(text) }
            ?? store.config.heartbeatTimeoutMilliseconds
        let grace = try arguments.value("grace").map { (text) throws(CortexError) in try Values.parseDurationMilliseconds(text) } ?? 5_000
        let resultTTL =
            try arguments.value("result-ttl").map { (text) throws(CortexError) in try Values.parseDurationMilliseconds(text) }
            ?? store.config.resultRetentionMilliseconds
        let archiveRetention =
            try arguments.value("archive-retention").map { (text) throws(CortexError) in try Values.parseDurationMilliseconds(text) }
            ?? store.config.archiveRetentionMilliseconds
        let now = POSIX.wallClockMilliseconds()
        let plan = observe(store, now: now, heartbeatTimeout: heartbeatTimeout)

        var lost: [String] = []
        var requeued: [String] = []
        var signalled: [String] = []
        var restarted: [String] = []
        var launched: [String] = []
        var promoted: [String] = []
        var purged = 0
        var compaction = CoordinationStore.Compaction()
        var lines: [String] = []
        if !dryRun {
            // Every loss first, so the journal gives their tasks back before any slow step (stopping
            // leftovers, starting replacements): recovery from a mass kill is one pass of appends.
            var leftovers: [ProcessIdentity] = []
            for item in plan.lost {
                let submission = try store.submit(.workerLost(worker: item.worker, reason: item.reason))
                guard case .requeued(let tasks) = submission.outcome else { continue }
                // Another reaper may have declared it lost first: then this record changed nothing.
                let endedByThisRecord = store.state.workers.worker(item.worker)?.endRecord == submission.record.id
                guard endedByThisRecord || !tasks.isEmpty else { continue }
                lost.append(item.worker)
                requeued += tasks
                leftovers += item.leftover
            }
            if !lost.isEmpty { try store.publishViews(nowMilliseconds: now) }
            // The pool members owed a replacement, by this run's losses or by an earlier reaper that
            // died before replacing them. What is left of them goes first (pid and start time
            // checked), then the replacement: the fold lets only the first `worker.replace` of
            // each lost worker spawn, so two reapers never replace one twice.
            let owed = store.state.workers.owedReplacements
            leftovers += owed.flatMap(\.leftover).filter(\.isAliveAndOurs)
            signalled = stopGroups(Array(Set(leftovers)), grace: grace).map { "\($0.pid)" }
            for replacement in owed {
                let respawn = try store.submit(
                    .worker(.replace(worker: replacement.worker, evidence: MachineEvidence.observe(store.config))))
                if case .spawned(let worker, _) = respawn.outcome { restarted.append(worker) }
                if case .spawnQueued(let worker, _) = respawn.outcome { restarted.append(worker) }
                launched += try WorkerSupervision.launchWorkers(grantedBy: respawn.record.id, in: store)
            }
            promoted = try WorkerSupervision.startQueuedThatFit(store)
            launched += promoted
            for worker in plan.relaunch {
                try WorkerSupervision.launch(worker, root: layout.root)
                launched.append(worker)
            }
            purged = purgeExpired(layout, olderThan: now - resultTTL)
            compaction = try store.compactJournal(
                rotateAboveBytes: store.config.reaperRotateBytes, retentionMilliseconds: archiveRetention, nowMilliseconds: now)
            try store.publishViews(nowMilliseconds: now)
            try recordRun(layout, at: now, lost: lost.count)
            // metrics.json beside the views (cortex dashboard reads it), and the Prometheus text if asked.
            let metrics = MetricsReport(store.state, capacity: store.config.maxWorkers, nowMilliseconds: now)
            try OpsCommands.writeMetrics(metrics.json.jsonText + "\n", to: layout.root + "/metrics.json")
            if let metricsOut = arguments.value("metrics-out") {
                try OpsCommands.writeMetrics(metrics.prometheusText, to: metricsOut)
            }
        } else {
            lost = plan.lost.map(\.worker)
            signalled = plan.lost.flatMap(\.leftover).map { "\($0.pid)" }
            launched = plan.relaunch
            let owed = store.state.workers.owedReplacements.map(\.worker)
            if !owed.isEmpty { lines.append("would replace lost pool members \(owed.joined(separator: " "))") }
            purged = expiredFiles(layout, olderThan: now - resultTTL).count
            compaction.rotated = (try? store.journal.sizeOfSegment(store.position.segment)) ?? 0 > store.config.reaperRotateBytes
            let live = store.position.segment + (compaction.rotated ? 1 : 0)
            for segment in try store.journal.segmentNumbers() where segment < live {
                if try !store.journal.isTombstone(segment) { compaction.archived.append(segment) }
            }
        }
        let verb = dryRun ? "would " : ""
        for item in plan.lost { lines.append("\(verb)declare \(item.worker) lost: \(item.reason)") }
        if !requeued.isEmpty { lines.append("re-queued \(requeued.joined(separator: " "))") }
        if !signalled.isEmpty {
            lines.append("\(verb)stop leftover process group\(signalled.count == 1 ? "" : "s") \(signalled.joined(separator: " "))")
        }
        if !restarted.isEmpty { lines.append("restarted pool members as \(restarted.joined(separator: " "))") }
        if !promoted.isEmpty { lines.append("started queued \(promoted.joined(separator: " "))") }
        if !launched.isEmpty { lines.append("\(verb)launch supervisors for \(launched.joined(separator: " "))") }
        if purged > 0 { lines.append("\(verb)purge \(purged) expired result file\(purged == 1 ? "" : "s")") }
        if compaction.rotated { lines.append("\(verb)rotate the live journal segment") }
        if !compaction.archived.isEmpty {
            lines.append(
                "\(verb)archive journal segment\(compaction.archived.count == 1 ? "" : "s") \(compaction.archived.map(String.init).joined(separator: " "))"
            )
        }
        if !compaction.purged.isEmpty {
            lines.append(
                "removed archived segment\(compaction.purged.count == 1 ? "" : "s") \(compaction.purged.map(String.init).joined(separator: " ")) (past retention)"
            )
        }
        lines.append(dryRun ? "dry run: nothing changed" : "reaped: \(lost.count) lost, snapshot and views written")
        func strings(_ items: [String]) -> JSONValue { .array(items.map { .string($0) }) }
        return Report(
            text: lines.joined(separator: "\n"),
            json: .object([
                "archived": .array(compaction.archived.map { JSONValue.int(Int64($0)) }), "dry_run": .bool(dryRun),
                "archives_removed": .array(compaction.purged.map { JSONValue.int(Int64($0)) }), "launched": strings(launched),
                "lost": strings(lost), "promoted": strings(promoted),
                "purged": .int(Int64(purged)), "requeued": strings(requeued), "restarted": strings(restarted),
                "rotated": .bool(compaction.rotated),
                "signalled": strings(signalled),
            ]))
    }

    /// When the reaper last ran and what it found, for `cortex status`.
    struct LastRun {
        var milliseconds: Int64
        var lost: Int64
    }

    /// `state/reaper.json`: one small file rewritten by every run (no journal traffic).
    static func lastRunPath(_ layout: CoordinationLayout) -> String { layout.stateFolder + "/reaper.json" }

    static func recordRun(_ layout: CoordinationLayout, at now: Int64, lost: Int) throws(CortexError) {
        let json = JSONValue.object([
            "at": .string(ISOTime.format(milliseconds: now)), "at_ms": .int(now), "lost": .int(lost), "pid": .int(Int64(getpid())),
        ])
        try AtomicFile.replace(lastRunPath(layout), in: layout.folder, with: Array((json.jsonText + "\n").utf8), durability: .processCrash)
    }

    /// The last run recorded, or nil when the reaper never ran (or the file is unreadable).
    static func lastRun(_ layout: CoordinationLayout) -> LastRun? {
        guard let bytes = try? layout.folder.readFile(lastRunPath(layout), limit: FileLimits.smallFile),
            let json = try? JSONValue.parse(bytes),
            let at = json["at_ms"]?.intValue
        else { return nil }
        return LastRun(milliseconds: at, lost: json["lost"]?.intValue ?? 0)
    }

    /// What the machine shows about each worker the state thinks is alive.
    static func observe(_ store: CoordinationStore, now: Int64, heartbeatTimeout: Int64) -> Plan {
        var plan = Plan()
        let layout = store.layout
        for worker in store.state.workers.live.values.sorted(by: { $0.id < $1.id }) where worker.status.holdsCapacity {
            let leftover = [worker.process].compactMap { $0 }.filter(\.isAliveAndOurs)
            guard let supervisor = worker.supervisor else {
                // Granted, but its launcher died before starting a supervisor: start one (a second
                // one, if the first is merely slow, loses the worker.supervise race and exits).
                if now - worker.requestedMilliseconds > 2_000 { plan.relaunch.append(worker.id) }
                continue
            }
            if !supervisor.isAlive {
                plan.lost.append((worker.id, "supervisor pid \(supervisor.pid) is gone", leftover))
            } else if let age = layout.heartbeatAge(worker.id, nowMilliseconds: now), age * 1000 > Double(heartbeatTimeout) {
                plan.lost.append(
                    (worker.id, "heartbeat \(Int(age))s old (supervisor pid \(supervisor.pid) hung)", leftover + [supervisor]))
            }
        }
        // Claimers that are not supervised workers: their heartbeat file is their only sign of life.
        var seen = Set(store.state.workers.live.keys)
        for task in store.state.tasks.running {
            guard let worker = task.worker, !seen.contains(worker) else { continue }
            seen.insert(worker)
            let age = layout.heartbeatAge(worker, nowMilliseconds: now)
            if let age, age * 1000 <= Double(heartbeatTimeout) { continue }
            let reason = age.map { "heartbeat \(Int($0))s old" } ?? "no heartbeat file"
            plan.lost.append((worker, reason, []))
        }
        return plan
    }

    /// SIGTERM to every process group at once, then SIGKILL to those still there when one shared
    /// `grace` is over: a hundred hung workers cost one grace, not a hundred. Only a process whose
    /// pid and start time match, and that belongs to the caller, is ever signalled. Returns the
    /// processes signalled.
    static func stopGroups(_ processes: [ProcessIdentity], grace: Int64) -> [ProcessIdentity] {
        let signalled = processes.filter { $0.signalGroup(SIGTERM) }
        let deadline = POSIX.monotonicNanoseconds() + UInt64(max(0, grace)) * 1_000_000
        for process in signalled {
            let now = POSIX.monotonicNanoseconds()
            let left = now >= deadline ? 0 : Int64((deadline - now) / 1_000_000)
            if !process.waitForEnd(milliseconds: left) { process.signalGroup(SIGKILL) }
        }
        return signalled
    }

    /// Regular files in `results/` and `state/finished/` last changed before `cutoff`. Both folders
    /// are opened through the coordination folder's descriptor: when either is a link (to a
    /// folder elsewhere) nothing in it is listed, and links or other non-regular entries inside
    /// are skipped (docs/decisions/020-no-path-tricks.md).
    static func expiredFiles(_ layout: CoordinationLayout, olderThan cutoff: Int64) -> [String] {
        var expired: [String] = []
        for folder in [layout.results, layout.finishedTasks] {
            for name in (try? layout.folder.entries(folder)) ?? [] where !name.hasPrefix(".") {
                let path = folder + "/" + name
                if let modified = layout.folder.modificationMilliseconds(path), modified < cutoff { expired.append(path) }
            }
        }
        return expired
    }

    /// Removes `expiredFiles`, each by `unlinkat` relative to its folder's descriptor.
    static func purgeExpired(_ layout: CoordinationLayout, olderThan cutoff: Int64) -> Int {
        expiredFiles(layout, olderThan: cutoff).filter { layout.folder.unlink($0) }.count
    }
}
