import CortexProcesses
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// The per-folder mode policy, the user database reader and the owner lookup (decision 023).
@Suite struct FolderPermissionsTests {
    func folderStatus(mode: mode_t) -> stat {
        var info = stat()
        info.st_mode = S_IFDIR | mode
        return info
    }

    @Test func onlyASetGroupIDGroupWritableFolderIsAGroupFolder() {
        #expect(FolderPermissions.of(folderStatus(mode: 0o2770)) == .groupShared)
        #expect(FolderPermissions.of(folderStatus(mode: 0o2775)) == .groupShared)
        #expect(FolderPermissions.of(folderStatus(mode: 0o0770)) == .personal)
        #expect(FolderPermissions.of(folderStatus(mode: 0o2750)) == .personal)
        var file = stat()
        file.st_mode = S_IFREG | 0o2770
        #expect(FolderPermissions.of(file) == .personal)
    }

    @Test func groupFoldersGetExactModesAndPrivateContentIsNeverOtherReadable() {
        #expect(FolderPermissions.groupShared.file(.shared) == .exact(0o660))
        #expect(FolderPermissions.groupShared.file(.private) == .exact(0o660))
        #expect(FolderPermissions.groupShared.directory(.shared) == .exact(0o2770))
        #expect(FolderPermissions.personal.file(.shared) == .masked(0o666))
        #expect(FolderPermissions.personal.directory(.shared) == .masked(0o777))
        for mode in [FolderPermissions.personal.file(.private), FolderPermissions.personal.directory(.private)] {
            #expect(mode.bits & 0o007 == 0 && !mode.exact)
        }
        #expect(FolderPermissions.groupShared.file(.ownerOnly) == .exact(0o600))
        #expect(FolderPermissions.personal.file(.ownerOnly) == .masked(0o600))
    }

    @Test func anExactModeIgnoresTheUmask() throws {
        let folder = try TemporaryDirectory()
        let previous = umask(0o022)
        defer { umask(previous) }
        try AtomicFile.replace(folder.path + "/exact", with: [1], durability: .processCrash, mode: .exact(0o660))
        try AtomicFile.replace(folder.path + "/masked", with: [1], durability: .processCrash, mode: .masked(0o660))
        let descriptor = FolderDescriptor(root: folder.path)
        try Files.makeDirectory("shared", in: descriptor, mode: .exact(0o2770))
        try Files.touch("shared/heartbeat", in: descriptor, mode: .exact(0o660))
        let modes = try ["exact", "masked", "shared", "shared/heartbeat"].map { name in
            try #require(try POSIX.status(folder.path + "/" + name)).st_mode & 0o7777
        }
        #expect(modes == [0o660, 0o640, 0o2770, 0o660])
    }

    @Test func usersAndGroupsComeFromThePasswdAndGroupFiles() throws {
        let folder = try TemporaryDirectory()
        let passwd = folder.path + "/passwd"
        let group = folder.path + "/group"
        try AtomicFile.replace(
            passwd, with: Array("root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n".utf8), durability: .processCrash)
        try AtomicFile.replace(
            group, with: Array("alice:x:1001:\ncortex:x:2000:bob,alice\nother:x:2001:bob\n".utf8), durability: .processCrash)
        let database = UserDatabase(passwd: passwd, group: group)
        let alice = try #require(database.user(uid: 1001))
        #expect(alice == UserAccount(name: "alice", uid: 1001, gid: 1001))
        #expect(database.user(uid: 4242) == nil)
        #expect(database.groupIDs(of: alice) == [1001, 2000])
        #expect(database.groupID("cortex") == 2000)
        #expect(database.groupID("3000") == 3000)
        #expect(database.groupID("nosuch") == nil)
        #expect(database.describe(1001) == "alice (uid 1001)" && database.describe(4242) == "uid 4242")
    }

    @Test func theOwnerOfAMissingFolderIsTheOwnerOfItsNearestAncestor() throws {
        let folder = try TemporaryDirectory()
        #expect(FolderOwner.owner(of: folder.path + "/not/yet/there") == getuid())
        #expect(FolderOwner.owner(of: "relative-and-missing") == (try POSIX.status("."))?.st_uid)
    }
}
