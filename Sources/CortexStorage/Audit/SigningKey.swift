import COpenSSL
import CortexCore

/// An Ed25519 key that signs journal lines (docs/decisions/044-signed-journal.md). Signing runs
/// on the curve's arithmetic directly (`CortexEd25519.h`, with OpenSSL's low-level SHA-512): OpenSSL
/// 3's EVP interface would cost every signing process about 1 ms of set-up. Checking a signature
/// (`verify`) goes through EVP. The key is loaded once per process (`SigningKeyFile.currentUser()`).
public final class SigningKey: RecordSigner, @unchecked Sendable {
    /// The 32-byte private seed (read by `SigningKeyFile` when it writes a new key).
    let seed: [UInt8]
    /// The raw 32-byte public key.
    public let publicKey: [UInt8]
    /// `SigningKey.fingerprint(of: publicKey)`.
    public let keyFingerprint: String

    /// The key whose 32-byte private seed is `seed`, or nil when it is not 32 bytes. `publicKey`
    /// (its public half, as its key file keeps it) saves deriving it; nil derives it.
    public init?(seed: [UInt8], publicKey: [UInt8]? = nil) {
        guard seed.count == 32 else { return nil }
        var derived = [UInt8](repeating: 0, count: 32)
        if let publicKey, publicKey.count == 32 {
            derived = publicKey
        } else {
            seed.withUnsafeBufferPointer { seedBytes in cortex_ed25519_public_key(&derived, seedBytes.baseAddress) }
        }
        self.seed = seed
        self.publicKey = derived
        self.keyFingerprint = SigningKey.fingerprint(of: derived)
    }

    /// The signature (64 bytes) of `message`.
    public func signature(of message: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: 64)
        message.withUnsafeBufferPointer { bytes in
            seed.withUnsafeBufferPointer { seedBytes in
                publicKey.withUnsafeBufferPointer { publicBytes in
                    cortex_ed25519_sign(&signature, bytes.baseAddress, bytes.count, seedBytes.baseAddress, publicBytes.baseAddress)
                }
            }
        }
        return signature
    }

    /// The signature OpenSSL's EVP interface gives `message` with this key (the tests compare it
    /// with `signature(of:)`: Ed25519 signatures are deterministic).
    func openSSLSignature(of message: [UInt8]) -> [UInt8] {
        guard let key = seed.withUnsafeBufferPointer({ EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0.baseAddress, 32) }) else {
            return []
        }
        defer { EVP_PKEY_free(key) }
        guard let context = EVP_MD_CTX_new() else { return [] }
        defer { EVP_MD_CTX_free(context) }
        var signature = [UInt8](repeating: 0, count: 64)
        var length = 64
        guard EVP_DigestSignInit(context, nil, nil, nil, key) == 1,
            message.withUnsafeBufferPointer({ EVP_DigestSign(context, &signature, &length, $0.baseAddress, $0.count) }) == 1
        else { return [] }
        return signature
    }

    /// The public key OpenSSL derives from this key's seed (for the same comparison).
    func openSSLPublicKey() -> [UInt8] {
        guard let key = seed.withUnsafeBufferPointer({ EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0.baseAddress, 32) }) else {
            return []
        }
        defer { EVP_PKEY_free(key) }
        var publicKey = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_get_raw_public_key(key, &publicKey, &length) == 1 else { return [] }
        return publicKey
    }

    /// True when `signature` is `publicKey`'s (32 raw bytes) signature of `message`.
    public static func verify(
        publicKey: [UInt8], signature: [UInt8], message: UnsafeBufferPointer<UInt8>
    ) -> Bool {
        guard publicKey.count == 32, signature.count == 64,
            let key = publicKey.withUnsafeBufferPointer({ EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, 32) })
        else { return false }
        defer { EVP_PKEY_free(key) }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, nil, nil, key) == 1 else { return false }
        return signature.withUnsafeBufferPointer { EVP_DigestVerify(context, $0.baseAddress, 64, message.baseAddress, message.count) } == 1
    }

    /// A key's fingerprint: the first 16 bytes of the SHA-256 of its raw public key, in hex.
    public static func fingerprint(of publicKey: [UInt8]) -> String {
        String(Hex.encode(SHA256Digest.of(publicKey).prefix(16)))
    }
}

/// SHA-256, fed piece by piece (key fingerprints, the seal chain: docs/journal-format.md),
/// through OpenSSL's low-level interface: no provider set-up in a process that only signs.
public final class SHA256Digest {
    private var context = SHA256_CTX()

    /// A digest with nothing fed yet.
    public init() { cortex_sha256_init(&context) }

    /// Feeds `bytes`.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        cortex_sha256_update(&context, bytes.baseAddress, bytes.count)
    }

    /// Feeds `bytes`.
    public func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The 32-byte digest of everything fed.
    public func finish() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        cortex_sha256_final(&digest, &context)
        return digest
    }

    /// The SHA-256 of `bytes`.
    public static func of(_ bytes: [UInt8]) -> [UInt8] {
        let digest = SHA256Digest()
        digest.update(bytes)
        return digest.finish()
    }
}

/// Lowercase hex.
public enum Hex {
    /// `bytes` as lowercase hex.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The bytes `text` spells in hex (either case), or nil when it is not hex.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func digit(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = digit(utf8[index]), let low = digit(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }
}
