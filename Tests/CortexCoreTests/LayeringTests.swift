import CortexProcesses
import Glibc
import Testing

@testable import CortexCore
@testable import CortexStorage

/// The CI check that the CLI only parses, calls the library and prints (`.ci/lint-layers`,
/// docs/architecture.md): commands do not call each other, the CLI signals, spawns and waits on
/// no process itself, and it reads no journal position's numbers.
@Suite struct LayeringTests {
    /// Runs `.ci/lint-layers` with `arguments`, its output in a file of `folder`.
    func lint(_ arguments: [String], in folder: TemporaryDirectory) throws -> (TerminationStatus?, String) {
        try runCIScript("lint-layers", arguments, in: folder)
    }

    /// The CLI as it is passes.
    @Test func theCLIPassesTheLayeringCheck() throws {
        let folder = try TemporaryDirectory()
        let clean = try lint([], in: folder)
        #expect(clean.0 == .exited(0), "the CLI keeps its layers: \(clean.1)")
    }

    /// A command reaching into another command file's type, a CLI file signalling, spawning or
    /// waiting on a process, and one reading a position's numbers fail the check naming file and
    /// line; putting another family's table in a tree of commands, its own extensions, comments
    /// and strings do not.
    @Test func theCheckFailsOnACommandCallingAnotherOnProcessControlAndOnPositions() throws {
        let folder = try TemporaryDirectory()
        let sources = folder.path + "/Sources"
        #expect(mkdir(sources, 0o755) == 0)
        let alpha = """
            enum AlphaTool {
                static func commands(prefix: String) -> [String] { [prefix] }
                static func updateSomething() {}
            }
            """
        let beta = """
            enum BetaTool {
                static let all = AlphaTool.commands(prefix: "cortex alpha")
                static func run() {
                    AlphaTool.updateSomething()
                    // AlphaTool.updateSomething() in a comment is fine
                    _ = "AlphaTool.updateSomething() and kill(1, 9) in a string are fine"
                    _ = kill(pid, SIGTERM)
                    _ = supervisor.signalGroup(.terminate, ownedBy: owner)
                    _ = try Spawner.spawn(request)
                    _ = process.waitForEnd(milliseconds: 10)
                    _ = FileJournal.location(of: store.position)
                    _ = damaged.position.segment
                }
                static func wait() {}
            }
            """
        let gamma = """
            extension AlphaTool {
                static func more() { AlphaTool.updateSomething() }
            }
            """
        for (name, text) in [("AlphaCommands.swift", alpha), ("BetaCommands.swift", beta), ("AlphaExtras.swift", gamma)] {
            try AtomicFile.replace(sources + "/" + name, with: Array(text.utf8), durability: .processCrash)
        }
        let dirty = try lint([sources], in: folder)
        #expect(dirty.0 == .exited(1), "\(dirty.1)")
        let file = sources + "/BetaCommands.swift"
        for line in [4, 7, 8, 9, 10, 11, 12] { #expect(dirty.1.contains("\(file):\(line): "), "line \(line) named: \(dirty.1)") }
        for line in [2, 5, 6, 14] { #expect(!dirty.1.contains("\(file):\(line): "), "line \(line) spared: \(dirty.1)") }
        #expect(!dirty.1.contains("AlphaExtras.swift"), "a file extending AlphaTool may name it: \(dirty.1)")
    }
}

/// Runs `.ci/NAME` with `arguments` under bash, its stdout and stderr in a file of `folder`:
/// how the lint tests run the CI's checks.
func runCIScript(_ name: String, _ arguments: [String], in folder: TemporaryDirectory) throws -> (TerminationStatus?, String) {
    let repository = String(#filePath.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/"))
    let output = folder.path + "/\(name).out"
    let fd = try POSIX.open(output, O_WRONLY | O_CREAT | O_TRUNC)
    let pid = try FileDescriptor(rawValue: fd).closeAfter { () throws(CortexError) in
        try Spawner.spawn(
            SpawnRequest(
                arguments: ["/bin/bash", repository + "/.ci/" + name] + arguments, environment: ["PATH": "/usr/bin:/bin"],
                standardOutput: FileDescriptor(rawValue: fd), standardError: FileDescriptor(rawValue: fd)))
    }
    let status = try Spawner.waitForExit(pid)
    return (status, String(decoding: try POSIX.readFile(output), as: UTF8.self))
}
