import Foundation
import Glibc

/// A TCP proxy for tests between the tools and one etcd member (issue 16: "a client connection
/// is cut mid-append"). It listens on a free loopback port and relays each connection to
/// 127.0.0.1:`upstreamPort`. Of the HTTP requests whose path starts with `cutPath`, every
/// `cutEvery`-th one loses its reply: the proxy forwards the request whole, waits until the
/// member's reply starts to arrive (so the member has done the request: an append is committed),
/// then closes both sides without passing a byte of it on. The client sees a connection closed
/// mid-call and never learns the outcome. A member that cannot be reached closes the client's
/// connection too (as a dead member would).
///
/// HTTP/1.1 clients send a request only after the previous reply on the connection, so the first
/// bytes from the member after a request are the start of its reply; a request's head is
/// recognised by the method at the start of a read (`POST /path`).
///
/// Requests whose path starts with `holdPath` are held instead: the proxy keeps their bytes
/// (and every later byte of that connection) until `releaseHeld()`, so a test can change the
/// cluster between a tool sending such a request and the member seeing it (a watch whose start
/// revision is compacted meanwhile).
final class CuttingProxy: @unchecked Sendable {
    /// The port the proxy listens on (127.0.0.1).
    let port: Int
    /// The proxy's URL, for an endpoint list.
    var url: String { "http://127.0.0.1:\(port)" }

    private let listener: Int32
    private let upstreamPort: Int
    private let cutPath: String
    private let cutEvery: Int
    private let lock = NSLock()
    private var matchingReplies = 0
    private var cutReplies = 0
    private var relayedConnections = 0
    private var stopped = false
    private var openDescriptors: Set<Int32> = []
    private let holdPath: String?
    private let holdCondition = NSCondition()
    private var heldRequests = 0
    private var holding = true

    /// Replies cut so far.
    var cuts: Int { lock.withLock { cutReplies } }
    /// Replies to `cutPath` requests that reached the proxy so far (cut or passed on).
    var matching: Int { lock.withLock { matchingReplies } }
    /// Connections relayed so far.
    var connections: Int { lock.withLock { relayedConnections } }

    /// Requests on `holdPath` held so far.
    var held: Int { holdCondition.withLock { heldRequests } }

    /// Passes on every request held so far, and every later one at once.
    func releaseHeld() {
        holdCondition.withLock {
            holding = false
            holdCondition.broadcast()
        }
    }

    /// Starts listening and relaying at once.
    init(upstreamPort: Int, cutPath: String = "/v3/kv/txn", cutEvery: Int = 2, holdPath: String? = nil) throws {
        precondition(cutEvery >= 1)
        self.upstreamPort = upstreamPort
        self.holdPath = holdPath
        self.cutPath = cutPath
        self.cutEvery = cutEvery
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SupportError("proxy: socket failed: errno \(errno)") }
        var address = CuttingProxy.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            close(fd)
            throw SupportError("proxy: bind/listen failed: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    deinit { stop() }

    /// Stops accepting and closes every relayed connection.
    func stop() {
        releaseHeld()
        let descriptors: Set<Int32> = lock.withLock {
            guard !stopped else { return [] }
            stopped = true
            return openDescriptors
        }
        shutdown(listener, Int32(SHUT_RDWR))
        for fd in descriptors { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        return address
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                break
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)  // the tools the tests start inherit none
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = CuttingProxy.loopback(port: upstreamPort)
            let connected =
                upstream >= 0
                && withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                } == 0
            let admitted = lock.withLock {
                guard connected, !stopped else { return false }
                relayedConnections += 1
                openDescriptors.formUnion([client, upstream])
                return true
            }
            guard admitted else {
                close(client)
                if upstream >= 0 { close(upstream) }
                continue
            }
            let relay = Relay(client: client, upstream: upstream)
            Thread.detachNewThread { [self] in pumpRequests(relay) }
            Thread.detachNewThread { [self] in pumpReplies(relay) }
        }
        close(listener)
    }

    /// One relayed connection: its two sockets and what the reply direction must know.
    private final class Relay: @unchecked Sendable {
        let client: Int32
        let upstream: Int32
        /// The path of the request whose reply has not started yet (nil: none pending).
        var pendingPath: String?
        /// Pumps still running; the last one closes both sockets.
        var pumps = 2
        init(client: Int32, upstream: Int32) {
            self.client = client
            self.upstream = upstream
        }
    }

    /// Client → member: notes each request's path before forwarding it.
    private func pumpRequests(_ relay: Relay) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(relay.client, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            if let path = CuttingProxy.requestPath(buffer[..<count]) {
                lock.withLock { relay.pendingPath = path }
                if let holdPath, path.hasPrefix(holdPath) {
                    holdCondition.withLock {
                        heldRequests += 1
                        while holding { holdCondition.wait() }
                    }
                }
            }
            guard CuttingProxy.sendAll(relay.upstream, buffer[..<count]) else { break }
        }
        finish(relay)
    }

    /// Member → client: at the start of each reply, cuts the connection when the request is the
    /// `cutEvery`-th one on `cutPath`.
    private func pumpReplies(_ relay: Relay) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(relay.upstream, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            let cut: Bool = lock.withLock {
                guard let path = relay.pendingPath else { return false }
                relay.pendingPath = nil
                guard path.hasPrefix(cutPath) else { return false }
                matchingReplies += 1
                guard matchingReplies % cutEvery == 0 else { return false }
                cutReplies += 1
                return true
            }
            if cut { break }
            guard CuttingProxy.sendAll(relay.client, buffer[..<count]) else { break }
        }
        finish(relay)
    }

    /// Shuts both sockets (waking the other pump); the second pump to finish closes them.
    private func finish(_ relay: Relay) {
        shutdown(relay.client, Int32(SHUT_RDWR))
        shutdown(relay.upstream, Int32(SHUT_RDWR))
        let last: Bool = lock.withLock {
            relay.pumps -= 1
            guard relay.pumps == 0 else { return false }
            openDescriptors.subtract([relay.client, relay.upstream])
            return true
        }
        if last {
            close(relay.client)
            close(relay.upstream)
        }
    }

    /// The path of the request whose head starts `bytes` (`METHOD /path HTTP/1.1`), or nil.
    private static func requestPath(_ bytes: ArraySlice<UInt8>) -> String? {
        let head = String(decoding: bytes.prefix(256), as: UTF8.self)
        for method in ["POST ", "GET ", "PUT "] where head.hasPrefix(method) {
            let rest = head.dropFirst(method.count)
            return String(rest.prefix { $0 != " " })
        }
        return nil
    }

    /// Writes every byte (no SIGPIPE on a closed peer); false when the socket failed.
    private static func sendAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }
}
