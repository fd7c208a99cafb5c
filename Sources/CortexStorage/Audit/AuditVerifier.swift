import CortexCore

/// `cortex verify --audit` (docs/decisions/044-signed-journal.md): every signature and the seal
/// chain of a journal of files, read from its raw bytes.
///
/// The audited era starts at the first `audit.start` record (written by `cortex init` in a new
/// folder, by `cortex audit start` in an older one). From there on every live record must be
/// signed by a key whose `audit/keys/KEY.pub` attributes it to a user, and every seal must
/// carry the chain over the segment before it. Signed records before the era are checked too.
/// Void lines (after a segment's first seal) are not folded and not checked; damaged lines are
/// `cortex verify`'s business.
public enum AuditVerifier {
    /// One thing found wrong, at a line.
    public struct Problem: Equatable, Sendable {
        /// Where the line starts.
        public var position: JournalPosition
        /// What is wrong.
        public var reason: String
    }

    /// A key that signed records nobody can be held to: no `.pub` file (or one that cannot be
    /// trusted), or no key at all (`"unsigned"`) in the audited era.
    public struct Unattributed: Equatable, Sendable {
        /// The key's fingerprint as the lines give it, or `unsigned`.
        public var key: String
        /// How many records.
        public var records: Int
        /// Where the first one starts.
        public var first: JournalPosition
    }

    /// What `verify` found.
    public struct Report: Sendable {
        /// Segments read.
        public var segments = 0
        /// Live records read (seals excluded).
        public var records = 0
        /// Records whose signature was checked and holds.
        public var verified = 0
        /// Seals whose chain was recomputed and matched.
        public var sealsChecked = 0
        /// Where the audited era starts (its `audit.start` record), or nil when it has not.
        public var eraStart: JournalPosition?
        /// The problems, in journal order: the first is the first broken line.
        public var problems: [Problem] = []
        /// The keys that could not be attributed, in the order first met.
        public var unattributed: [Unattributed] = []
        /// The owners of the keys that signed verified records.
        public var owners: [String: KeyOwner] = [:]
        /// The newest sealed segment and the digest over every sealed byte through its seal
        /// (what the next seal will carry): `cortex audit head`.
        public var head: (segment: Int, digest: String)?
        /// Segments whose bytes are gone (archive purged): the chain is checked from after them.
        public var purged: [Int] = []
        /// Where a later check of what is sealed after this one starts (past the last sealed segment read).
        public var next = Start.beginning

        /// True when nothing is wrong.
        public var isClean: Bool { problems.isEmpty && unattributed.isEmpty }
    }

    /// Where a check starts: the segment, the chain its seal must carry (nil: unknown, not
    /// checked), and whether the audited era has started before it.
    public struct Start: Equatable, Sendable {
        /// The first segment to read.
        public var segment: Int
        /// What that segment's seal must carry as `chain`.
        public var chain: String?
        /// True when an `audit.start` record lies before `segment`.
        public var inEra: Bool

        /// The journal's beginning.
        public static let beginning = Start(segment: 1, chain: Hex.encode(SHA256Digest.of([])), inEra: false)

        /// A start with every field given.
        public init(segment: Int, chain: String?, inEra: Bool) {
            self.segment = segment
            self.chain = chain
            self.inEra = inEra
        }
    }

    /// Reads the journal of `layout` from `start` and checks it. `visit` gets every live record
    /// in journal order with its position and the owner of its key when its signature holds (nil
    /// when it is unsigned or could not be verified). With `sealedOnly`, only segments that
    /// already have a successor are read (the reaper's incremental check); `Report.next` says
    /// where the next check starts. `audited` is the folder's config switch: with it, a removed
    /// segment starts the era and a journal without `audit.start` is a problem.
    public static func verify(
        _ journal: FileJournal, layout: CoordinationLayout, from start: Start = .beginning, sealedOnly: Bool = false,
        audited: Bool = false, visit: ((Record, JournalPosition, KeyOwner?) -> Void)? = nil
    ) throws(CortexError) -> Report {
        var report = Report()
        report.next = start
        var owners: [String: KeyOwner?] = [:]
        var seenIDs: Set<String> = []
        var unattributedIndex: [String: Int] = [:]
        var inEra = start.inEra
        // The digest of the previous segment through its first seal: what this segment's seal carries.
        var expectedChain: String? = start.chain
        func unattributed(_ key: String, at position: JournalPosition) {
            if let index = unattributedIndex[key] {
                report.unattributed[index].records += 1
            } else {
                unattributedIndex[key] = report.unattributed.count
                report.unattributed.append(Unattributed(key: key, records: 1, first: position))
            }
        }
        var segment = start.segment
        while true {
            if sealedOnly, try !journal.segmentExists(segment + 1) { break }
            let opened = try journal.openForReading(segment: segment)
            if case .missing = opened { break }
            if case .open(let fd, _, _) = opened { POSIX.close(fd) }
            report.segments += 1
            let read: [UInt8]?
            do { read = try journal.segmentBytes(segment) } catch {
                // Planted or unreadable: named as a problem, and the audit goes on past it.
                report.problems.append(Problem(position: JournalPosition(segment: segment, offset: 0), reason: error.description))
                expectedChain = nil
                segment += 1
                continue
            }
            guard let bytes = read else {
                report.purged.append(segment)
                // In a folder whose config says `audit`, what follows a removed segment is held to
                // the era: removing the segment that held `audit.start` must not end it.
                if audited { inEra = true }
                expectedChain = nil
                segment += 1
                continue
            }
            var start = 0
            var sealEnd: Int?
            while start < bytes.count, sealEnd == nil {
                guard let newline = bytes[start...].firstIndex(of: 0x0A) else { break }
                defer { start = newline + 1 }
                let line = Array(bytes[start..<newline])
                guard case .record(let record, let skipped) = RecordCodec.decode(line) else { continue }
                let position = JournalPosition(segment: segment, offset: Int64(start + skipped))
                if record.isSeal {
                    sealEnd = newline + 1
                    let carried = record.data["chain"]?.stringValue
                    if let expectedChain {
                        if let carried, carried != expectedChain {
                            report.problems.append(
                                Problem(
                                    position: position,
                                    reason:
                                        "the seal's chain does not match segment \(segment - 1): a line there was edited, removed, added or reordered after it was sealed"
                                ))
                        } else if carried == nil, inEra {
                            report.problems.append(Problem(position: position, reason: "a seal without its chain in the audited era"))
                        } else if carried != nil {
                            report.sealsChecked += 1
                        }
                    }
                    continue
                }
                report.records += 1
                // Cortex never makes two live records with one id (a re-append follows a torn or
                // void copy): a second one is a signed line copied back in, a replay.
                if !seenIDs.insert(record.id).inserted {
                    report.problems.append(
                        Problem(
                            position: position,
                            reason: "record \(Values.printable(record.id)) appears a second time: a copy of a line replayed"))
                }
                if record.kind == Record.auditStartKind, !inEra {
                    inEra = true
                    report.eraStart = position
                }
                var owner: KeyOwner?
                if let signature = RecordCodec.signature(ofLine: Array(line[skipped...])) {
                    let key = signature.keyFingerprint
                    if owners[key] == nil { owners[key] = .some(AuditKeys.owner(of: key, in: layout)) }
                    if let known = owners[key] ?? nil {
                        let holds = line.withUnsafeBufferPointer { buffer in
                            guard let bytes = signature.signature else { return false }
                            let message = UnsafeBufferPointer(rebasing: buffer[skipped..<(skipped + signature.signedLength)])
                            return SigningKey.verify(publicKey: known.publicKey, signature: bytes, message: message)
                        }
                        if holds {
                            owner = known
                            report.verified += 1
                            report.owners[key] = known
                        } else {
                            report.problems.append(
                                Problem(
                                    position: position,
                                    reason: "record \(Values.printable(record.id)): its signature does not match (key \(key))"))
                        }
                    } else {
                        unattributed(key, at: position)
                        report.problems.append(
                            Problem(
                                position: position,
                                reason: "record \(Values.printable(record.id)): signed by key \(key), which no user registered"))
                    }
                } else if inEra {
                    unattributed("unsigned", at: position)
                    report.problems.append(
                        Problem(position: position, reason: "record \(Values.printable(record.id)): unsigned in the audited era"))
                }
                visit?(record, position, owner)
            }
            guard let sealEnd else { break }
            let digest = Hex.encode(SHA256Digest.of(Array(bytes[..<sealEnd])))
            report.head = (segment, digest)
            expectedChain = digest
            segment += 1
            report.next = Start(segment: segment, chain: digest, inEra: inEra)
        }
        if audited, start == .beginning, report.eraStart == nil, report.purged.isEmpty, report.records > 0 {
            report.problems.append(
                Problem(
                    position: JournalPosition(segment: 1, offset: 0),
                    reason:
                        "config.json says audit, but the journal holds no audit.start: a line was removed, or 'cortex audit start' never ran"
                ))
        }
        report.problems.sort { $0.position < $1.position }
        return report
    }

    /// The digest over every sealed byte (`Report.head`) without checking anything: `cortex audit head`.
    public static func head(_ journal: FileJournal) throws(CortexError) -> (segment: Int, digest: String)? {
        var segment = 1
        var head: (segment: Int, digest: String)?
        while try journal.segmentExists(segment + 1) {
            if let bytes = try journal.sealedBytes(ofSegment: segment) { head = (segment, Hex.encode(SHA256Digest.of(bytes))) }
            segment += 1
        }
        return head
    }
}
