import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// A fresh folder under /tmp, removed when the value goes away.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/cortex-test-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        try #require(created != nil)
        path = String(cString: created!)
    }

    deinit {
        _ = path.withCString { system("rm -rf '\(String(cString: $0))'") }
    }

    /// A coordination folder inside this one, with its layout created.
    func coordination(_ config: CortexConfig = CortexConfig()) throws -> CoordinationLayout {
        let layout = CoordinationLayout(root: path + "/coordination")
        try CoordinationStore.createLayout(layout, config: config)
        return layout
    }
}

/// Appends raw bytes to a file (to plant damage a writer could leave behind).
func appendRaw(_ bytes: [UInt8], to path: String) throws {
    let fd = open(path, O_WRONLY | O_APPEND)
    try #require(fd >= 0)
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
    try #require(written == bytes.count)
}

/// Writes `config` into a layout's config.json.
func writeConfig(_ config: CortexConfig, _ layout: CoordinationLayout) throws {
    try AtomicFile.replace(layout.config, with: config.json.prettySerialized(), durability: .processCrash)
}

/// Every record of a journal folded afresh from the start, with its outcome.
func freshFold(_ layout: CoordinationLayout) throws -> (state: CortexState, outcomes: [(Record, Outcome)]) {
    var state = CortexState()
    var outcomes: [(Record, Outcome)] = []
    _ = try FileJournal(directory: layout.journal).readForward(from: .start) { record, position in
        outcomes.append((record, Reducer.reduce(&state, record, at: position)))
    }
    return (state, outcomes)
}

extension Reducer {
    /// Folds `record` as the next record of a journal that exists only in the test: record n of
    /// the fold (counting from 0) sits at offset n of segment 1, so what it creates is
    /// `task-1.n`, `alloc-1.n` or `w-1.n`.
    static func reduce(_ state: inout CortexState, _ record: Record) -> Outcome {
        reduce(&state, record, at: JournalPosition(segment: 1, offset: state.recordsFolded))
    }
}

/// A record for tests, with a fixed time.
func record(_ event: Event, at time: Int64 = 1_000, id: String = Record.newID()) -> Record {
    Record(id: id, timeMilliseconds: time, kind: event.kind, data: event.data)
}

/// Where a store-level test keeps its journal: a coordination folder of files, or a
/// `MemoryJournal` with no folder at all (docs/decisions/027).
enum StoreBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case file, memory

    var testDescription: String { rawValue }
}

/// One journal of a `StoreBackend` and the stores a test opens over it, each as a new process
/// would. On `memory`, nothing touches the disk: no folder is made, and every store is
/// `CoordinationStore.over` the journal with a layout whose root cannot be created.
final class StoreUnderTest {
    let backend: StoreBackend
    let config: CortexConfig
    /// The folder's layout (`file`); nil on `memory`.
    let layout: CoordinationLayout?
    /// The journal every store of a `memory` run shares; nil on `file`.
    let memory: MemoryJournal?
    private let folder: TemporaryDirectory?

    init(_ backend: StoreBackend, config: CortexConfig = CortexConfig()) throws {
        self.backend = backend
        self.config = config
        switch backend {
        case .file:
            let folder = try TemporaryDirectory()
            self.folder = folder
            layout = try folder.coordination(config)
            memory = nil
        case .memory:
            folder = nil
            layout = nil
            memory = MemoryJournal()
        }
    }

    /// A new store, folded to the journal's end.
    func open() throws -> CoordinationStore {
        if let layout { return try CoordinationStore.open(root: layout.root, createIfMissing: false) }
        let store = try CoordinationStore.over(memory!, config: config)
        #expect(!store.persistsFiles)
        return store
    }

    /// Every record of the journal folded afresh from the start, with its outcome.
    func freshFold() throws -> (state: CortexState, outcomes: [(Record, Outcome)]) {
        var state = CortexState()
        var outcomes: [(Record, Outcome)] = []
        let journal: any Journal = memory ?? FileJournal(directory: layout!.journal)
        _ = try journal.readForward(from: .start) { record, position in
            outcomes.append((record, Reducer.reduce(&state, record, at: position)))
        }
        return (state, outcomes)
    }
}
