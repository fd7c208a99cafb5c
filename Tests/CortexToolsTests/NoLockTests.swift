import CortexCore
import CortexStorage
import Foundation
import Testing

/// Invariant 1 (docs/design.md): no lock is taken on the path of an operation. Each operation runs
/// under strace, and the trace must hold no file-lock call: `flock`, or `fcntl` with a lock
/// command (`F_SETLK`, `F_SETLKW`, `F_OFD_SETLK`, `F_OFD_SETLKW`).
@Suite("No locks", .timeLimit(.minutes(5)), .enabled(if: straceAvailable, "strace is not installed (apt-get install strace)"))
struct NoLockTests {
    static let lockCalls = ["flock(", "F_SETLK", "F_OFD_SETLK", "lockf("]

    @Test func noOperationTakesAFileLock() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        // The spawn below must not queue because the suite loads this 2-core machine.
        try updateConfig(directory, ["max_load_per_core": .int(1000), "max_cpu_pressure": .int(100)])
        let dir = directory.coordination
        let steps: [[String]] = [
            ["cortex-budget", "allocate", "--dir", dir, "--tokens", "10"],
            ["cortex-budget", "release", "{allocation}", "--dir", dir, "--used", "3"],
            ["cortex-task", "create", "--dir", dir, "--type", "work"],
            ["cortex-task", "claim", "--dir", dir, "--worker", "w-1"],
            ["cortex-task", "heartbeat", "{task}", "--claim", "1", "--dir", dir],
            ["cortex-task", "complete", "{task}", "--claim", "1", "--result", "{}", "--dir", dir],
            ["cortex-spawn", "--foreground", "--dir", dir, "--", "true"],
            ["cortex", "worker", "list", "--dir", dir],
            ["cortex-reap", "--dir", dir],
            ["cortex", "status", "--dir", dir],
            ["cortex", "verify", "--dir", dir],
        ]
        var printed: [String: String] = [:]  // ids printed by the steps before
        for (index, original) in steps.enumerated() {
            let step = original.map { printed[$0] ?? $0 }
            let trace = directory.scratch + "/trace-\(index).txt"
            let result = try runTool(
                [straceCommand!, "-f", "-qq", "-e", "trace=flock,fcntl", "-o", trace, toolPath(step[0])] + step.dropFirst(), in: directory)
            #expect(result.exitCode == 0, "\(result)")
            if step[1] == "allocate" { printed["{allocation}"] = result.stdout.trimmingCharacters(in: .newlines) }
            if step[1] == "create" { printed["{task}"] = result.stdout.trimmingCharacters(in: .newlines) }
            let calls = try String(contentsOfFile: trace, encoding: .utf8)
            for lock in Self.lockCalls {
                #expect(!calls.contains(lock), "\(step.joined(separator: " ")) took a lock: \(calls)")
            }
        }
    }

    @Test func theTraceWouldShowALockIfOneWereTaken() throws {
        // The same check against flock(1), which does take one: the test can fail.
        let directory = try TemporaryDirectory()
        let trace = directory.scratch + "/trace.txt"
        let result = try runTool(
            [straceCommand!, "-f", "-qq", "-e", "trace=flock,fcntl", "-o", trace, executableOnPath("flock")!, directory.path, "true"],
            in: directory)
        #expect(result.exitCode == 0, "\(result)")
        let calls = try String(contentsOfFile: trace, encoding: .utf8)
        #expect(Self.lockCalls.contains { calls.contains($0) }, "strace did not see flock(1)'s lock: \(calls)")
    }
}

let straceCommand: String? = executableOnPath("strace")
let straceAvailable = straceCommand != nil && executableOnPath("flock") != nil
