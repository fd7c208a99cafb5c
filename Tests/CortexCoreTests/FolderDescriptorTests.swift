import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// docs/decisions/020-no-path-tricks.md: names inside a folder are resolved beneath its
/// descriptor, never through a link, and nothing is read from a non-regular file or past a bound.
@Suite struct FolderDescriptorTests {
    /// A temp folder holding `inside/` (with `sub/file`), `outside/secret`, and links planted
    /// inside that point out: `inside/link` (to the secret), `inside/dirlink` (to `outside/`).
    func plant() throws -> (TemporaryDirectory, FolderDescriptor) {
        let temp = try TemporaryDirectory()
        for folder in ["inside", "inside/sub", "outside"] { try POSIX.makeDirectory(temp.path + "/" + folder) }
        try AtomicFile.replace(temp.path + "/outside/secret", with: Array("secret".utf8), durability: .processCrash)
        try AtomicFile.replace(temp.path + "/inside/sub/file", with: Array("inside".utf8), durability: .processCrash)
        #expect(symlink(temp.path + "/outside/secret", temp.path + "/inside/link") == 0)
        #expect(symlink(temp.path + "/outside", temp.path + "/inside/dirlink") == 0)
        return (temp, FolderDescriptor(root: temp.path + "/inside"))
    }

    @Test func filesAreReadBeneathTheRootAndNeverThroughALink() throws {
        let (temp, folder) = try plant()
        #expect(try folder.readFile("sub/file", limit: 100) == Array("inside".utf8))
        #expect(try folder.readFile(temp.path + "/inside/sub/file", limit: 100) == Array("inside".utf8))
        #expect(throws: Errno(ELOOP)) { try folder.readFile("link", limit: 100) }
        #expect(throws: Errno(ELOOP)) { try folder.readFile("dirlink/secret", limit: 100) }
        #expect(throws: Errno(EXDEV)) { try folder.readFile("sub/../../outside/secret", limit: 100) }
        #expect(throws: Errno(EXDEV)) { try folder.readFile("/etc/passwd", limit: 100_000) }
    }

    @Test func writesRenamesAndRemovalsNeverLeaveTheFolder() throws {
        let (temp, folder) = try plant()
        // Publishing over a link replaces the link; the file it pointed to is untouched.
        try AtomicFile.replace("link", in: folder, with: Array("new".utf8), durability: .powerLoss)
        #expect(try POSIX.readFile(temp.path + "/outside/secret") == Array("secret".utf8))
        #expect(try folder.readFile("link", limit: 100) == Array("new".utf8))
        #expect(throws: CortexError.self) {
            try AtomicFile.replace("dirlink/secret", in: folder, with: Array("x".utf8), durability: .processCrash)
        }
        #expect(throws: CortexError.self) { try Files.touch("dirlink/secret", in: folder) }
        #expect(throws: CortexError.self) { try Files.makeDirectory("dirlink/new", in: folder) }
        #expect(throws: Errno(ELOOP)) { try folder.entries("dirlink") }
        // Removing a link removes the link; a name through a linked folder is not removed at all.
        #expect(!folder.unlink("dirlink/secret"))
        #expect(folder.unlink("dirlink"))
        #expect(try POSIX.readFile(temp.path + "/outside/secret") == Array("secret".utf8))
        #expect(try folder.entries("").sorted() == ["link", "sub"])
    }

    @Test func fifosDevicesAndLargeFilesAreRefusedWithoutReading() throws {
        let (temp, folder) = try plant()
        #expect(mkfifo(temp.path + "/inside/fifo", 0o644) == 0)
        // Non-blocking: no writer, yet this returns at once.
        #expect(throws: Errno.notRegularFile) { try folder.readFile("fifo", limit: 100) }
        #expect(throws: Errno.notRegularFile) { try folder.openRegular("fifo", O_WRONLY | O_APPEND) }
        #expect(throws: Errno.notRegularFile) { try folder.readFile("sub", limit: 100) }
        #expect(throws: Errno(EFBIG)) { try folder.readFile("sub/file", limit: 3) }
        #expect(throws: CortexError.badInput("context file /dev/zero is not a regular file")) {
            try POSIX.readInputFile("/dev/zero", what: "context file", limit: 100)
        }
        #expect(ImmutableBytes.map("fifo", in: folder) == nil)
    }

    @Test func theWalkForKernelsWithoutOpenat2RefusesLinksAndDotDot() throws {
        let (temp, _) = try plant()
        let root = try POSIX.open(temp.path + "/inside", O_RDONLY | O_DIRECTORY)
        defer { POSIX.close(root) }
        let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        let sub = try FolderDescriptor.walk("sub", from: root, flags: flags)
        POSIX.close(sub)
        #expect(throws: Errno(ELOOP)) { try FolderDescriptor.walk("dirlink", from: root, flags: flags) }
        #expect(throws: Errno(EXDEV)) { try FolderDescriptor.walk("sub/../..", from: root, flags: flags) }
    }

    @Test func archivePurgesNeverFollowALinkedArchiveFolder() throws {
        let temp = try TemporaryDirectory()
        let layout = try temp.coordination()
        let store = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        for total in 1...5 { _ = try store.submit(.budgetSet(total: Int64(total))) }
        let now = POSIX.wallClockMilliseconds()
        // Segment 1 archived behind its tombstone; its copy is kept (a year's retention).
        let first = try store.compactJournal(rotateAboveBytes: 0, retentionMilliseconds: 365 * 86_400_000, nowMilliseconds: now)
        #expect(first.archived == [1])
        // `journal/archive/` replaced by a link to a folder outside holding a file of the same name.
        let outside = temp.path + "/outside"
        try POSIX.makeDirectory(outside)
        try AtomicFile.replace(outside + "/000000000001.jsonl", with: Array("keep me\n".utf8), durability: .processCrash)
        #expect(system("rm -rf '\(layout.archive)'") == 0)
        #expect(symlink(outside, layout.archive) == 0)
        let again = try CoordinationStore.open(root: layout.root, createIfMissing: false)
        let second = try? again.compactJournal(
            rotateAboveBytes: 1 << 40, retentionMilliseconds: 0, nowMilliseconds: now + 86_400_000)
        #expect(second?.purged ?? [] == [])
        #expect(try POSIX.readFile(outside + "/000000000001.jsonl") == Array("keep me\n".utf8))
    }
}
