import CortexCore
import Synchronization

/// The journal on an etcd cluster, over the `EtcdKV` seam (docs/decisions/031; issue 16).
///
/// Each record is one key, `<namespace>/journal/<record id>`, whose value is the record's line
/// (as `RecordCodec` wrote it, without the newline). The key is created once, with a
/// transaction that puts it only when it does not exist (`EtcdKV.createIfAbsent`), so an append
/// whose reply was lost is retried with the same key and learns the revision of the write that
/// got in: one record, at one position.
///
/// A position is an etcd revision: segment 1, offset the revision (`position(revision:)`), so
/// ids read `task-1.16287` and snapshots and file names keep their encodings. The record at a
/// key starts at the revision that created it; a read that saw the cluster at revision `H`
/// ends at `(1, H + 1)`. Revisions give one total order that never changes once acknowledged
/// (etcd answers after a Raft majority has the write on disk), so durability needs no call of
/// its own, nothing is ever void, and there is one part: nothing to roll over. Compaction
/// deletes the keys that a durable snapshot covers, so a read's sort stays short.
///
/// Holds no mutable state but `durableThrough` (behind a lock): one instance may serve stores
/// on several threads.
public final class EtcdJournal: Journal, Sendable {
    /// The cluster.
    public let kv: any EtcdKV
    /// The namespace every key of this coordination lives under.
    public let namespace: String
    /// `<namespace>/journal/`: the prefix of every record key.
    public let prefix: [UInt8]
    /// At most this many records per range request of a read (a read pages until it has all).
    public let pageSize: Int
    /// How many times an append is tried (the same key each time) before its error is thrown.
    public static let appendAttempts = 4
    /// The furthest position `makeDurable` was given (`durableThrough`).
    private let durable = Mutex<JournalPosition?>(nil)

    /// A journal under `<namespace>/journal/` on `kv`, reading `pageSize` records per request.
    /// - Throws: `configuration` when `namespace` is not a valid namespace (`checkNamespace`).
    public init(kv: any EtcdKV, namespace: String, pageSize: Int = 1000) throws(CortexError) {
        try EtcdJournal.checkNamespace(namespace)
        self.kv = kv
        self.namespace = namespace
        prefix = Array("\(namespace)/journal/".utf8)
        self.pageSize = max(1, pageSize)
    }

    /// The longest namespace.
    public static let maximumNamespaceBytes = 128

    /// Accepts 1 to `maximumNamespaceBytes` letters, digits, `.`, `_` and `-`. No `/`: a
    /// namespace `a/journal/b` would put its records inside namespace `a`'s journal.
    /// - Throws: `configuration`, saying what is allowed.
    public static func checkNamespace(_ namespace: String) throws(CortexError) {
        // The same names as host ids (EtcdSettings.isValidName), but never a path step.
        guard EtcdSettings.isValidName(namespace), namespace.utf8.count <= maximumNamespaceBytes, namespace != ".",
            namespace != ".."
        else {
            throw .configuration(
                "etcd namespace '\(namespace)' is not valid: use 1 to \(maximumNamespaceBytes) letters, digits, '.', '_' or '-' (not '.' or '..')"
            )
        }
    }

    /// The position of the record written at `revision`: segment 1, offset the revision.
    public static func position(revision: Int64) -> JournalPosition { JournalPosition(segment: 1, offset: revision) }

    /// The revision a position of this backend stands for.
    /// - Throws: `corrupt` for a position no etcd journal issues (another segment, a negative offset).
    public static func revision(of position: JournalPosition) throws(CortexError) -> Int64 {
        guard position.segment == 1, position.offset >= 0 else {
            throw .corrupt("position \(position) is not an etcd journal position (segment 1, offset a revision)")
        }
        return position.offset
    }

    /// The key of the record `line` holds: `<prefix><record id>`. A line that is no record (an
    /// invalid line, which readers skip and report), or whose id could pass for one of the
    /// journal's own keys (empty, or starting with `~`), gets a random key of its own.
    func key(for line: [UInt8]) -> [UInt8] {
        if case .record(let record, _) = RecordCodec.decode(line), let first = record.id.utf8.first, first != UInt8(ascii: "~") {
            return prefix + Array(record.id.utf8)
        }
        return prefix + Array("~invalid-\(POSIX.randomHex(bytes: 8))".utf8)
    }

    /// Creates the record's key unless it exists, retrying with the same key when the cluster
    /// did not answer (`tryLater`, `io`): a retry after a lost reply returns the revision of
    /// the write that got in. The tries share one deadline (`createRetrying`). `tail` plays no
    /// part (there is one order and no segments).
    public func append(_ line: [UInt8], tail: JournalPosition) throws(CortexError) -> JournalAppend {
        let body = line.last == 0x0A ? Array(line.dropLast()) : line
        let key = key(for: body)
        let creation = try createRetrying { (kv) throws(CortexError) in try kv.createIfAbsent(key: key, value: body) }
        return JournalAppend(position: EtcdJournal.position(revision: creation.revision))
    }

    /// Reads every record whose key was written at or after `position`'s revision, in revision
    /// order, in pages of `pageSize`. Every page after the first is pinned to the first one's
    /// header revision, so a read sees the journal as it was at one revision and ends just past
    /// it. Values that are no record are skipped and reported (`damaged`).
    /// - Throws: `corrupt` when records after `position` were deleted by a compaction (its
    ///   marker says so; `isCompaction` tells this error): the reader needs a snapshot at or
    ///   after the compaction's position.
    public func readForward(
        from position: JournalPosition, visit: (Record, JournalPosition) throws(CortexError) -> Void
    ) throws(CortexError) -> JournalRead {
        try read(from: position, firstPage: nil, visit: visit)
    }

    /// Appends `line` as `append` does and, in the same transaction (one round trip), reads the
    /// journal from `position` through the appended record (docs/decisions/035): `visit` sees
    /// every record from `position` up to and including the new one, as `readForward` would.
    /// The read ends just past the appended record. A retry that finds the key already written
    /// reads with `readForward` instead.
    /// - Parameter appended: told the append's position as soon as the transaction answered,
    ///   before the read (which may still fail: the record is in all the same).
    public func appendThenRead(
        _ line: [UInt8], from position: JournalPosition, appended: (JournalAppend) -> Void = { _ in },
        visit: (Record, JournalPosition) throws(CortexError) -> Void
    ) throws(CortexError) -> (JournalAppend, JournalRead) {
        let start = try EtcdJournal.revision(of: position)
        let body = line.last == 0x0A ? Array(line.dropLast()) : line
        let key = key(for: body)
        let (creation, page) = try createRetrying { (kv) throws(CortexError) in
            try kv.createIfAbsentThenRange(key: key, value: body, prefix: prefix, minimumRevision: start, limit: pageSize)
        }
        let append = JournalAppend(position: EtcdJournal.position(revision: creation.revision))
        appended(append)
        // Never retried: once the read began, `visit` has seen records.
        return (append, try read(from: position, firstPage: page, visit: visit))
    }

    /// Runs `create` (a create-if-absent of one key) until it answers, retrying with the same key
    /// when the cluster did not (`tryLater`, `io`), at most `appendAttempts` times, every try on
    /// one operation of the cluster (`EtcdKV.startingOperation`): together they end by its
    /// deadline, and the error that ends them counts every attempt.
    private func createRetrying<Result>(_ create: (any EtcdKV) throws(CortexError) -> Result) throws(CortexError) -> Result {
        let operation = kv.startingOperation()
        var attempt = 1
        while true {
            do {
                return try create(operation)
            } catch {
                switch error {
                case .tryLater, .io: guard attempt < EtcdJournal.appendAttempts else { throw error }
                default: throw error
                }
            }
            attempt += 1
        }
    }

    /// `readForward`, starting with `firstPage` when the caller already has it (read at its
    /// header revision from `position`).
    private func read(
        from position: JournalPosition, firstPage: EtcdRange?, visit: (Record, JournalPosition) throws(CortexError) -> Void
    ) throws(CortexError) -> JournalRead {
        let start = try EtcdJournal.revision(of: position)
        var next = start
        var ceiling: Int64? = nil
        var recordsRead = 0
        var damaged: [DamagedLine] = []
        var pages = 0
        var given = firstPage
        while true {
            let page: EtcdRange
            if let first = given {
                page = first
                given = nil
            } else {
                page = try kv.range(prefix: prefix, minimumRevision: next, maximumRevision: ceiling, limit: pageSize)
            }
            pages += 1
            if ceiling == nil { ceiling = page.headerRevision }
            for keyValue in page.keyValues {
                let at = EtcdJournal.position(revision: keyValue.modRevision)
                next = max(next, keyValue.modRevision + 1)
                if let compactedBefore = compactionMarker(keyValue.key) {
                    guard start >= compactedBefore else { throw compactedError(before: compactedBefore, position: position) }
                    continue
                }
                switch RecordCodec.decode(keyValue.value) {
                case .invalid(let reason):
                    damaged.append(DamagedLine(position: at, length: Int64(keyValue.value.count), reason: reason))
                case .record(let record, _):
                    guard !record.isSeal else { continue }
                    recordsRead += 1
                    try visit(record, at)
                }
            }
            guard page.more, !page.keyValues.isEmpty else { break }
        }
        if pages > 1 {
            // The pages after the first read the journal as it is now: a compaction that ran
            // meanwhile may have deleted records between them. Its marker, written before it
            // deleted anything, says so.
            let markers = try kv.range(prefix: markerPrefix, minimumRevision: 0, maximumRevision: nil, limit: 16)
            for marker in markers.keyValues {
                if let compactedBefore = compactionMarker(marker.key), compactedBefore > start {
                    throw compactedError(before: compactedBefore, position: position)
                }
            }
        }
        let end = EtcdJournal.position(revision: max(next, (ceiling ?? 0) + 1))
        return JournalRead(end: end, extent: end, recordsRead: recordsRead, damaged: damaged)
    }

    /// The start of the message of `compactedError`.
    private static let compactedMessage = "the etcd journal was compacted"

    private func compactedError(before revision: Int64, position: JournalPosition) -> CortexError {
        .corrupt(
            "\(EtcdJournal.compactedMessage) before revision \(revision) (namespace \(namespace)): records after \(position) are gone; read from a snapshot at or after it"
        )
    }

    /// True for the error a read throws when records it needs were deleted by a compaction
    /// (the store then starts again from the snapshot in etcd).
    public static func isCompaction(_ error: CortexError) -> Bool {
        guard case .corrupt(let message) = error else { return false }
        return message.hasPrefix(compactedMessage)
    }

    /// `<prefix>~compacted-`: the start of a compaction marker's key, followed by the revision
    /// below which records were deleted. No record id starts with `~`.
    var markerPrefix: [UInt8] { prefix + Array("~compacted-".utf8) }

    /// The revision a compaction marker's key names, or nil for any other key.
    func compactionMarker(_ key: [UInt8]) -> Int64? {
        let marker = markerPrefix
        guard key.count > marker.count, key.starts(with: marker) else { return nil }
        return Int64(String(decoding: key[marker.count...], as: UTF8.self))
    }

    /// Never: an append is either in (at the revision of its one key) or not, and a retry finds
    /// the key the first attempt wrote. Nothing a read passes is withheld from it.
    public func isVoid(_ appended: JournalPosition, readTo end: JournalPosition) -> Bool { false }

    /// True when a record key was written at or after `extent`'s revision. Asks for the journal's
    /// keys, not the header revision alone, which every write in the cluster moves (snapshots,
    /// other namespaces).
    public func hasAppended(since extent: JournalPosition) throws(CortexError) -> Bool {
        let revision = try EtcdJournal.revision(of: extent)
        return try !kv.range(prefix: prefix, minimumRevision: revision, maximumRevision: nil, limit: 1).keyValues.isEmpty
    }

    /// Nothing to write: etcd acknowledged each append after a Raft majority of members had it on
    /// disk. Records `end` as `durableThrough` (when it is further).
    public func makeDurable(from start: JournalPosition, through end: JournalPosition) throws(CortexError) {
        durable.withLock { durable in
            if durable.map({ $0 < end }) ?? true { durable = end }
        }
    }

    /// The furthest `end` a `makeDurable` was given.
    public var durableThrough: JournalPosition? { durable.withLock { $0 } }

    /// A waiter on an etcd watch of the journal's prefix, from the revision after now.
    public func makeWaiter() throws(CortexError) -> any JournalWaiter { try EtcdJournalWaiter(kv: kv, prefix: prefix) }

    /// Never: the journal is one part (revisions), and compaction deletes keys instead.
    public func rollOver(at tail: JournalPosition, ifLargerThan bytes: Int64, timeMilliseconds: Int64, dryRun: Bool)
        throws(CortexError) -> JournalPosition?
    { nil }

    /// Deletes the record keys written before `position`'s revision, which a durable snapshot
    /// covers (`deleteRecords(before:)`); a dry run deletes nothing. There are no parts to
    /// report: the result is empty. Retention is etcd's: deleted keys stay readable at older
    /// revisions until the cluster compacts its history.
    public func compact(before position: JournalPosition, retentionMilliseconds: Int64, nowMilliseconds: Int64, dryRun: Bool)
        throws(CortexError) -> JournalCompaction
    {
        if !dryRun { _ = try deleteRecords(before: position) }
        return JournalCompaction()
    }

    /// Deletes the record keys written before `position`'s revision. First writes a marker,
    /// `<prefix>~compacted-<revision>`, after every record it covers: a read from before
    /// `position` meets it and fails instead of silently missing the deleted records (the marker
    /// of an earlier compaction is deleted with the records below the next one).
    /// - Returns: how many keys were deleted.
    public func deleteRecords(before position: JournalPosition) throws(CortexError) -> Int {
        let revision = try EtcdJournal.revision(of: position)
        guard revision > 0 else { return 0 }
        _ = try kv.createIfAbsent(key: markerPrefix + Array(String(revision).utf8), value: [])
        return try kv.deleteRange(prefix: prefix, belowRevision: revision)
    }

    /// The cluster's revision now (a range that matches no key, for its header).
    static func currentRevision(_ kv: any EtcdKV, prefix: [UInt8]) throws(CortexError) -> Int64 {
        try kv.range(prefix: prefix, minimumRevision: Int64.max, maximumRevision: nil, limit: 1).headerRevision
    }
}

/// The waiter of an etcd journal: an etcd watch on the journal's prefix (docs/decisions/031).
/// When etcd cancels the watch because its start revision was compacted, or the stream breaks,
/// it reads with a range from the first revision it has not seen (so no append is missed) and
/// watches again from after the revision that read saw. Not shared between threads.
final class EtcdJournalWaiter: JournalWaiter {
    private let kv: any EtcdKV
    private let prefix: [UInt8]
    private var watch: (any EtcdWatch)?
    /// The first revision not yet seen by this waiter.
    private var next: Int64
    private var armed = true
    /// The longest single wait on the watch when the caller sets no limit.
    private static let sliceMilliseconds: Int64 = 60_000

    init(kv: any EtcdKV, prefix: [UInt8]) throws(CortexError) {
        self.kv = kv
        self.prefix = prefix
        next = try EtcdJournal.currentRevision(kv, prefix: prefix) + 1
        watch = try kv.watch(prefix: prefix, startRevision: next)
    }

    deinit { watch?.cancel() }

    func wait(timeoutMilliseconds: Int32) -> Bool {
        guard armed else { return false }
        let deadline: UInt64? =
            timeoutMilliseconds < 0 ? nil : POSIX.monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        while true {
            var remaining = EtcdJournalWaiter.sliceMilliseconds
            if let deadline {
                let now = POSIX.monotonicNanoseconds()
                remaining = now >= deadline ? 0 : Int64((deadline - now) / 1_000_000)
            }
            do {
                guard let watch else {
                    if try watchAgain() { return true }
                    continue
                }
                switch try watch.next(timeoutMilliseconds: remaining) {
                case .puts(let puts):
                    if let last = puts.last {
                        next = max(next, last.modRevision + 1)
                        return true
                    }
                case .compacted:
                    if try watchAgain() { return true }
                }
            } catch {
                // The stream broke: read and watch again; if the cluster does not answer either,
                // wake the caller, whose next look reports the error.
                guard let woke = try? watchAgain() else { return true }
                if woke { return true }
            }
            if let deadline, POSIX.monotonicNanoseconds() >= deadline { return false }
        }
    }

    /// Closes the watch, reads from the first revision not seen, and watches from after the
    /// revision that read saw.
    /// - Returns: true when the read found a record appended since (the caller is woken).
    private func watchAgain() throws(CortexError) -> Bool {
        watch?.cancel()
        watch = nil
        let page = try kv.range(prefix: prefix, minimumRevision: next, maximumRevision: nil, limit: 1)
        let woke = !page.keyValues.isEmpty
        next = max(next, page.headerRevision + 1)
        watch = try kv.watch(prefix: prefix, startRevision: next)
        return woke
    }

    func disarm() {
        armed = false
        watch?.cancel()
        watch = nil
    }

    func rearm() throws(CortexError) {
        guard !armed else { return }
        next = try EtcdJournal.currentRevision(kv, prefix: prefix) + 1
        watch = try kv.watch(prefix: prefix, startRevision: next)
        armed = true
    }
}
