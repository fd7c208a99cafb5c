import Testing

@testable import CortexCLI
@testable import CortexCore

/// A streamed report prints the bytes the same report held whole prints
/// (docs/decisions/040-streaming-list.md), whatever the lines end with and however the
/// output falls into chunks.
@Suite("Streamed reports")
struct ReportWriterTests {
    /// What a writer handed to its sink, in order.
    final class Collected {
        var bytes: [UInt8] = []
        var chunks = 0
    }

    static func streamed(_ lines: [String]) -> (text: String, chunks: Int) {
        let collected = Collected()
        let writer = ReportWriter { bytes in
            collected.bytes += bytes
            collected.chunks += 1
        }
        for line in lines { writer.line(line) }
        writer.finishText()
        return (String(decoding: collected.bytes, as: UTF8.self), collected.chunks)
    }

    @Test(arguments: [
        [], ["one"], ["one", "two"], ["ends in a newline\n"], ["a", "ends in CR LF\r\n"], ["a", ""], ["", ""], ["\n"],
        ["\r\n"], ["a\r", ""], ["a", "é\n"], ["two\nlines"],
    ])
    func textIsTheWholeReportsText(lines: [String]) {
        #expect(Self.streamed(lines).text == Output.printed(lines.joined(separator: "\n")), "\(lines)")
    }

    @Test func longOutputIsWrittenInChunksWithTheSameBytes() {
        // Multi-byte characters across chunk boundaries come out whole.
        let lines = (0..<20_000).map { "task-\($0)  pending  élevé  ✓ \(String(repeating: "ü", count: $0 % 7))" }
        let (text, chunks) = Self.streamed(lines)
        #expect(chunks > 10)
        #expect(text == Output.printed(lines.joined(separator: "\n")))
    }

    @Test func jsonIsOneLine() {
        let collected = Collected()
        let writer = ReportWriter { collected.bytes += $0 }
        writer.json("{\"count\":1,\"tasks\":[")
        writer.json(JSONValue.object(["id": .string("t")]).serialized())
        writer.json("]}")
        writer.finishJSON()
        let whole = JSONValue.object(["count": .int(1), "tasks": .array([.object(["id": .string("t")])])])
        #expect(String(decoding: collected.bytes, as: UTF8.self) == whole.jsonText + "\n")
    }
}
