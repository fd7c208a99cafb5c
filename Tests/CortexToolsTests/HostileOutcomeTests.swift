import CortexCore
import CortexProcesses
import CortexStorage
import Foundation
import Testing

/// Issue 13, items 8, 11 and 12: once a record is in the journal the command reports its
/// outcome whatever happens to the derived files; torn fragments can be acknowledged; the reaper
/// clears what `kill -9` leaves; only `cortex init` creates a folder; a wall-clock step loses no
/// healthy worker (docs/decisions/021-outcome-is-the-truth.md).
@Suite(.serialized) struct HostileOutcomeTests {
    // MARK: - Helpers

    /// A tmpfs of `kilobytes` mounted at a fresh folder, unmounted (and removed) when this goes
    /// away. Nil, with the reason printed, when not root or the mount fails.
    final class SmallDisk {
        let directory: TemporaryDirectory
        let mountPoint: String

        private init(_ directory: TemporaryDirectory, _ mountPoint: String) {
            self.directory = directory
            self.mountPoint = mountPoint
        }

        static func mount(kilobytes: Int) throws -> SmallDisk? {
            guard getuid() == 0 else {
                print("skipped: mounting a small tmpfs needs root (running as uid \(getuid()))")
                return nil
            }
            let directory = try TemporaryDirectory()
            let mountPoint = directory.path + "/disk"
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: false)
            let mounted = try runTool(["/usr/bin/mount", "-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", mountPoint], in: directory)
            guard mounted.exitCode == 0 else {
                print("skipped: cannot mount a tmpfs: \(mounted)")
                return nil
            }
            return SmallDisk(directory, mountPoint)
        }

        deinit {
            _ = try? runTool(["/usr/bin/umount", mountPoint], in: directory)
        }

        /// Fills every free block with a filler file (writes until ENOSPC).
        func fill() {
            let fd = open(mountPoint + "/filler", O_WRONLY | O_CREAT | O_APPEND, 0o600)
            guard fd >= 0 else { return }
            defer { close(fd) }
            let block = [UInt8](repeating: 0, count: 4096)
            while block.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
            let byte: [UInt8] = [0]
            while byte.withUnsafeBytes({ write(fd, $0.baseAddress, 1) }) > 0 {}
        }
    }

    /// Every `.NAME.tmp-PID-RANDOM` file anywhere under `root`.
    func temporaryFiles(under root: String) -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: root)
        var found: [String] = []
        while let relative = enumerator?.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            if AtomicFile.isTemporaryName(name) { found.append(relative) }
        }
        return found
    }

    func fold(_ root: String) throws -> CortexState {
        var state = CortexState()
        _ = try FileJournal(directory: root + "/journal").readForward(from: .start) { (record, position) throws(CortexError) in
            _ = Reducer.reduce(&state, record, at: position)
        }
        return state
    }

    func setModificationTime(_ path: String, secondsAgo: TimeInterval) throws {
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -secondsAgo)], ofItemAtPath: path)
    }

    // MARK: - The outcome is the truth (item 8)

    /// A full disk after the append: the record landed but no view can be written. Every command
    /// that recorded its outcome reports it (exit 0, the id), with one stale-views line on stderr;
    /// exit 74 only for a command whose record is not in the journal.
    @Test func fullDiskAfterTheAppendReportsTheRealOutcome() throws {
        guard let disk = try SmallDisk.mount(kilobytes: 256) else { return }
        let root = disk.mountPoint + "/coordination"
        let scratch = disk.directory
        let initialised = try runTool(["cortex", "init", "--dir", root, "--total-tokens", "1000000"], in: scratch)
        try #require(initialised.exitCode == 0, "\(initialised)")
        var createdTasks: [String] = []
        for _ in 0..<4 {
            let created = try runTool(["cortex-task", "create", "--dir", root, "--type", "build"], in: scratch)
            try #require(created.exitCode == 0, "\(created)")
            createdTasks.append(created.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        // Leave room for a few records in the live segment's last page (tmpfs allocates whole
        // pages): the appends then fit while a new view's temp file cannot get a page.
        let segment = root + "/journal/000000000001.jsonl"
        while 4096 - (try fileSize(segment)) % 4096 < 2600 {
            _ = try runTool(["cortex-budget", "set", "--dir", root, "--total", "1000000"], in: scratch)
        }
        disk.fill()

        var grants: [String] = []
        var claims: [(worker: String, task: String)] = []
        var staleWarnings = 0
        var refusedForIO = 0
        for round in 0..<12 {
            let allocated = try runTool(["cortex-budget", "allocate", "--dir", root, "--tokens", "10"], in: scratch)
            let claimer = "w-full-\(round)"
            let claimed = try runTool(["cortex-task", "claim", "--dir", root, "--worker", claimer], in: scratch)
            let created = try runTool(["cortex-task", "create", "--dir", root, "--type", "build"], in: scratch)
            for result in [allocated, claimed, created] {
                #expect(result.exitCode == 0 || result.exitCode == 74 || result.exitCode == 1, "\(result)")
                if result.exitCode == 0, result.stderr.contains("views are stale") { staleWarnings += 1 }
                if result.exitCode == 0 {
                    #expect(result.stderrLines.count <= 1, "one line on stderr: \(result)")
                }
                if result.exitCode == 74 { refusedForIO += 1 }
            }
            if allocated.exitCode == 0 { grants.append(allocated.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if claimed.exitCode == 0, let task = claimed.json?.string("id") { claims.append((claimer, task)) }
            if created.exitCode == 0 { createdTasks.append(created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        #expect(staleWarnings > 0, "the disk filled after the appends: some outcomes came with stale views")
        #expect(refusedForIO > 0, "the disk filled up completely: later appends were refused")

        let state = try fold(root)
        // Every grant printed is a live allocation, and there is no grant nobody was told about.
        #expect(Set(grants) == Set(state.budget.allocations.keys), "granted \(grants), journal \(state.budget.allocations.keys.sorted())")
        // Every claim printed is the task the journal gave that worker; no claim nobody was told about.
        let running = state.tasks.running.map { ($0.worker ?? "", $0.id) }
        #expect(running.count == claims.count, "running \(running), told \(claims)")
        for claim in claims {
            #expect(running.contains { $0 == (claim.worker, claim.task) }, "\(claim) is not running in the journal")
        }
        // As many tasks as successful creates.
        #expect(state.tasks.created == Int64(createdTasks.count), "journal \(state.tasks.created), told \(createdTasks.count)")
    }

    // MARK: - Acknowledged fragments (item 8)

    @Test func verifyAcknowledgeTurnsTornFragmentsGreenAndStaysRedForNewDamage() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        let root = directory.coordination
        let segment = root + "/journal/000000000001.jsonl"
        func allocate() throws {
            let result = try runTool(["cortex-budget", "allocate", "--dir", root, "--tokens", "5"], in: directory)
            try #require(result.exitCode == 0, "\(result)")
        }
        // A writer killed (or cut short by a full disk) in the middle of its write: the head of a
        // record, then the next writer's whole record on the same line.
        try appendBytes(Array(#"{"cortex":1,"id":"rdeadbeef00000001","at_ms":17"#.utf8), to: segment)
        try allocate()
        let damaged = try runTool(["cortex", "verify", "--dir", root, "--json"], in: directory)
        #expect(damaged.exitCode == 1, "\(damaged)")

        let acknowledged = try runTool(["cortex", "verify", "--dir", root, "--acknowledge"], in: directory)
        #expect(acknowledged.exitCode == 0, "\(acknowledged)")
        let green = try runTool(["cortex", "verify", "--dir", root, "--json"], in: directory)
        #expect(green.exitCode == 0, "\(green)")
        #expect(green.json?.int("acknowledged") == 1, "\(green)")
        let status = try runTool(["cortex", "status", "--dir", root, "--json"], in: directory)
        #expect(status.json?["journal"]?.int("damaged_lines_since_snapshot") == 0, "\(status)")

        // A fragment at the live tail is acknowledged too (the acknowledgement record follows it).
        try appendBytes(Array(#"{"cortex":1,"id":"rdeadbeef0000000"#.utf8), to: segment)
        let tail = try runTool(["cortex", "verify", "--dir", root, "--acknowledge", "--json"], in: directory)
        #expect(tail.exitCode == 0 && tail.json?.int("acknowledged") == 2, "\(tail)")

        // New damage is reported again, at its own position only.
        let before = try fileSize(segment)
        try appendBytes(Array(#"{"cortex":1,"id":"rdeadbeef00000002","#.utf8), to: segment)
        try allocate()
        let red = try runTool(["cortex", "verify", "--dir", root, "--json"], in: directory)
        #expect(red.exitCode == 1, "\(red)")
        let positions = red.json?["damaged"]?.arrayValue?.compactMap { $0.int("offset") }
        #expect(positions == [before], "\(red)")

        // A line that fails its checksum is not a fragment: --acknowledge leaves it reported.
        let again = try runTool(["cortex", "verify", "--dir", root, "--acknowledge"], in: directory)
        #expect(again.exitCode == 0, "\(again)")
        let corrupt = try fileSize(segment)
        try appendBytes(
            Array(#"{"cortex":1,"id":"r0000000000000bad","at_ms":1,"kind":"budget.set","data":{"total":1},"crc":"00000000"}"#.utf8) + [
                0x0A
            ],
            to: segment)
        let stillRed = try runTool(["cortex", "verify", "--dir", root, "--acknowledge", "--json"], in: directory)
        #expect(stillRed.exitCode == 1, "\(stillRed)")
        #expect(stillRed.json?["damaged"]?.arrayValue?.compactMap { $0.int("offset") } == [corrupt], "\(stillRed)")
    }

    // MARK: - Clean after kill -9 (item 11)

    @Test(.timeLimit(.minutes(5)))
    func theReaperRemovesTempFilesLeftByKilledWriters() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        let root = directory.coordination
        try updateConfig(directory, ["snapshot_every_records": .int(8)])
        for _ in 0..<10 {
            let created = try runTool(["cortex-task", "create", "--dir", root, "--type", "t"], in: directory)
            try #require(created.exitCode == 0, "\(created)")
        }
        // Writers killed at random moments; some die between creating a temp file and renaming
        // it, some `complete`s between their record and the result link.
        var generator = SystemRandomNumberGenerator()
        for round in 0..<60 {
            var command: [String]
            switch round % 4 {
            case 0: command = ["cortex-budget", "allocate", "--dir", root, "--tokens", "3"]
            case 1: command = ["cortex-task", "create", "--dir", root, "--type", "t"]
            case 2:
                let claimed = try runTool(["cortex-task", "claim", "--dir", root, "--worker", "w-\(round)"], in: directory)
                guard let task = claimed.json?.string("id"), let claim = claimed.json?.int("claim") else { continue }
                command = [
                    "cortex-task", "complete", task, "--dir", root, "--claim", "\(claim)", "--result", #"{"round":\#(round)}"#,
                ]
            default: command = ["cortex-reap", "--dir", root]
            }
            let victim = try RunningTool(command, scratch: directory.scratch)
            usleep(UInt32.random(in: 0...6000, using: &generator))
            victim.kill(SIGKILL)
            _ = victim.wait()
        }
        // Debris planted where a killed writer would leave it, in every kind of folder, one of
        // them a second old (the reaper's grace is overridden below).
        let planted = [
            root + "/.token-budget.json.tmp-4194301-0badcafe", root + "/state/.snapshot.json.tmp-4194302-deadbeef",
            root + "/results/.task-x.json.tmp-4194303-00c0ffee", root + "/journal/.000000000001.jsonl.tmp-4194304-12345678",
            root + "/audit/.verified.tmp-4194305-abcdef01",
        ]
        for path in planted { try Data("half".utf8).write(to: URL(fileURLWithPath: path)) }
        try setModificationTime(planted[0], secondsAgo: 3600)

        // With the default grace (10 minutes) only the hour-old one goes.
        let gentle = try runTool(["cortex-reap", "--dir", root, "--json"], in: directory)
        #expect(gentle.exitCode == 0, "\(gentle)")
        #expect(!FileManager.default.fileExists(atPath: planted[0]))
        for path in planted.dropFirst() { #expect(FileManager.default.fileExists(atPath: path), "\(path) is within the grace") }

        let reaped = try runTool(["cortex-reap", "--dir", root, "--json", "--temp-grace", "0s"], in: directory)
        #expect(reaped.exitCode == 0, "\(reaped)")
        #expect(temporaryFiles(under: root).isEmpty, "left: \(temporaryFiles(under: root))")
        let verify = try runTool(["cortex", "verify", "--dir", root, "--json"], in: directory)
        #expect(verify.json?["problems"]?.arrayValue?.isEmpty == true, "\(verify)")
        // Every done task's result is linked, whenever its `complete` died.
        let store = try CoordinationStore.open(root: root, createIfMissing: false)
        for task in try store.finishedTasks() where task.status == .done {
            guard task.result != nil else { continue }
            #expect(FileManager.default.fileExists(atPath: root + "/results/\(task.id).json"), "\(task.id) done without its result link")
        }
    }

    /// `complete` killed after its record landed: the task is done, its attempt's result file is
    /// there, `results/TASK.json` was never linked. The reaper links it.
    @Test func aDoneTasksResultIsLinkedByTheReaperWhenItsCompleterDiedBeforeTheLink() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        let root = directory.coordination
        let created = try runTool(["cortex-task", "create", "--dir", root, "--type", "t"], in: directory)
        try #require(created.exitCode == 0, "\(created)")
        let claimed = try runTool(["cortex-task", "claim", "--dir", root, "--worker", "w-1"], in: directory)
        let task = try #require(claimed.json?.string("id"), "\(claimed)")
        let claim = try #require(claimed.json?.int("claim"), "\(claimed)")
        // What the killed `complete` managed: the attempt's file, then the record; no link.
        let attempt = "results/\(task).attempt-\(claim).json"
        try Data(#"{"ok":true}"#.utf8).write(to: URL(fileURLWithPath: root + "/" + attempt))
        let store = try CoordinationStore.open(root: root, createIfMissing: false)
        let submission = try store.submit(.taskComplete(task: task, claim: claim, result: attempt, tokensUsed: nil))
        try #require(submission.outcome == .completed(task: task), "\(submission.outcome)")
        let canonical = root + "/results/\(task).json"
        try #require(!FileManager.default.fileExists(atPath: canonical))

        let reaped = try runTool(["cortex-reap", "--dir", root, "--json"], in: directory)
        #expect(reaped.exitCode == 0, "\(reaped)")
        #expect(reaped.json?["linked_results"]?.arrayValue?.compactMap(\.stringValue) == [task], "\(reaped)")
        #expect((try? String(contentsOfFile: canonical, encoding: .utf8)) == #"{"ok":true}"#)
        // Nothing more on the next run.
        let again = try runTool(["cortex-reap", "--dir", root, "--json"], in: directory)
        #expect(again.json?["linked_results"]?.arrayValue?.isEmpty == true, "\(again)")
    }

    // MARK: - Item 12

    @Test func everyCommandExits66WithoutAFolderAndOnlyInitCreatesOne() throws {
        let directory = try TemporaryDirectory()
        // No --dir: the default ./coordination, relative to the scratch folder the tools run in.
        let commands: [[String]] = [
            ["cortex-task", "claim", "--worker", "w-1"], ["cortex-task", "create", "--type", "t"],
            ["cortex-budget", "allocate", "--tokens", "5"], ["cortex-budget", "set", "--total", "5"],
            ["cortex-spawn", "--", "true"],
        ]
        for command in commands {
            let result = try runTool(command, in: directory)
            #expect(result.exitCode == 66, "\(result)")
            #expect(result.stderr.contains("cortex init"), "\(result)")
            #expect(!FileManager.default.fileExists(atPath: directory.scratch + "/coordination"), "\(command) created a folder")
        }
        let initialised = try runTool(["cortex", "init"], in: directory)
        #expect(initialised.exitCode == 0, "\(initialised)")
        #expect(FileManager.default.fileExists(atPath: directory.scratch + "/coordination/config.json"))
    }

    @Test func withoutConfigJSONWritingCommandsRefuseAndRecreateNothing() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        try updateConfig(directory, ["max_workers": .int(3)])
        let root = directory.coordination
        try FileManager.default.removeItem(atPath: root + "/config.json")
        for command in [
            ["cortex-budget", "allocate", "--dir", root, "--tokens", "5"], ["cortex-task", "create", "--dir", root, "--type", "t"],
            ["cortex-task", "claim", "--dir", root, "--worker", "w"],
        ] {
            let result = try runTool(command, in: directory)
            #expect(result.exitCode == 78, "\(result)")
            #expect(result.stderr.contains("cortex init"), "\(result)")
            #expect(!FileManager.default.fileExists(atPath: root + "/config.json"), "\(command) wrote default settings")
        }
        #expect(try fold(root).budget.allocations.isEmpty, "nothing was recorded")
    }

    /// A forward step of the wall clock larger than the heartbeat timeout makes every heartbeat
    /// stamped before it look old. Simulated without touching the system clock: the heartbeat is
    /// set back by the step (its age on the stepped clock) and the wall clock's offset from boot
    /// time that the last reaper run recorded is moved by the same amount (what the step does).
    @Test func aWallClockStepLosesNoHealthyWorker() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        let root = directory.coordination
        _ = try runTool(["cortex-task", "create", "--dir", root, "--type", "t"], in: directory)
        let claimed = try runTool(["cortex-task", "claim", "--dir", root, "--worker", "w-1"], in: directory)
        let task = try #require(claimed.json?.string("id"), "\(claimed)")
        let first = try runTool(["cortex-reap", "--dir", root, "--json", "--heartbeat-timeout", "1m"], in: directory)
        try #require(first.exitCode == 0 && first.json?["lost"]?.arrayValue?.isEmpty == true, "\(first)")

        let step: Int64 = 2 * 3600 * 1000
        let reaperFile = root + "/state/reaper.json"
        guard case .object(var members) = try JSONValue.parse(String(contentsOfFile: reaperFile, encoding: .utf8)) else {
            Issue.record("state/reaper.json is not a JSON object")
            return
        }
        // The offset the last run saw, before the step (this process's reading if it saw none).
        let epoch = members.first { $0.key == "boot_epoch_ms" }?.value.intValue ?? FolderClock.bootEpochMilliseconds()
        members.removeAll { $0.key == "boot_epoch_ms" }
        members.append(JSONMember("boot_epoch_ms", .int(epoch - step)))
        try Data(JSONValue.object(members).jsonText.utf8).write(to: URL(fileURLWithPath: reaperFile))
        try setModificationTime(root + "/workers/w-1/heartbeat", secondsAgo: TimeInterval(step / 1000))

        let stepped = try runTool(["cortex-reap", "--dir", root, "--json", "--heartbeat-timeout", "1m"], in: directory)
        #expect(stepped.exitCode == 0, "\(stepped)")
        #expect(stepped.json?["lost"]?.arrayValue?.isEmpty == true, "a healthy worker was lost to a clock step: \(stepped)")
        #expect((stepped.json?.int("clock_step_ms") ?? 0) >= step - 5_000, "\(stepped)")
        #expect(try fold(root).tasks.running.map(\.id) == [task])

        // A worker that really stopped beating is still found: one timeout after the step was seen.
        usleep(1_500_000)
        let later = try runTool(["cortex-reap", "--dir", root, "--json", "--heartbeat-timeout", "1s"], in: directory)
        #expect(later.json?["lost"]?.arrayValue?.compactMap(\.stringValue) == ["w-1"], "\(later)")
    }
}
