/// A dedicated tool's examples as `cortex WORD` writes them: `cortex-budget set` becomes
/// `cortex budget set` (both run the same command), so `cortex budget --help` has examples too.
func nestedExamples(_ examples: [String], tool: String, word: String) -> [String] {
    examples.map { example in
        var result = ""
        var rest = Substring(example)
        while let range = rest.firstRange(of: tool + " ") {
            result += rest[..<range.lowerBound] + "cortex \(word) "
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
