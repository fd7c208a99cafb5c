/// Settings from `config.json`. Settings tune the machinery (segment size, snapshot interval,
/// limits); they never change what the fold decides for a record already in the journal.
public struct CortexConfig: Equatable, Sendable {
    /// Rotate the live segment once it passes this many bytes.
    public var segmentMaxBytes: Int64 = 8 << 20
    /// Write a fresh snapshot once a fold has replayed this many records past the last one.
    public var snapshotEveryRecords: Int = 128
    /// `fdatasync` the journal after every append (survive power loss, at a cost per call).
    public var syncAppends = false
    /// The most workers alive at once (used by cortex-spawn).
    public var maxWorkers: Int = 10
    /// How long results (`results/`) and finished-task files are kept before the reaper purges them.
    public var resultRetentionMilliseconds: Int64 = 7 * 86_400_000
    /// A worker whose heartbeat is older than this is declared lost by the reaper (`heartbeat_timeout`).
    public var heartbeatTimeoutMilliseconds: Int64 = 60_000
    /// The most workers of each listed type alive at once (`type_limits`).
    public var typeLimits: [String: Int64] = [:]
    /// Load average per core above which no new worker starts (`max_load_per_core`, in thousandths).
    /// Only where the kernel reports no CPU pressure (decision 026).
    public var maxLoadPerCoreMillis: Int64 = 4_000
    /// CPU pressure (`some avg10`, percent) above which no new worker starts (`max_cpu_pressure`,
    /// in thousandths of a percent); 100 turns the gate off.
    public var maxCPUPressureMillis: Int64 = 95_000
    /// The reaper rotates the live segment once it passes this many bytes (`rotate_bytes`), so the
    /// segments behind it can be archived even when writers never reach `segment_max_bytes`.
    public var reaperRotateBytes: Int64 = 1 << 20
    /// How long archived segments stay in `journal/archive/` before the reaper removes them
    /// (`archive_retention`).
    public var archiveRetentionMilliseconds: Int64 = 7 * 86_400_000
    /// What a spawned worker's run that reports no tokens used is charged for what it reserved
    /// (`unreported_tokens`: `reserved`, all of it, the default; or `zero`).
    public var unreportedTokens: UnreportedTokens = .reserved
    /// Spawns queued longer than this make `cortex status` ask for attention (`queued_spawn_alarm`).
    public var queuedSpawnAlarmMilliseconds: Int64 = 120_000
    /// Where the journal lives (`backend`): in the folder (the default, no key written) or on an
    /// etcd cluster shared by several hosts' folders (docs/decisions/033).
    public var backend: JournalBackend = .file
    /// Sign every record with its writer's key (`audit`, docs/decisions/044-signed-journal.md):
    /// on in the `config.json` of a folder `cortex init` creates, off (absent) in older ones
    /// until `cortex audit start`.
    public var audit = false

    /// This host's id when the journal is shared with other hosts (an etcd folder), nil for a
    /// folder of files (one host). Written into the records whose meaning depends on the
    /// machine: spawns (spec and evidence), promotions, claims (decision 037).
    public var hostID: String? {
        if case .etcd(let settings) = backend { return settings.hostID }
        return nil
    }

    /// The defaults.
    public init() {}

    /// The settings as the JSON written to `config.json`.
    public var json: JSONValue {
        let fileSettings: JSONValue = .object([
            "archive_retention": .string("\(archiveRetentionMilliseconds / 1000)s"),
            "format": 1, "heartbeat_timeout": .string("\(heartbeatTimeoutMilliseconds / 1000)s"),
            "max_cpu_pressure": .double(Double(maxCPUPressureMillis) / 1000),
            "max_load_per_core": .double(Double(maxLoadPerCoreMillis) / 1000), "max_workers": .int(maxWorkers),
            "queued_spawn_alarm": .string("\(queuedSpawnAlarmMilliseconds / 1000)s"),
            "result_ttl": .string("\(resultRetentionMilliseconds / 1000)s"), "rotate_bytes": .int(reaperRotateBytes),
            "type_limits": .object(typeLimits.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) }),
            "segment_max_bytes": .int(segmentMaxBytes),
            "snapshot_every_records": .int(snapshotEveryRecords), "sync_appends": .bool(syncAppends),
            "unreported_tokens": .string(unreportedTokens.rawValue),
        ])
        // A file folder's config.json stays what it always was: no backend key, no audit key
        // unless audited.
        guard case .object(var members) = fileSettings, audit || backend != .file else { return fileSettings }
        if case .etcd(let settings) = backend {
            members.append(JSONMember("backend", settings.json))
            members.append(JSONMember("etcd_timeout", .string("\(settings.timeoutMilliseconds / 1000)s")))
        }
        if audit { members.append(JSONMember("audit", .bool(true))) }
        members.sort { $0.key < $1.key }
        return .object(members)
    }

    /// Reads `config.json`'s content; unknown keys are kept out of the way, wrong types refused.
    /// - Throws: `CortexError.configuration` naming the key and what it should be.
    public init(json: JSONValue, path: String) throws(CortexError) {
        self.init()
        guard case .object = json else { throw .configuration("\(path): expected a JSON object") }
        func positive(_ key: String, minimum: Int64) throws(CortexError) -> Int64? {
            guard let raw = json[key] else { return nil }
            if let number = raw.intValue, number >= minimum, number <= Limits.maximumCount { return number }
            if let text = raw.stringValue, let bytes = try? Values.parseSizeBytes(text), bytes >= minimum { return bytes }
            throw .configuration("\(path): '\(key)' must be a whole number from \(minimum) to \(Limits.maximumCount)")
        }
        if let value = try positive("segment_max_bytes", minimum: 1024) { segmentMaxBytes = value }
        if let value = try positive("snapshot_every_records", minimum: 1) { snapshotEveryRecords = Int(value) }
        if let value = try positive("max_workers", minimum: 1) { maxWorkers = Int(value) }
        if let value = try positive("rotate_bytes", minimum: 1024) { reaperRotateBytes = value }
        if let raw = json["max_load_per_core"] {
            guard let number = raw.doubleValue, number > 0, number < 1e6 else {
                throw .configuration("\(path): 'max_load_per_core' must be a number > 0")
            }
            maxLoadPerCoreMillis = Int64((number * 1000).rounded())
        }
        if let raw = json["max_cpu_pressure"] {
            guard let number = raw.doubleValue, number > 0, number <= 100 else {
                throw .configuration("\(path): 'max_cpu_pressure' must be a percentage above 0, at most 100")
            }
            maxCPUPressureMillis = Int64((number * 1000).rounded())
        }
        if let raw = json["heartbeat_timeout"] {
            let text = raw.stringValue ?? raw.intValue.map(String.init) ?? ""
            guard let milliseconds = try? Values.parseDurationMilliseconds(text), milliseconds > 0 else {
                throw .configuration("\(path): 'heartbeat_timeout' must be a duration such as 60s or 5m")
            }
            heartbeatTimeoutMilliseconds = milliseconds
        }
        if let raw = json["queued_spawn_alarm"] {
            let text = raw.stringValue ?? raw.intValue.map(String.init) ?? ""
            guard let milliseconds = try? Values.parseDurationMilliseconds(text) else {
                throw .configuration("\(path): 'queued_spawn_alarm' must be a duration such as 2m or 30s")
            }
            queuedSpawnAlarmMilliseconds = milliseconds
        }
        for member in json["type_limits"]?.objectMembers ?? [] {
            guard let limit = member.value.intValue, limit >= 0, limit <= Limits.maximumCount else {
                throw .configuration("\(path): 'type_limits.\(member.key)' must be a whole number from 0 to \(Limits.maximumCount)")
            }
            typeLimits[member.key] = limit
        }
        if let raw = json["result_ttl"] {
            let text = raw.stringValue ?? raw.intValue.map(String.init) ?? ""
            guard let milliseconds = try? Values.parseDurationMilliseconds(text) else {
                throw .configuration("\(path): 'result_ttl' must be a duration such as 3600, 90m, 12h or 7d")
            }
            resultRetentionMilliseconds = milliseconds
        }
        if let raw = json["archive_retention"] {
            let text = raw.stringValue ?? raw.intValue.map(String.init) ?? ""
            guard let milliseconds = try? Values.parseDurationMilliseconds(text) else {
                throw .configuration("\(path): 'archive_retention' must be a duration such as 3600, 12h or 7d")
            }
            archiveRetentionMilliseconds = milliseconds
        }
        if let raw = json["unreported_tokens"] {
            guard let rule = raw.stringValue.flatMap(UnreportedTokens.init(rawValue:)) else {
                throw .configuration("\(path): 'unreported_tokens' must be \"reserved\" or \"zero\"")
            }
            unreportedTokens = rule
        }
        if let raw = json["sync_appends"] {
            guard let flag = raw.boolValue else { throw .configuration("\(path): 'sync_appends' must be true or false") }
            syncAppends = flag
        }
        if let raw = json["backend"] { backend = try JournalBackend(json: raw, path: path) }
        if let raw = json["etcd_timeout"] {
            let text = raw.stringValue ?? raw.intValue.map(String.init) ?? ""
            guard let milliseconds = try? Values.parseDurationMilliseconds(text),
                (EtcdSettings.minimumTimeoutMilliseconds...EtcdSettings.maximumTimeoutMilliseconds).contains(milliseconds)
            else {
                throw .configuration("\(path): 'etcd_timeout' must be a duration from 1s to 1h, such as 10s")
            }
            if case .etcd(var settings) = backend {
                settings.timeoutMilliseconds = milliseconds
                backend = .etcd(settings)
            }
        }
        if let raw = json["audit"] {
            guard let flag = raw.boolValue else { throw .configuration("\(path): 'audit' must be true or false") }
            audit = flag
        }
    }
}

/// Where a folder's journal lives (`config.json`'s `backend`).
public enum JournalBackend: Equatable, Sendable {
    /// `journal/` in the folder itself.
    case file
    /// Records under a namespace of an etcd cluster, shared by every folder that names it.
    case etcd(EtcdSettings)

    /// Reads `backend`: `{"kind": "file"}` or `{"kind": "etcd", "endpoints": [...], "namespace": ..., "host_id": ...}`.
    /// - Throws: `configuration` naming what is wrong.
    public init(json: JSONValue, path: String) throws(CortexError) {
        guard case .object = json, let kind = json["kind"]?.stringValue else {
            throw .configuration("\(path): 'backend' must be an object with a 'kind' (\"file\" or \"etcd\")")
        }
        switch kind {
        case "file": self = .file
        case "etcd":
            let endpoints = (json["endpoints"]?.arrayValue ?? []).compactMap(\.stringValue)
            guard let namespace = json["namespace"]?.stringValue, let hostID = json["host_id"]?.stringValue else {
                throw .configuration("\(path): an etcd 'backend' needs 'endpoints', 'namespace' and 'host_id'")
            }
            var settings = try EtcdSettings(endpoints: endpoints, namespace: namespace, hostID: hostID, path: path)
            try settings.readSecurity(json, path: path)
            self = .etcd(settings)
        default: throw .configuration("\(path): 'backend.kind' must be \"file\" or \"etcd\", not '\(kind)'")
        }
    }
}

/// An etcd backend's settings: the cluster's client URLs, the namespace this folder shares with
/// other hosts, and this host's id.
public struct EtcdSettings: Equatable, Sendable {
    /// Client URLs of every member (`http://host:port`).
    public var endpoints: [String]
    /// The namespace whose records are this folder's journal (letters, digits, `-`, `_`, `.`).
    public var namespace: String
    /// This host's id (letters, digits, `-`, `_`, `.`).
    public var hostID: String
    /// For `https://` members: the CA file their certificates must chain to (absolute path).
    public var caFile: String?
    /// This host's client certificate (PEM) for clusters that ask for one.
    public var certificateFile: String?
    /// The private key of `certificateFile`.
    public var keyFile: String?
    /// The etcd user, for clusters with auth enabled.
    public var user: String?
    /// A file holding the user's password (read when the folder is opened; keep it 0600).
    public var passwordFile: String?
    /// How long one etcd operation of a tool may take in all, every retry and failover
    /// included, before it fails with exit 75 (`config.json`'s top-level `etcd_timeout`,
    /// decision 030). Not part of `json`: `CortexConfig` writes and reads it.
    public var timeoutMilliseconds: Int64 = EtcdSettings.defaultTimeoutMilliseconds

    /// `etcd_timeout` when `config.json` names none: 10 s.
    public static let defaultTimeoutMilliseconds: Int64 = 10_000
    /// The shortest `etcd_timeout`: 1 s.
    public static let minimumTimeoutMilliseconds: Int64 = 1_000
    /// The longest `etcd_timeout`: 1 h.
    public static let maximumTimeoutMilliseconds: Int64 = 3_600_000

    /// Checked settings.
    /// - Throws: `configuration` (or `usage` wording, through `path`) naming the bad value.
    public init(endpoints: [String], namespace: String, hostID: String, path: String) throws(CortexError) {
        guard !endpoints.isEmpty, endpoints.count <= 16 else {
            throw .configuration("\(path): 'endpoints' must list 1 to 16 etcd client URLs")
        }
        for endpoint in endpoints where !endpoint.hasPrefix("http://") && !endpoint.hasPrefix("https://") {
            throw .configuration("\(path): endpoint '\(endpoint)' must be a URL such as http://10.0.0.1:2379")
        }
        for (name, value) in [("namespace", namespace), ("host_id", hostID)] {
            guard EtcdSettings.isValidName(value) else {
                throw .configuration("\(path): '\(name)' must be 1 to 128 letters, digits, '-', '_' or '.', not '\(value)'")
            }
        }
        self.endpoints = endpoints
        self.namespace = namespace
        self.hostID = hostID
    }

    /// True for 1 to 128 letters, digits, `-`, `_` or `.`: a namespace or a host id. Records
    /// that name a host (`host` in a spawn's spec and evidence, in a claim) are checked by it too.
    public static func isValidName(_ value: String) -> Bool {
        let allowed = value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2D
                || byte == 0x5F || byte == 0x2E
        }
        return allowed && !value.isEmpty && value.utf8.count <= 128
    }

    /// Reads the optional TLS and auth members of `backend` (`ca_file`, `cert_file`, `key_file`,
    /// `user`, `password_file`): strings, the files absolute paths.
    /// - Throws: `configuration` naming a member that is not an absolute path or a string.
    mutating func readSecurity(_ json: JSONValue, path: String) throws(CortexError) {
        func text(_ key: String, isFile: Bool) throws(CortexError) -> String? {
            guard let raw = json[key], raw != .null else { return nil }
            guard let value = raw.stringValue, !value.isEmpty, !isFile || value.hasPrefix("/") else {
                throw .configuration("\(path): 'backend.\(key)' must be \(isFile ? "an absolute path" : "a string")")
            }
            return value
        }
        caFile = try text("ca_file", isFile: true)
        certificateFile = try text("cert_file", isFile: true)
        keyFile = try text("key_file", isFile: true)
        user = try text("user", isFile: false)
        passwordFile = try text("password_file", isFile: true)
    }

    /// The settings as `config.json`'s `backend` object.
    public var json: JSONValue {
        var members = [
            JSONMember("endpoints", .array(endpoints.map { .string($0) })), JSONMember("host_id", .string(hostID)),
            JSONMember("kind", "etcd"), JSONMember("namespace", .string(namespace)),
        ]
        // Written only when set, so a plain-http folder's config stays as it was.
        for (key, value) in [
            ("ca_file", caFile), ("cert_file", certificateFile), ("key_file", keyFile), ("password_file", passwordFile),
            ("user", user),
        ] {
            if let value { members.append(JSONMember(key, .string(value))) }
        }
        return .object(members)
    }
}
