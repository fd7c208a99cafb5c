import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// The wake path of the file backend (docs/decisions/039-wake.md): a waiter sleeps on the journal's
/// doorbell, a futex in a shared file mapping every append rings, with no inotify instance of its
/// own; a doorbell that cannot be trusted leaves it to the inotify fallback or its timeout.
@Suite("Wake through the doorbell")
struct WakeTests {
    /// The `futex` system call's number, as `/proc/PID/syscall` shows it while a process sleeps in it.
    static let futexSyscall: String? = {
        #if arch(x86_64)
        return "202"
        #elseif arch(arm64)
        return "98"
        #else
        return nil
        #endif
    }()

    /// Waits (up to 10 s) until `tool` sleeps in `futex` (where the kernel lets `/proc/PID/syscall`
    /// be read; else until it holds the doorbell open). False when it never did.
    static func waitUntilAsleepOnTheDoorbell(_ tool: RunningTool) -> Bool {
        for _ in 0..<1_000 {
            if !tool.isRunning { return false }
            if tool.openFiles().contains(where: { $0.hasSuffix("/journal/doorbell") }) {
                guard let futex = futexSyscall, let text = try? String(contentsOfFile: "/proc/\(tool.pid)/syscall", encoding: .utf8),
                    let number = text.split(separator: " ").first, number != "running"
                else { return true }
                if number == futex { return true }
            }
            usleep(2_000)
        }
        return false
    }

    /// The id of the task `cortex-task create` printed.
    static func createTask(_ directory: TemporaryDirectory, type: String = "wake") throws -> String {
        let created = try runTool(["cortex-task", "create", "--type", type, "--dir", directory.coordination], in: directory)
        try #require(created.exitCode == 0, "\(created)")
        return created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Many rounds of `claim --wait 60s` asleep on the doorbell, then `create`: each claim returns
    /// the new task within a generous 10 s (a missed ring would leave it asleep for its whole
    /// minute), and no waiter holds an inotify instance.
    @Test func aWaitingClaimWakesOnEveryAppendThroughTheDoorbell() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        for round in 0..<20 {
            let claim = try RunningTool(
                ["cortex-task", "claim", "--worker", "w\(round)", "--wait", "60s", "--dir", directory.coordination],
                scratch: directory.scratch)
            try #require(Self.waitUntilAsleepOnTheDoorbell(claim), "round \(round): the claim never slept on the doorbell")
            #expect(!claim.openFiles().contains { $0.contains("inotify") }, "round \(round): the waiter holds an inotify instance")
            let id = try Self.createTask(directory)
            let result = try #require(claim.wait(atMost: 10), "round \(round): the claim slept through the append of \(id)")
            #expect(result.exitCode == 0, "round \(round): \(result)")
            #expect(result.json?.string("id") == id, "round \(round): \(result)")
        }
    }

    /// 500 `claim --wait` processes at once under the default `fs.inotify.max_user_instances`
    /// (128): every one gets a task or times out with 75; none exits 74 for lack of a kernel resource.
    @Test func fiveHundredWaitersAllWaitAndNoneRunsOutOfKernelResources() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        let waiters = 500
        let tasks = 20
        var gate: [Int32] = [-1, -1]
        try #require(pipe(&gate) == 0)
        var claims: [RunningTool] = []
        for index in 0..<waiters {
            claims.append(
                try RunningTool(
                    ["cortex-task", "claim", "--worker", "w\(index)", "--wait", "40s", "--dir", directory.coordination],
                    scratch: directory.scratch, barrier: gate[0]))
        }
        close(gate[1])
        close(gate[0])
        for claim in claims { _ = claim.waitUntilWatching() }
        var created: Set<String> = []
        for _ in 0..<tasks { created.insert(try Self.createTask(directory)) }
        let results = claims.map { $0.wait() }
        let exits = Dictionary(grouping: results, by: { $0.exitCode ?? -1 }).mapValues(\.count)
        #expect(
            results.allSatisfy { $0.exitCode == 0 || $0.exitCode == 75 },
            "exit codes \(exits); first other: \(results.first { $0.exitCode != 0 && $0.exitCode != 75 }.map(\.description) ?? "")")
        #expect(exits[74] == nil, "\(exits[74] ?? 0) waiters exited 74")
        let claimed = results.filter { $0.exitCode == 0 }.compactMap { $0.json?.string("id") }
        #expect(Set(claimed) == created && claimed.count == tasks, "claimed \(claimed.count) of \(tasks); exits \(exits)")
    }

    /// In-process: the waiter sleeps on the doorbell, reports a ring since its arm even with no
    /// time left, and falls back to inotify when the doorbell is refused.
    @Test func theWaiterUsesTheDoorbellAndFallsBackToInotifyWhenItIsRefused() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        let journal = FileJournal(directory: directory.coordination + "/journal")
        let waiter = FileJournalWaiter(journal: journal)
        #expect(waiter.mechanism == .doorbell)
        #expect(!waiter.wait(timeoutMilliseconds: 0), "nothing appended yet")
        _ = try Self.createTask(directory)
        #expect(waiter.wait(timeoutMilliseconds: 0), "a ring since the arm is reported even with no time left")
        #expect(!waiter.wait(timeoutMilliseconds: 0), "woken once: armed again")
        let doorbell = directory.coordination + "/journal/doorbell"
        try FileManager.default.removeItem(atPath: doorbell)
        try #require(mkfifo(doorbell, 0o666) == 0)
        #expect(FileJournalWaiter(journal: journal).mechanism == .inotify)
    }

    /// What a hostile user may leave at `journal/doorbell` in a shared folder.
    enum HostileDoorbell: String, CaseIterable, CustomTestStringConvertible {
        case symbolicLink, fifo, empty, wrongSize, secondName, anotherUsers
        var testDescription: String { rawValue }
    }

    /// Puts `kind` in the doorbell's place; returns the file whose bytes must stay untouched, if any.
    static func plant(_ kind: HostileDoorbell, in directory: TemporaryDirectory) throws -> String? {
        let doorbell = directory.coordination + "/journal/doorbell"
        try FileManager.default.removeItem(atPath: doorbell)
        let outside = directory.path + "/victim"
        switch kind {
        case .symbolicLink:
            try Data(count: JournalDoorbell.size).write(to: URL(fileURLWithPath: outside))
            try FileManager.default.createSymbolicLink(atPath: doorbell, withDestinationPath: outside)
            return outside
        case .fifo:
            try #require(mkfifo(doorbell, 0o666) == 0)
            return nil
        case .empty:
            try Data().write(to: URL(fileURLWithPath: doorbell))
            return nil
        case .wrongSize:
            try Data(count: JournalDoorbell.size * 2).write(to: URL(fileURLWithPath: doorbell))
            return doorbell
        case .secondName:
            try Data(count: JournalDoorbell.size).write(to: URL(fileURLWithPath: outside))
            try #require(link(outside, doorbell) == 0)
            return outside
        case .anotherUsers:
            let user = try OtherUser.ensure()
            try Data(count: JournalDoorbell.size).write(to: URL(fileURLWithPath: doorbell))
            try #require(chown(doorbell, user.uid, user.gid) == 0)
            return doorbell
        }
    }

    /// A hostile doorbell never hangs or crashes a tool, is never written through, and a waiting
    /// claim still wakes on the next append (through the inotify fallback).
    @Test(arguments: HostileDoorbell.allCases)
    func aHostileDoorbellNeitherHangsNorCrashesAndWaitersStillWake(kind: HostileDoorbell) throws {
        if kind == .anotherUsers && !runningAsRoot {
            print("skipped \(kind): \(needsRootNote)")
            return
        }
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        let untouched = try Self.plant(kind, in: directory)
        let before = untouched.flatMap { FileManager.default.contents(atPath: $0) }
        let claim = try RunningTool(
            ["cortex-task", "claim", "--worker", "w", "--wait", "60s", "--dir", directory.coordination], scratch: directory.scratch)
        try #require(claim.waitUntilWatching(), "the claim never started waiting")
        let create = try RunningTool(
            ["cortex-task", "create", "--type", "wake", "--dir", directory.coordination], scratch: directory.scratch)
        let created = try #require(create.wait(atMost: 10), "create hung on a \(kind) doorbell")
        #expect(created.exitCode == 0, "\(created)")
        let result = try #require(claim.wait(atMost: 10), "the claim slept through the append with a \(kind) doorbell")
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.json?.string("id") == created.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(result)")
        if let untouched { #expect(FileManager.default.contents(atPath: untouched) == before, "\(untouched) was written through") }
    }

    /// The doorbell cut short, or replaced by another file, while a claim sleeps on it: no SIGBUS,
    /// and the claim notices within its check interval and still gets the next task.
    @Test(arguments: [false, true])
    func aDoorbellCutShortOrReplacedUnderASleepingWaiterCostsAtMostACheck(replaced: Bool) throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        let doorbell = directory.coordination + "/journal/doorbell"
        let claim = try RunningTool(
            ["cortex-task", "claim", "--worker", "w", "--wait", "60s", "--dir", directory.coordination], scratch: directory.scratch)
        try #require(Self.waitUntilAsleepOnTheDoorbell(claim), "the claim never slept on the doorbell")
        if replaced {
            let fresh = directory.coordination + "/journal/fresh"
            try Data(count: JournalDoorbell.size).write(to: URL(fileURLWithPath: fresh))
            try #require(rename(fresh, doorbell) == 0)
        } else {
            try #require(truncate(doorbell, 0) == 0)
        }
        let id = try Self.createTask(directory)
        let result = try #require(claim.wait(atMost: 10), "the claim slept through the append")
        #expect(result.exitCode == 0 && result.signal == nil, "\(result)")
        #expect(result.json?.string("id") == id, "\(result)")
    }

    /// A folder made before the doorbell existed: the first waiter or appender creates it, with the
    /// folder's sharing mode, and waiting works as in a new folder.
    @Test func aFolderWithoutADoorbellGetsOneAndWakesThroughIt() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 100)
        let doorbell = directory.coordination + "/journal/doorbell"
        try FileManager.default.removeItem(atPath: doorbell)
        let claim = try RunningTool(
            ["cortex-task", "claim", "--worker", "w", "--wait", "60s", "--dir", directory.coordination], scratch: directory.scratch)
        try #require(Self.waitUntilAsleepOnTheDoorbell(claim), "the claim never slept on the doorbell")
        let id = try Self.createTask(directory)
        let result = try #require(claim.wait(atMost: 10), "the claim slept through the append")
        #expect(result.exitCode == 0 && result.json?.string("id") == id, "\(result)")
        let attributes = try FileManager.default.attributesOfItem(atPath: doorbell)
        #expect((attributes[.size] as? Int) == JournalDoorbell.size)
        let segment = try FileManager.default.attributesOfItem(atPath: directory.coordination + "/journal/" + JournalSegment.fileName(1))
        #expect((attributes[.posixPermissions] as? Int) == (segment[.posixPermissions] as? Int), "the doorbell's mode is a segment's")
    }
}
