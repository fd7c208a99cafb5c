import CortexCore
import CortexStorage
import Foundation
import Testing

/// Issue 5's chaos suite (docs/design.md invariant 5): 500 tasks through a pool of supervised bash
/// workers while a chaos loop `kill -9`s random workers, supervisors, in-flight
/// `cortex-task claim|complete|fail` calls and reapers, and `cortex-reap` runs every two seconds. At the end
/// every task is done, or dead exactly where its attempts ran out; no task is lost or completed
/// twice; no process is left, zombie or not; nothing stays reserved; `cortex verify` passes.
@Suite(.serialized) struct ChaosTests {
    @Test(.timeLimit(.minutes(5)))
    func fiveHundredTasksSurviveKillNineOfWorkersSupervisorsAndCLICalls() throws {
        let run = try ChaosRun(taskCount: 500, poolSize: 6)
        defer { run.killEverything() }
        try run.startPoolAndCreateTasks()
        try run.drainUnderChaos(deadlineSeconds: 120)
        try run.stopPool(deadlineSeconds: 60)
        try run.checkEndState()
        print("chaos run: \(run.description)")
    }
}

/// One chaos run: its coordination folder, the processes it started, and what it killed.
/// Every process of the run carries `CORTEX_CHAOS_MARK=<token>` in its environment (supervisors
/// and workers inherit it from the tools that start them), so a scan of /proc finds them all,
/// detached ones included, and `killEverything` leaves nothing behind even when a check fails.
final class ChaosRun {
    /// What a process of the run is, from its command line.
    enum Role: String, CaseIterable {
        case supervisor, worker, call, reaper, other

        /// The kinds the chaos loop kills (a reaper too: what it owed is in the journal).
        static let victims: [Role] = [.worker, .supervisor, .call, .reaper]
    }

    struct Member {
        var stat: ProcStat
        var role: Role
    }

    let directory: TemporaryDirectory
    /// The coordination folder's real path (what supervisors and workers are given).
    let root: String
    let markEntry: String
    let environment: [String: String]
    /// Tasks created so far: 500, plus batches of 50 if the queue drains before chaos hit every
    /// kind of process a few times (fast tools on a quiet machine).
    var taskCount: Int
    let poolSize: Int
    let workerScript: String
    let seed: UInt64
    var random: SplitMix
    /// Every process the chaos loop killed, to check at the end that each was reaped.
    var killed: [ProcessIdentity] = []
    var kills: [Role: Int] = [:]
    var reaps: [ToolResult] = []
    var reaper: RunningTool?
    var lastReapStart = ContinuousClock.now
    var creator: RunningTool?

    /// Every `--max-attempts 2` task whose work is `fail` fails on purpose (dead after 2 attempts);
    /// every tenth task has one attempt (dead only if chaos hits it); the rest have plenty.
    static func plan(_ number: Int) -> (work: String, maxAttempts: Int) {
        if number % 10 == 0 { return ("fail", 2) }
        if number % 10 == 5 { return ("0.02", 1) }
        return (["0.05", "0.1", "0.2"][number % 3], 50)
    }

    init(taskCount: Int, poolSize: Int) throws {
        self.taskCount = taskCount
        self.poolSize = poolSize
        directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        // A short heartbeat timeout (supervisors touch every quarter of it), room for restarts, and
        // no load limit: the 2-core machine is shared and a spawn must not wait for the load average.
        try updateConfig(
            directory,
            [
                "max_workers": .int(Int64(poolSize * 3)), "max_load_per_core": .int(1000), "max_cpu_pressure": .int(100),
                "heartbeat_timeout": .string("3s"),
            ])
        guard let resolved = realpath(directory.coordination, nil) else { throw SupportError("realpath failed") }
        root = String(cString: resolved)
        free(resolved)
        var generator = SystemRandomNumberGenerator()
        seed = generator.next()
        random = SplitMix(seed: seed)
        markEntry = "CORTEX_CHAOS_MARK=\(seed)-\(getpid())"
        var environment = toolEnvironment
        environment["CORTEX_CHAOS_MARK"] = String(markEntry.dropFirst("CORTEX_CHAOS_MARK=".count))
        environment["CHAOS_TASK_BIN"] = toolPath("cortex-task")
        self.environment = environment
        workerScript = directory.path + "/chaos-worker.sh"
        try Self.workerSource.write(toFile: workerScript, atomically: true, encoding: .utf8)
    }

    /// A pool member: claim (sleeping until a task exists), work, complete or fail, forever. A
    /// call that ends any other way than 0, 1 (a normal "no") or 75 (nothing within the wait)
    /// leaves it unsure whether it holds a claim, so it exits: its supervisor's exit record gives
    /// back whatever the run held, and the supervisor restarts it.
    static let workerSource = #"""
        #!/usr/bin/env bash
        set -u
        tool=$CHAOS_TASK_BIN
        me=$CORTEX_WORKER_ID
        while true; do
          claimed=$("$tool" claim --worker "$me" --wait 5s)
          status=$?
          case $status in
            0) ;;
            1 | 75) continue ;;
            *) exit 3 ;;
          esac
          [[ $claimed =~ \"id\":\"([^\"]+)\" ]] || exit 4
          task=${BASH_REMATCH[1]}
          [[ $claimed =~ \"claim\":([0-9]+) ]] || exit 4
          claim=${BASH_REMATCH[1]}
          [[ $claimed =~ \"description\":\"([^\"]*)\" ]] || exit 4
          work=${BASH_REMATCH[1]}
          if [ "$work" = fail ]; then
            "$tool" fail "$task" --claim "$claim" --error "fails on purpose"
          else
            sleep "$work"
            "$tool" complete "$task" --claim "$claim" --result '{"ok":true}' >/dev/null
          fi
          [ $? -le 1 ] || exit 5
        done
        """#

    var description: String {
        "seed \(seed), \(taskCount) tasks, kills \(Role.allCases.map { "\($0.rawValue) \(kills[$0] ?? 0)" }.joined(separator: ", ")), \(reaps.count) reaper runs"
    }

    // MARK: - Phases

    /// Starts the pool (each member reserving 10 tokens, so settlement is checked too), then
    /// creates the tasks from one bash loop in the background while the workers already claim.
    func startPoolAndCreateTasks() throws {
        let spawned = try RunningTool(
            [
                "cortex-spawn", "--dir", root, "--pool", String(poolSize), "--tokens", "10", "--restart", "always", "--",
                bashPath, workerScript,
            ], scratch: directory.scratch, environment: environment
        ).wait()
        try #require(spawned.exitCode == 0, "\(spawned)")
        poolIDs = spawned.stdoutLines
        try #require(poolIDs.count == poolSize, "\(spawned)")
        try createTasks(1...taskCount)
    }

    /// Creates tasks `numbers` (their plan follows the number) from one bash loop in the background.
    func createTasks(_ numbers: ClosedRange<Int>) throws {
        var lines = ["set -e"]
        for number in numbers {
            let (work, attempts) = Self.plan(number)
            lines.append(
                #""$1" create --dir "$2" --type chaos --description \#(work) --max-attempts \#(attempts) --backoff 0 >/dev/null"#)
        }
        let script = directory.path + "/create-tasks-\(numbers.lowerBound).sh"
        try lines.joined(separator: "\n").write(toFile: script, atomically: true, encoding: .utf8)
        creator = try RunningTool(
            [bashPath, script, toolPath("cortex-task"), root], scratch: directory.scratch, environment: environment)
    }

    /// True once chaos has killed every kind of victim at least three times.
    var chaosHitEveryKind: Bool { Role.victims.allSatisfy { kills[$0, default: 0] >= 3 } }

    var poolIDs: [String] = []

    /// Runs the chaos loop and the reaper until four fifths of the tasks have finished, then only
    /// the reaper until every task has (done or dead).
    func drainUnderChaos(deadlineSeconds: Int) throws {
        let deadline = ContinuousClock.now + .seconds(deadlineSeconds)
        var nextCheck = ContinuousClock.now
        var fold = FreshFold()
        while true {
            if ContinuousClock.now >= nextCheck {
                nextCheck = ContinuousClock.now + .milliseconds(500)
                if let creator, !creator.isRunning {
                    let created = creator.wait()
                    try #require(created.exitCode == 0, "creating the tasks failed: \(created)")
                    self.creator = nil
                }
                fold = try foldJournal(directory)
                if creator == nil && finished(fold) == taskCount {
                    if chaosHitEveryKind || taskCount >= 1000 { break }
                    try createTasks((taskCount + 1)...(taskCount + 50))
                    taskCount += 50
                }
            }
            if ContinuousClock.now > deadline {
                throw SupportError(
                    "after \(deadlineSeconds) s only \(finished(fold)) of \(taskCount) tasks finished (\(description)); "
                        + "not finished: \(unfinished(fold)); workers: \(fold.state.workers.live.values.map { "\($0.id) \($0.status)" })")
            }
            reapIfDue()
            // The last fifth drains in calm: recovery must not wait for more chaos (a supervisor
            // killed later would hide a lease that only its loss gives back). Fast (release) tools
            // get there sooner, so chaos also goes on until every kind of process was hit a few times.
            if finished(fold) < taskCount * 4 / 5 || !chaosHitEveryKind {
                chaosTick()
            }
            usleep(UInt32(80_000 + random.next() % 250_000))
        }
        if let reaper {
            reaps.append(reaper.wait())
            self.reaper = nil
        }
    }

    /// Stops every pool member (`cortex worker stop`, then a reaper run for any whose supervisor
    /// chaos killed at the end) until no worker is alive in the fold and no process of the run is left.
    func stopPool(deadlineSeconds: Int) throws {
        let deadline = ContinuousClock.now + .seconds(deadlineSeconds)
        while true {
            let fold = try foldJournal(directory)
            let live = fold.state.workers.live.values.sorted { $0.id < $1.id }
            let left = processes()
            if live.isEmpty && left.isEmpty { return }
            if ContinuousClock.now > deadline {
                throw SupportError(
                    "the pool did not stop within \(deadlineSeconds) s: workers \(live.map { "\($0.id) \($0.status)" }), "
                        + "processes \(left.map { "\($0.role) \($0.stat)" }) (\(description))")
            }
            for worker in live where worker.status != .stopping {
                _ = try RunningTool(["cortex", "worker", "stop", worker.id, "--dir", root], scratch: directory.scratch).wait()
            }
            reaps.append(try reap().wait())
            usleep(300_000)
        }
    }

    /// The end state, checked from a fresh fold of the journal, the tools' own answers and /proc.
    func checkEndState() throws {
        let fold = try foldJournal(directory)
        #expect(fold.state.tasks.created == Int64(taskCount))
        #expect(
            fold.state.tasks.counts.filter { !$0.key.isTerminal && $0.value > 0 }.isEmpty, "unfinished: \(unfinished(fold))")
        var entries: [String: TaskEntry] = [:]
        for entry in fold.state.tasks.finished {
            #expect(entries[entry.id] == nil, "\(entry.id) finished twice")
            entries[entry.id] = entry
        }
        var completions: [String: Int] = [:]
        for folded in fold.records {
            if case .completed(let task) = folded.outcome { completions[task, default: 0] += 1 }
        }
        // Tasks are created by one loop at a time, so the n-th create folded is task number n.
        let createdInOrder = fold.records.compactMap { folded -> String? in
            if case .created(let task, false) = folded.outcome { return task }
            return nil
        }
        try #require(createdInOrder.count == taskCount, "\(createdInOrder.count) creates folded")
        var tally: [TaskStatus: Int] = [:]
        for number in 1...taskCount {
            let id = createdInOrder[number - 1]
            guard let entry = entries[id] else {
                Issue.record("\(id) is lost: not finished in the fold")
                continue
            }
            tally[entry.status, default: 0] += 1
            let (work, attempts) = Self.plan(number)
            #expect(entry.spec.maxAttempts == Int64(attempts))
            switch entry.status {
            case .done:
                #expect(work != "fail", "\(id) fails on purpose, yet it is done")
                #expect(completions[id] == 1, "\(id): \(completions[id] ?? 0) accepted completions")
            case .dead:
                #expect(entry.attempt == entry.spec.maxAttempts, "\(id) dead after \(entry.attempt) of \(attempts) attempts")
                #expect(completions[id] == nil, "\(id) is dead but has an accepted completion")
            default:
                Issue.record("\(id) ended \(entry.status.rawValue)")
            }
        }
        // The fail-on-purpose tasks exercise dead-lettering every run.
        #expect((tally[.dead] ?? 0) >= taskCount / 10, "\(tally)")

        // The tools agree with the fold.
        let listed = try runTool(["cortex-task", "list", "--dir", root, "--json"], in: directory)
        try #require(listed.exitCode == 0, "\(listed)")
        let rows = listed.json?["tasks"]?.arrayValue ?? []
        #expect(rows.count == taskCount, "cortex-task list shows \(rows.count) tasks")
        for status in [TaskStatus.done, .dead] {
            #expect(rows.filter { $0.string("status") == status.rawValue }.count == tally[status] ?? 0, "\(status)")
        }
        let queue = try JSONValue.parse(String(contentsOfFile: root + "/task-queue.json", encoding: .utf8))
        #expect(queue["counts"]?.int("done") == Int64(tally[.done] ?? 0), "\(queue.jsonText)")
        #expect(queue["counts"]?.int("dead") == Int64(tally[.dead] ?? 0), "\(queue.jsonText)")
        for status in ["pending", "running", "failed"] { #expect(queue["counts"]?.int(status) == 0, "\(queue.jsonText)") }

        let budget = try runTool(["cortex-budget", "status", "--dir", root, "--json"], in: directory)
        #expect(budget.exitCode == 0 && budget.json?.int("allocated") == 0, "tokens still reserved: \(budget)")
        #expect(budget.json?.int("in_use") == 0, "\(budget)")
        #expect(fold.state.budget.reserved == 0)
        #expect(fold.overAllocations.isEmpty, "\(fold.overAllocations)")

        let verified = try runTool(["cortex", "verify", "--dir", root], in: directory)
        #expect(verified.exitCode == 0, "\(verified)")

        // Chaos really happened, and the reaper always did its job.
        for role in Role.victims { #expect((kills[role] ?? 0) > 0, "no \(role) was killed: \(description)") }
        for result in reaps where result.signal != SIGKILL { #expect(result.exitCode == 0, "\(result)") }
        // Counted in the journal, not in the reapers' output: a reaper killed right after its
        // `worker.lost` landed never prints it, and chaos kills reapers too.
        let declaredLost = fold.records.filter { $0.record.kind == "worker.lost" }.count
        #expect(declaredLost > 0, "killed supervisors were never declared lost: \(description)")

        // Nothing is left: no process of the run, and every process it killed or the journal
        // recorded has been reaped (no zombie). Orphans are reaped by pid 1, which may be slow.
        #expect(processes().isEmpty, "left running: \(processes().map { "\($0.role) \($0.stat)" })")
        var recorded = killed
        // Refused records are left out: a worker whose supervisor chaos killed is orphaned, so its
        // start is recorded naming pid 1 as the supervisor, and the fold refuses that.
        for folded in fold.records where folded.record.kind.hasPrefix("worker.") && folded.outcome.changesState {
            for key in ["supervisor", "process"] {
                if let identity = identity(folded.record.data, key) { recorded.append(identity) }
            }
        }
        let deadline = ContinuousClock.now + .seconds(30)
        while recorded.contains(where: ProcStat.exists) && ContinuousClock.now < deadline { usleep(100_000) }
        let unreaped = recorded.filter(ProcStat.exists).compactMap { ProcStat.read($0.pid) }
        #expect(unreaped.isEmpty, "not reaped: \(unreaped)")
    }

    // MARK: - Chaos

    /// Kills one random process of the kind killed least so far (ties broken at random): a worker
    /// (its bash loop), a supervisor, an in-flight `cortex-task claim|complete|fail` call, or a reaper.
    func chaosTick() {
        let fewest = Role.victims.map { kills[$0, default: 0] }.min() ?? 0
        let candidates = Role.victims.filter { kills[$0, default: 0] == fewest }
        let wanted = candidates[Int(random.next() % UInt64(candidates.count))]
        if wanted == .reaper {
            killReaper()
            return
        }
        // In-flight calls are short: look many times before giving up this tick.
        for _ in 0..<(wanted == .call ? 15 : 1) {
            let victims = processes().filter { $0.role == wanted }
            if victims.isEmpty {
                usleep(2_000)
                continue
            }
            let victim = victims[Int(random.next() % UInt64(victims.count))].stat
            // Still the very process seen (not a recycled pid), then SIGKILL.
            guard ProcStat.read(victim.pid)?.startTicks == victim.startTicks, kill(victim.pid, SIGKILL) == 0 else { return }
            killed.append(ProcessIdentity(pid: victim.pid, startTicks: victim.startTicks))
            kills[wanted, default: 0] += 1
            return
        }
    }

    /// Kills a reaper a few random milliseconds into its run. Fast (release) reapers finish in
    /// milliseconds, quicker than a scan of `/proc` finds them (a CI run of 1,000 tasks killed
    /// none that way), so this one is started here when none runs and killed by the pid the test
    /// holds: the test reaps it itself, so that pid is never a recycled one.
    func killReaper() {
        if reaper == nil { reaper = try? reap() }
        guard let reaper else { return }
        usleep(UInt32(random.next() % 3_000))
        guard reaper.isRunning, let stat = ProcStat.read(reaper.pid), stat.state != "Z", reaper.kill(SIGKILL) else { return }
        killed.append(ProcessIdentity(pid: stat.pid, startTicks: stat.startTicks))
        kills[.reaper, default: 0] += 1
    }

    func reap() throws -> RunningTool {
        lastReapStart = ContinuousClock.now
        return try RunningTool(
            ["cortex-reap", "--dir", root, "--json", "--heartbeat-timeout", "3s", "--grace", "1s"], scratch: directory.scratch,
            environment: environment)
    }

    /// Starts a reaper two seconds after the last one started, once that one has ended.
    func reapIfDue() {
        if let reaper, !reaper.isRunning {
            reaps.append(reaper.wait())
            self.reaper = nil
        }
        if reaper == nil && ContinuousClock.now - lastReapStart >= .seconds(2) { reaper = try? reap() }
    }

    // MARK: - Processes

    /// Every live process of the run: it carries the mark, or its command line names the run's folder.
    func processes() -> [Member] {
        let mark = Array(markEntry.utf8)
        let me = getpid()
        return ProcStat.all().compactMap { stat in
            guard stat.pid != me, stat.state != "Z" else { return nil }
            let environ = (try? POSIX.readFile("/proc/\(stat.pid)/environ")) ?? []
            let words = ((try? POSIX.readFile("/proc/\(stat.pid)/cmdline")) ?? []).split(separator: 0).map {
                String(decoding: $0, as: UTF8.self)
            }
            let marked = environ.split(separator: 0).contains { $0.elementsEqual(mark) }
            guard marked || words.contains(where: { $0.hasPrefix(directory.path) }) else { return nil }
            return Member(stat: stat, role: role(words, stat))
        }
    }

    func role(_ words: [String], _ stat: ProcStat) -> Role {
        let program = words.first.map { String($0.split(separator: "/").last ?? "") } ?? ""
        if words.contains("_supervise") { return .supervisor }
        if program == "cortex-reap" { return .reaper }
        if program == "cortex-task", words.count > 1, ["claim", "complete", "fail"].contains(words[1]) { return .call }
        // The worker's bash loop leads its own group; its `$(…)` subshells do not.
        if words.contains(workerScript) && stat.pid == stat.group { return .worker }
        return .other
    }

    /// SIGKILL to every process of the run: supervisors first (so none restarts its worker), then
    /// the others and the groups they lead. Never the test runner's own group.
    func killEverything() {
        reaper = nil
        creator = nil
        let ownGroup = getpgrp()
        for _ in 0..<200 {
            let left = processes()
            if left.isEmpty { return }
            for member in left where member.role == .supervisor { kill(member.stat.pid, SIGKILL) }
            for member in left where member.role != .supervisor {
                if member.stat.group == member.stat.pid && member.stat.group != ownGroup { kill(-member.stat.group, SIGKILL) }
                kill(member.stat.pid, SIGKILL)
            }
            usleep(50_000)
        }
    }

    // MARK: - Fold helpers

    func finished(_ fold: FreshFold) -> Int {
        Int(fold.state.tasks.finishedCounts.filter { $0.key.isTerminal }.values.reduce(0, +))
    }

    func unfinished(_ fold: FreshFold) -> String {
        let counts = fold.state.tasks.counts.filter { !$0.key.isTerminal && $0.value > 0 }
        let running = fold.state.tasks.running.prefix(10).map { "\($0.id) attempt \($0.attempt) by \($0.worker ?? "?")" }
        return "\(counts.map { "\($0.key.rawValue) \($0.value)" }) running: \(running)"
    }
}

/// A small seeded generator (SplitMix64), so a failing run's choices are named by its seed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
