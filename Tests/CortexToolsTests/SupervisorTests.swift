import CortexCore
import CortexProcesses
import CortexStorage
import Foundation
import Glibc
import Testing

/// `cortex-supervise`, the supervisor of one run (decision 017), run as a process with real
/// `sh -c` workers. Its reporter here is a shell that appends its arguments to `report`, so a
/// test reads what `cortex-spawn _supervise` would have been told.
@Suite struct SupervisorTests {
    /// A plan running `script` with logs inside `folder` (the working directory).
    func plan(_ script: String, in folder: TemporaryDirectory) -> SupervisionPlan {
        SupervisionPlan(
            arguments: ["sh", "-c", script], environment: ["PATH": "/usr/bin:/bin", "HB": folder.path + "/heartbeat"],
            workingDirectory: folder.path, stdoutLog: folder.path + "/stdout.log", stderrLog: folder.path + "/stderr.log")
    }

    /// What the supervisor reported: the worker's identity from `--started`, the rest by option.
    struct Reported {
        var started: ProcessIdentity?
        var options: [String: String] = [:]
        var exit: TerminationStatus? {
            let parts = options["--exit"]?.split(separator: ":") ?? []
            guard parts.count == 2, let number = Int32(parts[1]) else { return nil }
            return parts[0] == "exited" ? .exited(number) : .signaled(Signal(rawValue: number))
        }
        func has(_ flag: String) -> Bool { options[flag] != nil }
        func summary(_ stream: String) -> StreamSummary? {
            let parts = options[stream]?.split(separator: ":").compactMap { Int64($0) } ?? []
            return parts.count == 2 ? StreamSummary(bytesSeen: parts[0], bytesKept: Int(parts[1])) : nil
        }
    }

    static let flags: Set<String> = ["--timed-out", "--killed-after-grace"]

    /// Starts `cortex-supervise` on `plan` (its environment as the process's own), reporting to
    /// `reporter` (a shell script; `$0` is the report file).
    func start(_ plan: SupervisionPlan, in folder: TemporaryDirectory, reporter: String = "") throws -> pid_t {
        let script = reporter + "printf '%s\\n' \"$@\" >> \"$0\""
        var arguments = try plan.supervisorArguments(
            program: toolPath("cortex-supervise"), report: ["/bin/sh", "-c", script, folder.path + "/report"])
        // The memfd would not survive posix_spawn's closing of descriptors: the worker gets this
        // process's environment instead (a supervisor started by exec reads the memfd; SpawnTests).
        let fd = try #require(arguments.firstIndex(of: "--environment-fd"))
        close(Int32(arguments[fd + 1])!)
        arguments.removeSubrange(fd...(fd + 1))
        return try Spawner.spawn(SpawnRequest(arguments: arguments, environment: plan.environment, newSession: false))
    }

    /// Runs `plan` to its end; returns the supervisor's exit and what it reported.
    func supervise(_ plan: SupervisionPlan, in folder: TemporaryDirectory, reporter: String = "") throws -> (TerminationStatus?, Reported) {
        let pid = try start(plan, in: folder, reporter: reporter)
        let exit = try Spawner.waitForExit(pid)
        return (exit, try report(folder))
    }

    func report(_ folder: TemporaryDirectory) throws -> Reported {
        let lines = ((try? text(folder.path + "/report")) ?? "").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var reported = Reported()
        var index = 0
        while index < lines.count {
            let name = lines[index]
            if Self.flags.contains(name) {
                reported.options[name] = ""
                index += 1
                continue
            }
            guard name.hasPrefix("--"), index + 1 < lines.count else {
                index += 1
                continue
            }
            let value = lines[index + 1]
            if name == "--started" {
                let parts = value.split(separator: ":")
                reported.started = ProcessIdentity(pid: Int32(parts[0])!, startTicks: UInt64(parts[1])!)
            } else {
                reported.options[name] = value
            }
            index += 2
        }
        return reported
    }

    func text(_ path: String) throws -> String { String(decoding: try POSIX.readFile(path), as: UTF8.self) }

    @Test func exitCodeOutputAndIdentityAreReported() throws {
        let folder = try TemporaryDirectory()
        let (exit, reported) = try supervise(plan("echo out; echo err >&2; echo $$ > pid; exit 3", in: folder), in: folder)
        #expect(exit == .exited(0), "the reporter's exit: the supervisor became it")
        #expect(reported.exit == .exited(3))
        #expect(!reported.has("--timed-out") && !reported.has("--stop-signal") && !reported.has("--killed-after-grace"))
        #expect(!reported.has("--write-failure"))
        #expect(try text(folder.path + "/stdout.log") == "out\n")
        #expect(try text(folder.path + "/stderr.log") == "err\n")
        #expect(reported.summary("--stdout") == StreamSummary(bytesSeen: 4, bytesKept: 4))
        let identity = try #require(reported.started)
        #expect(try text(folder.path + "/pid") == "\(identity.pid)\n", "the identity is the worker's, run in the working directory")
        #expect(identity.startTicks > 0)
    }

    @Test func aSignalThatEndsTheWorkerIsReported() throws {
        let folder = try TemporaryDirectory()
        #expect(try supervise(plan("kill -9 $$", in: folder), in: folder).1.exit == .signaled(.kill))
    }

    @Test func theWorkerIsReapedBeforeTheEndIsReported() throws {
        let folder = try TemporaryDirectory()
        // The reporter runs in the supervisor's folder, not the worker's: paths from `$0`.
        let reporter =
            "d=${0%/*}; case \"$1\" in --exit) if [ -e /proc/$(cat $d/worker) ]; then echo left; else echo gone; fi > $d/after;; esac; "
        let (_, reported) = try supervise(plan("echo $$ > worker", in: folder), in: folder, reporter: reporter)
        #expect(reported.exit == .exited(0))
        #expect(try text(folder.path + "/after") == "gone\n", "no zombie of the worker is left when the end is reported")
    }

    @Test func twoHundredMegabytesKeepLogsAndMemoryWithinTheBound() throws {
        let folder = try TemporaryDirectory()
        let script =
            "printf HEAD; head -c 200000000 /dev/zero | tr '\\0' x; printf TAIL; printf E >&2; grep VmHWM /proc/$PPID/status > peak"
        let (_, reported) = try supervise(plan(script, in: folder), in: folder)
        #expect(reported.exit == .exited(0))
        #expect(reported.summary("--stdout") == StreamSummary(bytesSeen: 200_000_008, bytesKept: 40 * 1024))
        #expect(reported.summary("--stderr") == StreamSummary(bytesSeen: 1, bytesKept: 1))
        let log = try POSIX.readFile(folder.path + "/stdout.log")
        #expect(log.count <= 40 * 1024 + 100, "head + tail + one marker line")
        #expect(log.starts(with: Array("HEAD".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 10 * 1024 - 4) + Array("\n[…".utf8)))
        #expect(log.suffix(30 * 1024) == ArraySlice([UInt8](repeating: UInt8(ascii: "x"), count: 30 * 1024 - 4) + Array("TAIL".utf8)))
        let marker = String(decoding: log.dropFirst(10 * 1024).dropLast(30 * 1024), as: UTF8.self)
        #expect(marker == "\n[… \(200_000_008 - 40 * 1024) bytes omitted by cortex …]\n")
        // The supervisor's own peak, read by the worker from its parent: far below the 200 MB
        // a supervisor keeping everything would reach.
        let peak = try #require(Int(try text(folder.path + "/peak").filter(\.isNumber)))
        #expect(peak < 16 * 1024, "the supervisor's peak resident set: \(peak) KiB")
    }

    @Test func chunksOfEverySizeKeepTheSameHeadAndTailAsTheWholeStream() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<12 {
            let folder = try TemporaryDirectory()
            let stream = (0..<Int.random(in: 0...300_000, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            try Data(stream).write(to: URL(fileURLWithPath: folder.path + "/stream"))
            // Chunks of random sizes, each its own write: each `head -c` takes the next bytes of the
            // shared stdin.
            var run = plan("exec 3< sizes; while read -r size <&3; do head -c \"$size\" || break; done < stream", in: folder)
            let sizes = (0..<40).map { _ in String(Int.random(in: 1...20_000, using: &generator)) }.joined(separator: "\n")
            try (sizes + "\n1000000\n").write(toFile: folder.path + "/sizes", atomically: true, encoding: .utf8)
            run.headLimit = Int.random(in: 0...40_000, using: &generator)
            run.tailLimit = Int.random(in: 0...40_000, using: &generator)
            let (_, reported) = try supervise(run, in: folder)
            #expect(reported.exit == .exited(0))
            let head = Array(stream.prefix(run.headLimit))
            let tail = Array(stream.dropFirst(head.count).suffix(run.tailLimit))
            let omitted = stream.count - head.count - tail.count
            let marker = omitted > 0 ? Array("\n[… \(omitted) bytes omitted by cortex …]\n".utf8) : []
            #expect(try POSIX.readFile(folder.path + "/stdout.log") == head + marker + tail, "head \(run.headLimit) tail \(run.tailLimit)")
            #expect(reported.summary("--stdout") == StreamSummary(bytesSeen: Int64(stream.count), bytesKept: head.count + tail.count))
        }
    }

    @Test func whatTheWorkerLeftInItsGroupDiesWithIt() throws {
        let folder = try TemporaryDirectory()
        let (_, reported) = try supervise(plan("sleep 1000 & echo $! > left; exit 0", in: folder), in: folder)
        #expect(reported.exit == .exited(0) && !reported.has("--killed-after-grace"))
        let left = try #require(Int32(try text(folder.path + "/left").split(separator: "\n").first ?? ""))
        #expect(try eventually { !isRunning(left) })
    }

    @Test func aProcessThatEscapedTheGroupWithThePipesDoesNotKeepTheSupervisor() throws {
        let folder = try TemporaryDirectory()
        let script = "setsid sh -c 'echo $$ > escaped; exec sleep 1000' & while [ ! -s escaped ]; do sleep 0.01; done; echo done"
        let (_, reported) = try supervise(plan(script, in: folder), in: folder)
        let escaped = try #require(Int32(try text(folder.path + "/escaped").split(separator: "\n").first ?? ""))
        defer { kill(escaped, SIGKILL) }
        #expect(isRunning(escaped), "it holds the worker's stdout, yet the supervision ended")
        #expect(reported.exit == .exited(0))
        #expect(try text(folder.path + "/stdout.log") == "done\n")
    }

    @Test func theTimeoutKillsTheWholeGroupWhenTermIsIgnored() throws {
        let folder = try TemporaryDirectory()
        var timed = plan("trap '' TERM; sleep 1000 & echo $!; wait", in: folder)
        timed.timeoutMilliseconds = 1_000
        timed.graceMilliseconds = 300
        let (_, reported) = try supervise(timed, in: folder)
        #expect(reported.has("--timed-out") && reported.has("--killed-after-grace") && !reported.has("--stop-signal"))
        #expect(reported.exit == .signaled(.kill), "TERM was ignored, so KILL ended it")
        let grandchild = try #require(Int32(try text(folder.path + "/stdout.log").split(separator: "\n").first ?? ""))
        #expect(grandchild != reported.started?.pid)
        #expect(try eventually { !isRunning(grandchild) }, "the grandchild in the worker's group is gone too")
    }

    @Test func aStopSignalIsForwardedToTheGroup() throws {
        let folder = try TemporaryDirectory()
        var stoppable = plan("trap 'echo stopped; exit 7' TERM; sleep 1000 & touch ready; wait", in: folder)
        stoppable.graceMilliseconds = 60_000
        let supervisor = try start(stoppable, in: folder)
        #expect(try eventually { access(folder.path + "/ready", F_OK) == 0 }, "the worker set its trap")
        #expect(kill(supervisor, SIGTERM) == 0)
        #expect(try Spawner.waitForExit(supervisor) == .exited(0))
        let reported = try report(folder)
        #expect(reported.options["--stop-signal"] == "\(SIGTERM)" && !reported.has("--timed-out") && !reported.has("--killed-after-grace"))
        #expect(reported.exit == .exited(7), "the worker's trap ran: it got the forwarded SIGTERM")
        #expect(try text(folder.path + "/stdout.log") == "stopped\n")
    }

    @Test func theHeartbeatIsFreshWhileTheWorkerLives() throws {
        let folder = try TemporaryDirectory()
        var beating = plan("date -r \"$HB\" +%s%N; sleep 1.5; date -r \"$HB\" +%s%N", in: folder)
        beating.heartbeatPath = folder.path + "/heartbeat"
        beating.heartbeatIntervalMilliseconds = 200
        let (_, reported) = try supervise(beating, in: folder)
        #expect(reported.exit == .exited(0))
        let times = try text(folder.path + "/stdout.log").split(separator: "\n").compactMap { Int64($0) }
        #expect(times.count == 2, "the heartbeat existed when the worker started")
        #expect(times.count == 2 && times[1] > times[0], "its mtime advanced while the worker ran: \(times)")
    }

    @Test func logsAreRewrittenWhileTheWorkerRuns() throws {
        let folder = try TemporaryDirectory()
        let (_, reported) = try supervise(plan("echo first; sleep 3; cat stdout.log", in: folder), in: folder)
        #expect(reported.exit == .exited(0))
        #expect(try text(folder.path + "/stdout.log") == "first\nfirst\n", "the worker read its own log mid-run")
    }

    @Test func aMissingProgramIsReportedAndNothingStarts() throws {
        let folder = try TemporaryDirectory()
        var missing = plan("", in: folder)
        missing.arguments = ["/nonexistent/program"]
        let (_, reported) = try supervise(missing, in: folder)
        #expect(reported.started == nil)
        #expect(reported.options["--start-failure"]?.contains("/nonexistent/program") == true)
        var unknown = plan("", in: folder)
        unknown.arguments = ["no-such-program-anywhere"]
        try? FileManager.default.removeItem(atPath: folder.path + "/report")
        #expect(try supervise(unknown, in: folder).1.options["--start-failure"]?.contains("not found in PATH") == true)
    }

    @Test func aLogThatCannotBeWrittenFailsBeforeAnythingStarts() throws {
        let folder = try TemporaryDirectory()
        var unwritable = plan("touch ran", in: folder)
        unwritable.stderrLog = folder.path + "/missing/stderr.log"
        let (_, reported) = try supervise(unwritable, in: folder)
        #expect(reported.started == nil && reported.options["--start-failure"] != nil)
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/ran"))
    }

    @Test func aYearsLongTimeoutDoesNotOverflow() throws {
        let folder = try TemporaryDirectory()
        var patient = plan("exit 0", in: folder)
        patient.timeoutMilliseconds = .max
        patient.graceMilliseconds = .max
        patient.heartbeatPath = folder.path + "/heartbeat"
        patient.heartbeatIntervalMilliseconds = .max
        let (_, reported) = try supervise(patient, in: folder)
        #expect(reported.exit == .exited(0) && !reported.has("--timed-out"))
        #expect(reported.summary("--stdout") == StreamSummary.none)
    }

    @Test func aFailureToRecordTheStartKillsTheWorker() throws {
        let folder = try TemporaryDirectory()
        let reporter = "case \"$1\" in --started) echo \"$2\" > ${0%/*}/started; exit 1;; esac; "
        let (exit, reported) = try supervise(plan("sleep 1000", in: folder), in: folder, reporter: reporter)
        #expect(exit == .exited(1), "the supervisor gives up")
        #expect(reported.exit == nil, "and reports no end: the reaper finds the supervisor gone")
        let pid = try #require(Int32(try text(folder.path + "/started").split(separator: ":").first ?? ""))
        #expect(try eventually { !isRunning(pid) }, "the worker was killed")
    }

    @Test func badUsageIsOneLineAndExit64() throws {
        let result = try Spawner.spawn(
            SpawnRequest(arguments: [toolPath("cortex-supervise"), "--log-head", "ten", "--", "true"], environment: [:]))
        #expect(try Spawner.waitForExit(result) == .exited(64))
    }
}

/// True while `pid` exists and is not a zombie (an orphan waits for init, which may be slow to reap).
func isRunning(_ pid: Int32) -> Bool {
    guard let stat = try? POSIX.readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")),
        close + 2 < stat.count
    else { return false }
    return stat[close + 2] != UInt8(ascii: "Z") && stat[close + 2] != UInt8(ascii: "X")
}

/// Polls `condition` every 10 ms for up to a generous minute.
func eventually(_ condition: () -> Bool) throws -> Bool {
    for _ in 0..<6_000 {
        if condition() { return true }
        usleep(10_000)
    }
    return false
}
