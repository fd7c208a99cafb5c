import Foundation
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// Signed journal lines (docs/decisions/044-signed-journal.md): the envelope, what the signature
/// covers, the fold ignoring the two fields, hostile signature fields never trapping a fold or a
/// check, and the per-user key file.
@Suite struct SignedRecordTests {
    static let key = SigningKey(seed: (0..<32).map { UInt8($0 * 7 & 0xFF) })!

    /// `line` (no newline) with its checksum made right again, as a hostile writer would.
    static func withFreshChecksum(_ line: [UInt8]) -> [UInt8] {
        let marker = Array(#","crc":""#.utf8)
        var end = max(0, line.count - marker.count)
        while end > 0, !line[end..<(end + marker.count)].elementsEqual(marker) { end -= 1 }
        let body = Array(line[..<end])
        let crc = String(CRC32C.checksum(body), radix: 16)
        return body + marker + Array((String(repeating: "0", count: 8 - crc.count) + crc).utf8) + Array(#""}"#.utf8)
    }

    static func verifies(_ line: [UInt8], with key: SigningKey) -> Bool {
        guard let signature = RecordCodec.signature(ofLine: line), let bytes = signature.signature else { return false }
        return line.withUnsafeBufferPointer {
            SigningKey.verify(
                publicKey: key.publicKey, signature: bytes, message: UnsafeBufferPointer(rebasing: $0[..<signature.signedLength]))
        }
    }

    @Test func aSignedLineDecodesToTheSameRecordAndItsSignatureHolds() throws {
        let record = Record(
            id: "r0000000000000001", timeMilliseconds: 1_700_000_000_000, kind: "budget.allocate", data: .object(["tokens": .int(5)]))
        var signed = try RecordCodec.encode(record, signer: Self.key)
        let plain = try RecordCodec.encode(record)
        signed.removeLast()
        let text = String(decoding: signed, as: UTF8.self)
        #expect(text.contains(#"},"signer":"\#(Self.key.keyFingerprint)","sig":""#), "\(text)")
        #expect(RecordCodec.decode(signed) == .record(record, skippedPrefixBytes: 0))
        #expect(RecordCodec.signature(ofLine: Array(plain.dropLast())) == nil)
        let signature = try #require(RecordCodec.signature(ofLine: signed))
        #expect(signature.keyFingerprint == Self.key.keyFingerprint)
        #expect(
            signature.signedLength == plain.count - 1 - 18, "everything before ,\"signer\": (the unsigned line's part before ,\"crc\":)")
        #expect(Self.verifies(signed, with: Self.key))
        // The payload changed and the checksum made right: the line still decodes, the signature no longer holds.
        let edited = Self.withFreshChecksum(Array(text.replacingOccurrences(of: #""tokens":5"#, with: #""tokens":6"#).utf8))
        guard case .record = RecordCodec.decode(edited) else {
            Issue.record("an edited line with a fresh checksum decodes")
            return
        }
        #expect(!Self.verifies(edited, with: Self.key))
        let other = try #require(SigningKey(seed: [UInt8](repeating: 9, count: 32)))
        #expect(!Self.verifies(signed, with: other))
    }

    /// Cortex's own Ed25519 signing gives byte for byte OpenSSL's signatures and public keys
    /// (Ed25519 is deterministic), for keys and messages of every shape.
    @Test(arguments: [UInt64(1), 2, 3, 0xED25519]) func signaturesAreOpenSSLsByteForByte(seed: UInt64) throws {
        var generator = SplitMix64(seed: seed)
        for round in 0..<60 {
            var keySeed = (0..<32).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if round == 0 { keySeed = [UInt8](repeating: 0, count: 32) }
            if round == 1 { keySeed = [UInt8](repeating: 0xFF, count: 32) }
            let key = try #require(SigningKey(seed: keySeed))
            #expect(key.publicKey == key.openSSLPublicKey(), "seed \(Hex.encode(keySeed))")
            let length = [0, 1, 63, 64, 65, 200, 1000, 5000][round % 8]
            let message = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            let signature = key.signature(of: message)
            #expect(signature == key.openSSLSignature(of: message), "seed \(Hex.encode(keySeed)), \(length) bytes")
            #expect(message.withUnsafeBufferPointer { SigningKey.verify(publicKey: key.publicKey, signature: signature, message: $0) })
        }
        // RFC 8032, section 7.1, test 1 (the empty message).
        let rfcSeed = try #require(Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
        let rfc = try #require(SigningKey(seed: rfcSeed))
        #expect(Hex.encode(rfc.publicKey) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        #expect(
            Hex.encode(rfc.signature(of: []))
                == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        )
    }

    @Test func aDataMemberNamedSignerIsNotTakenForTheSignature() throws {
        let record = Record(
            id: "r0000000000000002", timeMilliseconds: 1_700_000_000_000, kind: "x.y",
            data: .object(["signer": .string(Self.key.keyFingerprint), "sig": .string("00")]))
        var line = try RecordCodec.encode(record)
        line.removeLast()
        #expect(RecordCodec.signature(ofLine: line) == nil)
    }

    /// Hostile signature fields (bad hex, a huge signature, quotes and markers in odd places)
    /// with a right checksum: decoding, the fold and the check never trap, and the check fails.
    @Test(arguments: FoldFuzzTests.seeds) func hostileSignatureFieldsNeverTrapAFold(seed: UInt64) throws {
        print("SignedRecordTests: seed \(seed) (rerun with CORTEX_FUZZ_SEED=\(seed))")
        var fuzzer = Fuzzer(seed: seed)
        var state = CortexState()
        var generator = SplitMix64(seed: seed ^ 0x5157)
        func random(_ bound: Int) -> Int { Int(generator.next() % UInt64(max(1, bound))) }
        let hostile: [String] = [
            "zz", "0", "", String(repeating: "ab", count: 30_000), String(repeating: "f", count: 129), "\\u0000",
            "00\",\"sig\":\"11", "\\\"", String(repeating: "0", count: 128),
        ]
        for _ in 0..<400 {
            let record = fuzzer.record(previous: [])
            guard var line = try? RecordCodec.encode(record, signer: Self.key) else { continue }
            line.removeLast()
            var text = String(decoding: line, as: UTF8.self)
            let choice = random(5)
            switch choice {
            case 0:
                // The signature replaced.
                if let range = text.range(of: #","sig":""#), let end = text.range(of: #"","crc":"#) {
                    text.replaceSubrange(range.upperBound..<end.lowerBound, with: hostile[random(hostile.count)])
                }
            case 1:
                // The key replaced.
                if let range = text.range(of: #","signer":""#), let end = text.range(of: #"","sig":"#) {
                    text.replaceSubrange(range.upperBound..<end.lowerBound, with: hostile[random(hostile.count)])
                }
            case 2: text = text.replacingOccurrences(of: #","signer":"#, with: #","signer" :"#)
            case 3: text = text.replacingOccurrences(of: #","sig":"#, with: "")
            default: break
            }
            var mutated = Self.withFreshChecksum(Array(text.utf8))
            let damaged = random(3) == 0
            if damaged { mutated = fuzzer.mutate(mutated) }
            if case .record(let decoded, let skipped) = RecordCodec.decode(mutated) {
                fuzzer.learn(from: Reducer.reduce(&state, decoded))
                #expect(decoded.kind == record.kind || damaged, "the fold reads the record whatever its signature fields")
                let holds = Self.verifies(Array(mutated[skipped...]), with: Self.key)
                if choice == 0 && !damaged { #expect(!holds, "a replaced signature must not hold: \(text.suffix(200))") }
            }
        }
    }

    @Test func theKeyFileIsTheUsersAloneAndMadeOnce() throws {
        let directory = try TemporaryDirectory()
        let folder = directory.path + "/config/cortex"
        mkdir(directory.path + "/config", 0o755)
        let first = try SigningKeyFile.loadOrCreate(in: folder, uid: geteuid())
        let again = try SigningKeyFile.loadOrCreate(in: folder, uid: geteuid())
        #expect(first.keyFingerprint == again.keyFingerprint)
        var info = stat()
        #expect(stat(folder, &info) == 0 && info.st_mode & 0o777 == 0o700)
        #expect(stat(folder + "/signing-key", &info) == 0 && info.st_mode & 0o777 == 0o600)
        // A key others may read is refused, not used.
        chmod(folder + "/signing-key", 0o644)
        #expect(throws: CortexError.self) { try SigningKeyFile.loadOrCreate(in: folder, uid: geteuid()) }
        chmod(folder + "/signing-key", 0o600)
        // A link in the key's place is never followed.
        let linked = directory.path + "/linked"
        mkdir(linked, 0o700)
        symlink(folder + "/signing-key", linked + "/signing-key")
        #expect(throws: CortexError.self) { try SigningKeyFile.loadOrCreate(in: linked, uid: geteuid()) }
        // The places tried: XDG_CONFIG_HOME, then HOME's .config.
        let places = SigningKeyFile.candidateFolders(environment: ["XDG_CONFIG_HOME": "/x", "HOME": "/h"], uid: 4_242_424)
        #expect(Array(places.prefix(2)) == ["/x/cortex", "/h/.config/cortex"])
        // Without HOME (a static tool, a worker): the home /etc/passwd gives the user.
        if let home = UserDatabase.system.homeDirectory(uid: 0) {
            #expect(SigningKeyFile.candidateFolders(environment: [:], uid: 0) == [home + "/.config/cortex"])
        }
    }
}
