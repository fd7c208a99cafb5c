import CortexCore
import CortexStorage
import Foundation
import Testing

/// An id printed to a caller names the same thing forever (docs/decisions/019): a damaged
/// record in a sealed segment, skipped by a fold from the start, moves no other id.
@Suite("Id stability")
struct IdStabilityTests {
    /// Runs a tool that must succeed and returns its stdout's one line.
    func printed(_ arguments: [String], _ directory: TemporaryDirectory) throws -> String {
        let result = try runTool(arguments + ["--dir", directory.coordination], in: directory)
        try #require(result.exitCode == 0, "\(result)")
        return result.stdout.trimmingCharacters(in: .newlines)
    }

    /// Flips one byte inside the data of the record line containing `marker` in `segment`, so
    /// the line is still whole JSON but its checksum no longer matches: every fold skips it.
    func damageRecord(containing marker: String, in segment: String) throws {
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: segment)))
        let needle = Array(marker.utf8)
        let start = try #require(
            (0...(bytes.count - needle.count)).first { bytes[$0..<($0 + needle.count)].elementsEqual(needle) },
            "\(marker) in \(segment)")
        // The marker is a quoted value such as "h1": change its last letter or digit.
        let target = start + needle.count - 2
        bytes[target] = bytes[target] == UInt8(ascii: "9") ? UInt8(ascii: "8") : bytes[target] + 1
        try Data(bytes).write(to: URL(fileURLWithPath: segment))
    }

    /// Makes segments rotate at ~1 KiB and runs `append` until the first segment is sealed.
    func sealTheFirstSegment(_ directory: TemporaryDirectory, _ append: () throws -> Void) throws {
        try forceRotation(directory)
        for _ in 0..<20 where try segmentFiles(directory).count < 2 { try append() }
    }

    /// Damages the first of three records, then removes the snapshot and checkpoint so the next
    /// call folds the whole journal, skipping the damaged record.
    func damageFirstAndForgetTheSnapshot(markers: [String], _ directory: TemporaryDirectory) throws {
        let segments = try segmentFiles(directory)
        try #require(segments.count >= 2, "the records are in a sealed segment: \(segments)")
        let sealed = directory.coordination + "/journal/" + segments[0]
        try damageRecord(containing: markers[0], in: sealed)
        for file in ["state/snapshot.json", "state/checkpoint.json"] {
            try? FileManager.default.removeItem(atPath: directory.coordination + "/" + file)
        }
        let verify = try runTool(["cortex", "verify", "--dir", directory.coordination], in: directory)
        #expect(verify.exitCode != 0, "verify sees the damage: \(verify)")
    }

    @Test func releasingAPrintedAllocationIdReleasesThatAllocationAfterAnEarlierRecordIsDamaged() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        var ids: [String: String] = [:]
        for (holder, tokens) in [("h1", "100"), ("h2", "200"), ("h3", "300")] {
            ids[holder] = try printed(["cortex-budget", "allocate", "--tokens", tokens, "--holder", holder], directory)
        }
        #expect(Set(ids.values).count == 3, "\(ids)")
        // Seal the segment that holds the three grants.
        try sealTheFirstSegment(directory) {
            _ = try printed(["cortex-budget", "allocate", "--tokens", "1", "--holder", "filler"], directory)
        }
        try damageFirstAndForgetTheSnapshot(markers: ["\"h1\""], directory)

        let h2 = try #require(ids["h2"])
        let release = try runTool(["cortex-budget", "release", h2, "--dir", directory.coordination, "--json"], in: directory)
        #expect(release.exitCode == 0, "\(release)")
        #expect(release.json?["spent"]?.intValue == 200, "h2's 200 tokens were settled, not h3's 300: \(release)")
        // What the fold holds now (status folds the journal; the view's version counts records of
        // the fold before the damage was skipped, so it may not be rewritten yet).
        let status = try runTool(["cortex-budget", "status", "--dir", directory.coordination, "--json"], in: directory)
        let held = status.json?["allocations"]?.arrayValue ?? []
        let holders = Dictionary(held.compactMap { entry in entry.string("holder").map { ($0, entry) } }) { first, _ in first }
        #expect(holders["h3"]?.string("id") == ids["h3"] && holders["h3"]?.int("tokens") == 300, "h3 still reserved: \(held)")
        #expect(holders["h2"] == nil, "h2 released: \(held)")
        #expect(holders["h1"] == nil, "h1's grant was the damaged record")
        // Released once: a second release of the same id is a normal no.
        let again = try runTool(["cortex-budget", "release", h2, "--dir", directory.coordination], in: directory)
        #expect(again.exitCode == 1, "\(again)")
    }

    @Test func showingAPrintedTaskIdShowsThatTaskAfterAnEarlierRecordIsDamaged() throws {
        let directory = try TemporaryDirectory()
        try initialise(directory, totalTokens: 1000)
        var ids: [String: String] = [:]
        for name in ["t1", "t2", "t3"] {
            ids[name] = try printed(["cortex-task", "create", "--type", "build", "--description", name], directory)
        }
        #expect(Set(ids.values).count == 3, "\(ids)")
        try sealTheFirstSegment(directory) {
            _ = try printed(["cortex-task", "create", "--type", "filler"], directory)
        }
        try damageFirstAndForgetTheSnapshot(markers: ["\"t1\""], directory)

        for name in ["t2", "t3"] {
            let id = try #require(ids[name])
            let shown = try runTool(["cortex-task", "show", id, "--dir", directory.coordination, "--json"], in: directory)
            #expect(shown.exitCode == 0, "\(shown)")
            #expect(shown.json?.string("description") == name, "\(id) still names \(name): \(shown)")
        }
        let lost = try runTool(["cortex-task", "show", try #require(ids["t1"]), "--dir", directory.coordination], in: directory)
        #expect(lost.exitCode == 66, "the damaged record's task is unknown, not another task: \(lost)")
        // The first claim takes t2, under the id t2 was printed with.
        let claimed = try runTool(
            ["cortex-task", "claim", "--worker", "w", "--type", "build", "--dir", directory.coordination, "--json"], in: directory)
        #expect(claimed.json?.string("id") == ids["t2"], "\(claimed)")
    }
}
