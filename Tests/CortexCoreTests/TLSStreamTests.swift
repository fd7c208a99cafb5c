import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// The `openssl` command, which makes the certificates and plays the server in these tests.
private let opensslPath: String? = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
    .split(separator: ":").map { "\($0)/openssl" }.first { access($0, X_OK) == 0 }

private let noOpenSSLNote: Comment = {
    if opensslPath == nil {
        print("⚠︎ TLS tests SKIPPED: no openssl command on PATH (install it: apt-get install -y openssl)")
    }
    return "no openssl command: TLS is not checked against a real server"
}()

/// Ten seconds from now: a generous bound for what takes milliseconds.
private func generousDeadline() -> UInt64 { POSIX.monotonicNanoseconds() + 10_000_000_000 }

/// A CA, a server certificate for 127.0.0.1 and localhost and a client certificate signed by it,
/// and a second CA with its own server certificate, made with the openssl command.
private final class Certificates: TestCertificateFolder {
    var path: String { folder.path }

    override init() throws {
        try super.init()
        try makeAuthority("ca", "Cortex Test CA")
        try makeCertificate(
            "server", signedBy: "ca", name: "127.0.0.1",
            extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
        try makeCertificate("client", signedBy: "ca", name: "cortex-client", extensions: "extendedKeyUsage=clientAuth")
        try makeAuthority("other-ca", "Another CA")
        try makeCertificate(
            "other-server", signedBy: "other-ca", name: "127.0.0.1",
            extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    }
}

/// `openssl s_server` on a free port of 127.0.0.1, answering GET requests (`-www`) and
/// requiring a client certificate signed by the test CA (`-Verify 1`). Stopped on deinit.
private final class TestServer {
    let port: UInt16
    private let process = Process()

    init(_ certificates: Certificates, certificate: String = "server", options: [String] = []) throws {
        port = try freePort()
        process.executableURL = URL(fileURLWithPath: try #require(opensslPath))
        process.arguments =
            [
                "s_server", "-accept", "127.0.0.1:\(port)", "-cert", certificates.file("\(certificate).pem"),
                "-key", certificates.file("\(certificate).key"), "-CAfile", certificates.file("ca.pem"), "-Verify", "1", "-www",
            ] + options
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Listening once a TCP connection is accepted (the probe's failed handshake is harmless).
        let deadline = generousDeadline()
        while true {
            let probe = connectTCP(port)
            if probe >= 0 {
                Glibc.close(probe)
                return
            }
            try #require(POSIX.monotonicNanoseconds() < deadline && process.isRunning, "openssl s_server did not start listening")
            usleep(20_000)
        }
    }

    /// Kills the server at once (no goodbye to its clients).
    func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning { kill() }
    }
}

/// A port nobody listens on right now.
private func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    defer { Glibc.close(fd) }
    var address = loopback(port: 0)
    try #require(
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    try #require(
        withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
            == 0)
    return UInt16(bigEndian: address.sin_port)
}

private func loopback(port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    return address
}

/// A blocking TCP connection to 127.0.0.1:`port` (the tests' stand-in for the client's socket
/// code), or -1.
private func connectTCP(_ port: UInt16) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return -1 }
    var address = loopback(port: port)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if connected != 0 {
        Glibc.close(fd)
        return -1
    }
    return fd
}

/// Sends a GET through `stream` and returns the response's head (up to the blank line).
private func getHead(_ stream: TLSStream) throws -> String {
    try stream.send(Array("GET / HTTP/1.0\r\n\r\n".utf8), deadline: generousDeadline())
    var response: [UInt8] = []
    while !String(decoding: response, as: UTF8.self).contains("\r\n\r\n") {
        let got = try stream.receive(maximum: 4096, deadline: generousDeadline())
        if got.isEmpty { break }
        response += got
    }
    return String(decoding: response, as: UTF8.self)
}

/// The error `body` throws, or nil when it throws none.
private func cortexError(_ body: () throws -> Void) -> CortexError? {
    do {
        try body()
        return nil
    } catch let error as CortexError {
        return error
    } catch {
        Issue.record("not a CortexError: \(error)")
        return nil
    }
}

/// TLS with client certificates through the system's OpenSSL (docs/decisions/032-system-openssl.md),
/// against `openssl s_server` as a real process.
@Suite("TLS stream", .serialized, .timeLimit(.minutes(5)))
struct TLSStreamTests {
    @Test(.enabled(if: opensslPath != nil, noOpenSSLNote), arguments: ["127.0.0.1", "localhost"])
    func handshakeWithAClientCertificateCarriesAGet(serverName: String) throws {
        let certificates = try Certificates()
        let server = try TestServer(certificates)
        let context = try TLSClientContext(
            caFile: certificates.file("ca.pem"), certificateFile: certificates.file("client.pem"), keyFile: certificates.file("client.key"))
        let stream = try TLSStream(
            connectedSocket: connectTCP(server.port), serverName: serverName, context: context, deadline: generousDeadline())
        let head = try getHead(stream)
        #expect(head.hasPrefix("HTTP/1.0 200"), "response: \(head)")
        stream.close()
        stream.close()
        #expect(throws: CortexError.tryLater("TLS send to \(serverName): the session is closed")) {
            try stream.send([0x41], deadline: generousDeadline())
        }
    }

    /// Under TLS 1.2 the server refuses during the handshake; under TLS 1.3 at the first read.
    @Test(.enabled(if: opensslPath != nil, noOpenSSLNote), arguments: [[], ["-tls1_2"]])
    func aClientWithoutACertificateIsRefused(serverOptions: [String]) throws {
        let certificates = try Certificates()
        let server = try TestServer(certificates, options: serverOptions)
        let context = try TLSClientContext(caFile: certificates.file("ca.pem"))
        let started = POSIX.monotonicNanoseconds()
        let error = cortexError {
            let stream = try TLSStream(
                connectedSocket: connectTCP(server.port), serverName: "127.0.0.1", context: context, deadline: generousDeadline())
            defer { stream.close() }
            _ = try getHead(stream)
        }
        let failure = try #require(error, "a client without a certificate got an answer")
        #expect(failure.description.contains("certificate"), "\(failure)")
        #expect(!failure.description.contains("timed out"), "\(failure)")
        #expect(POSIX.monotonicNanoseconds() - started < 10_000_000_000)
    }

    @Test(.enabled(if: opensslPath != nil, noOpenSSLNote))
    func aServerCertificateFromAnotherAuthorityIsRefused() throws {
        let certificates = try Certificates()
        let server = try TestServer(certificates, certificate: "other-server")
        let context = try TLSClientContext(
            caFile: certificates.file("ca.pem"), certificateFile: certificates.file("client.pem"), keyFile: certificates.file("client.key"))
        let error = cortexError {
            _ = try TLSStream(
                connectedSocket: connectTCP(server.port), serverName: "127.0.0.1", context: context, deadline: generousDeadline())
        }
        let failure = try #require(error, "the handshake accepted a certificate from an unknown authority")
        guard case .configuration(let message) = failure else { throw failure }
        #expect(message.contains("TLS handshake with 127.0.0.1 failed: certificate verify failed"), "\(message)")
    }

    @Test(.enabled(if: opensslPath != nil, noOpenSSLNote))
    func aServerCertificateForAnotherNameIsRefused() throws {
        let certificates = try Certificates()
        let server = try TestServer(certificates)
        let context = try TLSClientContext(
            caFile: certificates.file("ca.pem"), certificateFile: certificates.file("client.pem"), keyFile: certificates.file("client.key"))
        let error = cortexError {
            _ = try TLSStream(
                connectedSocket: connectTCP(server.port), serverName: "etcd.example", context: context, deadline: generousDeadline())
        }
        let failure = try #require(error, "the handshake accepted a certificate made out to another name")
        #expect(failure.description.contains("certificate verify failed"), "\(failure)")
        #expect(failure.description.contains("hostname mismatch"), "\(failure)")
    }

    @Test(.enabled(if: opensslPath != nil, noOpenSSLNote))
    func aServerThatNeverSpeaksTLSTimesOut() throws {
        let certificates = try Certificates()
        // Listening, so the kernel completes TCP connections, but never accepting or answering.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { Glibc.close(listener) }
        var address = loopback(port: 0)
        try #require(
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            } == 0)
        try #require(listen(listener, 4) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try #require(
            withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
            } == 0)
        let context = try TLSClientContext(caFile: certificates.file("ca.pem"))
        let started = POSIX.monotonicNanoseconds()
        let error = cortexError {
            _ = try TLSStream(
                connectedSocket: connectTCP(UInt16(bigEndian: address.sin_port)), serverName: "127.0.0.1", context: context,
                deadline: started + 500_000_000)
        }
        guard case .tryLater(let message) = try #require(error, "a handshake with a silent server succeeded") else {
            Issue.record("not a try-later error: \(String(describing: error))")
            return
        }
        #expect(message == "TLS handshake with 127.0.0.1 timed out")
        #expect(POSIX.monotonicNanoseconds() - started < 10_000_000_000)
    }

    @Test(.enabled(if: opensslPath != nil, noOpenSSLNote))
    func sendingToAServerThatDiedFailsWithoutKillingTheProcess() throws {
        let certificates = try Certificates()
        let server = try TestServer(certificates)
        let context = try TLSClientContext(
            caFile: certificates.file("ca.pem"), certificateFile: certificates.file("client.pem"), keyFile: certificates.file("client.key"))
        let stream = try TLSStream(
            connectedSocket: connectTCP(server.port), serverName: "127.0.0.1", context: context, deadline: generousDeadline())
        defer { stream.close() }
        server.kill()
        // The first writes may still land in the socket buffer; a later one meets the reset
        // connection (EPIPE, and a SIGPIPE that must not end this process).
        let error = cortexError {
            for _ in 0..<100 { try stream.send([UInt8](repeating: 0x41, count: 64 * 1024), deadline: generousDeadline()) }
        }
        #expect(error != nil, "100 sends to a dead server all succeeded")
    }

    @Test func unusableFilesAreConfigurationErrors() throws {
        let folder = try TemporaryDirectory()
        let missing = folder.path + "/missing.pem"
        #expect(throws: CortexError.configuration("TLS CA file \(missing) does not exist")) { try TLSClientContext(caFile: missing) }
        #expect(throws: CortexError.configuration("a TLS client certificate needs its private key, and a key its certificate")) {
            try TLSClientContext(caFile: missing, certificateFile: missing)
        }
        // A FIFO would block OpenSSL's own open: refused before it is opened, without hanging.
        let fifo = folder.path + "/fifo.pem"
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(throws: CortexError.configuration("TLS CA file \(fifo) is not a regular file")) { try TLSClientContext(caFile: fifo) }
        let garbage = folder.path + "/garbage.pem"
        try "not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let error = cortexError { _ = try TLSClientContext(caFile: garbage) }
        guard case .configuration(let message) = try #require(error) else { throw try #require(error) }
        #expect(message.hasPrefix("cannot load the TLS CA file \(garbage): "), "\(message)")
    }
}
