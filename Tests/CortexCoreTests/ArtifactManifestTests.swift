import CortexCore
import CortexStorage
import Foundation
import Testing

/// The manifest and the names of files shared between etcd hosts (docs/decisions/045): what a
/// reader believes before it reads a chunk, and which names may become keys and local files.
@Suite("Artifact manifests and names")
struct ArtifactManifestTests {
    private let sha = String(repeating: "ab", count: 32)

    @Test func aManifestRoundTripsThroughItsJSON() throws {
        let manifest = ArtifactManifest(size: 1_048_577, chunks: 3, chunkBytes: 524_288, sha256: sha, lease: 7_587_869_114_523_017_000)
        let parsed = try #require(ArtifactManifest(json: try JSONValue.parse(Array(manifest.json.jsonText.utf8))))
        #expect(parsed == manifest)
    }

    /// A manifest whose numbers do not add up is refused as a whole (the reader would otherwise
    /// read too few chunks, or too many): a reader then refuses the artifact as damaged.
    @Test(arguments: [
        #"{"format":1,"size":1048577,"chunks":2,"chunk_bytes":524288,"sha256":"SHA","lease":"1"}"#,
        #"{"format":1,"size":10,"chunks":1,"chunk_bytes":0,"sha256":"SHA","lease":"1"}"#,
        #"{"format":1,"size":-1,"chunks":0,"chunk_bytes":524288,"sha256":"SHA","lease":"1"}"#,
        #"{"format":1,"size":67108865,"chunks":129,"chunk_bytes":524288,"sha256":"SHA","lease":"1"}"#,
        #"{"format":1,"size":10,"chunks":1,"chunk_bytes":524288,"sha256":"abc","lease":"1"}"#,
        #"{"format":2,"size":10,"chunks":1,"chunk_bytes":524288,"sha256":"SHA","lease":"1"}"#,
        #"{"format":1,"size":10,"chunks":1,"chunk_bytes":524288,"sha256":"SHA"}"#,
    ])
    func aManifestThatDoesNotAddUpIsRefused(_ text: String) throws {
        let json = try JSONValue.parse(Array(text.replacingOccurrences(of: "SHA", with: sha).utf8))
        #expect(ArtifactManifest(json: json) == nil, "\(text)")
    }

    /// Only a folder's own kinds of shared file, one level deep: a name from a record never
    /// leads out of `context/` or `results/`.
    @Test func onlyContextAndResultNamesAreShared() {
        for name in ["context/ctx-3f2a.txt", "results/task-1.12.attempt-2.json", "results/task-000042.json"] {
            #expect(EtcdArtifacts.isValidName(name), "\(name)")
        }
        for name in [
            "", "context", "context/", "context/../config.json", "context/.hidden", "state/snapshot.json", "/etc/passwd",
            "results/a/b.json", "context/a b", "context/" + String(repeating: "x", count: 201),
        ] {
            #expect(!EtcdArtifacts.isValidName(name), "\(name)")
        }
    }

    @Test func theChecksumIsSHA256() {
        #expect(EtcdArtifacts.sha256(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(EtcdArtifacts.sha256([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }
}
