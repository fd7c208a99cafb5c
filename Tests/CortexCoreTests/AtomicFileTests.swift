import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

@Suite struct AtomicFileTests {
    @Test func replaceLeavesNoTempFileAndTheNewContent() throws {
        let folder = try TemporaryDirectory()
        let path = folder.path + "/view.json"
        try AtomicFile.replace(path, with: Array("one".utf8), durability: .powerLoss)
        try AtomicFile.replace(path, with: Array("two".utf8), durability: .processCrash)
        #expect(try POSIX.readFile(path) == Array("two".utf8))
        #expect(try POSIX.directoryEntries(folder.path) == ["view.json"])
    }

    @Test func createIfAbsentNeverReplaces() throws {
        let folder = try TemporaryDirectory()
        let path = folder.path + "/config.json"
        #expect(try AtomicFile.createIfAbsent(path, with: Array("first".utf8)))
        #expect(try !AtomicFile.createIfAbsent(path, with: Array("second".utf8)))
        #expect(try POSIX.readFile(path) == Array("first".utf8))
        #expect(try POSIX.directoryEntries(folder.path) == ["config.json"])
    }

    @Test func aFailedReplaceLeavesTheOldFileAndNoTemp() throws {
        let folder = try TemporaryDirectory()
        let path = folder.path + "/sub/view.json"
        #expect(throws: CortexError.self) { try AtomicFile.replace(path, with: [1], durability: .powerLoss) }
        #expect(try POSIX.directoryEntries(folder.path).isEmpty)
    }
}
