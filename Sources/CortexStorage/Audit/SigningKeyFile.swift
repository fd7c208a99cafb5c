import CortexCore
import Synchronization

/// Where a user's signing key lives and how it is made on first use (docs/decisions/044-signed-journal.md).
///
/// `$XDG_CONFIG_HOME/cortex/signing-key`, else `$HOME/.config/cortex/signing-key`, else the same
/// under the home folder `/etc/passwd` gives the effective user (a static tool or a worker
/// without `HOME`). The folder is 0700 and the file 0600, both owned by the user; anything else
/// there (a link, a file another user owns or others may write) is refused and the next place
/// is tried. The file holds the 32-byte Ed25519 seed in hex, then the public key in hex. It is created under a temp name
/// and linked in (`link` never replaces): 100 processes' first use converges on one key.
public enum SigningKeyFile {
    /// The file's name inside the `cortex` folder.
    public static let fileName = "signing-key"

    /// The key found last and its user (a process signs as one user; a single entry, not a
    /// dictionary, whose first use in a static tool costs a conformance lookup of its key type).
    private static let cache = Mutex<(uid: UInt32, key: SigningKey)?>(nil)

    /// The effective user's key, loaded (or created) once per process; nil when no place for
    /// it can be used (then records go unsigned and `cortex verify --audit` names them).
    public static func currentUser() -> SigningKey? {
        let uid = POSIX.effectiveUserID
        if let cached = cache.withLock({ $0 }), cached.uid == uid { return cached.key }
        var variables: [String: String] = [:]
        for name in ["XDG_CONFIG_HOME", "HOME"] { variables[name] = POSIX.environmentValue(name) }
        var tried: [String] = []
        // /etc/passwd is read only when the environment names no usable place.
        for withPasswd in [false, true] {
            for folder in candidateFolders(environment: variables, uid: uid, passwd: withPasswd) where !tried.contains(folder) {
                tried.append(folder)
                guard let key = try? loadOrCreate(in: folder, uid: uid) else { continue }
                cache.withLock { $0 = (uid, key) }
                return key
            }
        }
        return nil
    }

    /// The folders tried, in order (the passwd home's last, and only with `passwd`).
    public static func candidateFolders(environment: [String: String], uid: UInt32, passwd: Bool = true) -> [String] {
        var bases: [String] = []
        if let config = environment["XDG_CONFIG_HOME"], config.hasPrefix("/") { bases.append(config) }
        if let home = environment["HOME"], home.hasPrefix("/") { bases.append(home + "/.config") }
        if passwd, let home = UserDatabase.system.homeDirectory(uid: uid), home.hasPrefix("/") { bases.append(home + "/.config") }
        var seen: Set<String> = []
        return bases.filter { seen.insert($0).inserted }.map { $0 + "/cortex" }
    }

    /// The key in `folder` (made with the folder when missing), checked to be `uid`'s alone.
    /// - Throws: `permissionDenied` for a folder or file not the user's alone, `corrupt` for a
    ///   malformed file, an I/O error when it cannot be made.
    public static func loadOrCreate(in folder: String, uid: UInt32) throws(CortexError) -> SigningKey {
        // Every call after the first: the key read at once, with its owner and mode checked. A
        // file that is the user's and 0600 was made by the user (or root) and is read by nobody
        // else, whatever its folder; anything else goes the long way below, which says why.
        if let key = try? read(FolderDescriptor(root: folder), folder: folder, uid: uid) { return key }
        let (parent, name) = FolderDescriptor.containing(folder)
        let (grandparent, base) = FolderDescriptor.containing(parent.root)
        // `.config` as a user's own (the home folder itself is never made here).
        if (try? POSIX.status(grandparent.root)) != nil {
            try? grandparent.makeDirectory(base, mode: .masked(0o700))
        }
        try withPath("create", folder) { () throws(Errno) in try parent.makeDirectory(name, mode: .exact(0o700)) }
        guard let info = try withPath("stat", folder, { () throws(Errno) in try parent.status(name) }),
            info.owner == uid, info.permissions & 0o077 == 0
        else { throw .permissionDenied("\(folder) is not \(uid)'s alone (owner and mode 0700 required)") }
        let directory = FolderDescriptor(root: folder)
        if let key = try read(directory, folder: folder, uid: uid) { return key }
        guard let made = SigningKey(seed: POSIX.randomBytes(32)) else { throw .corrupt("no random seed for a signing key") }
        let text = Hex.encode(made.seed) + "\n" + Hex.encode(made.publicKey) + "\n"
        _ = try AtomicFile.createIfAbsent(fileName, in: directory, with: Array(text.utf8), mode: .exact(0o600))
        // Ours or the first process's (which won the link): everyone reads the one that is there.
        guard let key = try read(directory, folder: folder, uid: uid) else {
            throw .corrupt("\(folder)/\(fileName) vanished after it was created")
        }
        return key
    }

    /// The key in `directory`, or nil when there is no file yet.
    private static func read(_ directory: FolderDescriptor, folder: String, uid: UInt32) throws(CortexError) -> SigningKey? {
        let path = folder + "/" + fileName
        let bytes: [UInt8]
        let info: FileStatus
        do { (bytes, info) = try directory.readFileWithStatus(fileName, limit: 256) } catch {
            if error == .noSuchFileOrDirectory { return nil }
            throw .system("read", path, error)
        }
        guard info.owner == uid, info.permissions & 0o077 == 0 else {
            throw .permissionDenied("\(path) is not \(uid)'s alone (owner and mode 0600 required)")
        }
        // The seed, then (since it is needed for every record and costs a scalar multiplication
        // to derive) the public key.
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        let publicKey = lines.count > 1 ? Hex.decode(lines[1]) : nil
        guard let first = lines.first, let seed = Hex.decode(first), seed.count == 32,
            let key = SigningKey(seed: seed, publicKey: publicKey)
        else { throw .corrupt("\(path) is not a Cortex signing key (64 hex digits)") }
        return key
    }
}
