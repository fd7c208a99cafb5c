import CortexCore
import CortexProcesses
import CortexStorage
import Foundation
import Testing

/// `cortex-task list` streams (docs/decisions/040-streaming-list.md): it visits the tasks one at
/// a time while it writes, so its memory does not grow with the number of tasks it lists (the
/// snapshot's mapped pages aside), and it prints what it printed when it built everything first.
@Suite("List streams")
struct ListStreamingTests {
    /// A folder with `pending` pending tasks, built through the library (a snapshot at the end,
    /// as a folder in use has), far faster than one `create` process per task.
    static func folder(pending: Int, in directory: TemporaryDirectory) throws -> String {
        let root = directory.coordination
        let store = try CoordinationStore.open(root: root, createIfMissing: true)
        for number in 0..<pending {
            let spec = TaskSpec(
                type: number % 5 == 0 ? "test" : "build", description: "task number \(number) of a long queue, listed by the test",
                priority: number % 3 == 0 ? .high : .medium)
            let created = try store.submit(.taskCreate(spec))
            guard case .created = created.outcome else { throw SupportError("create: \(created.outcome)") }
        }
        try store.writeSnapshot()
        try store.publishViews()
        return root
    }

    /// Runs `cortex-task ARGS` to its end: its output and its peak resident memory in KiB.
    ///
    /// `wait4`'s `ru_maxrss` cannot say: Linux carries the spawning process's peak over `exec`,
    /// so every child of the test runner reports at least the runner's own. The peak is read
    /// from `/proc/PID/status` (`VmHWM`) instead, before each read of the tool's stdout, a pipe
    /// it fills faster than it is drained: a tool that holds the whole list before it writes is
    /// caught blocked on that pipe after its peak; a streaming one may be read a little under
    /// its true peak (its last chunks), never over.
    static func run(_ arguments: [String], in directory: TemporaryDirectory) throws -> (result: ToolResult, maxKiB: Int) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw SupportError("pipe failed: errno \(errno)") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let err = directory.scratch + "/list-\(UUID().uuidString).err"
        let errFile = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let pid: pid_t
        do {
            defer {
                close(ends[1])
                close(errFile)
            }
            pid = try Spawner.spawn(
                SpawnRequest(
                    arguments: [toolPath("cortex-task")] + arguments, environment: toolEnvironment,
                    workingDirectory: directory.scratch, standardInput: nil, standardOutput: FileDescriptor(rawValue: ends[1]),
                    standardError: FileDescriptor(rawValue: errFile),
                    newSession: false))
        } catch {
            close(ends[0])
            throw error
        }
        defer { close(ends[0]) }
        var output: [UInt8] = []
        var peak = 0
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            peak = max(peak, Self.highWaterKiB(pid) ?? 0)
            let count = chunk.withUnsafeMutableBytes { read(ends[0], $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                guard errno == EINTR else { throw SupportError("read failed: errno \(errno)") }
                continue
            }
            output += chunk[0..<count]
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw SupportError("waitpid failed: errno \(errno)") }
        }
        let result = ToolResult(
            command: ["cortex-task"] + arguments, exitCode: (status & 0x7F) == 0 ? (status >> 8) & 0xFF : nil,
            signal: (status & 0x7F) == 0 ? nil : status & 0x7F, stdout: String(decoding: output, as: UTF8.self),
            stderr: try String(contentsOfFile: err, encoding: .utf8))
        return (result, peak)
    }

    /// `VmHWM` of a running process in KiB (nil once it has exited).
    static func highWaterKiB(_ pid: pid_t) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }

    /// The text `list` printed before it streamed: every line built, joined, one newline at the end.
    static func expectedText(_ tasks: [TaskEntry]) -> String {
        let lines = tasks.map { task in
            "\(task.id)  \(task.status.rawValue)  \(task.spec.priority.rawValue)  \(task.spec.type)  attempt \(task.attempt)"
                + (task.spec.description.map { "  \($0.prefix(60))" } ?? "")
        }
        return lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
    }

    /// Listing four times as many pending tasks costs far less than the ~1 KiB per task that
    /// building the whole list cost: at most what the larger snapshot adds (its pages are
    /// mapped and read) and 2 MiB. Both forms print exactly what the whole report printed.
    @Test(.timeLimit(.minutes(5)))
    func memoryDoesNotGrowWithTheTasksListed() throws {
        let small = try TemporaryDirectory()
        let large = try TemporaryDirectory()
        let count = 4_000
        let roots = [try Self.folder(pending: count, in: small), try Self.folder(pending: 4 * count, in: large)]
        let snapshotGrowth = try fileSize(roots[1] + "/state/snapshot.json") - fileSize(roots[0] + "/state/snapshot.json")
        for filter in [[], ["--type", "build"]] {
            for json in [false, true] {
                var peaks: [Int] = []
                for (root, directory) in zip(roots, [small, large]) {
                    let arguments = ["list", "--status", "pending", "--dir", root] + filter + (json ? ["--json"] : [])
                    let (result, maxKiB) = try Self.run(arguments, in: directory)
                    try #require(result.exitCode == 0 && result.stderr.isEmpty, "\(result)")
                    let store = try CoordinationStore.open(root: root, createIfMissing: false)
                    let tasks = store.state.tasks.tasks(in: .pending).filter { filter.isEmpty || $0.spec.type == "build" }
                    #expect(tasks.count == (directory === small ? count : 4 * count) * (filter.isEmpty ? 5 : 4) / 5)
                    if json {
                        let parsed = try #require(result.json, "not JSON: \(result.stdout.prefix(200))")
                        // The bytes of the whole object printed at once: canonical one-line JSON.
                        #expect(result.stdout == parsed.jsonText + "\n")
                        #expect(parsed.int("count") == Int64(tasks.count))
                        let ids = parsed["tasks"]?.arrayValue?.compactMap { $0["id"]?.stringValue }
                        #expect(ids == tasks.map(\.id))
                    } else {
                        #expect(result.stdout == Self.expectedText(tasks))
                    }
                    peaks.append(maxKiB)
                }
                let growth = Int64(peaks[1] - peaks[0]) * 1024
                let allowed = snapshotGrowth + 2 << 20
                #expect(
                    growth < allowed,
                    "list \(filter) json=\(json): peak RSS \(peaks[0]) KiB for \(count) tasks, \(peaks[1]) KiB for \(4 * count); grew \(growth) bytes, allowed \(allowed)"
                )
            }
        }
    }

    /// A list longer than one written chunk answers the same through a session, whose runner
    /// collects the output instead of writing it.
    @Test(.timeLimit(.minutes(5)))
    func aSessionGivesTheSameLongList() throws {
        let directory = try TemporaryDirectory()
        let root = try Self.folder(pending: 2_000, in: directory)
        let session = try SessionTests.Session(arguments: ["--dir", root], directory: directory.scratch)
        for arguments in [["task", "list"], ["task", "list", "--status", "pending", "--json"], ["task", "list", "--type", "test"]] {
            let answer = try session.request(arguments)
            var environment = toolEnvironment
            environment["CORTEX_DIR"] = root
            let alone = try RunningTool(["cortex"] + arguments, scratch: directory.scratch, environment: environment).wait()
            #expect(answer.code == 0 && alone.exitCode == 0)
            #expect(answer.out.utf8.count > 64 * 1024 || arguments.contains("test"))
            #expect(answer.out == alone.stdout && answer.err == alone.stderr, "\(arguments)")
        }
    }
}
