import Testing

@testable import CortexCore
@testable import CortexStorage

@Suite struct RecordCodecTests {
    let sample = Record(
        id: "r0123456789abcdef", timeMilliseconds: 1_795_000_000_123, kind: "budget.allocate",
        data: .object(["tokens": 30, "holder": "w-1", "note": "a\nb"]))

    @Test func aRecordRoundTripsThroughItsLine() throws {
        let line = try RecordCodec.encode(sample)
        #expect(line.last == 0x0A)
        #expect(line.filter { $0 == 0x0A }.count == 1)
        #expect(RecordCodec.decode(Array(line.dropLast())) == .record(sample, skippedPrefixBytes: 0))
    }

    @Test func checksumKnownValue() {
        // RFC 3720 test vector for CRC-32C.
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    }

    @Test func everyTruncationIsDetected() throws {
        let line = Array(try RecordCodec.encode(sample).dropLast())
        for length in 0..<line.count {
            let decoded = RecordCodec.decode(Array(line[..<length]))
            guard case .invalid = decoded else {
                Issue.record("a line cut to \(length) bytes decoded as a record")
                return
            }
        }
    }

    @Test func everySingleByteCorruptionIsDetected() throws {
        let line = Array(try RecordCodec.encode(sample).dropLast())
        for index in line.indices {
            var damaged = line
            damaged[index] ^= 0x20
            if case .record(let record, _) = RecordCodec.decode(damaged) {
                // Flipping a bit can only be accepted if it produced the same record (impossible here).
                Issue.record("corruption at byte \(index) accepted: \(record)")
            }
        }
    }

    @Test func aWholeRecordAfterATornFragmentIsRecovered() throws {
        let fragment = Array(try RecordCodec.encode(sample).prefix(40))
        let whole = try RecordCodec.encode(record(.budgetSet(total: 7)))
        let line = fragment + whole.dropLast()
        guard case .record(let recovered, let skipped) = RecordCodec.decode(line) else {
            Issue.record("not recovered")
            return
        }
        #expect(recovered.kind == "budget.set")
        #expect(skipped == fragment.count)
    }

    @Test func recordsLargerThanTheLimitAreRefused() {
        let big = Record(id: "r1", timeMilliseconds: 1, kind: "x", data: .object(["text": .string(String(repeating: "a", count: 70_000))]))
        #expect(throws: CortexError.self) { try RecordCodec.encode(big) }
    }

    @Test func garbageIsNeverMistakenForARecord() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let count = Int.random(in: 0..<300, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if Bool.random(using: &generator) { bytes = Array(#"{"cortex":1,"id":"x","#.utf8) + bytes }
            if case .record = RecordCodec.decode(bytes) { Issue.record("garbage decoded as a record") }
        }
    }
}
