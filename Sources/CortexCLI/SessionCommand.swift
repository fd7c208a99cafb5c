import CortexCore
import CortexStorage

/// `cortex session`: one long-lived process that keeps the coordination folder's store open and
/// runs `cortex` command lines read from stdin, one answer each on stdout
/// (docs/decisions/038-session.md). A bash master drives it as a coprocess
/// (`bin/cortex-session.bash`) and saves a process start and a snapshot load per call; every
/// request still appends its own record and learns its outcome by folding up to it.
///
/// Framing (docs/cli.md, "A session: many calls through one process"):
/// - a request is its argument count in decimal, then each argument, every field ended by a NUL
///   byte: `printf '%s\0' "$#" "$@"` in bash. Arguments are a `cortex` command line without the
///   program name (`budget allocate --tokens 10`), any bytes but NUL;
/// - an answer is one line `EXIT OUT_BYTES ERR_BYTES ENCODING`, then exactly OUT_BYTES of stdout
///   and ERR_BYTES of stderr: what `cortex ARGS…` would print on each stream, and its exit code.
///   ENCODING is `ascii` when both streams are 7-bit; else `bytes`, and each stream is followed
///   by a NUL. bash reads an `ascii` answer with `read -N` (one `read(2)` a stream; it counts the
///   locale's characters, which are bytes for 7-bit text), and a `bytes` one with `read -d ''`
///   to each NUL (a `read(2)` per byte, right in any locale).
public enum SessionCommand {
    /// The command.
    public static let command = Command(
        CommandSpec(
            name: "cortex session",
            abstract:
                "Serve cortex command lines on stdin, one answer each on stdout, keeping the folder open (a bash coprocess: source bin/cortex-session.bash and call cx).",
            examples: [
                "source bin/cortex-session.bash; cortex_session_start; cx budget allocate --tokens 10; cortex_session_stop",
                "printf '%s\\0' 1 status | cortex session   # one request: count, then the arguments, NUL after each",
            ]),
        body: serve)

    /// The most arguments one request may carry.
    static let maximumArguments = 1 << 16
    /// The most bytes one request may carry (the kernel's limit on a command line is 2 MiB).
    static let maximumRequestBytes = 1 << 24

    static func serve(_ invocation: Invocation) throws(CortexError) -> Report {
        var environment = invocation.environment
        // Requests without --dir use the session's folder, as `cortex --dir DIR …` would.
        if let dir = invocation.arguments[CommonOptions.dir], !dir.isEmpty { environment["CORTEX_DIR"] = dir }
        SessionServer.isServing = true
        defer { SessionServer.isServing = false }
        // Views and snapshots are written off the request path (docs/decisions/005-dispatch-io.md).
        // A stop signal ends the session once they are written: blocked here, before any Dispatch
        // thread starts (threads inherit the mask), it reaches only the publisher's signal source.
        POSIX.blockSignals(SessionServer.stopSignals)
        SessionServer.publisher.endProcessOnSignals(SessionServer.stopSignals)
        // At the end of input, and on a stream out of step: what was offered is written first.
        defer { SessionServer.publisher.waitUntilIdle() }
        // Opened now, so the first request finds the store loaded; a folder that cannot be opened
        // is each request's answer instead (exactly what the one-process call reports).
        _ = try? SessionServer.stores.store(root: invocation.root)
        var requests = RequestReader(.standardInput)
        while true {
            let request: [String]
            do {
                guard let next = try requests.next() else { break }
                request = next
            } catch {
                // The stream is out of step: answer once, then end (nothing after it can be trusted).
                answer(code: ExitCode.of(error), out: [], err: Array("cortex session: \(error.description)\n".utf8))
                return Report(exitCode: ExitCode.of(error), text: "", json: .null)
            }
            SessionServer.requestNumber &+= 1
            Terminal.capture.begin()
            let code = CortexTool.tool.run(request, environment: environment)
            let (out, err) = Terminal.capture.end()
            guard answer(code: code, out: out, err: err) else { break }
        }
        return Report(text: "", json: .null)
    }

    /// Writes one answer to stdout in one `write(2)` when it fits; false when the reader is gone.
    @discardableResult
    private static func answer(code: Int32, out: [UInt8], err: [UInt8]) -> Bool {
        // A NUL (a worker's log may hold one) would end a stream early for bash's `read -d ''`
        // and is never counted by its `read -N`: it is dropped, as bash's `$(…)` drops it.
        let hasNUL = out.contains(0) || err.contains(0)
        let out = hasNUL ? out.filter { $0 != 0 } : out
        let err = hasNUL ? err.filter { $0 != 0 } : err
        // `ascii`: both streams are 7-bit with no NUL, so a reader counting characters (bash's
        // `read -N`) counts bytes in any ASCII-compatible locale.
        let ascii = !hasNUL && out.allSatisfy { $0 < 0x80 } && err.allSatisfy { $0 < 0x80 }
        var bytes = Array("\(code) \(out.count) \(err.count) \(ascii ? "ascii" : "bytes")\n".utf8)
        bytes.reserveCapacity(bytes.count + out.count + err.count + 2)
        bytes += out
        if !ascii { bytes.append(0) }
        bytes += err
        if !ascii { bytes.append(0) }
        do { try FileDescriptor.standardOutput.writeAll(bytes) } catch { return false }
        return true
    }
}

/// Reads requests (`COUNT\0ARG\0…`) from a descriptor through a buffer.
struct RequestReader {
    private let input: FileDescriptor
    private var buffer: [UInt8] = []
    private var start = 0
    private var requestBytes = 0

    init(_ input: FileDescriptor) { self.input = input }

    /// The next request's arguments; nil at end of input (a request cut short by it included).
    /// - Throws: `usage` for a count that is not a number or past the limits, `io` when the read fails.
    mutating func next() throws(CortexError) -> [String]? {
        requestBytes = 0
        guard let countField = try field() else { return nil }
        let countText = String(decoding: countField, as: UTF8.self)
        guard let count = Int(countText), count >= 0, count <= SessionCommand.maximumArguments else {
            throw .usage("malformed request: expected an argument count, got '\(Values.printable(countText))'")
        }
        var arguments: [String] = []
        arguments.reserveCapacity(count)
        for _ in 0..<count {
            guard let argument = try field() else { return nil }
            arguments.append(String(decoding: argument, as: UTF8.self))
        }
        return arguments
    }

    /// The bytes up to the next NUL (which is consumed); nil at end of input.
    private mutating func field() throws(CortexError) -> [UInt8]? {
        var scanned = start
        while true {
            if let end = buffer[scanned...].firstIndex(of: 0) {
                let bytes = Array(buffer[start..<end])
                start = end + 1
                requestBytes += bytes.count + 1
                return bytes
            }
            guard requestBytes + buffer.count - start <= SessionCommand.maximumRequestBytes else {
                throw .usage("malformed request: over \(SessionCommand.maximumRequestBytes) bytes")
            }
            if start > 0 {
                buffer.removeSubrange(0..<start)
                start = 0
            }
            scanned = buffer.count
            let more: [UInt8]
            do { more = try input.readSome(maximum: 1 << 16) } catch {
                throw .system("read", "standard input", error)
            }
            if more.isEmpty { return nil }
            buffer += more
        }
    }
}

/// A session's state: whether one is serving, and the stores it keeps open.
enum SessionServer {
    /// True while `cortex session` serves requests: commands open stores through `stores` and
    /// print into `Terminal.capture`.
    nonisolated(unsafe) static var isServing = false
    /// Counts requests, so a store readied once per request is not readied again within it.
    nonisolated(unsafe) static var requestNumber = 0
    /// The stores kept open, one per folder.
    static let stores = SessionStores()
    /// Writes the views and snapshots of every folder the session serves, off the request path.
    static let publisher = BackgroundPublisher { problem in
        try? FileDescriptor.standardError.writeAll(Array("cortex session: warning: \(problem)\n".utf8))
    }
    /// The signals that stop a session (`cortex_session_stop` sends SIGTERM) once its writes are done.
    static let stopSignals: [Signal] = [.terminate, .interrupt]

    /// Refuses (`usage`) a command that cannot run inside a session (`refusal`).
    static func check(_ command: Command, _ parsed: ParsedArguments) throws(CortexError) {
        if let refusal = refusal(of: command, parsed) { throw .usage(refusal) }
    }

    /// Why `command` cannot run inside a session, or nil when it can: what streams without end
    /// or hands the session's own streams to another program.
    static func refusal(of command: Command, _ parsed: ParsedArguments) -> String? {
        let name = command.spec.name
        if name.hasSuffix(" session") { return "a session cannot start another session" }
        if name.hasSuffix(" _supervise") { return "a supervisor runs as its own process, not in a session" }
        if name.hasSuffix(" tail") || name.hasSuffix(" dashboard"), parsed.flags.contains("follow") {
            return "--follow does not end: run it as its own process, not in a session"
        }
        if name.hasSuffix(" reap"), parsed.texts["every"] != nil {
            return "--every runs until stopped: run the reaper as its own process, not in a session"
        }
        if parsed.flags.contains("foreground") {
            return "--foreground gives the worker the caller's streams: run it as its own process, not in a session"
        }
        return nil
    }
}

/// The stores a session keeps open, by folder path as the request names it.
final class SessionStores: @unchecked Sendable {
    private struct Entry {
        var store: CoordinationStore
        /// `config.json` as the store read it: a changed one (`cortex init --max-workers`) reopens.
        var config: FileIdentity?
        /// The request that last readied it.
        var request: Int
    }

    private var entries: [String: Entry] = [:]

    /// The store of the folder at `root`, caught up to the journal's end: the one kept open when
    /// its snapshot and settings are still those it loaded, else a freshly opened one.
    /// - Throws: what `CoordinationStore.open` throws.
    func store(root: String) throws(CortexError) -> CoordinationStore {
        if var entry = entries[root] {
            if entry.request == SessionServer.requestNumber {
                // A command that opens its store twice: a second open folds again.
                try entry.store.catchUp()
                return entry.store
            }
            let layout = entry.store.layout
            if FileIdentity.of(layout.config, in: layout.folder) == entry.config, (try? entry.store.readyForNextCommand()) == true {
                entry.request = SessionServer.requestNumber
                entries[root] = entry
                return entry.store
            }
            entries[root] = nil
            // Opened again after a snapshot: the one this session may still be writing is loaded.
            SessionServer.publisher.waitUntilIdle()
        }
        let store = try CoordinationStore.open(root: root, createIfMissing: false, foldOnOpen: true)
        store.backgroundPublisher = SessionServer.publisher
        let config = FileIdentity.of(store.layout.config, in: store.layout.folder)
        entries[root] = Entry(store: store, config: config, request: SessionServer.requestNumber)
        return store
    }
}

/// One request's output, collected instead of written while a session serves it.
final class OutputCapture: @unchecked Sendable {
    /// True between `begin` and `end`.
    private(set) var isActive = false
    private var out: [UInt8] = []
    private var err: [UInt8] = []

    /// Starts collecting.
    func begin() {
        out.removeAll(keepingCapacity: true)
        err.removeAll(keepingCapacity: true)
        isActive = true
    }

    /// Adds `text` to the stream it was written to.
    func append(_ text: String, toStandardError: Bool) {
        if toStandardError { err += text.utf8 } else { out += text.utf8 }
    }

    /// Adds `bytes` to stdout's collection.
    func append(bytes: [UInt8]) { out += bytes }

    /// Stops collecting and returns what each stream got.
    func end() -> (out: [UInt8], err: [UInt8]) {
        isActive = false
        return (out, err)
    }
}
