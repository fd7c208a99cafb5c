/// The metrics of a fold, rendered: the Prometheus text exposition format (for node_exporter's
/// textfile collector) and one JSON object. Pure: the state, the capacity and "now" come in as
/// arguments, so the same inputs always give the same bytes.
public struct MetricsReport: Sendable {
    /// The quantiles every summary reports.
    public static let quantiles: [Double] = [0.5, 0.95, 0.99]
    /// The window of the rates (utilisation, token burn rate).
    public static let windowMilliseconds: Int64 = 300_000

    /// One sample of a family.
    struct Sample {
        var suffix = ""
        var labels: [(String, String)]
        var value: Double
    }

    /// One metric family: its name, help, type and samples.
    struct Family {
        var name: String
        var help: String
        var type: String
        var samples: [Sample] = []

        /// A family of one unlabelled sample.
        static func single(_ name: String, _ help: String, type: String, value: Double) -> Family {
            Family(name: name, help: help, type: type, samples: [Sample(labels: [], value: value)])
        }
    }

    private(set) var families: [Family] = []
    /// The same numbers as JSON.
    public let json: JSONValue

    /// Renders the metrics of `state` at `nowMilliseconds`, with `capacity` worker slots
    /// (config.json `max_workers`) as the denominator of utilisation.
    public init(_ state: CortexState, capacity: Int, nowMilliseconds now: Int64) {
        let metrics = state.metrics
        let totals = metrics.totals
        let types = totals.types.sorted { $0.key < $1.key }
        var jsonTypes: [JSONMember] = []

        func summary(_ name: String, _ help: String, scale: Double, _ sketch: (TypeMetrics) -> QuantileSketch) -> Family {
            var family = Family(name: name, help: help, type: "summary")
            for (type, typeMetrics) in types {
                let values = sketch(typeMetrics)
                for q in Self.quantiles {
                    guard let value = values.quantile(q) else { continue }
                    family.samples.append(Sample(labels: [("type", type), ("quantile", Self.number(q))], value: Double(value) / scale))
                }
                family.samples.append(Sample(suffix: "_sum", labels: [("type", type)], value: Double(values.sum) / scale))
                family.samples.append(Sample(suffix: "_count", labels: [("type", type)], value: Double(values.count)))
            }
            return family
        }
        func perType(_ name: String, _ help: String, _ type: String, _ value: (TypeMetrics) -> Double?) -> Family {
            var family = Family(name: name, help: help, type: type)
            for (taskType, typeMetrics) in types {
                if let value = value(typeMetrics) { family.samples.append(Sample(labels: [("type", taskType)], value: value)) }
            }
            return family
        }

        families.append(
            summary("cortex_task_queue_wait_seconds", "Time from a task's creation to its first claim, by task type.", scale: 1000) {
                $0.queueWait
            })
        families.append(
            summary("cortex_task_run_seconds", "Time from claim to complete or fail of each attempt, by task type.", scale: 1000) {
                $0.runTime
            })
        families.append(
            summary("cortex_task_tokens_used", "Tokens reported by completed tasks (--tokens-used), by task type.", scale: 1) {
                $0.tokensUsed
            })
        families.append(perType("cortex_tasks_created_total", "Tasks created, by task type.", "counter") { Double($0.created) })
        families.append(
            perType("cortex_task_attempts_total", "Attempts started (claims won), by task type.", "counter") { Double($0.attempts) })
        families.append(
            perType("cortex_task_retries_total", "Attempts that failed and were retried, by task type.", "counter") { Double($0.retries) })
        var finished = Family(
            name: "cortex_tasks_finished_total", help: "Tasks that reached an end, by task type and status.", type: "counter")
        for (type, typeMetrics) in types {
            for (status, count) in [("done", typeMetrics.done), ("dead", typeMetrics.dead), ("cancelled", typeMetrics.cancelled)] {
                finished.samples.append(Sample(labels: [("type", type), ("status", status)], value: Double(count)))
            }
        }
        families.append(finished)
        families.append(
            perType("cortex_task_success_ratio", "Done over done plus dead-lettered, by task type.", "gauge") { $0.successRatio })
        families.append(
            perType("cortex_task_dead_letter_ratio", "Dead-lettered over done plus dead-lettered, by task type.", "gauge") {
                $0.deadLetterRatio
            })
        families.append(
            perType("cortex_task_retry_ratio", "Retried attempts over attempts that ended, by task type.", "gauge") { $0.retryRatio })

        for (type, typeMetrics) in types {
            jsonTypes.append(JSONMember(type, typeMetrics.reportJSON))
        }

        // The state now.
        let counts = state.tasks.counts
        var tasks = Family(name: "cortex_tasks", help: "Tasks by status now.", type: "gauge")
        for status in TaskStatus.allCases {
            tasks.samples.append(Sample(labels: [("status", status.rawValue)], value: Double(counts[status, default: 0])))
        }
        families.append(tasks)
        let queue = QueueSummary(state.tasks)
        var waiting = Family(name: "cortex_tasks_waiting", help: "Waiting (pending or retrying) tasks by priority now.", type: "gauge")
        for priority in Priority.allCases {
            waiting.samples.append(
                Sample(labels: [("priority", priority.rawValue)], value: Double(queue.waitingByPriority[priority, default: 0])))
        }
        families.append(waiting)
        let oldestAge = queue.oldest.map { max(0, now.saturatingSubtract($0.createdMilliseconds)) } ?? 0
        families.append(
            Family.single(
                "cortex_oldest_waiting_task_age_seconds", "Age of the oldest waiting task (0 when none waits).", type: "gauge",
                value: Double(oldestAge) / 1000))

        let running = counts[.running, default: 0]
        let window = metrics.window(totals, endingAt: now, windowMilliseconds: Self.windowMilliseconds, running: running)
        let slots = max(1, capacity)
        let utilisation =
            window.spanMilliseconds > 0 ? Double(window.busyMilliseconds) / (Double(slots) * Double(window.spanMilliseconds)) : 0
        let burnRate = window.spanMilliseconds > 0 ? Double(window.tokensSpent) * 1000 / Double(window.spanMilliseconds) : 0
        let busyTotal = totals.busyMilliseconds.saturatingAdd(
            now > metrics.clockMilliseconds && metrics.clockMilliseconds > 0
                ? running.saturatingMultiply(now - metrics.clockMilliseconds) : 0)
        families.append(
            Family.single(
                "cortex_worker_busy_seconds_total", "Task-seconds spent running (the integral of running tasks).", type: "counter",
                value: Double(busyTotal) / 1000))
        families.append(
            Family.single(
                "cortex_worker_utilisation", "Busy task-seconds over capacity-seconds in the last 5 minutes.", type: "gauge",
                value: utilisation))
        families.append(
            Family.single("cortex_worker_capacity", "Worker slots (config.json max_workers).", type: "gauge", value: Double(capacity)))
        var workers = Family(name: "cortex_workers", help: "Supervised workers by status now.", type: "gauge")
        let workerCounts = state.workers.counts
        for status in WorkerStatus.allCases {
            workers.samples.append(Sample(labels: [("status", status.rawValue)], value: Double(workerCounts[status, default: 0])))
        }
        families.append(workers)
        var limitKills = Family(
            name: "cortex_worker_limit_kills_total", help: "Worker runs that ended by reaching a limit, by limit.", type: "counter")
        for limit in WorkerLimit.allCases {
            limitKills.samples.append(
                Sample(labels: [("limit", limit.rawValue)], value: Double(totals.limitKills[limit.rawValue, default: 0])))
        }
        families.append(limitKills)

        let budget = state.budget
        var tokens = Family(name: "cortex_tokens", help: "The token budget now.", type: "gauge")
        for (name, value) in [
            ("total", budget.total), ("reserved", budget.reserved), ("spent", budget.spent), ("available", budget.available),
        ] {
            tokens.samples.append(Sample(labels: [("state", name)], value: Double(value)))
        }
        families.append(tokens)
        families.append(
            Family.single(
                "cortex_tokens_spent_total", "Tokens spent since metrics began (across budget periods).", type: "counter",
                value: Double(totals.tokensSpent)))
        var tenants = Family(name: "cortex_tenant_tokens_spent_total", help: "Tokens spent, by tenant.", type: "counter")
        for (tenant, spent) in totals.tenantTokensSpent.sorted(by: { $0.key < $1.key }) {
            tenants.samples.append(Sample(labels: [("tenant", tenant)], value: Double(spent)))
        }
        families.append(tenants)
        families.append(
            Family.single(
                "cortex_token_burn_rate_per_second", "Tokens spent per second over the last 5 minutes.", type: "gauge", value: burnRate))
        families.append(
            Family.single(
                "cortex_journal_records_total", "Records folded from the journal.", type: "counter", value: Double(state.recordsFolded)))

        json = .object([
            "oldest_waiting_age_seconds": .double(Double(oldestAge) / 1000),
            "tasks": .object(TaskStatus.allCases.map { JSONMember($0.rawValue, .int(counts[$0, default: 0])) }),
            "tokens": .object([
                "burn_rate_per_second": .double(burnRate), "spent_total": .int(totals.tokensSpent),
                "tenants": .object(totals.tenantTokensSpent.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) }),
            ]),
            "task_types": .object(jsonTypes), "updated_at": .string(ISOTime.format(milliseconds: now)),
            "window_seconds": .int(Self.windowMilliseconds / 1000),
            "workers": .object([
                "busy_seconds_total": .double(Double(busyTotal) / 1000), "capacity": .int(capacity),
                "limit_kills": .object(
                    WorkerLimit.allCases.map { JSONMember($0.rawValue, .int(totals.limitKills[$0.rawValue, default: 0])) }),
                "utilisation": .double(utilisation),
            ]),
        ])
    }

    /// The Prometheus text exposition format (version 0.0.4).
    public var prometheusText: String {
        var text = ""
        for family in families where !family.samples.isEmpty {
            text += "# HELP \(family.name) \(family.help)\n# TYPE \(family.name) \(family.type)\n"
            for sample in family.samples {
                text += family.name + sample.suffix
                if !sample.labels.isEmpty {
                    text += "{" + sample.labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
                }
                text += " " + Self.number(sample.value) + "\n"
            }
        }
        return text
    }

    /// A number as Prometheus reads it: whole numbers without a fraction.
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return value.description
    }

    /// A label value with `\`, `"` and newlines escaped.
    static func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}

extension TypeMetrics {
    /// Done over done plus dead-lettered (nil before either).
    public var successRatio: Double? { done == 0 && dead == 0 ? nil : Double(done) / (Double(done) + Double(dead)) }
    /// Dead-lettered over done plus dead-lettered (nil before either).
    public var deadLetterRatio: Double? { done == 0 && dead == 0 ? nil : Double(dead) / (Double(done) + Double(dead)) }
    /// Retried attempts over attempts that ended: done, retried or dead (nil before any).
    public var retryRatio: Double? {
        let ended = Double(done) + Double(retries) + Double(dead)
        return ended == 0 ? nil : Double(retries) / ended
    }

    /// The type's numbers for `cortex metrics --json` and `cortex-task estimate --json`.
    public var reportJSON: JSONValue {
        func seconds(_ sketch: QuantileSketch) -> JSONValue {
            .object([
                "count": .int(sketch.count), "mean": sketch.mean.map { .double($0 / 1000) },
                "p50": sketch.quantile(0.5).map { .double(Double($0) / 1000) },
                "p95": sketch.quantile(0.95).map { .double(Double($0) / 1000) },
                "p99": sketch.quantile(0.99).map { .double(Double($0) / 1000) },
            ])
        }
        return .object([
            "attempts": .int(attempts), "cancelled": .int(cancelled), "created": .int(created), "dead": .int(dead),
            "dead_letter_ratio": deadLetterRatio.map(JSONValue.double), "done": .int(done), "queue_wait_seconds": seconds(queueWait),
            "retries": .int(retries), "retry_ratio": retryRatio.map(JSONValue.double), "run_time_seconds": seconds(runTime),
            "success_ratio": successRatio.map(JSONValue.double),
            "tokens_used": .object([
                "count": .int(tokensUsed.count), "mean": tokensUsed.mean.map(JSONValue.double),
                "p50": tokensUsed.quantile(0.5).map(JSONValue.int), "p95": tokensUsed.quantile(0.95).map(JSONValue.int),
                "p99": tokensUsed.quantile(0.99).map(JSONValue.int),
            ]),
        ])
    }
}
