import CortexCore
import CortexProcesses
import CortexStorage

/// `cortex pool list|stop|scale`: the workers of one `cortex-spawn --pool N --name NAME` as a
/// unit, replacements of lost members included (they keep the pool's name).
public enum PoolTool {
    /// The commands, named under `prefix` (`cortex pool`).
    public static func commands(prefix: String) -> [Command] {
        [
            Command(
                CommandSpec(
                    name: "\(prefix) list", abstract: "Pools: name, type, members live of wanted, members by state.",
                    examples: ["\(prefix) list", "\(prefix) list --json | jq -r '.pools[].name'"]),
                body: list),
            Command(
                CommandSpec(
                    name: "\(prefix) stop",
                    abstract:
                        "Stop every member of pool NAME, replacements included, and restart none: a stop recorded per member, SIGTERM through its supervisor (only your own workers' processes), SIGKILL after the grace. With --wait, return once every member has ended (exit 75 if some still run after D). Exit 1 when nothing was left to stop.",
                    positionals: [Stop.name], options: [Stop.grace, Stop.wait],
                    examples: [
                        "\(prefix) stop builders", "\(prefix) stop builders --grace 2s", "\(prefix) stop builders --wait 30s",
                    ]),
                body: stop),
            Command(
                CommandSpec(
                    name: "\(prefix) scale",
                    abstract:
                        "Grow pool NAME to N members (new ones spawned with the pool's command, environment and directory: only the user who started the pool can) or shrink it (the newest members stopped). Exit 75 when new members had to queue.",
                    positionals: [Scale.name, Scale.size],
                    examples: ["\(prefix) scale builders 8", "\(prefix) scale builders 0   # like pool stop"]),
                body: scale),
        ]
    }

    /// `stop`'s arguments.
    enum Stop {
        static let name = Positional.identifier(
            "NAME", "The pool's name (cortex-spawn --name, or the name it printed).", what: "pool name")
        static let grace = Option.duration("grace", "D", "SIGKILL what still runs D after the SIGTERM (default: each worker's --grace).")
        static let wait = Option.duration(
            "wait", "D", "Return only once every member has ended and the views show it; exit 75 if some still run after D.")
    }

    /// `scale`'s arguments.
    enum Scale {
        static let name = Positional.identifier("NAME", "The pool's name.", what: "pool name")
        static let size = Positional<Int>("N", "How many members it should have.") { (text) throws(CortexError) in
            guard let target = Int(text), target >= 0, target <= 1000 else {
                throw .badInput("invalid N '\(Values.printable(text))': a whole number from 0 to 1000")
            }
            return target
        }
    }

    static func list(_ invocation: Invocation) throws(CortexError) -> Report {
        let store = try invocation.openStore()
        let state = store.state
        var names: [String] = []
        for worker in state.workers.all { if let name = worker.spec.pool, !names.contains(name) { names.append(name) } }
        for owed in state.workers.owedReplacements { if let name = owed.spec.pool, !names.contains(name) { names.append(name) } }
        var lines: [String] = []
        var rows: [JSONValue] = []
        for name in names {
            let members = Pool.members(name, in: state)
            let live = members.filter { $0.status == .running }.count
            let wanted = Pool.wanted(name, in: state)
            var byState: [(String, Int)] = []
            for status in WorkerStatus.allCases {
                let count = members.filter { $0.status == status }.count
                if count > 0 { byState.append((status.rawValue, count)) }
            }
            let owed = state.workers.owedReplacements.filter { $0.spec.pool == name }.count
            if owed > 0 { byState.append(("owed a replacement", owed)) }
            let type = members.first?.spec.type ?? state.workers.owedReplacements.first { $0.spec.pool == name }?.spec.type ?? "?"
            lines.append(
                "\(padded(name, to: 16))\(padded(type, to: 10))\(live) of \(wanted) running  "
                    + byState.map { "\($0.1) \($0.0)" }.joined(separator: ", "))
            rows.append(
                .object([
                    "members": .array(members.map { .string($0.id) }), "name": .string(name), "running": .int(Int64(live)),
                    "states": .object(byState.map { JSONMember($0.0, .int(Int64($0.1))) }), "type": .string(type),
                    "wanted": .int(Int64(wanted)),
                ]))
        }
        return Report(text: lines.isEmpty ? "no pools" : lines.joined(separator: "\n"), json: .object(["pools": .array(rows)]))
    }

    static func stop(_ invocation: Invocation) throws(CortexError) -> Report {
        let name = invocation.arguments[Stop.name]
        let store = try invocation.openStore()
        let result = try Pool.stop(
            name, graceMilliseconds: invocation.arguments[Stop.grace], waitMilliseconds: invocation.arguments[Stop.wait], in: store)
        switch result {
        case .unknown: throw .notFound("no pool \(name)")
        case .alreadyEnded:
            return Report(exitCode: 1, text: "", json: .object(["pool": .string(name)]), diagnostic: "pool \(name) has already ended")
        case .stopped(let stopped):
            return Report(
                exitCode: stopped.isEmpty ? 1 : 0, text: stopped.map { "\($0) stopping" }.joined(separator: "\n"),
                json: .object(["pool": .string(name), "stopped": .array(stopped.map { .string($0) })]),
                diagnostic: stopped.isEmpty ? "pool \(name): every member is already stopping" : nil)
        }
    }

    static func scale(_ invocation: Invocation) throws(CortexError) -> Report {
        let name = invocation.arguments[Scale.name]
        let store = try invocation.openStore()
        switch try Pool.scale(name, to: invocation.arguments[Scale.size], in: store) {
        case .unchanged(let size): return Report(text: "pool \(name) has \(size) members", json: poolJSON(name, [], []))
        case .shrunk(let stopped):
            return Report(text: stopped.map { "\($0) stopping" }.joined(separator: "\n"), json: poolJSON(name, [], stopped))
        case .neverFits(let limit):
            return Report(exitCode: 1, text: "", json: poolJSON(name, [], []), diagnostic: "not scaled: \(limit)")
        case .refused(let added, let reason):
            return Report(
                exitCode: 1, text: added.joined(separator: "\n"), json: poolJSON(name, added, []), diagnostic: "not started: \(reason)")
        case .grown(let added, let queued):
            return Report(
                exitCode: queued.isEmpty ? 0 : 75, text: added.joined(separator: "\n"), json: poolJSON(name, added, []),
                diagnostic: queued.isEmpty ? nil : queued.joined(separator: "; "))
        }
    }

    static func poolJSON(_ name: String, _ added: [String], _ stopped: [String]) -> JSONValue {
        .object([
            "added": .array(added.map { .string($0) }), "pool": .string(name), "stopped": .array(stopped.map { .string($0) }),
        ])
    }
}
