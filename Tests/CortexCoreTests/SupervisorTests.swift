import Foundation
import Glibc
import Synchronization
import Testing

@testable import CortexCore

/// Supervisors run real `sh -c` workers. They run on the test's own thread with no stop signals
/// (blocking SIGTERM in a shared pool thread would outlive the test), except the one test that
/// sends a signal, which runs its supervisor on a thread of its own.
@Suite struct SupervisorTests {
    /// A plan running `script` with logs (and a heartbeat path in `HB`) inside `folder`.
    func plan(_ script: String, in folder: TemporaryDirectory) -> SupervisionPlan {
        SupervisionPlan(
            arguments: ["sh", "-c", script], environment: ["PATH": "/usr/bin:/bin", "HB": folder.path + "/heartbeat"],
            workingDirectory: folder.path, stdoutLog: folder.path + "/stdout.log", stderrLog: folder.path + "/stderr.log",
            stopSignals: [])
    }

    /// Runs `plan` and returns its result with the identity `onStart` was given.
    func supervise(_ plan: SupervisionPlan) throws -> (SupervisedExit, ProcessIdentity) {
        var started: ProcessIdentity?
        let result = try Supervisor.run(plan) { identity in started = identity }
        return (result, try #require(started))
    }

    func text(_ path: String) throws -> String { String(decoding: try POSIX.readFile(path), as: UTF8.self) }

    @Test func exitCodeOutputAndIdentityAreReported() throws {
        let folder = try TemporaryDirectory()
        let (result, identity) = try supervise(plan("echo out; echo err >&2; echo $$ > pid; exit 3", in: folder))
        #expect(result.exit == .exited(3))
        #expect(!result.timedOut && result.stopSignal == nil && !result.killedAfterGrace && result.writeFailure == nil)
        #expect(try text(folder.path + "/stdout.log") == "out\n")
        #expect(try text(folder.path + "/stderr.log") == "err\n")
        #expect(result.stdout == StreamSummary(bytesSeen: 4, bytesKept: 4))
        #expect(try text(folder.path + "/pid") == "\(identity.pid)\n", "the identity is the worker's, run in the working directory")
        #expect(identity.startTicks > 0)
    }

    @Test func aSignalThatEndsTheWorkerIsReported() throws {
        let folder = try TemporaryDirectory()
        #expect(try supervise(plan("kill -9 $$", in: folder)).0.exit == .signaled(SIGKILL))
    }

    @Test func theWorkerIsReapedBeforeRunReturns() throws {
        let folder = try TemporaryDirectory()
        let (_, identity) = try supervise(plan("exit 0", in: folder))
        var status: Int32 = 0
        #expect(waitpid(identity.pid, &status, WNOHANG) == -1 && errno == ECHILD, "no zombie of the worker is left")
        #expect(!identity.isAlive)
    }

    @Test func twoHundredMegabytesKeepLogsAndMemoryWithinTheBound() throws {
        let folder = try TemporaryDirectory()
        let peakBefore = try peakResidentBytes()
        let (result, _) = try supervise(
            plan("printf HEAD; head -c 200000000 /dev/zero | tr '\\0' x; printf TAIL; printf E >&2", in: folder))
        #expect(result.exit == .exited(0))
        #expect(result.stdout == StreamSummary(bytesSeen: 200_000_008, bytesKept: 40 * 1024))
        #expect(result.stderr == StreamSummary(bytesSeen: 1, bytesKept: 1))
        let log = try POSIX.readFile(folder.path + "/stdout.log")
        #expect(log.count <= 40 * 1024 + 100, "head + tail + one marker line")
        #expect(log.starts(with: Array("HEAD".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 10 * 1024 - 4) + Array("\n[…".utf8)))
        #expect(log.suffix(30 * 1024) == ArraySlice([UInt8](repeating: UInt8(ascii: "x"), count: 30 * 1024 - 4) + Array("TAIL".utf8)))
        let marker = String(decoding: log.dropFirst(10 * 1024).dropLast(30 * 1024), as: UTF8.self)
        #expect(marker == "\n[… \(200_000_008 - 40 * 1024) bytes omitted by cortex …]\n")
        // The peak of the whole test process: other tests share it, so the limit is far below
        // the 200 MB a supervisor keeping everything would add, not tight.
        #expect(try peakResidentBytes() - peakBefore < 64 << 20)
    }

    @Test func whatTheWorkerLeftInItsGroupDiesWithIt() throws {
        let folder = try TemporaryDirectory()
        let (result, _) = try supervise(plan("sleep 1000 & echo $! > left; exit 0", in: folder))
        #expect(result.exit == .exited(0) && !result.killedAfterGrace)
        let left = try #require(Int32(try text(folder.path + "/left").split(separator: "\n").first ?? ""))
        #expect(try eventually { !isRunning(left) })
    }

    @Test func aProcessThatEscapedTheGroupWithThePipesDoesNotKeepTheSupervisor() throws {
        let folder = try TemporaryDirectory()
        let script = "setsid sh -c 'echo $$ > escaped; exec sleep 1000' & while [ ! -s escaped ]; do sleep 0.01; done; echo done"
        let (result, _) = try supervise(plan(script, in: folder))
        let escaped = try #require(Int32(try text(folder.path + "/escaped").split(separator: "\n").first ?? ""))
        defer { kill(escaped, SIGKILL) }
        #expect(isRunning(escaped), "it holds the worker's stdout, yet run returned")
        #expect(result.exit == .exited(0))
        #expect(try text(folder.path + "/stdout.log") == "done\n")
    }

    @Test func theTimeoutKillsTheWholeGroupWhenTermIsIgnored() throws {
        let folder = try TemporaryDirectory()
        var timed = plan("trap '' TERM; sleep 1000 & echo $!; wait", in: folder)
        timed.timeoutMilliseconds = 1_000
        timed.graceMilliseconds = 300
        let (result, identity) = try supervise(timed)
        #expect(result.timedOut && result.killedAfterGrace && result.stopSignal == nil)
        #expect(result.exit == .signaled(SIGKILL), "TERM was ignored, so KILL ended it")
        let grandchild = try #require(Int32(try text(folder.path + "/stdout.log").split(separator: "\n").first ?? ""))
        #expect(grandchild != identity.pid)
        #expect(try eventually { !isRunning(grandchild) }, "the grandchild in the worker's group is gone too")
    }

    @Test func aStopSignalIsForwardedToTheGroup() throws {
        let folder = try TemporaryDirectory()
        var stoppable = plan("trap 'echo stopped; exit 7' TERM; sleep 1000 & touch ready; wait", in: folder)
        stoppable.stopSignals = [SIGTERM]
        stoppable.graceMilliseconds = 60_000
        let stopPlan = stoppable
        let supervisorThread = Mutex<pthread_t?>(nil)
        let outcome = Mutex<Result<SupervisedExit, CortexError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        // Its own thread, which ends after the run: the blocked SIGTERM goes with it. The signal
        // is sent to that thread only (pthread_kill), so it reaches that thread's signalfd exactly
        // as a signal sent to a single-threaded supervisor process would.
        let thread = Thread {
            let result = Result { () throws(CortexError) in
                try Supervisor.run(stopPlan) { _ in supervisorThread.withLock { $0 = pthread_self() } }
            }
            outcome.withLock { $0 = result }
            done.signal()
        }
        thread.start()
        #expect(try eventually { access(folder.path + "/ready", F_OK) == 0 }, "the worker set its trap")
        let target = try #require(supervisorThread.withLock { $0 })
        #expect(pthread_kill(target, SIGTERM) == 0)
        #expect(done.wait(timeout: .now() + 60) == .success)
        let result = try #require(outcome.withLock { $0 }).get()
        #expect(result.stopSignal == SIGTERM && !result.timedOut && !result.killedAfterGrace)
        #expect(result.exit == .exited(7), "the worker's trap ran: it got the forwarded SIGTERM")
        #expect(try text(folder.path + "/stdout.log") == "stopped\n")
    }

    @Test func theHeartbeatIsFreshWhileTheWorkerLives() throws {
        let folder = try TemporaryDirectory()
        var beating = plan("date -r \"$HB\" +%s%N; sleep 1.5; date -r \"$HB\" +%s%N", in: folder)
        beating.heartbeatPath = folder.path + "/heartbeat"
        beating.heartbeatIntervalMilliseconds = 200
        let (result, _) = try supervise(beating)
        #expect(result.exit == .exited(0))
        let times = try text(folder.path + "/stdout.log").split(separator: "\n").compactMap { Int64($0) }
        #expect(times.count == 2, "the heartbeat existed when the worker started")
        #expect(times.count == 2 && times[1] > times[0], "its mtime advanced while the worker ran: \(times)")
    }

    @Test func logsAreRewrittenWhileTheWorkerRuns() throws {
        let folder = try TemporaryDirectory()
        let (result, _) = try supervise(plan("echo first; sleep 3; cat stdout.log", in: folder))
        #expect(result.exit == .exited(0))
        #expect(try text(folder.path + "/stdout.log") == "first\nfirst\n", "the worker read its own log mid-run")
    }

    @Test func aMissingProgramIsNotFoundAndNothingStarts() throws {
        let folder = try TemporaryDirectory()
        var missing = plan("", in: folder)
        missing.arguments = ["/nonexistent/program"]
        var started = false
        #expect(throws: CortexError.self) { try Supervisor.run(missing) { _ in started = true } }
        #expect(!started)
    }

    @Test func aLogThatCannotBeWrittenFailsBeforeAnythingStarts() throws {
        let folder = try TemporaryDirectory()
        var unwritable = plan("exit 0", in: folder)
        unwritable.stderrLog = folder.path + "/missing/stderr.log"
        var started = false
        #expect(throws: CortexError.self) { try Supervisor.run(unwritable) { _ in started = true } }
        #expect(!started)
    }

    @Test func aYearsLongTimeoutDoesNotOverflow() throws {
        let folder = try TemporaryDirectory()
        var patient = plan("exit 0", in: folder)
        patient.timeoutMilliseconds = .max
        patient.graceMilliseconds = .max
        patient.heartbeatPath = folder.path + "/heartbeat"
        patient.heartbeatIntervalMilliseconds = .max
        #expect(
            try supervise(patient).0
                == SupervisedExit(exit: .exited(0), stdout: .init(bytesSeen: 0, bytesKept: 0), stderr: .init(bytesSeen: 0, bytesKept: 0)))
    }

    @Test func aFailureToRecordTheStartKillsTheWorker() throws {
        let folder = try TemporaryDirectory()
        var started: ProcessIdentity?
        #expect(throws: CortexError.refused("journal full")) {
            try Supervisor.run(plan("sleep 1000", in: folder)) { identity throws(CortexError) in
                started = identity
                throw .refused("journal full")
            }
        }
        let identity = try #require(started)
        var status: Int32 = 0
        #expect(waitpid(identity.pid, &status, WNOHANG) == -1 && errno == ECHILD, "killed and reaped")
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

/// The test process's peak resident set (`VmHWM`), in bytes.
func peakResidentBytes() throws -> Int {
    let status = String(decoding: try POSIX.readFile("/proc/self/status"), as: UTF8.self)
    let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
    return try #require(Int(line.filter(\.isNumber))) * 1024
}
