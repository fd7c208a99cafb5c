/// What the fold has learnt about one task type.
public struct TypeMetrics: Equatable, Sendable {
    /// Tasks created.
    public var created: Int64 = 0
    /// Attempts started (claims won).
    public var attempts: Int64 = 0
    /// Tasks that finished done.
    public var done: Int64 = 0
    /// Tasks dead-lettered (failed at their last attempt, or with no retry).
    public var dead: Int64 = 0
    /// Tasks cancelled.
    public var cancelled: Int64 = 0
    /// Failed attempts that were retried (a failure or a lost worker with attempts left).
    public var retries: Int64 = 0
    /// Attempts that ended because their worker was declared lost.
    public var lostAttempts: Int64 = 0
    /// Creation to first claim, in milliseconds. Retries are left out: their wait is the
    /// configured backoff, not the queue.
    public var queueWait = QuantileSketch()
    /// Claim to complete or fail of each attempt, in milliseconds (lost attempts are left out:
    /// their end is when the reaper noticed, not when the work stopped).
    public var runTime = QuantileSketch()
    /// `--tokens-used` of completed tasks.
    public var tokensUsed = QuantileSketch()

    /// Nothing learnt yet.
    public init() {}

    /// Adds `other`'s counts and samples.
    public mutating func merge(_ other: TypeMetrics) {
        // Saturating: the totals may come from a snapshot another process wrote.
        created = created.saturatingAdd(other.created)
        attempts = attempts.saturatingAdd(other.attempts)
        done = done.saturatingAdd(other.done)
        dead = dead.saturatingAdd(other.dead)
        cancelled = cancelled.saturatingAdd(other.cancelled)
        retries = retries.saturatingAdd(other.retries)
        lostAttempts = lostAttempts.saturatingAdd(other.lostAttempts)
        queueWait.merge(other.queueWait)
        runTime.merge(other.runTime)
        tokensUsed.merge(other.tokensUsed)
    }
}

/// Busy time and tokens spent in one minute of journal time.
public struct MinuteTotals: Equatable, Sendable {
    /// Minutes since the Unix epoch.
    public var minute: Int64
    /// Task-milliseconds of running tasks in that minute.
    public var busyMilliseconds: Int64 = 0
    /// Tokens that became spent in that minute.
    public var tokensSpent: Int64 = 0
}

/// The summed part of the metrics: counts, sketches and minute totals. A commutative monoid:
/// the totals of two stretches of journal merge into the totals of both, so the snapshot keeps
/// the totals up to its position and a call folds only its own stretch (docs/decisions/014).
public struct MetricsTotals: Equatable, Sendable {
    /// Per task type.
    public var types: [String: TypeMetrics] = [:]
    /// Task-milliseconds spent running (the integral of running tasks over journal time).
    public var busyMilliseconds: Int64 = 0
    /// Tokens spent (across budget periods).
    public var tokensSpent: Int64 = 0
    /// Of those, per tenant.
    public var tenantTokensSpent: [String: Int64] = [:]
    /// The most recent minutes (at most `MetricsState.minuteLimit`), oldest first.
    public var minutes: [MinuteTotals] = []
    /// Worker runs that ended by reaching a limit, by kind (`WorkerLimit` raw values).
    public var limitKills: [String: Int64] = [:]

    /// Nothing yet.
    public init() {}

    /// Adds `other` in.
    public mutating func merge(_ other: MetricsTotals) {
        for (type, metrics) in other.types { types[type, default: TypeMetrics()].merge(metrics) }
        busyMilliseconds = busyMilliseconds.saturatingAdd(other.busyMilliseconds)
        tokensSpent = tokensSpent.saturatingAdd(other.tokensSpent)
        for (tenant, spent) in other.tenantTokensSpent {
            tenantTokensSpent[tenant] = tenantTokensSpent[tenant, default: 0].saturatingAdd(spent)
        }
        for (kind, count) in other.limitKills { limitKills[kind] = limitKills[kind, default: 0].saturatingAdd(count) }
        for totals in other.minutes {
            addToMinute(totals.minute) {
                $0.busyMilliseconds = $0.busyMilliseconds.saturatingAdd(totals.busyMilliseconds)
                $0.tokensSpent = $0.tokensSpent.saturatingAdd(totals.tokensSpent)
            }
        }
        limitTypes()
    }

    /// Adds to the totals of `minute`, keeping only the newest `minuteLimit` minutes (which
    /// minutes survive does not depend on where a fold was split).
    mutating func addToMinute(_ minute: Int64, _ body: (inout MinuteTotals) -> Void) {
        if let last = minutes.indices.last, minutes[last].minute == minute {
            body(&minutes[last])
            return
        }
        let index = minutes.firstIndex { $0.minute >= minute } ?? minutes.endIndex
        if index < minutes.endIndex, minutes[index].minute == minute {
            body(&minutes[index])
            return
        }
        var totals = MinuteTotals(minute: minute)
        body(&totals)
        minutes.insert(totals, at: index)
        if minutes.count > MetricsState.minuteLimit { minutes.removeFirst(minutes.count - MetricsState.minuteLimit) }
    }

    /// Past `typeLimit` types, the ones whose names sort last are counted under `otherType`
    /// (a rule on the set of names, so it gives the same totals however a fold was split).
    mutating func limitTypes() {
        guard types.count > MetricsState.typeLimit else { return }
        let kept = Set(types.keys.filter { $0 != MetricsState.otherType }.sorted().prefix(MetricsState.typeLimit))
        var other = types[MetricsState.otherType] ?? TypeMetrics()
        for (type, metrics) in types where !kept.contains(type) && type != MetricsState.otherType {
            other.merge(metrics)
            types[type] = nil
        }
        types[MetricsState.otherType] = other
    }

    /// The totals as JSON, keys sorted.
    public var json: JSONValue {
        var members: [JSONMember] = [
            JSONMember("busy_ms", .int(busyMilliseconds)),
            JSONMember(
                "minutes",
                .array(minutes.map { .array([.int($0.minute), .int($0.busyMilliseconds), .int($0.tokensSpent)]) })),
            JSONMember(
                "tenant_tokens_spent",
                .object(tenantTokensSpent.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) })),
            JSONMember("tokens_spent", .int(tokensSpent)),
            JSONMember("types", .object(types.sorted { $0.key < $1.key }.map { JSONMember($0.key, $0.value.json) })),
        ]
        // Only once a run reached a limit, so snapshots without any stay as they were.
        if !limitKills.isEmpty {
            members.insert(
                JSONMember("limit_kills", .object(limitKills.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) })),
                at: 1)
        }
        return .object(members)
    }

    /// Reads `json`; nil when it is malformed.
    public init?(json: JSONValue) {
        guard let busy = json["busy_ms"]?.intValue, let spent = json["tokens_spent"]?.intValue else { return nil }
        busyMilliseconds = busy
        tokensSpent = spent
        for item in json["minutes"]?.arrayValue ?? [] {
            guard let parts = item.arrayValue, parts.count == 3, let minute = parts[0].intValue, let busy = parts[1].intValue,
                let tokens = parts[2].intValue
            else { return nil }
            minutes.append(MinuteTotals(minute: minute, busyMilliseconds: busy, tokensSpent: tokens))
        }
        for member in json["tenant_tokens_spent"]?.objectMembers ?? [] {
            tenantTokensSpent[member.key] = member.value.intValue ?? 0
        }
        for member in json["limit_kills"]?.objectMembers ?? [] {
            guard WorkerLimit(rawValue: member.key) != nil, let count = member.value.intValue, count >= 0 else { return nil }
            limitKills[member.key] = count
        }
        for member in json["types"]?.objectMembers ?? [] {
            guard let metrics = TypeMetrics(json: member.value) else { return nil }
            types[member.key] = metrics
        }
    }
}

/// Operational metrics folded from the journal (docs/decisions/014-metrics.md): a pure
/// function of the records, like the rest of `CortexState`, so it travels in the snapshot and
/// every process agrees on it. Memory is bounded: sketches instead of samples, at most
/// `typeLimit` task types (the rest counted under `otherType`), the last `minuteLimit` minutes
/// of busy time and spending.
///
/// The totals up to the snapshot stay as bytes in the snapshot (its last section) until
/// something reads them; the fold adds to `delta` only, so a call that does not report metrics
/// never decodes them.
public struct MetricsState: Equatable, Sendable {
    /// The time of the first record folded (0 before any).
    public internal(set) var firstMilliseconds: Int64 = 0
    /// The latest record time seen: the metrics' clock (a record with an earlier time, from a
    /// writer whose clock lags, adds no busy time).
    public internal(set) var clockMilliseconds: Int64 = 0
    /// The snapshot's totals, still as bytes (nil: none).
    var base: LazyLines?
    /// What the fold added since.
    var delta = MetricsTotals()

    /// The most task types tracked one by one.
    public static let typeLimit = 256
    /// Where types past `typeLimit` are counted.
    public static let otherType = "_other"
    /// Minutes of history kept for rates.
    public static let minuteLimit = 16

    /// Nothing folded yet.
    public init() {}

    /// Everything folded: the snapshot's totals (decoded now) plus what was folded since.
    public var totals: MetricsTotals {
        var totals = MetricsTotals()
        if let base, !base.isEmpty {
            let (bytes, _) = base.line(at: base.start)
            if let json = try? JSONValue.parse(bytes.assumingMemoryBound(to: UInt8.self)),
                let decoded = MetricsTotals(json: json)
            {
                totals = decoded
            }
        }
        totals.merge(delta)
        return totals
    }

    /// Per task type (decodes the snapshot's totals: read `totals` once for several reads).
    public var types: [String: TypeMetrics] { totals.types }

    public static func == (lhs: MetricsState, rhs: MetricsState) -> Bool {
        lhs.firstMilliseconds == rhs.firstMilliseconds && lhs.clockMilliseconds == rhs.clockMilliseconds
            && lhs.totals == rhs.totals
    }

    /// The metrics of `type`, as folded since the snapshot.
    mutating func withType(_ type: String, _ body: (inout TypeMetrics) -> Void) {
        body(&delta.types[type, default: TypeMetrics()])
    }

    /// Moves the clock to `time` with `running` tasks running since the last record.
    mutating func advance(to time: Int64, running: Int64) {
        guard clockMilliseconds != 0 else {
            firstMilliseconds = time
            clockMilliseconds = time
            return
        }
        guard time > clockMilliseconds else { return }
        if running > 0 {
            delta.busyMilliseconds = delta.busyMilliseconds.saturatingAdd(running.saturatingMultiply(time - clockMilliseconds))
            // Only the minutes still kept need the split.
            var from = max(clockMilliseconds, time - Int64(Self.minuteLimit) * 60_000)
            while from < time {
                let minute = from / 60_000
                let until = min(time, (minute + 1) * 60_000)
                delta.addToMinute(minute) {
                    $0.busyMilliseconds = $0.busyMilliseconds.saturatingAdd(running.saturatingMultiply(until - from))
                }
                from = until
            }
        }
        clockMilliseconds = time
    }

    /// Counts `tokens` spent at `time`, against `tenant` if any.
    /// Counts a worker run that ended by reaching `limit`.
    mutating func countLimitKill(_ limit: WorkerLimit) {
        delta.limitKills[limit.rawValue] = delta.limitKills[limit.rawValue, default: 0].saturatingAdd(1)
    }

    mutating func spend(_ tokens: Int64, tenant: String?, at time: Int64) {
        delta.tokensSpent = delta.tokensSpent.saturatingAdd(tokens)
        if let tenant { delta.tenantTokensSpent[tenant] = delta.tenantTokensSpent[tenant, default: 0].saturatingAdd(tokens) }
        delta.addToMinute(max(time, clockMilliseconds) / 60_000) { $0.tokensSpent = $0.tokensSpent.saturatingAdd(tokens) }
    }

    /// Busy task-milliseconds and tokens spent in the window of `windowMilliseconds` ending at
    /// `now`, extending the busy time to `now` with `running` tasks still running.
    public func window(_ totals: MetricsTotals, endingAt now: Int64, windowMilliseconds: Int64, running: Int64) -> (
        busyMilliseconds: Int64, tokensSpent: Int64, spanMilliseconds: Int64
    ) {
        let start = max(now.saturatingSubtract(windowMilliseconds), firstMilliseconds)
        var busy: Int64 = 0
        var tokens: Int64 = 0
        for minute in totals.minutes {
            // A minute holds what happened from its start up to the clock (inclusive); one only
            // partly inside the window (start, now] counts pro rata.
            let minuteStart = minute.minute.saturatingMultiply(60_000)
            let minuteEnd = min(minuteStart.saturatingAdd(60_000), clockMilliseconds.saturatingAdd(1))
            let overlap = min(minuteEnd, now.saturatingAdd(1)).saturatingSubtract(max(minuteStart, start))
            guard overlap > 0, minuteEnd > minuteStart else { continue }
            let length = minuteEnd.saturatingSubtract(minuteStart)
            busy = busy.saturatingAdd(minute.busyMilliseconds.saturatingMultiply(overlap) / length)
            tokens = tokens.saturatingAdd(minute.tokensSpent.saturatingMultiply(overlap) / length)
        }
        if now > clockMilliseconds {
            busy = busy.saturatingAdd(running.saturatingMultiply(now.saturatingSubtract(max(clockMilliseconds, start))))
        }
        return (busy, tokens, max(0, now.saturatingSubtract(start)))
    }

    /// The totals as a snapshot's last line: the loaded line's bytes again when nothing was
    /// folded since (no decoding), else the merged totals.
    var totalsLine: [UInt8] {
        if delta == MetricsTotals(), let base, !base.isEmpty {
            let (bytes, _) = base.line(at: base.start)
            return Array(bytes) + [0x0A]
        }
        return totals.json.serialized() + [0x0A]
    }

    /// The clock for a snapshot's first line.
    var clockJSON: JSONValue { .object(["clock_ms": .int(clockMilliseconds), "first_ms": .int(firstMilliseconds)]) }

    /// The state a snapshot holds: its clock and its totals' bytes.
    init(clock: JSONValue, totals: LazyLines?) {
        clockMilliseconds = clock["clock_ms"]?.intValue ?? 0
        firstMilliseconds = clock["first_ms"]?.intValue ?? 0
        base = totals
    }
}

extension TypeMetrics {
    /// The type's metrics as JSON.
    public var json: JSONValue {
        .object([
            "attempts": .int(attempts), "cancelled": .int(cancelled), "created": .int(created), "dead": .int(dead),
            "done": .int(done), "lost_attempts": .int(lostAttempts), "queue_wait_ms": queueWait.json,
            "retries": .int(retries), "run_ms": runTime.json, "tokens_used": tokensUsed.json,
        ])
    }

    /// Reads `json`; nil when it is malformed.
    public init?(json: JSONValue) {
        func count(_ key: String) -> Int64 { json[key]?.intValue ?? 0 }
        created = count("created")
        attempts = count("attempts")
        done = count("done")
        dead = count("dead")
        cancelled = count("cancelled")
        retries = count("retries")
        lostAttempts = count("lost_attempts")
        guard let wait = json["queue_wait_ms"].flatMap(QuantileSketch.init(json:)),
            let run = json["run_ms"].flatMap(QuantileSketch.init(json:)),
            let tokens = json["tokens_used"].flatMap(QuantileSketch.init(json:))
        else { return nil }
        queueWait = wait
        runTime = run
        tokensUsed = tokens
    }
}

/// How the reducer feeds the metrics: what it needs to know before a record changes the state
/// (the task a complete or fail names, the tasks a lost worker held), then the outcome.
enum MetricsRules {
    /// What the metrics need from the state before a record is applied.
    enum Before {
        case nothing
        case task(TaskEntry)
        case held([TaskEntry])
        case allocation(tenant: String?)
    }

    /// Reads what `event` will change, before it does.
    static func before(_ event: Event, in state: CortexState) -> Before {
        switch event {
        case .taskComplete(let task, _, _, _), .taskFail(let task, _, _, _), .taskCancel(let task):
            return state.tasks.activeTask(task).map(Before.task) ?? .nothing
        case .workerLost(let worker, _, let host):
            return .held(state.tasks.running.filter { $0.worker == worker && (host == nil || $0.host == host) })
        case .budgetRelease(let allocation, _):
            return .allocation(tenant: state.budget.allocations[allocation]?.tenant)
        default:
            return .nothing
        }
    }

    /// Counts `event`'s `outcome` at `time`; `spent` is how many tokens became spent.
    static func record(
        _ event: Event, outcome: Outcome, before: Before, spent: Int64, at time: Int64, in state: inout CortexState
    ) {
        if spent > 0 {
            var tenant: String?
            if case .allocation(let owner) = before { tenant = owner }
            // Tokens a completed task reported count against its tenant (decision 025).
            if case .task(let entry) = before { tenant = entry.spec.tenant }
            state.metrics.spend(spent, tenant: tenant, at: time)
        }
        switch (event, outcome) {
        case (.taskCreate(let spec), .created(_, existing: false)):
            state.metrics.withType(spec.type) { $0.created += 1 }
        case (.taskClaim, .claimed(let task, let claim)):
            guard let entry = state.tasks.activeTask(task) else { return }
            state.metrics.withType(entry.spec.type) { metrics in
                metrics.attempts += 1
                if claim == 1 { metrics.queueWait.add((entry.claimedMilliseconds ?? time) - entry.createdMilliseconds) }
            }
        case (.taskComplete(_, _, _, let tokensUsed), .completed):
            guard case .task(let entry) = before else { return }
            state.metrics.withType(entry.spec.type) { metrics in
                metrics.done += 1
                metrics.runTime.add(time - (entry.claimedMilliseconds ?? time))
                if let tokensUsed { metrics.tokensUsed.add(tokensUsed) }
            }
        case (.taskFail, .retrying), (.taskFail, .deadLettered):
            guard case .task(let entry) = before else { return }
            state.metrics.withType(entry.spec.type) { metrics in
                if case .retrying = outcome { metrics.retries += 1 } else { metrics.dead += 1 }
                metrics.runTime.add(time - (entry.claimedMilliseconds ?? time))
            }
        case (.taskCancel, .cancelled):
            guard case .task(let entry) = before else { return }
            state.metrics.withType(entry.spec.type) { $0.cancelled += 1 }
        case (.workerLost, .requeued):
            guard case .held(let entries) = before else { return }
            for entry in entries {
                let retried = state.tasks.activeTask(entry.id) != nil
                state.metrics.withType(entry.spec.type) { metrics in
                    metrics.lostAttempts += 1
                    if retried { metrics.retries += 1 } else { metrics.dead += 1 }
                }
            }
        default:
            return
        }
    }
}
