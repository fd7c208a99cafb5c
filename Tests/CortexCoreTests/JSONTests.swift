import Testing

@testable import CortexCore
@testable import CortexStorage

@Suite struct JSONTests {
    @Test func serializationSortsKeysAndRoundTrips() throws {
        let value = JSONValue.object([
            "zeta": .int(-42), "alpha": .array([.bool(true), .null, .double(1.5)]), "path": "/a/b", "text": "line\nbreak \"q\" \\ é",
        ])
        let text = value.jsonText
        #expect(text == #"{"alpha":[true,null,1.5],"path":"/a/b","text":"line\nbreak \"q\" \\ é","zeta":-42}"#)
        let back = try JSONValue.parse(text)
        #expect(back["zeta"] == .int(-42))
        #expect(back["text"]?.stringValue == "line\nbreak \"q\" \\ é")
        #expect(back["path"]?.stringValue == "/a/b")
    }

    @Test func serializedTextNeverContainsARawNewline() {
        let value = JSONValue.object(["a": .string("x\ny\r\u{0}\u{1F}z"), "b": .array([.string("\n")])])
        #expect(!value.serialized().contains(0x0A))
    }

    @Test func escapesAndSurrogatePairsParse() throws {
        let value = try JSONValue.parse(#"["\u00e9", "\ud83d\ude00", "\/", "\b\f\n\r\t"]"#)
        #expect(value.arrayValue == [.string("é"), .string("😀"), .string("/"), .string("\u{8}\u{C}\n\r\t")])
    }

    @Test(arguments: [
        "", "{", "}", "[1,]", "{\"a\":}", "{\"a\" 1}", "01", "1.", "-", "1e", "\"abc", "\"\\x\"", "tru", "nul",
        "[1] 2", "{\"a\":1,}", "\"\u{1}\"", "\"\\ud800\"", "\"\\udc00\"", "NaN", "'a'",
    ])
    func malformedJSONIsRefused(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(deep) }
    }

    @Test func numbersKeepIntegersExact() throws {
        let value = try JSONValue.parse("[9007199254740991, -0, 1e3, 2.5, 123456789012345678901234567890]")
        let items = try #require(value.arrayValue)
        #expect(items[0] == .int(9_007_199_254_740_991))
        #expect(items[1] == .int(0))
        #expect(items[2].intValue == 1000)
        #expect(items[3] == .double(2.5))
        #expect(items[4].intValue == nil)
    }

    @Test func prettyOutputIsValidJSONEndingInNewline() throws {
        let value = JSONValue.object(["b": .object(["c": .array([1, 2])]), "a": .array([])])
        let pretty = value.prettySerialized()
        #expect(pretty.last == 0x0A)
        #expect(try JSONValue.parse(pretty) == JSONValue.parse(value.serialized()))
    }

    @Test func randomBytesNeverCrashTheParser() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array(#"{}[]":,\tnrufe0123456789.-+ "#.utf8) + [0x00, 0xFF, 0x0A, 0xC3]
        for _ in 0..<5_000 {
            let count = Int.random(in: 0..<40, using: &generator)
            let bytes = (0..<count).map { _ in alphabet.randomElement(using: &generator)! }
            _ = try? JSONValue.parse(bytes)
        }
    }
}

@Suite struct JSONEqualityTests {
    @Test func objectsCompareWithoutRegardToMemberOrder() {
        #expect(JSONValue.object(["a": 1, "b": 2]) == JSONValue.object(["b": 2, "a": 1]))
        #expect(JSONValue.object(["a": 1]) != JSONValue.object(["a": 1, "b": 2]))
        #expect(JSONValue.array([1, 2]) != JSONValue.array([2, 1]))
    }
}

@Suite struct TimeFormattingTests {
    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00Z"), (951_782_400_000, "2000-02-29T00:00:00Z"),
        (1_795_445_901_219, "2026-11-23T14:58:21Z"), (4_102_444_799_999, "2099-12-31T23:59:59Z"),
        (-1, "1969-12-31T23:59:59Z"),
    ])
    func isoTimesAreUTCWithWholeSeconds(_ milliseconds: Int64, _ expected: String) {
        #expect(ISOTime.format(milliseconds: milliseconds) == expected)
    }
}
