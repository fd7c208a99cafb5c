import CortexCore

extension CoordinationLayout {
    /// `audit/`: what the signed journal needs besides the journal (docs/decisions/044-signed-journal.md).
    public var auditFolder: String { root + "/audit" }
    /// `audit/keys/`: one `KEY.pub` per signing key used in this folder, owned by its user.
    public var auditKeys: String { root + "/audit/keys" }
    /// `audit/verified`: how far the reaper's incremental check of sealed segments got.
    public var auditProgress: String { root + "/audit/verified" }
}

/// Who a signing key belongs to: the owner of its `audit/keys/KEY.pub`.
public struct KeyOwner: Equatable, Sendable {
    /// The key's fingerprint.
    public var key: String
    /// The raw 32-byte public key.
    public var publicKey: [UInt8]
    /// The user who created the `.pub` file (its owner, read with `fstat`): a record cannot forge it.
    public var uid: UInt32
}

/// The folder's registry of signing keys (docs/decisions/044-signed-journal.md).
///
/// A user's key is registered by a public-key file `audit/keys/KEY.pub` (the public key in hex)
/// that the user creates (`O_EXCL`, no link followed, mode 0644 exactly): its owner, which only
/// the kernel sets, attributes every record the key signed to that user, the way a request
/// file's owner names its requester (decision 022). `audit/keys/` is sticky, so no user can
/// remove or replace another's file. The process that creates the file appends an `audit.key`
/// record, which puts the key into the journal and its seal chain.
public enum AuditKeys {
    /// The `.pub` file's name for `key`.
    public static func fileName(_ key: String) -> String { key + ".pub" }

    /// What a key signs when it is registered: that it is the key of user `uid`. The `.pub` file
    /// carries that signature, so its owner must be the user the key itself names.
    static func claim(key: String, uid: UInt32) -> [UInt8] { Array("cortex audit key \(key) belongs to uid \(uid)\n".utf8) }

    /// Creates `audit/keys/KEY.pub` for `key` unless it is there. Returns true when this call
    /// created it (its caller then appends the `audit.key` record).
    public static func register(_ key: SigningKey, in layout: CoordinationLayout, permissions: FolderPermissions) throws(CortexError)
        -> Bool
    {
        let path = layout.auditKeys + "/" + fileName(key.keyFingerprint)
        if try withPath("stat", path, { () throws(Errno) in try layout.folder.status(path) }) != nil { return false }
        try Files.makeDirectory(layout.auditFolder, in: layout.folder, mode: permissions.directory(.shared))
        // Sticky: anyone who may write the folder registers a key, nobody removes another's.
        let keysMode: CreationMode = permissions.isGroupShared ? .exact(0o3770) : .masked(0o1777)
        try Files.makeDirectory(layout.auditKeys, in: layout.folder, mode: keysMode)
        let uid = POSIX.effectiveUserID
        let proof = key.signature(of: AuditKeys.claim(key: key.keyFingerprint, uid: uid))
        let text = Hex.encode(key.publicKey) + "\n" + String(uid) + "\n" + Hex.encode(proof) + "\n"
        return try AtomicFile.createIfAbsent(path, in: layout.folder, with: Array(text.utf8), mode: .exact(0o644))
    }

    /// The owner of `key` as its `.pub` file says, or nil when it has none or the file cannot be
    /// trusted: not a regular file, writable by group or others, or holding another key.
    public static func owner(of key: String, in layout: CoordinationLayout) -> KeyOwner? {
        guard !key.isEmpty, key.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        let path = layout.auditKeys + "/" + fileName(key)
        guard let (bytes, info) = try? layout.folder.readFileWithStatus(path, limit: 1024), info.permissions & 0o022 == 0 else {
            return nil
        }
        // The public key, the uid it was registered for, and the key's signature over both: a
        // user who copies another's file (or writes another's public key) owns a file whose uid
        // line is not theirs, and cannot sign one that is.
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard lines.count == 3, let publicKey = Hex.decode(lines[0]), publicKey.count == 32,
            SigningKey.fingerprint(of: publicKey) == key, let uid = UInt32(lines[1]), uid == info.owner,
            let proof = Hex.decode(lines[2]), proof.count == 64
        else { return nil }
        let claimed = claim(key: key, uid: uid)
        let holds = claimed.withUnsafeBufferPointer { SigningKey.verify(publicKey: publicKey, signature: proof, message: $0) }
        guard holds else { return nil }
        return KeyOwner(key: key, publicKey: publicKey, uid: info.owner)
    }
}
