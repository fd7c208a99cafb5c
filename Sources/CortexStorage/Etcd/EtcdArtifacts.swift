import CortexCore

/// Files every host of an etcd namespace can read (docs/decisions/045-artifacts-across-hosts.md):
/// task contexts (`context/ctx-….txt`) and result files (`results/<task>.attempt-N.json`), stored
/// under the name they have in a host's folder.
///
/// - `<namespace>/artifacts/<name>/<chunk>`: the file's bytes in chunks of `chunkBytes` (the
///   chunk index in six digits), each one put of its own, far below etcd's request limit
///   (`--max-request-bytes`, 1.5 MiB by default, after the JSON gateway's base64 added a third).
/// - `<namespace>/artifacts/<name>/manifest`: size, chunk count, chunk size and SHA-256 of the
///   whole file, put LAST: a reader that finds no manifest finds no artifact, whatever chunks
///   an interrupted upload left.
///
/// Every key of one artifact is put with one lease (the folder's `result_ttl`): etcd deletes the
/// artifact on every host's behalf when it expires, and an upload that fails revokes its lease,
/// which deletes the chunks it wrote (or they expire with the lease when the revoke fails too).
/// A put retried after a lost reply writes the same bytes at the same key: harmless.
public struct EtcdArtifacts: Sendable {
    /// The cluster.
    public let client: EtcdClient
    /// The namespace the artifacts belong to.
    public let namespace: String

    /// Bytes per chunk: 512 KiB, about 700 KiB in the gateway's base64.
    public static let chunkBytes = 512 << 10
    /// The largest artifact stored (and the largest context file an etcd folder accepts).
    public static let maximumBytes = 64 << 20

    /// The artifacts of `namespace` on `client`.
    public init(client: EtcdClient, namespace: String) {
        self.client = client
        self.namespace = namespace
    }

    /// True for the names a folder gives its shared files: `context/NAME` or `results/NAME`,
    /// NAME of 1-200 letters, digits, `.`, `_` and `-`, not starting with a dot. A name read from
    /// a record is checked before it names a key or a local file.
    public static func isValidName(_ name: String) -> Bool {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "context" || parts[0] == "results", let leaf = parts.last, !leaf.isEmpty,
            leaf.utf8.count <= 200, !leaf.hasPrefix(".")
        else { return false }
        return leaf.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }

    /// `<namespace>/artifacts/`.
    public var prefix: [UInt8] { Array("\(namespace)/artifacts/".utf8) }

    /// The key of chunk `index` of artifact `name`.
    public func chunkKey(_ name: String, _ index: Int) -> [UInt8] {
        let digits = String(index)
        return prefix + Array("\(name)/\(String(repeating: "0", count: max(0, 6 - digits.count)))\(digits)".utf8)
    }

    /// The key of artifact `name`'s manifest.
    public func manifestKey(_ name: String) -> [UInt8] { prefix + Array("\(name)/manifest".utf8) }

    /// Stores `bytes` as artifact `name` for `ttlSeconds` (at least 2: etcd's smallest lease):
    /// a lease, every chunk, then the manifest. A manifest already there with the same checksum
    /// is kept (a retried call); with another, the call is refused and nothing is written.
    /// Returns true when this call wrote the artifact, false when it found it stored.
    /// - Throws: `.badInput` over `maximumBytes`; `.refused` for a name stored with other
    ///   content; etcd's errors (after revoking the lease, so no chunk stays).
    @discardableResult
    public func store(_ name: String, bytes: [UInt8], ttlSeconds: Int64) throws(CortexError) -> Bool {
        guard EtcdArtifacts.isValidName(name) else { throw .badInput("not an artifact name: \(Values.printable(name))") }
        guard bytes.count <= EtcdArtifacts.maximumBytes else {
            throw .badInput("\(name) is larger than the \(EtcdArtifacts.maximumBytes)-byte limit of artifacts in etcd")
        }
        let digest = EtcdArtifacts.sha256(bytes)
        if let existing = try manifest(name) {
            guard existing.sha256 == digest, existing.size == bytes.count else {
                throw .refused("artifact \(name) is already stored in etcd with other content")
            }
            return false
        }
        let lease = try client.leaseGrant(ttlSeconds: max(2, ttlSeconds))
        let chunkSize = EtcdArtifacts.chunkBytes
        let chunks = (bytes.count + chunkSize - 1) / chunkSize
        let manifest = ArtifactManifest(size: bytes.count, chunks: chunks, chunkBytes: chunkSize, sha256: digest, lease: lease.id)
        do throws(CortexError) {
            for index in 0..<chunks {
                let start = index * chunkSize
                try client.put(
                    key: chunkKey(name, index), value: Array(bytes[start..<min(bytes.count, start + chunkSize)]), leaseID: lease.id)
            }
            try client.put(key: manifestKey(name), value: Array(manifest.json.jsonText.utf8), leaseID: lease.id)
        } catch {
            try? client.leaseRevoke(id: lease.id)
            throw error
        }
        return true
    }

    /// The manifest of artifact `name`, or nil when none is stored (never, not yet complete, or
    /// its lease expired).
    /// - Throws: `.corrupt` for a manifest that does not parse; etcd's errors.
    public func manifest(_ name: String) throws(CortexError) -> ArtifactManifest? {
        guard let stored = try client.get(key: manifestKey(name), atRevision: nil) else { return nil }
        guard let value = try? JSONValue.parse(stored.value), let manifest = ArtifactManifest(json: value) else {
            throw .corrupt("artifact \(name) in etcd has a damaged manifest; refusing it")
        }
        return manifest
    }

    /// The bytes of artifact `name`, every chunk read and the whole checked against the manifest.
    /// - Throws: `.notFound` without a manifest; `.corrupt` for a missing or mis-sized chunk or a
    ///   checksum that does not match (never a shorter file); etcd's errors.
    public func fetch(_ name: String) throws(CortexError) -> [UInt8] {
        guard EtcdArtifacts.isValidName(name) else { throw .corrupt("not an artifact name: \(Values.printable(name))") }
        guard let manifest = try manifest(name) else {
            throw .notFound("no artifact \(name) in etcd namespace \(namespace) (never stored, or its TTL passed)")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(manifest.size)
        for index in 0..<manifest.chunks {
            guard let chunk = try client.get(key: chunkKey(name, index), atRevision: nil) else {
                throw .corrupt("artifact \(name) in etcd is incomplete: chunk \(index) of \(manifest.chunks) is missing; refusing it")
            }
            let expected = index == manifest.chunks - 1 ? manifest.size - index * manifest.chunkBytes : manifest.chunkBytes
            guard chunk.value.count == expected else {
                throw .corrupt(
                    "artifact \(name) in etcd is damaged: chunk \(index) holds \(chunk.value.count) bytes, not \(expected); refusing it")
            }
            bytes += chunk.value
        }
        guard EtcdArtifacts.sha256(bytes) == manifest.sha256 else {
            throw .corrupt("artifact \(name) in etcd is damaged: its SHA-256 does not match its manifest; refusing it")
        }
        return bytes
    }

    /// Deletes artifact `name` by revoking its lease (best effort: an artifact not deleted
    /// expires with its lease).
    public func remove(_ name: String) {
        guard let manifest = try? manifest(name) else { return }
        try? client.leaseRevoke(id: manifest.lease)
    }

    /// The SHA-256 of `bytes`, in lowercase hex.
    public static func sha256(_ bytes: [UInt8]) -> String { Hex.encode(SHA256Digest.of(bytes)) }
}

/// What an artifact's manifest says: the file's size, how it is cut, its checksum and the lease
/// its keys live by.
public struct ArtifactManifest: Equatable, Sendable {
    /// The file's size in bytes.
    public var size: Int
    /// How many chunks hold it.
    public var chunks: Int
    /// The size of every chunk but the last.
    public var chunkBytes: Int
    /// The SHA-256 of the whole file, lowercase hex.
    public var sha256: String
    /// The etcd lease of every key of the artifact.
    public var lease: Int64

    /// A manifest from its parts.
    public init(size: Int, chunks: Int, chunkBytes: Int, sha256: String, lease: Int64) {
        self.size = size
        self.chunks = chunks
        self.chunkBytes = chunkBytes
        self.sha256 = sha256
        self.lease = lease
    }

    /// A manifest from its JSON, or nil when a member is missing or does not add up (a chunk
    /// count that does not cover the size, a size over the limit).
    public init?(json: JSONValue) {
        guard json["format"]?.intValue == 1, let size = json["size"]?.intValue, let chunks = json["chunks"]?.intValue,
            let chunkBytes = json["chunk_bytes"]?.intValue, let sha256 = json["sha256"]?.stringValue,
            let leaseText = json["lease"]?.stringValue, let lease = Int64(leaseText)
        else { return nil }
        let maximum = Int64(EtcdArtifacts.maximumBytes)
        guard sha256.utf8.count == 64, size >= 0, size <= maximum, chunkBytes > 0, chunkBytes <= 1 << 20 else { return nil }
        let needed: Int64 = (size + chunkBytes - 1) / chunkBytes
        guard chunks == needed else { return nil }
        self.init(size: Int(size), chunks: Int(chunks), chunkBytes: Int(chunkBytes), sha256: sha256, lease: lease)
    }

    /// The manifest's JSON (`format` 1; the lease as a string, as etcd writes 64-bit numbers).
    public var json: JSONValue {
        .object([
            "format": 1, "size": .int(Int64(size)), "chunks": .int(Int64(chunks)), "chunk_bytes": .int(Int64(chunkBytes)),
            "sha256": .string(sha256), "lease": .string(String(lease)),
        ])
    }
}
