import CortexCore
import Dispatch
import Synchronization

/// One etcd member's client address.
public struct EtcdEndpoint: Equatable, Sendable, CustomStringConvertible {
    /// A host name or numeric address.
    public var host: String
    /// The client port.
    public var port: Int
    /// True for an `https://` member: reached through TLS (docs/decisions/034-etcd-tls-and-auth.md).
    public var secure: Bool

    /// An endpoint from its parts.
    public init(host: String, port: Int, secure: Bool = false) {
        self.host = host
        self.port = port
        self.secure = secure
    }

    /// Parses `http://host:port` or `https://host:port` (the scheme may be left out: plain HTTP).
    /// - Throws: `.configuration` for anything else.
    public init(url: String) throws(CortexError) {
        var rest = Substring(url)
        var secure = false
        if rest.hasPrefix("http://") {
            rest = rest.dropFirst(7)
        } else if rest.hasPrefix("https://") {
            rest = rest.dropFirst(8)
            secure = true
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("/"), let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
            (1...65535).contains(port), colon != rest.startIndex
        else { throw .configuration("not an etcd endpoint (http://host:port or https://host:port): \(url)") }
        var host = String(rest[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(host: host, port: port, secure: secure)
    }

    /// `http://host:port` or `https://host:port`.
    public var url: String { (secure ? "https://" : "http://") + description }

    /// `host:port`.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A granted lease.
public struct EtcdLease: Equatable, Sendable {
    /// The lease's id (put keys with it so they vanish when it expires).
    public var id: Int64
    /// Seconds the lease lives without a keep-alive.
    public var ttlSeconds: Int64
}

/// One member's view of the cluster (maintenance/status).
public struct EtcdStatus: Equatable, Sendable {
    /// The member that answered.
    public var endpoint: EtcdEndpoint
    /// Its etcd version ("3.4.23").
    public var version: String
    /// Its member id.
    public var memberID: UInt64
    /// The member id of the leader it knows (0: none).
    public var leaderID: UInt64
    /// The cluster's current revision.
    public var revision: Int64
    /// The Raft term.
    public var raftTerm: UInt64
}

/// The PEM files of a client that reaches etcd over TLS (docs/decisions/034-etcd-tls-and-auth.md):
/// the CA that signed the members' certificates and, for a cluster started with
/// `--client-cert-auth`, this client's certificate and unencrypted key.
public struct EtcdTLSFiles: Equatable, Sendable {
    /// The certificate authorities (PEM) a member's certificate must chain to.
    public var caFile: String
    /// This client's certificate chain (PEM), or nil to present none.
    public var certificateFile: String?
    /// The private key (PEM) of `certificateFile`.
    public var keyFile: String?

    /// Files from their paths.
    public init(caFile: String, certificateFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}

/// An etcd user and password: the client trades them for a token (`auth/authenticate`).
public struct EtcdCredentials: Equatable, Sendable {
    /// The etcd user.
    public var username: String
    /// Its password.
    public var password: String

    /// Credentials from their parts.
    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }
}

/// Opens a byte stream to an endpoint before a deadline: plain TCP by default, a TLS session
/// when one is configured.
public typealias EtcdStreamOpener = @Sendable (EtcdEndpoint, UInt64) throws(CortexError) -> any ByteStream

/// The hand-written etcd v3 client over the JSON gateway (docs/decisions/030-etcd-client.md):
/// HTTP/1.1 POSTs on keep-alive connections, a timeout on every attempt, and failover: a member
/// that refuses, breaks or does not answer in time is left for the next one, at most `attempts`
/// tries per call and never past the call's deadline (`operationTimeoutMilliseconds`, or the
/// deadline of the operation a view from `startingOperation()` belongs to); then the call fails
/// with `.tryLater` (exit 75). Safe to share between threads (each call takes an idle
/// connection or opens one).
public final class EtcdClient: EtcdKV {
    /// The members, in the order they are tried.
    public let endpoints: [EtcdEndpoint]
    /// How long one attempt (connect, send, reply) may take (never past the call's deadline).
    public let timeoutMilliseconds: Int64
    /// How long one call may take in all, every attempt and pause included (`etcd_timeout`).
    public let operationTimeoutMilliseconds: Int64
    /// Attempts per call across the members.
    public let attempts: Int
    private let openStream: EtcdStreamOpener
    private let headers: [(String, String)]
    private let credentials: EtcdCredentials?
    private let shared: EtcdConnectionPool
    /// The operation this view's calls belong to (nil: each call is an operation of its own).
    private let operation: EtcdOperation?

    /// Records per transaction when deleting (etcd's default `--max-txn-ops` is 128).
    static let deleteBatch = 100

    /// A client for `endpoints`.
    /// - Parameters:
    ///   - timeoutMilliseconds: the limit on each attempt.
    ///   - operationTimeoutMilliseconds: the limit on a whole call, all its attempts and pauses
    ///     (default: 10 s, or `timeoutMilliseconds` when that is longer).
    ///   - attempts: tries per call (default: every member once, then the first again).
    ///   - headers: extra header fields for every request.
    ///   - credentials: an etcd user whose token goes in the `Authorization` header of every
    ///     request (fetched on the first call, fetched again once when a call finds it invalid).
    ///   - openStream: how to reach a member (default: TCP).
    public init(
        endpoints: [EtcdEndpoint], timeoutMilliseconds: Int64 = 5000, operationTimeoutMilliseconds: Int64? = nil, attempts: Int? = nil,
        headers: [(String, String)] = [], credentials: EtcdCredentials? = nil, openStream: EtcdStreamOpener? = nil
    ) throws(CortexError) {
        guard !endpoints.isEmpty else { throw .configuration("no etcd endpoints") }
        guard timeoutMilliseconds > 0, operationTimeoutMilliseconds ?? 1 > 0 else {
            throw .configuration("the etcd timeout must be positive")
        }
        self.endpoints = endpoints
        self.timeoutMilliseconds = timeoutMilliseconds
        self.operationTimeoutMilliseconds =
            operationTimeoutMilliseconds ?? max(EtcdSettings.defaultTimeoutMilliseconds, timeoutMilliseconds)
        self.attempts = max(1, attempts ?? endpoints.count + 1)
        self.headers = headers
        self.credentials = credentials
        if let openStream {
            self.openStream = openStream
        } else {
            self.openStream = EtcdClient.openTCP
        }
        self.shared = EtcdConnectionPool()
        self.operation = nil
    }

    /// A view of `base` whose calls belong to `operation` (same members, pool and token).
    private init(base: EtcdClient, operation: EtcdOperation) {
        endpoints = base.endpoints
        timeoutMilliseconds = base.timeoutMilliseconds
        operationTimeoutMilliseconds = base.operationTimeoutMilliseconds
        attempts = base.attempts
        openStream = base.openStream
        headers = base.headers
        credentials = base.credentials
        shared = base.shared
        self.operation = operation
    }

    /// This client for one operation (an append and its retries): every call made through the
    /// returned view shares one deadline, `operationTimeoutMilliseconds` from now, and a call
    /// that fails names every attempt the operation made (decision 030).
    public func startingOperation() -> any EtcdKV {
        EtcdClient(base: self, operation: EtcdOperation(deadline: Socket.deadline(afterMilliseconds: operationTimeoutMilliseconds)))
    }

    /// A client for `http://host:port` URLs.
    public convenience init(urls: [String], timeoutMilliseconds: Int64 = 5000, attempts: Int? = nil) throws(CortexError) {
        var endpoints: [EtcdEndpoint] = []
        for url in urls { endpoints.append(try EtcdEndpoint(url: url)) }
        try self.init(endpoints: endpoints, timeoutMilliseconds: timeoutMilliseconds, attempts: attempts)
    }

    /// A client as a configuration file describes one (docs/decisions/034-etcd-tls-and-auth.md):
    /// `http://` or `https://` URLs, the TLS files when the URLs are `https://`, and an etcd user
    /// when the cluster has auth enabled.
    /// - Throws: `.configuration` for a URL that does not parse, `https://` members without TLS
    ///   files (or TLS files with `http://` members), a user without a password (or the other way
    ///   round), and TLS files that cannot be loaded.
    public convenience init(
        endpoints urls: [String], tls: EtcdTLSFiles? = nil, username: String? = nil, password: String? = nil,
        timeoutMilliseconds: Int64 = 5000, operationTimeoutMilliseconds: Int64? = nil, attempts: Int? = nil
    ) throws(CortexError) {
        var endpoints: [EtcdEndpoint] = []
        for url in urls { endpoints.append(try EtcdEndpoint(url: url)) }
        if let plain = endpoints.first(where: { !$0.secure }), tls != nil {
            throw .configuration("etcd TLS files are given but \(plain.url) is not an https:// endpoint")
        }
        if let secure = endpoints.first(where: { $0.secure }), tls == nil {
            throw .configuration("etcd endpoint \(secure.url) needs TLS files (at least the CA file)")
        }
        guard (username == nil) == (password == nil) else {
            throw .configuration("an etcd user needs a password, and a password its user")
        }
        var opener: EtcdStreamOpener? = nil
        if let tls {
            let context = try TLSClientContext(caFile: tls.caFile, certificateFile: tls.certificateFile, keyFile: tls.keyFile)
            opener = EtcdClient.tlsOpener(context)
        }
        let credentials = username.map { EtcdCredentials(username: $0, password: password ?? "") }
        try self.init(
            endpoints: endpoints, timeoutMilliseconds: timeoutMilliseconds, operationTimeoutMilliseconds: operationTimeoutMilliseconds,
            attempts: attempts, credentials: credentials, openStream: opener)
    }

    /// The default way to reach a member: a plain TCP connection.
    /// - Throws: `.configuration` for an `https://` member (it needs `tlsOpener`).
    @Sendable public static func openTCP(_ endpoint: EtcdEndpoint, _ deadline: UInt64) throws(CortexError) -> any ByteStream {
        guard !endpoint.secure else { throw .configuration("etcd endpoint \(endpoint.url) needs TLS files (at least the CA file)") }
        return try TCPConnection.connect(host: endpoint.host, port: endpoint.port, deadline: deadline)
    }

    /// Reaches `https://` members through TLS with `context` (the member's certificate checked
    /// against its CA and the endpoint's host or address), `http://` ones over plain TCP.
    public static func tlsOpener(_ context: TLSClientContext) -> EtcdStreamOpener {
        { endpoint, deadline throws(CortexError) in
            let connection = try TCPConnection.connect(host: endpoint.host, port: endpoint.port, deadline: deadline)
            guard endpoint.secure else { return connection }
            return try TLSStream(
                connectedSocket: connection.releaseDescriptor(), serverName: endpoint.host, context: context, deadline: deadline)
        }
    }

    // MARK: EtcdKV

    /// A transaction: if the key's create revision is 0 (absent), put it; else read it.
    public func createIfAbsent(key: [UInt8], value: [UInt8]) throws(CortexError) -> EtcdCreation {
        let encodedKey = JSONValue.string(Base64.encode(key))
        let reply = try call(
            "/v3/kv/txn",
            .object([
                "compare": .array([.object(["target": "CREATE", "key": encodedKey, "create_revision": "0"])]),
                "success": .array([.object(["request_put": .object(["key": encodedKey, "value": .string(Base64.encode(value))])])]),
                "failure": .array([.object(["request_range": .object(["key": encodedKey])])]),
            ]))
        let first = reply["responses"]?.arrayValue?.first
        if reply["succeeded"]?.boolValue == true {
            let revision = Self.number(first?["response_put"]?["header"]?["revision"]) ?? Self.number(reply["header"]?["revision"]) ?? 0
            guard revision > 0 else { throw .corrupt("etcd: a put without a revision in \(reply.jsonText)") }
            return EtcdCreation(revision: revision, created: true)
        }
        guard let existing = first?["response_range"]?["kvs"]?.arrayValue?.first, let revision = Self.number(existing["create_revision"]),
            revision > 0
        else {
            // Created and deleted between the compare and the read: a later record.
            throw .tryLater("etcd: key \(Base64.encode(key)) neither created nor found; try again")
        }
        return EtcdCreation(revision: revision, created: false)
    }

    /// One transaction: if the key is absent, put it and range `prefix` from `minimumRevision`
    /// (the range runs after the put, at the put's revision, so it ends with the new key); else
    /// read the key.
    public func createIfAbsentThenRange(key: [UInt8], value: [UInt8], prefix: [UInt8], minimumRevision: Int64, limit: Int)
        throws(CortexError) -> (EtcdCreation, EtcdRange?)
    {
        let encodedKey = JSONValue.string(Base64.encode(key))
        let reply = try call(
            "/v3/kv/txn",
            .object([
                "compare": .array([.object(["target": "CREATE", "key": encodedKey, "create_revision": "0"])]),
                "success": .array([
                    .object(["request_put": .object(["key": encodedKey, "value": .string(Base64.encode(value))])]),
                    .object([
                        "request_range": Self.rangeRequest(
                            prefix: prefix, minimumRevision: minimumRevision, maximumRevision: nil, limit: limit)
                    ]),
                ]),
                "failure": .array([.object(["request_range": .object(["key": encodedKey])])]),
            ]))
        let responses = reply["responses"]?.arrayValue ?? []
        if reply["succeeded"]?.boolValue == true {
            let revision = Self.number(reply["header"]?["revision"]) ?? 0
            guard revision > 0, responses.count == 2, let ranged = responses[1]["response_range"] else {
                throw .corrupt("etcd: a put and range without a revision in \(reply.jsonText)")
            }
            var keyValues: [EtcdKeyValue] = []
            for item in ranged["kvs"]?.arrayValue ?? [] { keyValues.append(try Self.keyValue(item)) }
            let range = EtcdRange(keyValues: keyValues, more: ranged["more"]?.boolValue ?? false, headerRevision: revision)
            return (EtcdCreation(revision: revision, created: true), range)
        }
        guard let existing = responses.first?["response_range"]?["kvs"]?.arrayValue?.first,
            let revision = Self.number(existing["create_revision"]), revision > 0
        else {
            throw .tryLater("etcd: key \(Base64.encode(key)) neither created nor found; try again")
        }
        return (EtcdCreation(revision: revision, created: false), nil)
    }

    /// A range of the one key (at the revision when given).
    public func get(key: [UInt8], atRevision revision: Int64?) throws(CortexError) -> EtcdKeyValue? {
        let reply = try call(
            "/v3/kv/range", .object(["key": .string(Base64.encode(key)), "revision": revision.map { .string(String($0)) }]))
        guard let item = reply["kvs"]?.arrayValue?.first else { return nil }
        return try Self.keyValue(item)
    }

    /// A transaction comparing `key`'s mod revision with `revision` (LESS): on success it reads
    /// `key`, then puts every pair.
    public func putAll(_ puts: [(key: [UInt8], value: [UInt8])], ifModifiedBelow revision: Int64, key: [UInt8])
        throws(CortexError) -> (previous: EtcdKeyValue?, revision: Int64)?
    {
        let encodedKey = JSONValue.string(Base64.encode(key))
        var success: [JSONValue] = [.object(["request_range": .object(["key": encodedKey])])]
        for put in puts {
            success.append(
                .object(["request_put": .object(["key": .string(Base64.encode(put.key)), "value": .string(Base64.encode(put.value))])]))
        }
        let reply = try call(
            "/v3/kv/txn",
            .object([
                "compare": .array([
                    .object(["target": "MOD", "result": "LESS", "key": encodedKey, "mod_revision": .string(String(revision))])
                ]),
                "success": .array(success),
            ]))
        guard reply["succeeded"]?.boolValue == true else { return nil }
        let previous = reply["responses"]?.arrayValue?.first?["response_range"]?["kvs"]?.arrayValue?.first
        return (try previous.map { (item) throws(CortexError) in try Self.keyValue(item) }, Self.number(reply["header"]?["revision"]) ?? 0)
    }

    /// A range over the prefix, sorted by mod revision.
    public func range(prefix: [UInt8], minimumRevision: Int64, maximumRevision: Int64?, limit: Int) throws(CortexError) -> EtcdRange {
        try range(prefix: prefix, minimumRevision: minimumRevision, maximumRevision: maximumRevision, limit: limit, keysOnly: false)
    }

    /// Ranges the keys below the revision (keys only) and deletes them in transactions of at
    /// most `deleteBatch` keys, each guarded by a comparison of the key's mod revision, until none is left.
    public func deleteRange(prefix: [UInt8], belowRevision: Int64) throws(CortexError) -> Int {
        guard belowRevision > 1 else { return 0 }
        var deleted = 0
        while true {
            let page = try range(
                prefix: prefix, minimumRevision: 0, maximumRevision: belowRevision - 1, limit: Self.deleteBatch, keysOnly: true)
            if page.keyValues.isEmpty { return deleted }
            let keys = page.keyValues.map { JSONValue.string(Base64.encode($0.key)) }
            let reply = try call(
                "/v3/kv/txn",
                .object([
                    "compare": .array(
                        keys.map {
                            .object(["target": "MOD", "result": "LESS", "key": $0, "mod_revision": .string(String(belowRevision))])
                        }),
                    "success": .array(keys.map { .object(["request_delete_range": .object(["key": $0])]) }),
                ]))
            // A failed comparison (a key rewritten since the range) is simply ranged again.
            if reply["succeeded"]?.boolValue == true {
                for response in reply["responses"]?.arrayValue ?? [] {
                    deleted += Int(Self.number(response["response_delete_range"]?["deleted"]) ?? 0)
                }
            }
        }
    }

    /// A watch on its own connection, created on the first member that answers.
    public func watch(prefix: [UInt8], startRevision: Int64) throws(CortexError) -> any EtcdWatch {
        try authenticated { headers throws(CortexError) in try watch(prefix: prefix, startRevision: startRevision, headers: headers) }
    }

    private func watch(prefix: [UInt8], startRevision: Int64, headers: [(String, String)]) throws(CortexError) -> any EtcdWatch {
        let body = JSONValue.object([
            "create_request": .object([
                "key": .string(Base64.encode(prefix)), "range_end": .string(Base64.encode(Self.prefixEnd(prefix))),
                "start_revision": .string(String(startRevision)),
            ])
        ]).serialized()
        var failures: [String] = []
        let first = preferredIndex  // fixed for the call: a failure moves the preference, not this round
        for attempt in 0..<attempts {
            pauseBeforeRound(attempt)
            let index = (first + attempt) % endpoints.count
            let endpoint = endpoints[index]
            let deadline = Socket.deadline(afterMilliseconds: timeoutMilliseconds)
            var connection: HTTPConnection?
            do throws(CortexError) {
                let stream = WatchStream(try openStream(endpoint, deadline))
                let opened = HTTPConnection(stream: stream, authority: endpoint.description)
                connection = opened
                let head = try opened.startPost("/v3/watch", body: body, headers: headers, deadline: deadline)
                guard head.status == 200 else {
                    throw CortexError.tryLater("etcd \(endpoint) answered the watch with HTTP \(head.status)")
                }
                let watch = EtcdStreamWatch(connection: opened, stream: stream, endpoint: endpoint)
                try watch.waitUntilCreated(deadline: deadline)
                watch.startDraining()
                return watch
            } catch {
                connection?.close()
                if !Self.isTransportFailure(error) { throw error }
                failures.append("\(endpoint): \(error)")
                movePreferred(awayFrom: index)
            }
        }
        throw .tryLater("no etcd member started a watch: " + failures.joined(separator: "; "))
    }

    // MARK: Beyond the journal's seam

    /// Puts `value` at `key` (attached to `leaseID` when given); returns the put's revision.
    @discardableResult
    public func put(key: [UInt8], value: [UInt8], leaseID: Int64? = nil) throws(CortexError) -> Int64 {
        let reply = try call(
            "/v3/kv/put",
            .object([
                "key": .string(Base64.encode(key)), "value": .string(Base64.encode(value)), "lease": leaseID.map { .string(String($0)) },
            ]))
        return Self.number(reply["header"]?["revision"]) ?? 0
    }

    /// Grants a lease of `ttlSeconds`.
    public func leaseGrant(ttlSeconds: Int64) throws(CortexError) -> EtcdLease {
        let reply = try call("/v3/lease/grant", .object(["TTL": .string(String(ttlSeconds))]))
        guard let id = Self.number(reply["ID"]), id != 0 else { throw .corrupt("etcd: a lease grant without an ID: \(reply.jsonText)") }
        return EtcdLease(id: id, ttlSeconds: Self.number(reply["TTL"]) ?? ttlSeconds)
    }

    /// Refreshes lease `id` once; returns its new TTL in seconds.
    /// - Throws: `.notFound` when the lease has expired (or never existed).
    public func leaseKeepAlive(id: Int64) throws(CortexError) -> Int64 {
        let reply = try call("/v3/lease/keepalive", .object(["ID": .string(String(id))]))
        let ttl = Self.number(reply["result"]?["TTL"]) ?? 0
        guard ttl > 0 else { throw .notFound("etcd lease \(id) has expired") }
        return ttl
    }

    /// Revokes lease `id`: etcd deletes every key put with it. A lease already gone is no error.
    public func leaseRevoke(id: Int64) throws(CortexError) {
        do {
            _ = try call("/v3/lease/revoke", .object(["ID": .string(String(id))]))
        } catch {
            if case .notFound = error { return }
            throw error
        }
    }

    /// The status of the first member that answers.
    public func status() throws(CortexError) -> EtcdStatus {
        var answered = endpoints[0]
        let reply = try call("/v3/maintenance/status", .object([:]), answeredBy: &answered)
        return EtcdStatus(
            endpoint: answered, version: reply["version"]?.stringValue ?? "",
            memberID: Self.unsigned(reply["header"]?["member_id"]), leaderID: Self.unsigned(reply["leader"]),
            revision: Self.number(reply["header"]?["revision"]) ?? 0, raftTerm: Self.unsigned(reply["raftTerm"]))
    }

    /// Compacts the key-value history up to `revision` (older versions of keys are gone; a watch
    /// or read from before it fails).
    public func compact(revision: Int64) throws(CortexError) {
        _ = try call("/v3/kv/compaction", .object(["revision": .string(String(revision)), "physical": true]))
    }

    // MARK: Calls and failover

    /// POSTs `body` to `path`, moving to the next member on a transport failure, a timeout or an
    /// "unavailable" answer, and returns the reply's JSON. The first line of a streamed reply
    /// (lease keep-alive) is its result.
    func call(_ path: String, _ body: JSONValue) throws(CortexError) -> JSONValue {
        var answered = endpoints[0]
        return try call(path, body, answeredBy: &answered)
    }

    private func call(_ path: String, _ body: JSONValue, answeredBy: inout EtcdEndpoint) throws(CortexError) -> JSONValue {
        var answered = answeredBy
        defer { answeredBy = answered }
        return try authenticated { headers throws(CortexError) in try call(path, body, headers: headers, answeredBy: &answered) }
    }

    // MARK: Auth

    /// Runs `body` with the request headers plus the auth token when the client has a user:
    /// authenticates first when it has no token yet, and once more when `body` fails because
    /// etcd found the token invalid (expired, or issued by a member that restarted since).
    private func authenticated<T>(_ body: ([(String, String)]) throws(CortexError) -> T) throws(CortexError) -> T {
        guard credentials != nil else { return try body(headers) }
        var renewed = false
        while true {
            let known = shared.state.withLock { $0.token }
            let token: String
            if let known {
                token = known
            } else {
                token = try authenticate()
                renewed = true
            }
            do throws(CortexError) {
                return try body(token.isEmpty ? headers : headers + [("Authorization", token)])
            } catch {
                guard !renewed, Self.isInvalidToken(error) else { throw error }
                shared.state.withLock { if $0.token == token { $0.token = nil } }
            }
        }
    }

    /// Trades the user and password for a token (`auth/authenticate`) and keeps it.
    /// - Throws: `.permissionDenied` when etcd refuses the user or password.
    private func authenticate() throws(CortexError) -> String {
        guard let credentials else { return "" }
        var answered = endpoints[0]
        let token: String
        do throws(CortexError) {
            let reply = try call(
                "/v3/auth/authenticate", .object(["name": .string(credentials.username), "password": .string(credentials.password)]),
                headers: headers, answeredBy: &answered)
            token = reply["token"]?.stringValue ?? ""
        } catch {
            if case .configuration(let message) = error, message.contains("authentication is not enabled") {
                token = ""  // no auth on this cluster: calls go without a token
            } else if Self.isTransportFailure(error) {
                throw error
            } else {
                throw .permissionDenied(
                    "etcd refused user \(credentials.username): \(Self.reason(of: error)) (check the user and password)")
            }
        }
        shared.state.withLock { $0.token = token }
        return token
    }

    /// The token calls carry now (nil before the first; tests replace it with one etcd never issued).
    var authToken: String? {
        get { shared.state.withLock { $0.token } }
        set { shared.state.withLock { $0.token = newValue } }
    }

    /// True when etcd refused a call for its token (not for what the user may do): an invalid
    /// one, or none where one is needed (auth was enabled after this client found it disabled).
    static func isInvalidToken(_ error: CortexError) -> Bool {
        guard case .permissionDenied(let message) = error else { return false }
        return message.contains("invalid auth token") || message.contains("user name is empty")
    }

    /// What etcd said, without the member and path this client adds.
    private static func reason(of error: CortexError) -> String {
        let text = "\(error)"
        let marker = "etcdserver: "
        var index = text.startIndex
        while index < text.endIndex {
            if text[index...].hasPrefix(marker) { return String(text[text.index(index, offsetBy: marker.count)...]) }
            index = text.index(after: index)
        }
        return text
    }

    private func call(_ path: String, _ body: JSONValue, headers: [(String, String)], answeredBy: inout EtcdEndpoint) throws(CortexError)
        -> JSONValue
    {
        let bytes = body.serialized()
        // The call's attempts end by the operation's deadline, or by one of their own.
        let tally = operation ?? EtcdOperation(deadline: Socket.deadline(afterMilliseconds: operationTimeoutMilliseconds))
        let first = preferredIndex  // fixed for the call: a failure moves the preference, not this round
        for attempt in 0..<attempts {
            pauseBeforeRound(attempt, until: tally.deadline)
            guard POSIX.monotonicNanoseconds() < tally.deadline else { break }
            let index = (first + attempt) % endpoints.count
            let endpoint = endpoints[index]
            let deadline = min(Socket.deadline(afterMilliseconds: timeoutMilliseconds), tally.deadline)
            var connection: HTTPConnection?
            do throws(CortexError) {
                let opened = try takeConnection(index, deadline: deadline)
                connection = opened
                let response = try opened.post(path, body: bytes, headers: headers, deadline: deadline)
                if opened.isReusable { giveBack(opened, index) }
                connection = nil
                let firstLine = response.body.split(separator: UInt8(ascii: "\n"), maxSplits: 1).first ?? []
                let reply: JSONValue
                do {
                    reply = try JSONValue.parse(firstLine)
                } catch {
                    throw CortexError.tryLater("etcd \(endpoint) answered \(path) with HTTP \(response.status) and no JSON")
                }
                if response.status == 200, reply["error"] == nil {
                    answeredBy = endpoint
                    return reply
                }
                throw Self.failure(reply, status: response.status, path: path, endpoint: endpoint)
            } catch {
                connection?.close()
                if !Self.isTransportFailure(error) { throw error }
                tally.failed(member: index, "\(error)")
                movePreferred(awayFrom: index)
            }
        }
        throw tally.failure(path: path, endpoints: endpoints, operationTimeoutMilliseconds: operationTimeoutMilliseconds)
    }

    /// Before trying the members again after each one failed: a pause that grows with the round
    /// (0.2 s, 0.4 s, … at most 1 s), so a cluster electing a new leader gets time to; never
    /// past `deadline`.
    private func pauseBeforeRound(_ attempt: Int, until deadline: UInt64 = .max) {
        let round = attempt / endpoints.count
        guard attempt > 0 && attempt % endpoints.count == 0 else { return }
        let now = POSIX.monotonicNanoseconds()
        guard now < deadline else { return }
        POSIX.sleep(milliseconds: min(Int64(min(1000, 200 * round)), Int64((deadline - now) / 1_000_000)))
    }

    private var preferredIndex: Int { shared.state.withLock { $0.preferred } }

    private func movePreferred(awayFrom index: Int) {
        shared.state.withLock { pool in
            if pool.preferred == index { pool.preferred = (index + 1) % endpoints.count }
            pool.idle[index]?.forEach { $0.close() }
            pool.idle[index] = nil
        }
    }

    private func takeConnection(_ index: Int, deadline: UInt64) throws(CortexError) -> HTTPConnection {
        let idle: HTTPConnection? = shared.state.withLock { pool in pool.idle[index]?.popLast() }
        if let idle { return idle }
        let endpoint = endpoints[index]
        return HTTPConnection(stream: try openStream(endpoint, deadline), authority: endpoint.description)
    }

    private func giveBack(_ connection: HTTPConnection, _ index: Int) {
        shared.state.withLock { pool in pool.idle[index, default: []].append(connection) }
    }

    /// Failures that say "this member, now" rather than "this request": worth another member.
    static func isTransportFailure(_ error: CortexError) -> Bool {
        switch error {
        case .io, .tryLater: return true
        default: return false
        }
    }

    /// What an etcd error reply means (`{"error","message","code"}`, gRPC codes).
    static func failure(_ reply: JSONValue, status: Int, path: String, endpoint: EtcdEndpoint) -> CortexError {
        let message =
            reply["message"]?.stringValue ?? reply["error"]?.stringValue ?? reply["error"]?["message"]?.stringValue ?? "HTTP \(status)"
        let text = "etcd \(endpoint) refused \(path): \(message)"
        // Auth refusals, whatever their gRPC code: a token etcd no longer knows, a request
        // without one to a cluster with auth enabled.
        if message.contains("invalid auth token") { return .permissionDenied(text) }
        if message.contains("user name is empty") {
            return .permissionDenied(text + " (the cluster has auth enabled: give an etcd user and password)")
        }
        switch reply["code"]?.intValue ?? reply["error"]?["grpc_code"]?.intValue ?? -1 {
        case 3: return .badInput(text)
        case 5: return .notFound(text)
        case 11: return .notFound(text)  // the revision asked for was compacted
        case 7, 16: return .permissionDenied(text)
        case 4, 8, 10, 14: return .tryLater(text)  // deadline, exhausted, aborted, unavailable (no leader)
        default: return status >= 500 ? .tryLater(text) : .configuration(text)
        }
    }

    private func range(prefix: [UInt8], minimumRevision: Int64, maximumRevision: Int64?, limit: Int, keysOnly: Bool) throws(CortexError)
        -> EtcdRange
    {
        var request = Self.rangeRequest(prefix: prefix, minimumRevision: minimumRevision, maximumRevision: maximumRevision, limit: limit)
        if keysOnly, case .object(var members) = request {
            members.append(JSONMember("keys_only", true))
            request = .object(members)
        }
        let reply = try call("/v3/kv/range", request)
        var keyValues: [EtcdKeyValue] = []
        for item in reply["kvs"]?.arrayValue ?? [] {
            keyValues.append(try Self.keyValue(item))
        }
        return EtcdRange(
            keyValues: keyValues, more: reply["more"]?.boolValue ?? false, headerRevision: Self.number(reply["header"]?["revision"]) ?? 0)
    }

    /// The body of a range over `prefix` sorted by mod revision (a request of its own or inside a transaction).
    static func rangeRequest(prefix: [UInt8], minimumRevision: Int64, maximumRevision: Int64?, limit: Int) -> JSONValue {
        .object([
            "key": .string(Base64.encode(prefix)), "range_end": .string(Base64.encode(Self.prefixEnd(prefix))),
            "sort_target": "MOD", "sort_order": "ASCEND",
            "min_mod_revision": minimumRevision > 0 ? .string(String(minimumRevision)) : nil,
            "max_mod_revision": maximumRevision.map { .string(String($0)) },
            "limit": limit > 0 ? .string(String(limit)) : nil,
        ])
    }

    /// A `kv` object of a reply (base64 key and value, string revisions; absent fields are defaults).
    static func keyValue(_ item: JSONValue) throws(CortexError) -> EtcdKeyValue {
        guard let key = Base64.decode(item["key"]?.stringValue ?? ""), let value = Base64.decode(item["value"]?.stringValue ?? "") else {
            throw .corrupt("etcd: a key or value that is not base64: \(item.jsonText)")
        }
        return EtcdKeyValue(key: key, value: value, modRevision: number(item["mod_revision"]) ?? 0)
    }

    /// A 64-bit number as the gateway writes it: a string of digits (or a plain number).
    static func number(_ value: JSONValue?) -> Int64? {
        if let text = value?.stringValue { return Int64(text) }
        return value?.intValue
    }

    private static func unsigned(_ value: JSONValue?) -> UInt64 {
        if let text = value?.stringValue { return UInt64(text) ?? 0 }
        return value?.intValue.map { UInt64(bitPattern: $0) } ?? 0
    }

    /// The first key after every key that starts with `prefix`: the prefix with its last byte
    /// that is not 0xFF incremented (and what follows it dropped); `[0]` (no end) for an empty or all-0xFF prefix.
    public static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }
}

/// A watch over one chunked `/v3/watch` reply: newline-separated `{"result":…}` messages.
///
/// Once etcd confirmed the watch (`created`), a Dispatch read source on the connection's socket
/// drains it on a serial queue (docs/decisions/005 and 030): events are read, parsed and queued
/// as they arrive, while the caller makes its requests on other connections, and `next` waits
/// on a semaphore with its deadline. For TLS the source drives `SSL_read` (OpenSSL decrypts; a
/// `DispatchIO` channel would hand over ciphertext). A stream without a descriptor is read by
/// `next` itself, blocking.
///
/// `@unchecked Sendable`: before `startDraining` only the creating thread uses it; after, the
/// parsing state (`connection`, `lines`, `lineStart`, `pending`) belongs to the queue, and the
/// caller touches only `delivered` (under its lock) and `ready`.
final class EtcdStreamWatch: EtcdWatch, @unchecked Sendable {
    private let connection: HTTPConnection
    private let stream: WatchStream
    private let endpoint: EtcdEndpoint
    private var lines: [UInt8] = []
    private var lineStart = 0
    private var pending: [EtcdWatchEvent] = []
    private var created = false
    /// Set when the last read found nothing before its deadline (the stream is still good).
    private var readTimedOut = false
    /// What the read source delivered and `next` has not taken, oldest first; a failure stays
    /// last and is reported to every later `next`.
    private let delivered = Mutex<[Result<EtcdWatchEvent, CortexError>]>([])
    /// Signalled once per delivered item.
    private let ready = DispatchSemaphore(value: 0)
    private var source: (any DispatchSourceRead)?
    private let queue = DispatchQueue(label: "cortex.etcd-watch")

    init(connection: HTTPConnection, stream: WatchStream, endpoint: EtcdEndpoint) {
        self.connection = connection
        self.stream = stream
        self.endpoint = endpoint
    }

    deinit { cancel() }

    /// Reads messages until etcd confirms the watch (`created:true`).
    func waitUntilCreated(deadline: UInt64) throws(CortexError) {
        while !created {
            if let event = try nextMessage(deadline: deadline) { pending.append(event) }
        }
    }

    /// From now on a read source drains the stream on the watch's queue; what was read while
    /// waiting for `created` is delivered first. Nothing happens for a stream without a descriptor.
    func startDraining() {
        guard source == nil, let descriptor = stream.readableDescriptor else { return }
        let events = pending
        pending = []
        for event in events { deliver(.success(event)) }
        stream.closesLater = true
        let source = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: queue)
        source.setEventHandler { [weak self] in self?.drain() }
        // The descriptor is closed only once the source let go of it.
        source.setCancelHandler { [stream] in stream.closeNow() }
        self.source = source
        source.activate()
        // What was read with `created` but not parsed yet (the first events can come in the
        // same read, and TLS may hold decrypted bytes) makes the socket readable no more: drain
        // it once now.
        queue.async { [weak self] in self?.drain() }
    }

    func next(timeoutMilliseconds: Int64) throws(CortexError) -> EtcdWatchEvent {
        guard source != nil else { return try nextInline(timeoutMilliseconds: timeoutMilliseconds) }
        let timeout: DispatchTime =
            timeoutMilliseconds < 0 ? .distantFuture : .now() + .milliseconds(Int(min(timeoutMilliseconds, Int64(Int32.max))))
        guard ready.wait(timeout: timeout) == .success else { return .puts([]) }
        let item = delivered.withLock { items in
            let first = items.removeFirst()
            if case .failure = first { items.insert(first, at: 0) }
            return first
        }
        switch item {
        case .success(let event): return event
        case .failure(let error):
            ready.signal()  // the failure stays for the next call
            throw error
        }
    }

    /// The puts read off the stream that `next` has not taken yet (0 without a read source).
    var undeliveredPuts: Int {
        delivered.withLock { items in
            items.reduce(0) { total, item in
                guard case .success(.puts(let puts)) = item else { return total }
                return total + puts.count
            }
        }
    }

    /// True while a read source drains the stream.
    var isDraining: Bool { source != nil }

    func cancel() {
        if let source {
            source.cancel()
        } else {
            stream.closeNow()
        }
    }

    /// `next` without a read source: reads the stream itself until an event or the deadline.
    private func nextInline(timeoutMilliseconds: Int64) throws(CortexError) -> EtcdWatchEvent {
        if !pending.isEmpty { return pending.removeFirst() }
        let deadline = timeoutMilliseconds < 0 ? UInt64.max / 2 : Socket.deadline(afterMilliseconds: timeoutMilliseconds)
        do {
            while true {
                if let event = try nextMessage(deadline: deadline) { return event }
            }
        } catch {
            if case .tryLater = error, POSIX.monotonicNanoseconds() >= deadline { return .puts([]) }
            throw error
        }
    }

    private func deliver(_ item: Result<EtcdWatchEvent, CortexError>) {
        delivered.withLock { $0.append(item) }
        ready.signal()
    }

    /// On the queue, when the socket is readable: reads every message there is now (the
    /// socket's bytes and what TLS already decrypted), delivering events; a broken or ended
    /// stream, or a message that is not a watch reply, is delivered as the failure and stops
    /// the source.
    private func drain() {
        guard let source, !source.isCancelled else { return }
        while true {
            readTimedOut = false
            do {
                // A deadline already passed: read what is there without waiting.
                if let event = try nextMessage(deadline: 0) { deliver(.success(event)) }
            } catch {
                // Nothing more to read for now (not a canceled watch, whose error is `tryLater` too).
                if readTimedOut, stream.readableDescriptor != nil { return }
                deliver(.failure(error))
                source.cancel()
                return
            }
        }
    }

    /// Reads one message and returns what it means for the caller (nil: nothing to report).
    private func nextMessage(deadline: UInt64) throws(CortexError) -> EtcdWatchEvent? {
        while true {
            if let newline = lines[lineStart...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = lines[lineStart..<newline]
                lineStart = newline + 1
                if lineStart == lines.count {
                    defer {
                        lines.removeAll(keepingCapacity: true)
                        lineStart = 0
                    }
                    return try interpret(Array(line))
                }
                return try interpret(Array(line))
            }
            let read: [UInt8]?
            do { read = try connection.readBodyPiece(deadline: deadline) } catch {
                if case .tryLater = error { readTimedOut = true }
                throw error
            }
            guard let piece = read else {
                throw CortexError.io(operation: "watch (the stream ended) at", path: endpoint.description, errno: .ioError)
            }
            if lineStart > 0 {
                lines.removeSubrange(..<lineStart)
                lineStart = 0
            }
            lines += piece
            if lines.count > connection.maximumBodyBytes {
                throw CortexError.io(operation: "watch (a message too large) at", path: endpoint.description, errno: .fileTooLarge)
            }
        }
    }

    private func interpret(_ line: [UInt8]) throws(CortexError) -> EtcdWatchEvent? {
        if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { return nil }
        let message: JSONValue
        do { message = try JSONValue.parse(line) } catch {
            throw .corrupt("etcd \(endpoint): a watch message that is not JSON: \(error)")
        }
        guard let result = message["result"] else {
            throw EtcdClient.failure(message["error"] ?? message, status: 200, path: "/v3/watch", endpoint: endpoint)
        }
        if result["created"]?.boolValue == true { created = true }
        if result["canceled"]?.boolValue == true {
            created = true
            let compacted = EtcdClient.number(result["compact_revision"]) ?? 0
            guard compacted > 0 else {
                let reason = result["cancel_reason"]?.stringValue ?? "no reason given"
                let text = "etcd \(endpoint) canceled the watch: \(reason)"
                // Auth refusals are this client's, not the member's: no other member would differ.
                for refusal in ["invalid auth token", "user name is empty", "code = Unauthenticated", "code = PermissionDenied"]
                where reason.contains(refusal) {
                    throw .permissionDenied(text)
                }
                throw .tryLater(text)
            }
            return .compacted(revision: compacted)
        }
        var puts: [EtcdKeyValue] = []
        for event in result["events"]?.arrayValue ?? [] where event["type"]?.stringValue != "DELETE" {
            guard let kv = event["kv"] else { continue }
            puts.append(try EtcdClient.keyValue(kv))
        }
        return puts.isEmpty ? nil : .puts(puts)
    }
}

/// The connections and auth token one client and its operation views share.
private final class EtcdConnectionPool: Sendable {
    let state = Mutex(EtcdPoolState())

    deinit {
        state.withLock { pool in
            for connections in pool.idle.values { connections.forEach { $0.close() } }
            pool.idle = [:]
        }
    }
}

/// What an `EtcdConnectionPool` guards.
private struct EtcdPoolState: ~Copyable {
    var preferred = 0
    var idle: [Int: [HTTPConnection]] = [:]
    /// The auth token (nil: none yet; "": the cluster has auth disabled).
    var token: String?
}

/// One operation's deadline and the attempts its calls made, for the error that ends it: how
/// many attempts, on how many of the members, each member's last failure.
final class EtcdOperation: Sendable {
    /// When the operation's calls stop trying (a monotonic time).
    let deadline: UInt64
    private let started = POSIX.monotonicNanoseconds()
    private let attempts = Mutex<(count: Int, lastFailure: [Int: String])>((0, [:]))

    init(deadline: UInt64) { self.deadline = deadline }

    /// Counts an attempt on member `index` that failed with `reason`.
    func failed(member index: Int, _ reason: String) {
        attempts.withLock { tally in
            tally.count += 1
            tally.lastFailure[index] = reason
        }
    }

    /// The error of an operation that ran out of attempts or time: one line naming the real
    /// count of attempts and members and each member's last failure.
    func failure(path: String, endpoints: [EtcdEndpoint], operationTimeoutMilliseconds: Int64) -> CortexError {
        let (count, lastFailure) = attempts.withLock { ($0.count, $0.lastFailure) }
        let elapsed = Double((POSIX.monotonicNanoseconds() - started) / 1_000_000) / 1000
        let seconds = (elapsed * 10).rounded() / 10
        let members = lastFailure.keys.sorted().map { index in
            let reason = lastFailure[index] ?? ""
            return "\(endpoints[index]): " + reason.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).joined(separator: " ")
        }
        let limit =
            operationTimeoutMilliseconds % 1000 == 0 ? "\(operationTimeoutMilliseconds / 1000)s" : "\(operationTimeoutMilliseconds)ms"
        let plural = count == 1 ? "" : "s"
        return .tryLater(
            "no etcd member answered \(path): \(count) attempt\(plural) on \(lastFailure.count) of \(endpoints.count) members in \(seconds) s (etcd_timeout \(limit)): "
                + members.joined(separator: "; "))
    }
}

/// The stream under a watch's connection. Once a read source watches its descriptor, a close
/// asked for by the HTTP layer (a reply that ended or broke) is put off until the source is
/// cancelled (`closeNow`): a descriptor must not be closed, and its number reused, while Dispatch
/// still watches it.
final class WatchStream: ByteStream {
    private let stream: any ByteStream
    /// True once a read source watches the descriptor.
    var closesLater = false

    init(_ stream: any ByteStream) { self.stream = stream }

    func send(_ bytes: [UInt8], deadline: UInt64) throws(CortexError) { try stream.send(bytes, deadline: deadline) }

    func receive(maximum: Int, deadline: UInt64) throws(CortexError) -> [UInt8] {
        try stream.receive(maximum: maximum, deadline: deadline)
    }

    func close() {
        if !closesLater { stream.close() }
    }

    /// Closes the stream whoever watches it.
    func closeNow() { stream.close() }

    var readableDescriptor: Int32? { stream.readableDescriptor }
}
