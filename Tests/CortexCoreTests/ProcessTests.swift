import Glibc
import Testing

@testable import CortexCore
@testable import CortexProcesses
@testable import CortexStorage

@Suite struct ProcessIdentityTests {
    @Test func theStartTimeIsReadPastACommandNameWithSpacesAndParentheses() {
        let stat = Array("4242 (evil ) name (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100".utf8)
        #expect(ProcessIdentity.parse(stat: stat, pid: 4242) == ProcessIdentity(pid: 4242, startTicks: 987_654))
        #expect(ProcessIdentity.parse(stat: Array("garbage".utf8), pid: 1) == nil)
        let zombie = Array("4242 (sh) Z 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100".utf8)
        #expect(ProcessIdentity.parse(stat: zombie, pid: 4242) == nil, "a zombie has ended")
        #expect(
            ProcessIdentity.parse(stat: zombie, pid: 4242, includingZombies: true)?.startTicks == 987_654, "a parent still reads its child")
    }

    @Test func thisProcessIsAliveAndARecycledPidIsNot() throws {
        let me = try #require(ProcessIdentity.current)
        #expect(me.isAlive)
        #expect(me.isAliveAndOurs)
        let impostor = ProcessIdentity(pid: me.pid, startTicks: me.startTicks + 1)
        #expect(!impostor.isAlive, "same pid, other start time: a recycled pid")
        #expect(!impostor.signalGroup(.probe), "a recycled pid must never be signalled")
        #expect(ProcessIdentity.of(pid: Int32.max) == nil)
    }

    @Test func waitingForAnEndWakesOnTheExitNotOnATimer() throws {
        let short = try Spawner.spawn(SpawnRequest(arguments: ["sleep", "0.2"], environment: ["PATH": "/usr/bin:/bin"]))
        let long = try Spawner.spawn(SpawnRequest(arguments: ["sleep", "30"], environment: ["PATH": "/usr/bin:/bin"]))
        defer {
            kill(long, SIGKILL)
            _ = try? Spawner.waitForExit(long)
        }
        let shortIdentity = try #require(ProcessIdentity.of(pid: short))
        let longIdentity = try #require(ProcessIdentity.of(pid: long))
        #expect(shortIdentity.waitForEnd(milliseconds: 30_000), "ended (a zombie until reaped counts as ended)")
        _ = try Spawner.waitForExit(short)
        #expect(!longIdentity.waitForEnd(milliseconds: 100), "still running when the time is up")
    }

    @Test func probesReadTheMachine() throws {
        #expect(SystemProbe.cores >= 1)
        #expect(try #require(SystemProbe.loadAverage()) >= 0)
        #expect(try #require(SystemProbe.availableMemoryBytes()) > 0)
    }
}

@Suite struct SpawnerTests {
    /// Runs `sh -c script` through the spawner with stdout to a file, and returns that output.
    func run(_ script: String, in folder: TemporaryDirectory) throws -> (String, TerminationStatus, pid_t) {
        let path = folder.path + "/out.txt"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        try #require(fd >= 0)
        let pid = try Spawner.spawn(
            SpawnRequest(
                arguments: ["sh", "-c", script], environment: ["PATH": "/usr/bin:/bin", "MARK": "x y"],
                standardOutput: FileDescriptor(rawValue: fd)))
        close(fd)
        let status = try #require(try Spawner.waitForExit(pid))
        return (String(decoding: try POSIX.readFile(path), as: UTF8.self), status, pid)
    }

    @Test func theChildLeadsItsOwnSessionWithOnlyDescriptors0To2AndNoBlockedSignals() throws {
        let folder = try TemporaryDirectory()
        // A descriptor opened WITHOUT O_CLOEXEC must still not reach the child.
        let leaked = open("/dev/null", O_RDONLY)
        defer { close(leaked) }
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGUSR1)
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        defer { pthread_sigmask(SIG_UNBLOCK, &blocked, nil) }
        let (output, status, pid) = try run(
            "echo sid=$(cut -d' ' -f6 /proc/$$/stat); ls /proc/$$/fd | tr '\\n' ' '; echo; echo \"$MARK\"", in: folder)
        // The mask is read by a program the shell execs at once: a shell that is running commands
        // blocks signals around its forks, so reading the shell's own mask would race with it.
        let (mask, _, _) = try run("exec grep SigBlk /proc/self/status", in: folder)
        #expect(status == .exited(0))
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.first == "sid=\(pid)", "the child leads a new session: \(output)")
        #expect(lines.dropFirst().first?.split(separator: " ").sorted() == ["0", "1", "2"], "inherited descriptors: \(output)")
        #expect(mask.hasPrefix("SigBlk:") && mask.hasSuffix("0000000000000000\n"), "blocked signals: \(mask)")
        #expect(lines.last == "x y")
    }

    @Test func exitCodesAndSignalsAreReported() throws {
        let folder = try TemporaryDirectory()
        #expect(try run("exit 7", in: folder).1 == .exited(7))
        #expect(try run("kill -TERM $$", in: folder).1 == .signaled(.terminate))
    }

    @Test func aMissingProgramIsNotFound() {
        #expect(throws: CortexError.self) {
            try Spawner.spawn(SpawnRequest(arguments: ["/nonexistent/program"], environment: [:]))
        }
    }
}
