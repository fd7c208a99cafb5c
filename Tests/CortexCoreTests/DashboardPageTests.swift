import Foundation
import Testing

@testable import CortexCore
@testable import CortexStorage

/// The dashboard page's one safety rule: data never becomes markup (docs/decisions/016-dashboard.md).
@Suite struct DashboardPageTests {
    static let hostile = "</script><script>alert(1)</script><img src=x onerror=alert(2)> & \u{2028}\u{2029} <!--"

    @Test func scriptSafeJSONHasNoMarkupCharactersAndParsesBackToTheSameValue() throws {
        let value = JSONValue.object(["description": .string(Self.hostile), "n": .int(3), "list": .array([.string("a<b")])])
        let safe = Dashboard.scriptSafeJSON(value)
        for forbidden in [UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "&")] { #expect(!safe.contains(forbidden)) }
        let text = String(decoding: safe, as: UTF8.self)
        #expect(!text.contains("\u{2028}") && !text.contains("\u{2029}"))
        #expect(text.contains(#"\u003c/script\u003e"#))
        #expect(try JSONValue.parse(safe) == value)
    }

    @Test func userTextInAnyViewCannotCloseTheDataBlock() throws {
        let queue = JSONValue.object([
            "pending": .array([.object(["description": .string(Self.hostile), "id": "task-1.0", "type": "build"])])
        ])
        let snapshot = Dashboard.Snapshot(
            budget: .object([:]), taskQueue: queue, workerPool: .object(["workers": .array([])]),
            metrics: nil, events: [.object(["data": .object(["description": .string(Self.hostile)]), "kind": "task.create"])],
            directory: "/srv/</script>", generatedMilliseconds: 1_764_655_200_000, frozen: false)
        let page = String(decoding: Dashboard.page(snapshot), as: UTF8.self)
        // Exactly the page's own two script elements end: the data block and the code.
        #expect(page.components(separatedBy: "</script>").count == 3)
        #expect(page.components(separatedBy: "<script").count == 3)
        #expect(!page.contains("<img"))
        // The data block holds exactly the snapshot.
        let start = try #require(page.range(of: #"<script type="application/json" id="cortex-data">"#))
        let end = try #require(page.range(of: "</script>", range: start.upperBound..<page.endIndex))
        let embedded = try JSONValue.parse(String(page[start.upperBound..<end.lowerBound]))
        #expect(embedded == snapshot.json)
        #expect(embedded["metrics"] == .null, "no metrics yet")
        #expect(embedded["frozen"] == .bool(false))
    }

    @Test func theScriptNeverUsesInnerHTML() {
        let page = String(
            decoding: Dashboard.page(
                Dashboard.Snapshot(
                    budget: .object([:]), taskQueue: .object([:]), workerPool: .object([:]), metrics: nil, events: [], directory: ".",
                    generatedMilliseconds: 0, frozen: true)), as: UTF8.self)
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] { #expect(!page.contains(sink), "\(sink)") }
    }
}
