import CortexCore
import CortexProcesses
import CortexStorage
import Foundation
import Testing

// Other, unprivileged accounts for the tests that need them (a hostile user, or the members of a
// shared folder, with root as the reaper): created idempotently, a tool run as one of them
// (optionally under a given umask), folders it owns or can traverse. They run only as root, and
// are skipped otherwise with `needsRootNote`, which the test runner prints.

/// True when this process may create users and groups and run tools as them.
let runningAsRoot = getuid() == 0

/// Why the tests that need other users are skipped, printed by the test runner.
let needsRootNote: Comment = "needs root (creates unprivileged users and a group, runs tools as them); skipped when not root"

/// An unprivileged account for the tests, created on first use.
struct OtherUser: Sendable {
    /// Its login name.
    let name: String
    /// Its user id.
    let uid: uid_t
    /// Its primary group id.
    let gid: gid_t

    /// The account `name` (no home, no login shell), created with `useradd --system` when
    /// missing, and made a member of each of `groups` (which must exist: `group(_:)`).
    static func ensure(_ name: String = "cortex-other", groups: [String] = []) throws -> OtherUser {
        if try entry("passwd", name) == nil {
            try administer(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        }
        // A concurrent test may have created it first: look again either way.
        guard let fields = try entry("passwd", name), fields.count >= 4, let uid = uid_t(fields[2]), let gid = gid_t(fields[3]) else {
            throw SupportError("useradd \(name) made no user")
        }
        if !groups.isEmpty {
            let memberOf = try output(["id", "-nG", name]).split(separator: " ").map(String.init)
            for group in groups where !memberOf.contains(group) { try administer(["usermod", "-a", "-G", group, name]) }
        }
        return OtherUser(name: name, uid: uid, gid: gid)
    }

    /// The group `name`, created (`groupadd --system`) if missing; its group id.
    static func group(_ name: String) throws -> gid_t {
        if let fields = try entry("group", name), fields.count >= 3, let gid = gid_t(fields[2]) { return gid }
        try administer(["groupadd", "--system", name])
        guard let fields = try entry("group", name), fields.count >= 3, let gid = gid_t(fields[2]) else {
            throw SupportError("groupadd \(name) made no group")
        }
        return gid
    }

    /// The command line that runs `arguments` (a tool name or an absolute path first) as this
    /// user with its groups: `setpriv --reuid U --regid G --init-groups -- …`, under `umask`
    /// when one is given (else the test runner's).
    func command(_ arguments: [String], umask: String? = nil) -> [String] {
        let setpriv = [OtherUser.setprivPath, "--reuid", String(uid), "--regid", String(gid), "--init-groups", "--"]
        if let umask { return setpriv + OtherUser.underUmask(umask, arguments) }
        return setpriv + [OtherUser.program(arguments[0])] + arguments.dropFirst()
    }

    /// Runs a tool as this user to completion (working directory: the scratch folder).
    @discardableResult
    func runTool(
        _ arguments: [String], umask: String? = nil, in directory: TemporaryDirectory, environment: [String: String] = toolEnvironment
    ) throws -> ToolResult {
        try RunningTool(command(arguments, umask: umask), scratch: directory.scratch, environment: environment).wait()
    }

    /// `arguments` (a tool name or an absolute path first) as a command line that sets `umask`
    /// first: `bash -c 'umask M; exec "$0" "$@"' TOOL ARGS`. Runs as the caller.
    static func underUmask(_ umask: String, _ arguments: [String]) -> [String] {
        [bashPath, "-c", "umask \(umask); exec \"$0\" \"$@\"", program(arguments[0])] + arguments.dropFirst()
    }

    /// Makes folder `path` (parents must exist) owned by this user, mode 0755.
    func makeFolder(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        guard chown(path, uid, gid) == 0, chmod(path, 0o755) == 0 else { throw SupportError("cannot hand \(path) to \(name)") }
    }

    /// Lets other users traverse and read `directory` (mkdtemp makes it 0700) and its scratch folder.
    static func openUp(_ directory: TemporaryDirectory) throws {
        for path in [directory.path, directory.scratch] where chmod(path, 0o755) != 0 {
            throw SupportError("chmod 0755 \(path) failed: errno \(errno)")
        }
    }

    /// The uid every id field of `/proc/<pid>/status` shows (nil when they differ or it is gone).
    static func uid(ofProcess pid: Int32) -> uid_t? {
        guard let uids = ProcessIdentity.userIDs(of: pid), let first = uids.first, uids.allSatisfy({ $0 == first }) else { return nil }
        return first
    }

    /// The distinct group ids of the `Gid:` line and the `Groups:` line of `/proc/<pid>/status`.
    static func groups(ofProcess pid: Int32) -> (gids: Set<gid_t>, supplementary: Set<gid_t>) {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        func numbers(_ prefix: String) -> Set<gid_t> {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return [] }
            return Set(line.dropFirst(prefix.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) })
        }
        return (numbers("Gid:"), numbers("Groups:"))
    }

    private static var setprivPath: String { executableOnPath("setpriv") ?? "/usr/bin/setpriv" }

    /// A tool name as the path of the built tool; an absolute path as it is.
    private static func program(_ name: String) -> String { name.hasPrefix("/") ? name : toolPath(name) }

    /// The fields of `name`'s entry in database `database` (`getent passwd NAME`), or nil.
    private static func entry(_ database: String, _ name: String) throws -> [Substring]? {
        let (status, text) = try execute(["getent", database, name])
        guard status == 0 else { return nil }
        let line = text.split(separator: "\n").first ?? ""
        return line.split(separator: ":", omittingEmptySubsequences: false)
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
