import CortexCore
import Foundation
import Testing

/// Tenants' quotas on claims, end to end (docs/decisions/041): a shared pool's claimers pass over
/// the tasks of a tenant at its `--max-workers`, a claimer that finds only such tasks exits 75
/// naming the quota, and one waiting with `--wait` gets the task once the tenant's usage drops.
@Suite("Tenant quotas on claims", .timeLimit(.minutes(5)))
struct TenantClaimTests {
    @Test func claimsPassOverATenantAtItsLimitAndWaitForItsUsageToDrop() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let root = directory.coordination
        func tool(_ arguments: [String]) throws -> ToolResult { try runTool(arguments + ["--dir", root], in: directory) }
        func create(_ tenant: String) throws -> String {
            let created = try tool(["cortex-task", "create", "--type", "work", "--tenant", tenant])
            try #require(created.exitCode == 0, "\(created)")
            return created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func claimed(_ result: ToolResult) -> (task: String, claim: Int64)? {
            guard result.exitCode == 0, let json = result.json, let task = json.string("id"), let claim = json.int("claim") else {
                return nil
            }
            return (task, claim)
        }
        let quota = try tool(["cortex-budget", "quota", "--tenant", "acme", "--max-workers", "1"])
        try #require(quota.exitCode == 0, "\(quota)")
        let acmeFirst = try create("acme")
        let acmeSecond = try create("acme")
        let globex = try create("globex")

        let first = try tool(["cortex-task", "claim", "--worker", "w-1"])
        #expect(claimed(first)?.task == acmeFirst, "\(first)")
        // acme's second task is older, but acme is at its limit: globex's task goes next.
        let second = try tool(["cortex-task", "claim", "--worker", "w-2"])
        #expect(claimed(second)?.task == globex, "\(second)")
        let third = try tool(["cortex-task", "claim", "--worker", "w-3"])
        #expect(third.exitCode == 75, "\(third)")
        #expect(third.stderrLines.count == 1 && third.stderr.contains("tenant acme quota: 1 of 1 tasks running"), "\(third)")

        let status = try tool(["cortex-budget", "status", "--json"])
        #expect(status.json?["tenant_workers"]?["acme"]?["held"]?.int("tasks_running") == 1, "\(status)")

        // A claimer waiting for work gets acme's task as soon as acme's running task is done.
        let waiting = try RunningTool(
            ["cortex-task", "claim", "--worker", "w-3", "--wait", "2m", "--dir", root], scratch: directory.scratch)
        let held = try #require(claimed(first))
        let done = try tool(["cortex-task", "complete", held.task, "--claim", String(held.claim)])
        #expect(done.exitCode == 0, "\(done)")
        let woken = waiting.wait()
        #expect(claimed(woken)?.task == acmeSecond, "\(woken)")
    }
}
