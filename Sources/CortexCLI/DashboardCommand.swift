import CortexCore
import CortexStorage

/// `cortex dashboard`: writes the self-contained HTML page (docs/decisions/016-dashboard.md).
public enum DashboardTool {
    /// How many journal events a page shows unless `--events` says otherwise.
    public static let defaultEventCount = 50

    /// The command.
    public static let command = Command(
        CommandSpec(
            name: "cortex dashboard",
            abstract: "Write a self-contained HTML dashboard: worker grid, queue, token gauges, latency, last events.",
            options: [out, embed, events, follow],
            examples: [
                "cortex dashboard                      # DIR/dashboard.html and DIR/events.json",
                "cd coordination && python3 -m http.server --bind 127.0.0.1 8080   # then open http://127.0.0.1:8080/dashboard.html",
                "cortex dashboard --embed --out /tmp/cortex-snapshot.html        # a frozen copy to open from disk or mail",
                "cortex dashboard --follow &           # a served page's event list follows the journal too",
            ]),
        body: run)

    static let out = Option.text("out", "FILE", "Where to write the page (default: DIR/dashboard.html).")
    static let embed = Flag("embed", "A frozen snapshot: the page shows the data embedded now and never reloads.")
    static let events = Option.count("events", "N", "How many of the last journal events to include (default 50).")
    static let follow = Flag("follow", "Then keep events.json beside the page fresh (at most once a second) until stopped.", short: "f")

    static func run(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let eventCount = Int(arguments[Self.events] ?? Int64(defaultEventCount))
        let frozen = arguments[Self.embed]
        if frozen && arguments[Self.follow] { throw .usage("--follow keeps a live page's events.json fresh: not with --embed") }
        let store = try invocation.openStore()
        let layout = store.layout
        let out = arguments[Self.out] ?? layout.root + "/dashboard.html"
        let now = POSIX.wallClockMilliseconds()
        let journal: any Journal
        let start: JournalPosition
        var recent = RecentEvents(capacity: eventCount)
        if case .etcd(let settings) = store.config.backend {
            // On etcd: the records compaction kept (one snapshot interval or so), the last of
            // them kept as they are read.
            let shared = try CoordinationStore.etcdJournal(settings)
            journal = shared
            start = try shared.firstKeptPosition()
        } else {
            let files = try CoordinationStore.existingJournal(root: layout.root)
            journal = files
            // Only the last records: found by scanning back from the end, never by reading the whole
            // journal (whose oldest segments may be archived and purged).
            start = try JournalTail.start(
                of: files, near: store.position, count: eventCount, sinceMilliseconds: nil, matches: { _ in true })
        }
        var summary = try journal.readForward(from: start) { (record, _) throws(CortexError) in recent.append(record) }
        let events = recent.json
        let snapshot = Dashboard.Snapshot(
            budget: Views.budget(store.state, nowMilliseconds: now),
            taskQueue: Views.taskQueue(store.state, nowMilliseconds: now),
            workerPool: Views.workerPool(
                store.state, maxWorkers: store.config.maxWorkers, nowMilliseconds: now,
                heartbeatAge: { layout.heartbeatAge($0, nowMilliseconds: now) }),
            metrics: readMetrics(Dashboard.metricsFileName, in: layout.folder), events: events, directory: layout.root,
            generatedMilliseconds: now, frozen: frozen)
        // A live page reads its events from events.json beside it; a frozen one needs none.
        var eventsFile: String?
        if !frozen {
            let path = directory(of: out) + "/" + Dashboard.eventsFileName
            try AtomicFile.replace(
                path, with: Dashboard.eventsDocument(events, nowMilliseconds: now).prettySerialized(), durability: .processCrash)
            eventsFile = path
        }
        try AtomicFile.replace(out, with: Dashboard.page(snapshot), durability: .processCrash)
        if let eventsFile, arguments[Self.follow] {
            Terminal.writeOut("wrote \(out); following the journal into \(eventsFile)\n")
            let watcher = try journal.makeWaiter()
            while true {
                _ = watcher.wait(timeoutMilliseconds: 1000)
                let before = summary.end
                summary = try journal.readForward(from: summary.end) { (record, _) throws(CortexError) in recent.append(record) }
                guard summary.end != before else { continue }
                let events = Dashboard.eventsDocument(recent.json, nowMilliseconds: POSIX.wallClockMilliseconds())
                try AtomicFile.replace(eventsFile, with: events.prettySerialized(), durability: .processCrash)
                POSIX.sleep(milliseconds: 1000)  // at most one rewrite a second, however busy the journal
            }
        }
        let workers = store.state.workers.all.count
        var text = "wrote \(out): \(workers) worker\(workers == 1 ? "" : "s"), \(store.state.tasks.created) tasks, \(events.count) events"
        text += frozen ? " (frozen snapshot)" : "\nserve it live: cd \(directory(of: out)) && python3 -m http.server --bind 127.0.0.1 8080"
        return Report(
            text: text,
            json: .object([
                "events": .int(events.count), "events_file": .optional(eventsFile), "frozen": .bool(frozen), "out": .string(out),
                "tasks": .int(store.state.tasks.created), "workers": .int(workers),
            ]))
    }

    /// The last `capacity` records read, oldest first.
    struct RecentEvents {
        let capacity: Int
        private(set) var records: [Record] = []

        init(capacity: Int) { self.capacity = capacity }

        mutating func append(_ record: Record) {
            guard capacity > 0 else { return }
            if records.count == capacity { records.removeFirst() }
            records.append(record)
        }

        /// The records in `cortex tail --json`'s shape (the same formatter, so the same fields).
        var json: [JSONValue] { records.map { EventFormatter.json($0) } }
    }

    /// `metrics.json` when it exists and parses; nil means "no metrics yet" (the page shows –).
    static func readMetrics(_ name: String, in folder: FolderDescriptor) -> JSONValue? {
        guard let bytes = try? folder.readFile(name, limit: FileLimits.metrics), let value = try? JSONValue.parse(bytes),
            value.objectMembers != nil
        else {
            return nil
        }
        return value
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
