import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// The signed, tamper-evident journal (issue 18; docs/decisions/044-signed-journal.md), with the
/// built tools: `cortex verify --audit` green on an untouched folder and naming the line after
/// an edit, a deletion from a sealed segment or a record signed by an unregistered key; one key
/// per user however many processes use it first; `cortex audit show` naming the users of a task's
/// life; an old folder's audited era; `cortex audit head`.
@Suite struct AuditTests {
    /// A folder whose tools keep their signing key under `config/` of the temp folder.
    struct Audited {
        let directory: TemporaryDirectory
        let environment: [String: String]
        var dir: String { directory.coordination }
        var journal: String { directory.coordination + "/journal" }

        /// - Parameter old: made as a folder made before signing (no `audit` in config.json), not by `cortex init`.
        init(rotating: Bool = true, old: Bool = false) throws {
            directory = try TemporaryDirectory()
            var environment = toolEnvironment
            environment["XDG_CONFIG_HOME"] = directory.path + "/config"
            self.environment = environment
            if old {
                try CoordinationStore.createLayout(CoordinationLayout(root: directory.coordination), config: CortexConfig())
                let set = try run(["cortex-budget", "set", "--dir", directory.coordination, "--total", "1000000"])
                try #require(set.exitCode == 0, "\(set)")
            } else {
                let made = try run(["cortex", "init", "--dir", directory.coordination, "--total-tokens", "1000000"])
                try #require(made.exitCode == 0, "\(made)")
            }
            if rotating { try forceRotation(directory) }
        }

        @discardableResult
        func run(_ arguments: [String]) throws -> ToolResult {
            try RunningTool(arguments, scratch: directory.scratch, environment: environment).wait()
        }

        /// `count` allocations, each of which must succeed.
        func allocate(_ count: Int) throws {
            for _ in 0..<count {
                let result = try run(["cortex-budget", "allocate", "--dir", dir, "--tokens", "1"])
                try #require(result.exitCode == 0, "\(result)")
            }
        }

        /// `cortex verify --audit --json`.
        func verify() throws -> ToolResult { try run(["cortex", "verify", "--dir", dir, "--audit", "--json"]) }

        /// The lines of segment `segment` (without their newlines).
        func lines(ofSegment segment: Int) throws -> [[UInt8]] {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: journal + "/" + JournalSegment.fileName(segment))))
            return bytes.split(separator: 0x0A, omittingEmptySubsequences: false).dropLast().map(Array.init)
        }

        /// Writes `lines` back as segment `segment`, each with its newline.
        func write(_ lines: [[UInt8]], toSegment segment: Int) throws {
            let bytes: [UInt8] = lines.flatMap { $0 + [UInt8(0x0A)] }
            try Data(bytes).write(to: URL(fileURLWithPath: journal + "/" + JournalSegment.fileName(segment)))
        }

        /// The offset of line `index` in segment `segment`.
        func offset(ofLine index: Int, inSegment segment: Int) throws -> Int64 {
            let before = try lines(ofSegment: segment)[..<index]
            return Int64(before.reduce(0) { $0 + $1.count + 1 })
        }
    }

    /// `line` with its CRC recomputed, so only the signature can tell that it was changed.
    static func withFreshChecksum(_ line: [UInt8]) -> [UInt8] {
        let marker = Array(#","crc":""#.utf8)
        var end = line.count - marker.count
        while end > 0, !line[end..<(end + marker.count)].elementsEqual(marker) { end -= 1 }
        let body = Array(line[..<end])
        let crc = String(CRC32C.checksum(body), radix: 16)
        return body + Array(#","crc":""#.utf8) + Array((String(repeating: "0", count: 8 - crc.count) + crc).utf8) + Array(#""}"#.utf8)
    }

    static func problems(_ result: ToolResult) -> [JSONValue] { result.json?["audit"]?["problems"]?.arrayValue ?? [] }

    @Test func anUntouchedFolderIsGreenAndAnEditedRecordIsNamed() throws {
        let folder = try Audited()
        try folder.allocate(25)
        let green = try folder.verify()
        #expect(green.exitCode == 0, "\(green)")
        #expect(green.json?["audit"]?["ok"] == .bool(true), "\(green)")
        #expect((green.json?["audit"]?["seals_checked"]?.intValue ?? 0) >= 2, "rotations expected: \(green)")
        #expect(green.json?["audit"]?["verified"] == green.json?["audit"]?["records"], "\(green)")

        // An allocation in segment 2 asks for more tokens; its checksum is made right again.
        var lines = try folder.lines(ofSegment: 2)
        let index = try #require(lines.firstIndex { String(decoding: $0, as: UTF8.self).contains(#""tokens":1"#) })
        let text = String(decoding: lines[index], as: UTF8.self).replacingOccurrences(of: #""tokens":1"#, with: #""tokens":9"#)
        lines[index] = Self.withFreshChecksum(Array(text.utf8))
        guard case .record = RecordCodec.decode(lines[index]) else {
            Issue.record("the edited line must still pass its checksum")
            return
        }
        try folder.write(lines, toSegment: 2)
        let plain = try folder.run(["cortex", "verify", "--dir", folder.dir])
        #expect(plain.exitCode == 0, "the CRC alone cannot tell: \(plain)")
        let red = try folder.verify()
        #expect(red.exitCode == 1, "\(red)")
        let first = try #require(Self.problems(red).first, "\(red)")
        let editedOffset = try folder.offset(ofLine: index, inSegment: 2)
        #expect(first["segment"]?.intValue == 2 && first["offset"]?.intValue == editedOffset, "\(red)")
        #expect(first["reason"]?.stringValue?.contains("signature does not match") == true, "\(red)")
        let text2 = try folder.run(["cortex", "verify", "--dir", folder.dir, "--audit"])
        #expect(text2.stdout.contains("broken   \(folder.journal)/000000000002.jsonl@"), "\(text2)")
    }

    @Test func aLineDeletedFromASealedSegmentBreaksTheChain() throws {
        let folder = try Audited()
        try folder.allocate(25)
        #expect(try folder.verify().exitCode == 0)
        var lines = try folder.lines(ofSegment: 2)
        try #require(lines.count >= 3)
        lines.remove(at: 1)
        try folder.write(lines, toSegment: 2)
        let red = try folder.verify()
        #expect(red.exitCode == 1, "\(red)")
        let first = try #require(Self.problems(red).first, "\(red)")
        // The seal ending segment 3 carries the chain over segment 2: that is the line that breaks.
        let sealIndex = try #require(
            try folder.lines(ofSegment: 3).firstIndex { String(decoding: $0, as: UTF8.self).contains(#""kind":"journal.seal""#) })
        let sealOffset = try folder.offset(ofLine: sealIndex, inSegment: 3)
        #expect(first["segment"]?.intValue == 3 && first["offset"]?.intValue == sealOffset, "\(red)")
        #expect(first["reason"]?.stringValue?.contains("segment 2") == true, "\(red)")
    }

    @Test func aLineSignedByAnUnregisteredKeyIsNamedWithItsKey() throws {
        let folder = try Audited(rotating: false)
        try folder.allocate(2)
        let stranger = try #require(SigningKey(seed: (0..<32).map { UInt8($0) }))
        let record = Record(
            id: "r0123456789abcdef", timeMilliseconds: 1_800_000_000_000, kind: "budget.allocate", data: .object(["tokens": .int(5)]))
        let line = try RecordCodec.encode(record, signer: stranger)
        let segment = folder.journal + "/" + JournalSegment.fileName(1)
        let offset = try fileSize(segment)
        try appendBytes(line, to: segment)
        let red = try folder.verify()
        #expect(red.exitCode == 1, "\(red)")
        let unattributed = red.json?["audit"]?["unattributed"]?.arrayValue ?? []
        #expect(unattributed.count == 1, "\(red)")
        #expect(unattributed.first?["key"]?.stringValue == stranger.keyFingerprint, "\(red)")
        #expect(unattributed.first?["first_offset"]?.intValue == offset, "\(red)")
        let first = try #require(Self.problems(red).first, "\(red)")
        #expect(first["offset"]?.intValue == offset && first["segment"]?.intValue == 1, "\(red)")
        let text = try folder.run(["cortex", "verify", "--dir", folder.dir, "--audit"])
        #expect(text.stdout.contains("unattributed key \(stranger.keyFingerprint)"), "\(text)")
    }

    /// A `.pub` attributes its key only when the key itself signed that it belongs to the file's
    /// owner: a file holding just the public key, or another user's file copied by someone
    /// else, attributes nothing (so no user can take another's records).
    @Test func aKeyFileNotSignedForItsOwnerAttributesNothing() throws {
        let folder = try Audited(rotating: false)
        try folder.allocate(2)
        #expect(try folder.verify().exitCode == 0)
        let keys = try FileManager.default.contentsOfDirectory(atPath: folder.dir + "/audit/keys").filter { $0.hasSuffix(".pub") }
        let name = try #require(keys.first, "a key was registered")
        let path = folder.dir + "/audit/keys/" + name
        let registered = try String(contentsOfFile: path, encoding: .utf8)
        let publicKeyOnly = String(registered.split(separator: "\n")[0]) + "\n"
        try FileManager.default.removeItem(atPath: path)
        try publicKeyOnly.write(toFile: path, atomically: false, encoding: .utf8)
        let unproven = try folder.verify()
        #expect(unproven.exitCode == 1, "a public key alone attributes nothing: \(unproven)")
        #expect(unproven.json?["audit"]?["unattributed"]?.arrayValue?.isEmpty == false, "\(unproven)")
        guard getuid() == 0 else { return }
        // The registered content, owned by someone else: the uid it names is not its owner's.
        try FileManager.default.removeItem(atPath: path)
        try registered.write(toFile: path, atomically: false, encoding: .utf8)
        #expect(chown(path, 4242, 4242) == 0)
        let copied = try folder.verify()
        #expect(copied.exitCode == 1, "a copy owned by another user attributes nothing: \(copied)")
        #expect(chown(path, 0, 0) == 0)
        #expect(try folder.verify().exitCode == 0, "the owner's own file attributes again")
    }

    /// A signed line copied back into the folder verifies by its signature, but its id was
    /// used already: the copy is named.
    @Test func aReplayedLineIsNamed() throws {
        let folder = try Audited(rotating: false)
        try folder.allocate(2)
        var lines = try folder.lines(ofSegment: 1)
        let index = try #require(lines.lastIndex { String(decoding: $0, as: UTF8.self).contains(#""kind":"budget.allocate""#) })
        let offset = try fileSize(folder.journal + "/" + JournalSegment.fileName(1))
        lines.append(lines[index])
        try folder.write(lines, toSegment: 1)
        let red = try folder.verify()
        #expect(red.exitCode == 1, "\(red)")
        let first = try #require(Self.problems(red).first, "\(red)")
        #expect(first["offset"]?.intValue == offset && first["reason"]?.stringValue?.contains("second time") == true, "\(red)")
    }

    /// A segment no Cortex writer could make (64 GiB, sparse) is named as a problem, not read:
    /// the audit, and the reaper that runs it, do not die allocating it.
    @Test func aHugeSegmentIsNamedNotRead() throws {
        let folder = try Audited()
        try folder.allocate(3)
        let segment = folder.journal + "/" + JournalSegment.fileName(1)
        #expect(truncate(segment, 64 << 30) == 0)
        let red = try folder.verify()
        #expect(red.exitCode == 1, "\(red)")
        #expect(Self.problems(red).contains { $0["reason"]?.stringValue?.contains("more than the") == true }, "\(red)")
    }

    /// Text from hostile lines (a record id with escape sequences and a newline) reaches the
    /// terminal only made printable: one line per problem, no control bytes.
    @Test func hostileRecordTextIsShownPrintable() throws {
        let folder = try Audited(rotating: false)
        try folder.allocate(1)
        let record = Record(
            id: "r\u{1B}[2J\nbroken nothing", timeMilliseconds: 1_800_000_000_000, kind: "budget.allocate",
            data: .object(["tokens": .int(5)]))
        try appendBytes(try RecordCodec.encode(record), to: folder.journal + "/" + JournalSegment.fileName(1))
        let text = try folder.run(["cortex", "verify", "--dir", folder.dir, "--audit"])
        #expect(text.exitCode == 1, "\(text)")
        #expect(!text.stdout.utf8.contains(0x1B) && !text.stderr.utf8.contains(0x1B), "\(text)")
        #expect(!text.stdout.contains("\nbroken nothing"), "\(text)")
    }

    @Test func aHundredFirstUsesMakeOneKeyWithOwnerOnlyModes() throws {
        let folder = try Audited(rotating: false)
        // A second user of the machine's first use: a fresh key folder, 100 processes at once.
        var environment = folder.environment
        environment["XDG_CONFIG_HOME"] = folder.directory.path + "/fresh"
        var gate: [Int32] = [-1, -1]
        guard pipe(&gate) == 0 else { throw SupportError("pipe failed: errno \(errno)") }
        var started: [RunningTool] = []
        for _ in 0..<100 {
            started.append(
                try RunningTool(
                    ["cortex-budget", "allocate", "--dir", folder.dir, "--tokens", "1"], scratch: folder.directory.scratch,
                    barrier: gate[0],
                    environment: environment))
        }
        close(gate[1])
        close(gate[0])
        for result in started.map({ $0.wait() }) { #expect(result.exitCode == 0, "\(result)") }
        let keyFolder = folder.directory.path + "/fresh/cortex"
        let entries = try FileManager.default.contentsOfDirectory(atPath: keyFolder)
        #expect(entries == [SigningKeyFile.fileName], "one key, no temp file left: \(entries)")
        var info = stat()
        #expect(stat(keyFolder, &info) == 0 && info.st_mode & 0o777 == 0o700, "\(String(info.st_mode, radix: 8))")
        #expect(stat(keyFolder + "/" + SigningKeyFile.fileName, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(info.st_uid == getuid())
        let key = try SigningKeyFile.loadOrCreate(in: keyFolder, uid: getuid())
        // Every allocation is signed by that key, which was registered once.
        let fold = try foldJournal(folder.directory)
        let registrations = fold.records.filter {
            $0.record.kind == Record.auditKeyKind && $0.record.data["key"]?.stringValue == key.keyFingerprint
        }
        #expect(registrations.count == 1, "\(registrations.map(\.record.id))")
        let keys = try FileManager.default.contentsOfDirectory(atPath: folder.dir + "/audit/keys").sorted()
        #expect(keys.contains(key.keyFingerprint + ".pub"), "\(keys)")
        #expect(stat(folder.dir + "/audit/keys/" + key.keyFingerprint + ".pub", &info) == 0 && info.st_mode & 0o777 == 0o644)
        #expect(stat(folder.dir + "/audit/keys", &info) == 0 && info.st_mode & 0o1000 != 0, "the keys' folder is sticky")
        let green = try folder.verify()
        #expect(green.exitCode == 0, "\(green)")
        #expect(green.json?["audit"]?["verified"]?.intValue ?? 0 >= 102, "\(green)")
    }

    @Test func anOldFolderStartsAnAuditedEra() throws {
        let folder = try Audited(rotating: false, old: true)
        let config = try String(contentsOfFile: folder.dir + "/config.json", encoding: .utf8)
        #expect(!config.contains("audit"), "\(config)")
        try folder.allocate(2)
        let before = try folder.verify()
        #expect(before.exitCode == 0, "no era, nothing required: \(before)")
        #expect(before.json?["audit"]?["era_start"] == .some(.null), "\(before)")
        #expect(before.json?["audit"]?["verified"]?.intValue == 0, "nothing signed before the era: \(before)")
        let started = try folder.run(["cortex", "audit", "start", "--dir", folder.dir, "--json"])
        #expect(started.exitCode == 0 && started.json?["started"] == .bool(true), "\(started)")
        try folder.allocate(2)
        let green = try folder.verify()
        #expect(green.exitCode == 0, "\(green)")
        // An unsigned record inside the era is named.
        let record = Record(
            id: "r00000000000000aa", timeMilliseconds: 1_800_000_000_000, kind: "budget.allocate", data: .object(["tokens": .int(5)]))
        let segment = folder.journal + "/" + JournalSegment.fileName(1)
        let offset = try fileSize(segment)
        try appendBytes(try RecordCodec.encode(record), to: segment)
        let red = try folder.verify()
        #expect(red.exitCode == 1, "\(red)")
        let first = try #require(Self.problems(red).first, "\(red)")
        #expect(first["offset"]?.intValue == offset && first["reason"]?.stringValue?.contains("unsigned") == true, "\(red)")
        #expect(red.json?["audit"]?["unattributed"]?.arrayValue?.first?["key"]?.stringValue == "unsigned", "\(red)")
    }

    @Test func theReaperAuditsNewlySealedSegmentsAndStatusAsksForAttention() throws {
        let folder = try Audited()
        try folder.allocate(25)
        let clean = try folder.run(["cortex-reap", "--dir", folder.dir])
        #expect(clean.exitCode == 0 && !clean.stderr.contains("audit"), "\(clean)")
        let progress = try String(contentsOfFile: folder.dir + "/audit/verified", encoding: .utf8)
        let checked = try #require(JSONValue.parse(progress)["segment"]?.intValue, "\(progress)")
        #expect(checked >= 3, "every sealed segment checked: \(progress)")
        // The reap archived sealed segments behind tombstones: their archived copies are checked in their place.
        let archived = try FileManager.default.contentsOfDirectory(atPath: folder.journal + "/archive")
        #expect(!archived.isEmpty, "the reaper archives what its snapshot covers")
        let afterArchiving = try folder.verify()
        #expect(afterArchiving.exitCode == 0, "\(afterArchiving)")
        // A record edited in a segment checked already is found by verify, not again by the reaper;
        // one edited in a segment sealed since is found by the next run.
        try folder.allocate(12)
        let target = Int(checked)
        var lines = try folder.lines(ofSegment: target)
        let index = try #require(lines.firstIndex { String(decoding: $0, as: UTF8.self).contains(#""tokens":1"#) })
        let text = String(decoding: lines[index], as: UTF8.self).replacingOccurrences(of: #""tokens":1"#, with: #""tokens":7"#)
        lines[index] = Self.withFreshChecksum(Array(text.utf8))
        try folder.write(lines, toSegment: target)
        let red = try folder.run(["cortex-reap", "--dir", folder.dir])
        #expect(red.stderr.contains("the audit of the sealed journal failed at \(JournalSegment.fileName(target))@"), "\(red)")
        let status = try folder.run(["cortex", "status", "--dir", folder.dir, "--json"])
        #expect(status.exitCode == 1, "\(status)")
        let attention = status.json?["attention"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(attention.contains { $0.contains("the audit of the sealed journal failed") }, "\(status)")
    }

    @Test func theHeadIsWhatTheNextSealCarries() throws {
        let folder = try Audited()
        try folder.allocate(12)
        let head = try folder.run(["cortex", "audit", "head", "--dir", folder.dir, "--json"])
        #expect(head.exitCode == 0, "\(head)")
        let segment = try #require(head.json?["segment"]?.intValue, "\(head)")
        let digest = try #require(head.json?["sha256"]?.stringValue, "\(head)")
        try folder.allocate(12)
        let next = try folder.lines(ofSegment: Int(segment) + 1).compactMap { line -> String? in
            guard case .record(let record, _) = RecordCodec.decode(line), record.isSeal else { return nil }
            return record.data["chain"]?.stringValue
        }
        #expect(next.first == digest, "the seal ending segment \(segment + 1) must carry the head: \(next)")
    }

    @Test(.enabled(if: runningAsRoot, needsRootNote))
    func auditShowNamesTheUsersOfATasksLife() throws {
        let groupName = "cxaudit"
        _ = try OtherUser.group(groupName)
        let alice = try OtherUser.ensure("cxaudit-a", groups: [groupName])
        let bob = try OtherUser.ensure("cxaudit-b", groups: [groupName])
        let directory = try TemporaryDirectory()
        try OtherUser.openUp(directory)
        let dir = directory.coordination
        let made = try runTool(["cortex", "init", "--dir", dir, "--group", groupName], in: directory)
        try #require(made.exitCode == 0, "\(made)")
        /// Each user's key in a folder of their own.
        func run(_ user: OtherUser, _ arguments: [String]) throws -> ToolResult {
            let home = directory.path + "/home-" + user.name
            if !FileManager.default.fileExists(atPath: home) { try user.makeFolder(home) }
            var environment = toolEnvironment
            environment["XDG_CONFIG_HOME"] = home
            environment["HOME"] = home
            return try user.runTool(arguments, umask: "022", in: directory, environment: environment)
        }
        let created = try run(alice, ["cortex-task", "create", "--dir", dir, "--type", "t", "--description", "audited", "--json"])
        try #require(created.exitCode == 0, "\(created)")
        let task = try #require(created.json?.string("task"), "\(created)")
        let claim = try run(bob, ["cortex-task", "claim", "--dir", dir, "--worker", "wb", "--json"])
        try #require(claim.exitCode == 0 && claim.json?.string("id") == task, "\(claim)")
        let token = try #require(claim.json?.int("claim"), "\(claim)")
        let done = try run(bob, ["cortex-task", "complete", task, "--claim", String(token), "--dir", dir, "--result", "{}"])
        try #require(done.exitCode == 0, "\(done)")

        let shown = try runTool(["cortex", "audit", "show", task, "--dir", dir, "--json"], in: directory)
        #expect(shown.exitCode == 0, "\(shown)")
        let events = shown.json?["events"]?.arrayValue ?? []
        let byKind = Dictionary(events.map { ($0["kind"]?.stringValue ?? "", $0) }, uniquingKeysWith: { first, _ in first })
        #expect(byKind["task.create"]?["user"]?.stringValue == alice.name, "\(shown)")
        #expect(byKind["task.create"]?["uid"]?.intValue == Int64(alice.uid), "\(shown)")
        #expect(byKind["task.claim"]?["user"]?.stringValue == bob.name, "\(shown)")
        #expect(byKind["task.complete"]?["user"]?.stringValue == bob.name, "\(shown)")
        let verified = try runTool(["cortex", "verify", "--dir", dir, "--audit", "--json"], in: directory)
        #expect(verified.exitCode == 0, "\(verified)")
        // A member cannot take another's key file away: the registry is sticky.
        let keys = try FileManager.default.contentsOfDirectory(atPath: dir + "/audit/keys")
        let bobsKey = try #require(byKind["task.claim"]?["key"]?.stringValue)
        #expect(keys.contains(bobsKey + ".pub"))
        let removal = try alice.runTool(["/bin/rm", "-f", dir + "/audit/keys/" + bobsKey + ".pub"], in: directory)
        #expect(removal.exitCode != 0, "\(removal)")
        #expect(FileManager.default.fileExists(atPath: dir + "/audit/keys/" + bobsKey + ".pub"))
    }
}
