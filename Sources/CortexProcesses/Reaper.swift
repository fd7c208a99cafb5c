import CortexCore
import CortexStorage

/// The reaper's work, apart from its command line (`cortex-reap`, `cortex reap`): observes
/// processes and heartbeat files, appends what it saw as evidence (`worker.lost`), stops what is
/// left of lost workers (only processes whose pid and start time match and that belong to the
/// worker's requester), restarts lost pool members, starts queued spawns that fit, releases
/// lapsed leases, purges expired results, clears the debris of killed writers, compacts the
/// journal, and writes a snapshot and the views. Idempotent: the journal decides, so two
/// reapers at once double nothing (docs/design.md; decisions 021, 022 and 026).
public enum Reaper {
    /// What one run may do, and its limits.
    public struct Options: Sendable {
        /// Say what would be done; change nothing.
        public var dryRun = false
        /// A heartbeat older than this means lost.
        public var heartbeatTimeoutMilliseconds: Int64
        /// Between SIGTERM and SIGKILL for what is left of a lost worker.
        public var graceMilliseconds: Int64 = 5_000
        /// Results and finished-task files older than this are purged.
        public var resultRetentionMilliseconds: Int64
        /// Archived journal segments older than this are removed.
        public var archiveRetentionMilliseconds: Int64
        /// Temp files left by killed writers are removed once older than this.
        public var temporaryGraceMilliseconds: Int64 = Reaper.defaultTemporaryGraceMilliseconds
        /// Also write the Prometheus text here.
        public var metricsOut: String?
        /// The host's liveness lease kept between the runs of a long-lived reaper (`--every`);
        /// nil: each run grants one (docs/decisions/037).
        public var hostLease: HostLease?

        /// The options `config` implies: its heartbeat timeout, result TTL and archive retention.
        public init(config: CortexConfig) {
            heartbeatTimeoutMilliseconds = config.heartbeatTimeoutMilliseconds
            resultRetentionMilliseconds = config.resultRetentionMilliseconds
            archiveRetentionMilliseconds = config.archiveRetentionMilliseconds
        }
    }

    /// What one run did (or, in a dry run, would do).
    public struct Result: Sendable {
        /// The run changed nothing.
        public var dryRun: Bool
        /// Each worker it found lost (declared, or would declare) and why.
        public var losses: [(worker: String, reason: String)]
        /// The workers this run's records ended.
        public var lost: [String]
        /// Tasks given back by those losses.
        public var requeued: [String]
        /// Allocations whose lease lapsed, released.
        public var expired: [String]
        /// Pids of the process groups stopped.
        public var signalled: [String]
        /// Replacements of lost pool members.
        public var restarted: [String]
        /// Queued spawns started.
        public var promoted: [String]
        /// Workers whose supervisor was started.
        public var launched: [String]
        /// Lost pool members a dry run would replace.
        public var wouldReplace: [String]
        /// Expired result files removed.
        public var purged: Int
        /// Tasks whose result link was repaired.
        public var linked: [String]
        /// Temp files of killed writers removed.
        public var removedTemporaries: Int
        /// What the journal's compaction did.
        public var compaction: CoordinationStore.Compaction
        /// How far the wall clock was stepped since the last run, if it was.
        public var clockStep: Int64?
        /// Spawns still queued after the run.
        public var queued: Int
        /// What holds the head of that queue, when the fold said.
        public var queuedReason: String?
    }

    /// One run on `store` at wall-clock time `now`.
    /// - Throws: `CortexError` when a record could not be appended; later steps (views, metrics,
    ///   compaction) only warn through `store.warn`.
    public static func run(_ store: CoordinationStore, options: Options, now: Int64) throws(CortexError) -> Result {
        let layout = store.layout
        let dryRun = options.dryRun
        let heartbeatTimeout = options.heartbeatTimeoutMilliseconds
        let grace = options.graceMilliseconds
        let resultTTL = options.resultRetentionMilliseconds
        let archiveRetention = options.archiveRetentionMilliseconds
        let temporaryGrace = options.temporaryGraceMilliseconds
        // Heartbeat ages: against a probe touched now (the file system's clock), and never across
        // a wall-clock step (FolderClock).
        let clock = try clockReading(layout, dryRun: dryRun, wallNow: now)
        // A journal shared by hosts: say this host is alive, then read which hosts are (037).
        let hosts = try HostScope.announceAndSight(
            store, ttlMilliseconds: heartbeatTimeout, announce: !dryRun, lease: options.hostLease)
        let plan = observe(
            store, now: clock.folderNow, heartbeatTimeout: heartbeatTimeout, stampedNoEarlierThan: clock.stepAt, hosts: hosts)

        var lost: [String] = []
        var requeued: [String] = []
        var signalled: [String] = []
        var restarted: [String] = []
        var launched: [String] = []
        var promoted: [String] = []
        var expired: [String] = []
        var purged = 0
        var linked: [String] = []
        var removedTemporaries = 0
        var compaction = CoordinationStore.Compaction()
        var wouldReplace: [String] = []
        if !dryRun {
            // Every loss first, so the journal gives their tasks back before any slow step (stopping
            // leftovers, starting replacements): recovery from a mass kill is one pass of appends.
            // What still runs here of workers another host's reaper declared lost (this host was
            // taken for dead): the fold already refuses their records; stop them too.
            var leftovers: [Leftover] = plan.stale
            for item in plan.lost {
                let submission = try store.submit(.workerLost(worker: item.worker, reason: item.reason, host: item.host))
                guard case .requeued(let tasks) = submission.outcome else { continue }
                // Another reaper may have declared it lost first: then this record changed nothing.
                let endedByThisRecord = store.state.workers.worker(item.worker)?.endRecord == submission.record.id
                guard endedByThisRecord || !tasks.isEmpty else { continue }
                // Lost for good (no replacement owed): its request can never start anything again.
                WorkerSupervision.retireRequest(of: item.worker, endedBy: submission.record.id, in: store)
                lost.append(item.worker)
                requeued += tasks
                leftovers += item.leftover
            }
            // Lapsed leases: one record, and the fold releases every allocation whose lease ended
            // before its time (a renewal that lands first keeps its allocation).
            if store.state.budget.allocations.leased.contains(where: { ($0.leaseEndsMilliseconds ?? Int64.max) <= now }) {
                let before = store.state.budget.allocations.leased.map(\.id)
                _ = try store.submit(.budgetExpire)
                expired = before.filter { store.state.budget.allocations[$0] == nil }.sorted()
            }
            if !lost.isEmpty || !expired.isEmpty { publishViewsAfterRecording(store, now: now) }
            // The pool members owed a replacement, by this run's losses or by an earlier reaper that
            // died before replacing them. What is left of them goes first (pid and start time
            // checked), then the replacement: the fold lets only the first `worker.replace` of
            // each lost worker spawn, so two reapers never replace one twice.
            // Only this host's: a lost worker's request file, and so its replacement, is on its host.
            let owed = store.state.workers.owedReplacements.filter { $0.spec.host == store.config.hostID }
            leftovers += owed.flatMap { stoppable($0.leftover, worker: $0.worker, spec: $0.spec, layout: layout) }
            signalled = stopGroups(Array(Set(leftovers)), grace: grace).map { "\($0.process.pid)" }
            for replacement in owed {
                let respawn = try store.submit(
                    .worker(.replace(worker: replacement.worker, evidence: MachineEvidence.observe(store.config))))
                if case .spawned(let worker, _) = respawn.outcome { restarted.append(worker) }
                if case .spawnQueued(let worker, _) = respawn.outcome { restarted.append(worker) }
                launched += try WorkerSupervision.launchWorkers(grantedBy: respawn.record.id, in: store)
            }
            promoted = try WorkerSupervision.startQueuedThatFit(store)
            launched += promoted
            var startable: [WorkerEntry] = []
            for worker in plan.relaunch {
                guard worker.spec.request.flatMap({ WorkerRequest.owner($0, in: layout) }) == nil else {
                    startable.append(worker)
                    continue
                }
                // Nothing can ever start it (no request file): it ends here, stopped first so no
                // replacement is owed, instead of holding a place for good.
                _ = try store.submit(.worker(.stop(worker: worker.id)))
                let ended = try store.submit(.workerLost(worker: worker.id, reason: "no request file: nothing can start it"))
                if case .requeued(let tasks) = ended.outcome, store.state.workers.worker(worker.id)?.endRecord == ended.record.id {
                    lost.append(worker.id)
                    requeued += tasks
                }
            }
            launched += try WorkerSupervision.launch(startable, layout: layout)
            purged = purgeExpired(layout, olderThan: now - resultTTL)
            retireOrphanRequests(store, olderThan: now - orphanRequestGraceMilliseconds)
            // Debris of kill -9: result links of completions whose writer died after the record,
            // and temp files no writer will rename (by age on the folder's clock: pids recycle).
            linked = Debris.repairResultLinks(store)
            removedTemporaries = Debris.removeStaleTemporaryFiles(layout, modifiedBefore: clock.folderNow - temporaryGrace)
            // From here on the records are in: a full disk makes the derived files stale, not the run failed.
            do {
                compaction = try store.compactJournal(
                    rotateAboveBytes: store.config.reaperRotateBytes, retentionMilliseconds: archiveRetention, nowMilliseconds: now)
            } catch {
                store.warn("journal not compacted: \(error.description)")
            }
            checkSealedSegments(store)
            publishViewsAfterRecording(store, now: now)
            do {
                try recordRun(layout, at: now, lost: lost.count, clock: clock, mode: store.permissions.file(.shared))
                // metrics.json beside the views (cortex dashboard reads it), and the Prometheus text if asked.
                let metrics = MetricsReport(store.state, capacity: store.config.maxWorkers, nowMilliseconds: now)
                try Reaper.writeMetrics(
                    metrics.json.jsonText + "\n", to: layout.root + "/metrics.json", mode: store.permissions.file(.shared))
                if let metricsOut = options.metricsOut {
                    try Reaper.writeMetrics(metrics.prometheusText, to: metricsOut)
                }
            } catch {
                store.warn("state/reaper.json or the metrics not written: \(error.description)")
            }
        } else {
            lost = plan.lost.map(\.worker)
            expired = store.state.budget.allocations.leased.filter { ($0.leaseEndsMilliseconds ?? Int64.max) <= now }.map(\.id).sorted()
            signalled = (plan.lost.flatMap(\.leftover) + plan.stale).map { "\($0.process.pid)" }
            launched = plan.relaunch.map(\.id)
            wouldReplace = store.state.workers.owedReplacements.filter { $0.spec.host == store.config.hostID }.map(\.worker)
            purged = expiredFiles(layout, olderThan: now - resultTTL).count
            linked = Debris.unlinkedResults(store).map(\.task)
            removedTemporaries = Debris.staleTemporaryFiles(layout, modifiedBefore: clock.folderNow - temporaryGrace).count
            compaction = try store.compactionPreview(rotateAboveBytes: store.config.reaperRotateBytes, nowMilliseconds: now)
        }
        return Result(
            dryRun: dryRun, losses: plan.lost.map { ($0.worker, $0.reason) }, lost: lost, requeued: requeued, expired: expired,
            signalled: signalled, restarted: restarted, promoted: promoted, launched: launched, wouldReplace: wouldReplace,
            purged: purged, linked: linked, removedTemporaries: removedTemporaries, compaction: compaction, clockStep: clock.step,
            queued: store.state.workers.queue.count,
            queuedReason: store.state.workers.queue.first.flatMap { store.state.workers.live[$0]?.queuedReason })
    }

    /// An audited folder of files: checks the segments sealed since the last run (decision 044);
    /// a problem is a warning here and `cortex status` asks for attention until a run is clean.
    static func checkSealedSegments(_ store: CoordinationStore) {
        guard store.config.audit, let journal = store.journal as? FileJournal else { return }
        do {
            if let problem = try AuditProgress.advance(journal, layout: store.layout, permissions: store.permissions) {
                store.warn("the audit of the sealed journal failed at \(problem) (run 'cortex verify --audit')")
            }
        } catch {
            store.warn("the sealed journal was not audited: \(error.description)")
        }
    }

    /// Writes metrics text to `path` atomically (node_exporter's textfile collector must never
    /// read half a file). A file the user names (`--out`) follows the umask; the reaper's
    /// `metrics.json` in the folder gets the folder's mode for shared content.
    public static func writeMetrics(_ text: String, to path: String, mode: CreationMode = .umask) throws(CortexError) {
        try AtomicFile.replace(path, with: Array(text.utf8), durability: .processCrash, mode: mode)
    }

    /// What `observe` found: workers to declare lost (with what is left of them), and granted
    /// workers whose launcher died before starting a supervisor.
    public struct Plan: Sendable {
        /// Each worker to declare lost, why, the processes of it that may be stopped, and the
        /// host it ran or claimed on (nil on a folder of files).
        public var lost: [(worker: String, reason: String, leftover: [Leftover], host: String?)] = []
        /// Processes still running here of this host's workers that the fold already ended as
        /// lost (another host's reaper took this host for dead): stopped, never restarted.
        public var stale: [Leftover] = []
        /// Granted workers with no supervisor yet, long enough that their launcher is taken for dead.
        public var relaunch: [WorkerEntry] = []
    }

    /// A process recorded for a worker that may be stopped: alive with the recorded start time,
    /// running as the worker's requester (the owner of its request file; root's own processes
    /// only for root's workers), and marked as that worker's (`ProcessIdentity.isMarked`).
    public struct Leftover: Hashable, Sendable {
        /// The process (pid and start time).
        public var process: ProcessIdentity
        /// Its worker's requester: the only user whose processes are signalled.
        public var owner: UInt32
    }

    /// The processes of `identities` recorded for worker `worker` (spec `spec`) that may be
    /// stopped (`Leftover`); none when its requester is unknown (no request file).
    public static func stoppable(_ identities: [ProcessIdentity], worker: String, spec: WorkerSpec, layout: CoordinationLayout)
        -> [Leftover]
    {
        guard !identities.isEmpty, let name = spec.request, let owner = WorkerRequest.owner(name, in: layout) else { return [] }
        let caller = POSIX.userID
        guard caller == owner || caller == 0 else { return [] }
        return identities.filter { $0.isAlive(ownedBy: owner) && $0.isMarked(asWorker: worker) }.map {
            Leftover(process: $0, owner: owner)
        }
    }

    /// When the reaper last ran and what it found, for `cortex status`.
    public struct LastRun: Sendable {
        /// When it ran (folder time, epoch milliseconds).
        public var milliseconds: Int64
        /// How many workers it declared lost.
        public var lost: Int64
        /// `FolderClock.bootEpochMilliseconds()` at that run (nil from older versions).
        public var bootEpochMilliseconds: Int64?
        /// The folder time of the run that last saw the wall clock stepped, if any.
        public var clockStepAtMilliseconds: Int64?
    }

    /// How long a temp file may sit before the reaper takes it for a killed writer's.
    public static let defaultTemporaryGraceMilliseconds: Int64 = 10 * 60_000

    /// What this run knows of the clocks (FolderClock).
    struct ClockReading {
        /// "Now" on the folder's clock: the probe's modification time (the wall clock in a dry run).
        var folderNow: Int64
        /// The wall clock's offset from boot time now.
        var bootEpoch: Int64
        /// How far the wall clock was stepped since the last run, if it was.
        var step: Int64?
        /// Heartbeats stamped before this folder time have an unknown age: they count as stamped then.
        var stepAt: Int64?
    }

    static func clockReading(_ layout: CoordinationLayout, dryRun: Bool, wallNow: Int64) throws(CortexError) -> ClockReading {
        let folderNow = dryRun ? wallNow : FolderClock.probe(layout) ?? wallNow
        let bootEpoch = FolderClock.bootEpochMilliseconds()
        let last = lastRun(layout)
        let step = FolderClock.step(from: last?.bootEpochMilliseconds, to: bootEpoch)
        return ClockReading(
            folderNow: folderNow, bootEpoch: bootEpoch, step: step, stepAt: step != nil ? folderNow : last?.clockStepAtMilliseconds)
    }

    /// `state/reaper.json`: one small file rewritten by every run (no journal traffic).
    static func lastRunPath(_ layout: CoordinationLayout) -> String { layout.stateFolder + "/reaper.json" }

    static func recordRun(_ layout: CoordinationLayout, at now: Int64, lost: Int, clock: ClockReading, mode: CreationMode)
        throws(CortexError)
    {
        let json = JSONValue.object([
            "at": .string(ISOTime.format(milliseconds: now)), "at_ms": .int(now), "boot_epoch_ms": .int(clock.bootEpoch),
            "clock_step_at_ms": .optional(clock.stepAt), "lost": .int(lost), "pid": .int(Int64(POSIX.processID)),
        ])
        try AtomicFile.replace(
            lastRunPath(layout), in: layout.folder, with: Array((json.jsonText + "\n").utf8), durability: .processCrash,
            mode: mode)
    }

    /// The last run recorded, or nil when the reaper never ran (or the file is unreadable).
    public static func lastRun(_ layout: CoordinationLayout) -> LastRun? {
        guard let bytes = try? layout.folder.readFile(lastRunPath(layout), limit: FileLimits.smallFile),
            let json = try? JSONValue.parse(bytes),
            let at = json["at_ms"]?.intValue, Limits.isRecordTime(at)
        else { return nil }
        return LastRun(
            milliseconds: at, lost: json["lost"]?.intValue ?? 0, bootEpochMilliseconds: json["boot_epoch_ms"]?.intValue,
            clockStepAtMilliseconds: json["clock_step_at_ms"]?.intValue)
    }

    /// What the machine shows about each worker the state thinks is alive. A heartbeat stamped
    /// before `stampedNoEarlierThan` (the run that saw the wall clock stepped) counts as stamped
    /// then: its own time is on the other side of the step.
    ///
    /// Where the journal is shared by hosts (decision 037), only this host's workers and
    /// claimers are judged by processes and heartbeat files; another host's are judged by its
    /// liveness in `hosts`: all of them are lost once that host is known and no longer alive.
    public static func observe(
        _ store: CoordinationStore, now: Int64, heartbeatTimeout: Int64, stampedNoEarlierThan stepAt: Int64? = nil,
        hosts: [HostSighting] = []
    ) -> Plan {
        var plan = Plan()
        let here = store.config.hostID
        let downHosts = Set(hosts.filter { !$0.alive && $0.host != here }.map(\.host))
        func hostDown(_ host: String?) -> String? {
            guard let host, downHosts.contains(host) else { return nil }
            return "host \(host) is down (its reaper's liveness lease expired)"
        }
        let layout = store.layout
        func heartbeatAge(_ worker: String) -> Double? {
            guard let touched = layout.folder.modificationMilliseconds(layout.heartbeat(worker)) else { return nil }
            return FolderClock.age(heartbeatMilliseconds: max(touched, stepAt ?? touched), nowMilliseconds: now)
        }
        for worker in store.state.workers.live.values.sorted(by: { $0.id < $1.id }) where worker.status.holdsCapacity {
            guard worker.spec.host == here else {
                if let reason = hostDown(worker.spec.host) { plan.lost.append((worker.id, reason, [], worker.spec.host)) }
                continue
            }
            let leftover = stoppable([worker.process].compactMap { $0 }, worker: worker.id, spec: worker.spec, layout: layout)
            guard let supervisor = worker.supervisor else {
                // Granted, but its launcher died (or was not its requester) before starting a
                // supervisor: start one (a second one, if the first is merely slow, loses the
                // worker.supervise race and exits).
                if now - worker.requestedMilliseconds > 2_000 { plan.relaunch.append(worker) }
                continue
            }
            if !supervisor.isAlive {
                plan.lost.append((worker.id, "supervisor pid \(supervisor.pid) is gone", leftover, here))
            } else if let age = heartbeatAge(worker.id), age * 1000 > Double(heartbeatTimeout) {
                let hung = stoppable([supervisor], worker: worker.id, spec: worker.spec, layout: layout)
                plan.lost.append((worker.id, "heartbeat \(Int(age))s old (supervisor pid \(supervisor.pid) hung)", leftover + hung, here))
            }
        }
        // Claimers that are not supervised workers: their heartbeat file is their only sign of
        // life, on their own host. One claimer id may claim on several hosts: judged per host.
        var seen = Set(store.state.workers.live.values.map { "\($0.id) \($0.spec.host ?? "")" })
        for task in store.state.tasks.running {
            guard let worker = task.worker, seen.insert("\(worker) \(task.host ?? "")").inserted else { continue }
            guard task.host == here else {
                if let reason = hostDown(task.host) { plan.lost.append((worker, reason, [], task.host)) }
                continue
            }
            let age = heartbeatAge(worker)
            if let age, age * 1000 <= Double(heartbeatTimeout) { continue }
            let reason = age.map { "heartbeat \(Int($0))s old" } ?? "no heartbeat file"
            plan.lost.append((worker, reason, [], here))
        }
        // This host's workers that the fold ended as lost while their processes still run here
        // (a returning host: another reaper declared them lost). Only on a shared journal, where
        // another host can do that; pid, start time, requester and mark checked as always.
        if here != nil {
            for worker in store.state.workers.recent where worker.spec.host == here && worker.status == .lost {
                let identities = [worker.supervisor, worker.process].compactMap { $0 }
                plan.stale += stoppable(identities, worker: worker.id, spec: worker.spec, layout: layout)
            }
        }
        return plan
    }

    /// `publishViews` after the run's records, every list brought up to date (a busy budget's
    /// `token-allocations.json` lags its calls by at most a second, then by at most one reaper
    /// period): a failure is a warning (stale views), not the run's outcome.
    public static func publishViewsAfterRecording(_ store: CoordinationStore, now: Int64) {
        do { try store.publishViews(nowMilliseconds: now, everyList: true) } catch {
            store.warn("the views are stale: \(error.description) (the records are in the journal; the next writer republishes them)")
        }
    }

    /// SIGTERM to every process group at once, then SIGKILL to those still there when one shared
    /// `grace` is over: a hundred hung workers cost one grace, not a hundred. Only a process whose
    /// pid and start time match, and that runs as its worker's requester, is ever signalled
    /// (root signals only the requester's processes of the group). Returns the processes signalled.
    public static func stopGroups(_ leftovers: [Leftover], grace: Int64) -> [Leftover] {
        let signalled = leftovers.filter { $0.process.signalGroup(.terminate, ownedBy: $0.owner) }
        let deadline = POSIX.monotonicNanoseconds() + UInt64(max(0, grace)) * 1_000_000
        for leftover in signalled {
            let now = POSIX.monotonicNanoseconds()
            let left = now >= deadline ? 0 : Int64((deadline - now) / 1_000_000)
            if !leftover.process.waitForEnd(milliseconds: left) { leftover.process.signalGroup(.kill, ownedBy: leftover.owner) }
        }
        return signalled
    }

    /// How old a request file no worker names must be before the reaper removes it: far longer
    /// than the moment between a spawn writing its request and appending the record naming it.
    static let orphanRequestGraceMilliseconds: Int64 = 10 * 60_000

    /// Removes request files that no live worker or owed replacement names and that are older
    /// than `cutoff`: left by a spawn killed before its record, or by a worker's last supervisor
    /// killed before it removed the request. Nothing can then be started from them by a
    /// replayed record (docs/decisions/022-requester-rights.md).
    static func retireOrphanRequests(_ store: CoordinationStore, olderThan cutoff: Int64) {
        let layout = store.layout
        for name in (try? layout.folder.entries(layout.requests)) ?? [] where WorkerRequest.isValidName(name) {
            guard store.state.workers.holder(ofRequest: name) == nil,
                let modified = layout.folder.modificationMilliseconds(layout.requests + "/" + name), modified < cutoff
            else { continue }
            WorkerRequest.remove(name, in: layout)
        }
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
