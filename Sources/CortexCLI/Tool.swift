import CortexCore
import CortexProcesses
import CortexStorage

/// The Cortex version every tool reports.
public let cortexVersion = "2.0.0"

/// What a command produced: an exit code plus the same result in two forms, text for people and
/// one JSON object for scripts. The shared formatter picks one; commands never print.
public struct Report: Sendable {
    /// docs/cli.md's exit code.
    public var exitCode: Int32
    /// Lines for stdout (no trailing newline needed).
    public var text: String
    /// The object printed with `--json`.
    public var json: JSONValue
    /// One line for stderr (the reason behind a non-zero exit), if any.
    public var diagnostic: String?
    /// For a result too large to hold (a list of 100,000 tasks): both forms written while they
    /// are produced, in place of `text` and `json`.
    public var stream: ReportStream?

    /// A report.
    public init(exitCode: Int32 = 0, text: String, json: JSONValue, diagnostic: String? = nil) {
        self.exitCode = exitCode
        self.text = text
        self.json = json
        self.diagnostic = diagnostic
    }

    /// A report whose output `stream` writes as it goes; the same bytes `text` and `json` would give.
    public init(exitCode: Int32 = 0, stream: ReportStream, diagnostic: String? = nil) {
        self.init(exitCode: exitCode, text: "", json: .null, diagnostic: diagnostic)
        self.stream = stream
    }
}

/// A report's output produced while it is written: `write` is called once by the output
/// formatter, with the form asked for, after the command's body returned (so a command still
/// fails before anything is printed). It must not fail: what it reads was opened by the body.
/// One run is one thread (hence the unchecked `Sendable`: the closure reads the run's store).
public struct ReportStream: @unchecked Sendable {
    /// Writes the text form (`json` false) line by line, or the JSON object (`json` true) in pieces.
    public var write: (_ writer: ReportWriter, _ json: Bool) -> Void

    /// A stream written by `write`.
    public init(_ write: @escaping (_ writer: ReportWriter, _ json: Bool) -> Void) { self.write = write }
}

/// Where a streamed report writes: stdout (or a session's capture) in chunks, so memory stays
/// one chunk however long the output is. Byte for byte what the same report held whole would
/// print: text lines joined by newlines and ended by one (unless the text already ends with a
/// newline, or is empty); the JSON object on one line.
public final class ReportWriter {
    private var buffer: [UInt8] = []
    private var wroteLine = false
    private var total = 0
    /// The last two bytes written (whether the text already ends with a newline character).
    private var lastBytes: (UInt8, UInt8) = (0, 0)
    private let sink: ([UInt8]) -> Void
    private static let chunk = 64 * 1024

    /// A writer handing each full chunk to `sink` (stdout, or a session's capture, by default).
    init(sink: @escaping ([UInt8]) -> Void = { Terminal.writeOut(bytes: $0) }) {
        self.sink = sink
        buffer.reserveCapacity(Self.chunk + 4096)
    }

    /// Writes `line` as the next line of the text form.
    public func line(_ line: String) {
        if wroteLine { append(CollectionOfOne(0x0A)) }
        wroteLine = true
        append(line.utf8)
    }

    /// Writes the next piece of the JSON form.
    public func json(_ bytes: [UInt8]) { append(bytes) }

    /// Writes the next piece of the JSON form.
    public func json(_ text: String) { append(text.utf8) }

    private func append<Bytes: BidirectionalCollection<UInt8>>(_ bytes: Bytes) {
        guard let last = bytes.last else { return }
        let before = buffer.count
        buffer.append(contentsOf: bytes)
        total += buffer.count - before
        lastBytes = (bytes.dropLast().last ?? lastBytes.1, last)
        if buffer.count >= Self.chunk { flush() }
    }

    /// Ends the text form as `Output.print` ends a whole text: one newline unless the text is
    /// empty or its last character already is one (`"\r\n"` is one character, not a newline).
    func finishText() {
        if total > 0 && !(lastBytes.1 == 0x0A && lastBytes.0 != 0x0D) { append(CollectionOfOne(0x0A)) }
        flush()
    }

    /// Ends the JSON form: its line's newline.
    func finishJSON() {
        if total > 0 { append(CollectionOfOne(0x0A)) }
        flush()
    }

    private func flush() {
        guard !buffer.isEmpty else { return }
        sink(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Everything a command's body may use: its parsed arguments and the environment.
public struct Invocation: Sendable {
    /// The parsed command line.
    public var arguments: ParsedArguments
    /// The process environment.
    public var environment: [String: String]
    /// The command's spec (for messages).
    public var spec: CommandSpec
    /// The stores this command opened, whose warnings are printed when it ends.
    public var session = CommandSession()

    /// The coordination folder (`--dir`, `$CORTEX_DIR`, `./coordination`).
    public var root: String { CoordinationLayout.resolveRoot(flag: arguments[CommonOptions.dir], environment: environment) }

    /// Opens the store of an existing coordination folder: a missing folder is `notFound` (66)
    /// and a folder without `config.json` a `configuration` error (78), for every command
    /// alike. Only `cortex init` creates a folder (docs/decisions/021-outcome-is-the-truth.md).
    /// The store's warnings (stale views after a recorded outcome) are printed when the command ends.
    public func openStore() throws(CortexError) -> CoordinationStore {
        try openStore(foldOnOpen: true)
    }

    /// `openStore()`; with `foldOnOpen` false, for a command whose first use of the store is
    /// `submit`, an etcd folder folds in the append's transaction instead of at open
    /// (`CoordinationStore.open(root:createIfMissing:foldOnOpen:)`).
    public func openStore(foldOnOpen: Bool) throws(CortexError) -> CoordinationStore {
        if SessionServer.isServing {
            // A session keeps each folder's store open and folds what was appended since its last request.
            let store = try SessionServer.stores.store(root: root)
            if !session.stores.contains(where: { $0 === store }) { session.stores.append(store) }
            return store
        }
        let store = try CoordinationStore.open(root: root, createIfMissing: false, foldOnOpen: foldOnOpen)
        session.stores.append(store)
        return store
    }
}

/// What one command run opened: the stores whose warnings the shared runner prints on stderr
/// after the command's report (one run is one thread, hence the unchecked `Sendable`).
public final class CommandSession: @unchecked Sendable {
    /// The stores opened so far, in order.
    var stores: [CoordinationStore] = []

    /// An empty session.
    public init() {}

    /// Every store's warnings, in order.
    var warnings: [String] { stores.flatMap(\.warnings) }

    /// After a command's answer is out: each store that folded far past the snapshot leaves one.
    func writeSnapshotsAfterReading() {
        for store in stores { store.writeSnapshotAfterReading() }
    }

    /// Prints what went wrong after the command's records reached the journal (stale views, an
    /// unflushed append): one `warning:` line each on stderr. The exit code stays the outcome's.
    func printWarnings(command: String) {
        for warning in warnings { Terminal.writeError("\(command): warning: \(warning)") }
    }
}

/// A command: its spec and its body.
public struct Command: Sendable {
    /// The declarations.
    public var spec: CommandSpec
    /// The body; runs only after parsing succeeded.
    public var body: @Sendable (Invocation) throws(CortexError) -> Report

    /// A command.
    public init(_ spec: CommandSpec, body: @escaping @Sendable (Invocation) throws(CortexError) -> Report) {
        self.spec = spec
        self.body = body
    }

    /// The last word of the spec's name: `allocate`.
    var word: String { String(spec.name.split(separator: " ").last ?? "") }
}

/// A tool: a name and its subcommands.
public struct ToolSpec: Sendable {
    /// `cortex-budget`.
    public var name: String
    /// One sentence.
    public var abstract: String
    /// Subcommands in help order.
    public var commands: [Command]
    /// Extra help lines (examples) for the tool as a whole.
    public var examples: [String]
    /// Whole tools reachable as one more word: `cortex budget allocate` runs `cortex-budget allocate`.
    public var nested: [(word: String, tool: ToolSpec)]
    /// The command run when the first argument is not a command word (`cortex-spawn -- CMD`).
    public var defaultCommand: Command?
    /// Commands that run but are left out of the help (internal entry points).
    public var hidden: [Command]

    /// A tool.
    public init(
        name: String, abstract: String, commands: [Command], examples: [String] = [],
        nested: [(word: String, tool: ToolSpec)] = [], defaultCommand: Command? = nil, hidden: [Command] = []
    ) {
        self.name = name
        self.abstract = abstract
        self.commands = commands
        self.examples = examples
        self.nested = nested
        self.defaultCommand = defaultCommand
        self.hidden = hidden
    }

    /// The tool-level help.
    var help: String {
        if let defaultCommand, commands.isEmpty, nested.isEmpty { return defaultCommand.spec.help }
        var lines = ["OVERVIEW: \(abstract)", "", "USAGE: \(name) <command> [options]", "", "COMMANDS:"]
        lines += commands.map { CommandSpec.column($0.word, $0.spec.abstract) }
        lines += nested.map { CommandSpec.column($0.word, "\($0.tool.abstract) See '\(name) \($0.word) --help'.") }
        lines += ["", "Every command takes --dir DIR, --json and --help. '\(name) --version' prints the version."]
        if !examples.isEmpty {
            lines += ["", "EXAMPLES:"]
            lines += examples.map { "  " + $0 }
        }
        lines += [
            "", "Exit codes: 0 done, 1 a normal no, 64 usage, 65 bad data, 66 not found, 74 I/O,",
            "75 try later, 77 permission denied, 78 configuration.",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// Runs the tool on `arguments` (without the program name) and returns the exit code.
    /// Output goes to stdout, one-line errors to stderr.
    public func run(_ arguments: [String], environment: [String: String]) -> Int32 {
        guard let first = arguments.first else {
            if let defaultCommand { return Self.execute(defaultCommand, [], environment: environment) }
            Terminal.writeError("\(name): missing command (see '\(name) --help')")
            return 64
        }
        switch first {
        case "--help", "-h", "help":
            Terminal.writeOut(help)
            return 0
        case "--version":
            Terminal.writeOut("\(name) \(cortexVersion)\n")
            return 0
        default: break
        }
        if let inner = nested.first(where: { $0.word == first }) {
            return inner.tool.run(Array(arguments.dropFirst()), environment: environment)
        }
        guard let command = (commands + hidden).first(where: { $0.word == first }) else {
            if let defaultCommand { return Self.execute(defaultCommand, arguments, environment: environment) }
            Terminal.writeError("\(name): unknown command '\(Values.printable(first))' (see '\(name) --help')")
            return 64
        }
        return Self.execute(command, Array(arguments.dropFirst()), environment: environment)
    }

    /// Parses and runs one command, printing its report in the requested form.
    static func execute(_ command: Command, _ arguments: [String], environment: [String: String]) -> Int32 {
        let wantsJSON = arguments.contains("--json")
        do {
            let parsed = try command.spec.parse(arguments)
            if parsed[CommonOptions.help] {
                Terminal.writeOut(command.spec.help)
                return 0
            }
            if SessionServer.isServing { try SessionServer.check(command, parsed) }
            let invocation = Invocation(arguments: parsed, environment: environment, spec: command.spec)
            // Root on another user's folder acts as that user, before anything in it is opened.
            try FolderOwner.actAsOwner(of: invocation.root)
            defer { invocation.session.printWarnings(command: command.spec.name) }
            let report = try command.body(invocation)
            Output.print(report, json: parsed[CommonOptions.json], command: command.spec.name)
            invocation.session.writeSnapshotsAfterReading()
            return report.exitCode
        } catch {
            let code = ExitCode.of(error)
            var message = "\(command.spec.name): \(error.description)"
            if case .usage = error { message += " (see '\(command.spec.name) --help')" }
            Terminal.writeError(message)
            if wantsJSON, code != 64 {
                Terminal.writeOut(
                    JSONValue.object(["error": .string(error.description), "exit_code": .int(Int(code))]).jsonText + "\n")
            }
            return code
        }
    }
}

/// The one mapping from library errors to docs/cli.md's exit codes.
public enum ExitCode {
    /// The exit code for `error`.
    public static func of(_ error: CortexError) -> Int32 {
        switch error {
        case .refused: 1
        case .usage: 64
        case .badInput: 65
        case .notFound: 66
        case .io(_, _, let errno): errno.isPermissionDenied ? 77 : 74
        case .corrupt: 74
        case .tryLater: 75
        case .permissionDenied: 77
        case .configuration: 78
        }
    }
}

/// The one output formatter: text for people, one JSON line with `--json`, the reason on stderr.
public enum Output {
    /// Prints `report` to stdout (and its diagnostic to stderr).
    public static func print(_ report: Report, json: Bool, command: String) {
        if let stream = report.stream {
            let writer = ReportWriter()
            stream.write(writer, json)
            if json { writer.finishJSON() } else { writer.finishText() }
        } else if json {
            // A command that streamed its own output (tail) reports JSON null: nothing more to print.
            if report.json != .null { Terminal.writeOut(report.json.jsonText + "\n") }
        } else if !report.text.isEmpty {
            Terminal.writeOut(printed(report.text))
        }
        if let diagnostic = report.diagnostic { Terminal.writeError("\(command): \(diagnostic)") }
    }
}

extension Output {
    /// What the text form `text` prints: nothing when empty, else `text` ending in one newline.
    static func printed(_ text: String) -> String {
        text.isEmpty || text.hasSuffix("\n") ? text : text + "\n"
    }
}

/// Writing to the standard streams with plain `write(2)` (no buffering to lose at exit).
public enum Terminal {
    /// Writes `text` to stdout.
    public static func writeOut(_ text: String) { write(.standardOutput, text) }

    /// Writes `bytes` to stdout.
    public static func writeOut(bytes: [UInt8]) {
        if capture.isActive {
            capture.append(bytes: bytes)
            return
        }
        try? FileDescriptor.standardOutput.writeAll(bytes)
    }

    /// Writes `line` and a newline to stderr.
    public static func writeError(_ line: String) { write(.standardError, line + "\n") }

    /// Writes `text` to stderr as it is (a progress line redrawn in place).
    public static func writeErrorRaw(_ text: String) { write(.standardError, text) }

    /// True when stdout is a terminal (colour and interactive prompts only then). Never in a
    /// session, whose answers go to a pipe whatever its own stdout is.
    public static var stdoutIsTerminal: Bool { !capture.isActive && FileDescriptor.standardOutput.isTerminal }

    /// True when stderr is a terminal (progress lines redrawn in place); never in a session.
    public static var stderrIsTerminal: Bool { !capture.isActive && FileDescriptor.standardError.isTerminal }

    /// True when stdin is a terminal (interactive questions); never in a session, whose stdin
    /// carries its requests.
    public static var stdinIsTerminal: Bool { !capture.isActive && FileDescriptor.standardInput.isTerminal }

    /// Where a session collects one request's output instead of writing it to the streams.
    static let capture = OutputCapture()

    private static func write(_ stream: FileDescriptor, _ text: String) {
        if capture.isActive {
            capture.append(text, toStandardError: stream == .standardError)
            return
        }
        // EPIPE and friends: the reader went away; nothing useful to do.
        try? stream.writeAll(Array(text.utf8))
    }
}

/// The `CORTEX_*` variables of the process environment: the only ones the tools read. (Copying
/// the whole environment cost ~5% of a call.) With `onlyCortex` false, all of it (what a
/// supervised worker inherits).
public func processEnvironment(onlyCortex: Bool = true) -> [String: String] {
    POSIX.environment(prefix: onlyCortex ? "CORTEX_" : nil)
}

/// Entry point for a tool's `main.swift`: runs it on the process arguments and exits.
public func runToolAndExit(_ tool: ToolSpec) -> Never {
    let code = tool.run(Array(CommandLine.arguments.dropFirst()), environment: processEnvironment())
    POSIX.exit(code)
}

/// `text` followed by spaces up to `width` characters (at least one space).
func padded(_ text: String, to width: Int) -> String {
    text + String(repeating: " ", count: max(1, width - text.count))
}

/// The error for an outcome a command did not expect: a refusal it could not foresee, or a
/// record it wrote that the reducer rejected.
func unexpected(_ outcome: Outcome) -> CortexError {
    switch outcome {
    case .refused(let reason): .refused(reason)
    case .rejected(let reason): .badInput(reason)
    default: .corrupt("unexpected outcome \(outcome.json.jsonText)")
    }
}

/// `object` with `extra` members added.
func merge(_ object: JSONValue, _ extra: KeyValuePairs<String, JSONValue>) -> JSONValue {
    var members = object.objectMembers ?? []
    members += extra.map { JSONMember($0.key, $0.value) }
    return .object(members)
}
