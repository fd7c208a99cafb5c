import CortexCore
import CortexStorage
import Testing

/// `config.json`'s `backend` (docs/decisions/033): read, written, refused.
@Suite("Journal backend in config.json")
struct JournalBackendConfigTests {
    private func config(_ backend: JSONValue) throws(CortexError) -> CortexConfig {
        try CortexConfig(json: .object([JSONMember("backend", backend)]), path: "config.json")
    }

    @Test func anEtcdBackendRoundTripsAndAFileFolderWritesNoBackendKey() throws {
        var settings = CortexConfig()
        #expect(settings.json["backend"] == nil, "a file folder's config.json is what it always was")
        settings.backend = .etcd(
            try EtcdSettings(
                endpoints: ["http://127.0.0.1:2379", "http://127.0.0.1:2389"], namespace: "prod", hostID: "host-1.a", path: "test"))
        let written = settings.json
        #expect(written["backend"]?["kind"]?.stringValue == "etcd")
        #expect(try CortexConfig(json: written, path: "config.json") == settings)
        #expect(try config(.object([JSONMember("kind", "file")])).backend == .file)
    }

    @Test func badBackendsAreConfigurationErrorsNamingTheKey() {
        let endpoints = JSONValue.array([.string("http://127.0.0.1:2379")])
        let bad: [JSONValue] = [
            "etcd",
            .object([JSONMember("kind", "nfs")]),
            .object([JSONMember("kind", "etcd"), JSONMember("endpoints", endpoints), JSONMember("namespace", "n")]),
            .object([
                JSONMember("kind", "etcd"), JSONMember("endpoints", .array([])), JSONMember("namespace", "n"), JSONMember("host_id", "h"),
            ]),
            .object([
                JSONMember("kind", "etcd"), JSONMember("endpoints", .array([.string("127.0.0.1:2379")])), JSONMember("namespace", "n"),
                JSONMember("host_id", "h"),
            ]),
            .object([
                JSONMember("kind", "etcd"), JSONMember("endpoints", endpoints), JSONMember("namespace", "a/journal/b"),
                JSONMember("host_id", "h"),
            ]),
            .object([
                JSONMember("kind", "etcd"), JSONMember("endpoints", endpoints), JSONMember("namespace", "n"), JSONMember("host_id", ""),
            ]),
        ]
        for backend in bad {
            #expect(throws: CortexError.self, "\(backend)") { try config(backend) }
            do {
                _ = try config(backend)
            } catch {
                guard case .configuration(let message) = error else {
                    Issue.record("not a configuration error: \(error)")
                    continue
                }
                #expect(message.hasPrefix("config.json: "), "\(message)")
            }
        }
    }
}

/// A file folder's snapshot cache never believes a snapshot of a shared journal (docs/decisions/033).
@Suite("Snapshots of another journal")
struct ForeignSnapshotTests {
    @Test func aFileFolderNeverBelievesASnapshotThatNamesASharedJournal() throws {
        let directory = try TemporaryDirectory()
        let root = directory.path + "/coordination"
        let store = try CoordinationStore.open(root: root, createIfMissing: true)
        _ = try store.submit(.budgetSet(total: 100))
        var forgedState = store.state
        forgedState.budget.total = 999
        let identity = JSONValue.object([
            JSONMember("backend", "etcd"), JSONMember("last_position", store.position.json), JSONMember("last_record", "r"),
            JSONMember("namespace", "n"),
        ])
        let forged = SnapshotCodec.encode(forgedState, position: store.position, writtenAtMilliseconds: 0, journal: identity)
        try AtomicFile.replace(store.layout.snapshot, with: forged, durability: .processCrash)
        #expect(try CoordinationStore.open(root: root, createIfMissing: false).state.budget.total == 100)
        // The same snapshot without the member is this folder's own, and is believed.
        let own = SnapshotCodec.encode(forgedState, position: store.position, writtenAtMilliseconds: 0)
        try AtomicFile.replace(store.layout.snapshot, with: own, durability: .processCrash)
        #expect(try CoordinationStore.open(root: root, createIfMissing: false).state.budget.total == 999)
    }
}
