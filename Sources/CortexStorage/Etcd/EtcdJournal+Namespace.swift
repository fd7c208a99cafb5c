import CortexCore

extension EtcdJournal {
    /// `<namespace>/namespace`: the key whose creation makes the namespace (outside the journal's
    /// prefix, so no read of records meets it).
    public var namespaceKey: [UInt8] { Array("\(namespace)/namespace".utf8) }

    /// Creates the namespace unless it exists, in one transaction (the key's create revision
    /// compared with 0, decision 033): of several first inits at once exactly one gets true and
    /// sets the budget; the others join. A namespace made before this key existed has records:
    /// the caller treats it as joined when its journal is not empty.
    /// - Returns: true when this call created the namespace.
    /// - Throws: `tryLater` when the cluster does not answer within its timeout.
    public func createNamespace(hostID: String, nowMilliseconds: Int64) throws(CortexError) -> Bool {
        let value = JSONValue.object([
            "created_ms": .int(nowMilliseconds), "host_id": .string(hostID),
        ]).serialized()
        return try kv.startingOperation().createIfAbsent(key: namespaceKey, value: value).created
    }
}
