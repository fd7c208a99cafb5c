import CortexCore
import Foundation
import Testing

// Helpers for the tests that need a second, unprivileged account (a hostile or simply another
// user of a shared folder, with root as the reaper): creating it, running a tool as it, and
// making folders it owns or can traverse. They run only as root; `SecondUser.skipReason` says
// why they are skipped otherwise.

/// An unprivileged account for the tests, created on first use.
struct SecondUser: Sendable {
    /// Its login name.
    let name: String
    /// Its user id.
    let uid: uid_t
    /// Its primary group id.
    let gid: gid_t

    /// Why tests needing a second user cannot run here (nil when they can: the runner is root).
    static var skipReason: String? {
        getuid() == 0 ? nil : "needs root to create a second user and to run tools as it (uid \(getuid()))"
    }

    /// The account `name` (default `cortex-other`), created with `useradd --system` when missing.
    static func ensure(_ name: String = "cortex-other") throws -> SecondUser {
        if let user = lookup(name) { return user }
        let created = try run(["/usr/sbin/useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        // A concurrent test may have created it first: look again either way.
        guard let user = lookup(name) else { throw SupportError("useradd \(name) failed (exit \(created))") }
        return user
    }

    /// The account from `getent passwd NAME`, or nil.
    static func lookup(_ name: String) -> SecondUser? {
        guard let output = try? capture(["/usr/bin/getent", "passwd", name]) else { return nil }
        let fields = output.split(separator: ":", omittingEmptySubsequences: false)
        guard fields.count >= 4, let uid = UInt32(fields[2]), let gid = UInt32(fields[3]) else { return nil }
        return SecondUser(name: name, uid: uid, gid: gid)
    }

    /// The command line that runs `arguments` (a tool name or an absolute path first) as this
    /// user with its groups: `setpriv --reuid U --regid G --init-groups -- …`.
    func command(_ arguments: [String]) -> [String] {
        let program = arguments[0].hasPrefix("/") ? arguments[0] : toolPath(arguments[0])
        return [setprivPath, "--reuid", String(uid), "--regid", String(gid), "--init-groups", "--", program] + arguments.dropFirst()
    }

    /// Runs a tool as this user to completion (working directory: the scratch folder).
    @discardableResult
    func runTool(_ arguments: [String], in directory: TemporaryDirectory, environment: [String: String] = toolEnvironment) throws
        -> ToolResult
    {
        try RunningTool(command(arguments), scratch: directory.scratch, environment: environment).wait()
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

    private static func run(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    private static func capture(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return "" }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension SecondUser {
    private var setprivPath: String { SecondUser.setprivPath }
}
