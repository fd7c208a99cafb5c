import Testing

@testable import CortexCLI
@testable import CortexCore
@testable import CortexStorage

/// Typed arguments (docs/decisions/028-typed-arguments.md): every value is converted and checked
/// once, at parse time, from the same declaration the help text and the body read.
@Suite("Typed arguments")
struct TypedArgumentsTests {
    static let id = Option.identifier("id", "ID", "An id.")
    static let count = Option.count("count", "N", "A count.", atMost: 10)
    static let tokens = Option.tokens("tokens", "N", "Tokens.")
    static let timeout = Option.duration("timeout", "D", "A duration.")
    static let memory = Option.size("memory", "SIZE", "A size.")
    static let priority: Option<Priority> = .choice("priority", "P", "A priority.")
    static let status: Option<TaskStatus> = .choice("status", "S", "A status.")
    static let note = Option.text("note", "TEXT", "Any text.")
    static let positive = Option.count("positive", "N", "At least 1.")
        .checked({ $0 >= 1 }, else: { "invalid --positive '\($0)': at least 1" })
    static let worker = Option.identifier("worker", "W", "Required.").required
    static let types = Option.identifier("type", "TYPE", "Repeatable.").repeatable
    static let follow = Flag("follow", "A flag.", short: "f")
    static let task = Positional.identifier("TASK", "A task.", what: "task id")
    static let more = Positionals.identifiers("MORE", "More tasks.", what: "task id", optional: true)

    let spec = CommandSpec(
        name: "tool try", abstract: "Try every kind.", positionals: [task, more],
        options: [id, count, tokens, timeout, memory, priority, status, note, positive, worker, types, follow])

    /// The arguments every case needs: the positional and the required option.
    let base = ["task-1", "--worker", "w-1"]

    @Test func everyKindArrivesAsItsType() throws {
        let parsed = try spec.parse(
            base + [
                "task-2", "task-3", "--id", "a.b_c-d", "--count", "7", "--tokens", "5000", "--timeout", "5m", "--memory", "512K",
                "--priority", "high", "--status=pending", "--note", "a b", "--positive", "3", "--type", "build", "--type=test", "-f",
            ])
        #expect(parsed[Self.task] == "task-1")
        #expect(parsed[Self.more] == ["task-2", "task-3"])
        #expect(parsed[Self.worker] == "w-1")
        #expect(parsed[Self.id] == "a.b_c-d")
        #expect(parsed[Self.count] == 7)
        #expect(parsed[Self.tokens] == 5000)
        #expect(parsed[Self.timeout] == 300_000)
        #expect(parsed[Self.memory] == 524_288)
        #expect(parsed[Self.priority] == .high)
        #expect(parsed[Self.status] == .pending)
        #expect(parsed[Self.note] == "a b")
        #expect(parsed[Self.positive] == 3)
        #expect(parsed[Self.types] == ["build", "test"])
        #expect(parsed[Self.follow])
        #expect(parsed.text(of: Self.timeout) == "5m", "the text as typed, for messages that repeat it")
    }

    @Test func absentOptionsAreNilFalseOrEmpty() throws {
        let parsed = try spec.parse(base)
        #expect(parsed[Self.id] == nil)
        #expect(parsed[Self.timeout] == nil)
        #expect(parsed[Self.priority] == nil)
        #expect(parsed.text(of: Self.timeout) == nil)
        #expect(parsed[Self.types] == [])
        #expect(parsed[Self.more] == [])
        #expect(!parsed[Self.follow])
    }

    @Test(arguments: [
        (["--id", "a/b"], "invalid --id 'a/b': use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"),
        (["--count", "11"], "invalid --count '11': expected a whole number from 0 to 10"),
        (["--count", "1.5"], "invalid --count '1.5': expected a whole number from 0 to 10"),
        (["--tokens", "-5"], "invalid --tokens '-5': expected a whole number from 0 to 9007199254740991"),
        (["--timeout", "5x"], "invalid duration '5x': expected 500ms, 90, 90s, 5m, 2h or 1d"),
        (["--memory", "5Q"], "invalid size '5Q': expected 4096, 512K, 64M or 2G"),
        (["--priority", "urgent"], "invalid priority 'urgent': use critical, high, medium or low"),
        (["--status", "sleeping"], "invalid status 'sleeping': use pending, running, done, failed, dead, cancelled"),
        (["--positive", "0"], "invalid --positive '0': at least 1"),
        (["--type", "ok", "--type", "a b"], "invalid --type 'a b': use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"),
        (["task-2", "x/y"], "invalid task id 'x/y': use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"),
    ])
    func aBadValueIsRefusedAtParseTimeWithExitCode65(_ extra: [String], _ message: String) {
        let error = #expect(throws: CortexError.badInput(message)) { try spec.parse(base + extra) }
        #expect(error.map(ExitCode.of) == 65)
    }

    @Test func aBadPositionalIsRefusedAtParseTime() {
        #expect(throws: CortexError.badInput("invalid task id 'a b': use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")) {
            try spec.parse(["a b", "--worker", "w-1"])
        }
    }

    @Test func aMissingRequiredOptionIsRefusedAtParseTimeWithExitCode64() {
        let error = #expect(throws: CortexError.usage("missing option '--worker <W>'")) { try spec.parse(["task-1"]) }
        #expect(error.map(ExitCode.of) == 64)
        #expect(throws: CortexError.usage("missing argument <TASK>")) { try spec.parse(["--worker", "w-1"]) }
    }

    @Test func repeatableOptionsKeepEveryValueOthersOnlyOne() throws {
        #expect(try spec.parse(base + ["--type", "c", "--type", "a", "--type", "c"])[Self.types] == ["c", "a", "c"])
        #expect(throws: CortexError.usage("option '--count' given more than once")) {
            try spec.parse(base + ["--count", "1", "--count", "2"])
        }
    }

    @Test func shortAliasesNameTheirFlags() throws {
        #expect(try spec.parse(base + ["-f"])[Self.follow])
        #expect(try spec.parse(["-h"])[CommonOptions.help])
        #expect(throws: CortexError.usage("unknown option '-x'")) { try spec.parse(base + ["-x"]) }
        #expect(throws: CortexError.usage("unknown option '-fh'")) { try spec.parse(base + ["-fh"]) }
        #expect(spec.help.contains("-f, --follow"))
    }

    @Test func helpIsShownWhateverTheValues() throws {
        let parsed = try spec.parse(["--help", "--count", "many", "--id", "a/b"])
        #expect(parsed[CommonOptions.help])
        #expect(parsed[Self.count] == nil, "nothing converted")
    }

    @Test func positionalsAreCheckedFirstThenOptionsInDeclarationOrder() {
        #expect(throws: CortexError.badInput("invalid task id 'a b': use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")) {
            try spec.parse(["a b", "--worker", "w/1", "--count", "x"])
        }
        // --id is declared before --count, though typed after it.
        #expect(throws: CortexError.badInput("invalid --id 'a/b': use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")) {
            try spec.parse(base + ["--count", "x", "--id", "a/b"])
        }
    }

    @Test func initAnswersAreConvertedLikeTheirFlags() throws {
        var parsed = try CortexTool.tool.commands[0].spec.parse([])
        try parsed.supply("12", for: CortexTool.Init.maxWorkers)
        #expect(parsed[CortexTool.Init.maxWorkers] == 12)
        #expect(parsed.text(of: CortexTool.Init.maxWorkers) == "12")
        #expect(throws: CortexError.badInput("invalid --max-workers '0': at least 1")) {
            try parsed.supply("0", for: CortexTool.Init.maxWorkers)
        }
    }

    @Test func commandKeysCarryTheirCommandsRules() throws {
        let allocate = try command("cortex-budget allocate")
        #expect(throws: CortexError.badInput("invalid --tokens '0': an allocation needs at least 1 token")) {
            try allocate.parse(["--tokens", "0"])
        }
        #expect(try allocate.parse(["--tokens", "5", "--lease", "90"])[BudgetTool.Allocate.lease] == 90_000)
        let heartbeat = try command("cortex-task heartbeat")
        #expect(throws: CortexError.badInput("invalid --claim: a claim token is a whole number ≥ 1")) {
            try heartbeat.parse(["task-1", "--claim", "0"])
        }
        #expect(throws: CortexError.badInput("invalid --claim 'x': expected a whole number from 0 to 9007199254740991")) {
            try heartbeat.parse(["task-1", "--claim", "x"])
        }
        let parsed = try heartbeat.parse(["task-1", "--claim", "2"])
        let claim: Int64 = parsed[TaskTool.Leased.claim]  // required: not optional
        #expect(claim == 2)
        let spawn = try command("cortex-spawn")
        #expect(try spawn.parse(["--cpu", "0.5", "--", "sleep", "1"])[SpawnTool.Spawn.cpu] == 500)
        #expect(try spawn.parse(["--", "sleep", "-f"])[SpawnTool.Spawn.command] == ["sleep", "-f"])
        let scale = try command("cortex pool scale")
        #expect(throws: CortexError.badInput("invalid N '1001': a whole number from 0 to 1000")) {
            try scale.parse(["builders", "1001"])
        }
    }

    @Test func everyCommandDeclaresEachNameOnceAndListsItInItsHelp() {
        for spec in Self.allCommands {
            let options = spec.allOptions.map(\.name)
            #expect(Set(options).count == options.count, "\(spec.name): \(options)")
            let positionals = spec.positionals.map(\.name)
            #expect(Set(positionals).count == positionals.count, "\(spec.name): \(positionals)")
            for option in spec.allOptions { #expect(spec.help.contains("--\(option.name)"), "\(spec.name) --\(option.name)") }
            #expect(throws: Never.self) { try spec.parse(["--help"]) }
        }
    }

    /// Every command of every tool, nested and hidden ones included.
    static var allCommands: [CommandSpec] {
        func commands(of tool: ToolSpec) -> [CommandSpec] {
            (tool.commands + tool.hidden + (tool.defaultCommand.map { [$0] } ?? [])).map(\.spec)
                + tool.nested.flatMap { commands(of: $0.tool) }
        }
        return [CortexTool.tool, BudgetTool.tool, TaskTool.tool, SpawnTool.tool, ReapTool.tool].flatMap(commands)
    }

    private func command(_ name: String) throws -> CommandSpec {
        try #require(Self.allCommands.first { $0.name == name }, "no command \(name)")
    }
}
