import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// A headless browser for the dashboard tests: Chromium from Debian (`apt-get install chromium`,
/// which .ci/run does), or another Chromium-based binary on the PATH.
let browserPath: String? = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"].lazy
    .compactMap(executableOnPath).first

/// python3, for the served-mode test's static file server.
let python3Path: String? = executableOnPath("python3")

/// Where artefacts that a person may want to look at after a run go: `.build/test-artifacts/`
/// of this package (ignored by git).
let testArtifactsDirectory: String = {
    var root = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { root.deleteLastPathComponent() }
    let folder = root.path + "/.build/test-artifacts"
    try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    return folder
}()

private let noBrowserNote: Comment = {
    if browserPath == nil {
        print("⚠︎ dashboard browser tests SKIPPED: no chromium on PATH (install it: apt-get install -y chromium)")
    }
    return "no headless browser (chromium) installed: the dashboard is not checked in a browser"
}()

/// `cortex dashboard` checked in a real headless Chromium: the numbers on the page are the
/// views' numbers, user text cannot inject markup, and a served page follows the views.
@Suite("Dashboard in headless Chromium", .serialized, .timeLimit(.minutes(5)))
struct DashboardTests {
    @Test(.enabled(if: browserPath != nil, noBrowserNote))
    func pageOpenedFromDiskShowsTheViewsNumbersAndEscapesUserText() throws {
        let browser = try #require(browserPath)
        let directory = try TemporaryDirectory()
        let dir = directory.coordination
        try runOK(["cortex", "init", "--dir", dir, "--total-tokens", "100000", "--max-workers", "6"], in: directory)
        // A busy CI machine must not queue the pool.
        try updateConfig(directory, ["max_load_per_core": .int(1000), "max_cpu_pressure": .int(100)])
        _ = try runOK(["cortex-budget", "allocate", "--dir", dir, "--tokens", "3000", "--holder", "w-a"], in: directory)
        let second = try runOK(
            ["cortex-budget", "allocate", "--dir", dir, "--tokens", "2000", "--holder", "w-b", "--tenant", "acme"], in: directory)
        try runOK(["cortex-budget", "release", "--dir", dir, second, "--used", "1500"], in: directory)
        for index in 1...5 {
            try runOK(["cortex-task", "create", "--dir", dir, "--type", "build", "--description", "make module-\(index)"], in: directory)
        }
        let attack = #"</script><img src=x onerror="document.title='owned'"><b>bold</b> & more"#
        let hostile = try runOK(
            ["cortex-task", "create", "--dir", dir, "--type", "review", "--priority", "high", "--description", attack], in: directory)
        try runOK(["cortex-task", "claim", "--dir", dir, "--worker", "w-solo", "--type", "build"], in: directory)
        let pool = try runOK(["cortex-spawn", "--dir", dir, "--pool", "2", "--type", "sleeper", "--", "sleep", "120"], in: directory)
            .split(separator: "\n").map(String.init)
        defer { for worker in pool { _ = try? runTool(["cortex", "worker", "stop", "--dir", dir, worker], in: directory) } }
        try waitFor("both pool workers running", seconds: 20) {
            let states = try view(dir, "worker-pool.json")["workers"]?.arrayValue?.compactMap { $0.string("state") } ?? []
            return states.filter { $0 == "running" }.count == 2
        }

        let page = dir + "/dashboard.html"
        try runOK(["cortex", "dashboard", "--dir", dir, "--out", page], in: directory)
        let budget = try view(dir, "token-budget.json")
        let queue = try view(dir, "task-queue.json")
        let workers = try view(dir, "worker-pool.json")

        let dom = try Chromium(browser, directory).dumpDOM("file://" + page)
        // Opened from disk: the embedded snapshot, no error, no fetch needed.
        #expect(dom.attribute("data-mode", ofTestID: "source") == "embedded", "\(dom.excerpt)")
        #expect(dom.value(ofTestID: "tokens-total") == budget.int("total_budget"))
        #expect(dom.value(ofTestID: "tokens-reserved") == budget.int("allocated"))
        #expect(dom.value(ofTestID: "tokens-spent") == budget.int("spent"))
        #expect(dom.value(ofTestID: "tokens-available") == budget.int("available"))
        #expect(dom.text(ofTestID: "tokens-available") == "95,500", "formatted for people")
        for status in ["pending", "running", "done", "failed", "dead", "cancelled"] {
            #expect(dom.value(ofTestID: "tasks-\(status)") == queue["counts"]?.int(status), "\(status)")
        }
        // The queue in claim order, as the view lists it.
        let pendingIDs = queue["pending"]?.arrayValue?.compactMap { $0.string("id") } ?? []
        #expect(dom.attributes("data-task", ofTestID: "pending-task") == pendingIDs)
        #expect(pendingIDs.first == hostile, "the high-priority task is claimed first")
        let runningIDs = queue["running"]?.arrayValue?.compactMap { $0.string("id") } ?? []
        #expect(dom.attributes("data-task", ofTestID: "running-task") == runningIDs)
        // The grid: every supervised worker with its state, and the unsupervised claimer.
        var poolRows: [JSONValue] = []
        for row in ["workers", "queued", "recent"].flatMap({ workers[$0]?.arrayValue ?? [] })
        where !poolRows.contains(where: { $0.string("id") == row.string("id") }) {
            poolRows.append(row)
        }
        #expect(poolRows.count == 2)
        #expect(dom.attributes("data-worker", ofTestID: "worker") == poolRows.compactMap { $0.string("id") } + ["w-solo"])
        #expect(
            dom.attributes("data-state", ofTestID: "worker") == poolRows.compactMap { $0.string("state") } + ["claimer"])
        // No metrics.json yet: the latency panel says so and shows no numbers.
        #expect(dom.count(ofTestID: "latency-row") == 0)
        #expect(dom.html.contains("no metrics yet"))
        #expect(dom.count(ofTestID: "event") == min(50, try eventCount(dir)), "the last 50 journal events")
        // User text is text: no injected element ran or exists, the page kept its title.
        #expect(dom.html.contains("<title>Cortex dashboard</title>"))
        #expect(!dom.html.contains("<img"), "a task description became markup")
        #expect(!dom.html.contains("<b>bold"), "a task description became markup")
        #expect(dom.html.contains("&lt;/script&gt;&lt;img src=x"), "the description is shown as typed")

        // The screenshot, kept for a person to look at.
        let screenshot = testArtifactsDirectory + "/dashboard.png"
        try Chromium(browser, directory).screenshot("file://" + page, to: screenshot)
        let png = try Data(contentsOf: URL(fileURLWithPath: screenshot))
        #expect(png.count > 20_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "\(png.count) bytes")
        print("dashboard screenshot: \(screenshot)")
    }

    @Test(.enabled(if: browserPath != nil && python3Path != nil, noBrowserNote))
    func servedPageReloadsTheViewsAndAFrozenOneDoesNot() throws {
        let browser = try #require(browserPath)
        let directory = try TemporaryDirectory()
        let dir = directory.coordination
        try runOK(["cortex", "init", "--dir", dir, "--total-tokens", "50000"], in: directory)
        try runOK(["cortex-budget", "allocate", "--dir", dir, "--tokens", "1000", "--holder", "first"], in: directory)
        try runOK(["cortex", "dashboard", "--dir", dir], in: directory)
        try runOK(["cortex", "dashboard", "--dir", dir, "--embed", "--out", dir + "/frozen.html"], in: directory)

        let server = try StaticServer(root: dir, scratch: directory.scratch)
        let chromium = try Chromium(browser, directory)
        // --follow keeps events.json fresh while the state changes below.
        let follower = try RunningTool(["cortex", "dashboard", "--dir", dir, "--follow"], scratch: directory.scratch)
        defer { follower.kill(SIGTERM) }
        try waitFor("cortex dashboard --follow to start", seconds: 10) { follower.stdoutSoFar().contains("following") }
        let first = try chromium.dumpDOM(server.url("dashboard.html"))
        #expect(first.attribute("data-mode", ofTestID: "source") == "live", "\(first.excerpt)")
        #expect(first.value(ofTestID: "tokens-reserved") == 1000)

        // The state changes through the tools; the page is not rewritten, only the views are.
        try runOK(["cortex-budget", "allocate", "--dir", dir, "--tokens", "7777", "--holder", "later"], in: directory)
        try runOK(["cortex-task", "create", "--dir", dir, "--type", "build", "--description", "after the page"], in: directory)
        let metrics =
            #"{"task_types":{"build":{"queue_wait_seconds":{"p50":0.25,"p95":1.5,"p99":2},"run_time_seconds":{"p50":12,"p95":30.5,"p99":61}}},"updated_at":"2026-12-02T06:00:00Z"}"#
        try Data(metrics.utf8).write(to: URL(fileURLWithPath: dir + "/metrics.json"))
        let budget = try view(dir, "token-budget.json")
        let queue = try view(dir, "task-queue.json")

        try waitFor("events.json to show the new allocation and task", seconds: 10) {
            let events = try view(dir, "events.json")["events"]?.arrayValue ?? []
            return events.contains { $0["data"]?.string("holder") == "later" }
                && events.contains { $0["data"]?.string("description") == "after the page" }
        }
        let second = try chromium.dumpDOM(server.url("dashboard.html"))
        #expect(second.attribute("data-mode", ofTestID: "source") == "live")
        #expect(second.value(ofTestID: "tokens-reserved") == budget.int("allocated"))
        #expect(second.value(ofTestID: "tokens-reserved") == 8777)
        #expect(second.value(ofTestID: "tokens-available") == budget.int("available"))
        #expect(second.value(ofTestID: "tasks-pending") == queue["counts"]?.int("pending"))
        #expect(second.value(ofTestID: "tasks-pending") == 1)
        #expect(second.attributes("data-type", ofTestID: "latency-row") == ["build"])
        #expect(second.html.contains("250 ms") && second.html.contains("61 s"), "\(second.excerpt)")
        #expect(second.html.contains("holder=later"), "the served event list follows the journal")
        #expect(second.html.contains("description=after the page"))

        // The frozen snapshot (--embed) keeps what it saw, served or not.
        let frozen = try chromium.dumpDOM(server.url("frozen.html"))
        #expect(frozen.attribute("data-mode", ofTestID: "source") == "embedded")
        #expect(frozen.value(ofTestID: "tokens-reserved") == 1000)
        #expect(frozen.count(ofTestID: "latency-row") == 0)
    }

    // MARK: - Helpers

    @discardableResult
    func runOK(_ arguments: [String], in directory: TemporaryDirectory) throws -> String {
        let result = try runTool(arguments, in: directory)
        try #require(result.exitCode == 0, "\(result)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func view(_ dir: String, _ name: String) throws -> JSONValue {
        try JSONValue.parse(try String(contentsOfFile: dir + "/" + name, encoding: .utf8))
    }

    func eventCount(_ dir: String) throws -> Int {
        var count = 0
        _ = try FileJournal(directory: dir + "/journal").readForward(from: .start) { (_, _) throws(CortexError) in count += 1 }
        return count
    }

    func waitFor(_ what: String, seconds: Double, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return }
            usleep(100_000)
        }
        Issue.record("timed out waiting for \(what)")
        throw SupportError("timed out waiting for \(what)")
    }
}

/// Headless Chromium, one private profile per test (tests and people may run it at once).
struct Chromium {
    let executable: String
    let directory: TemporaryDirectory
    let profile: String

    init(_ executable: String, _ directory: TemporaryDirectory) throws {
        self.executable = executable
        self.directory = directory
        profile = directory.path + "/chromium-profile-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: profile, withIntermediateDirectories: true)
    }

    private var common: [String] {
        [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--user-data-dir=\(profile)", "--virtual-time-budget=3000",
        ]
    }

    /// The DOM after the page's scripts ran.
    func dumpDOM(_ url: String) throws -> DumpedDOM {
        let result = try run(common + ["--dump-dom", url])
        guard result.exitCode == 0, result.stdout.contains("</html>") else { throw SupportError("chromium --dump-dom: \(result)") }
        return DumpedDOM(html: result.stdout)
    }

    /// A 1280×900 PNG of the page.
    func screenshot(_ url: String, to path: String) throws {
        try? FileManager.default.removeItem(atPath: path)
        let result = try run(
            common + [
                "--hide-scrollbars", "--run-all-compositor-stages-before-draw", "--window-size=1280,900", "--screenshot=\(path)", url,
            ])
        guard result.exitCode == 0, FileManager.default.fileExists(atPath: path) else {
            throw SupportError("chromium --screenshot: \(result)")
        }
    }

    private func run(_ arguments: [String]) throws -> ToolResult {
        let process = try RunningTool(arguments, scratch: directory.scratch)
        let deadline = Date().addingTimeInterval(90)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { process.kill(SIGKILL) }
        return process.wait()
    }
}

/// `python3 -m http.server` on a port the kernel picks, loopback only, serving `root`.
final class StaticServer {
    private let process: RunningTool
    let port: Int

    init(root: String, scratch: String) throws {
        let python = try #require(python3Path)
        process = try RunningTool(
            [python, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", root, "0"], scratch: scratch)
        let deadline = Date().addingTimeInterval(20)
        var found: Int?
        while found == nil && Date() < deadline && process.isRunning {
            let output = process.stdoutSoFar()
            if let range = output.range(of: #"port (\d+)"#, options: .regularExpression) {
                found = Int(output[range].dropFirst(5))
            } else {
                usleep(50_000)
            }
        }
        guard let found else { throw SupportError("http.server did not start: \(process.wait())") }
        port = found
    }

    deinit { process.kill(SIGTERM) }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)/\(path)" }
}

/// The serialised DOM Chromium printed, with lookups by `data-testid`.
struct DumpedDOM {
    let html: String

    var excerpt: String { String(html.prefix(600)) }

    /// The opening tags of the elements with `data-testid="id"`, in document order.
    func tags(ofTestID id: String) -> [Substring] {
        var found: [Substring] = []
        var rest = html[...]
        while let marker = rest.range(of: "data-testid=\"\(id)\"") {
            let start = html[..<marker.lowerBound].lastIndex(of: "<") ?? marker.lowerBound
            let end = html[marker.upperBound...].firstIndex(of: ">") ?? html.endIndex
            found.append(html[start..<end])
            rest = html[end...]
        }
        return found
    }

    func count(ofTestID id: String) -> Int { tags(ofTestID: id).count }

    /// Attribute `name` of each element with that test id.
    func attributes(_ name: String, ofTestID id: String) -> [String] {
        tags(ofTestID: id).compactMap { tag in
            guard let start = tag.range(of: " \(name)=\"") else { return nil }
            let value = tag[start.upperBound...]
            return String(value[..<(value.firstIndex(of: "\"") ?? value.endIndex)])
        }
    }

    func attribute(_ name: String, ofTestID id: String) -> String? { attributes(name, ofTestID: id).first }

    /// The number the page put in `data-value`.
    func value(ofTestID id: String) -> Int64? { attribute("data-value", ofTestID: id).flatMap { Int64($0) } }

    /// The text right after the element's opening tag (up to the next tag).
    func text(ofTestID id: String) -> String? {
        guard let tag = tags(ofTestID: id).first else { return nil }
        let after = html[tag.endIndex...].dropFirst()
        return String(after[..<(after.firstIndex(of: "<") ?? after.endIndex)])
    }
}
