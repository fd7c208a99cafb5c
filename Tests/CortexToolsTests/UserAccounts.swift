import CortexCore
import Foundation
import Testing

// Second (and third) users for the shared-folder tests: unprivileged system accounts in one
// group, created idempotently when the tests run as root, and a way to run a tool as one of them.

/// Why the tests that need other users are skipped, printed by the test runner.
let needsRootNote: Comment = "needs root (creates unprivileged users and a group, runs tools as them); skipped when not root"

/// True when this process may create users and switch to them.
let runningAsRoot = getuid() == 0

/// An unprivileged account created for the tests.
struct TestUser {
    /// The login name.
    var name: String
    /// Its user id.
    var uid: uid_t
    /// Its primary group id.
    var gid: gid_t
}

enum UserAccounts {
    /// The group `name`, created (`groupadd --system`) if missing; its group id.
    static func group(_ name: String) throws -> gid_t {
        if let gid = try groupID(name) { return gid }
        try administer(["groupadd", "--system", name])
        guard let gid = try groupID(name) else { throw SupportError("groupadd \(name) made no group") }
        return gid
    }

    /// The user `name` (no home, no login shell), created if missing and made a member of `groups`.
    static func user(_ name: String, groups: [String] = []) throws -> TestUser {
        if try passwdEntry(name) == nil {
            try administer(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        }
        let memberOf = try output(["id", "-nG", name]).split(separator: " ").map(String.init)
        for group in groups where !memberOf.contains(group) { try administer(["usermod", "-a", "-G", group, name]) }
        guard let fields = try passwdEntry(name), let uid = uid_t(fields[2]), let gid = gid_t(fields[3]) else {
            throw SupportError("useradd \(name) made no user")
        }
        return TestUser(name: name, uid: uid, gid: gid)
    }

    /// Runs a tool as `user` (its groups from /etc/group) under `umask`:
    /// `setpriv --reuid U --regid G --init-groups bash -c 'umask M; exec TOOL ARGS'`.
    static func run(as user: TestUser, umask: String = "022", _ arguments: [String], in directory: TemporaryDirectory) throws
        -> ToolResult
    {
        let setpriv = executableOnPath("setpriv") ?? "/usr/bin/setpriv"
        return try RunningTool(
            [setpriv, "--reuid", String(user.uid), "--regid", String(user.gid), "--init-groups", "--"]
                + underUmask(umask, arguments), scratch: directory.scratch
        ).wait()
    }

    /// `arguments` (a tool name first) as a command line that sets `umask` first.
    static func underUmask(_ umask: String, _ arguments: [String]) -> [String] {
        [bashPath, "-c", "umask \(umask); exec \"$0\" \"$@\"", toolPath(arguments[0])] + arguments.dropFirst()
    }

    /// The fields of `name`'s line in /etc/passwd, or nil.
    private static func passwdEntry(_ name: String) throws -> [Substring]? {
        let lines = try String(contentsOfFile: "/etc/passwd", encoding: .utf8).split(separator: "\n")
        return lines.map { $0.split(separator: ":", omittingEmptySubsequences: false) }.first { $0.first == Substring(name) }
    }

    private static func groupID(_ name: String) throws -> gid_t? {
        let lines = try String(contentsOfFile: "/etc/group", encoding: .utf8).split(separator: "\n")
        let fields = lines.map { $0.split(separator: ":", omittingEmptySubsequences: false) }.first { $0.first == Substring(name) }
        return fields.flatMap { gid_t($0[2]) }
    }

    /// Runs an account tool, retrying while another process holds the /etc/passwd lock.
    private static func administer(_ command: [String]) throws {
        var last = ""
        for _ in 0..<20 {
            let (status, text) = try execute(command)
            if status == 0 { return }
            // Created meanwhile by a concurrent run (exit 9: already exists) is as good.
            if status == 9 { return }
            last = text
            usleep(100_000)
        }
        throw SupportError("\(command.joined(separator: " ")) failed: \(last)")
    }

    private static func output(_ command: [String]) throws -> String {
        let (status, text) = try execute(command)
        guard status == 0 else { throw SupportError("\(command.joined(separator: " ")) failed: \(text)") }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func execute(_ command: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executableOnPath(command[0]) ?? "/usr/sbin/" + command[0])
        process.arguments = Array(command.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
