import CortexCore
import CortexProcesses
import CortexStorage
import Foundation
import Testing

/// `cortex session` and `bin/cortex-session.bash` (docs/decisions/038-session.md): a session
/// answers exactly what the one-process call prints, decides what the journal decides beside
/// single calls, and loses nothing it acknowledged when killed.
@Suite("Sessions")
struct SessionTests {
    /// The answer to one request.
    struct Answer: Equatable, CustomStringConvertible {
        var code: Int32
        var out: String
        var err: String

        var description: String { "exit \(code)\n  stdout: \(out.debugDescription)\n  stderr: \(err.debugDescription)" }
    }

    /// A `cortex session` process with pipes on its stdin and stdout, spawned like every tool the
    /// suite runs (descriptors from 3 up closed in the child, pipes close-on-exec here, so no other
    /// child of the test process holds an end open) and reaped by the test itself.
    final class Session {
        /// The session's process id.
        let pid: pid_t
        private var input: Int32
        private let output: Int32
        private var buffer: [UInt8] = []
        private var waitStatus: Int32?

        init(arguments: [String], environment: [String: String] = toolEnvironment, directory: String) throws {
            // A write to a session that died must fail with EPIPE, not end the test process.
            signal(SIGPIPE, SIG_IGN)
            var toChild: [Int32] = [-1, -1]
            var fromChild: [Int32] = [-1, -1]
            guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else { throw SupportError("pipe failed: errno \(errno)") }
            for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            let discard = open("/dev/null", O_WRONLY | O_CLOEXEC)
            defer {
                close(toChild[0])
                close(fromChild[1])
                close(discard)
            }
            pid = try Spawner.spawn(
                SpawnRequest(
                    arguments: [toolPath("cortex"), "session"] + arguments, environment: environment, workingDirectory: directory,
                    standardInput: FileDescriptor(rawValue: toChild[0]),
                    standardOutput: FileDescriptor(rawValue: fromChild[1]), standardError: FileDescriptor(rawValue: discard),
                    newSession: false))
            input = toChild[1]
            output = fromChild[0]
        }

        deinit {
            if waitStatus == nil { _ = Glibc.kill(pid, SIGKILL) }
            _ = exitCode()
            if input >= 0 { close(input) }
            close(output)
        }

        /// `printf '%s\0' "$#" "$@"`.
        static func frame(_ arguments: [String]) -> Data {
            var bytes = Data("\(arguments.count)".utf8)
            bytes.append(0)
            for argument in arguments {
                bytes.append(contentsOf: Array(argument.utf8))
                bytes.append(0)
            }
            return bytes
        }

        /// Sends requests without waiting for their answers.
        func send(_ arguments: [String]) throws { try sendRaw(Array(Self.frame(arguments))) }

        /// Sends bytes as they are (a writer out of step).
        func sendRaw(_ bytes: [UInt8]) throws {
            var sent = 0
            while sent < bytes.count {
                let written = bytes[sent...].withUnsafeBytes { write(input, $0.baseAddress, $0.count) }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { throw SupportError("writing to the session failed: errno \(errno)") }
                sent += written
            }
        }

        /// Closes the session's stdin (its end of input).
        func closeInput() throws {
            if input >= 0 { close(input) }
            input = -1
        }

        /// The next whole answer, or nil when stdout ended first.
        func nextAnswer() -> Answer? {
            guard let newline = fill(until: { $0.firstIndex(of: 10) }) else { return nil }
            let header = String(decoding: buffer[..<newline], as: UTF8.self).split(separator: " ").prefix(3).compactMap { Int($0) }
            let encoding = String(decoding: buffer[..<newline], as: UTF8.self).split(separator: " ").last
            guard header.count == 3, encoding == "ascii" || encoding == "bytes" else { return nil }
            // Unless both streams are 7-bit, each stream's bytes are followed by a NUL.
            let nul = encoding == "ascii" ? 0 : 1
            let outEnd = newline + 1 + header[1]
            let total = outEnd + nul + header[2] + nul
            guard fill(until: { $0.count >= total ? total : nil }) != nil else { return nil }
            if nul == 1 { guard buffer[outEnd] == 0, buffer[total - 1] == 0 else { return nil } }
            let out = String(decoding: buffer[(newline + 1)..<outEnd], as: UTF8.self)
            let err = String(decoding: buffer[(outEnd + nul)..<(total - nul)], as: UTF8.self)
            #expect((encoding == "ascii") == (out + err).utf8.allSatisfy { $0 < 0x80 }, "ascii exactly when 7-bit")
            buffer.removeFirst(total)
            return Answer(code: Int32(header[0]), out: out, err: err)
        }

        /// Sends one request and reads its answer.
        func request(_ arguments: [String]) throws -> Answer {
            try send(arguments)
            return try #require(nextAnswer(), "no answer to \(arguments)")
        }

        /// Reads until `found` says where in the buffer what is wanted is; nil at end of output.
        private func fill(until found: ([UInt8]) -> Int?) -> Int? {
            while true {
                if let index = found(buffer) { return index }
                var chunk = [UInt8](repeating: 0, count: 65_536)
                let count = chunk.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { return nil }
                buffer += chunk[..<count]
            }
        }

        /// True while the process has not ended (it is reaped once it has).
        var isRunning: Bool {
            guard waitStatus == nil else { return false }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { waitStatus = status }
            return waitStatus == nil
        }

        /// The signal that ended the process, once it ended; nil when it exited.
        var endingSignal: Int32? {
            guard let status = waitStatus, status & 0x7F != 0 else { return nil }
            return status & 0x7F
        }

        /// Waits for the process and returns its exit code, or the signal that ended it.
        func exitCode() -> Int32 {
            while waitStatus == nil {
                var status: Int32 = 0
                let result = waitpid(pid, &status, 0)
                if result == pid {
                    waitStatus = status
                } else if errno != EINTR {
                    return -1
                }
            }
            let status = waitStatus ?? 0
            return status & 0x7F == 0 ? (status >> 8) & 0xFF : status & 0x7F
        }
    }

    /// The one-process call `cortex ARGS…`, with `CORTEX_DIR` set to `dir`.
    func oneProcess(_ arguments: [String], dir: String, in directory: TemporaryDirectory) throws -> Answer {
        var environment = toolEnvironment
        environment["CORTEX_DIR"] = dir
        let result = try RunningTool(["cortex"] + arguments, scratch: directory.scratch, environment: environment).wait()
        return Answer(code: result.exitCode ?? -1, out: result.stdout, err: result.stderr)
    }

    /// Expects the session's answer to `arguments` to be the one-process call's. Some output
    /// shows the time (an age in seconds, `updated_at`): the call is asked between two session
    /// requests, and a few times over, so a second turning over between them does not count.
    func expectSame(_ arguments: [String], _ session: Session, dir: String, in directory: TemporaryDirectory) throws {
        var last: (Answer, Answer)?
        for _ in 0..<3 {
            let before = try session.request(arguments)
            let expected = try oneProcess(arguments, dir: dir, in: directory)
            if before == expected { return }
            let after = try session.request(arguments)
            if after == expected { return }
            last = (after, expected)
        }
        if let (answer, expected) = last { #expect(answer == expected, "\(arguments)") }
    }

    /// Both ways answer the same, for a table of reads, errors, usage errors, unknown ids,
    /// multi-line output and arguments with quotes, spaces and newlines; state changed through
    /// the session reads the same through both; a request that would end the process
    /// (`--help`, a usage error) answers and the session goes on.
    @Test(.timeLimit(.minutes(5)))
    func answersEqualTheOneProcessCallsByteForByte() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination
        for type in ["build", "test", "build"] {
            _ = try oneProcess(["task", "create", "--type", type, "--description", "a \"quoted\" one"], dir: dir, in: directory)
        }
        let session = try Session(arguments: ["--dir", dir], directory: directory.scratch)
        let tricky = "it's \"quoted\"\nand on two lines\twith a tab"
        let reads: [[String]] = [
            ["status"], ["status", "--json"], ["task", "list"], ["task", "list", "--json"], ["task", "list", "--status", "pending"],
            ["budget", "status"], ["budget", "status", "--json"], ["--version"], ["--help"], ["task", "--help"],
            ["budget", "allocate", "--help"], [], ["nope"], ["budget", "nope"], ["budget", "allocate"],
            ["budget", "allocate", "--tokens", "many"], ["budget", "allocate", "--tokens", "10", "--bogus"],
            ["budget", "release", "alloc-9.999"], ["budget", "release", tricky], ["task", "show", "task-9.999"],
            ["task", "show", tricky], ["task", "complete", "task-9.999", "--claim", "1"], ["task", "list", "--status", tricky],
            ["task", "create", "--type", tricky, "--priority", "urgent"], ["tail", "--lines", "2"], ["verify"],
            ["budget", "allocate", "--tokens", "5000"],  // refused: over the budget
        ]
        for arguments in reads { try expectSame(arguments, session, dir: dir, in: directory) }

        // Changes made through the session: each one-process read afterwards agrees with the session's.
        let allocated = try session.request(["budget", "allocate", "--tokens", "10", "--holder", "w-1.2"])
        #expect(allocated.code == 0 && allocated.err.isEmpty, "\(allocated)")
        let created = try session.request(["task", "create", "--type", "odd", "--description", tricky, "--json"])
        #expect(created.code == 0, "\(created)")
        let id = try #require(JSONValue.parse(created.out)["task"]?.stringValue, "\(created)")
        for arguments in [["task", "show", id], ["task", "show", id, "--json"], ["budget", "status"], ["task", "list"], ["status"]] {
            try expectSame(arguments, session, dir: dir, in: directory)
        }
        // A change made by a one-process call is folded by the session's next request.
        let released = try oneProcess(["budget", "release", allocated.out.trimmingCharacters(in: .newlines)], dir: dir, in: directory)
        #expect(released.code == 0, "\(released)")
        try expectSame(["budget", "status", "--json"], session, dir: dir, in: directory)

        // --dir in a request is honoured: another folder, or none there.
        let other = directory.path + "/other"
        #expect(try oneProcess(["init", "--dir", other, "--total-tokens", "7"], dir: dir, in: directory).code == 0)
        for arguments in [["budget", "status", "--dir", other], ["status", "--dir", directory.path + "/missing"]] {
            try expectSame(arguments, session, dir: dir, in: directory)
        }

        // What would never end, or hand the session's streams to another program, is refused (64).
        for arguments in [["tail", "-f"], ["session"], ["spawn", "--foreground", "--", "true"], ["reap", "--every", "1s"]] {
            let refused = try session.request(arguments)
            #expect(refused.code == 64 && refused.out.isEmpty && refused.err.contains("session"), "\(arguments): \(refused)")
        }
        #expect(try session.request(["budget", "status"]).code == 0, "still serving")
        try session.closeInput()
        #expect(session.exitCode() == 0, "end of input ends the session")
    }

    /// A session on a folder that does not exist answers each request as the call would (66).
    @Test(.timeLimit(.minutes(2)))
    func aSessionOnAMissingFolderAnswersWhatTheCallWould() throws {
        let directory = try TemporaryDirectory()
        let session = try Session(arguments: ["--dir", directory.coordination], directory: directory.scratch)
        let answer = try session.request(["budget", "status"])
        #expect(answer.code == 66, "\(answer)")
        #expect(answer == (try oneProcess(["budget", "status"], dir: directory.coordination, in: directory)))
        try initialise(directory, totalTokens: 5)
        #expect(try session.request(["budget", "status", "--json"]).code == 0, "the folder, once made, is opened")
    }

    /// A request whose count is not a number: one answer (64, the reason on its stderr), then the
    /// session ends with 64, since nothing after it can be trusted; the requests before it stand.
    @Test(.timeLimit(.minutes(2)))
    func aMalformedRequestIsAnsweredOnceAndEndsTheSession() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 5)
        let session = try Session(arguments: ["--dir", directory.coordination], directory: directory.scratch)
        #expect(try session.request(["budget", "status", "--json"]).code == 0)
        try session.sendRaw(Array("budget\0allocate\0".utf8))
        let answer = try #require(session.nextAnswer())
        #expect(answer.code == 64 && answer.out.isEmpty && answer.err.contains("malformed request"), "\(answer)")
        #expect(session.nextAnswer() == nil)
        #expect(session.exitCode() == 64)
    }

    /// 20 sessions (through the bash helper) and 20 one-process loops allocate at once: the
    /// budget is never exceeded at any record of a fresh fold, exactly as many are granted as
    /// fit, and every answer is the outcome the fold gives its record.
    @Test(.timeLimit(.minutes(10)))
    func decisionsStayStableWith20SessionsAnd20SingleCallsAllocatingAtOnce() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination
        let perCaller = 10
        let prologue = "export PATH=\"\(toolsDirectory):$PATH\" CORTEX_DIR=\"\(dir)\"; "
        let sessionLoop =
            prologue
            + "source \"\(packageRoot)/bin/cortex-session.bash\" && cortex_session_start || exit 9; "
            + "for i in $(seq \(perCaller)); do cx budget allocate --tokens 7 --holder s$$ --json; echo \"exit $?\"; done; cortex_session_stop"
        let callLoop =
            prologue
            + "for i in $(seq \(perCaller)); do cortex-budget allocate --tokens 7 --holder c$$ --json; echo \"exit $?\"; done"
        let commands = (0..<40).map { [bashPath, "-c", $0 % 2 == 0 ? sessionLoop : callLoop] }
        let results = try runConcurrently(commands, in: directory)

        var granted: [String] = []
        var refused = 0
        for result in results {
            #expect(result.exitCode == 0, "\(result)")
            let lines = result.stdoutLines
            #expect(lines.count == 2 * perCaller, "\(result)")
            for pair in stride(from: 0, to: lines.count - 1, by: 2) {
                let json = try #require(try? JSONValue.parse(lines[pair]), "\(result)")
                switch lines[pair + 1] {
                case "exit 0":
                    #expect(json.string("outcome") == "granted", "\(result)")
                    granted.append(try #require(json.string("allocation"), "\(result)"))
                case "exit 1":
                    #expect(json.string("outcome") == "refused", "\(result)")
                    refused += 1
                default: Issue.record("neither granted nor refused: \(result)")
                }
            }
        }
        #expect(granted.count == 1000 / 7, "as many as fit: \(granted.count)")
        #expect(Set(granted).count == granted.count, "each id told once")
        #expect(granted.count + refused == 40 * perCaller)

        let fold = try foldJournal(directory)
        #expect(fold.overAllocations.isEmpty, "\(fold.overAllocations)")
        #expect(fold.duplicatedRecordIDs.isEmpty)
        #expect(fold.workload.count == 1 + 40 * perCaller, "budget.set and one record per request")
        let grantedInFold = Set(fold.state.budget.allocations.keys)
        #expect(grantedInFold == Set(granted), "every granted answer is a grant of the fold, and only those")
        let refusedInFold = fold.records.filter { if case .refused = $0.outcome { true } else { false } }.count
        #expect(refusedInFold == refused)
    }

    /// A session killed with SIGKILL while requests are in flight: every allocation it answered
    /// is in a fresh fold, and the folder keeps working for the next caller.
    @Test(.timeLimit(.minutes(5)))
    func killingASessionMidRequestLosesNothingItAcknowledged() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        let session = try Session(arguments: ["--dir", directory.coordination], directory: directory.scratch)
        for index in 0..<300 { try session.send(["budget", "allocate", "--tokens", "1", "--holder", "k\(index)"]) }
        var acknowledged: [String] = []
        while acknowledged.count < 40, let answer = session.nextAnswer() {
            #expect(answer.code == 0, "\(answer)")
            acknowledged.append(answer.out.trimmingCharacters(in: .newlines))
        }
        #expect(Glibc.kill(session.pid, SIGKILL) == 0)
        // Answers written whole before the kill were acknowledged too.
        while let answer = session.nextAnswer() { acknowledged.append(answer.out.trimmingCharacters(in: .newlines)) }
        #expect(session.exitCode() == SIGKILL)
        #expect(acknowledged.count >= 40 && acknowledged.count < 300, "killed mid-stream: \(acknowledged.count)")

        let fold = try foldJournal(directory)
        let inFold = Set(fold.state.budget.allocations.keys)
        let lost = acknowledged.filter { !inFold.contains($0) }
        #expect(lost.isEmpty, "acknowledged but not in the journal: \(lost)")
        let after = try oneProcess(["budget", "allocate", "--tokens", "1"], dir: directory.coordination, in: directory)
        #expect(after.code == 0, "\(after)")
    }

    /// The bash helper from a bash script: start, cx equal to cortex on each stream and in exit
    /// code (also with -v), two named sessions, restart after kill -9, stop, 74 without a session.
    @Test(.timeLimit(.minutes(5)))
    func theBashHelperStartsServesRestartsAndStops() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        let script = #"""
            source "$HELPER" || exit 9
            same() {  # same ARGS…: cx and cortex print the same on each stream and exit the same
              cx "$@" >"$T/a.out" 2>"$T/a.err"; local a=$?
              cortex "$@" >"$T/b.out" 2>"$T/b.err"; local b=$?
              if [[ $a == "$b" ]] && cmp -s "$T/a.out" "$T/b.out" && cmp -s "$T/a.err" "$T/b.err"; then echo "same $a"; else echo "differ $a $b: $*"; fi
            }
            cortex_session_start; echo "start $?"
            same budget status
            same status   # '·' in its lines: the answer is not 7-bit
            same budget allocate
            same task show "no such
            task"
            same task list --status 'it'"'"'s'
            cx -v id budget allocate --tokens 3; echo "v $? ${id%%-*}"
            cortex_session_start --name other --dir "$CORTEX_DIR"; echo "other $?"
            CX_SESSION=other cx budget status --json >/dev/null; echo "other cx $?"
            pid=$(cortex_session_pid)
            kill -9 "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
            cx budget allocate --tokens 1 >/dev/null; echo "restarted $?"
            [[ $(cortex_session_pid) != "$pid" ]] && echo "new pid"
            same budget status
            cortex_session_stop; cortex_session_stop --name other
            cx budget status 2>/dev/null; echo "stopped $?"
            CX_CORTEX=/nonexistent/cortex cortex_session_start --name broken 2>/dev/null; echo "broken $?"
            """#
        var environment = toolEnvironment
        environment["PATH"] = toolsDirectory + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["CORTEX_DIR"] = directory.coordination
        environment["HELPER"] = packageRoot + "/bin/cortex-session.bash"
        environment["T"] = directory.scratch
        let result = try RunningTool([bashPath, "-c", script], scratch: directory.scratch, environment: environment).wait()
        #expect(
            result.stdoutLines == [
                "start 0", "same 0", "same 0", "same 64", "same 65", "same 65", "v 0 alloc", "other 0", "other cx 0", "restarted 0",
                "new pid", "same 0", "stopped 74", "broken 74",
            ], "\(result)")
    }
}
