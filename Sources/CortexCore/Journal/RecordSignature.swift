/// Signs journal lines (docs/decisions/044-signed-journal.md). The domain only places the
/// signature in the line (`RecordCodec.encode(_:signer:)`); the key and its algorithm live at
/// the edge (CortexStorage's `SigningKey`), so CortexCore stays pure.
public protocol RecordSigner: Sendable {
    /// The key's fingerprint, written as the line's `signer`: lowercase hex, no quote or backslash.
    var keyFingerprint: String { get }
    /// The signature of `message` (the line's bytes before `,"signer":`).
    func signature(of message: [UInt8]) -> [UInt8]
}

/// The signature part of a journal line: what was signed, by which key, and the signature.
public struct LineSignature: Equatable, Sendable {
    /// How many bytes at the line's start the signature covers (everything before `,"signer":`).
    public var signedLength: Int
    /// The signer's key fingerprint, as written.
    public var keyFingerprint: String
    /// The signature's bytes (decoded from hex); nil when it is of odd length or over 512 bytes.
    public var signature: [UInt8]?
}

/// The record kinds of the audit trail (docs/journal-format.md). The fold ignores both.
extension Record {
    /// `audit.key {key, public, uid}`: a signing key used in this folder from now on, appended once
    /// by the process that registers it (`audit/keys/KEY.pub`).
    public static let auditKeyKind = "audit.key"
    /// `audit.start {}`: the audited era starts here; every later record must be signed.
    public static let auditStartKind = "audit.start"
}
