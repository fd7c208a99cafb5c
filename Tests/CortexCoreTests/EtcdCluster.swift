import Foundation
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// A local 3-member etcd cluster for tests (issue 16): `etcd` from PATH (Debian's `etcd-server`),
/// free loopback ports, data folders in a temporary folder. `start()` returns nil, after printing
/// why, when etcd is not installed. Every member is killed with SIGKILL when the value goes away.
final class EtcdCluster {
    /// One member's process and addresses.
    struct Member {
        var name: String
        var clientPort: Int
        var peerPort: Int
        var process: Process?
    }

    let directory: TemporaryDirectory
    private(set) var members: [Member]
    let etcdPath: String
    /// The certificates of a cluster started with TLS (nil: plain HTTP).
    let certificates: EtcdTestCertificates?

    /// The members' client URLs, in order.
    var urls: [String] { endpoints.map(\.url) }
    /// The members' client endpoints, in order.
    var endpoints: [EtcdEndpoint] {
        members.map { EtcdEndpoint(host: "127.0.0.1", port: $0.clientPort, secure: certificates != nil) }
    }
    /// The files of a client the cluster accepts (its CA, a client certificate it signed).
    var clientTLS: EtcdTLSFiles? {
        certificates.map { EtcdTLSFiles(caFile: $0.file("ca.pem"), certificateFile: $0.file("client.pem"), keyFile: $0.file("client.key")) }
    }

    private init(directory: TemporaryDirectory, members: [Member], etcdPath: String, certificates: EtcdTestCertificates?) {
        self.directory = directory
        self.members = members
        self.etcdPath = etcdPath
        self.certificates = certificates
    }

    deinit {
        for index in members.indices { kill(member: index) }
    }

    /// True when `etcd` is on PATH. Suites and tests that start a cluster are enabled by it
    /// (`.enabled(if: EtcdCluster.isInstalled, EtcdCluster.notInstalled)`), so without etcd the
    /// runner reports them skipped, with the reason, rather than passed.
    static let isInstalled = ExecutableSearch.find("etcd") != nil
    /// Why a test that needs etcd was skipped.
    static let notInstalled: Comment = "etcd is not installed (apt-get install etcd-server etcd-client)"
    /// True when a TLS cluster can be started: etcd, and openssl to make its certificates.
    static let canStartTLS = isInstalled && ExecutableSearch.find("openssl") != nil
    /// Why a test that needs a TLS cluster was skipped.
    static let cannotStartTLS: Comment = "etcd and openssl are needed for a TLS cluster (apt-get install etcd-server openssl)"
    /// True when etcd and `etcdctl` are both installed.
    static let hasEtcdctl = isInstalled && ExecutableSearch.find("etcdctl") != nil
    /// Why a test that drives the cluster with etcdctl was skipped.
    static let noEtcdctl: Comment = "etcd and etcdctl are needed (apt-get install etcd-server etcd-client)"

    /// Starts three members and waits until each one knows a leader; nil when etcd is missing.
    /// With `tls`, members serve `https` client URLs with a certificate for 127.0.0.1 and
    /// require client certificates (`--client-cert-auth`); nil also when openssl is missing.
    static func start(size: Int = 3, tls: Bool = false) throws -> EtcdCluster? {
        guard let etcd = ExecutableSearch.find("etcd") else {
            print("skipped: etcd is not installed (apt-get install etcd-server etcd-client)")
            return nil
        }
        var certificates: EtcdTestCertificates?
        if tls {
            guard ExecutableSearch.find("openssl") != nil else {
                print("skipped: openssl is not installed (apt-get install openssl), so no certificates for a TLS cluster")
                return nil
            }
            certificates = try EtcdTestCertificates()
        }
        // Ports the kernel hands out now; the listeners close before etcd binds them.
        var ports: [Int] = []
        do {
            let listeners = try (0..<(2 * size)).map { _ in try TCPListener() }
            ports = listeners.map(\.port)
        }
        let members = (0..<size).map { Member(name: "m\($0)", clientPort: ports[2 * $0], peerPort: ports[2 * $0 + 1]) }
        let cluster = EtcdCluster(
            directory: try TemporaryDirectory(), members: members, etcdPath: etcd, certificates: certificates)
        for index in members.indices { try cluster.launch(member: index, state: "new") }
        try cluster.waitUntilHealthy()
        return cluster
    }

    /// Starts member `index` (again, after `kill`: its data folder is kept).
    func launch(member index: Int, state: String = "existing") throws {
        let member = members[index]
        let initialCluster = members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        let clientURL = endpoints[index].url
        let process = Process()
        process.executableURL = URL(fileURLWithPath: etcdPath)
        process.arguments = [
            "--name", member.name, "--data-dir", directory.path + "/" + member.name,
            "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-cluster", initialCluster, "--initial-cluster-state", state,
            "--initial-cluster-token", "cortex-test", "--log-level", "warn",
        ]
        if let certificates {
            process.arguments! += [
                "--cert-file", certificates.file("server.pem"), "--key-file", certificates.file("server.key"),
                "--trusted-ca-file", certificates.file("ca.pem"), "--client-cert-auth",
            ]
        }
        let logPath = directory.path + "/" + member.name + ".log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        members[index].process = process
    }

    /// Kills member `index` with SIGKILL and reaps it.
    func kill(member index: Int) {
        guard let process = members[index].process else { return }
        _ = Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        members[index].process = nil
    }

    /// Waits until every running member answers its status with a leader (started members take
    /// a few seconds to elect one; a cluster that never gets there fails the test after a minute).
    func waitUntilHealthy() throws {
        let running = members.indices.filter { members[$0].process != nil }
        let deadline = Date().addingTimeInterval(60)
        var last = ""
        while Date() < deadline {
            var healthy = 0
            for index in running {
                let client = try EtcdClient(endpoints: [urls[index]], tls: clientTLS, timeoutMilliseconds: 1000, attempts: 1)
                do {
                    if try client.status().leaderID != 0 { healthy += 1 }
                } catch {
                    last = "\(endpoints[index]): \(error)"
                }
            }
            if healthy == running.count { return }
            usleep(100_000)
        }
        let logs = members.map { (try? String(contentsOfFile: directory.path + "/" + $0.name + ".log", encoding: .utf8)) ?? "" }
        Issue.record("etcd cluster not healthy after a minute: \(last)\n\(logs.joined(separator: "\n"))")
        throw CortexError.tryLater("etcd cluster not healthy")
    }

    /// A client for every member, in order.
    func client(timeoutMilliseconds: Int64 = 5000) throws -> EtcdClient {
        try EtcdClient(endpoints: urls, tls: clientTLS, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Runs `etcdctl` against the cluster (plain HTTP) and returns its exit status and output.
    func etcdctl(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let etcdctl = try #require(ExecutableSearch.find("etcdctl"), "etcdctl is not installed")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: etcdctl)
        process.arguments = ["--endpoints", urls.joined(separator: ",")] + arguments
        process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}

/// A temporary folder of certificates made with the `openssl` command: authorities, and
/// certificates they sign (the etcd and the TLS tests make theirs here).
class TestCertificateFolder {
    let folder: TemporaryDirectory

    init() throws { folder = try TemporaryDirectory() }

    /// The path of a file in the folder ("ca.pem", "client.key").
    func file(_ name: String) -> String { folder.path + "/" + name }

    /// A self-signed authority: `NAME.pem` and `NAME.key`.
    func makeAuthority(_ name: String, _ commonName: String) throws {
        try openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=\(commonName)", "-keyout", file("\(name).key"), "-out", file("\(name).pem"),
        ])
    }

    /// A certificate `NAME.pem` (key `NAME.key`) signed by `authority`, with these X.509 extensions.
    func makeCertificate(_ name: String, signedBy authority: String, name commonName: String, extensions: String) throws {
        try openssl([
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=\(commonName)",
            "-keyout", file("\(name).key"), "-out", file("\(name).csr"),
        ])
        try extensions.write(toFile: file("\(name).ext"), atomically: true, encoding: .utf8)
        try openssl([
            "x509", "-req", "-in", file("\(name).csr"), "-CA", file("\(authority).pem"), "-CAkey", file("\(authority).key"),
            "-CAcreateserial", "-days", "2", "-extfile", file("\(name).ext"), "-out", file("\(name).pem"),
        ])
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(ExecutableSearch.find("openssl")))
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "openssl \(arguments.joined(separator: " ")) failed")
    }
}

/// A CA, a member certificate for 127.0.0.1 (server and client use: etcd's gateway dials its own
/// member with it) and a client certificate it signed, and a second CA with its own client
/// certificate, made with the openssl command in a temporary folder.
final class EtcdTestCertificates: TestCertificateFolder {
    override init() throws {
        try super.init()
        try makeAuthority("ca", "Cortex etcd test CA")
        try makeCertificate(
            "server", signedBy: "ca", name: "127.0.0.1",
            extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth")
        try makeCertificate("client", signedBy: "ca", name: "cortex-client", extensions: "extendedKeyUsage=clientAuth")
        try makeAuthority("other-ca", "Another CA")
        try makeCertificate("other-client", signedBy: "other-ca", name: "cortex-client", extensions: "extendedKeyUsage=clientAuth")
    }
}
