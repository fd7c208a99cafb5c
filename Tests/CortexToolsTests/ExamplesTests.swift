import CortexCore
import CortexStorage
import Foundation
import Testing

/// The README's quick start, the Cortex 1.0 migration example and the jq recipes, run as a
/// person would run them.
@Suite("Examples and the quick start", .serialized)
struct ExamplesTests {
    /// bash with the built tools first on the PATH, `CORTEX_DIR` set, in `directory`'s scratch folder.
    func bash(_ script: String, cortexDir: String, in directory: TemporaryDirectory, extra: String = "") throws -> ToolResult {
        let prologue = "export PATH=\"\(toolsDirectory):$PATH\" CORTEX_DIR=\"\(cortexDir)\" \(extra); set -o pipefail; "
        return try runTool([bashPath, "-c", prologue + script], in: directory)
    }

    /// examples/two-hosts.sh: a local 3-member etcd cluster, two host folders on one namespace,
    /// a reaper and a pool on each; every task is done once and both hosts say so.
    @Test(
        .enabled(if: jqPath != nil && executableOnPath("etcd") != nil, "etcd and jq are needed (apt-get install etcd-server jq)"),
        .timeLimit(.minutes(5)))
    func twoHostsShareOneQueueThroughEtcd() throws {
        let directory = try TemporaryDirectory()
        let result = try bash("\"\(packageRoot)/examples/two-hosts.sh\" 8", cortexDir: directory.coordination, in: directory)
        #expect(result.exitCode == 0, "\(result)")
        let done = result.stdoutLines.filter { $0.hasPrefix("tasks ") }
        #expect(done.count == 2 && done.allSatisfy { $0.contains("done 8") }, "\(result)")
        let shares = result.stdoutLines.first { $0.hasPrefix("done on host a:") } ?? ""
        let counts = shares.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        #expect(counts.reduce(0, +) == 8, "each task done exactly once: \(result)")
    }

    /// examples/session-master.sh, a master under `set -euo pipefail`: its calls through one
    /// session and through one process per call all succeed, and the budget ends as the fold of
    /// both says (every allocation released, 5 tokens spent per pair).
    @Test(.timeLimit(.minutes(5)))
    func theSessionMasterRunsUnderSetEAndItsCallsAddUp() throws {
        let directory = try TemporaryDirectory()
        let run = try bash("\"\(packageRoot)/examples/session-master.sh\" 20", cortexDir: directory.coordination, in: directory)
        #expect(run.exitCode == 0, "\(run)")
        #expect(run.stdout.contains("20 allocate+release pairs:") && run.stdout.contains("through one session"), "\(run)")
        let budget = try budgetView(directory)
        #expect(budget.int("spent") == 40 * 5 && budget.int("allocated") == 0, "\(budget.jsonText)")
    }

    @Test(.enabled(if: jqPath != nil, "jq is not installed: the examples use it"), .timeLimit(.minutes(5)))
    func theCortex1MigrationRunsAndEveryJQRecipeRunsAgainstItsFolder() throws {
        let directory = try TemporaryDirectory()
        let dir = directory.coordination
        // The script's own `cortex init` keeps this: a suite running in parallel loads the
        // machine, and the pool must not wait for the load to drop.
        try initialise(directory, totalTokens: 500_000)
        try updateConfig(directory, ["max_load_per_core": .int(1000), "max_cpu_pressure": .int(100)])
        let migrated = try bash(
            "DRAIN_TIMEOUT=90 \"\(packageRoot)/examples/cortex1-migration.sh\" 6", cortexDir: dir, in: directory)
        #expect(migrated.exitCode == 0, "\(migrated)")
        // It prints: available after the reservation, pending after enqueueing, then done.
        #expect(migrated.stdoutLines == ["480000", "6", "6"], "\(migrated)")
        let budget = try budgetView(directory)
        #expect(budget.int("spent") == 12000 && budget.int("allocated") == 0, "\(budget.jsonText)")
        let queue = try JSONValue.parse(try String(contentsOfFile: dir + "/task-queue.json", encoding: .utf8))
        #expect(queue["counts"]?.int("done") == 6, "\(queue.jsonText)")
        // The 1.0 read-only lines the migration example lists as unchanged read the same.
        let reads = try bash(
            #"jq .done "$CORTEX_DIR/task-queue.json"; jq '.running | length' "$CORTEX_DIR/task-queue.json"; jq '.pending | length' "$CORTEX_DIR/task-queue.json"; jq .available "$CORTEX_DIR/token-budget.json""#,
            cortexDir: dir, in: directory)
        #expect(reads.stdoutLines == ["6", "0", "0", "488000"], "\(reads)")  // 500000 less 12000 spent
        // Its pool stopped as a unit (`cortex pool stop`): no member left, none restarted.
        let pool = try JSONValue.parse(try String(contentsOfFile: dir + "/worker-pool.json", encoding: .utf8))
        #expect(pool["workers"]?.arrayValue?.isEmpty == true && pool["counts"]?.int("stopped") == 2, "\(pool.jsonText)")
        // The replacement lines the example's header gives for what changed read a value.
        let replaced = try bash(
            #"cortex-task create --type y >/dev/null && id=$(cortex-task claim --worker w-y --type y | jq -r .id) && cortex-task create --type y >/dev/null && jq -r --arg id "$id" '.running[] | select(.id == $id) | .worker' "$CORTEX_DIR/task-queue.json" && jq '.counts.pending + .counts.failed' "$CORTEX_DIR/task-queue.json""#,
            cortexDir: dir, in: directory)
        #expect(replaced.stdoutLines == ["w-y", "1"], "\(replaced)")

        // A dead letter and the dashboard's events.json, so every recipe has something to read.
        let dead = try bash(
            #"cortex-task create --type x --max-attempts 1 >/dev/null && t=$(cortex-task claim --worker w-x --type x) && cortex-task fail "$(jq -r .id <<<"$t")" --claim 1 --error boom && cortex dashboard"#,
            cortexDir: dir, in: directory)
        #expect(dead.exitCode == 0, "\(dead)")

        let page = try String(contentsOfFile: packageRoot + "/examples/jq-recipes.md", encoding: .utf8)
        var recipes: [String] = []
        var inBlock = false
        for line in page.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                inBlock = line == "```bash"
                continue
            }
            if inBlock && !line.trimmingCharacters(in: .whitespaces).isEmpty { recipes.append(String(line)) }
        }
        #expect(recipes.count >= 30, "\(recipes.count) recipes")
        for recipe in recipes {
            let result = try bash(recipe, cortexDir: dir, in: directory)
            #expect(result.exitCode == 0 && !result.stderr.contains("error"), "recipe failed: \(recipe)\n\(result)")
        }
        #expect(try bash(recipes[0], cortexDir: dir, in: directory).stdout == "488000\n")
    }

    /// The README's first command, as written there, in a fresh clone of this repository.
    /// It builds the release tools from scratch (about a minute here), so it runs only when asked:
    /// `CORTEX_QUICKSTART_TEST=1 swift test --filter QuickStart` (.ci/run does).
    @Test(
        .enabled(
            if: ProcessInfo.processInfo.environment["CORTEX_QUICKSTART_TEST"] == "1",
            "the quick start builds from scratch: run it with CORTEX_QUICKSTART_TEST=1 (.ci/run does)"),
        .timeLimit(.minutes(15)))
    func readmeQuickStartWorksAsWrittenInAFreshClone() throws {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let block = try #require(readme.components(separatedBy: "```bash\n").dropFirst().first, "README has no bash block")
        let firstLine = try #require(block.split(separator: "\n").first.map(String.init))
        let command = String(firstLine.split(separator: "#", maxSplits: 1)[0]).trimmingCharacters(in: .whitespaces)
        #expect(command == "bin/quickstart", "the README's first command changed: check this test still runs it")

        let directory = try TemporaryDirectory()
        let clone = directory.path + "/clone"
        let cloned = try runTool(["/usr/bin/env", "git", "clone", "-q", packageRoot, clone], in: directory)
        try #require(cloned.exitCode == 0, "\(cloned)")
        let prefix = directory.path + "/prefix"
        let dir = directory.path + "/coordination"
        let started = Date()
        let run = try runTool(
            [
                bashPath, "-c", "cd \"$1\" && export PREFIX=\"$2\" CORTEX_DIR=\"$3\" DRAIN_TIMEOUT=240 && \(command)", "quickstart", clone,
                prefix, dir,
            ],
            in: directory)
        print(
            "quick start in a fresh clone: \(Int(Date().timeIntervalSince(started))) s (exit \(run.exitCode.map(String.init) ?? "signal"))")
        try #require(run.exitCode == 0, "\(run)")
        for tool in toolNames {
            #expect(FileManager.default.isExecutableFile(atPath: "\(prefix)/bin/\(tool)"), "\(tool) installed")
            #expect(FileManager.default.fileExists(atPath: "\(prefix)/share/bash-completion/completions/\(tool)"))
            #expect(FileManager.default.isExecutableFile(atPath: "\(clone)/bin/\(tool)"), "bin/ stays a PATH entry")
        }
        #expect(run.stdout.contains("tasks         pending 0 · running 0 · done 20"), "cortex status after the pool demo\n\(run)")
        #expect(run.stdout.contains("100 allocate+release pairs:"), "the session demo\n\(run)")
        #expect(FileManager.default.fileExists(atPath: dir + "/dashboard.html"))
        let verify = try runTool(["\(prefix)/bin/cortex", "verify", "--dir", dir], in: directory)
        #expect(verify.exitCode == 0, "\(verify)")
        let workers = try JSONValue.parse(try String(contentsOfFile: dir + "/worker-pool.json", encoding: .utf8))
        #expect(workers["capacity"]?.int("running") == 0, "the demo stops its pool: \(workers.jsonText)")
    }
}
