/// Turns records into journal lines and back.
///
/// A line is `{"cortex":1,"id":…,"at_ms":…,"kind":…,"data":{…},"crc":"xxxxxxxx"}` and a newline.
/// The checksum is the CRC-32C of every byte before `,"crc":`, so it is checked on raw bytes
/// before any JSON is parsed. JSON escapes newlines inside strings, so a raw newline only
/// ever ends a line. A signed line (docs/decisions/044-signed-journal.md) carries
/// `,"signer":"KEY","sig":"HEX"` between `data` and `crc`; the signature covers every byte
/// before `,"signer":`, and the checksum still covers every byte before `,"crc":`.
public enum RecordCodec {
    /// The journal format version written in the `cortex` field.
    public static let formatVersion = 1
    /// The largest line, newline included (docs/design.md: "at most 64 KiB").
    public static let maximumLineBytes = 64 * 1024
    /// Every record starts with these bytes; recovery looks for them inside damaged lines.
    static let recordPrefix: [UInt8] = Array(#"{"cortex":1,"#.utf8)
    private static let checksumMarker: [UInt8] = Array(#","crc":""#.utf8)
    /// `,"crc":"` + 8 hex digits + `"}`.
    private static let checksumSuffixLength = 18

    private static let signerMarker: [UInt8] = Array(#","signer":""#.utf8)
    private static let signatureMarker: [UInt8] = Array(#"","sig":""#.utf8)

    /// The line for `record`, newline included, signed by `signer` when one is given.
    /// - Throws: `CortexError.badInput` when the line would exceed `maximumLineBytes`.
    public static func encode(_ record: Record, signer: (any RecordSigner)? = nil) throws(CortexError) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(256)
        line.append(contentsOf: recordPrefix)
        line.append(contentsOf: #""id":"#.utf8)
        JSONValue.writeString(record.id, into: &line)
        line.append(contentsOf: #","at_ms":"#.utf8)
        line.append(contentsOf: String(record.timeMilliseconds).utf8)
        line.append(contentsOf: #","kind":"#.utf8)
        JSONValue.writeString(record.kind, into: &line)
        line.append(contentsOf: #","data":"#.utf8)
        line.append(contentsOf: record.data.serialized())
        if let signer {
            let signature = signer.signature(of: line)
            line.append(contentsOf: signerMarker)
            line.append(contentsOf: signer.keyFingerprint.utf8)
            line.append(contentsOf: signatureMarker)
            let hex = Array("0123456789abcdef".utf8)
            for byte in signature {
                line.append(hex[Int(byte >> 4)])
                line.append(hex[Int(byte & 0xF)])
            }
            line.append(UInt8(ascii: "\""))
        }
        let crc = CRC32C.checksum(line)
        line.append(contentsOf: checksumMarker)
        appendHex(crc, to: &line)
        line.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: "}"), 0x0A])
        guard line.count <= maximumLineBytes else {
            throw .badInput(
                "record too large: \(line.count) bytes, the journal takes at most \(maximumLineBytes) per record")
        }
        return line
    }

    /// What a line turned out to be.
    public enum Decoded: Equatable, Sendable {
        /// A whole record. `skippedPrefixBytes` > 0 when a torn fragment stood before it on the line.
        case record(Record, skippedPrefixBytes: Int)
        /// Nothing trustworthy on the line.
        case invalid(reason: String)
    }

    /// Decodes one line (without its newline). Checks the checksum first; when the whole line
    /// fails, looks for a whole record at its end (a torn fragment followed by a record).
    public static func decode(_ line: UnsafeBufferPointer<UInt8>) -> Decoded {
        let whole = decodeExact(line)
        if case .record = whole { return whole }
        // Recovery: a record starting later on the line. Try each candidate start, first to last.
        var start = 1
        while let candidate = find(recordPrefix, in: line, from: start) {
            if case .record(let record, _) = decodeExact(UnsafeBufferPointer(rebasing: line[candidate...])) {
                return .record(record, skippedPrefixBytes: candidate)
            }
            start = candidate + 1
        }
        return whole
    }

    /// Decodes a line given as an array (tests and tools).
    public static func decode(_ line: [UInt8]) -> Decoded {
        line.withUnsafeBufferPointer { decode($0) }
    }

    private static func decodeExact(_ line: UnsafeBufferPointer<UInt8>) -> Decoded {
        let count = line.count
        guard count > recordPrefix.count + checksumSuffixLength else { return .invalid(reason: "truncated record") }
        guard startsWith(line, recordPrefix, at: 0) else { return .invalid(reason: "not a Cortex record") }
        let markerStart = count - checksumSuffixLength
        guard startsWith(line, checksumMarker, at: markerStart), line[count - 2] == UInt8(ascii: "\""),
            line[count - 1] == UInt8(ascii: "}")
        else { return .invalid(reason: "truncated record (no checksum)") }
        guard let stored = parseHex(line, from: markerStart + checksumMarker.count) else {
            return .invalid(reason: "malformed checksum")
        }
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: line[..<markerStart])))
        guard stored == computed else { return .invalid(reason: "checksum mismatch") }
        let value: JSONValue
        do {
            if let signed = locateSignature(line) {
                // The fold never needs the signature: only the record's own bytes are parsed
                // (`{…,"data":{…}` and its closing brace), so signing costs a fold nothing.
                var record = Array(UnsafeBufferPointer(rebasing: line[..<signed.signedLength]))
                record.append(UInt8(ascii: "}"))
                value = try JSONValue.parse(record)
            } else {
                value = try JSONValue.parse(line)
            }
        } catch { return .invalid(reason: "malformed JSON: \(error)") }
        guard let id = value["id"]?.stringValue, let time = value["at_ms"]?.intValue,
            let kind = value["kind"]?.stringValue, let data = value["data"]
        else { return .invalid(reason: "record without id, at_ms, kind or data") }
        return .record(Record(id: id, timeMilliseconds: time, kind: kind, data: data), skippedPrefixBytes: 0)
    }

    /// The signature part of `line` (one whole record, without its newline, whose checksum
    /// `decode` accepted), or nil when it carries none. Read backwards from `,"crc":`, so nothing
    /// inside `data` can pass for it: the key and the signature hold no quote.
    public static func signature(ofLine line: UnsafeBufferPointer<UInt8>) -> LineSignature? {
        guard let found = locateSignature(line) else { return nil }
        let key = String(decoding: UnsafeBufferPointer(rebasing: line[found.key]), as: UTF8.self)
        var signature: [UInt8]? = []
        let hex = found.signature
        if hex.count % 2 != 0 || hex.count > 1024 { signature = nil }
        var index = hex.lowerBound
        while signature != nil, index + 1 < hex.upperBound, let high = hexDigit(line[index]), let low = hexDigit(line[index + 1]) {
            signature?.append(high << 4 | low)
            index += 2
        }
        return LineSignature(signedLength: found.signedLength, keyFingerprint: key, signature: signature)
    }

    /// Where the signature part of `line` lies: the signed length, the key's and the hex
    /// signature's byte ranges; nil when there is none.
    private static func locateSignature(_ line: UnsafeBufferPointer<UInt8>) -> (signedLength: Int, key: Range<Int>, signature: Range<Int>)?
    {
        let markerStart = line.count - checksumSuffixLength
        guard markerStart > 0, line[markerStart - 1] == UInt8(ascii: "\"") else { return nil }
        // Lowercase hex only, run back to the markers (then the line parses whole exactly when
        // its record part does): `","sig":"HEX` and, before it, `,"signer":"KEY`.
        var hexStart = markerStart - 1
        while hexStart > 0, isLowerHex(line[hexStart - 1]) { hexStart -= 1 }
        let sigMarkerStart = hexStart - signatureMarker.count
        guard sigMarkerStart > 0, startsWith(line, signatureMarker, at: sigMarkerStart) else { return nil }
        var keyStart = sigMarkerStart
        while keyStart > 0, isLowerHex(line[keyStart - 1]) { keyStart -= 1 }
        let signerStart = keyStart - signerMarker.count
        guard signerStart > 0, startsWith(line, signerMarker, at: signerStart) else { return nil }
        return (signerStart, keyStart..<sigMarkerStart, hexStart..<(markerStart - 1))
    }

    /// `signature(ofLine:)` for a line given as an array.
    public static func signature(ofLine line: [UInt8]) -> LineSignature? {
        line.withUnsafeBufferPointer { signature(ofLine: $0) }
    }

    @inline(__always) private static func isLowerHex(_ byte: UInt8) -> Bool {
        byte &- UInt8(ascii: "0") < 10 || byte &- UInt8(ascii: "a") < 6
    }

    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        default: nil
        }
    }

    private static func startsWith(_ line: UnsafeBufferPointer<UInt8>, _ prefix: [UInt8], at index: Int) -> Bool {
        guard index >= 0, index + prefix.count <= line.count else { return false }
        for offset in 0..<prefix.count where line[index + offset] != prefix[offset] { return false }
        return true
    }

    private static func find(_ needle: [UInt8], in line: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        guard needle.count <= line.count else { return nil }
        var index = start
        let first = needle[0]
        while index + needle.count <= line.count {
            if line[index] == first && startsWith(line, needle, at: index) { return index }
            index += 1
        }
        return nil
    }

    private static func appendHex(_ value: UInt32, to line: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        for shift in stride(from: 28, through: 0, by: -4) { line.append(hex[Int((value >> UInt32(shift)) & 0xF)]) }
    }

    private static func parseHex(_ line: UnsafeBufferPointer<UInt8>, from start: Int) -> UInt32? {
        var value: UInt32 = 0
        for index in start..<(start + 8) {
            let byte = line[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }
}
