import CortexCore
import CortexProcesses
import CortexStorage

/// `cortex-reap`: the reaper's command line (docs/cli.md): reads its options, runs `Reaper` once
/// or every `--every D`, and prints what the run did.
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
                options: [dryRun, heartbeatTimeout, grace, resultTTL, archiveRetention, every, metricsOut, temporaryGrace],
                examples: [
                    "* * * * * cortex-reap --dir /srv/cortex/coordination >>/var/log/cortex-reap.log 2>&1   # crontab",
                    "\(name) --dry-run", "\(name) --json | jq .lost",
                    "\(name) --every 30s   # long-lived (examples/cortex-reap-every.service)",
                ]),
            body: reap)
    }

    static let dryRun = Flag("dry-run", "Say what would be done; change nothing.")
    static let heartbeatTimeout = Option.duration(
        "heartbeat-timeout", "D", "A heartbeat older than D means lost (default: config heartbeat_timeout, 60s).")
    static let grace = Option.duration("grace", "D", "Between SIGTERM and SIGKILL for what is left of a lost worker (default 5s).")
    static let resultTTL = Option.duration(
        "result-ttl", "D", "Purge results and finished-task files older than D (default: config result_ttl).")
    static let archiveRetention = Option.duration(
        "archive-retention", "D",
        "Remove archived journal segments older than D from journal/archive/ (default: config archive_retention, 7d).")
    static let every = Option.duration(
        "every", "D",
        "Run as a service: a run every D until SIGTERM or SIGINT (exit 0); for systemd Type=simple instead of cron."
    ).checked({ $0 >= 100 }, else: { "invalid --every '\(Values.printable($0))': at least 100ms" })
    static let metricsOut = Option.text(
        "metrics-out", "FILE", "Also write 'cortex metrics' to FILE atomically (node_exporter's textfile collector).")
    static let temporaryGrace = Option.duration(
        "temp-grace", "D", "Remove temp files (.NAME.tmp-PID-RANDOM) left by killed writers once older than D (default 10m).")

    static func reap(_ invocation: Invocation) throws(CortexError) -> Report {
        guard let interval = invocation.arguments[every], let every = invocation.arguments.text(of: every) else {
            return try reapOnce(invocation)
        }
        if invocation.arguments[dryRun] { throw .usage("--every runs the reaper; it cannot be a --dry-run") }
        // SIGTERM and SIGINT stay pending while a run works (blocked; supervisors it starts get
        // a clean mask from the spawner) and end the sleep between runs: a stop never cuts a run.
        WorkerSupervision.blockStopSignals()
        var runs = 0
        // One liveness lease for the service's life, kept alive by each run (decision 037).
        let lease = HostLease()
        while true {
            // Each run opens its own stores and lets them go when it ends (their descriptors
            // closed): a service that kept every run's store ran out of descriptors in an hour.
            var run = invocation
            run.session = CommandSession()
            let started = POSIX.monotonicNanoseconds()
            do throws(CortexError) {
                Output.print(
                    try reapOnce(run, period: runs == 0 ? interval : nil, lease: lease),
                    json: invocation.arguments[CommonOptions.json],
                    command: "cortex-reap")
                run.session.writeSnapshotsAfterReading()
                run.session.printWarnings(command: "cortex-reap")
            } catch {
                // The first run's failure (no folder, bad config) is the caller's; later ones wait for the next run.
                if runs == 0 { throw error }
                WorkerSupervision.warn("\(error.description); next run in \(every)")
            }
            runs += 1
            // Runs start every D, not D after the last one ended: another host's lapsed lease is
            // seen within one D, however long a run took (decision 037's bound).
            let elapsed = Int64((POSIX.monotonicNanoseconds() - started) / 1_000_000)
            if WorkerSupervision.waitForStop(milliseconds: max(0, interval - elapsed)) { break }
        }
        return Report(text: "", json: .null)
    }

    /// One reaper run (`cortex-reap` without `--every`). `period`: the service's interval, given
    /// on its first run, to warn when it is too long to keep a shared journal's host lease alive.
    /// `lease`: the service's liveness lease, kept between its runs.
    static func reapOnce(_ invocation: Invocation, period: Int64? = nil, lease: HostLease? = nil) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let dryRun = arguments[Self.dryRun]
        let store = try invocation.openStore()
        let heartbeatTimeout = arguments[Self.heartbeatTimeout] ?? store.config.heartbeatTimeoutMilliseconds
        if let period, store.config.hostID != nil, period * 2 > heartbeatTimeout {
            // The lease lasts heartbeat_timeout (decision 037): a run must come well within it.
            WorkerSupervision.warn(
                "--every \(Wording.duration(period)) is more than half the heartbeat timeout (\(Wording.duration(heartbeatTimeout))): this host's liveness lease may lapse between runs, and other hosts' reapers would take its workers for lost"
            )
        }
        let grace = arguments[Self.grace] ?? 5_000
        let resultTTL = arguments[Self.resultTTL] ?? store.config.resultRetentionMilliseconds
        let archiveRetention = arguments[Self.archiveRetention] ?? store.config.archiveRetentionMilliseconds
        let temporaryGrace = arguments[Self.temporaryGrace] ?? Reaper.defaultTemporaryGraceMilliseconds
        var options = Reaper.Options(config: store.config)
        options.dryRun = dryRun
        options.heartbeatTimeoutMilliseconds = heartbeatTimeout
        options.graceMilliseconds = grace
        options.resultRetentionMilliseconds = resultTTL
        options.archiveRetentionMilliseconds = archiveRetention
        options.temporaryGraceMilliseconds = temporaryGrace
        options.metricsOut = arguments[Self.metricsOut]
        options.hostLease = lease
        let result = try Reaper.run(store, options: options, now: POSIX.wallClockMilliseconds())
        var lines: [String] = []
        if !result.wouldReplace.isEmpty {
            lines.append("would replace lost pool members \(result.wouldReplace.joined(separator: " "))")
        }
        let verb = dryRun ? "would " : ""
        if let step = result.clockStep {
            lines.append(
                "the wall clock was stepped by \(step / 1000)s since the last run: no worker is lost by heartbeat age until one timeout after this run"
            )
        }
        for item in result.losses { lines.append("\(verb)declare \(item.worker) lost: \(item.reason)") }
        if !result.requeued.isEmpty { lines.append("re-queued \(result.requeued.joined(separator: " "))") }
        if !result.expired.isEmpty {
            lines.append("\(dryRun ? "would release" : "released") lapsed leases \(result.expired.joined(separator: " "))")
        }
        if !result.signalled.isEmpty {
            lines.append(
                "\(verb)stop leftover process group\(result.signalled.count == 1 ? "" : "s") \(result.signalled.joined(separator: " "))")
        }
        if !result.restarted.isEmpty { lines.append("restarted pool members as \(result.restarted.joined(separator: " "))") }
        if !result.promoted.isEmpty { lines.append("started queued \(result.promoted.joined(separator: " "))") }
        if result.queued > 0 {
            let held = result.queuedReason.map { ", held by \($0)" } ?? ""
            lines.append("\(result.queued) spawn\(result.queued == 1 ? "" : "s") still queued\(held)")
        }
        if !result.launched.isEmpty { lines.append("\(verb)launch supervisors for \(result.launched.joined(separator: " "))") }
        if result.purged > 0 { lines.append("\(verb)purge \(result.purged) result.expired result file\(result.purged == 1 ? "" : "s")") }
        if !result.linked.isEmpty { lines.append("\(verb)link the results of \(result.linked.joined(separator: " "))") }
        if result.removedTemporaries > 0 {
            lines.append(
                "\(verb)remove \(result.removedTemporaries) temp file\(result.removedTemporaries == 1 ? "" : "s") left by killed writers")
        }
        if result.compaction.rotated { lines.append("\(verb)rotate the live journal segment") }
        if !result.compaction.archived.isEmpty {
            lines.append(
                "\(verb)archive journal segment\(result.compaction.archived.count == 1 ? "" : "s") \(result.compaction.archived.map(String.init).joined(separator: " "))"
            )
        }
        if !result.compaction.purged.isEmpty {
            lines.append(
                "removed archived segment\(result.compaction.purged.count == 1 ? "" : "s") \(result.compaction.purged.map(String.init).joined(separator: " ")) (past retention)"
            )
        }
        lines.append(dryRun ? "dry run: nothing changed" : "reaped: \(result.lost.count) lost, snapshot and views written")
        func strings(_ items: [String]) -> JSONValue { .array(items.map { .string($0) }) }
        return Report(
            text: lines.joined(separator: "\n"),
            json: .object([
                "archived": .array(result.compaction.archived.map { JSONValue.int(Int64($0)) }), "dry_run": .bool(dryRun),
                "archives_removed": .array(result.compaction.purged.map { JSONValue.int(Int64($0)) }),
                "clock_step_ms": .optional(result.clockStep), "expired": strings(result.expired), "launched": strings(result.launched),
                "linked_results": strings(result.linked),
                "lost": strings(result.lost), "promoted": strings(result.promoted),
                "purged": .int(Int64(result.purged)), "queued": .int(Int64(result.queued)), "requeued": strings(result.requeued),
                "restarted": strings(result.restarted),
                "rotated": .bool(result.compaction.rotated), "temp_files_removed": .int(Int64(result.removedTemporaries)),
                "signalled": strings(result.signalled),
            ]))
    }
}
