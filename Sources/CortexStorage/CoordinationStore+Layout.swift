import CortexCore

/// The folder's layout and settings: creating the folders, the journal's first files and
/// `config.json`, and reading `config.json` back.
extension CoordinationStore {
    /// Where the journal of the folder at `root` lives, from its `config.json` (the file backend
    /// when there is none yet).
    /// - Throws: `configuration` for a bad `config.json`, `io` when it cannot be read.
    public static func journalBackend(root: String) throws(CortexError) -> JournalBackend {
        let layout = CoordinationLayout(root: root)
        guard let bytes = try readConfig(layout) else { return .file }
        return try parseConfig(bytes, layout).backend
    }

    /// The journal of an existing coordination folder, for readers that need no state (verify, tail).
    /// - Throws: `configuration` on an unsupported file system, `notFound` when there is no journal.
    public static func existingJournal(root: String) throws(CortexError) -> FileJournal {
        let layout = CoordinationLayout(root: root)
        try SupportedFileSystem.check(layout.root)
        if case .etcd(let settings) = try journalBackend(root: root) {
            throw .configuration(
                "\(layout.root)'s journal is on etcd (namespace '\(settings.namespace)'): this command reads a journal of files only")
        }
        guard try withPath("stat", layout.journal, { () throws(Errno) in try layout.folder.status(layout.journal) }) != nil else {
            throw .notFound("no journal at \(layout.journal) (create it with 'cortex init --dir \(layout.root)')")
        }
        return FileJournal(folder: layout.folder, directory: layout.journal, permissions: FolderPermissions.detect(root: layout.root))
    }

    /// Creates the folders, the first segment and `config.json` if they are missing, with the
    /// modes `permissions` gives (the root's own when it already exists). Safe to run from many
    /// processes at once: every step either creates or finds the thing already there.
    public static func createLayout(
        _ layout: CoordinationLayout, config: CortexConfig, permissions: FolderPermissions = .personal
    ) throws(CortexError) {
        try SupportedFileSystem.check(layout.root)
        try makeDirectories(layout.root, mode: permissions.directory(.shared))
        let folders: [(String, FolderPermissions.Content)] = [
            (layout.stateFolder, .shared), (layout.finishedTasks, .shared),
            (layout.workers, .private), (layout.results, .private), (layout.contexts, .private),
            (layout.requests, .private),
        ]
        // An etcd folder has no journal of its own: no journal/ for file-only readers to find.
        let journalFolders: [(String, FolderPermissions.Content)] =
            config.backend == .file ? [(layout.journal, .shared), (layout.archive, .shared)] : []
        for (folder, content) in journalFolders + folders {
            try Files.makeDirectory(folder, in: layout.folder, mode: permissions.directory(content))
        }
        try config.backend.createJournalFiles(layout: layout, permissions: permissions)
        try AtomicFile.createIfAbsent(
            layout.config, in: layout.folder, with: config.json.prettySerialized(), mode: permissions.file(.shared))
    }

    /// `mkdir -p`: the parents under the umask, the last folder with `mode`.
    private static func makeDirectories(_ path: String, mode: CreationMode) throws(CortexError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        let components = path.split(separator: "/").filter { $0 != "." }
        for (index, component) in components.enumerated() {
            prefix += "/" + component
            // The user's path to the folder may pass through links (their choice): each level is
            // made in the folder that holds it, as the path names it.
            let (parent, name) = FolderDescriptor.containing(prefix)
            try Files.makeDirectory(name, in: parent, mode: index == components.count - 1 ? mode : .masked(0o777))
        }
    }

    /// The folder's `config.json` as it is now, or nil when the folder has none.
    /// - Throws: `configuration` for a file that is not valid, an I/O error.
    public static func existingConfig(root: String) throws(CortexError) -> CortexConfig? {
        let layout = CoordinationLayout(root: root)
        guard let bytes = try readConfig(layout) else { return nil }
        return try parseConfig(bytes, layout)
    }

    /// `config.json`'s bytes, or nil when it does not exist (one read, no separate stat). A link,
    /// a FIFO or a file over `FileLimits.config` is refused.
    static func readConfig(_ layout: CoordinationLayout) throws(CortexError) -> [UInt8]? {
        do {
            return try layout.folder.readFile(layout.config, limit: FileLimits.config)
        } catch {
            if error == .noSuchFileOrDirectory { return nil }
            throw .system("read", layout.config, error)
        }
    }

    static func parseConfig(_ bytes: [UInt8], _ layout: CoordinationLayout) throws(CortexError) -> CortexConfig {
        let json: JSONValue
        do { json = try JSONValue.parse(bytes) } catch {
            throw .configuration("\(layout.config) is not valid JSON: \(error)")
        }
        return try CortexConfig(json: json, path: layout.config)
    }
}
