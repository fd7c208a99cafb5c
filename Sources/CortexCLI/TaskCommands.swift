import CortexCore
import CortexStorage

/// `cortex-task`: a priority task queue with fenced claims, retries and dead letters (docs/cli.md).
public enum TaskTool {
    /// The tool and its commands.
    public static let tool = ToolSpec(
        name: "cortex-task",
        abstract: "A priority task queue with fenced claims, retries and dead letters.",
        commands: commands(prefix: "cortex-task"),
        examples: [
            "id=$(cortex-task create --type build --priority high --description 'compile module A')",
            "task=$(cortex-task claim --worker w-1 --type build --wait 30s) && claim=$(jq -r .claim <<<\"$task\")",
            "cortex-task complete task-1.122 --claim 1 --result '{\"ok\":true}'",
            "jq '.counts' coordination/task-queue.json",
        ])

    /// The commands, named under `prefix` (`cortex-task` or `cortex task`).
    public static func commands(prefix: String) -> [Command] {
        [
            Command(
                CommandSpec(
                    name: "\(prefix) create", abstract: "Add a task; prints its id (the same id again for the same --key).",
                    options: [
                        Create.type, Create.description, Create.priority, Create.tokens, Create.timeout, Create.maxAttempts,
                        Create.backoff, Create.requires, Create.tenant, Create.key, Create.contextFile,
                    ],
                    examples: [
                        "\(prefix) create --type build --priority high --description 'compile module A'",
                        "\(prefix) create --type train --requires gpu,region=eu --max-attempts 5 --key nightly-2026-11-23",
                    ]),
                body: create),
            Command(
                CommandSpec(
                    name: "\(prefix) claim",
                    abstract:
                        "Take the next task; prints it as one JSON line with its \"claim\" token (exit 1 if none; 75 if the only tasks waiting are held back by their tenants' quotas).",
                    options: [Claim.worker, Claim.type, Claim.capability, Claim.wait],
                    examples: [
                        "\(prefix) claim --worker w-1 --type build --wait 5m",
                        "\(prefix) claim --worker gpu-1 --capability gpu --capability region=eu",
                    ]),
                body: claim),
            Command(
                CommandSpec(
                    name: "\(prefix) heartbeat", abstract: "Keep a claim alive (exit 1 if the lease was lost).",
                    positionals: [Leased.task], options: [Leased.claim],
                    examples: ["while sleep 20; do \(prefix) heartbeat \"$task\" --claim \"$claim\" || break; done &"]),
                body: heartbeat),
            Command(
                CommandSpec(
                    name: "\(prefix) complete", abstract: "Finish a task with its result (exit 1 if the claim is stale).",
                    positionals: [Leased.task], options: [Leased.claim, Complete.result, Complete.resultFile, Complete.tokensUsed],
                    examples: ["\(prefix) complete task-1.122 --claim 1 --result '{\"lines\":42}'"]),
                body: complete),
            Command(
                CommandSpec(
                    name: "\(prefix) fail",
                    abstract: "Report a failed attempt: retried with backoff until --max-attempts, then dead-lettered.",
                    positionals: [Leased.task], options: [Leased.claim, Fail.error, Fail.noRetry],
                    examples: ["\(prefix) fail task-1.122 --claim 1 --error 'exit 2'"]),
                body: fail),
            Command(
                CommandSpec(
                    name: "\(prefix) cancel",
                    abstract:
                        "Cancel tasks that have not finished: the ids given, or every task of --type (only pending ones with --status pending). Already cancelled is fine; 66 for unknown ids, 1 if any had finished otherwise.",
                    positionals: [Cancel.tasks], options: [Cancel.type, Cancel.status],
                    examples: [
                        "\(prefix) cancel task-1.122", "\(prefix) cancel task-1.122 task-1.190 task-2.4",
                        "\(prefix) cancel --type build --status pending",
                    ]),
                body: cancel),
            Command(
                CommandSpec(
                    name: "\(prefix) retry",
                    abstract:
                        "Bring dead tasks back as pending under their own ids, with fresh attempts: the ids given, or every dead task with --dead. Already pending is fine; 66 for unknown ids, 1 if any is not dead.",
                    positionals: [Retry.tasks], options: [Retry.dead, Retry.type],
                    examples: ["\(prefix) retry task-1.122", "\(prefix) retry --dead", "\(prefix) retry --dead --type build"]),
                body: retry),
            Command(
                CommandSpec(
                    name: "\(prefix) list", abstract: "List tasks (all, or those in one status or of one type).",
                    options: [List.status, List.type],
                    examples: [
                        "\(prefix) list --status pending", "\(prefix) list --type build --status dead",
                        "\(prefix) list --status dead --json | jq -r '.tasks[].id'",
                    ]),
                body: list),
            Command(
                CommandSpec(
                    name: "\(prefix) wait",
                    abstract:
                        "Block (no polling: the journal watcher) until the tasks named, --all tasks or all of --type have finished. 0 all done, 1 any dead or cancelled (named on stderr), 75 on --timeout, 66 for unknown ids. A live progress line on stderr when it is a terminal.",
                    positionals: [Wait.tasks], options: [Wait.all, Wait.type, Wait.timeout],
                    examples: [
                        "\(prefix) wait --all --timeout 2h || echo \"not all done: $?\"",
                        "\(prefix) wait \"$id\" && cat \"coordination/results/$id.json\"",
                        "\(prefix) wait --type build --json | jq .counts",
                    ]),
                body: wait),
            Command(
                CommandSpec(
                    name: "\(prefix) show",
                    abstract:
                        "Show one task; a waiting one with its queue position and estimated start (list scheduling over max_workers slots with each type's P50 run time; P95 for the late bound).",
                    positionals: [Show.task],
                    examples: [
                        "\(prefix) show task-1.122 --json | jq .status", "\(prefix) show task-2.4096 --json | jq .wait.estimated_start",
                    ]),
                body: show),
            Command(
                CommandSpec(
                    name: "\(prefix) estimate",
                    abstract:
                        "Expected duration (run time P50/P95/P99, mean) and tokens of a task type, from the history folded into the metrics. 66 without history.",
                    options: [Estimate.type],
                    examples: [
                        "\(prefix) estimate --type build", "\(prefix) estimate --type build --json | jq .run_time_seconds.p95",
                    ]),
                body: estimate),
        ]
    }

    /// `create`'s arguments.
    enum Create {
        static let type = Option.identifier("type", "TYPE", "The kind of work; claimers choose types.").required
        static let description = Option.text("description", "TEXT", "What to do, for people and workers.")
        static let priority: Option<Priority> = .choice("priority", "P", "critical, high, medium (default) or low.")
        static let tokens = Option.tokens("tokens", "N", "Tokens the task expects to need.")
        static let timeout = Option.duration("timeout", "D", "How long one attempt may run (90s, 5m, 2h).")
        static let maxAttempts = Option.count(
            "max-attempts", "N", "Attempts before it is dead-lettered (default 3).", atMost: Limits.maximumAttempts
        ).checked({ $0 >= 1 }, else: { _ in "invalid --max-attempts '0': at least 1" })
        static let backoff = Option.duration("backoff", "D", "First retry delay, doubled for each further retry (default 1s).")
        static let requires = Option<[String]>("requires", "CAP,...", "Capabilities a claimer must offer (gpu, region=eu).") {
            (list) throws(CortexError) in
            var capabilities: [String] = []
            for capability in list.split(separator: ",", omittingEmptySubsequences: true) {
                capabilities.append(try validateCapability(String(capability)))
            }
            return capabilities
        }.repeatable
        static let tenant = Option.identifier("tenant", "T", "The tenant it belongs to.")
        static let key = Option.identifier("key", "KEY", "Idempotency key: creating with the same key returns the same id.")
        static let contextFile = Option.text(
            "context-file", "FILE", "A regular file (at most 8 MiB; 64 MiB over etcd, read by every host) of context for the worker.")
    }

    /// `claim`'s arguments.
    enum Claim {
        static let worker = Option.identifier("worker", "W", "The claiming worker's id.").required
        static let type = Option.identifier("type", "TYPE", "Only tasks of this type.").repeatable
        static let capability = Option("capability", "CAP", "A capability this worker offers.", convert: validateCapability).repeatable
        static let wait = Option.duration("wait", "D", "Block up to D for a task (no polling); exit 75 when the time is up.")
    }

    /// The arguments of `heartbeat`, `complete` and `fail`: a task and the claim that holds it.
    enum Leased {
        static let task = Positional.identifier("TASK", "The task id.", what: "task id")
        static let claim = Option.count("claim", "C", "The claim token printed by claim.")
            .checked({ $0 >= 1 }, else: { _ in "invalid --claim: a claim token is a whole number ≥ 1" }).required
    }

    /// `complete`'s arguments (besides `Leased`).
    enum Complete {
        static let result = Option.text("result", "JSON", "The result, as JSON.")
        static let resultFile = Option.text("result-file", "FILE", "The result, from a JSON file (a regular file of at most 8 MiB).")
        static let tokensUsed = Option.tokens(
            "tokens-used", "N",
            "Tokens the work used; counted as spent against the budget (the task's reservation, if any, is settled with it).")
    }

    /// `fail`'s arguments (besides `Leased`).
    enum Fail {
        static let error = Option.text("error", "TEXT", "What went wrong.")
        static let noRetry = Flag("no-retry", "Dead-letter it now.")
    }

    /// `cancel`'s arguments.
    enum Cancel {
        static let tasks = Positionals.identifiers(
            "TASK", "Task ids (one or more), unless --type is given.", what: "task id", optional: true)
        static let type = Option.identifier("type", "TYPE", "Every unfinished task of this type.")
        static let status = Option<TaskStatus>(
            "status", "S", "With --type: only tasks in this status (pending, failed or running)."
        ) { (text) throws(CortexError) in
            // Only an unfinished status: one message (65) for a word that is no status and for a
            // finished one, which cannot be cancelled.
            guard let status = TaskStatus(rawValue: text), !status.isTerminal else {
                throw .badInput(
                    "invalid --status '\(Values.printable(text))': pending, failed or running (finished tasks cannot be cancelled)")
            }
            return status
        }
    }

    /// `retry`'s arguments.
    enum Retry {
        static let tasks = Positionals.identifiers(
            "TASK", "Task ids (one or more), unless --dead is given.", what: "task id", optional: true)
        static let dead = Flag("dead", "Every dead task.")
        static let type = Option.identifier("type", "TYPE", "With --dead: only dead tasks of this type.")
    }

    /// `list`'s arguments.
    enum List {
        static let status: Option<TaskStatus> = .choice("status", "S", "pending, running, done, failed, dead or cancelled.")
        static let type = Option.identifier("type", "TYPE", "Only tasks of this type.")
    }

    /// `wait`'s arguments.
    enum Wait {
        static let tasks = Positionals.identifiers(
            "TASK", "Task ids to wait for, unless --all or --type is given.", what: "task id", optional: true)
        static let all = Flag("all", "Every task until the queue is empty (tasks created meanwhile included).")
        static let type = Option.identifier("type", "TYPE", "Every task of this type until none is left unfinished.")
        static let timeout = Option.duration("timeout", "D", "Give up after D (90s, 5m, 2h): exit 75.")
    }

    /// `show`'s arguments.
    enum Show {
        static let task = Positional.identifier("TASK", "The task id.", what: "task id")
    }

    /// `estimate`'s arguments.
    enum Estimate {
        static let type = Option.identifier("type", "TYPE", "The task type.").required
    }

    static func create(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let spec = TaskSpec(
            type: arguments[Create.type], description: arguments[Create.description],
            priority: arguments[Create.priority] ?? .medium, tokens: arguments[Create.tokens],
            timeoutMilliseconds: arguments[Create.timeout], maxAttempts: arguments[Create.maxAttempts] ?? 3,
            requires: arguments[Create.requires].flatMap { $0 }, tenant: arguments[Create.tenant], key: arguments[Create.key],
            backoffMilliseconds: arguments[Create.backoff] ?? 1000)
        let contextSource = arguments[Create.contextFile]
        let contextBytes = try contextSource.map { (path) throws(CortexError) in
            try POSIX.readInputFile(path, what: "context file", limit: CoordinationStore.contextFileLimit(root: invocation.root))
        }
        let store = try invocation.openStore()
        let (task, submission) = try store.createTask(spec, context: contextBytes)
        guard let submission else {
            // Known key: the same id, nothing appended (keys are never reassigned while kept).
            return Report(text: task, json: .object(["existing": true, "outcome": "created", "task": .string(task)]))
        }
        return Report(text: task, json: merge(submission.outcome.json, ["record": .string(submission.record.id)]))
    }

    static func claim(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let worker = arguments[Claim.worker]
        let waitMilliseconds = arguments[Claim.wait]
        let request = TaskClaim(worker: worker, types: arguments[Claim.type], capabilities: arguments[Claim.capability])
        let store = try invocation.openStore()
        switch try store.claim(request, waitMilliseconds: waitMilliseconds) {
        case .claimed(let task, let token, let record):
            let json = merge(claimJSON(task, claim: token, layout: store.layout), ["record": .string(record)])
            return Report(text: json.jsonText, json: json)
        // Tasks held back only by their tenants' quotas come back as usage drops: try later.
        case .heldByQuota(let quota): throw .tryLater(quota)
        case .waitedInVain: throw .tryLater("no task to claim within \(arguments.text(of: Claim.wait) ?? "")")
        case .nothing: throw .refused("nothing to claim")
        }
    }

    /// Over etcd, puts `results/<task>.json` of a done task into this host's folder when another
    /// host completed it; a result that cannot be fetched is a warning (the task is still shown).
    static func fetchResult(of id: String, store: CoordinationStore) {
        guard store.sharedArtifacts != nil, let task = try? store.task(id) else { return }
        do { try store.materialiseResult(of: task) } catch {
            store.warn("results/\(id).json not fetched: \(error.description)")
        }
    }

    static func heartbeat(_ invocation: Invocation) throws(CortexError) -> Report {
        let (store, task, claim) = try leasedTask(invocation)
        if let worker = task.worker { try WorkerFiles.touchHeartbeat(store.layout, worker: worker, permissions: store.permissions) }
        return Report(text: "", json: .object(["claim": .int(claim), "outcome": "alive", "task": .string(task.id)]))
    }

    static func complete(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        if arguments[Complete.result] != nil && arguments[Complete.resultFile] != nil {
            throw .usage("give --result or --result-file, not both")
        }
        var resultBytes: [UInt8]?
        if let text = arguments[Complete.result] {
            resultBytes = Array(text.utf8)
        } else if let path = arguments[Complete.resultFile] {
            resultBytes = try POSIX.readInputFile(path, what: "result file", limit: FileLimits.resultFile)
        }
        if let bytes = resultBytes {
            do { _ = try JSONValue.parse(bytes) } catch { throw .badInput("the result is not valid JSON: \(error)") }
        }
        let tokensUsed = arguments[Complete.tokensUsed]
        let (store, task, claim) = try leasedTask(invocation)
        var resultPath: String?
        var resultShared = false
        if let bytes = resultBytes {
            // Written under a name of this attempt alone, before the record: a stale holder can
            // never overwrite its successor's result, and an accepted record never points at nothing.
            resultPath = "results/\(task.id).attempt-\(claim).json"
            try AtomicFile.replace(
                resultPath!, in: store.layout.folder, with: bytes, durability: .powerLoss, mode: store.permissions.file(.private))
            // Over etcd, stored for every host before the record names it (docs/decisions/045).
            do { resultShared = try store.shareArtifact(resultPath!, bytes: bytes) } catch {
                store.layout.folder.unlink(resultPath!)
                throw error
            }
        }
        let submission = try store.submit(.taskComplete(task: task.id, claim: claim, result: resultPath, tokensUsed: tokensUsed))
        store.publishAfterRecording()
        guard case .completed = submission.outcome else {
            if let resultPath {
                store.layout.folder.unlink(resultPath)
                if resultShared { store.unshareArtifact(resultPath) }
            }
            throw unexpected(submission.outcome)
        }
        if let resultPath {
            // The completion is recorded: a link that cannot be made now is made by the reaper
            // (ResultFiles.repairLinks), and the command still reports the completion.
            do { try ResultFiles.publish(store.layout, task: task.id, attemptFile: resultPath) } catch {
                store.warn("results/\(task.id).json not linked yet (\(error.description)); cortex-reap links it")
            }
        }
        return Report(text: "", json: merge(submission.outcome.json, ["result": .optional(resultPath).map { $0 } ?? .null]))
    }

    static func fail(_ invocation: Invocation) throws(CortexError) -> Report {
        let arguments = invocation.arguments
        let error = arguments[Fail.error].map { String($0.prefix(4096)) }
        let (store, task, claim) = try leasedTask(invocation)
        let submission = try store.submit(.taskFail(task: task.id, claim: claim, error: error, retry: !arguments[Fail.noRetry]))
        store.publishAfterRecording()
        switch submission.outcome {
        case .retrying(_, let attempt, let retryAt):
            return Report(
                text: "\(task.id): attempt \(attempt) failed; retry at \(ISOTime.format(milliseconds: retryAt))",
                json: submission.outcome.json)
        case .deadLettered:
            return Report(text: "\(task.id): dead (attempts used: \(task.attempt))", json: submission.outcome.json)
        default:
            throw unexpected(submission.outcome)
        }
    }

    static func list(_ invocation: Invocation) throws(CortexError) -> Report {
        let status = invocation.arguments[List.status]
        let type = invocation.arguments[List.type]
        let store = try invocation.openStore()
        // Finished tasks are read (and any error thrown) before a byte is printed; active ones
        // are visited while the report is written, one at a time (docs/decisions/040).
        let active: [TaskStatus] = status.map { $0.isTerminal ? [] : [$0] } ?? [.running, .pending, .failed]
        var finished: [TaskEntry] = []
        if status?.isTerminal ?? true { finished = try store.finishedTasks() }
        if let status { finished.removeAll { $0.status != status } }
        // A retried task is active again: its earlier dead entry is history, not a second task.
        if !finished.isEmpty {
            let retried = store.state.tasks.activeIDs(among: Set(finished.map(\.id)))
            if !retried.isEmpty { finished.removeAll { retried.contains($0.id) } }
        }
        func forEachListed(_ body: (TaskEntry) -> Void) {
            for status in active {
                store.state.tasks.forEachTask(in: status) { task in
                    if type == nil || task.spec.type == type { body(task) }
                }
            }
            for task in finished where type == nil || task.spec.type == type { body(task) }
        }
        return Report(
            stream: ReportStream { writer, json in
                guard json else {
                    forEachListed { writer.line(listLine($0)) }
                    return
                }
                // `count` comes first in the object: one pass to count, one to write.
                var count = 0
                forEachListed { _ in count += 1 }
                writer.json("{\"count\":\(count),\"tasks\":[")
                var first = true
                forEachListed { task in
                    if !first { writer.json(",") }
                    first = false
                    writer.json(taskJSON(task, layout: store.layout).serialized())
                }
                writer.json("]}")
            })
    }

    /// A task's line in `list`'s text form.
    private static func listLine(_ task: TaskEntry) -> String {
        var line = "\(task.id)  \(task.status.rawValue)  \(task.spec.priority.rawValue)  \(task.spec.type)  attempt \(task.attempt)"
        if let worker = task.worker { line += "  worker \(worker)" }
        if let description = task.spec.description { line += "  \(description.prefix(60))" }
        return line
    }

    static func show(_ invocation: Invocation) throws(CortexError) -> Report {
        let id = invocation.arguments[Show.task]
        let store = try invocation.openStore()
        guard let task = try store.task(id) else { throw .notFound("no task \(id)") }
        fetchResult(of: id, store: store)
        var json = taskJSON(task, layout: store.layout)
        var lines = (json.objectMembers ?? []).sorted { $0.key < $1.key }.map { member -> String in
            let value = member.value.stringValue ?? member.value.jsonText
            return padded(member.key, to: 14) + value
        }
        if let wait = Wording.waitingTask(task, store: store, now: POSIX.wallClockMilliseconds()) {
            json = merge(json, ["wait": wait.json])
            lines.append(padded("wait", to: 14) + wait.text)
        }
        return Report(text: lines.joined(separator: "\n"), json: json)
    }

    // MARK: - Helpers

    /// Folds, then returns the running task named by the first argument if `--claim` is its
    /// current fencing token; otherwise the "lease lost" refusal (exit 1) or not found (66).
    private static func leasedTask(_ invocation: Invocation) throws(CortexError) -> (CoordinationStore, TaskEntry, Int64) {
        let id = invocation.arguments[Leased.task]
        let claim = invocation.arguments[Leased.claim]
        // Refers to an existing task: never creates a missing folder (a mistyped --dir).
        let store = try invocation.openStore()
        guard let task = try store.task(id) else { throw .notFound("no task \(id)") }
        guard task.status == .running, task.attempt == claim else {
            let now = task.status == .running ? "is held by claim \(task.attempt)" : "is \(task.status.rawValue)"
            throw .refused("lease lost: \(id) \(now), not claim \(claim)")
        }
        return (store, task, claim)
    }

    private static func validateCapability(_ text: String) throws(CortexError) -> String {
        let allowed = text.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || [UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "="), UInt8(ascii: ":")].contains(byte)
        }
        guard !text.isEmpty, text.utf8.count <= 64, allowed else {
            throw .badInput("invalid capability '\(Values.printable(text))': use 1-64 of A-Z a-z 0-9 . _ - = :")
        }
        return text
    }

    /// A task as JSON for people and scripts: times in ISO form, the result's canonical path.
    static func taskJSON(_ task: TaskEntry, layout: CoordinationLayout) -> JSONValue {
        var members = task.json.objectMembers ?? []
        members.removeAll { ["claimed_ms", "created_ms", "finished_ms", "not_before_ms", "number"].contains($0.key) }
        func time(_ milliseconds: Int64?) -> JSONValue? { milliseconds.map { .string(ISOTime.format(milliseconds: $0)) } }
        let extra: [(String, JSONValue?)] = [
            ("created_at", time(task.createdMilliseconds)), ("claimed_at", time(task.claimedMilliseconds)),
            ("finished_at", time(task.finishedMilliseconds)), ("retry_at", time(task.notBeforeMilliseconds)),
        ]
        for (key, value) in extra { if let value { members.append(JSONMember(key, value)) } }
        return .object(members)
    }

    private static func claimJSON(_ task: TaskEntry, claim: Int64, layout: CoordinationLayout) -> JSONValue {
        var members = taskJSON(task, layout: layout).objectMembers ?? []
        members.append(JSONMember("claim", .int(claim)))
        if let context = task.spec.context { members.append(JSONMember("context_path", .string(layout.root + "/" + context))) }
        return .object(members)
    }

    static func estimate(_ invocation: Invocation) throws(CortexError) -> Report {
        let type = invocation.arguments[Estimate.type]
        let store = try invocation.openStore()
        guard let metrics = store.state.metrics.types[type], metrics.runTime.count + metrics.tokensUsed.count > 0 else {
            throw .notFound("no finished attempts of type '\(Values.printable(type))' yet: nothing to estimate from")
        }
        let run = metrics.runTime
        func precise(_ value: Int64?) -> String {
            guard let value else { return "-" }
            return value < 60_000 ? "\(Double(value) / 1000)s" : Wording.duration(value)
        }
        var lines = [
            "type          \(type)",
            "duration      P50 \(precise(run.quantile(0.5))) · P95 \(precise(run.quantile(0.95))) · P99 \(precise(run.quantile(0.99))) · mean \(precise(run.mean.map { Int64($0) })) (\(run.count) attempt\(run.count == 1 ? "" : "s"))",
        ]
        let tokens = metrics.tokensUsed
        if tokens.count > 0 {
            lines.append(
                "tokens        P50 \(tokens.quantile(0.5) ?? 0) · P95 \(tokens.quantile(0.95) ?? 0) · P99 \(tokens.quantile(0.99) ?? 0) · mean \(Int64(tokens.mean ?? 0)) (\(tokens.count) task\(tokens.count == 1 ? "" : "s"))"
            )
        } else {
            lines.append("tokens        no --tokens-used reported yet")
        }
        let wait = metrics.queueWait
        if wait.count > 0 {
            lines.append("queue wait    P50 \(precise(wait.quantile(0.5))) · P95 \(precise(wait.quantile(0.95)))")
        }
        if let success = metrics.successRatio {
            lines.append("success       \(Int((success * 100).rounded()))% of \(metrics.done + metrics.dead) finished")
        }
        return Report(text: lines.joined(separator: "\n"), json: merge(metrics.reportJSON, ["type": .string(type)]))
    }
}
