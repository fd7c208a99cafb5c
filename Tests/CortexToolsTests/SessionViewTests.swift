import CortexCore
import CortexStorage
import Foundation
import Testing

/// A session writes its views and snapshots off the request path, coalesced
/// (docs/decisions/005-dispatch-io.md): every view is a whole file at every moment, requests
/// faster than a view can be written cost far fewer writes than requests, a view is current
/// once the session is idle, and neither `kill -9` nor SIGTERM leaves a view torn or stale.
@Suite("Session views")
struct SessionViewTests {
    typealias Session = SessionTests.Session

    static let views = ["token-budget.json", "token-allocations.json", "task-queue.json", "worker-pool.json"]

    /// Sends `count` allocations at once (no waiting between them) and returns their answers.
    func allocate(_ count: Int, through session: Session, holder: String = "h") throws -> [SessionTests.Answer] {
        for index in 0..<count { try session.send(["budget", "allocate", "--tokens", "1", "--holder", "\(holder)\(index)"]) }
        return try (0..<count).map { _ in try #require(session.nextAnswer(), "an answer to each request") }
    }

    /// The `version` of view `name`, nil when it is missing or not whole JSON.
    func viewVersion(_ name: String, _ directory: TemporaryDirectory) -> Int64? {
        guard let data = FileManager.default.contents(atPath: directory.coordination + "/" + name) else { return nil }
        return (try? JSONValue.parse(Array(data)))?.int("version")
    }

    /// Waits (10 s at most: it should take milliseconds) until the budget and task views carry
    /// the versions a fresh fold of the journal gives; true when they do.
    func viewsBecomeCurrent(_ directory: TemporaryDirectory) throws -> Bool {
        let fold = try foldJournal(directory)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if viewVersion("token-budget.json", directory) == fold.state.budget.version,
                viewVersion("task-queue.json", directory) == fold.state.tasks.version
            {
                return true
            }
            usleep(2_000)
        }
        return false
    }

    /// A reader in a tight loop over the three views while a session (and single calls beside
    /// it) change the budget, the tasks and the workers: every read is whole JSON. Once the
    /// session is idle, the views carry the fold's versions.
    @Test(.timeLimit(.minutes(5)))
    func viewsAreWholeAtEveryMomentWhileASessionWritesThem() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        let session = try Session(arguments: ["--dir", directory.coordination], directory: directory.scratch)
        // Larger views take longer to write: more moments to catch one half-written.
        #expect(try allocate(500, through: session, holder: "pre").allSatisfy { $0.code == 0 })

        let reader = ViewReader(folder: directory.coordination, names: Self.views)
        let thread = Thread { reader.run() }
        thread.start()
        var requests: [[String]] = []
        for index in 0..<150 {
            requests.append(["budget", "allocate", "--tokens", "2", "--holder", "w\(index)"])
            requests.append(["task", "create", "--type", "build", "--description", "job \(index)"])
            if index % 3 == 0 { requests.append(["task", "claim", "--worker", "w\(index)", "--type", "build"]) }
        }
        for request in requests { try session.send(request) }
        // Single calls at the same time, publishing the same views by the one-process rules.
        var environment = toolEnvironment
        environment["CORTEX_DIR"] = directory.coordination
        for index in 0..<10 {
            let call = try RunningTool(
                ["cortex", "budget", "allocate", "--tokens", "3", "--holder", "c\(index)"], scratch: directory.scratch,
                environment: environment
            ).wait()
            #expect(call.exitCode == 0, "\(call)")
        }
        for request in requests {
            let answer = try #require(session.nextAnswer(), "an answer to \(request)")
            #expect(answer.code == 0, "\(request): \(answer)")
        }
        #expect(try viewsBecomeCurrent(directory), "the views are current once the session is idle")
        reader.stop()
        while !reader.finished { usleep(1_000) }
        #expect(reader.torn.isEmpty, "reads that were not whole JSON: \(reader.torn.prefix(3))")
        #expect(reader.reads > 100, "the reader read the views while they were written: \(reader.reads)")
        try session.closeInput()
        #expect(session.exitCode() == 0)
    }

    /// Requests sent faster than the task view can be written (it lists the next 100 waiting
    /// tasks): far fewer view writes than requests (counted as the temp files created beside
    /// `task-queue.json`, with inotify), yet the view carries the fold's version as soon as the
    /// session is idle, while it keeps running. Before views were written off the request path,
    /// each request wrote one.
    @Test(.timeLimit(.minutes(5)))
    func viewWritesAreCoalescedAndCurrentOnceIdle() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        let session = try Session(arguments: ["--dir", directory.coordination], directory: directory.scratch)
        func create(_ count: Int, _ prefix: String) throws -> [SessionTests.Answer] {
            for index in 0..<count {
                try session.send([
                    "task", "create", "--type", "t", "--description", "\(prefix) \(index) " + String(repeating: "x", count: 200),
                ])
            }
            return try (0..<count).map { _ in try #require(session.nextAnswer(), "an answer to each request") }
        }
        #expect(try create(150, "pre").allSatisfy { $0.code == 0 })
        #expect(try viewsBecomeCurrent(directory))

        let watch = try CreationWatch(folder: directory.coordination)
        let requests = 300
        let answers = try create(requests, "now")
        #expect(answers.allSatisfy { $0.code == 0 })
        #expect(try viewsBecomeCurrent(directory), "the view is current once the session is idle")
        let writes = watch.created().filter { $0.hasPrefix(".task-queue.json.tmp-") }.count
        #expect(writes >= 1 && writes <= requests / 2, "\(writes) writes of task-queue.json for \(requests) requests")

        try session.closeInput()
        #expect(session.exitCode() == 0)
    }

    /// `kill -9` of a session while it writes large views: every view left is whole JSON, every
    /// allocation it answered is in a fresh fold, only hidden temp files are left behind, and the
    /// next single call publishes current views.
    @Test(.timeLimit(.minutes(5)))
    func killingASessionMidWriteLeavesWholeViews() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        let session = try Session(arguments: ["--dir", directory.coordination], directory: directory.scratch)
        #expect(try allocate(1_500, through: session, holder: "pre").allSatisfy { $0.code == 0 })
        for index in 0..<300 { try session.send(["budget", "allocate", "--tokens", "1", "--holder", "k\(index)"]) }
        var acknowledged: [String] = []
        while acknowledged.count < 100, let answer = session.nextAnswer() {
            acknowledged.append(answer.out.trimmingCharacters(in: .newlines))
        }
        #expect(Glibc.kill(session.pid, SIGKILL) == 0)
        while let answer = session.nextAnswer() { acknowledged.append(answer.out.trimmingCharacters(in: .newlines)) }
        _ = session.exitCode()

        for name in Self.views { #expect(viewVersion(name, directory) != nil, "\(name) is whole JSON") }
        let inFold = Set(try foldJournal(directory).state.budget.allocations.keys)
        #expect(acknowledged.allSatisfy { inFold.contains($0) }, "every acknowledged allocation is in the journal")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.coordination)
            .filter { $0.contains(".json") && !Self.views.contains($0) && $0 != "config.json" }
        #expect(leftovers.allSatisfy { $0.hasPrefix(".") && $0.contains(".tmp-") }, "only hidden temp files: \(leftovers)")

        var environment = toolEnvironment
        environment["CORTEX_DIR"] = directory.coordination
        let call = try RunningTool(["cortex", "budget", "allocate", "--tokens", "1"], scratch: directory.scratch, environment: environment)
            .wait()
        #expect(call.exitCode == 0, "\(call)")
        #expect(try viewsBecomeCurrent(directory))
    }

    /// SIGTERM (what `cortex_session_stop` sends) and the end of input both end a session only
    /// after the views of every request it answered are written.
    @Test(.timeLimit(.minutes(5)))
    func aStoppedSessionLeavesCurrentViews() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        for stop in ["SIGTERM", "end of input"] {
            let session = try Session(arguments: ["--dir", directory.coordination], directory: directory.scratch)
            #expect(try allocate(800, through: session).allSatisfy { $0.code == 0 })
            if stop == "SIGTERM" {
                #expect(Glibc.kill(session.pid, SIGTERM) == 0)
                // A bounded wait (it should take milliseconds): a session that does not end is killed.
                let deadline = Date().addingTimeInterval(10)
                while session.isRunning, Date() < deadline { usleep(5_000) }
                #expect(!session.isRunning, "SIGTERM ends the session")
                if session.isRunning { _ = Glibc.kill(session.pid, SIGKILL) }
                _ = session.exitCode()
                _ = session.exitCode()
                #expect(session.endingSignal == SIGTERM)
            } else {
                try session.closeInput()
                #expect(session.exitCode() == 0)
            }
            let fold = try foldJournal(directory)
            #expect(viewVersion("token-budget.json", directory) == fold.state.budget.version, "current after \(stop)")
            // Snapshots (one per 128 records) went through the same publisher: whole, none half-written.
            let state = try FileManager.default.contentsOfDirectory(atPath: directory.coordination + "/state")
            #expect(state.contains("snapshot.json") && !state.contains { $0.contains(".tmp-") }, "after \(stop): \(state)")
        }
    }
}

/// Reads files in a tight loop on its own thread and keeps the reads that were not whole JSON.
final class ViewReader: @unchecked Sendable {
    private let lock = NSLock()
    private let paths: [String]
    private var stopping = false
    private var tornReads: [String] = []
    private var readCount = 0
    private var done = false

    init(folder: String, names: [String]) { paths = names.map { folder + "/" + $0 } }

    var torn: [String] { lock.withLock { tornReads } }
    var reads: Int { lock.withLock { readCount } }
    var finished: Bool { lock.withLock { done } }

    func stop() { lock.withLock { stopping = true } }

    func run() {
        while !lock.withLock({ stopping }) {
            for path in paths {
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                let whole = (try? JSONValue.parse(Array(data))) != nil
                lock.withLock {
                    readCount += 1
                    if !whole { tornReads.append("\(path): \(data.count) bytes") }
                }
            }
        }
        lock.withLock { done = true }
    }
}

/// The names created directly in a folder from now on (inotify `IN_CREATE`).
final class CreationWatch {
    private let fd: Int32

    init(folder: String) throws {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0, inotify_add_watch(fd, folder, UInt32(IN_CREATE)) >= 0 else { throw SupportError("cannot watch \(folder)") }
    }

    deinit { close(fd) }

    /// The names created since the watch began (or since the last call).
    func created() -> [String] {
        var names: [String] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return names }
            var offset = 0
            while offset < count {
                let length = buffer.withUnsafeBytes { Int($0.load(fromByteOffset: offset + 12, as: UInt32.self)) }
                let nameBytes = buffer[(offset + 16)..<(offset + 16 + length)].prefix { $0 != 0 }
                names.append(String(decoding: nameBytes, as: UTF8.self))
                offset += 16 + length
            }
        }
    }
}
