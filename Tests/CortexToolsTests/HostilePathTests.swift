import CortexCore
import CortexStorage
import Foundation
import Testing

/// Issue 13, "no path tricks" and "bounded inputs" (docs/decisions/020-no-path-tricks.md): a
/// link, a FIFO or a device planted inside the coordination folder, or named as an input file,
/// never makes a tool hang, read without a bound, or read, write or delete outside the folder.
/// Each case runs the real tools under a 10 s watchdog; every one of them should take milliseconds.
@Suite("Hostile paths")
struct HostilePathTests {
    /// How long a tool may take before it counts as hung (it should take milliseconds).
    static let watchdogSeconds = 10.0

    /// Runs a tool; kills it if it is still running after `watchdogSeconds`.
    /// - Returns: the result, and whether the watchdog had to kill it.
    func runGuarded(_ arguments: [String], in directory: TemporaryDirectory) throws -> (result: ToolResult, hung: Bool) {
        let tool = try RunningTool(arguments, scratch: directory.scratch)
        let deadline = Date().addingTimeInterval(Self.watchdogSeconds)
        while tool.isRunning && Date() < deadline { usleep(10_000) }
        let hung = tool.isRunning
        if hung { _ = tool.kill(SIGKILL) }
        return (tool.wait(), hung)
    }

    func folder() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        return directory
    }

    func bytes(_ path: String) -> [UInt8]? { FileManager.default.contents(atPath: path).map { Array($0) } }

    func makeFIFO(_ path: String) throws {
        guard mkfifo(path, 0o644) == 0 else { throw SupportError("mkfifo \(path) failed: errno \(errno)") }
    }

    /// Replaces `path` with a FIFO.
    func replaceWithFIFO(_ path: String) throws {
        _ = unlink(path)
        try makeFIFO(path)
    }

    /// Replaces `path` with a symbolic link to `target`.
    func replaceWithLink(_ path: String, to target: String) throws {
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != nil || FileManager.default.fileExists(atPath: path) {
            try FileManager.default.removeItem(atPath: path)
        }
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
    }

    // MARK: - input files

    /// What a user-named input file can be that must be refused.
    enum BadInput: String, CaseIterable, Sendable {
        case fifo, devZero, folder, tooLarge
    }

    func inputPath(_ kind: BadInput, in directory: TemporaryDirectory) throws -> String {
        switch kind {
        case .fifo:
            let path = directory.scratch + "/input.fifo"
            try makeFIFO(path)
            return path
        case .devZero:
            return "/dev/zero"
        case .folder:
            return directory.scratch
        case .tooLarge:
            let path = directory.scratch + "/large.txt"
            // One byte over the documented 8 MiB limit (sparse: nothing is really written).
            guard FileManager.default.createFile(atPath: path, contents: nil), truncate(path, off_t(FileLimits.contextFile + 1)) == 0 else {
                throw SupportError("cannot create \(path)")
            }
            return path
        }
    }

    @Test(arguments: BadInput.allCases)
    func aContextFileThatIsNotASmallRegularFileIsRefusedWith65(_ kind: BadInput) throws {
        let directory = try folder()
        let path = try inputPath(kind, in: directory)
        let (result, hung) = try runGuarded(
            ["cortex-task", "create", "--dir", directory.coordination, "--type", "t", "--context-file", path], in: directory)
        #expect(!hung, "cortex-task create --context-file \(path) was still running after \(Self.watchdogSeconds) s")
        #expect(result.exitCode == 65, "\(result)")
        #expect(result.stderrLines.count == 1 && result.stderr.contains(path), "\(result)")
        // Nothing was created.
        let list = try runTool(["cortex-task", "list", "--dir", directory.coordination, "--json"], in: directory)
        #expect(!list.stdout.contains("\"t\""), "\(list)")
    }

    @Test(arguments: BadInput.allCases)
    func aResultFileThatIsNotASmallRegularFileIsRefusedWith65(_ kind: BadInput) throws {
        let directory = try folder()
        try runTool(["cortex-task", "create", "--dir", directory.coordination, "--type", "t"], in: directory)
        let claim = try runTool(["cortex-task", "claim", "--dir", directory.coordination, "--worker", "w1", "--json"], in: directory)
        guard let task = claim.json?["id"]?.stringValue, let token = claim.json?["claim"]?.intValue else {
            Issue.record("claim failed: \(claim)")
            return
        }
        let path = try inputPath(kind, in: directory)
        let (result, hung) = try runGuarded(
            ["cortex-task", "complete", task, "--claim", String(token), "--dir", directory.coordination, "--result-file", path],
            in: directory)
        #expect(!hung, "cortex-task complete --result-file \(path) was still running after \(Self.watchdogSeconds) s")
        #expect(result.exitCode == 65, "\(result)")
        #expect(result.stderrLines.count == 1 && result.stderr.contains(path), "\(result)")
    }

    // MARK: - FIFOs inside the folder

    /// Files of the folder that a FIFO may stand in for, and whether commands still work then
    /// (a view or the snapshot is rebuilt from the journal) or must refuse (exit 74).
    enum PlantedFile: String, CaseIterable, Sendable {
        case config = "config.json"
        case view = "token-budget.json"
        case snapshot = "state/snapshot.json"
        case segment = "journal/000000000001.jsonl"

        var refuses: Bool { self == .config || self == .segment }
    }

    @Test(arguments: PlantedFile.allCases)
    func aFIFOInPlaceOfAFolderFileHangsNoCommand(_ planted: PlantedFile) throws {
        let directory = try folder()
        try runTool(["cortex-budget", "allocate", "--dir", directory.coordination, "--tokens", "10"], in: directory)
        let path = directory.coordination + "/" + planted.rawValue
        try replaceWithFIFO(path)
        for command in [["cortex-budget", "status"], ["cortex-budget", "allocate", "--tokens", "1"], ["cortex", "status"]] {
            let (result, hung) = try runGuarded(command + ["--dir", directory.coordination], in: directory)
            #expect(!hung, "\(command.joined(separator: " ")) hung on a FIFO at \(planted.rawValue)")
            if planted.refuses {
                #expect(result.exitCode == 74, "\(result)")
                #expect(result.stderrLines.count == 1, "\(result)")
                #expect(result.stderr.contains(planted.rawValue) && result.stderr.contains("not a regular file"), "\(result)")
            } else {
                #expect(result.exitCode == 0, "\(result)")
            }
        }
    }

    // MARK: - links inside the folder

    @Test func aSymlinkedSegmentIsNeverWrittenThrough() throws {
        let directory = try folder()
        for _ in 0..<3 { try runTool(["cortex-budget", "allocate", "--dir", directory.coordination, "--tokens", "10"], in: directory) }
        // The segment moves outside the folder and a link takes its place; a next segment exists
        // without a seal in the first, so a reader would append one (the repro of issue 13).
        let segment = directory.coordination + "/journal/000000000001.jsonl"
        let outside = directory.scratch + "/outside.jsonl"
        try FileManager.default.moveItem(atPath: segment, toPath: outside)
        try FileManager.default.createSymbolicLink(atPath: segment, withDestinationPath: outside)
        _ = FileManager.default.createFile(atPath: directory.coordination + "/journal/000000000002.jsonl", contents: nil)
        let before = bytes(outside)
        for command in [
            ["cortex-budget", "status"], ["cortex-budget", "allocate", "--tokens", "1"], ["cortex-reap", "--result-ttl", "0s"],
        ] {
            let (result, hung) = try runGuarded(command + ["--dir", directory.coordination], in: directory)
            #expect(!hung)
            #expect(result.exitCode == 74 || result.exitCode == 77, "\(result)")
            #expect(result.stderrLines.count == 1 && result.stderr.contains("symbolic link"), "\(result)")
            #expect(bytes(outside) == before, "\(command.joined(separator: " ")) wrote through the link to \(outside)")
        }
    }

    @Test func theReaperPurgesNothingThroughASymlinkedResultsFolder() throws {
        let directory = try folder()
        try updateConfig(directory, ["result_ttl": "0s"])
        // A folder outside with old files, and `results/` replaced by a link to it.
        let outside = directory.scratch + "/victim"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: false)
        let old = Date().addingTimeInterval(-3600)
        for name in ["a.json", "b.json", "notes.txt"] {
            let path = outside + "/" + name
            _ = FileManager.default.createFile(atPath: path, contents: Data("keep me\n".utf8))
            try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: path)
        }
        try replaceWithLink(directory.coordination + "/results", to: outside)
        let (result, hung) = try runGuarded(["cortex-reap", "--dir", directory.coordination, "--result-ttl", "0s"], in: directory)
        #expect(!hung)
        #expect(result.exitCode == 0, "\(result)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).sorted() == ["a.json", "b.json", "notes.txt"])

        // A real `results/` holding a link to a file outside: the file outside stays too.
        try FileManager.default.removeItem(atPath: directory.coordination + "/results")
        try FileManager.default.createDirectory(atPath: directory.coordination + "/results", withIntermediateDirectories: false)
        try FileManager.default.createSymbolicLink(
            atPath: directory.coordination + "/results/task.json", withDestinationPath: outside + "/a.json")
        let again = try runTool(["cortex-reap", "--dir", directory.coordination, "--result-ttl", "0s"], in: directory)
        #expect(again.exitCode == 0, "\(again)")
        #expect(bytes(outside + "/a.json") == Array("keep me\n".utf8))
    }

    @Test func aSymlinkedSnapshotOrViewIsNeitherBelievedNorWrittenThrough() throws {
        // Another folder's snapshot, with 700 tokens allocated.
        let other = try folder()
        try runTool(["cortex-budget", "allocate", "--dir", other.coordination, "--tokens", "700"], in: other)
        let reaped = try runTool(["cortex-reap", "--dir", other.coordination], in: other)
        #expect(reaped.exitCode == 0, "\(reaped)")
        let otherSnapshot = other.coordination + "/state/snapshot.json"
        let snapshotBefore = bytes(otherSnapshot)
        #expect(snapshotBefore != nil)

        let directory = try folder()
        try replaceWithLink(directory.coordination + "/state/snapshot.json", to: otherSnapshot)
        let outsideView = directory.scratch + "/view.json"
        _ = FileManager.default.createFile(atPath: outsideView, contents: Data("{\"version\":99999999}\n".utf8))
        let viewBefore = bytes(outsideView)
        try replaceWithLink(directory.coordination + "/token-budget.json", to: outsideView)

        let status = try runTool(["cortex-budget", "status", "--dir", directory.coordination, "--json"], in: directory)
        #expect(status.exitCode == 0, "\(status)")
        #expect(status.json?["available"]?.intValue == 1000, "the other folder's snapshot was believed: \(status)")
        for command in [["cortex-budget", "allocate", "--tokens", "5"], ["cortex-reap"]] {
            let result = try runTool(command + ["--dir", directory.coordination], in: directory)
            #expect(result.exitCode == 0, "\(result)")
        }
        #expect(bytes(otherSnapshot) == snapshotBefore, "the other folder's snapshot was written through the link")
        #expect(bytes(outsideView) == viewBefore, "the view was written through the link")
        let view = try budgetView(directory)
        #expect(view["available"]?.intValue == 995, "\(view)")
    }
}
