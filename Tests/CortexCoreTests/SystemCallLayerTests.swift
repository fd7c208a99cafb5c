import CortexProcesses
import Dispatch
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// The system-call layer (docs/decisions/029-system-call-layer.md): named errno values and
/// signals, typed descriptors and exit statuses, checked spawn setup, one executable lookup,
/// and the CI check that keeps the library outside the layer off the C library.
@Suite struct SystemCallLayerTests {
    @Test func errnoHasSwiftSystemNamesForTheCodesCortexTests() throws {
        #expect(Errno.noSuchFileOrDirectory == Errno(ENOENT))
        #expect(Errno.interrupted == Errno(EINTR))
        #expect(Errno.notPermitted == Errno(EPERM) && Errno.permissionDenied == Errno(EACCES))
        #expect(Errno.wouldBlock == Errno.resourceTemporarilyUnavailable, "one value on Linux")
        let folder = try TemporaryDirectory()
        #expect(throws: Errno.noSuchFileOrDirectory) { try POSIX.readFile(folder.path + "/missing") }
        #expect(throws: Errno.notRegularFile) { try POSIX.readFile(folder.path) }
        switch Errno(ENOTDIR) {
        case .noSuchFileOrDirectory, .notDirectory: break
        default: Issue.record("a named case matches in a switch")
        }
    }

    /// The domain spells errno values, their texts and signal numbers without the C library
    /// (docs/architecture.md): they must be the C library's own.
    @Test func theDomainsErrnoAndSignalValuesAreTheCLibrarys() {
        let named: [(Errno, Int32)] = [
            (.notPermitted, EPERM), (.noSuchFileOrDirectory, ENOENT), (.noSuchProcess, ESRCH), (.interrupted, EINTR),
            (.ioError, EIO), (.badFileDescriptor, EBADF), (.resourceTemporarilyUnavailable, EAGAIN),
            (.permissionDenied, EACCES), (.fileExists, EEXIST), (.improperLink, EXDEV), (.notDirectory, ENOTDIR),
            (.isDirectory, EISDIR), (.invalidArgument, EINVAL), (.fileTooLarge, EFBIG), (.noSpace, ENOSPC),
            (.readOnlyFileSystem, EROFS), (.brokenPipe, EPIPE), (.fileNameTooLong, ENAMETOOLONG), (.noFunction, ENOSYS),
            (.directoryNotEmpty, ENOTEMPTY), (.tooManySymbolicLinkLevels, ELOOP), (.notRegularFile, EMEDIUMTYPE),
            (.connectionReset, ECONNRESET),
        ]
        for (value, code) in named { #expect(value.rawValue == code, "\(value)") }
        for code in Int32(1)...133 {
            #expect(Errno(rawValue: code).description == String(cString: strerror(code)) + " (errno \(code))")
        }
        let signals: [(Signal, Int32)] = [
            (.hangup, SIGHUP), (.interrupt, SIGINT), (.quit, SIGQUIT), (.abort, SIGABRT), (.busError, SIGBUS),
            (.kill, SIGKILL), (.segmentationFault, SIGSEGV), (.brokenPipe, SIGPIPE), (.alarm, SIGALRM),
            (.terminate, SIGTERM), (.childStatusChange, SIGCHLD), (.cpuLimitExceeded, SIGXCPU),
            (.fileSizeLimitExceeded, SIGXFSZ), (.userDefinedOne, SIGUSR1), (.userDefinedTwo, SIGUSR2),
        ]
        for (value, number) in signals { #expect(value.rawValue == number, "\(value)") }
    }

    @Test func signalsHaveNamesAndTheirCNumbers() {
        #expect(Signal.terminate.rawValue == SIGTERM && Signal.kill.rawValue == SIGKILL && Signal.interrupt.rawValue == SIGINT)
        #expect(Signal.terminate.description == "SIGTERM")
        #expect(Signal(rawValue: 40).description == "signal 40", "a number without a common name")
        #expect(Signal.probe.rawValue == 0)
    }

    @Test func aChildEndedByASignalReportsTheSignalTyped() throws {
        let pid = try Spawner.spawn(SpawnRequest(arguments: ["/bin/sh", "-c", "kill -TERM $$"], environment: [:]))
        let status = try #require(try Spawner.waitForExit(pid))
        #expect(status == .signaled(.terminate))
        #expect(status.shellExitCode == 128 + SIGTERM)
        #expect(status.json == .object(["signal": .int(Int64(SIGTERM))]), "the journal keeps the number")
        #expect(TerminationStatus(json: status.json) == status)
        #expect(TerminationStatus.exited(3).shellExitCode == 3)
    }

    /// A standard-stream descriptor `posix_spawn_file_actions_adddup2` refuses (EBADF) used to be
    /// ignored: the child started with the caller's stream instead. Now nothing starts.
    @Test func aSpawnWhoseSetupFailsStartsNothing() {
        let request = SpawnRequest(arguments: ["/bin/true"], environment: [:], standardOutput: FileDescriptor(rawValue: -5))
        do {
            let pid = try Spawner.spawn(request)
            _ = try? Spawner.waitForExit(pid)
            Issue.record("started pid \(pid) with half of its setup")
        } catch {
            guard case .io(let operation, _, let errno) = error else {
                Issue.record("expected an I/O error, got \(error)")
                return
            }
            #expect(errno == .badFileDescriptor)
            #expect(operation.contains("descriptor -5"), "the message names the step: \(operation)")
        }
    }

    @Test func aDescriptorIsClosedAfterItsWorkWhetherItReturnsOrThrows() throws {
        let folder = try TemporaryDirectory()
        let path = folder.path + "/file"
        try AtomicFile.replace(path, with: Array("x".utf8), durability: .processCrash)
        /// What descriptor `number` of this process names now (nil when it is closed).
        func target(_ number: Int32) -> String? { POSIX.readLink("/proc/self/fd/\(number)") }

        let file = try FileDescriptor.open(path, O_RDONLY)
        let seen = file.closeAfter { target(file.rawValue) }
        #expect(seen == path)
        // Another test may be given the number again, but never for this file.
        #expect(target(file.rawValue) != path)

        let other = try FileDescriptor.open(path, O_RDONLY)
        #expect(throws: Errno.ioError) { try other.closeAfter { () throws(Errno) in throw Errno.ioError } }
        #expect(target(other.rawValue) != path)
    }

    @Test func oneExecutableLookupForTheLibraryAndTheSupervisor() throws {
        let folder = try TemporaryDirectory()
        // A folder named like the program comes first in the search, then the program itself.
        #expect(mkdir(folder.path + "/dir", 0o755) == 0 && mkdir(folder.path + "/dir/tool", 0o755) == 0)
        #expect(mkdir(folder.path + "/bin", 0o755) == 0)
        try AtomicFile.replace(folder.path + "/bin/tool", with: Array("#!/bin/sh\n".utf8), durability: .processCrash)
        #expect(ExecutableSearch.find("tool", searchPath: "\(folder.path)/bin") == nil, "not executable yet")
        #expect(chmod(folder.path + "/bin/tool", 0o755) == 0)
        #expect(
            ExecutableSearch.find("tool", searchPath: "\(folder.path)/none:\(folder.path)/dir:\(folder.path)/bin") == folder.path
                + "/bin/tool")
        #expect(ExecutableSearch.find("tool", searchPath: "\(folder.path)/dir") == nil, "a folder is not a program")
        #expect(ExecutableSearch.find("sh", searchPath: "/nonexistent:/bin") == "/bin/sh")
        #expect(ExecutableSearch.find("./relative/x", searchPath: nil) == "./relative/x", "a name with a / is a path")
        #expect(ExecutableSearch.find("", searchPath: "/bin") == nil)
    }

    @Test func theProcessEnvironmentIsReadThroughTheLayer() {
        let path = POSIX.environmentValue("PATH")
        #expect(path != nil)
        #expect(POSIX.environment(prefix: "PATH")["PATH"] == path)
        #expect(POSIX.environment(prefix: "PATH").keys.allSatisfy { $0.hasPrefix("PATH") })
        #expect(POSIX.environment()["PATH"] == path)
        #expect(POSIX.processID == getpid() && POSIX.userID == getuid())
    }

    /// `.ci/lint-syscalls` passes on the whole library as it is (CortexStorage and CortexProcesses
    /// included) and fails, naming file and line, on a folder whose code imports Glibc, calls a C
    /// function or reads a `stat` field (but not on words in strings or comments, nor on a method
    /// call with an argument label or without arguments).
    @Test func theLintFailsOnADirectSystemCallAndNamesTheLine() throws {
        let folder = try TemporaryDirectory()
        func lint(_ arguments: [String]) throws -> (TerminationStatus?, String) { try runCIScript("lint-syscalls", arguments, in: folder) }
        let clean = try lint([])
        #expect(clean.0 == .exited(0), "the library is clean: \(clean.1)")
        // The default run covers the whole library, not just the CLI and the domain.
        for module in ["Sources/CortexCLI", "Sources/CortexCore", "Sources/CortexStorage", "Sources/CortexProcesses"] {
            #expect(clean.1.contains(module), "\(module) is linted by default: \(clean.1)")
        }

        let sources = folder.path + "/Sources"
        #expect(mkdir(sources, 0o755) == 0)
        let text = """
            import CortexCore
            import Glibc

            // kill(pid, SIGTERM) in a comment is fine
            func stop(_ pid: Int32) -> String {
                _ = kill(pid, SIGTERM)
                return "getpid() in a string is fine"
            }
            func twice(_ text: inout String) { write(into: &text) }
            func more(_ info: stat) -> Int {
                close(); read(descriptor, folder: root, uid: 0)
                pthread_mutex_lock(lock); usleep(2000)
                return info.st_size + Int(IN_MODIFY)
            }
            """
        try AtomicFile.replace(sources + "/Bad.swift", with: Array(text.utf8), durability: .processCrash)
        let dirty = try lint([sources])
        #expect(dirty.0 == .exited(1))
        #expect(dirty.1.contains(sources + "/Bad.swift:2: import Glibc"))
        #expect(dirty.1.contains(sources + "/Bad.swift:6: _ = kill(pid, SIGTERM)"))
        #expect(dirty.1.contains(sources + "/Bad.swift:12: pthread_mutex_lock(lock); usleep(2000)"), "pthread, usleep: \(dirty.1)")
        #expect(dirty.1.contains(sources + "/Bad.swift:13: return info.st_size + Int(IN_MODIFY)"), "stat fields, inotify: \(dirty.1)")
        let spared = ["Bad.swift:4:", "Bad.swift:7:", "Bad.swift:9:", "Bad.swift:11:"]
        #expect(
            spared.allSatisfy { !dirty.1.contains($0) },
            "comments, strings, labelled (Swift) calls and calls without arguments: \(dirty.1)")
    }

    /// File metadata and open flags have names in the layer, equal to the C library's fields and
    /// constants, so no file outside the layer reads `st_` fields or `O_*` bits.
    @Test func fileStatusAndOpenFlagsAreNamedByTheLayer() throws {
        let folder = try TemporaryDirectory()
        let path = folder.path + "/file"
        let fd = try FolderDescriptor(root: folder.path).open("file", [.writeOnly, .create, .exclusive], mode: 0o640)
        try POSIX.writeAll(fd, Array("12345".utf8))
        POSIX.close(fd)
        #expect(throws: Errno.fileExists) { try FolderDescriptor(root: folder.path).open("file", [.writeOnly, .create, .exclusive]) }
        let info = try #require(try POSIX.status(path))
        var raw = stat()
        #expect(lstat(path, &raw) == 0)
        #expect(info.size == 5 && info.owner == geteuid() && info.permissions == raw.st_mode & 0o7777)
        #expect(info.device == UInt64(raw.st_dev) && info.inode == UInt64(raw.st_ino) && info.linkCount == 1)
        #expect(info.modificationMilliseconds == Int64(raw.st_mtim.tv_sec) * 1000 + Int64(raw.st_mtim.tv_nsec) / 1_000_000)
        #expect(info.changeNanoseconds == Int64(raw.st_ctim.tv_sec) * 1_000_000_000 + Int64(raw.st_ctim.tv_nsec))
        #expect(info.isRegularFile && !info.isSymbolicLink && !info.isDirectory)
        #expect(symlink(path, folder.path + "/link") == 0)
        #expect(try POSIX.status(folder.path + "/link", followingLinks: false)?.isSymbolicLink == true)
        let flags: [(OpenFlags, Int32)] = [
            (.readOnly, O_RDONLY), (.writeOnly, O_WRONLY), (.readWrite, O_RDWR), (.create, O_CREAT), (.exclusive, O_EXCL),
            (.append, O_APPEND),
        ]
        for (named, code) in flags { #expect(named.rawValue == code) }
    }

    /// The memfd that carries a worker's environment is rewound through the layer (its return
    /// code checked): the supervisor reads it from the start.
    @Test func aMemoryFileIsWrittenAndRewound() throws {
        let fd = try POSIX.memoryFile("cortex-test")
        defer { POSIX.close(fd) }
        try POSIX.writeAll(fd, Array("NAME=value".utf8))
        try POSIX.rewind(fd)
        #expect(try POSIX.currentOffset(fd) == 0)
        #expect(try FileDescriptor(rawValue: fd).readSome(maximum: 64) == Array("NAME=value".utf8))
        #expect(throws: Errno.badFileDescriptor) { try POSIX.rewind(-1) }
    }

    /// The memory journal's lock: a timed wait ends by its deadline, a broadcast wakes a waiter
    /// before its deadline.
    @Test func aConditionLockWaitsUntilItsDeadlineOrABroadcast() throws {
        let lock = ConditionLock()
        lock.lock()
        #expect(!lock.wait(until: POSIX.monotonicNanoseconds() + 1_000_000))
        lock.unlock()
        // Guarded by `lock`: the waiter is waiting; the wait ended by a wake-up, not the deadline.
        nonisolated(unsafe) var waiting = false
        nonisolated(unsafe) var woken = false
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            lock.lock()
            waiting = true
            woken = lock.wait(until: POSIX.monotonicNanoseconds() + 10_000_000_000)
            lock.unlock()
            done.signal()
        }
        let deadline = POSIX.monotonicNanoseconds() + 10_000_000_000
        while POSIX.monotonicNanoseconds() < deadline {
            // The waiter holds the lock until it waits: seeing `waiting` means it waits now.
            lock.lock()
            let ready = waiting
            if ready { lock.broadcast() }
            lock.unlock()
            if ready { break }
            POSIX.sleep(milliseconds: 1)
        }
        done.wait()
        #expect(woken, "the broadcast woke the waiter before its deadline")
    }
}
