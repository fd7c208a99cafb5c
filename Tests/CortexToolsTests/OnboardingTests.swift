import CortexCore
import CortexStorage
import Foundation
import Testing

/// The package root (three levels above this file).
let packageRoot: String = {
    var root = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { root.deleteLastPathComponent() }
    return root.path
}()

/// The tools, as the completion script names them.
let toolNames = ["cortex", "cortex-budget", "cortex-task", "cortex-spawn", "cortex-reap"]

/// The words of a help section (`COMMANDS:` or `OPTIONS:`): the first word of each line, or
/// for options the long flag the line declares.
func helpSection(_ help: String, _ title: String) -> [String] {
    var inside = false
    var words: [String] = []
    for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
        if line == title {
            inside = true
            continue
        }
        guard inside else { continue }
        if line.isEmpty { break }
        if title == "OPTIONS:" {
            if let range = line.range(of: #"--[a-z][a-z0-9-]*"#, options: .regularExpression) { words.append(String(line[range])) }
        } else if let word = line.split(separator: " ").first {
            words.append(String(word))
        }
    }
    return words
}

/// Onboarding: `--help` everywhere has examples, the bash completion offers every real flag,
/// and `cortex init` asks only a person at a terminal.
@Suite("Onboarding: help, completion, init", .serialized, .timeLimit(.minutes(5)))
struct OnboardingTests {
    /// Every command path of every tool, from the tools' own `--help`: ["cortex", "task", "claim"].
    func commandPaths(in directory: TemporaryDirectory) throws -> [[String]] {
        var paths: [[String]] = []
        var frontier = toolNames.map { [$0] }
        while let path = frontier.popLast() {
            paths.append(path)
            let help = try runTool(path + ["--help"], in: directory)
            try #require(help.exitCode == 0, "\(help)")
            frontier += helpSection(help.stdout, "COMMANDS:").map { path + [$0] }
        }
        return paths
    }

    @Test func everyCommandsHelpHasExamples() throws {
        let directory = try TemporaryDirectory()
        let paths = try commandPaths(in: directory)
        #expect(paths.count > 30, "\(paths)")
        for path in paths {
            let help = try runTool(path + ["--help"], in: directory)
            let examples = help.stdout.components(separatedBy: "EXAMPLES:\n").dropFirst().first ?? ""
            #expect(examples.hasPrefix("  ") && examples.count > 10, "'\(path.joined(separator: " ")) --help' has no examples")
        }
    }

    @Test(.enabled(if: executableOnPath("bash") != nil))
    func bashCompletionOffersEveryCommandAndEveryFlagOfEveryHelp() throws {
        let directory = try TemporaryDirectory()
        let script = packageRoot + "/bin/cortex-completion.bash"
        // One bash: for each "WORDS…" line on stdin, complete the last word and print the offers.
        let driver = #"""
            source "$1"
            PATH="$2:$PATH"
            while IFS= read -r line; do
              read -r -a COMP_WORDS <<<"$line"
              [[ $line == *' ' ]] && COMP_WORDS+=("")
              COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
              _cortex_complete
              echo "${COMPREPLY[*]}"
            done
            """#
        var queries: [String] = []
        var expected: [(query: String, words: [String])] = []
        for path in try commandPaths(in: directory) {
            let help = try runTool(path + ["--help"], in: directory).stdout
            let flags = helpSection(help, "OPTIONS:")
            let commands = helpSection(help, "COMMANDS:")
            // A tool with subcommands lists those; a command (or a one-command tool) its options.
            #expect(commands.isEmpty != flags.isEmpty, "\(path)")
            if !flags.isEmpty {
                #expect(flags.contains("--dir") && flags.contains("--help"), "\(path)")
                queries.append(path.joined(separator: " ") + " --")
                expected.append((queries.last!, flags))
            }
            if !commands.isEmpty {
                queries.append(path.joined(separator: " ") + " ")
                expected.append((queries.last!, commands))
            }
        }
        // Values of options that take one: skipped by the walk, completed where a set is known.
        queries += ["cortex-task create --priority ", "cortex --dir /tmp task list --status d", "cortex-spawn --restart "]
        expected += [
            ("cortex-task create --priority ", ["critical", "high", "medium", "low"]),
            ("cortex --dir /tmp task list --status d", ["done", "dead"]),
            ("cortex-spawn --restart ", ["never", "on-failure", "always"]),
        ]
        let input = directory.scratch + "/queries"
        try (queries.joined(separator: "\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
        let result = try runTool([bashPath, "-c", driver + " <\"$3\"", "driver", script, toolsDirectory, input], in: directory)
        try #require(result.exitCode == 0, "\(result)")
        let answers = result.stdoutLines
        try #require(answers.count == queries.count, "\(result)")
        for (index, (query, words)) in expected.enumerated() {
            let offered = Set(answers[index].split(separator: " ").map(String.init))
            let missing = words.filter { !offered.contains($0) }
            #expect(missing.isEmpty, "completing '\(query)' does not offer \(missing) (offered: \(answers[index]))")
        }
        #expect(answers.first { $0.contains("dashboard") } != nil, "cortex dashboard is completed")
    }

    @Test(.enabled(if: executableOnPath("script") != nil, "util-linux 'script' is needed to give cortex init a terminal"))
    func initAsksOnATerminalAndNeverWithoutOne() throws {
        let directory = try TemporaryDirectory()
        let cortex = toolPath("cortex")
        // On a terminal (script(1) gives it one), with no settings given: it asks, re-asks a bad answer.
        let asked = try runTool(
            [
                bashPath, "-c", #"printf '5000\nmany\n7\n' | script -qec "$0 init --dir $1" /dev/null"#, cortex,
                directory.coordination,
            ], in: directory)
        #expect(asked.exitCode == 0, "\(asked)")
        #expect(asked.stdout.contains("Total token budget [1000000]:"), "\(asked)")
        #expect(asked.stdout.contains("'many' is not a whole number"), "\(asked)")
        #expect(try budgetView(directory).int("total_budget") == 5000)
        let config = try JSONValue.parse(try String(contentsOfFile: directory.coordination + "/config.json", encoding: .utf8))
        #expect(config.int("max_workers") == 7)

        // Not a terminal (a pipe, as in CI): no question, flags or defaults only.
        let second = try TemporaryDirectory()
        let piped = try runTool(
            [bashPath, "-c", #"printf '5\n3\n' | "$0" init --dir "$1""#, cortex, second.coordination], in: second)
        #expect(piped.exitCode == 0 && !piped.stdout.contains("Total token budget"), "\(piped)")
        #expect(try budgetView(second).int("total_budget") == 1_000_000)
        // A terminal, but a setting given as a flag: no question either.
        let flagged = try runTool(
            [
                bashPath, "-c", #"printf '5\n' | script -qec "$0 init --dir $1 --max-workers 3" /dev/null"#, cortex,
                second.coordination,
            ], in: second)
        #expect(flagged.exitCode == 0 && !flagged.stdout.contains("Total token budget"), "\(flagged)")
    }
}
