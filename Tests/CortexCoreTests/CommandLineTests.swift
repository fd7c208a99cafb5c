import Testing

@testable import CortexCLI
@testable import CortexCore
@testable import CortexStorage

@Suite struct CommandLineTests {
    static let thing = Positional("THING", "The thing.") { $0 }
    static let tokens = Option.tokens("tokens", "N", "Tokens.").required
    static let type = Option.text("type", "TYPE", "Types.").repeatable
    static let follow = Flag("follow", "Follow.", short: "f")
    let spec = CommandSpec(name: "tool do", abstract: "Do it.", positionals: [thing], options: [tokens, type, follow])

    @Test func acceptsSpaceAndEqualsFormsFlagsAndTheSeparator() throws {
        let parsed = try spec.parse(["--tokens", "5", "--type=a", "--type", "b", "-f", "--", "--not-an-option"])
        #expect(parsed[Self.tokens] == 5)
        #expect(parsed[Self.type] == ["a", "b"])
        #expect(parsed[Self.follow])
        #expect(parsed[Self.thing] == "--not-an-option")
    }

    @Test(arguments: [
        (["x", "--tokens"], "option '--tokens' needs a value <N>"),
        (["x", "--tokns", "5"], "unknown option '--tokns'"),
        (["x"], "missing option '--tokens <N>'"),
        (["--tokens", "5"], "missing argument <THING>"),
        (["x", "y", "--tokens", "5"], "unexpected argument 'y'"),
        (["x", "--tokens", "5", "--follow=yes"], "option '--follow' takes no value"),
        (["x", "--tokens", "5", "--tokens", "6"], "option '--tokens' given more than once"),
        (["x", "--tokens", "5", "-z"], "unknown option '-z'"),
    ])
    func usageErrorsSayWhatIsWrong(_ arguments: [String], _ message: String) {
        #expect(throws: CortexError.usage(message)) { try spec.parse(arguments) }
    }

    @Test func helpIsGeneratedFromTheDeclarations() throws {
        let help = spec.help
        #expect(help.contains("USAGE: tool do <THING> --tokens <N> [--type <TYPE>] [--follow]"))
        #expect(help.contains("--tokens <N>"))
        #expect(help.contains("-f, --follow"))
        #expect(help.contains("(repeatable)"))
        #expect(try spec.parse(["--help"])[CommonOptions.help])
    }

    @Test func everyErrorMapsToTheSpecExitCode() {
        #expect(ExitCode.of(.refused("")) == 1)
        #expect(ExitCode.of(.usage("")) == 64)
        #expect(ExitCode.of(.badInput("")) == 65)
        #expect(ExitCode.of(.notFound("")) == 66)
        #expect(ExitCode.of(.io(operation: "read", path: "p", errno: Errno(5))) == 74)
        #expect(ExitCode.of(.io(operation: "read", path: "p", errno: Errno(13))) == 77)
        #expect(ExitCode.of(.corrupt("")) == 74)
        #expect(ExitCode.of(.tryLater("")) == 75)
        #expect(ExitCode.of(.configuration("")) == 78)
    }

    @Test(arguments: ["a", "A9", "task-000042", "task-3.1048576", "w.1_x-y", String(repeating: "a", count: 64)])
    func validIdentifiersPass(_ id: String) throws {
        #expect(try Values.validateIdentifier(id, what: "id") == id)
    }

    @Test(arguments: ["", "-a", ".a", "a/b", "a b", "é", String(repeating: "a", count: 65), "a\n"])
    func invalidIdentifiersAreBadInput(_ id: String) {
        #expect(throws: CortexError.self) { try Values.validateIdentifier(id, what: "id") }
    }

    @Test func durationsAndSizesParse() throws {
        #expect(try Values.parseDurationMilliseconds("90") == 90_000)
        #expect(try Values.parseDurationMilliseconds("90s") == 90_000)
        #expect(try Values.parseDurationMilliseconds("5m") == 300_000)
        #expect(try Values.parseDurationMilliseconds("2h") == 7_200_000)
        #expect(try Values.parseDurationMilliseconds("1d") == 86_400_000)
        #expect(try Values.parseDurationMilliseconds("500ms") == 500)  // docs/cli.md's own example
        #expect(try Values.parseSizeBytes("512K") == 524_288)
        #expect(try Values.parseSizeBytes("64m") == 67_108_864)
        #expect(try Values.parseSizeBytes("2G") == 2_147_483_648)
        #expect(try Values.parseSizeBytes("100") == 100)
        for bad in ["", "m", "-5", "5x", "1.5h", "99999999999999999d", " 5", "ms", "0.5s", "-1ms", "999999999999999ms"] {
            #expect(throws: CortexError.self) { try Values.parseDurationMilliseconds(bad) }
        }
    }

    @Test func countsStayBelowWhatJqHoldsExactly() throws {
        #expect(try Values.parseCount("9007199254740991", what: "n") == 9_007_199_254_740_991)
        #expect(throws: CortexError.self) { try Values.parseCount("9007199254740992", what: "n") }
        #expect(throws: CortexError.self) { try Values.parseCount("-1", what: "n") }
        #expect(throws: CortexError.self) { try Values.parseCount("1e3", what: "n") }
    }

    @Test func configRefusesWrongTypesWithTheKeyName() throws {
        let good = try CortexConfig(json: try JSONValue.parse(#"{"segment_max_bytes":"64K","max_workers":3,"extra":1}"#), path: "c")
        #expect(good.segmentMaxBytes == 65_536)
        #expect(good.maxWorkers == 3)
        #expect(throws: CortexError.configuration("c: 'max_workers' must be a whole number from 1 to 9007199254740991")) {
            try CortexConfig(json: try JSONValue.parse(#"{"max_workers":0}"#), path: "c")
        }
        #expect(throws: CortexError.configuration("c: 'sync_appends' must be true or false")) {
            try CortexConfig(json: try JSONValue.parse(#"{"sync_appends":"yes"}"#), path: "c")
        }
        let compaction = try CortexConfig(json: try JSONValue.parse(#"{"rotate_bytes":"2M","archive_retention":"12h"}"#), path: "c")
        #expect(compaction.reaperRotateBytes == 2 << 20)
        #expect(compaction.archiveRetentionMilliseconds == 12 * 3_600_000)
        #expect(throws: CortexError.configuration("c: 'rotate_bytes' must be a whole number from 1024 to 9007199254740991")) {
            try CortexConfig(json: try JSONValue.parse(#"{"rotate_bytes":10}"#), path: "c")
        }
        #expect(throws: CortexError.configuration("c: 'archive_retention' must be a duration such as 3600, 12h or 7d")) {
            try CortexConfig(json: try JSONValue.parse(#"{"archive_retention":"soon"}"#), path: "c")
        }
    }

    @Test func filesystemsThatDoNotSerialiseAppendsAreRefused() {
        #expect(throws: CortexError.self) { try SupportedFileSystem.check("/proc/self") }
        #expect(throws: Never.self) { try SupportedFileSystem.check("/tmp/does/not/exist/yet") }
    }
}
