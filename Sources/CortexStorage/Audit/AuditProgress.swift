import CortexCore

/// The reaper's incremental check of newly sealed segments (docs/decisions/044-signed-journal.md):
/// `audit/verified` remembers the next segment to check, the chain its seal must carry, whether
/// the audited era has started, and the first problem found (which `cortex status` reports until
/// a run finds the journal clean again). A convenience, not evidence: anyone who can write the
/// folder can rewrite it; `cortex verify --audit` checks everything from the start.
public enum AuditProgress {
    /// What the last check left.
    public struct State: Equatable, Sendable {
        /// Where the next check starts.
        public var start: AuditVerifier.Start
        /// The first problem the last check found (`SEGMENT@OFFSET: reason`), or nil.
        public var problem: String?
    }

    /// The state `audit/verified` holds, or nil when there is none (or it cannot be read).
    public static func load(_ layout: CoordinationLayout) -> State? {
        guard let bytes = try? layout.folder.readFile(layout.auditProgress, limit: FileLimits.smallFile),
            let json = try? JSONValue.parse(bytes), let segment = json["segment"]?.intValue, segment >= 1, segment < Int64(Int32.max)
        else { return nil }
        let start = AuditVerifier.Start(
            segment: Int(segment), chain: json["chain"]?.stringValue, inEra: json["era"]?.boolValue ?? false)
        // Anyone who can write the folder can write this file: its text is shown only made printable.
        return State(start: start, problem: json["problem"]?.stringValue.map { Values.printable($0, limit: 300) })
    }

    /// Checks the segments sealed since the last check, and records where it got and the first
    /// problem, if any. Returns that problem, or nil when all is well.
    @discardableResult
    public static func advance(_ journal: FileJournal, layout: CoordinationLayout, permissions: FolderPermissions)
        throws(CortexError) -> String?
    {
        let previous = load(layout)
        let report = try AuditVerifier.verify(
            journal, layout: layout, from: previous?.start ?? .beginning, sealedOnly: true, audited: true)
        var problem: String?
        var start = report.next
        if let first = report.problems.first {
            problem = "\(first.position): \(first.reason)"
            // Checked again from the same place next time, until someone has looked at it.
            start = previous?.start ?? .beginning
        } else if let key = report.unattributed.first {
            problem = "\(key.first): key \(key.key) is not registered"
            start = previous?.start ?? .beginning
        }
        let state = State(start: start, problem: problem)
        if state != previous {
            let json = JSONValue.object([
                "chain": start.chain.map { .string($0) } ?? .null, "era": .bool(start.inEra),
                "problem": problem.map { .string($0) } ?? .null,
                "segment": .int(Int64(start.segment)),
            ])
            try Files.makeDirectory(layout.auditFolder, in: layout.folder, mode: permissions.directory(.shared))
            try AtomicFile.replace(
                layout.auditProgress, in: layout.folder, with: Array((json.jsonText + "\n").utf8), durability: .processCrash,
                mode: permissions.file(.shared))
        }
        return problem
    }
}
