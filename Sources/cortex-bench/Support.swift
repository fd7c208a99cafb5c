import CortexCore
import CortexStorage
import Glibc

/// Small helpers shared by the benchmark sections: clock, statistics, table printing, scratch folders.
enum Clock {
    /// Monotonic nanoseconds.
    static func now() -> UInt64 { POSIX.monotonicNanoseconds() }
    /// Seconds since `start`.
    static func seconds(since start: UInt64) -> Double { Double(now() - start) / 1e9 }
}

/// Latency samples in nanoseconds.
struct Samples {
    var values: [UInt64] = []

    mutating func add(_ nanoseconds: UInt64) { values.append(nanoseconds) }

    /// Nearest-rank percentile in milliseconds.
    func percentileMilliseconds(_ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
        return Double(sorted[max(0, min(sorted.count - 1, rank))]) / 1e6
    }

    var p50: Double { percentileMilliseconds(50) }
    var p95: Double { percentileMilliseconds(95) }
    var meanMilliseconds: Double { values.isEmpty ? .nan : Double(values.reduce(0, +)) / Double(values.count) / 1e6 }
}

/// Prints aligned text tables (Markdown pipe syntax, so they paste into bench/README.md).
struct Table {
    var title: String
    var header: [String]
    var rows: [[String]] = []

    init(_ title: String, _ header: [String]) {
        self.title = title
        self.header = header
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    func print() {
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            "| "
                + cells.enumerated().map { index, cell in
                    index == 0 ? cell.padding(widths[index]) : cell.leftPadding(widths[index])
                }.joined(separator: " | ") + " |"
        }
        Swift.print("\n### \(title)\n")
        Swift.print(line(header))
        Swift.print(
            "|"
                + widths.enumerated().map { index, width in
                    index == 0 ? String(repeating: "-", count: width + 2) : String(repeating: "-", count: width + 1) + ":"
                }.joined(separator: "|") + "|")
        for row in rows { Swift.print(line(row)) }
        fflush(nil)
    }
}

extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
    func leftPadding(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

/// Fixed-point formatting without Foundation.
func fixed(_ value: Double, _ digits: Int = 3) -> String {
    guard value.isFinite else { return "n/a" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int64(scaled / scale)
    var fraction = String(Int64(scaled) - whole * Int64(scale))
    while fraction.count < digits { fraction = "0" + fraction }
    return (value < 0 ? "-" : "") + String(whole) + (digits > 0 ? "." + fraction : "")
}

/// An integer with thousands separators: 1,000,000.
func grouped(_ value: Int) -> String {
    let digits = Array(String(abs(value)))
    var out = ""
    for (index, digit) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
        out.append(digit)
    }
    return (value < 0 ? "-" : "") + out
}

func rate(_ count: Int, _ seconds: Double) -> String { grouped(Int((Double(count) / seconds).rounded())) }

/// A scratch folder, removed by `remove()`.
struct ScratchFolder {
    let path: String

    init(base: String, name: String) {
        path = base + "/" + name
        ScratchFolder.removeTree(path)
        _ = mkdir(path, 0o755)
    }

    func remove() { ScratchFolder.removeTree(path) }

    static func removeTree(_ path: String) {
        guard let entries = try? POSIX.directoryEntries(path) else {
            _ = unlink(path)
            return
        }
        for entry in entries where entry != "." && entry != ".." {
            let child = path + "/" + entry
            var info = stat()
            if lstat(child, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
                removeTree(child)
            } else {
                _ = unlink(child)
            }
        }
        _ = rmdir(path)
    }
}

func fail(_ message: String) -> Never {
    fflush(nil)
    let text = Array("cortex-bench: \(message)\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(1)
}

/// Runs `body`, exiting with a message on a library error.
func must<T>(_ what: String, _ body: () throws(CortexError) -> T) -> T {
    do { return try body() } catch { fail("\(what): \(error)") }
}

/// Walks `--option [value]` arguments for cortex-bench's small parsers.
struct ArgumentCursor {
    private let arguments: [String]
    private var index: Int

    /// A cursor at `arguments[index]`.
    init(_ arguments: [String], from index: Int) {
        self.arguments = arguments
        self.index = index
    }

    /// The next argument, or nil at the end.
    mutating func next() -> String? {
        guard index < arguments.count else { return nil }
        defer { index += 1 }
        return arguments[index]
    }

    /// The value of the option just read (fails when there is none).
    mutating func value() -> String {
        guard let value = next() else { fail("\(arguments[index - 1]) needs a value") }
        return value
    }
}
