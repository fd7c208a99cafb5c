import CortexCore
import CortexStorage
import Foundation
import Glibc
import Testing

/// The tools against a cluster with etcd auth enabled (issue 16, docs/decisions/034): `cortex
/// init --backend etcd … --user U --password-file F` makes a folder whose tools authenticate, and
/// a wrong password or an unknown user is refused with exit 77, not a hang or another code.
@Suite("etcd auth through the tools", .serialized)
struct EtcdAuthToolsTests {
    @Test(.timeLimit(.minutes(5)))
    func initAndToolsAuthenticateAndAWrongPasswordOrUserIsRefused() throws {
        guard let cluster = try EtcdCluster.start() else { return }
        guard ExecutableSearch.find("etcdctl") != nil else {
            print("skipped: etcdctl is not installed (apt-get install etcd-client)")
            return
        }
        for arguments in [["user", "add", "root", "--new-user-password", "s3cret"], ["auth", "enable"]] {
            let (status, output) = try cluster.etcdctl(arguments)
            try #require(status == 0, "etcdctl \(arguments.joined(separator: " ")): \(output)")
        }
        let directory = try TemporaryDirectory()
        func passwordFile(_ name: String, _ password: String) throws -> String {
            let path = directory.scratch + "/" + name
            #expect(FileManager.default.createFile(atPath: path, contents: Data(password.utf8), attributes: [.posixPermissions: 0o600]))
            return path
        }
        func initFolder(_ name: String, user: String, passwordFile: String) throws -> ToolResult {
            try runTool(
                [
                    "cortex", "init", "--dir", directory.path + "/" + name, "--backend", "etcd", "--endpoints",
                    cluster.urls.joined(separator: ","), "--namespace", "authed", "--host-id", name, "--total-tokens", "100",
                    "--user", user, "--password-file", passwordFile,
                ], in: directory)
        }
        let right = try passwordFile("right", "s3cret\n")
        let made = try initFolder("a", user: "root", passwordFile: right)
        #expect(made.exitCode == 0, "\(made)")
        let folder = directory.path + "/a"
        let granted = try runTool(["cortex-budget", "allocate", "--dir", folder, "--tokens", "5"], in: directory)
        #expect(granted.exitCode == 0, "\(granted)")
        let created = try runTool(["cortex-task", "create", "--dir", folder, "--type", "t"], in: directory)
        #expect(created.exitCode == 0, "\(created)")

        let wrong = try passwordFile("wrong", "not-it\n")
        let refused = try initFolder("b", user: "root", passwordFile: wrong)
        #expect(refused.exitCode == 77, "a wrong password: \(refused)")
        let stranger = try initFolder("c", user: "nobody-here", passwordFile: right)
        #expect(stranger.exitCode == 77, "an unknown user: \(stranger)")

        // A folder whose password file changed to a wrong one: its tools are refused the same way.
        try Data("not-it\n".utf8).write(to: URL(fileURLWithPath: right))
        let later = try runTool(["cortex-budget", "allocate", "--dir", folder, "--tokens", "5"], in: directory)
        #expect(later.exitCode == 77, "\(later)")
    }
}
