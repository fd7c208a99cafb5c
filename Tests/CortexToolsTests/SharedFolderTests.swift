import CortexCore
import CortexStorage
import Foundation
import Testing

/// Shared folders (issue 13, "shared folders work"): a group folder made by `cortex init --group`
/// stays usable by every member after any of them, or a root reaper, rotates; the umask is
/// respected, private files are never world-readable; root on another user's folder acts as
/// that user or refuses (docs/decisions/023-shared-folders.md).
@Suite(.serialized) struct SharedFolderTests {
    static let groupName = "cxshared"

    /// Every file and folder under `root` (never following a link) with its metadata.
    func tree(_ root: String) throws -> [(path: String, info: stat)] {
        var found: [(String, stat)] = []
        var pending = [root]
        while let path = pending.popLast() {
            var info = stat()
            guard lstat(path, &info) == 0 else { throw SupportError("lstat \(path): errno \(errno)") }
            found.append((path, info))
            if info.st_mode & S_IFMT == S_IFDIR {
                pending += try FileManager.default.contentsOfDirectory(atPath: path).map { path + "/" + $0 }
            }
        }
        return found
    }

    func octal(_ mode: mode_t) -> String { String(mode & 0o7777, radix: 8) }

    /// A temp folder other users may traverse.
    func traversableFolder() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory()
        guard chmod(directory.path, 0o755) == 0 else { throw SupportError("chmod \(directory.path): errno \(errno)") }
        return directory
    }

    /// How the group folder is made.
    enum Making: CaseIterable, Sendable {
        /// Root runs `cortex init --group G`: the folder is root's, and root's reaper acts as root.
        case byRootWithInitGroup
        /// The documented equivalent by hand (`chgrp G`, `chmod 2770`), then a member runs
        /// `cortex init`: the folder is hers, and root's reaper acts as her.
        case byHandOwnedByAMember
    }

    @Test(.enabled(if: runningAsRoot, needsRootNote), arguments: Making.allCases)
    func aGroupFolderStaysUsableByTwoUsersAndARootReaperAcrossRotations(_ making: Making) throws {
        let gid = try OtherUser.group(Self.groupName)
        let alice = try OtherUser.ensure("cxshared-a", groups: [Self.groupName])
        let bob = try OtherUser.ensure("cxshared-b", groups: [Self.groupName])
        let directory = try traversableFolder()
        let dir = directory.coordination
        // Members' umask 022 must not matter.
        switch making {
        case .byRootWithInitGroup:
            let made = try runTool(["cortex", "init", "--dir", dir, "--group", Self.groupName, "--json"], in: directory)
            try #require(made.exitCode == 0, "\(made)")
        case .byHandOwnedByAMember:
            guard mkdir(dir, 0o700) == 0, chown(dir, alice.uid, gid) == 0, chmod(dir, 0o2770) == 0 else {
                throw SupportError("cannot make \(dir) by hand: errno \(errno)")
            }
            let made = try alice.runTool(["cortex", "init", "--dir", dir], umask: "022", in: directory)
            try #require(made.exitCode == 0, "\(made)")
        }
        // Members rotate past 1 KiB first; then only the root reaper does (rotate_bytes 1 KiB);
        // then members again, in a segment root created.
        try updateConfig(directory, ["segment_max_bytes": 1024, "rotate_bytes": 1024])

        /// One round of work by each member: an allocation, a task, a claim; every call must succeed.
        func round(_ label: String) throws {
            for (index, user) in [alice, bob].enumerated() {
                let worker = "w\(index)"
                let calls: [[String]] = [
                    ["cortex-budget", "allocate", "--dir", dir, "--tokens", "5", "--holder", user.name],
                    ["cortex-task", "create", "--dir", dir, "--type", "t", "--description", "by \(user.name)"],
                    ["cortex-task", "claim", "--dir", dir, "--worker", worker],
                ]
                for call in calls {
                    let result = try user.runTool(call, umask: "022", in: directory)
                    #expect(result.exitCode == 0, "\(label), as \(user.name): \(result)")
                }
            }
        }
        for _ in 0..<3 { try round("while members rotate") }
        try updateConfig(directory, ["segment_max_bytes": .int(1 << 20)])
        for _ in 0..<3 { try round("before the root reaper rotates") }
        let firstReap = try runTool(["cortex-reap", "--dir", dir, "--json"], in: directory)
        #expect(firstReap.exitCode == 0, "\(firstReap)")
        #expect(firstReap.json?["rotated"] == .bool(true), "the root reaper should have rotated: \(firstReap)")
        try round("after the root reaper rotated")
        try updateConfig(directory, ["segment_max_bytes": 1024])
        for _ in 0..<3 { try round("members rotating a segment root created") }
        let secondReap = try runTool(["cortex-reap", "--dir", dir, "--json"], in: directory)
        #expect(secondReap.exitCode == 0, "\(secondReap)")
        try round("after a second root reap")
        let segments = try segmentFiles(directory)
        #expect(segments.count >= 3, "rotations expected: \(segments)")

        for (path, info) in try tree(dir) {
            let isFolder = info.st_mode & S_IFMT == S_IFDIR
            if making == .byHandOwnedByAMember { #expect(info.st_uid != 0, "\(path) is root's in alice's folder") }
            #expect(info.st_gid == gid, "\(path) has group \(info.st_gid), not \(Self.groupName) (\(gid))")
            var wanted: mode_t = isFolder ? 0o2770 : 0o660
            // The signing keys' registry (decision 044): sticky, and each public key writable by its owner alone.
            if path.hasPrefix(dir + "/audit/keys") { wanted = isFolder ? 0o3770 : 0o644 }
            #expect(info.st_mode & 0o7777 == wanted, "\(path) is \(octal(info.st_mode)), not \(octal(wanted))")
        }
    }

    /// Files of the shared kind follow the umask; logs, results, contexts and worker files are
    /// never readable by others, whatever the umask. Runs as any user.
    @Test func theUmaskIsRespectedAndPrivateFilesAreNeverWorldReadable() throws {
        let directory = try TemporaryDirectory()
        let dir = directory.coordination
        func run(_ umask: String, _ arguments: [String]) throws -> ToolResult {
            let result = try RunningTool(OtherUser.underUmask(umask, arguments), scratch: directory.scratch).wait()
            #expect(result.exitCode == 0, "\(result)")
            return result
        }
        _ = try run("002", ["cortex", "init", "--dir", dir])
        // Only this test's one worker runs: load never queues it on this noisy machine.
        try updateConfig(directory, ["max_load_per_core": 1000, "max_cpu_pressure": 100])
        let context = directory.scratch + "/context.txt"
        try Data("secret context".utf8).write(to: URL(fileURLWithPath: context))
        _ = try run("022", ["cortex-task", "create", "--dir", dir, "--type", "t", "--context-file", context])
        let claim = try run("022", ["cortex-task", "claim", "--dir", dir, "--worker", "w1", "--json"])
        let task = try #require(claim.json?.string("id"), "\(claim)")
        let token = try #require(claim.json?.int("claim"), "\(claim)")
        _ = try run("022", ["cortex-task", "complete", task, "--claim", String(token), "--dir", dir, "--result", "{\"secret\":1}"])
        _ = try run("022", ["cortex-spawn", "--dir", dir, "--foreground", "--", bashPath, "-c", "echo out; echo err >&2"])

        var privateChecked = 0
        for (path, info) in try tree(dir) {
            let relative = String(path.dropFirst(dir.count))
            let isPrivate = ["/workers", "/results", "/context"].contains { relative.hasPrefix($0) }
            if isPrivate {
                privateChecked += 1
                #expect(info.st_mode & 0o007 == 0, "\(relative) is \(octal(info.st_mode)): readable by others")
            }
        }
        #expect(privateChecked >= 9, "logs, heartbeat, result, context and their folders expected")
        // Shared files follow the umask of their writer: 002 at init, so the group may write config.json.
        var config = stat()
        #expect(stat(dir + "/config.json", &config) == 0)
        #expect(config.st_mode & 0o777 == 0o664, "config.json is \(octal(config.st_mode)) under umask 002")
    }

    @Test(.enabled(if: runningAsRoot, needsRootNote))
    func rootOnAnotherUsersFolderActsAsThatUserOrRefuses() throws {
        let alice = try OtherUser.ensure("cxshared-a")
        let directory = try traversableFolder()
        guard chown(directory.path, alice.uid, alice.gid) == 0 else { throw SupportError("chown: errno \(errno)") }
        let dir = directory.coordination
        let made = try alice.runTool(["cortex", "init", "--dir", dir], umask: "022", in: directory)
        try #require(made.exitCode == 0, "\(made)")

        // Root's read-only status, a reap and a write: every file they create is alice's.
        for call in [
            ["cortex-budget", "status", "--dir", dir], ["cortex-reap", "--dir", dir],
            ["cortex-budget", "allocate", "--dir", dir, "--tokens", "5"],
        ] {
            let result = try runTool(call, in: directory)
            #expect(result.exitCode == 0, "\(result)")
        }
        #expect(FileManager.default.fileExists(atPath: dir + "/state/reaper.json"))
        // A folder root creates inside alice's folder is hers too.
        let created = try runTool(["cortex", "init", "--dir", directory.path + "/second"], in: directory)
        #expect(created.exitCode == 0, "\(created)")
        for root in [dir, directory.path + "/second"] {
            for (path, info) in try tree(root) {
                #expect(info.st_uid == alice.uid && info.st_gid == alice.gid, "\(path) is \(info.st_uid):\(info.st_gid), not alice's")
            }
        }
        // Still alice's after root's calls: she can go on.
        let hers = try alice.runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", "5"], umask: "022", in: directory)
        #expect(hers.exitCode == 0, "\(hers)")

        // A folder of a uid with no account: root refuses with 77 and one line, and changes nothing.
        let orphan = try traversableFolder()
        let made2 = try runTool(["cortex", "init", "--dir", orphan.coordination], in: orphan)
        try #require(made2.exitCode == 0, "\(made2)")
        let stranger: uid_t = 4_242_424
        guard chown(orphan.coordination, stranger, stranger) == 0 else { throw SupportError("chown: errno \(errno)") }
        let before = try folderContents(orphan.coordination)
        for call in [["cortex-budget", "status", "--dir", orphan.coordination], ["cortex-reap", "--dir", orphan.coordination]] {
            let refused = try runTool(call, in: orphan)
            #expect(refused.exitCode == 77, "\(refused)")
            #expect(refused.stderrLines.count == 1 && refused.stderr.contains("4242424"), "\(refused)")
        }
        #expect(changedPaths(before, try folderContents(orphan.coordination)).isEmpty)
    }
}
