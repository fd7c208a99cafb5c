import CortexCore

/// `cortex init` on a terminal with no settings given asks for the two that matter (total
/// tokens, max workers), showing the current value as the default. It never asks when stdin
/// or stdout is not a terminal (scripts, CI), nor with `--json`: flags are the interface there.
enum InitPrompt {
    /// The settings asked for, in order: option name, question.
    static let questions = [("total-tokens", "Total token budget"), ("max-workers", "Most workers alive at once")]

    /// True when init should ask: a person at a terminal who gave none of the settings.
    static func shouldAsk(_ arguments: ParsedArguments) -> Bool {
        guard FileDescriptor.standardInput.isTerminal, FileDescriptor.standardOutput.isTerminal, !arguments.has("json") else {
            return false
        }
        return questions.allSatisfy { arguments.value($0.0) == nil }
    }

    /// `arguments` with the answers added as if given as flags. Enter keeps the default; an
    /// answer that is not a whole number is asked again (three times, then the default).
    static func ask(_ arguments: ParsedArguments, root: String) -> ParsedArguments {
        var defaults = ["total-tokens": "1000000", "max-workers": String(CortexConfig().maxWorkers)]
        if let store = try? CoordinationStore.open(root: root, createIfMissing: false) {
            defaults["total-tokens"] = String(store.state.budget.total)
            defaults["max-workers"] = String(store.config.maxWorkers)
        }
        var answered = arguments
        Terminal.writeOut("Setting up \(root) (Enter keeps the value in brackets; flags skip these questions):\n")
        for (option, question) in questions {
            let fallback = defaults[option] ?? ""
            var answer = fallback
            for _ in 0..<3 {
                Terminal.writeOut("  \(question) [\(fallback)]: ")
                guard let line = readLine() else {
                    Terminal.writeOut("\n")
                    break
                }
                let typed = line.filter { $0 != " " && $0 != "_" && $0 != "," }
                if typed.isEmpty { break }
                if let value = Int64(typed), value >= (option == "max-workers" ? 1 : 0) {
                    answer = String(value)
                    break
                }
                Terminal.writeOut("  '\(Values.printable(line))' is not a whole number\(option == "max-workers" ? " of at least 1" : "")\n")
            }
            answered.values[option] = [answer]
        }
        return answered
    }
}
