import CortexCore

/// The few etcd operations the etcd journal needs (docs/architecture.md; issue 16): a seam
/// between `EtcdJournal` and the hand-written client, so the journal is tested against an
/// in-memory fake and the client against a real cluster. Keys and values are raw bytes (the
/// client base64-encodes them for the JSON gateway); revisions are etcd's 64-bit revisions.
/// Every call blocks with a timeout and throws `CortexError` (`.tryLater` when no member
/// answered in time, so a dead member never hangs a tool).
public protocol EtcdKV: Sendable {
    /// Puts `value` at `key` unless the key exists (a transaction comparing its create revision
    /// with 0). Either way returns the key's create revision and whether this call created it:
    /// a retry after a lost reply learns the revision of the first attempt's write.
    func createIfAbsent(key: [UInt8], value: [UInt8]) throws(CortexError) -> EtcdCreation

    /// The keys under `prefix` whose mod revision is at least `minimumRevision` (and at most
    /// `maximumRevision` when given), in mod-revision order, at most `limit` of them.
    func range(prefix: [UInt8], minimumRevision: Int64, maximumRevision: Int64?, limit: Int) throws(CortexError) -> EtcdRange

    /// Deletes the keys under `prefix` whose mod revision is below `belowRevision`; returns how many.
    func deleteRange(prefix: [UInt8], belowRevision: Int64) throws(CortexError) -> Int

    /// Starts watching `prefix` from `startRevision`: puts at or after it arrive through the
    /// returned watch, in revision order.
    func watch(prefix: [UInt8], startRevision: Int64) throws(CortexError) -> any EtcdWatch

    /// `createIfAbsent`, and in the same transaction a `range` of `prefix` from
    /// `minimumRevision` (at most `limit` keys, in mod-revision order) read right after the put:
    /// one round trip for an append and the read of what came before it (docs/decisions/035).
    /// The range is nil when the key existed (a retry): the caller reads on its own.
    func createIfAbsentThenRange(key: [UInt8], value: [UInt8], prefix: [UInt8], minimumRevision: Int64, limit: Int)
        throws(CortexError) -> (EtcdCreation, EtcdRange?)

    /// The value at `key` with its mod revision, or nil when there is none: now, or as it was
    /// at `revision` when given (etcd keeps older versions until the cluster compacts its history).
    func get(key: [UInt8], atRevision revision: Int64?) throws(CortexError) -> EtcdKeyValue?

    /// Puts every pair of `puts` in one transaction, only if `key`'s mod revision is below
    /// `revision` (0 for an absent key). Returns the value `key` held before (nil: none) and the
    /// transaction's revision, or nil when the comparison failed and nothing was written.
    func putAll(_ puts: [(key: [UInt8], value: [UInt8])], ifModifiedBelow revision: Int64, key: [UInt8])
        throws(CortexError) -> (previous: EtcdKeyValue?, revision: Int64)?

    /// This cluster as one operation sees it (an append and its retries): the calls made through
    /// the returned value share one deadline, so retries never outlast it (decision 030).
    func startingOperation() -> any EtcdKV
}

extension EtcdKV {
    /// No deadline of its own: the calls are bounded one by one (the in-memory fake of the tests).
    public func startingOperation() -> any EtcdKV { self }

    /// `createIfAbsent`, then `range` (up to the new key's revision) when it created the key: two
    /// round trips, and not one revision of the cluster (a compaction between them goes unseen),
    /// for a seam implementation without transactions of both (the in-memory fake of the tests).
    public func createIfAbsentThenRange(key: [UInt8], value: [UInt8], prefix: [UInt8], minimumRevision: Int64, limit: Int)
        throws(CortexError) -> (EtcdCreation, EtcdRange?)
    {
        let creation = try createIfAbsent(key: key, value: value)
        guard creation.created else { return (creation, nil) }
        var page = try range(prefix: prefix, minimumRevision: minimumRevision, maximumRevision: creation.revision, limit: limit)
        page.headerRevision = creation.revision  // what the page saw: the journal through the new key
        return (creation, page)
    }
}

/// What `createIfAbsent` found.
public struct EtcdCreation: Equatable, Sendable {
    /// The key's create revision (this write's, or the earlier write's).
    public var revision: Int64
    /// True when this call wrote the key.
    public var created: Bool

    /// A creation from its parts.
    public init(revision: Int64, created: Bool) {
        self.revision = revision
        self.created = created
    }
}

/// One key and value with the revision that last wrote it.
public struct EtcdKeyValue: Equatable, Sendable {
    /// The key's bytes.
    public var key: [UInt8]
    /// The value's bytes.
    public var value: [UInt8]
    /// The revision of the put that wrote this value.
    public var modRevision: Int64

    /// A key and value from its parts.
    public init(key: [UInt8], value: [UInt8], modRevision: Int64) {
        self.key = key
        self.value = value
        self.modRevision = modRevision
    }
}

/// What `range` returned.
public struct EtcdRange: Equatable, Sendable {
    /// The keys found, in mod-revision order.
    public var keyValues: [EtcdKeyValue]
    /// More keys matched than `limit` let through.
    public var more: Bool
    /// The cluster's revision when the range was read (every write up to it is visible).
    public var headerRevision: Int64

    /// A range result from its parts.
    public init(keyValues: [EtcdKeyValue], more: Bool, headerRevision: Int64) {
        self.keyValues = keyValues
        self.more = more
        self.headerRevision = headerRevision
    }
}

/// What a watch delivered.
public enum EtcdWatchEvent: Equatable, Sendable {
    /// Puts under the prefix, in revision order (empty when the wait timed out).
    case puts([EtcdKeyValue])
    /// The start revision was compacted away (etcd cancels the watch and keeps the connection
    /// open): the caller closes it and reads with `range` from the compact revision instead.
    case compacted(revision: Int64)
}

/// A watch on a prefix. Not shared between threads.
public protocol EtcdWatch: AnyObject {
    /// Waits up to `timeoutMilliseconds` for the next event.
    /// - Throws: `CortexError` when the stream broke (the caller watches again or reads).
    func next(timeoutMilliseconds: Int64) throws(CortexError) -> EtcdWatchEvent

    /// Ends the watch and releases its connection.
    func cancel()
}
