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

    /// The members' client URLs, in order.
    var urls: [String] { members.map { "http://127.0.0.1:\($0.clientPort)" } }
    /// The members' client endpoints, in order.
    var endpoints: [EtcdEndpoint] { members.map { EtcdEndpoint(host: "127.0.0.1", port: $0.clientPort) } }

    private init(directory: TemporaryDirectory, members: [Member], etcdPath: String) {
        self.directory = directory
        self.members = members
        self.etcdPath = etcdPath
    }

    deinit {
        for index in members.indices { kill(member: index) }
    }

    /// Starts three members and waits until each one knows a leader; nil when etcd is missing.
    static func start(size: Int = 3) throws -> EtcdCluster? {
        guard let etcd = ExecutableSearch.find("etcd") else {
            print("skipped: etcd is not installed (apt-get install etcd-server etcd-client)")
            return nil
        }
        // Ports the kernel hands out now; the listeners close before etcd binds them.
        var ports: [Int] = []
        do {
            let listeners = try (0..<(2 * size)).map { _ in try TCPListener() }
            ports = listeners.map(\.port)
        }
        let members = (0..<size).map { Member(name: "m\($0)", clientPort: ports[2 * $0], peerPort: ports[2 * $0 + 1]) }
        let cluster = EtcdCluster(directory: try TemporaryDirectory(), members: members, etcdPath: etcd)
        for index in members.indices { try cluster.launch(member: index, state: "new") }
        try cluster.waitUntilHealthy()
        return cluster
    }

    /// Starts member `index` (again, after `kill`: its data folder is kept).
    func launch(member index: Int, state: String = "existing") throws {
        let member = members[index]
        let initialCluster = members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: etcdPath)
        process.arguments = [
            "--name", member.name, "--data-dir", directory.path + "/" + member.name,
            "--listen-client-urls", "http://127.0.0.1:\(member.clientPort)",
            "--advertise-client-urls", "http://127.0.0.1:\(member.clientPort)",
            "--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-cluster", initialCluster, "--initial-cluster-state", state,
            "--initial-cluster-token", "cortex-test", "--log-level", "warn",
        ]
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
                let client = try EtcdClient(endpoints: [endpoints[index]], timeoutMilliseconds: 1000, attempts: 1)
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
        try EtcdClient(endpoints: endpoints, timeoutMilliseconds: timeoutMilliseconds)
    }
}
