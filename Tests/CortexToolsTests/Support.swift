import CortexCore
import CortexProcesses
import CortexStorage
import Foundation
import Testing

// Shared helpers for the end-to-end tests: they run the built tools as real processes, the
// way a bash master script does, each test in its own temporary coordination folder.

// MARK: - Finding the tools

/// The built tools live beside the test runner (`.build/<triple>/debug/`). `CORTEX_BIN_DIR`
/// overrides this so the same tests can check the release or static binaries.
///
/// Run as root, the suites with a second account need tools that account can execute, and a
/// clone may sit below a folder only root can enter (`mktemp -d` is 0700): the tools are then
/// linked (or copied) into a folder anyone can enter, and every test runs them from there.
let toolsDirectory: String = {
    let built: String
    if let dir = ProcessInfo.processInfo.environment["CORTEX_BIN_DIR"], !dir.isEmpty {
        built = dir
    } else {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        precondition(count > 0, "readlink /proc/self/exe failed")
        let executable = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        built = String(executable[..<executable.lastIndex(of: "/")!])
    }
    guard getuid() == 0, !enterableByEveryone(built) else { return built }
    return (try? toolsEveryoneCanRun(from: built)) ?? built
}()

/// True when every folder from `/` down to `path` lets other users pass (`o+x`).
func enterableByEveryone(_ path: String) -> Bool {
    var prefix = ""
    for component in path.split(separator: "/") {
        prefix += "/" + component
        var info = stat()
        guard stat(prefix, &info) == 0, info.st_mode & 0o001 != 0 else { return false }
    }
    return true
}

/// The folder of tools every user can run (see `toolsDirectory`), removed when the tests end.
nonisolated(unsafe) private var sharedToolsFolder: String?

/// Links (or, across file systems, copies) the tools in `folder` (`cortex`, `cortex-*`) into a
/// new 0755 folder under /tmp and returns it.
func toolsEveryoneCanRun(from folder: String) throws -> String {
    var template = Array("/tmp/cortex-tools-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw SupportError("mkdtemp failed: errno \(errno)")
    }
    let shared = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard chmod(shared, 0o755) == 0 else { throw SupportError("chmod \(shared): errno \(errno)") }
    for name in try FileManager.default.contentsOfDirectory(atPath: folder)
    where (name == "cortex" || name.hasPrefix("cortex-")) && !name.contains(".") {
        let source = folder + "/" + name
        guard FileManager.default.isExecutableFile(atPath: source) else { continue }
        if link(source, shared + "/" + name) != 0 { try FileManager.default.copyItem(atPath: source, toPath: shared + "/" + name) }
    }
    sharedToolsFolder = shared
    atexit {
        if let folder = sharedToolsFolder { try? FileManager.default.removeItem(atPath: folder) }
    }
    return shared
}

/// The path of a built tool: `cortex`, `cortex-budget`.
func toolPath(_ name: String) -> String { toolsDirectory + "/" + name }

/// The first executable named `name` on `$PATH` (or in the usual places), or nil.
func executableOnPath(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let folders = path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin", "/usr/local/bin"]
    return folders.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// bash, for the start barrier and the writer loops.
let bashPath: String = executableOnPath("bash") ?? "/bin/bash"

/// jq, when installed (the reader test needs it).
let jqPath: String? = executableOnPath("jq")

/// The environment the tools run with: the test runner's, without `CORTEX_DIR` (every test
/// passes `--dir`, and a stray variable must not redirect them).
let toolEnvironment: [String: String] = {
    var environment = ProcessInfo.processInfo.environment
    environment["CORTEX_DIR"] = nil
    return environment
}()

// MARK: - Temporary folders

/// A fresh folder under /tmp (`mkdtemp`), removed with everything in it when this goes away.
/// `coordination` is where the test's coordination folder lives; `scratch` holds captured output.
final class TemporaryDirectory {
    /// The folder itself.
    let path: String

    init() throws {
        var template = Array("/tmp/cortex-e2e-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw SupportError("mkdtemp failed: errno \(errno)") }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: false)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// The coordination folder (not created: `cortex init` or a test does that).
    var coordination: String { path + "/coordination" }

    /// Where captured stdout/stderr files go (outside the coordination folder).
    var scratch: String { path + "/scratch" }
}

struct SupportError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Running tools

/// How a tool run ended and what it printed.
struct ToolResult: Sendable, CustomStringConvertible {
    /// The command line (tool name first).
    var command: [String]
    /// The exit code, or nil when a signal ended the process.
    var exitCode: Int32?
    /// The signal that ended the process, if one did.
    var signal: Int32?
    /// Everything written to stdout.
    var stdout: String
    /// Everything written to stderr.
    var stderr: String

    /// stdout's lines (without the final empty piece after the last newline).
    var stdoutLines: [String] { Self.lines(stdout) }
    /// stderr's lines.
    var stderrLines: [String] { Self.lines(stderr) }

    /// stdout parsed as one JSON value, or nil.
    var json: JSONValue? { try? JSONValue.parse(stdout) }

    static func lines(_ text: String) -> [String] {
        var pieces = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if pieces.last == "" { pieces.removeLast() }
        return pieces
    }

    var description: String {
        let how = exitCode.map { "exit \($0)" } ?? "signal \(signal ?? 0)"
        return "`\(command.joined(separator: " "))` → \(how)\n  stdout: \(stdout.debugDescription)\n  stderr: \(stderr.debugDescription)"
    }
}

/// A tool started as a real process with `posix_spawn`, its output going to files in the
/// scratch folder. Spawned with an empty signal mask and default dispositions (a test runner's
/// worker threads block most signals, and a child would inherit that: `kill -TERM` would then
/// do nothing), every descriptor from 3 up closed, and the scratch folder as working directory
/// (so a tool that falls back to `./coordination` cannot write into the repository).
/// The test reaps the child itself, so a pid it signals is never a recycled one.
final class RunningTool {
    let command: [String]
    /// The process id (the tool's own once it runs: the barrier `exec`s it).
    let pid: pid_t
    /// The raw wait status, once reaped.
    private var waitStatus: Int32?
    private let stdoutPath: String
    private let stderrPath: String

    /// Starts `arguments[0]` (a tool name, or an absolute path) with the rest as its arguments.
    /// - Parameter barrier: when given (the read end of a pipe), the process first blocks in
    ///   bash's `read` on it and only then `exec`s the tool, so many processes can be released
    ///   at the same moment by closing the write end.
    /// - Parameter environment: the process's environment (the tools' usual one by default).
    init(_ arguments: [String], scratch: String, barrier: Int32? = nil, environment: [String: String] = toolEnvironment) throws {
        command = arguments
        let executable = arguments[0].hasPrefix("/") ? arguments[0] : toolPath(arguments[0])
        let name = UUID().uuidString
        stdoutPath = scratch + "/" + name + ".out"
        stderrPath = scratch + "/" + name + ".err"
        let argv: [String]
        if barrier != nil {
            argv = [bashPath, "-c", #"read -r _; exec "$0" "$@""#, executable] + arguments.dropFirst()
        } else {
            argv = [executable] + arguments.dropFirst()
        }
        pid = try Spawn.start(
            argv, environment: environment, directory: scratch, stdin: barrier, stdout: stdoutPath, stderr: stderrPath)
    }

    deinit {
        // Never leave a child behind, even when a test fails half-way.
        if waitStatus == nil {
            _ = Glibc.kill(pid, SIGKILL)
            _ = reap(blocking: true)
        }
    }

    /// True while the process has not ended.
    var isRunning: Bool { reap(blocking: false) == nil }

    /// Sends `signal` unless the process was already reaped. Returns true if it was sent.
    @discardableResult
    func kill(_ signal: Int32) -> Bool {
        guard waitStatus == nil else { return false }
        return Glibc.kill(pid, signal) == 0
    }

    /// Waits (up to a minute) until the process holds the journal's doorbell or an inotify
    /// instance open: a waiting tool arms its journal waiter right after its first fold, so from
    /// then on what happens is "during its wait". Returns false when it never did (it ended, or
    /// the time ran out).
    func waitUntilWatching() -> Bool {
        for _ in 0..<6_000 {
            if !isRunning { return false }
            if openFiles().contains(where: { $0.contains("inotify") || $0.hasSuffix("/journal/doorbell") }) { return true }
            usleep(10_000)
        }
        return false
    }

    /// What the process's descriptors name now (`/proc/PID/fd` link targets).
    func openFiles() -> [String] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
    }

    /// Waits for the process to end, at most `seconds`; nil (and the process killed) when it
    /// was still running then: a "refused within a bounded time rather than hanging" check.
    func wait(atMost seconds: Double) -> ToolResult? {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning {
            if Date() > deadline {
                kill(SIGKILL)
                _ = wait()
                return nil
            }
            usleep(2_000)
        }
        return wait()
    }

    /// What the process has written to stdout so far.
    func stdoutSoFar() -> String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }

    /// Waits for the process to end and collects its output.
    func wait() -> ToolResult {
        let status = reap(blocking: true) ?? 0
        let signal = status & 0x7F
        return ToolResult(
            command: command,
            exitCode: signal == 0 ? (status >> 8) & 0xFF : nil,
            signal: signal == 0 ? nil : signal,
            stdout: (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "<not UTF-8>",
            stderr: (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "<not UTF-8>")
    }

    private func reap(blocking: Bool) -> Int32? {
        while waitStatus == nil {
            var status: Int32 = 0
            let result = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if result == pid {
                waitStatus = status
            } else if result == 0 {
                return nil
            } else if errno != EINTR {
                preconditionFailure("waitpid(\(pid)) failed: errno \(errno)")
            }
        }
        return waitStatus
    }
}

/// `posix_spawn` with the file actions and attributes the tests need.
enum Spawn {
    /// Starts `argv` through CortexCore's own `Spawner` (so the suite exercises it too): empty
    /// signal mask, default dispositions, descriptors from 3 up closed, output to files.
    static func start(
        _ argv: [String], environment: [String: String], directory: String, stdin: Int32?, stdout: String, stderr: String
    ) throws -> pid_t {
        let out = open(stdout, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let err = open(stderr, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer {
            close(out)
            close(err)
        }
        guard out >= 0, err >= 0 else { throw SupportError("cannot create \(stdout) or \(stderr): errno \(errno)") }
        return try Spawner.spawn(
            SpawnRequest(
                arguments: argv, environment: environment, workingDirectory: directory,
                standardInput: stdin.map(FileDescriptor.init(rawValue:)),
                standardOutput: FileDescriptor(rawValue: out), standardError: FileDescriptor(rawValue: err), newSession: false))
    }
}

/// Runs one tool to completion: `runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "5"], in: tmp)`.
@discardableResult
func runTool(_ arguments: [String], in directory: TemporaryDirectory) throws -> ToolResult {
    try RunningTool(arguments, scratch: directory.scratch).wait()
}

/// Starts every command at once behind a start barrier, then waits for all of them.
/// Every process is spawned and blocked before any of them may run its tool, so they really
/// race against each other rather than finishing one by one as they are spawned.
func runConcurrently(_ commands: [[String]], in directory: TemporaryDirectory) throws -> [ToolResult] {
    var gate: [Int32] = [-1, -1]
    guard pipe(&gate) == 0 else { throw SupportError("pipe failed: errno \(errno)") }
    var started: [RunningTool] = []
    started.reserveCapacity(commands.count)
    var failure: (any Error)?
    for command in commands {
        do {
            started.append(try RunningTool(command, scratch: directory.scratch, barrier: gate[0]))
        } catch {
            failure = error
            break
        }
    }
    // Children hold only the read end (every spawn closes descriptors from 3 up), so closing
    // ours is end-of-file for every waiting `read`, all at once.
    close(gate[1])
    close(gate[0])
    let results = started.map { $0.wait() }
    if let failure { throw failure }
    return results
}

// MARK: - Coordination folder helpers

/// `cortex init --dir <coordination> --total-tokens <total>`, which must succeed.
func initialise(_ directory: TemporaryDirectory, totalTokens: Int) throws {
    let result = try runTool(["cortex", "init", "--dir", directory.coordination, "--total-tokens", String(totalTokens)], in: directory)
    try #require(result.exitCode == 0, "cortex init failed: \(result)")
}

/// Sets keys of `config.json`, keeping every other key (the file is a JSON object).
func updateConfig(_ directory: TemporaryDirectory, _ changes: [String: JSONValue]) throws {
    try updateConfig(atPath: directory.coordination + "/config.json", changes)
}

/// Sets keys of the `config.json` at `path`, keeping every other key.
func updateConfig(atPath path: String, _ changes: [String: JSONValue]) throws {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    guard case .object(var members) = try JSONValue.parse(text) else { throw SupportError("\(path) is not a JSON object") }
    for (key, value) in changes {
        if let index = members.firstIndex(where: { $0.key == key }) {
            members[index].value = value
        } else {
            members.append(JSONMember(key, value))
        }
    }
    try Data(JSONValue.object(members).prettySerialized()).write(to: URL(fileURLWithPath: path))
}

/// Forces rotation: segments of at most ~1 KiB (the smallest the config accepts).
func forceRotation(_ directory: TemporaryDirectory) throws {
    try updateConfig(directory, ["segment_max_bytes": 1024])
}

/// The journal segment files (`000000000001.jsonl`, …), sorted.
func segmentFiles(_ directory: TemporaryDirectory) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory.coordination + "/journal")
        .filter { JournalSegment.number(fromFileName: $0) != nil }.sorted()
}

/// `token-budget.json`, parsed.
func budgetView(_ directory: TemporaryDirectory) throws -> JSONValue {
    try JSONValue.parse(try String(contentsOfFile: directory.coordination + "/token-budget.json", encoding: .utf8))
}

/// `token-allocations.json`, parsed.
func allocationsView(_ directory: TemporaryDirectory) throws -> JSONValue {
    try JSONValue.parse(try String(contentsOfFile: directory.coordination + "/token-allocations.json", encoding: .utf8))
}

/// Appends raw bytes to a file (to damage a journal segment on purpose).
func appendBytes(_ bytes: [UInt8], to path: String) throws {
    guard let handle = FileHandle(forWritingAtPath: path) else { throw SupportError("cannot open \(path)") }
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: Data(bytes))
}

/// The size of a file in bytes.
func fileSize(_ path: String) throws -> Int64 {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.size] as? NSNumber)?.int64Value ?? -1
}

// MARK: - Folding the journal afresh

/// One record of a fresh fold and the outcome the reducer gave it.
struct FoldedRecord {
    var record: Record
    var position: JournalPosition
    var outcome: Outcome
}

/// A fold of the whole journal made by the test process itself, with the library.
struct FreshFold {
    var state = CortexState()
    var records: [FoldedRecord] = []
    var summary: FileJournal.ReadSummary?
    /// Points where granted + spent tokens exceeded the budget (must stay empty).
    var overAllocations: [String] = []

    /// Outcomes by record id; an id folded twice appears twice in `records`.
    var outcomesByRecordID: [String: Outcome] {
        Dictionary(records.map { ($0.record.id, $0.outcome) }, uniquingKeysWith: { first, _ in first })
    }

    /// The records without the audit trail's own (`audit.key`, `audit.start`: decision 044),
    /// which a folder `cortex init` made holds besides the workload's.
    var workload: [FoldedRecord] { records.filter { !$0.record.kind.hasPrefix("audit.") } }

    /// Record ids that were folded more than once.
    var duplicatedRecordIDs: [String] {
        Dictionary(grouping: records, by: \.record.id).filter { $0.value.count > 1 }.map(\.key).sorted()
    }
}

/// Folds the coordination folder's journal from the start, checking after every record that
/// reserved + spent tokens never exceed the budget.
func foldJournal(_ directory: TemporaryDirectory) throws -> FreshFold {
    var fold = FreshFold()
    let journal = FileJournal(directory: directory.coordination + "/journal")
    let summary = try journal.readForward(from: .start) { (record, position) throws(CortexError) in
        let outcome = Reducer.reduce(&fold.state, record, at: position)
        fold.records.append(FoldedRecord(record: record, position: position, outcome: outcome))
        let budget = fold.state.budget
        if budget.reserved + budget.spent > budget.total {
            fold.overAllocations.append(
                "after \(record.id) at \(position): reserved \(budget.reserved) + spent \(budget.spent) > total \(budget.total)")
        }
    }
    fold.summary = summary
    return fold
}

// MARK: - Comparing folders byte for byte

/// Every file and folder under `path` with its exact bytes (folders map to nil), so two
/// calls can be compared for "nothing changed at all".
func folderContents(_ path: String) throws -> [String: Data?] {
    var contents: [String: Data?] = [:]
    guard let enumerator = FileManager.default.enumerator(atPath: path) else { throw SupportError("cannot list \(path)") }
    while let relative = enumerator.nextObject() as? String {
        let full = path + "/" + relative
        var isFolder: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: full, isDirectory: &isFolder)
        contents[relative] = isFolder.boolValue ? .some(nil) : .some(try Data(contentsOf: URL(fileURLWithPath: full)))
    }
    return contents
}

/// The paths whose presence or bytes differ between two `folderContents` results.
func changedPaths(_ before: [String: Data?], _ after: [String: Data?]) -> [String] {
    Set(before.keys).union(after.keys).filter { before[$0] != after[$0] }.sorted()
}

// MARK: - JSON conveniences

extension JSONValue {
    /// The object without the members named in `keys`.
    func removing(_ keys: Set<String>) -> JSONValue {
        guard case .object(let members) = self else { return self }
        return .object(members.filter { !keys.contains($0.key) })
    }

    /// The integer member `key`, or nil.
    func int(_ key: String) -> Int64? { self[key]?.intValue }

    /// The string member `key`, or nil.
    func string(_ key: String) -> String? { self[key]?.stringValue }
}
