import COpenSSL
import CortexCore

/// What a TLS client trusts and presents, loaded once from PEM files and shared by every
/// connection made with it (docs/decisions/032-system-openssl.md): TLS 1.2 or newer, the
/// server's certificate must chain to `caFile` and name the host connected to, and the client
/// certificate and key, when given, answer a server that asks for one (etcd's
/// `--client-cert-auth`).
public final class TLSClientContext: @unchecked Sendable {
    // @unchecked: OpenSSL's SSL_CTX is reference counted and safe to share between threads
    // once configured, which `init` finishes before anyone sees the context.

    /// The OpenSSL context (`SSL_CTX *`).
    let context: OpaquePointer
    /// True when a client certificate was loaded.
    let presentsCertificate: Bool

    /// Loads the certificate authorities in `caFile` (PEM, one or more) and, for mutual TLS,
    /// the client's certificate chain and private key (PEM; the key unencrypted). Throws
    /// `CortexError.configuration` naming the file and OpenSSL's reason when one cannot be used.
    public init(caFile: String, certificateFile: String? = nil, keyFile: String? = nil) throws(CortexError) {
        guard (certificateFile == nil) == (keyFile == nil) else {
            throw .configuration("a TLS client certificate needs its private key, and a key its certificate")
        }
        for (role, path) in [("CA file", caFile), ("client certificate", certificateFile), ("client key", keyFile)] {
            guard let path else { continue }
            guard let info = try? POSIX.status(path, followingLinks: true) else {
                throw .configuration("TLS \(role) \(path) does not exist")
            }
            // OpenSSL opens the file itself, blocking: a FIFO planted there would hang the tool.
            guard info.isRegularFile else { throw .configuration("TLS \(role) \(path) is not a regular file") }
        }
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            throw .configuration("cannot create a TLS context: \(TLSClientContext.queuedReasons())")
        }
        self.context = context
        self.presentsCertificate = certificateFile != nil
        cortex_ssl_ignore_unexpected_eof(context)
        cortex_ssl_accept_moving_write_buffer(context)
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        guard cortex_ssl_require_tls12(context) == 1 else {
            throw .configuration("cannot require TLS 1.2: \(TLSClientContext.queuedReasons())")
        }
        guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else {
            throw .configuration("cannot load the TLS CA file \(caFile): \(TLSClientContext.queuedReasons())")
        }
        if let certificateFile, let keyFile {
            guard SSL_CTX_use_certificate_chain_file(context, certificateFile) == 1 else {
                throw .configuration("cannot load the TLS client certificate \(certificateFile): \(TLSClientContext.queuedReasons())")
            }
            guard SSL_CTX_use_PrivateKey_file(context, keyFile, SSL_FILETYPE_PEM) == 1 else {
                throw .configuration("cannot load the TLS client key \(keyFile): \(TLSClientContext.queuedReasons())")
            }
            guard SSL_CTX_check_private_key(context) == 1 else {
                throw .configuration(
                    "the TLS client key \(keyFile) does not belong to the certificate \(certificateFile): \(TLSClientContext.queuedReasons())"
                )
            }
        }
    }

    deinit { SSL_CTX_free(context) }

    /// The reasons on this thread's OpenSSL error queue, oldest first, and empties it:
    /// "certificate verify failed", "tlsv13 alert certificate required".
    static func queuedReasons() -> String {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            let reason = ERR_reason_error_string(code).map { String(cString: $0) } ?? "OpenSSL error \(code)"
            if !reasons.contains(reason) { reasons.append(reason) }
        }
        return reasons.isEmpty ? noReason : reasons.joined(separator: "; ")
    }

    /// What `queuedReasons` says when OpenSSL queued none.
    static let noReason = "no reason given"
}

/// A TLS client connection over a TCP socket that is already connected: the handshake checks
/// the server's certificate against the context's CAs and `serverName` (a DNS name, or an IP
/// address without brackets), and presents the context's client certificate when the server asks. Reads and
/// writes are non-blocking underneath, with `poll` between OpenSSL's "want read" and "want
/// write", so each call ends by its deadline. Failures are one `CortexError` each:
/// `.configuration` for what TLS refused, with OpenSSL's reason ("TLS handshake with 10.0.0.5
/// failed: certificate verify failed (unable to get local issuer certificate)"); `.tryLater`
/// for a passed deadline or a connection that ended mid-handshake; `.io` for a failed system call.
public final class TLSStream: ByteStream {
    private var session: OpaquePointer?
    private let socket: Int32
    private let serverName: String
    /// Whether the context had a client certificate to present, for the message of a refusal.
    private let presentsCertificate: Bool
    /// True once OpenSSL reported a fatal error: no close_notify may be sent then.
    private var broken = false
    private var established = false
    private var closed = false

    /// Takes over `socket` (a connected TCP socket; closed by `close`, or at once when the
    /// handshake fails) and completes the TLS handshake with `serverName` by `deadline`
    /// (on the `POSIX.monotonicNanoseconds()` clock).
    public init(connectedSocket socket: Int32, serverName: String, context: TLSClientContext, deadline: UInt64) throws(CortexError) {
        self.socket = socket
        self.serverName = serverName
        self.session = nil
        self.presentsCertificate = context.presentsCertificate
        // From here on a throw runs deinit, which frees the session and closes the socket.
        do { try POSIX.setNonBlocking(socket) } catch { throw .io(operation: "use the connection to", path: serverName, errno: error) }
        ERR_clear_error()
        guard let session = SSL_new(context.context) else {
            throw .configuration("cannot start TLS with \(serverName): \(TLSClientContext.queuedReasons())")
        }
        self.session = session
        // An address is checked against the certificate's IP entries, a name against its DNS
        // entries (and sent as SNI, which may not carry an address).
        if X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(session), serverName) != 1 {
            ERR_clear_error()
            SSL_set_hostflags(session, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
            guard SSL_set1_host(session, serverName) == 1, cortex_ssl_set_server_name(session, serverName) == 1 else {
                throw .configuration("cannot check TLS server name \(serverName): \(TLSClientContext.queuedReasons())")
            }
        }
        guard SSL_set_fd(session, socket) == 1 else {
            throw .configuration("cannot start TLS with \(serverName): \(TLSClientContext.queuedReasons())")
        }
        guard try drive("handshake with", deadline: deadline, { SSL_connect($0) }) > 0 else {
            broken = true
            throw .tryLater("TLS handshake with \(serverName) failed: the connection ended")
        }
        established = true
    }

    deinit { close() }

    /// Sends every byte of `bytes` through TLS by `deadline`.
    public func send(_ bytes: [UInt8], deadline: UInt64) throws(CortexError) {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(CortexError) in
                var offset = 0
                while offset < buffer.count {
                    let chunk = Int32(min(buffer.count - offset, Int(Int32.max)))
                    let sent = try drive("send to", deadline: deadline) { SSL_write($0, buffer.baseAddress! + offset, chunk) }
                    guard sent > 0 else { throw .tryLater("cannot send to \(serverName): the server ended the TLS session") }
                    offset += Int(sent)
                }
            }
        }.get()
    }

    /// Receives between 1 and `maximumCount` decrypted bytes by `deadline`; `[]` once the
    /// server ended the session (close_notify, or the connection closed).
    public func receive(maximum maximumCount: Int, deadline: UInt64) throws(CortexError) -> [UInt8] {
        let capacity = Int32(min(max(maximumCount, 1), Int(Int32.max)))
        var failure: CortexError?
        let bytes = [UInt8](unsafeUninitializedCapacity: Int(capacity)) { buffer, initialized in
            do throws(CortexError) {
                initialized = Int(try drive("receive from", deadline: deadline) { SSL_read($0, buffer.baseAddress, capacity) })
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }

    /// The socket while the session can still deliver bytes (not closed, not broken).
    public var readableDescriptor: Int32? { closed || broken ? nil : socket }

    /// Sends close_notify when the session is healthy (once, without waiting for the server's),
    /// then frees the session and closes the socket.
    public func close() {
        guard !closed else { return }
        closed = true
        if let session {
            if established && !broken {
                ERR_clear_error()
                _ = POSIX.withBrokenPipeSuppressed { SSL_shutdown(session) }
                ERR_clear_error()
            }
            SSL_free(session)
            self.session = nil
        }
        POSIX.close(socket)
    }

    /// Runs one OpenSSL call until it succeeds (a positive result, returned), the session ends
    /// cleanly (0), it fails (thrown), or `deadline` passes (thrown as `.tryLater`), polling the
    /// socket whenever OpenSSL wants to read or write.
    private func drive(_ operation: String, deadline: UInt64, _ call: (OpaquePointer) -> Int32) throws(CortexError) -> Int32 {
        guard let session, !broken else {
            throw .tryLater("TLS \(operation) \(serverName): the session is closed")
        }
        while true {
            ERR_clear_error()
            let (result, callErrno) = POSIX.withBrokenPipeSuppressed { () -> (Int32, Errno) in
                let result = call(session)
                return (result, Errno.current)
            }
            if result > 0 { return result }
            let failure = SSL_get_error(session, result)
            switch failure {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                try waitForSocket(writable: failure == SSL_ERROR_WANT_WRITE, operation, deadline: deadline)
            case SSL_ERROR_ZERO_RETURN:
                return 0
            case SSL_ERROR_SSL:
                broken = true
                throw .configuration("TLS \(operation) \(serverName) failed: \(refusalReason(session))")
            case SSL_ERROR_SYSCALL where result < 0 && callErrno.rawValue != 0:
                broken = true
                if let refusal = queuedRefusal(session, after: callErrno, operation) { throw refusal }
                throw .io(operation: "use the TLS connection to", path: serverName, errno: callErrno)
            default:
                broken = true
                let reason = TLSClientContext.queuedReasons()
                let detail = reason == TLSClientContext.noReason ? "" : " (\(reason))"
                throw .tryLater("TLS \(operation) \(serverName) failed: the connection ended\(detail)")
            }
        }
    }

    /// OpenSSL's reasons for a failed call, with the certificate check's verdict, or a hint
    /// when the server refused a client that presented no certificate.
    private func refusalReason(_ session: OpaquePointer) -> String {
        var reason = TLSClientContext.queuedReasons()
        let verification = SSL_get_verify_result(session)
        if verification != X509_V_OK, let text = X509_verify_cert_error_string(verification) {
            reason += " (\(String(cString: text)))"
        } else if reason.contains("alert") && !presentsCertificate {
            // The server refused; without a certificate that is most often why (TLS 1.2
            // servers send a bare "handshake failure").
            reason += " (this client presented no certificate)"
        }
        return reason
    }

    /// A server that refuses the client's certificate under TLS 1.3 (checked after the client's
    /// half of the handshake) sends an alert and closes with the client's first request unread,
    /// which resets the connection. The reset can fail this side's next write or read while the
    /// alert still waits in the socket: one more read finds it, so the refusal reads as what it
    /// is rather than as a broken connection. Nil when no alert is there.
    private func queuedRefusal(_ session: OpaquePointer, after failure: Errno, _ operation: String) -> CortexError? {
        guard failure == .brokenPipe || failure == .connectionReset else { return nil }
        ERR_clear_error()
        var byte: UInt8 = 0
        let result = POSIX.withBrokenPipeSuppressed { SSL_read(session, &byte, 1) }
        guard result <= 0, SSL_get_error(session, result) == SSL_ERROR_SSL else {
            ERR_clear_error()
            return nil
        }
        let reason = refusalReason(session)
        guard reason.contains("alert") else { return nil }
        return .configuration("TLS \(operation) \(serverName) failed: \(reason)")
    }

    private func waitForSocket(writable: Bool, _ operation: String, deadline: UInt64) throws(CortexError) {
        let now = POSIX.monotonicNanoseconds()
        let left = deadline > now ? (deadline - now + 999_999) / 1_000_000 : 0
        var ready = false
        do throws(Errno) {
            if left > 0 {
                ready = try POSIX.waitUntilReady(socket, forWriting: writable, timeoutMilliseconds: Int32(min(left, UInt64(Int32.max))))
            }
        } catch {
            broken = true
            throw .io(operation: "wait for the TLS connection to", path: serverName, errno: error)
        }
        guard ready else { throw .tryLater("TLS \(operation) \(serverName) timed out") }
    }
}
