import CortexCore
import CortexStorage

/// Everything a worker runs with, captured when it was asked for, in a file only its requester
/// can read: `requests/<name>`, created once (`O_EXCL`), mode 0600 (docs/decisions/022-requester-rights.md).
///
/// The journal names the file (`WorkerSpec.request`); the file's **owner** is the requester,
/// which no record can forge. Whoever starts the worker later (its supervisor, a restart, a
/// promotion out of the queue, the reaper's replacement of a lost pool member) reads the command,
/// working directory and environment from here, never from the record or its own environment,
/// and runs them as that owner or not at all.
public struct WorkerRequest: Equatable, Sendable {
    /// The program and its arguments.
    public var command: [String]
    /// Where it runs, or nil for the launcher's working directory.
    public var workingDirectory: String?
    /// The requester's whole environment (`PATH` included).
    public var environment: [String: String]

    /// The largest request file read (command line and environment together).
    public static let maximumBytes = 1 << 20

    /// A request from its parts.
    public init(command: [String], workingDirectory: String?, environment: [String: String]) {
        self.command = command
        self.workingDirectory = workingDirectory
        self.environment = environment
    }

    /// A fresh, unguessable name: `r-` and 24 random hex digits.
    public static func newName() -> String { "r-" + POSIX.randomHex(bytes: 12) }

    /// True for a name `newName` could have made (so a record cannot point outside `requests/`).
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        return bytes.count > 2 && bytes.count <= 64 && name.hasPrefix("r-")
            && bytes.dropFirst(2).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The request as the file holds it (JSON).
    public var json: JSONValue {
        .object([
            "command": .array(command.map { .string($0) }),
            "environment": .object(environment.sorted { $0.key < $1.key }.map { JSONMember($0.key, .string($0.value)) }),
            "workdir": .optional(workingDirectory),
        ])
    }

    /// Reads a request written by `json`; nil when malformed.
    public init?(json: JSONValue) {
        guard let items = json["command"]?.arrayValue, let members = json["environment"]?.objectMembers else { return nil }
        let command = items.compactMap(\.stringValue)
        guard command.count == items.count, !command.isEmpty else { return nil }
        var environment: [String: String] = [:]
        for member in members {
            guard let value = member.value.stringValue, !member.key.isEmpty, !member.key.contains("=") else { return nil }
            environment[member.key] = value
        }
        self.init(command: command, workingDirectory: json["workdir"]?.stringValue, environment: environment)
    }

    /// Writes this request as `requests/<name>` of `layout`: a new file (never an existing
    /// one, never through a symlink), mode 0600, owned by the calling user.
    /// - Throws: `CortexError.badInput` when it is larger than `maximumBytes`, `.io` otherwise.
    public func create(_ name: String, in layout: CoordinationLayout) throws(CortexError) {
        let bytes = Array((json.jsonText + "\n").utf8)
        guard bytes.count <= WorkerRequest.maximumBytes else {
            throw .badInput("the worker's command line and environment take \(bytes.count) bytes, more than \(WorkerRequest.maximumBytes)")
        }
        try Files.makeDirectory(
            layout.requests, in: layout.folder, mode: FolderPermissions.detect(root: layout.root).directory(.private))
        let path = layout.requests + "/" + name
        let file = try withPath("create", path) { () throws(Errno) in
            FileDescriptor(rawValue: try layout.folder.open(path, [.writeOnly, .create, .exclusive], mode: 0o600))
        }
        try file.closeAfter { () throws(CortexError) in
            do throws(Errno) {
                try CreationMode.exact(0o600).apply(to: file.rawValue)
                try file.writeAll(bytes)
            } catch {
                layout.folder.unlink(path)
                throw .system("write", path, error)
            }
        }
    }

    /// What `read` found: the request and the user who made it.
    public struct Found: Equatable, Sendable {
        /// The request.
        public var request: WorkerRequest
        /// The file's owner: the only user the worker may run as.
        public var owner: UInt32
    }

    /// Reads `requests/<name>`: a regular file (not a symlink, FIFO or device) of at most
    /// `maximumBytes`, writable by its owner only, and returns it with its owner.
    /// - Throws: `CortexError.notFound` when it is missing, `.io` with `EPERM` (exit 77) when
    ///   it is not a private regular file, `.badInput` when it is too large or malformed.
    public static func read(_ name: String, in layout: CoordinationLayout) throws(CortexError) -> Found {
        let path = layout.requests + "/" + name
        guard isValidName(name) else { throw .badInput("invalid worker request name '\(Values.printable(name))'") }
        let bytes: [UInt8]
        let info: FileStatus
        do throws(Errno) {
            (bytes, info) = try layout.folder.readFileWithStatus(path, limit: maximumBytes)
        } catch {
            // requests/ itself missing, or not a real folder (a link, a file): a failure to open the
            // folder, not a verdict on the request.
            if [.noSuchFileOrDirectory, .notDirectory, .tooManySymbolicLinkLevels].contains(error) && !hasFolder(layout) {
                throw .system("open", layout.requests, error)
            }
            switch error {
            case .noSuchFileOrDirectory: throw .notFound("no worker request \(path) (the worker has ended, or its request was removed)")
            case .fileTooLarge: throw .badInput("\(path) is larger than \(maximumBytes) bytes")
            case .notRegularFile, .tooManySymbolicLinkLevels:
                throw .io(operation: "trust", path: path + " (not a regular file)", errno: Errno.notPermitted)
            default: throw .system("read", path, error)
            }
        }
        guard info.permissions & 0o022 == 0 else {
            throw .io(operation: "trust", path: path + " (writable by others than its owner)", errno: Errno.notPermitted)
        }
        guard let json = try? JSONValue.parse(bytes), let request = WorkerRequest(json: json) else {
            throw .badInput("\(path) is not a worker request")
        }
        return Found(request: request, owner: info.owner)
    }

    /// The owner of `requests/<name>` (a regular file, not followed through a symlink), or nil
    /// when there is no such file: whom a worker is owed to.
    public static func owner(_ name: String, in layout: CoordinationLayout) -> UInt32? {
        guard isValidName(name), let info = try? layout.folder.status(layout.requests + "/" + name), info.isRegularFile
        else { return nil }
        return info.owner
    }

    /// Removes `requests/<name>` (the worker has ended for good: nothing may start from it again).
    /// Best effort: a request that cannot be removed is left to the reaper.
    public static func remove(_ name: String, in layout: CoordinationLayout) {
        guard isValidName(name) else { return }
        layout.folder.unlink(layout.requests + "/" + name)
    }

    /// True when `requests/` is a real folder (not a link) inside the coordination folder.
    static func hasFolder(_ layout: CoordinationLayout) -> Bool {
        guard let info = try? layout.folder.status(layout.requests) else { return false }
        return info.isDirectory
    }
}
