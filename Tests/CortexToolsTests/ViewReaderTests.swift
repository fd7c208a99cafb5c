import CortexCore
import CortexStorage
import Foundation
import Testing

/// Invariant 6 (docs/design.md): every file a reader can open is whole.
@Suite("Readers of token-budget.json")
struct ViewReaderTests {
    @Test(
        .enabled(if: jqPath != nil, "jq is not installed: cannot check what jq readers see"),
        .timeLimit(.minutes(5)))
    func jqNeverSeesAHalfWrittenOrInconsistentBudgetViewWhileTenWritersLoop() throws {
        let jq = try #require(jqPath)
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1_000_000)
        let view = directory.coordination + "/token-budget.json"
        let stopFile = directory.scratch + "/stop"

        // Ten writers loop allocate → release until told to stop; any failing tool call ends
        // its writer with exit 3, which fails the test.
        let loop = #"""
            n=0
            while [ ! -e "$2" ]; do
              id=$("$0" allocate --dir "$1" --tokens 5 --holder "w$3") || exit 3
              "$0" release "$id" --dir "$1" --used 2 >/dev/null || exit 3
              n=$((n+1))
            done
            echo "$n"
            """#
        let writers = try (1...10).map { index in
            try RunningTool(
                [bashPath, "-c", loop, toolPath("cortex-budget"), directory.coordination, stopFile, String(index)],
                scratch: directory.scratch)
        }
        defer {
            // Stop the writers however the reads went.
            _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
            for writer in writers { _ = writer.wait() }
        }

        // jq's view of the fields, and the same from a plain read parsed in the test.
        let filter =
            "[.total_budget, .spent, .allocated, .in_use, .available, .outstanding_allocations, 5 * .outstanding_allocations, .version]"
        // token-allocations.json agrees with itself too: its total is its list's sum.
        let listView = directory.coordination + "/token-allocations.json"
        let listFilter = "[.allocated, ([.allocations[].tokens] | add // 0), 5 * (.allocations | length), 5 * .count]"
        var recordsFoldedSeen: Set<Int64> = []
        var problems: [String] = []
        func check(_ numbers: [Int64], from reader: String) {
            guard numbers.count == 8 else {
                problems.append("\(reader): \(numbers)")
                return
            }
            let (total, spent, allocated, inUse, available, count, sum, folded) =
                (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5], numbers[6], numbers[7])
            recordsFoldedSeen.insert(folded)
            if total != 1_000_000 || available != total - spent - allocated || available < 0 || inUse != allocated
                || allocated != sum || allocated != 5 * count
            {
                problems.append("\(reader) saw an inconsistent view: \(numbers)")
            }
        }
        let reads = 120
        for _ in 0..<reads {
            let result = try RunningTool([jq, "-e", "-c", filter, view], scratch: directory.scratch).wait()
            if result.exitCode != 0 {
                problems.append("jq could not read the view: \(result)")
            } else if let numbers = result.json?.arrayValue?.compactMap(\.intValue) {
                check(numbers, from: "jq")
            } else {
                problems.append("jq printed something else: \(result)")
            }
            let list = try RunningTool([jq, "-e", "-c", listFilter, listView], scratch: directory.scratch).wait()
            let sums = list.json?.arrayValue?.compactMap(\.intValue) ?? []
            if list.exitCode != 0 || sums.count != 4 || Set(sums).count != 1 {
                problems.append("token-allocations.json read by jq: \(list)")
            }
            for _ in 0..<3 {
                do {
                    let parsed = try JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath: view)))
                    let keys = ["total_budget", "spent", "allocated", "in_use", "available"]
                    let numbers =
                        keys.compactMap { parsed.int($0) } + [
                            parsed.int("outstanding_allocations") ?? -1, 5 * (parsed.int("outstanding_allocations") ?? -1),
                        ] + [parsed.int("version") ?? -1]
                    check(numbers, from: "read(2)")
                } catch {
                    problems.append("a plain read did not parse: \(error)")
                }
            }
        }
        #expect(problems.isEmpty, "\(problems.count) bad reads of \(reads * 4), first: \(problems.prefix(5))")
        #expect(recordsFoldedSeen.count > 1, "the view must have changed while it was being read")

        _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
        let finished = writers.map { $0.wait() }
        for writer in finished {
            #expect(writer.exitCode == 0, "a writer's tool call failed: \(writer)")
        }
        let rounds = finished.compactMap { Int64($0.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) }.reduce(0, +)

        // After the writers, the view is the whole journal's fold.
        let fold = try foldJournal(directory)
        let final = try budgetView(directory)
        #expect(fold.state.budget.spent == 2 * rounds, "every completed round spent 2 tokens")
        #expect(final.int("spent") == fold.state.budget.spent)
        #expect(final.int("allocated") == 0)
        #expect(final.int("outstanding_allocations") == 0)
        #expect(final.int("version") == fold.state.budget.version)
        // A read-only status starts from the snapshot (written every 256 records) and must agree too.
        let status = try runTool(["cortex-budget", "status", "--dir", directory.coordination, "--json"], in: directory)
        #expect(status.exitCode == 0, "\(status)")
        #expect(status.json?.int("version") == fold.state.budget.version, "\(status)")
        #expect(status.json?.int("spent") == fold.state.budget.spent, "\(status)")
    }
}
