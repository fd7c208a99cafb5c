import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// Token accounting end to end (docs/decisions/025-token-accounting.md): reported tokens reach
/// the budget, a worker run's allocations do not outlive the run however it ends, leases lapse,
/// and the charge of a worker that reports nothing is the folder's `unreported_tokens` rule.
@Suite("TokenAccounting", .serialized, .timeLimit(.minutes(3)))
struct TokenAccountingTests {
    /// A worker that reserves 5,000 tokens in its own name (as the issue's agent did), notes the
    /// allocation id, and runs until killed.
    static let allocatingWorker = #"""
        "$1/cortex-budget" allocate --tokens 5000 --holder "$CORTEX_WORKER_ID" >> "$2/allocations-$CORTEX_WORKER_ID"
        trap 'exit 0' TERM
        while :; do sleep 0.1; done
        """#

    func allocated(_ sandbox: SpawnSandbox) throws -> (reserved: Int64, ids: [String], spent: Int64) {
        let budget = try sandbox.budgetStatus()
        let ids = (budget["allocations"]?.arrayValue ?? []).compactMap { $0.string("id") }
        return (budget.int("allocated") ?? -1, ids, budget.int("spent") ?? -1)
    }

    func reap(_ sandbox: SpawnSandbox) throws -> JSONValue {
        let reaped = try sandbox.tool(["cortex-reap", "--dir", sandbox.root, "--json", "--grace", "2s"])
        try #require(reaped.exitCode == 0, "\(reaped)")
        return try #require(reaped.json, "\(reaped)")
    }

    @Test func aKilledAndRestartedWorkerRunLeavesNothingReservedAndAStoppedOneNeither() throws {
        let sandbox = try SpawnSandbox(totalTokens: 100_000)
        let spawned = try sandbox.spawn([
            "--restart", "always", "--", bashPath, "-c", Self.allocatingWorker, "worker", toolsDirectory, sandbox.scratch,
        ])
        try #require(spawned.exitCode == 0, "\(spawned)")
        let worker = spawned.stdout.trimmingCharacters(in: .newlines)
        try sandbox.waitUntil("the first run allocated") { sandbox.lines("allocations-\(worker)").count == 1 }
        let first = sandbox.lines("allocations-\(worker)")[0]
        #expect(try allocated(sandbox).reserved == 5_000)
        let shown = try sandbox.waitForStatus(worker, "running")
        let process = try #require(identity(shown, "process"), "\(shown.jsonText)")

        // kill -9: the supervisor records the exit and restarts it; the fold releases the run's allocation.
        #expect(kill(process.pid, SIGKILL) == 0)
        try sandbox.waitUntil("the second run allocated") { sandbox.lines("allocations-\(worker)").count == 2 }
        let second = sandbox.lines("allocations-\(worker)")[1]
        var budget = try allocated(sandbox)
        #expect(!budget.ids.contains(first), "the killed run's \(first) is still reserved: \(budget)")
        #expect(budget.ids == [second] && budget.reserved == 5_000, "\(budget)")
        #expect(budget.spent == 5_000, "reported nothing: all it reserved counts as spent (unreported_tokens reserved)")
        _ = try reap(sandbox)
        #expect(try allocated(sandbox).reserved == 5_000, "the live run keeps its own")

        // cortex worker stop: the run ends and takes its allocation with it, no reaper needed.
        let stop = try sandbox.tool(["cortex", "worker", "stop", worker, "--dir", sandbox.root])
        #expect(stop.exitCode == 0, "\(stop)")
        try sandbox.waitForStatus(worker, "stopped")
        budget = try allocated(sandbox)
        #expect(budget.reserved == 0 && budget.ids.isEmpty, "\(budget)")
        _ = try reap(sandbox)
        budget = try allocated(sandbox)
        #expect(budget.reserved == 0 && budget.spent == 10_000, "\(budget)")
        try sandbox.expectNoProcessesLeft()
    }

    @Test func aWorkerWhoseSupervisorIsKilledLeavesNothingReservedAfterOneReaperRun() throws {
        let sandbox = try SpawnSandbox(totalTokens: 100_000)
        let spawned = try sandbox.spawn(["--", bashPath, "-c", Self.allocatingWorker, "worker", toolsDirectory, sandbox.scratch])
        try #require(spawned.exitCode == 0, "\(spawned)")
        let worker = spawned.stdout.trimmingCharacters(in: .newlines)
        try sandbox.waitUntil("the run allocated") { sandbox.lines("allocations-\(worker)").count == 1 }
        let shown = try sandbox.waitForStatus(worker, "running")
        let supervisor = try #require(identity(shown, "supervisor"), "\(shown.jsonText)")
        #expect(kill(supervisor.pid, SIGKILL) == 0)
        try sandbox.waitUntil("the supervisor is gone") { !ProcStat.exists(supervisor) }
        #expect(try allocated(sandbox).reserved == 5_000, "nothing recorded the end yet")
        // cortex status names the reservation whose holder is gone.
        let status = try sandbox.tool(["cortex", "status", "--dir", sandbox.root, "--json"])
        #expect(status.exitCode == 1, "\(status)")
        let orphaned = status.json?["budget"]?["orphaned"]?.arrayValue ?? []
        #expect(orphaned.count == 1 && orphaned.first?.int("tokens") == 5_000, "\(status)")

        let report = try reap(sandbox)
        #expect(report["lost"]?.arrayValue?.compactMap(\.stringValue) == [worker], "\(report.jsonText)")
        let budget = try allocated(sandbox)
        #expect(budget.reserved == 0 && budget.ids.isEmpty, "\(budget)")
        try sandbox.expectNoProcessesLeft()
    }

    @Test func aLapsedLeaseIsReleasedByOneReaperRunAndARenewedOneIsKept() throws {
        let sandbox = try SpawnSandbox(totalTokens: 100_000)
        func allocate(_ arguments: [String]) throws -> String {
            let result = try sandbox.tool(["cortex-budget", "allocate", "--dir", sandbox.root] + arguments)
            try #require(result.exitCode == 0, "\(result)")
            return result.stdout.trimmingCharacters(in: .newlines)
        }
        let lapsing = try allocate(["--tokens", "1000", "--lease", "1s", "--holder", "batch-job"])
        let renewed = try allocate(["--tokens", "2000", "--lease", "1s"])
        let plain = try allocate(["--tokens", "3000"])
        let renew = try sandbox.tool(["cortex-budget", "renew", renewed, "--lease", "1h", "--dir", sandbox.root])
        #expect(renew.exitCode == 0 && renew.stdout.hasPrefix("renewed \(renewed) until "), "\(renew)")
        let noLease = try sandbox.tool(["cortex-budget", "renew", plain, "--dir", sandbox.root])
        #expect(noLease.exitCode == 1 && noLease.stderrLines.count == 1, "\(noLease)")
        let view = try allocationsView(sandbox.directory)
        let row = view["allocations"]?.arrayValue?.first { $0.string("id") == lapsing }
        #expect(row?.string("lease_expires_at") != nil, "\(view.jsonText)")

        // Let the 1 s lease lapse (a wait, not a limit), then one reaper run releases it.
        try sandbox.waitUntil("the lease lapsed") {
            let status = try sandbox.tool(["cortex", "status", "--dir", sandbox.root, "--json"])
            return status.exitCode == 1 && (status.json?["budget"]?["orphaned"]?.arrayValue?.count ?? 0) == 1
        }
        let report = try reap(sandbox)
        #expect(report["expired"]?.arrayValue?.compactMap(\.stringValue) == [lapsing], "\(report.jsonText)")
        let budget = try allocated(sandbox)
        #expect(Set(budget.ids) == [renewed, plain] && budget.reserved == 5_000, "\(budget)")
        #expect(budget.spent == 1_000, "a lapsed lease reported nothing: all of it counts as spent")
        let status = try sandbox.tool(["cortex", "status", "--dir", sandbox.root, "--json"])
        #expect(status.json?["budget"]?["orphaned"]?.arrayValue?.isEmpty == true, "\(status)")
        let late = try sandbox.tool(["cortex-budget", "renew", lapsing, "--dir", sandbox.root])
        #expect(late.exitCode == 1 && late.stderr.contains("already released"), "\(late)")
        let unknown = try sandbox.tool(["cortex-budget", "renew", "alloc-99.9", "--dir", sandbox.root])
        #expect(unknown.exitCode == 66, "\(unknown)")
        let bad = try sandbox.tool(["cortex-budget", "allocate", "--tokens", "5", "--lease", "soon", "--dir", sandbox.root])
        #expect(bad.exitCode == 65 && bad.stderrLines.count == 1, "\(bad)")
    }

    @Test func completeWithTokensUsedMovesSpentByN() throws {
        let sandbox = try SpawnSandbox(totalTokens: 1_000_000)
        let created = try sandbox.tool(["cortex-task", "create", "--type", "t", "--dir", sandbox.root])
        try #require(created.exitCode == 0, "\(created)")
        let task = created.stdout.trimmingCharacters(in: .newlines)
        let claimed = try sandbox.tool(["cortex-task", "claim", "--worker", "me", "--dir", sandbox.root, "--json"])
        let claim = try #require(claimed.json?.int("claim"), "\(claimed)")
        let completed = try sandbox.tool([
            "cortex-task", "complete", task, "--claim", String(claim), "--tokens-used", "147000", "--dir", sandbox.root,
        ])
        #expect(completed.exitCode == 0, "\(completed)")
        let budget = try allocated(sandbox)
        #expect(budget.spent == 147_000 && budget.reserved == 0, "\(budget)")
        #expect(try budgetView(sandbox.directory).int("available") == 853_000)

        // With an allocation held for the task, that allocation is released with used = N.
        let second = try sandbox.tool(["cortex-task", "create", "--type", "t", "--dir", sandbox.root])
        let next = second.stdout.trimmingCharacters(in: .newlines)
        let held = try sandbox.tool(["cortex-budget", "allocate", "--tokens", "5000", "--task", next, "--dir", sandbox.root])
        try #require(held.exitCode == 0, "\(held)")
        let claimedNext = try sandbox.tool(["cortex-task", "claim", "--worker", "me", "--dir", sandbox.root, "--json"])
        let nextClaim = try #require(claimedNext.json?.int("claim"), "\(claimedNext)")
        _ = try sandbox.tool([
            "cortex-task", "complete", next, "--claim", String(nextClaim), "--tokens-used", "1200", "--dir", sandbox.root,
        ])
        let after = try allocated(sandbox)
        #expect(after.reserved == 0 && after.ids.isEmpty && after.spent == 148_200, "\(after)")
    }

    @Test func theUnreportedTokensSettingDecidesWhatASilentWorkerIsCharged() throws {
        let sandbox = try SpawnSandbox(totalTokens: 1_000)
        try updateConfig(sandbox.directory, ["unreported_tokens": "zero"])
        let spawned = try sandbox.spawn(["--tokens", "300", "--", "true"])
        try #require(spawned.exitCode == 0, "\(spawned)")
        try sandbox.waitForStatus(spawned.stdout.trimmingCharacters(in: .newlines), "exited")
        var budget = try allocated(sandbox)
        #expect(budget.spent == 0 && budget.reserved == 0, "\(budget)")

        try updateConfig(sandbox.directory, ["unreported_tokens": "reserved"])
        let charged = try sandbox.spawn(["--tokens", "300", "--", "true"])
        try sandbox.waitForStatus(charged.stdout.trimmingCharacters(in: .newlines), "exited")
        budget = try allocated(sandbox)
        #expect(budget.spent == 300, "\(budget)")

        try updateConfig(sandbox.directory, ["unreported_tokens": "some"])
        let refused = try sandbox.spawn(["--tokens", "300", "--", "true"])
        #expect(refused.exitCode == 78 && refused.stderrLines.count == 1, "\(refused)")
        #expect(refused.stderr.contains("unreported_tokens"), "\(refused)")
        try sandbox.expectNoProcessesLeft()
    }
}
