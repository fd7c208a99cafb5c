import CortexCore
import CortexStorage
import Foundation
import Testing

/// Invariant 7 (docs/design.md): bad input gets a clear error and an exit code, never a crash or a
/// changed file. docs/cli.md's exit-code table, one row per case.
@Suite("Bad input")
struct BadInputTests {
    /// The folder a case runs against.
    enum Folder: Sendable {
        /// Initialised with 1000 tokens, one allocation of 10 tokens (`{alloc}` in a command) and
        /// one task claimed by w-1 with claim 1 (`{task}`).
        case ready
        /// Initialised, then `config.json` replaced with these bytes.
        case config(String)
        /// Does not exist (and must not exist afterwards).
        case missing
        /// `/proc`: exists, on a file system that does not serialise O_APPEND writes.
        case proc
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var label: String
        /// Tool name then arguments; `{dir}` becomes the coordination folder.
        var command: [String]
        var exitCode: Int32
        var folder: Folder = .ready

        var testDescription: String { "\(label) → \(exitCode)" }
        var wantsJSON: Bool { command.contains("--json") }
    }

    static let longID = String(repeating: "a", count: 65)

    static let cases: [Case] = [
        // 64: usage.
        Case(label: "unknown flag", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5", "--bogus"], exitCode: 64),
        Case(label: "unknown short flag", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5", "-q"], exitCode: 64),
        Case(label: "unknown command", command: ["cortex-budget", "frobnicate", "--dir", "{dir}"], exitCode: 64),
        Case(label: "unknown command of cortex", command: ["cortex", "frobnicate", "--dir", "{dir}"], exitCode: 64),
        Case(label: "no command at all", command: ["cortex-budget"], exitCode: 64),
        // cortex-task: usage (64), bad data (65), not found (66), and a stale claim (1: a normal no).
        Case(label: "task create without --type", command: ["cortex-task", "create", "--dir", "{dir}"], exitCode: 64),
        Case(label: "claim without --worker", command: ["cortex-task", "claim", "--dir", "{dir}"], exitCode: 64),
        Case(label: "complete without --claim", command: ["cortex-task", "complete", "{task}", "--dir", "{dir}"], exitCode: 64),
        Case(
            label: "complete with --result and --result-file",
            command: [
                "cortex-task", "complete", "{task}", "--claim", "1", "--result", "{}", "--result-file", "/etc/passwd", "--dir",
                "{dir}",
            ], exitCode: 64),
        Case(label: "cortex task without a command", command: ["cortex", "task", "--dir", "{dir}"], exitCode: 64),
        Case(label: "task type with a space", command: ["cortex-task", "create", "--dir", "{dir}", "--type", "a b"], exitCode: 65),
        Case(
            label: "unknown priority", command: ["cortex-task", "create", "--dir", "{dir}", "--type", "b", "--priority", "urgent"],
            exitCode: 65),
        Case(
            label: "zero max attempts", command: ["cortex-task", "create", "--dir", "{dir}", "--type", "b", "--max-attempts", "0"],
            exitCode: 65),
        Case(label: "bad timeout", command: ["cortex-task", "create", "--dir", "{dir}", "--type", "b", "--timeout", "5x"], exitCode: 65),
        Case(
            label: "bad capability", command: ["cortex-task", "create", "--dir", "{dir}", "--type", "b", "--requires", "gpu,a b"],
            exitCode: 65),
        Case(label: "key with a slash", command: ["cortex-task", "create", "--dir", "{dir}", "--type", "b", "--key", "k/1"], exitCode: 65),
        Case(label: "worker with a slash", command: ["cortex-task", "claim", "--dir", "{dir}", "--worker", "w/1"], exitCode: 65),
        Case(label: "bad wait", command: ["cortex-task", "claim", "--dir", "{dir}", "--worker", "w-2", "--wait", "forever"], exitCode: 65),
        Case(
            label: "malformed result JSON",
            command: ["cortex-task", "complete", "{task}", "--claim", "1", "--result", "{bad", "--dir", "{dir}"], exitCode: 65),
        Case(
            label: "result file that is not JSON",
            command: ["cortex-task", "complete", "{task}", "--claim", "1", "--result-file", "/etc/passwd", "--dir", "{dir}"],
            exitCode: 65),
        Case(label: "claim token 0", command: ["cortex-task", "complete", "{task}", "--claim", "0", "--dir", "{dir}"], exitCode: 65),
        Case(
            label: "claim token not a number", command: ["cortex-task", "fail", "{task}", "--claim", "x", "--dir", "{dir}"],
            exitCode: 65),
        Case(label: "task id with a slash", command: ["cortex-task", "show", "task/1", "--dir", "{dir}"], exitCode: 65),
        Case(label: "unknown status", command: ["cortex-task", "list", "--status", "sleeping", "--dir", "{dir}"], exitCode: 65),
        Case(label: "show unknown task", command: ["cortex-task", "show", "task-9.0", "--dir", "{dir}"], exitCode: 66),
        Case(
            label: "complete unknown task", command: ["cortex-task", "complete", "task-9.0", "--claim", "1", "--dir", "{dir}"],
            exitCode: 66),
        Case(label: "cancel unknown task", command: ["cortex-task", "cancel", "task-9.0", "--dir", "{dir}"], exitCode: 66),
        // cortex worker and cortex-reap.
        Case(label: "stop unknown worker", command: ["cortex", "worker", "stop", "w-9.0", "--dir", "{dir}"], exitCode: 66),
        Case(label: "show unknown worker", command: ["cortex", "worker", "show", "w-9.0", "--dir", "{dir}"], exitCode: 66),
        Case(label: "worker id with a space", command: ["cortex", "worker", "show", "a b", "--dir", "{dir}"], exitCode: 65),
        Case(label: "reap with a bad grace", command: ["cortex-reap", "--dir", "{dir}", "--grace", "5x"], exitCode: 65),
        Case(
            label: "reap with a bad archive retention", command: ["cortex-reap", "--dir", "{dir}", "--archive-retention", "soon"],
            exitCode: 65),
        Case(label: "reap with an unknown flag", command: ["cortex-reap", "--dir", "{dir}", "--bogus"], exitCode: 64),
        Case(label: "reap in a missing folder", command: ["cortex-reap", "--dir", "{dir}"], exitCode: 66, folder: .missing),
        // Values are checked when the command line is parsed, before any folder is looked at
        // (docs/decisions/028-typed-arguments.md): the malformed value is the error, not the folder.
        Case(
            label: "reap with a bad grace in a missing folder", command: ["cortex-reap", "--dir", "{dir}", "--grace", "5x"], exitCode: 65,
            folder: .missing),
        Case(
            label: "cancel of a malformed id in a missing folder", command: ["cortex-task", "cancel", "a b", "--dir", "{dir}", "--json"],
            exitCode: 65, folder: .missing),
        Case(
            label: "missing result file",
            command: ["cortex-task", "complete", "{task}", "--claim", "1", "--result-file", "/nonexistent.json", "--dir", "{dir}"],
            exitCode: 66),
        Case(
            label: "missing context file",
            command: ["cortex-task", "create", "--dir", "{dir}", "--type", "b", "--context-file", "/nonexistent.txt"], exitCode: 66),
        Case(
            label: "heartbeat in a missing folder", command: ["cortex-task", "heartbeat", "{task}", "--claim", "1", "--dir", "{dir}"],
            exitCode: 66, folder: .missing),
        Case(
            label: "release in a missing folder", command: ["cortex-budget", "release", "{alloc}", "--dir", "{dir}"], exitCode: 66,
            folder: .missing),
        Case(
            label: "complete with a stale claim", command: ["cortex-task", "complete", "{task}", "--claim", "2", "--dir", "{dir}"],
            exitCode: 1),
        Case(
            label: "fail with a stale claim", command: ["cortex-task", "fail", "{task}", "--claim", "2", "--dir", "{dir}"], exitCode: 1
        ),
        Case(
            label: "heartbeat with a stale claim", command: ["cortex-task", "heartbeat", "{task}", "--claim", "2", "--dir", "{dir}"],
            exitCode: 1),
        Case(label: "missing required option", command: ["cortex-budget", "allocate", "--dir", "{dir}"], exitCode: 64),
        Case(
            label: "missing required option of quota", command: ["cortex-budget", "quota", "--dir", "{dir}", "--tenant", "acme"],
            exitCode: 64),
        Case(label: "option without its value", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens"], exitCode: 64),
        Case(label: "missing positional", command: ["cortex-budget", "release", "--dir", "{dir}"], exitCode: 64),
        Case(label: "extra positional", command: ["cortex-budget", "release", "{alloc}", "extra", "--dir", "{dir}"], exitCode: 64),
        Case(label: "flag given a value", command: ["cortex-budget", "status", "--dir", "{dir}", "--json=yes"], exitCode: 64),
        Case(
            label: "option given twice", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5", "--tokens", "6"],
            exitCode: 64),
        Case(label: "usage error with --json", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--json"], exitCode: 64),
        // 65: bad data.
        Case(
            label: "holder with a slash", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5", "--holder", "a/b"],
            exitCode: 65),
        Case(
            label: "tenant starting with a dash",
            command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5", "--tenant", "-x"], exitCode: 65),
        Case(
            label: "65-character holder", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5", "--holder", longID],
            exitCode: 65),
        Case(
            label: "empty holder", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5", "--holder", ""], exitCode: 65),
        Case(
            label: "holder with a newline", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5", "--holder", "a\nb"],
            exitCode: 65),
        Case(
            label: "task id with a space", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5", "--task", "a b"],
            exitCode: 65),
        Case(
            label: "quota for an invalid tenant",
            command: ["cortex-budget", "quota", "--dir", "{dir}", "--tenant", "a/b", "--tokens", "5"], exitCode: 65),
        Case(label: "release of a/b", command: ["cortex-budget", "release", "a/b", "--dir", "{dir}"], exitCode: 65),
        Case(label: "release of -x after --", command: ["cortex-budget", "release", "--dir", "{dir}", "--", "-x"], exitCode: 65),
        Case(label: "release of a 65-character id", command: ["cortex-budget", "release", longID, "--dir", "{dir}"], exitCode: 65),
        Case(label: "negative tokens", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "-5"], exitCode: 65),
        Case(label: "non-numeric tokens", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "abc"], exitCode: 65),
        Case(label: "fractional tokens", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "1.5"], exitCode: 65),
        Case(
            label: "tokens beyond 2^53", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "9007199254740992"],
            exitCode: 65),
        Case(
            label: "tokens beyond Int64", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "99999999999999999999"],
            exitCode: 65),
        Case(label: "zero tokens", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "0"], exitCode: 65),
        Case(
            label: "zero tokens with --json", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "0", "--json"],
            exitCode: 65),
        Case(label: "empty tokens", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", ""], exitCode: 65),
        Case(label: "non-numeric total", command: ["cortex-budget", "set", "--dir", "{dir}", "--total", "lots"], exitCode: 65),
        Case(
            label: "release --used more than reserved",
            command: ["cortex-budget", "release", "{alloc}", "--dir", "{dir}", "--used", "11"], exitCode: 65),
        Case(
            label: "release --used negative", command: ["cortex-budget", "release", "{alloc}", "--dir", "{dir}", "--used", "-1"],
            exitCode: 65),
        Case(label: "init with 0 workers", command: ["cortex", "init", "--dir", "{dir}", "--max-workers", "0"], exitCode: 65),
        Case(label: "tail with negative lines", command: ["cortex", "tail", "--dir", "{dir}", "--lines", "-1"], exitCode: 65),
        // 66: not found.
        Case(
            label: "release of an unknown allocation", command: ["cortex-budget", "release", "alloc-9.0", "--dir", "{dir}"], exitCode: 66
        ),
        Case(
            label: "release of an unknown allocation with --json",
            command: ["cortex-budget", "release", "nosuch", "--dir", "{dir}", "--json"], exitCode: 66),
        Case(
            label: "budget status of a missing folder", command: ["cortex-budget", "status", "--dir", "{dir}"], exitCode: 66,
            folder: .missing),
        Case(label: "cortex status of a missing folder", command: ["cortex", "status", "--dir", "{dir}"], exitCode: 66, folder: .missing),
        Case(label: "verify of a missing folder", command: ["cortex", "verify", "--dir", "{dir}"], exitCode: 66, folder: .missing),
        Case(label: "tail of a missing folder", command: ["cortex", "tail", "--dir", "{dir}"], exitCode: 66, folder: .missing),
        Case(
            label: "status of a missing folder with --json", command: ["cortex-budget", "status", "--dir", "{dir}", "--json"], exitCode: 66,
            folder: .missing),
        // Issue 6: status, tail, metrics, estimate.
        Case(label: "status with an unknown flag", command: ["cortex", "status", "--dir", "{dir}", "--colour"], exitCode: 64),
        Case(label: "tail --lines not a number", command: ["cortex", "tail", "--dir", "{dir}", "--lines", "ten"], exitCode: 65),
        Case(label: "tail --lines without a value", command: ["cortex", "tail", "--dir", "{dir}", "--lines"], exitCode: 64),
        Case(label: "tail --since nonsense", command: ["cortex", "tail", "--dir", "{dir}", "--since", "yesterday"], exitCode: 65),
        Case(
            label: "tail --since an impossible date", command: ["cortex", "tail", "--dir", "{dir}", "--since", "2026-13-01T00:00:00Z"],
            exitCode: 65),
        Case(label: "tail --kind with a space", command: ["cortex", "tail", "--dir", "{dir}", "--kind", "task claim"], exitCode: 65),
        Case(label: "tail --kind empty", command: ["cortex", "tail", "--dir", "{dir}", "--kind", ""], exitCode: 65),
        Case(label: "tail --task invalid id", command: ["cortex", "tail", "--dir", "{dir}", "--task", "a/b", "--json"], exitCode: 65),
        Case(label: "tail --worker invalid id", command: ["cortex", "tail", "--dir", "{dir}", "--worker", longID], exitCode: 65),
        Case(label: "tail of a missing folder", command: ["cortex", "tail", "--dir", "{dir}"], exitCode: 66, folder: .missing),
        Case(label: "metrics --out empty", command: ["cortex", "metrics", "--dir", "{dir}", "--out", ""], exitCode: 65),
        Case(
            label: "metrics --out into a missing folder", command: ["cortex", "metrics", "--dir", "{dir}", "--out", "/nonexistent/x.prom"],
            exitCode: 74),
        Case(
            label: "metrics of a missing folder", command: ["cortex", "metrics", "--dir", "{dir}", "--json"], exitCode: 66, folder: .missing
        ),
        Case(label: "estimate without --type", command: ["cortex-task", "estimate", "--dir", "{dir}"], exitCode: 64),
        Case(label: "estimate of an invalid type", command: ["cortex-task", "estimate", "--dir", "{dir}", "--type", "a b"], exitCode: 65),
        Case(label: "estimate without history", command: ["cortex-task", "estimate", "--dir", "{dir}", "--type", "build"], exitCode: 66),
        Case(label: "show an invalid task id", command: ["cortex-task", "show", "a b", "--dir", "{dir}"], exitCode: 65),
        // 78: configuration.
        Case(
            label: "reap with a too small rotate_bytes", command: ["cortex-reap", "--dir", "{dir}"], exitCode: 78,
            folder: .config("{\"rotate_bytes\": 10}\n")),
        Case(
            label: "malformed config.json, allocate", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5"],
            exitCode: 78, folder: .config("{\"segment_max_bytes\": ")),
        Case(
            label: "malformed config.json, status", command: ["cortex-budget", "status", "--dir", "{dir}"], exitCode: 78,
            folder: .config("not json at all\n")),
        Case(
            label: "config.json is an array", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5"], exitCode: 78,
            folder: .config("[1, 2]\n")),
        Case(
            label: "config.json value of the wrong type", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5"],
            exitCode: 78, folder: .config("{\"segment_max_bytes\": \"big\"}\n")),
        Case(
            label: "config.json segment size below the minimum", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5"],
            exitCode: 78, folder: .config("{\"segment_max_bytes\": 10}\n")),
        Case(
            label: "config.json sync_appends not a boolean", command: ["cortex-budget", "reset", "--dir", "{dir}", "--json"], exitCode: 78,
            folder: .config("{\"sync_appends\": \"yes\"}\n")),
        Case(
            label: "allocate in /proc", command: ["cortex-budget", "allocate", "--dir", "{dir}", "--tokens", "5"], exitCode: 78,
            folder: .proc),
        Case(label: "status of /proc", command: ["cortex-budget", "status", "--dir", "{dir}"], exitCode: 78, folder: .proc),
        Case(label: "init in /proc", command: ["cortex", "init", "--dir", "{dir}"], exitCode: 78, folder: .proc),
    ]

    @Test(.timeLimit(.minutes(5)), arguments: cases)
    func badInputGetsItsExitCodeAndOneLineOnStderrAndChangesNoFile(_ testCase: Case) throws {
        let directory = try TemporaryDirectory()
        var folder = directory.coordination
        // Well-formed ids for folders that have none.
        var placeholders = ["{alloc}": "alloc-1.0", "{task}": "task-1.0"]
        switch testCase.folder {
        case .ready, .config:
            try initialise(directory, totalTokens: 1000)
            let allocation = try runTool(["cortex-budget", "allocate", "--dir", folder, "--tokens", "10"], in: directory)
            try #require(allocation.exitCode == 0, "\(allocation)")
            placeholders["{alloc}"] = allocation.stdout.trimmingCharacters(in: .newlines)
            // And a task claimed by w-1 with claim 1, so the task commands have something to refuse.
            let task = try runTool(["cortex-task", "create", "--dir", folder, "--type", "build"], in: directory)
            try #require(task.exitCode == 0, "\(task)")
            placeholders["{task}"] = task.stdout.trimmingCharacters(in: .newlines)
            let claim = try runTool(["cortex-task", "claim", "--dir", folder, "--worker", "w-1"], in: directory)
            try #require(claim.exitCode == 0, "\(claim)")
            if case .config(let text) = testCase.folder {
                try Data(text.utf8).write(to: URL(fileURLWithPath: folder + "/config.json"))
            }
        case .missing:
            folder = directory.path + "/missing/coordination"
        case .proc:
            folder = "/proc"
        }
        let before = try contentsUnlessProc(folder, testCase.folder)

        placeholders["{dir}"] = folder
        let result = try runTool(testCase.command.map { placeholders[$0] ?? $0 }, in: directory)

        #expect(result.exitCode == testCase.exitCode, "\(result)")
        #expect(result.stderrLines.count == 1, "exactly one line on stderr: \(result)")
        #expect(!(result.stderrLines.first ?? "").isEmpty, "\(result)")
        if testCase.wantsJSON && testCase.exitCode != 64 {
            // --json: exactly one JSON object, naming the error and the exit code.
            #expect(result.stdoutLines.count == 1, "\(result)")
            let json = try #require(result.json, "\(result)")
            #expect(json.int("exit_code") == Int64(testCase.exitCode), "\(result)")
            #expect(json.string("error")?.isEmpty == false, "\(result)")
        } else if testCase.wantsJSON {
            #expect(result.stdout.isEmpty || result.json?.int("exit_code") == 64, "\(result)")
        } else {
            #expect(result.stdout.isEmpty, "nothing on stdout: \(result)")
        }

        switch testCase.folder {
        case .missing:
            #expect(!FileManager.default.fileExists(atPath: directory.path + "/missing"), "a read-only command created the folder")
        case .proc:
            break
        case .ready, .config:
            let after = try folderContents(folder)
            #expect(changedPaths(before, after) == [], "files changed by a refused command")
        }
        // Nothing may land in the current directory either (the tools run in the scratch folder).
        let strays = try FileManager.default.contentsOfDirectory(atPath: directory.scratch)
            .filter { !$0.hasSuffix(".out") && !$0.hasSuffix(".err") }
        #expect(strays.isEmpty, "files created in the working directory: \(strays)")
    }

    private func contentsUnlessProc(_ folder: String, _ kind: Folder) throws -> [String: Data?] {
        switch kind {
        case .ready, .config: try folderContents(folder)
        case .missing, .proc: [:]
        }
    }
}
