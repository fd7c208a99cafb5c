import CCortexShims
import CortexCore
import Glibc

// TCP through the system-call layer (docs/decisions/030-etcd-client.md): a connection with
// deadlines on every step, so a member that accepts a connection and never answers cannot hang a
// tool. Deadlines are `POSIX.monotonicNanoseconds()` values; every wait is a `poll` that
// recomputes what is left of the deadline when it is retried after EINTR.

/// A two-way byte stream with deadlines: what the HTTP client talks through. A plain TCP
/// connection is one; a TLS session over one is another, so the transport can be swapped.
public protocol ByteStream: AnyObject {
    /// Sends every byte before `deadline` (monotonic nanoseconds).
    /// - Throws: `CortexError.tryLater` when the deadline passes, `.io` when the peer is gone.
    func send(_ bytes: [UInt8], deadline: UInt64) throws(CortexError)

    /// Receives at least one and at most `maximum` bytes before `deadline`; an empty array at
    /// the end of the stream.
    /// - Throws: `CortexError.tryLater` when the deadline passes, `.io` when the peer is gone.
    func receive(maximum: Int, deadline: UInt64) throws(CortexError) -> [UInt8]

    /// Closes the stream; later calls fail. Closing twice is harmless.
    func close()

    /// The descriptor that becomes readable when more bytes may be received (what a Dispatch
    /// read source watches: docs/decisions/005), or nil when none can be any more (closed, or a
    /// session that broke) or the stream has no descriptor.
    var readableDescriptor: Int32? { get }
}

extension ByteStream {
    /// No descriptor: a stream without one is read by blocking calls only.
    public var readableDescriptor: Int32? { nil }
}

/// A connected TCP socket (close-on-exec, non-blocking, `TCP_NODELAY`).
public final class TCPConnection: ByteStream {
    /// The socket's descriptor (-1 once closed): a TLS stream runs over it.
    public private(set) var descriptor: Int32
    /// `host:port`, for error messages.
    public let peer: String

    private init(descriptor: Int32, peer: String) {
        self.descriptor = descriptor
        self.peer = peer
    }

    deinit { close() }

    /// Connects to `host` (a name or a numeric address) at `port`, trying each address the name
    /// resolves to, before `deadline`.
    /// - Throws: `CortexError.tryLater` when the deadline passes, `.io` when every address
    ///   refused or could not be reached, `.configuration` when the name does not resolve.
    public static func connect(host: String, port: Int, deadline: UInt64) throws(CortexError) -> TCPConnection {
        let peer = "\(host):\(port)"
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        // A numeric address first: it needs no name service, which a statically linked tool
        // would have to load at run time (glibc's NSS); names go through it only when given.
        hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST
        var list: UnsafeMutablePointer<addrinfo>?
        var resolved = getaddrinfo(host, String(port), &hints, &list)
        if resolved == EAI_NONAME {
            hints.ai_flags = AI_NUMERICSERV
            resolved = getaddrinfo(host, String(port), &hints, &list)
        }
        guard resolved == 0, let first = list else {
            throw .configuration("cannot resolve \(peer): \(String(cString: gai_strerror(resolved)))")
        }
        defer { freeaddrinfo(list) }
        var lastFailure: CortexError = .io(operation: "connect to", path: peer, errno: Errno(ECONNREFUSED))
        var address: UnsafeMutablePointer<addrinfo>? = first
        while let candidate = address {
            address = candidate.pointee.ai_next
            do {
                let fd = try openAndConnect(candidate.pointee, peer: peer, deadline: deadline)
                return TCPConnection(descriptor: fd, peer: peer)
            } catch {
                if case .tryLater = error { throw error }
                lastFailure = error
            }
        }
        throw lastFailure
    }

    /// One non-blocking `connect` and a `poll` for its outcome. EINTR, EINPROGRESS and EALREADY
    /// all mean the connection goes on in the background, so `connect` is never retried: the
    /// poll and `SO_ERROR` tell how it ended.
    private static func openAndConnect(_ address: addrinfo, peer: String, deadline: UInt64) throws(CortexError) -> Int32 {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let fd = socket(address.ai_family, type, address.ai_protocol)
        guard fd >= 0 else { throw .io(operation: "open a socket for", path: peer, errno: Errno.current) }
        do throws(CortexError) {
            if Glibc.connect(fd, address.ai_addr, address.ai_addrlen) != 0 {
                let failure = Errno.current
                guard [EINPROGRESS, EINTR, EALREADY].contains(failure.rawValue) else {
                    throw CortexError.io(operation: "connect to", path: peer, errno: failure)
                }
                try Socket.wait(fd, for: Int16(POLLOUT), deadline: deadline, peer: peer, doing: "connect to")
                var pending: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                if getsockopt(fd, SOL_SOCKET, SO_ERROR, &pending, &length) != 0 { pending = Errno.current.rawValue }
                if pending != 0 { throw CortexError.io(operation: "connect to", path: peer, errno: Errno(pending)) }
            }
            var on: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            return fd
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
    }

    /// Sends every byte, waiting for room with `poll` (`MSG_NOSIGNAL`: a closed peer is an error, not SIGPIPE).
    public func send(_ bytes: [UInt8], deadline: UInt64) throws(CortexError) {
        guard descriptor >= 0 else { throw .io(operation: "send to", path: peer, errno: .badFileDescriptor) }
        var offset = 0
        while offset < bytes.count {
            let sent: Int
            do throws(Errno) {
                sent = try retryingInterrupts {
                    bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
                }
            } catch {
                if error == .resourceTemporarilyUnavailable {
                    try Socket.wait(descriptor, for: Int16(POLLOUT), deadline: deadline, peer: peer, doing: "send to")
                    continue
                }
                throw .io(operation: "send to", path: peer, errno: error)
            }
            offset += sent
        }
    }

    /// Receives what is there (up to `maximum` bytes), waiting for something with `poll`.
    public func receive(maximum: Int, deadline: UInt64) throws(CortexError) -> [UInt8] {
        guard descriptor >= 0 else { throw .io(operation: "receive from", path: peer, errno: .badFileDescriptor) }
        var buffer = [UInt8](repeating: 0, count: max(1, maximum))
        while true {
            do throws(Errno) {
                let got = try retryingInterrupts { buffer.withUnsafeMutableBytes { Glibc.recv(descriptor, $0.baseAddress!, $0.count, 0) } }
                buffer.removeSubrange(got...)
                return buffer
            } catch {
                guard error == .resourceTemporarilyUnavailable else {
                    throw .io(operation: "receive from", path: peer, errno: error)
                }
                try Socket.wait(descriptor, for: Int16(POLLIN), deadline: deadline, peer: peer, doing: "receive from")
            }
        }
    }

    /// Hands the socket over to the caller (a TLS stream that runs over it and closes it):
    /// this connection no longer uses or closes it.
    public func releaseDescriptor() -> Int32 {
        defer { descriptor = -1 }
        return descriptor
    }

    /// Closes the socket (see `POSIX.close`: never retried).
    public func close() {
        if descriptor >= 0 { POSIX.close(descriptor) }
        descriptor = -1
    }

    /// The socket while it is open.
    public var readableDescriptor: Int32? { descriptor >= 0 ? descriptor : nil }
}

/// A listening TCP socket on the loopback address: free ports for a test cluster, and a peer
/// that accepts connections and never answers.
public final class TCPListener {
    /// The socket's descriptor.
    public let descriptor: Int32
    /// The port it listens on (chosen by the kernel when 0 was asked).
    public let port: Int

    /// Listens on 127.0.0.1:`port` (0: any free port).
    public init(port: Int = 0) throws(CortexError) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .io(operation: "open a socket for", path: "127.0.0.1:\(port)", errno: Errno.current) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let failure = Errno.current
            _ = Glibc.close(fd)
            throw .io(operation: "listen on", path: "127.0.0.1:\(port)", errno: failure)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        descriptor = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { POSIX.close(descriptor) }
}

/// Helpers shared by the byte streams over a socket.
public enum Socket {
    /// Waits until `fd` is ready for `events` (`POLLIN`, `POLLOUT`) or `deadline` passes.
    /// - Throws: `CortexError.tryLater` at the deadline, `.io` when the poll itself fails.
    public static func wait(_ fd: Int32, for events: Int16, deadline: UInt64, peer: String, doing operation: String) throws(CortexError) {
        var request = pollfd(fd: fd, events: events, revents: 0)
        let ready: Int32
        do {
            ready = try retryingInterrupts { () -> Int32 in
                let now = POSIX.monotonicNanoseconds()
                let left = deadline > now ? Int32(clamping: (deadline - now + 999_999) / 1_000_000) : 0
                return poll(&request, 1, left)
            }
        } catch {
            throw .io(operation: operation, path: peer, errno: error)
        }
        if ready == 0 { throw .tryLater("timed out waiting to \(operation) \(peer)") }
    }

    /// The monotonic deadline `milliseconds` from now.
    public static func deadline(afterMilliseconds milliseconds: Int64) -> UInt64 {
        POSIX.monotonicNanoseconds() + UInt64(max(0, milliseconds)) * 1_000_000
    }
}
