import CortexCore

/// The etcd client and journal a folder's settings describe (docs/decisions/030, 034), for the
/// commands that reach the cluster without opening a store.
extension CoordinationStore {
    /// The journal a folder over etcd shares with other hosts (its records under the namespace).
    /// - Throws: `configuration` for bad settings.
    public static func etcdJournal(_ settings: EtcdSettings) throws(CortexError) -> EtcdJournal {
        try EtcdJournal(kv: etcdClient(settings), namespace: settings.namespace)
    }

    /// The client `settings` describe: plain or TLS members (`ca_file`, `cert_file`, `key_file`),
    /// and an etcd user whose password is read from `password_file` (decision 034).
    /// - Throws: `configuration` for TLS files or a password file that cannot be used.
    public static func etcdClient(_ settings: EtcdSettings) throws(CortexError) -> EtcdClient {
        let tls = settings.caFile.map { EtcdTLSFiles(caFile: $0, certificateFile: settings.certificateFile, keyFile: settings.keyFile) }
        var password: String?
        if let file = settings.passwordFile {
            let bytes = try withPath("read the etcd password file", file) { () throws(Errno) in
                try POSIX.readFile(file, limit: FileLimits.smallFile)
            }
            password = String(decoding: bytes, as: UTF8.self).trimmingTrailingNewlines
        }
        // `etcd_timeout` bounds a whole operation; one attempt gets a half (one member) or a
        // third (more) of it, 0.5 s to 5 s, so a silent member leaves time to try others (decision 030).
        let total = settings.timeoutMilliseconds
        let share = Int64(min(3, max(2, settings.endpoints.count)))
        return try EtcdClient(
            endpoints: settings.endpoints, tls: tls, username: settings.user, password: password,
            timeoutMilliseconds: min(5000, max(500, total / share)), operationTimeoutMilliseconds: total)
    }
}

extension String {
    /// The text without the newlines (and carriage returns) at its end: a password file's content.
    fileprivate var trimmingTrailingNewlines: String {
        var text = Substring(self)
        while let last = text.last, last == "\n" || last == "\r" { text.removeLast() }
        return String(text)
    }
}
