import Testing

@testable import CortexCore
@testable import CortexStorage

/// The task queue's rules on the pure reducer: no files, no clock.
@Suite struct TaskReducerTests {
    struct Fold {
        var state = CortexState()
        var time: Int64 = 1_000

        @discardableResult
        mutating func apply(_ event: Event, at time: Int64? = nil) -> Outcome {
            if let time { self.time = time }
            self.time += 1
            return Reducer.reduce(&state, record(event, at: self.time))
        }

        mutating func create(
            _ type: String = "build", _ priority: Priority = .medium, requires: [String] = [], key: String? = nil,
            maxAttempts: Int64 = 3
        ) -> String {
            let outcome = apply(
                .taskCreate(TaskSpec(type: type, priority: priority, maxAttempts: maxAttempts, requires: requires, key: key)))
            guard case .created(let id, _) = outcome else { return "?" }
            return id
        }

        mutating func claim(_ worker: String = "w-1", types: [String] = [], capabilities: [String] = []) -> Outcome {
            apply(.taskClaim(TaskClaim(worker: worker, types: types, capabilities: capabilities)))
        }
    }

    @Test func retryBringsADeadTaskBackUnderItsIdWithFreshAttempts() throws {
        var fold = Fold()
        let dead = fold.create("build", maxAttempts: 1)
        let done = fold.create("build")
        #expect(fold.claim() == .claimed(task: dead, claim: 1))
        #expect(fold.apply(.taskFail(task: dead, claim: 1, error: "x", retry: true)) == .deadLettered(task: dead))
        #expect(fold.claim() == .claimed(task: done, claim: 1))
        #expect(fold.apply(.taskComplete(task: done, claim: 1, result: nil, tokensUsed: nil)) == .completed(task: done))
        let entry = try #require(fold.state.tasks.finished.first { $0.id == dead })
        let doneEntry = try #require(fold.state.tasks.finished.first { $0.id == done })
        #expect(fold.state.tasks.counts[.dead] == 1)

        let retry = Event.taskRetry(task: dead, number: entry.number, spec: entry.spec)
        #expect(try Event.decode(kind: retry.kind, data: retry.data) == retry, "the record round-trips")
        #expect(fold.apply(retry) == .retried(task: dead))
        #expect(fold.state.tasks.activeTask(dead)?.status == .pending && fold.state.tasks.activeTask(dead)?.attempt == 0)
        #expect(fold.state.tasks.counts[.dead] == nil && !fold.state.tasks.finished.contains { $0.id == dead })
        #expect(fold.apply(retry) == .refused("\(dead) is pending, not dead"))
        #expect(fold.claim() == .claimed(task: dead, claim: 1))
        #expect(fold.apply(.taskRetry(task: done, number: doneEntry.number, spec: doneEntry.spec)) == .refused("\(done) is done, not dead"))
        guard case .rejected = fold.apply(.taskRetry(task: "task-99.1", number: 1, spec: entry.spec)) else {
            Issue.record("a never-issued id is rejected")
            return
        }
        var data = retry.data.objectMembers ?? []
        data.removeAll { $0.key == "number" }
        for bad in [JSONValue.int(-1), .int(Limits.maximumCount + 1), .string("1")] {
            #expect(throws: EventDecodingError.self) {
                _ = try Event.decode(kind: "task.retry", data: .object(data + [JSONMember("number", bad)]))
            }
        }
    }

    @Test func claimsTakePriorityThenAge() {
        var fold = Fold()
        let low = fold.create("a", .low)
        let medium1 = fold.create("a", .medium)
        let critical = fold.create("a", .critical)
        let medium2 = fold.create("a", .medium)
        let high = fold.create("a", .high)
        let order = (0..<5).map { _ -> String in
            guard case .claimed(let task, _) = fold.claim() else { return "none" }
            return task
        }
        #expect(order == [critical, high, medium1, medium2, low])
        #expect(fold.claim() == .refused("nothing to claim"))
    }

    @Test func capabilityRoutingNeverHandsAGpuTaskToAClaimerWithoutGpu() {
        var fold = Fold()
        let gpu = fold.create("train", .critical, requires: ["gpu", "region=eu"])
        let cpu = fold.create("train", .low)
        #expect(fold.claim("w-cpu", capabilities: ["region=eu"]) == .claimed(task: cpu, claim: 1))
        #expect(fold.claim("w-cpu", capabilities: ["region=eu"]) == .refused("nothing to claim"))
        #expect(fold.claim("w-gpu-us", capabilities: ["gpu", "region=us"]) == .refused("nothing to claim"))
        #expect(fold.claim("w-gpu", capabilities: ["gpu", "region=eu"]) == .claimed(task: gpu, claim: 1))
    }

    @Test func typeFiltersSelectTasks() {
        var fold = Fold()
        let build = fold.create("build")
        let test = fold.create("test")
        #expect(fold.claim(types: ["test", "lint"]) == .claimed(task: test, claim: 1))
        #expect(fold.claim(types: ["lint"]) == .refused("nothing to claim"))
        #expect(fold.claim() == .claimed(task: build, claim: 1))
    }

    @Test func aStaleFencingTokenChangesNothingAfterTheWorkerIsLost() {
        var fold = Fold()
        let task = fold.create()
        #expect(fold.claim("w-old") == .claimed(task: task, claim: 1))
        #expect(fold.apply(.workerLost(worker: "w-old", reason: "pid 42 gone")) == .requeued(tasks: [task]))
        let entry = fold.state.tasks.activeTask(task)
        #expect(entry?.status == .failed)
        #expect(entry?.lastError == "worker w-old lost: pid 42 gone")
        // Claimable again once the backoff (1 s for the first retry) has passed.
        #expect(fold.claim("w-new") == .refused("nothing to claim"))
        fold.time += 1_000
        #expect(fold.claim("w-new") == .claimed(task: task, claim: 2))
        // The old holder's complete and fail are refused.
        #expect(
            fold.apply(.taskComplete(task: task, claim: 1, result: "old", tokensUsed: nil))
                == .refused("lease lost: \(task) is held by claim 2, not claim 1"))
        #expect(
            fold.apply(.taskFail(task: task, claim: 1, error: "x", retry: true))
                == .refused("lease lost: \(task) is held by claim 2, not claim 1"))
        #expect(fold.state.tasks.activeTask(task)?.worker == "w-new")
        #expect(fold.apply(.taskComplete(task: task, claim: 2, result: "results/new.json", tokensUsed: 7)) == .completed(task: task))
        #expect(fold.state.tasks.finished.last?.result == "results/new.json")
        #expect(fold.apply(.taskComplete(task: task, claim: 2, result: nil, tokensUsed: nil)) == .refused("\(task) has already finished"))
    }

    @Test func retriesBackOffExponentiallyThenDeadLetter() {
        var fold = Fold()
        let task = fold.create(maxAttempts: 3)
        var retryTimes: [Int64] = []
        for attempt in 1...3 {
            if let notBefore = fold.state.tasks.activeTask(task)?.notBeforeMilliseconds { fold.time = notBefore }
            #expect(fold.claim() == .claimed(task: task, claim: Int64(attempt)))
            let outcome = fold.apply(.taskFail(task: task, claim: Int64(attempt), error: "boom \(attempt)", retry: true))
            switch outcome {
            case .retrying(_, let failedAttempt, let retryAt):
                #expect(failedAttempt == Int64(attempt))
                retryTimes.append(retryAt - fold.time)
                #expect(fold.claim() == .refused("nothing to claim"))  // not before its time
                fold.time -= 1
            case .deadLettered(let dead):
                #expect(attempt == 3)
                #expect(dead == task)
            default: Issue.record("unexpected \(outcome)")
            }
        }
        #expect(retryTimes == [1_000, 2_000])
        #expect(fold.state.tasks.activeTask(task) == nil)
        #expect(fold.state.tasks.finished.last?.status == .dead)
        #expect(fold.state.tasks.finished.last?.lastError == "boom 3")
        #expect(fold.state.tasks.counts[.dead] == 1)
    }

    @Test func failWithoutRetryDeadLettersAtOnce() {
        var fold = Fold()
        let task = fold.create(maxAttempts: 5)
        _ = fold.claim()
        #expect(fold.apply(.taskFail(task: task, claim: 1, error: nil, retry: false)) == .deadLettered(task: task))
    }

    @Test func theSameKeyGivesTheSameTaskUntilItsRetentionEnds() {
        var fold = Fold()
        let first = fold.create(key: "job-42")
        #expect(fold.apply(.taskCreate(TaskSpec(type: "other", key: "job-42"))) == .created(task: first, existing: true))
        _ = fold.claim()
        _ = fold.apply(.taskComplete(task: first, claim: 1, result: nil, tokensUsed: nil))
        #expect(fold.apply(.taskCreate(TaskSpec(type: "build", key: "job-42"))) == .created(task: first, existing: true))
        #expect(fold.state.tasks.created == 1)
        // A day after it finished the key is forgotten (pruned every 1024 creates).
        fold.time += TaskRules.keyRetentionMilliseconds + 1
        for _ in 0..<1100 { _ = fold.create("bulk") }
        guard case .created(let again, false) = fold.apply(.taskCreate(TaskSpec(type: "build", key: "job-42"))) else {
            Issue.record("expected a new task")
            return
        }
        #expect(again != first)
    }

    @Test func cancelStopsPendingAndRunningTasks() {
        var fold = Fold()
        let running = fold.create()
        let pending = fold.create()
        #expect(fold.claim() == .claimed(task: running, claim: 1))
        #expect(fold.apply(.taskCancel(task: running)) == .cancelled(task: running))
        #expect(fold.apply(.taskCancel(task: pending)) == .cancelled(task: pending))
        #expect(fold.apply(.taskCancel(task: pending)) == .refused("\(pending) has already finished"))
        #expect(fold.apply(.taskCancel(task: "task-1.99")) == .rejected("no task task-1.99"))
        #expect(fold.claim() == .refused("nothing to claim"))
        #expect(fold.state.tasks.counts[.cancelled] == 2)
    }

    @Test func aCancelledTaskRefusesItsHoldersCompletion() {
        var fold = Fold()
        let task = fold.create()
        _ = fold.claim()
        _ = fold.apply(.taskCancel(task: task))
        #expect(fold.apply(.taskComplete(task: task, claim: 1, result: nil, tokensUsed: nil)) == .refused("\(task) has already finished"))
    }

    @Test func malformedTaskRecordsAreRejected() {
        var state = CortexState()
        let bad = [
            Record(id: "a", timeMilliseconds: 1, kind: "task.create", data: .object(["type": 5])),
            Record(id: "b", timeMilliseconds: 1, kind: "task.create", data: .object(["type": "x", "priority": "urgent"])),
            Record(id: "c", timeMilliseconds: 1, kind: "task.claim", data: .object(["worker": "w", "types": "build"])),
            Record(id: "d", timeMilliseconds: 1, kind: "task.complete", data: .object(["task": "task-1.0"])),
            Record(id: "e", timeMilliseconds: 1, kind: "task.create", data: .object(["type": "x", "max_attempts": 0])),
        ]
        for item in bad {
            guard case .rejected = Reducer.reduce(&state, item) else {
                Issue.record("\(item.id) was not rejected")
                continue
            }
        }
        #expect(state.tasks.created == 0)
    }

    @Test func taskStateSurvivesItsSnapshotEncoding() throws {
        var fold = Fold()
        let a = fold.create("a", .high, requires: ["gpu"], key: "k1")
        _ = fold.create("b", .low)
        _ = fold.claim(capabilities: ["gpu"])
        _ = fold.apply(.taskFail(task: a, claim: 1, error: "e", retry: true))
        let c = fold.create("c")
        _ = fold.apply(.taskCancel(task: c))
        let decoded = try #require(
            SnapshotCodec.decode(ImmutableBytes(SnapshotCodec.encode(fold.state, position: .start, writtenAtMilliseconds: 0)))
        ).0
        #expect(decoded == fold.state)
        #expect(decoded.tasks.waiting() == fold.state.tasks.waiting())
    }
}
