import CortexCore
import CortexProcesses
import CortexStorage
import Foundation
import Testing

/// Issue 13, "no process runs with rights its requester did not have" and "signals only to what
/// Cortex started": a second, unprivileged user owns a coordination folder, root runs the
/// reaper (as the shipped cron example did) and other root tools on it. Runs as root only
/// (creates the user); skipped with the reason otherwise.
@Suite(.serialized) struct HostileProcessTests {
    /// A coordination folder owned by `user` (initialised by it) under an opened-up temp folder,
    /// and a folder of its own for the workers' output. Load never blocks a spawn here.
    struct OwnedFolder {
        let directory: TemporaryDirectory
        let user: OtherUser
        /// The coordination folder, owned by the user.
        var coordination: String { directory.path + "/home/coordination" }
        /// A folder the user's workers write into.
        var output: String { directory.path + "/home/output" }

        /// - Parameter sharedWithRoot: root makes the folder, shared with the user's group
        ///   (`cortex init --group`), so root acts as itself in it (in a folder the user owns, root
        ///   acts as her: docs/decisions/023-shared-folders.md).
        init(user: OtherUser, maxWorkers: Int = 4, sharedWithRoot: Bool = false) throws {
            self.user = user
            directory = try TemporaryDirectory()
            try OtherUser.openUp(directory)
            if sharedWithRoot {
                // Root's own parent folder: a folder root makes where the user owns the parent
                // would be made as her.
                try FileManager.default.createDirectory(atPath: directory.path + "/home", withIntermediateDirectories: false)
                guard chmod(directory.path + "/home", 0o755) == 0 else { throw SupportError("chmod: errno \(errno)") }
            } else {
                try user.makeFolder(directory.path + "/home")
            }
            try user.makeFolder(directory.path + "/home/output")
            let initialise = ["cortex", "init", "--dir", coordination, "--total-tokens", "1000000"]
            let made =
                sharedWithRoot
                ? try runTool(initialise + ["--group", String(user.gid)], in: directory)
                : try user.runTool(initialise, in: directory)
            try #require(made.exitCode == 0, "\(made)")
            let config = coordination + "/config.json"
            let text = try String(contentsOfFile: config, encoding: .utf8)
            guard case .object(var members) = try JSONValue.parse(text) else { throw SupportError("config.json") }
            members.removeAll { $0.key == "max_workers" || $0.key == "max_load_per_core" || $0.key == "max_cpu_pressure" }
            members += [
                JSONMember("max_workers", .int(Int64(maxWorkers))), JSONMember("max_load_per_core", .int(1000)),
                JSONMember("max_cpu_pressure", .int(100)),
            ]
            // Written in place: the file stays the user's.
            try Data(JSONValue.object(members).prettySerialized()).write(to: URL(fileURLWithPath: config))
        }

        func pool() throws -> JSONValue {
            try JSONValue.parse(String(contentsOfFile: coordination + "/worker-pool.json", encoding: .utf8))
        }

        func running() throws -> [JSONValue] {
            (try pool()["workers"]?.arrayValue ?? []).filter { $0.string("state") == "running" && $0.int("pid") != nil }
        }

        func lines(_ name: String) -> [String] {
            let text = (try? String(contentsOfFile: output + "/" + name, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").map(String.init)
        }

        /// Kills every process group of this folder's workers and supervisors (test clean-up).
        func killEverything() {
            for process in ProcStat.all() {
                let words = ["cmdline", "environ"].flatMap { file in
                    ((try? POSIX.readFile("/proc/\(process.pid)/\(file)")) ?? []).split(separator: 0).map {
                        String(decoding: $0, as: UTF8.self)
                    }
                }
                if words.contains(coordination) || words.contains("CORTEX_DIR=" + coordination) {
                    kill(-process.pid, SIGKILL)
                    kill(process.pid, SIGKILL)
                }
            }
        }

        /// Every record of the journal, in order, as the test process reads it.
        func fold() throws -> [Record] {
            var records: [Record] = []
            _ = try FileJournal(directory: coordination + "/journal").readForward(from: .start) { (record, _) throws(CortexError) in
                records.append(record)
            }
            return records
        }

        /// The state folded from the whole journal, as a tool would fold it.
        func foldedState() throws -> CortexState {
            var state = CortexState()
            _ = try FileJournal(directory: coordination + "/journal").readForward(from: .start) { (record, position) throws(CortexError) in
                _ = Reducer.reduce(&state, record, at: position)
            }
            return state
        }
    }

    /// Waits (at most `seconds`) until `condition` holds.
    func eventually(_ seconds: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }

    /// The environment of a master: the tools' usual one plus a secret of its own.
    func environment(secret name: String, _ value: String) -> [String: String] {
        var environment = toolEnvironment
        environment[name] = value
        return environment
    }

    /// Repro 1: the user's pool member, its supervisor and worker killed with kill -9, is
    /// replaced by root's reaper **as the user**, with the user's environment: the log gets only
    /// the user's uid and secret, never 0 or the reaper's environment. Nothing of the folder
    /// runs as root afterwards.
    @Test(.enabled(if: runningAsRoot, needsRootNote), arguments: [false, true])
    func rootsReaperReplacesAUsersPoolMemberAsThatUserWithItsEnvironment(sharedWithRoot: Bool) throws {
        let user = try OtherUser.ensure()
        let folder = try OwnedFolder(user: user, sharedWithRoot: sharedWithRoot)
        defer { folder.killEverything() }
        let log = folder.output + "/log"
        let script = "echo \"$(id -u) ${SECRET_OF_USER:-none} ${API_KEY_OF_ROOT:-none}\" >>\(log); exec sleep 300"
        let spawned = try user.runTool(
            ["cortex-spawn", "--dir", folder.coordination, "--pool", "1", "--", "sh", "-c", script], in: folder.directory,
            environment: environment(secret: "SECRET_OF_USER", "s3cret"))
        try #require(spawned.exitCode == 0, "\(spawned)")
        try #require(try eventually { try folder.running().count == 1 && folder.lines("log").count == 1 }, "\(folder.lines("log"))")
        let first = try #require(try folder.running().first)
        // She kills her own supervisor and worker.
        kill(Int32(try #require(first.int("supervisor_pid"))), SIGKILL)
        kill(Int32(try #require(first.int("pid"))), SIGKILL)

        var rootEnvironment = environment(secret: "API_KEY_OF_ROOT", "root-key")
        rootEnvironment["SECRET_OF_USER"] = nil
        let reaped = try RunningTool(
            ["cortex-reap", "--dir", folder.coordination, "--json", "--grace", "1s"], scratch: folder.directory.scratch,
            environment: rootEnvironment
        ).wait()
        #expect(reaped.exitCode == 0, "\(reaped)")
        let replaced = try eventually {
            let current = try folder.running().first?.string("id")
            return folder.lines("log").count >= 2 && current != nil && current != first.string("id")
        }
        #expect(replaced, "a replacement ran: \(folder.lines("log")) \(reaped)")
        let expected = "\(user.uid) s3cret none"
        #expect(folder.lines("log").allSatisfy { $0 == expected }, "every run as the user, with her environment: \(folder.lines("log"))")
        // Nothing of the folder runs as root: not the replacement, not its supervisor.
        let replacement = try #require(try folder.running().first)
        for key in ["pid", "supervisor_pid"] {
            let pid = Int32(try #require(replacement.int(key)))
            #expect(OtherUser.uid(ofProcess: pid) == user.uid, "\(key) \(pid) runs as the user")
            let groups = OtherUser.groups(ofProcess: pid)
            #expect(groups.gids == [user.gid] && !groups.supplementary.contains(0), "\(key) \(pid) has her groups only: \(groups)")
        }
    }

    /// Repro 7 across users: the user's spawn, queued behind root's worker, is started by root's
    /// supervisor when root's worker exits. It runs as the user with the environment captured
    /// when she asked, not root's (`API_KEY_OF_ROOT`).
    @Test(.enabled(if: runningAsRoot, needsRootNote)) func aQueuedSpawnStartedByAnotherMastersSupervisorRunsAsItsRequester() throws {
        let user = try OtherUser.ensure()
        let folder = try OwnedFolder(user: user, maxWorkers: 1, sharedWithRoot: true)
        defer { folder.killEverything() }
        let go = folder.output + "/go"
        // Root's master takes the only place, with a worker that ends when told.
        let rootWorker = try RunningTool(
            [
                "cortex-spawn", "--dir", folder.coordination, "--", "sh", "-c",
                "while [ ! -e \(go) ]; do sleep 0.05; done",
            ], scratch: folder.directory.scratch, environment: environment(secret: "API_KEY_OF_ROOT", "root-key")
        ).wait()
        try #require(rootWorker.exitCode == 0, "\(rootWorker)")
        let log = folder.output + "/queued"
        let queued = try user.runTool(
            [
                "cortex-spawn", "--dir", folder.coordination, "--", "sh", "-c",
                "echo \"$(id -u) ${SECRET_OF_USER:-none} ${API_KEY_OF_ROOT:-none}\" >>\(log)",
            ], in: folder.directory, environment: environment(secret: "SECRET_OF_USER", "s3cret"))
        try #require(queued.exitCode == 75, "queued behind root's worker: \(queued)")
        #expect(FileManager.default.createFile(atPath: go, contents: nil))
        #expect(eventually { folder.lines("queued").count == 1 }, "the queued spawn ran")
        #expect(folder.lines("queued") == ["\(user.uid) s3cret none"], "as the user, with her environment")
    }

    /// A launcher of another non-root user never starts a worker it did not ask for: the user's
    /// supervisor, promoting root's queued spawn when her worker exits, leaves it owed to root;
    /// `cortex status` says so, and root's reaper then starts it (as root, its requester).
    @Test(.enabled(if: runningAsRoot, needsRootNote)) func aSpawnPromotedByAnotherUsersSupervisorIsOwedToItsRequester() throws {
        let user = try OtherUser.ensure()
        let folder = try OwnedFolder(user: user, maxWorkers: 1, sharedWithRoot: true)
        defer { folder.killEverything() }
        let go = folder.output + "/go"
        let hers = try user.runTool(
            ["cortex-spawn", "--dir", folder.coordination, "--", "sh", "-c", "while [ ! -e \(go) ]; do sleep 0.05; done"],
            in: folder.directory)
        try #require(hers.exitCode == 0, "\(hers)")
        let log = folder.output + "/root-log"
        let queued = try runTool(
            ["cortex-spawn", "--dir", folder.coordination, "--", "sh", "-c", "id -u >>\(log)"], in: folder.directory)
        try #require(queued.exitCode == 75, "queued behind her worker: \(queued)")
        let id = try #require(queued.stdoutLines.first)
        #expect(FileManager.default.createFile(atPath: go, contents: nil))

        var status: ToolResult?
        let owed = try eventually {
            status = try runTool(["cortex", "status", "--dir", folder.coordination, "--json"], in: folder.directory)
            let attention = status?.json?["attention"]?.arrayValue?.compactMap(\.stringValue) ?? []
            return attention.contains { $0.hasPrefix("\(id) owed to user root (uid 0)") }
        }
        #expect(owed, "status says whom it is owed to: \(String(describing: status))")
        #expect(folder.lines("root-log").isEmpty, "her supervisor did not start root's worker")

        let reaped = try runTool(["cortex-reap", "--dir", folder.coordination, "--json"], in: folder.directory)
        #expect(reaped.json?["launched"]?.arrayValue?.contains(.string(id)) == true, "\(reaped)")
        #expect(eventually { folder.lines("root-log") == ["0"] }, "root's reaper started root's worker: \(folder.lines("root-log"))")
    }

    /// Repro 2, first half: a worker that names a root process as its own start
    /// (`exec cortex-spawn _supervise $CORTEX_WORKER_ID --started VICTIM:TICKS`, its supervisor
    /// stopped so the record would stay) is refused and nothing is recorded; root's reaper, run
    /// after the supervisor is killed, leaves the root process alone.
    @Test(.enabled(if: runningAsRoot, needsRootNote), arguments: [false, true])
    func aWorkerCannotRecordARootProcessAsItsStart(sharedWithRoot: Bool) throws {
        let user = try OtherUser.ensure()
        let folder = try OwnedFolder(user: user, sharedWithRoot: sharedWithRoot)
        defer { folder.killEverything() }
        let victim = try RunningTool(["/bin/sleep", "300"], scratch: folder.directory.scratch)
        defer { victim.kill(SIGKILL) }
        let victimIdentity = try #require(ProcessIdentity.of(pid: victim.pid))
        let go = folder.output + "/go"
        let errors = folder.output + "/started.err"
        let script = """
            while [ ! -e \(go) ]; do sleep 0.05; done
            kill -STOP $PPID
            exec "\(toolPath("cortex-spawn"))" _supervise "$CORTEX_WORKER_ID" --dir "$CORTEX_DIR" --started \(victim.pid):\(victimIdentity.startTicks) 2>\(errors)
            """
        let spawned = try user.runTool(
            ["cortex-spawn", "--dir", folder.coordination, "--pool", "1", "--", "sh", "-c", script], in: folder.directory)
        try #require(spawned.exitCode == 0, "\(spawned)")
        try #require(try eventually { try folder.running().count == 1 })
        let worker = try #require(try folder.running().first)
        let supervisor = Int32(try #require(worker.int("supervisor_pid")))
        #expect(FileManager.default.createFile(atPath: go, contents: nil))
        // The hostile `--started` has run once its stderr file is complete and the worker is gone.
        let workerPID = Int32(try #require(worker.int("pid")))
        #expect(eventually { ProcStat.read(workerPID).map { $0.state == "Z" } ?? true }, "the hostile worker finished")
        let refusal = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        #expect(refusal.contains("not a child of supervisor"), "refused: \(refusal)")
        let named = try folder.fold().filter { $0.kind == "worker.started" && $0.data["process"]?.int("pid") == Int64(victim.pid) }
        #expect(named.isEmpty, "no record names the root process")

        kill(supervisor, SIGKILL)
        #expect(eventually { ProcessIdentity.of(pid: supervisor) == nil })
        let reaped = try runTool(["cortex-reap", "--dir", folder.coordination, "--json", "--grace", "1s"], in: folder.directory)
        #expect(reaped.exitCode == 0, "\(reaped)")
        #expect(victim.isRunning, "root's process is alive: \(reaped)")
        #expect(reaped.json?["signalled"]?.arrayValue?.contains(.string("\(victim.pid)")) != true, "\(reaped)")
    }

    /// Repro 2, second half: even a well-formed record (valid CRC) appended raw into the
    /// journal, naming a root process as the user's worker, never makes root's reaper signal it.
    @Test(.enabled(if: runningAsRoot, needsRootNote), arguments: [false, true])
    func aForgedStartRecordNeverMakesRootsReaperSignalARootProcess(sharedWithRoot: Bool) throws {
        let user = try OtherUser.ensure()
        let folder = try OwnedFolder(user: user, sharedWithRoot: sharedWithRoot)
        defer { folder.killEverything() }
        let victim = try RunningTool(["/bin/sleep", "300"], scratch: folder.directory.scratch)
        defer { victim.kill(SIGKILL) }
        let victimIdentity = try #require(ProcessIdentity.of(pid: victim.pid))
        let spawned = try user.runTool(
            ["cortex-spawn", "--dir", folder.coordination, "--pool", "1", "--", "sleep", "300"], in: folder.directory)
        try #require(spawned.exitCode == 0, "\(spawned)")
        try #require(try eventually { try folder.running().count == 1 })
        let worker = try #require(try folder.running().first)
        let id = try #require(worker.string("id"))
        let shown = try runTool(["cortex", "worker", "show", id, "--dir", folder.coordination, "--json"], in: folder.directory)
        let supervisorJSON = try #require(shown.json?["supervisor"], "\(shown)")
        let supervisor = try #require(ProcessIdentity(json: supervisorJSON))

        // The hostile line: as the user would append it, with a valid CRC.
        let forged = WorkerEvent.started(worker: id, supervisor: supervisor, process: victimIdentity)
        let record = Record(id: Record.newID(), timeMilliseconds: POSIX.wallClockMilliseconds(), kind: forged.kind, data: forged.data)
        let segments = try FileManager.default.contentsOfDirectory(atPath: folder.coordination + "/journal")
            .filter { JournalSegment.number(fromFileName: $0) != nil }.sorted()
        try appendBytes(try RecordCodec.encode(record), to: folder.coordination + "/journal/" + (try #require(segments.last)))
        let state = try folder.foldedState()
        #expect(state.workers.live[id]?.process == victimIdentity, "the fold believes the forged record")

        kill(supervisor.pid, SIGKILL)
        kill(-Int32(try #require(worker.int("pid"))), SIGKILL)
        #expect(eventually { ProcessIdentity.of(pid: supervisor.pid) == nil })
        let reaped = try runTool(["cortex-reap", "--dir", folder.coordination, "--json", "--grace", "1s"], in: folder.directory)
        #expect(reaped.exitCode == 0, "\(reaped)")
        #expect(reaped.json?["lost"]?.arrayValue?.contains(.string(id)) == true, "\(reaped)")
        #expect(victim.isRunning, "root's process is alive: \(reaped)")
        #expect(reaped.json?["signalled"]?.arrayValue?.contains(.string("\(victim.pid)")) != true, "\(reaped)")
    }

    /// `cortex worker stop`, run by root on a worker whose supervisor a forged record names as
    /// a root process, signals nothing: the worker's requester is the user, not root.
    @Test(.enabled(if: runningAsRoot, needsRootNote), arguments: [false, true])
    func rootsWorkerStopNeverSignalsAProcessOfAnotherUserThanTheRequester(sharedWithRoot: Bool) throws {
        let user = try OtherUser.ensure()
        let folder = try OwnedFolder(user: user, sharedWithRoot: sharedWithRoot)
        defer { folder.killEverything() }
        let victim = try RunningTool(["/bin/sleep", "300"], scratch: folder.directory.scratch)
        defer { victim.kill(SIGKILL) }
        let victimIdentity = try #require(ProcessIdentity.of(pid: victim.pid))
        // The user's own request file, and forged records: a spawn naming it, a claim by the root process.
        let name = WorkerRequest.newName()
        let made = try user.runTool(
            [
                "/bin/sh", "-c",
                "mkdir -p \(folder.coordination)/requests && umask 077 && echo '{\"command\":[\"true\"],\"environment\":{}}' > \(folder.coordination)/requests/\(name)",
            ], in: folder.directory)
        try #require(made.exitCode == 0, "\(made)")
        var spec = WorkerSpec(command: ["true"])
        spec.request = name
        let evidence = MachineEvidence(cores: 4, loadMillis: 0, memoryAvailableBytes: 1 << 30, maxWorkers: 8)
        let segments = try FileManager.default.contentsOfDirectory(atPath: folder.coordination + "/journal")
            .filter { JournalSegment.number(fromFileName: $0) != nil }.sorted()
        let segment = folder.coordination + "/journal/" + (try #require(segments.last))
        func forge(_ event: WorkerEvent) throws {
            let record = Record(id: Record.newID(), timeMilliseconds: POSIX.wallClockMilliseconds(), kind: event.kind, data: event.data)
            try appendBytes(try RecordCodec.encode(record), to: segment)
        }
        try forge(.spawn(spec, queue: true, evidence: evidence))
        let state = try folder.foldedState()
        let id = try #require(state.workers.live.values.first { $0.spec.request == name }?.id)
        try forge(.supervise(worker: id, supervisor: victimIdentity))

        let stopped = try runTool(["cortex", "worker", "stop", id, "--dir", folder.coordination, "--json"], in: folder.directory)
        #expect(stopped.exitCode == 0, "\(stopped)")
        #expect(stopped.json?["signalled"] == .bool(false), "\(stopped)")
        #expect(victim.isRunning, "root's process is alive")
    }

    /// A request file starts one worker: a record replaying the request of a live worker is
    /// rejected by the fold, so no one can start the requester's command a second time with it.
    @Test func aReplayedRequestIsRejectedByTheFold() {
        var state = CortexState()
        var position: Int64 = 0
        let evidence = MachineEvidence(cores: 4, loadMillis: 0, memoryAvailableBytes: 1 << 30, maxWorkers: 8)
        var spec = WorkerSpec(command: ["sleep", "1"], restart: .always)
        spec.request = "r-00112233445566778899aabb"
        func spawn(_ spec: WorkerSpec) -> Outcome {
            let event = WorkerEvent.spawn(spec, queue: true, evidence: evidence)
            position += 100
            return Reducer.reduce(
                &state, Record(id: Record.newID(), timeMilliseconds: 1_000, kind: event.kind, data: event.data),
                at: JournalPosition(segment: 1, offset: position))
        }
        guard case .spawned(let first, _) = spawn(spec) else {
            Issue.record("the first spawn is granted")
            return
        }
        guard case .rejected(let reason) = spawn(spec) else {
            Issue.record("a second worker naming the same request must be rejected")
            return
        }
        #expect(reason.contains(first), "\(reason)")
    }

    /// A request is trusted only as a private regular file: group- or world-writable, a
    /// symlink or a FIFO in its place is refused (exit 77), at once, never followed or blocked on.
    @Test func aRequestIsTrustedOnlyAsAPrivateRegularFile() throws {
        let directory = try TemporaryDirectory()
        let layout = CoordinationLayout(root: directory.path)
        let request = WorkerRequest(command: ["true"], workingDirectory: "/", environment: ["PATH": "/usr/bin:/bin", "K": "v"])
        let name = WorkerRequest.newName()
        try request.create(name, in: layout)
        let found = try WorkerRequest.read(name, in: layout)
        #expect(found.request == request && found.owner == getuid())
        #expect(throws: CortexError.self, "created once, never overwritten") { try request.create(name, in: layout) }
        let path = layout.requests + "/" + name
        func refusedWith77(_ what: String) {
            do {
                _ = try WorkerRequest.read(name, in: layout)
                Issue.record("\(what) was trusted")
            } catch {
                if case .io(_, _, let errno) = error {
                    #expect(errno.isPermissionDenied, "\(what): \(error)")
                } else {
                    Issue.record("\(what): \(error)")
                }
            }
        }
        chmod(path, 0o620)
        refusedWith77("a group-writable request")
        unlink(path)
        try FileManager.default.createDirectory(atPath: directory.path + "/other", withIntermediateDirectories: false)
        try request.create("r-0000", in: CoordinationLayout(root: directory.path + "/other"))
        #expect(symlink(directory.path + "/other/requests/r-0000", path) == 0)
        refusedWith77("a symlink")
        unlink(path)
        #expect(mkfifo(path, 0o600) == 0)
        refusedWith77("a FIFO")
        #expect(WorkerRequest.isValidName(name) && !WorkerRequest.isValidName("../x") && !WorkerRequest.isValidName("r-XY"))
    }

    /// The groups a root launcher gives a requester come from the local files only: the primary
    /// group of its passwd entry and every group listing it; an unknown uid is refused.
    @Test func credentialsComeFromThePasswdAndGroupFiles() throws {
        let directory = try TemporaryDirectory()
        let database = UserDatabase(passwd: directory.path + "/passwd", group: directory.path + "/group")
        try Data("root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\nmallory:x:1002:1002::/:/bin/sh\n".utf8)
            .write(to: URL(fileURLWithPath: database.passwd))
        try Data("root:x:0:\nalice:x:1001:\nbuild:x:2000:mallory,alice\nwheel:x:10:malice\ndocker:x:999:bob\n".utf8)
            .write(to: URL(fileURLWithPath: database.group))
        let alice = try Credentials.of(user: 1001, in: database)
        #expect(alice == Credentials(uid: 1001, gid: 1001, groups: [1001, 2000]), "not wheel: 'malice' is not 'alice'")
        #expect(throws: CortexError.self) { try Credentials.of(user: 4242, in: database) }
        #expect(database.user(uid: 1002)?.name == "mallory")
    }
}
