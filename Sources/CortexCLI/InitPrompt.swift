import CortexCore
import CortexStorage

extension CortexTool {
    /// `cortex init` on a terminal with no settings given asks for the two that matter (total
    /// tokens, max workers), showing the current value as the default. It never asks when stdin
    /// or stdout is not a terminal (scripts, CI), nor with `--json`: flags are the interface there.
    enum InitPrompt {
        /// The settings asked for, in order: option, question, the smallest answer taken.
        static let questions = [
            (option: Init.totalTokens, question: "Total token budget", minimum: Int64(0)),
            (option: Init.maxWorkers, question: "Most workers alive at once", minimum: Int64(1)),
        ]

        /// True when init should ask: a person at a terminal who gave none of the settings.
        static func shouldAsk(_ arguments: ParsedArguments) -> Bool {
            guard Terminal.stdinIsTerminal, Terminal.stdoutIsTerminal, !arguments[CommonOptions.json] else {
                return false
            }
            return questions.allSatisfy { arguments[$0.option] == nil }
        }

        /// `arguments` with the answers added as if given as flags. Enter keeps the default; an
        /// answer that is not a whole number is asked again (three times, then the default).
        /// - Throws: what the option refuses of an answer (a number past its limit).
        static func ask(_ arguments: ParsedArguments, root: String) throws(CortexError) -> ParsedArguments {
            // The current values, in the order of `questions`.
            var defaults = ["1000000", String(CortexConfig().maxWorkers)]
            if let store = try? CoordinationStore.open(root: root, createIfMissing: false) {
                defaults = [String(store.state.budget.total), String(store.config.maxWorkers)]
            }
            var answers: [String] = []
            Terminal.writeOut("Setting up \(root) (Enter keeps the value in brackets; flags skip these questions):\n")
            for ((_, question, minimum), fallback) in zip(questions, defaults) {
                var answer = fallback
                for _ in 0..<3 {
                    Terminal.writeOut("  \(question) [\(fallback)]: ")
                    guard let line = readLine() else {
                        Terminal.writeOut("\n")
                        break
                    }
                    let typed = line.filter { $0 != " " && $0 != "_" && $0 != "," }
                    if typed.isEmpty { break }
                    if let value = Int64(typed), value >= minimum {
                        answer = String(value)
                        break
                    }
                    Terminal.writeOut(
                        "  '\(Values.printable(line))' is not a whole number\(minimum > 0 ? " of at least \(minimum)" : "")\n")
                }
                answers.append(answer)
            }
            // Checked once every question is answered, like the flags they stand for.
            var answered = arguments
            for (question, answer) in zip(questions, answers) { try answered.supply(answer, for: question.option) }
            return answered
        }
    }
}
