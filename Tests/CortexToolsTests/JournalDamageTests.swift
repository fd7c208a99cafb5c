import CortexCore
import CortexStorage
import Foundation
import Testing

/// `cortex verify` finds damage in the live segment and says where; the fold skips it and
/// keeps every whole record around it (docs/design.md: damaged lines are skipped and counted, never fatal).
@Suite("Damaged journal")
struct JournalDamageTests {
    enum Damage: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case garbageText
        case truncatedRecord
        case binaryJunkLine
        case binaryJunkWithoutNewline
        case hugeLine

        var testDescription: String { rawValue }

        /// The bytes appended to the live segment; `record` is a whole line from the journal.
        func bytes(record: [UInt8]) -> [UInt8] {
            switch self {
            case .garbageText: Array("this is not a record\n".utf8)
            case .truncatedRecord: Array(record.prefix(record.count / 2)) + [0x0A]
            case .binaryJunkLine: Self.junk + [0x0A]
            case .binaryJunkWithoutNewline: Self.junk
            case .hugeLine: Array(repeating: UInt8(ascii: "x"), count: 100_000) + [0x0A]
            }
        }

        /// Bytes 0…255 except the newline, twice: NULs, invalid UTF-8, a stray `{`.
        static let junk: [UInt8] = (0...511).map { UInt8($0 % 256) }.filter { $0 != 0x0A }

        /// What verify calls the damage. Junk with no newline runs into the next record's line:
        /// a torn fragment with the whole record recovered after it.
        var expectedReason: String? {
            switch self {
            case .binaryJunkWithoutNewline: "torn fragment before a whole record"
            case .hugeLine: "line longer than 64 KiB"
            case .garbageText, .truncatedRecord, .binaryJunkLine: nil
            }
        }
    }

    @Test(.timeLimit(.minutes(5)), arguments: Damage.allCases)
    func verifyNamesTheSegmentAndOffsetOfDamageWhileStatusKeepsTheWholeRecordsAround(_ damage: Damage) throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination
        for tokens in ["10", "20"] {
            let result = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", tokens], in: directory)
            try #require(result.exitCode == 0, "\(result)")
        }
        let segment = dir + "/journal/" + JournalSegment.fileName(1)
        let journalBytes = Array(try Data(contentsOf: URL(fileURLWithPath: segment)))
        let lastRecord = Array(journalBytes.split(separator: 0x0A).last ?? [])
        let offset = try fileSize(segment)
        try appendBytes(damage.bytes(record: lastRecord + [0x0A]), to: segment)

        for tokens in ["30", "40"] {
            let result = try runTool(["cortex-budget", "allocate", "--dir", dir, "--tokens", tokens], in: directory)
            #expect(result.exitCode == 0, "records can still be appended after the damage: \(result)")
        }

        // verify: exit 1, the segment and the offset named, one line on stderr.
        let verify = try runTool(["cortex", "verify", "--dir", dir], in: directory)
        #expect(verify.exitCode == 1, "\(verify)")
        #expect(verify.stdout.contains("\(JournalSegment.fileName(1))@\(offset)"), "verify names segment 1 at offset \(offset): \(verify)")
        #expect(verify.stderrLines.count == 1, "\(verify)")

        let verifyJSON = try runTool(["cortex", "verify", "--dir", dir, "--json"], in: directory)
        #expect(verifyJSON.exitCode == 1, "\(verifyJSON)")
        let report = try #require(verifyJSON.json, "\(verifyJSON)")
        #expect(report["ok"] == .bool(false))
        #expect(report["problems"]?.arrayValue == [], "damaged lines are not structural problems: \(verifyJSON)")
        let damaged = report["damaged"]?.arrayValue ?? []
        #expect(damaged.count == 1, "\(verifyJSON)")
        #expect(damaged.first?.int("segment") == 1 && damaged.first?.int("offset") == offset, "\(verifyJSON)")
        if let reason = damage.expectedReason {
            #expect(damaged.first?.string("reason") == reason, "\(verifyJSON)")
        }

        // The fold skips the damage and keeps all four allocations.
        let status = try runTool(["cortex-budget", "status", "--dir", dir, "--json"], in: directory)
        #expect(status.exitCode == 0, "\(status)")
        let budget = try #require(status.json, "\(status)")
        #expect(budget.int("allocated") == 100, "\(status)")
        #expect(
            budget["allocations"]?.arrayValue?.compactMap { $0.int("tokens") } == [10, 20, 30, 40],
            "the whole records before and after the damage: \(status)")
        let text = try runTool(["cortex-budget", "status", "--dir", dir], in: directory)
        #expect(text.exitCode == 0 && text.stdout.contains("allocated     100 (4 allocations)"), "\(text)")

        let fold = try foldJournal(directory)
        #expect(fold.workload.count == 5, "budget.set and four allocations")
        #expect(fold.summary?.damaged.first?.position == JournalPosition(segment: 1, offset: offset))

        let tail = try runTool(["cortex", "tail", "--dir", dir, "--json"], in: directory)
        let events = tail.stdoutLines.compactMap { try? JSONValue.parse($0) }.filter {
            $0.string("kind") != nil && $0.string("kind")?.hasPrefix("audit.") != true
        }
        #expect(tail.exitCode == 0 && events.count == 5, "tail shows the five whole records: \(tail)")
    }

    @Test(.timeLimit(.minutes(5)))
    func aHalfWrittenLastLineIsAWriteInProgressNotDamage() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        let dir = directory.coordination
        let segment = dir + "/journal/" + JournalSegment.fileName(1)
        let first = Array(try Data(contentsOf: URL(fileURLWithPath: segment)))
        // The first half of a record with no newline yet: a writer still copying it in.
        try appendBytes(Array(first.prefix(40)), to: segment)

        let verify = try runTool(["cortex", "verify", "--dir", dir, "--json"], in: directory)
        #expect(verify.exitCode == 0, "\(verify)")
        #expect(verify.json?.int("partial_tail_bytes") == 40, "\(verify)")
        let status = try runTool(["cortex-budget", "status", "--dir", dir, "--json"], in: directory)
        #expect(status.exitCode == 0 && status.json?.int("total_budget") == 1000, "\(status)")
    }
}
