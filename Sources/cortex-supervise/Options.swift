import CSupervisorLibc

/// What `cortex-supervise` was asked to do (docs/decisions/017-lean-supervisor.md):
///
///     cortex-supervise --stdout-log F --stderr-log F [--log-head N] [--log-tail N]
///         [--heartbeat F --heartbeat-every MS] [--timeout MS] [--grace MS] [--chdir D]
///         [--environment-fd FD] [--cgroup DIR]... [--cgroup-set FILE=VALUE]... [--cgroup-try FILE=VALUE]...
///         [--watch-memory FILE] [--watch-pids FILE] [--rlimit-as BYTES] [--rlimit-cpu SECONDS]
///         --report PROGRAM [--report-arg ARG]... -- COMMAND [ARG]...
///
/// The limit options (docs/decisions/043-enforced-worker-limits.md): each `--cgroup` folder is
/// made before the run (the worker joins it before its program starts) and removed after it;
/// `--cgroup-set` writes a limit (a failure stops the start), `--cgroup-try` one that may fail;
/// `--watch-memory` names the file whose `oom_kill` count and `--watch-pids` the file whose
/// `max` count tell that the run reached its limit; `--rlimit-*` are set in the worker's process.
///
/// Everything is given by `cortex-spawn`, which replaces itself with this program for as long
/// as the worker runs; a person never types it.
struct Options {
    var stdoutLog = ""
    var stderrLog = ""
    var headLimit = 10 * 1024
    var tailLimit = 30 * 1024
    var heartbeat: String?
    var heartbeatMilliseconds: Int64 = 5_000
    var timeoutMilliseconds: Int64?
    var graceMilliseconds: Int64 = 10_000
    var workingDirectory: String?
    /// A descriptor to read the worker's environment from (NUL-separated `NAME=value` entries);
    /// without it the worker gets this process's environment.
    var environmentFD: Int32?
    /// Cgroup folders made for the run, joined by the worker, removed after it.
    var cgroups: [String] = []
    /// Limits written into them, in order: `FILE=VALUE`, and whether a failure may be ignored.
    var cgroupWrites: [(entry: String, optional: Bool)] = []
    /// Files whose `oom_kill` (memory) or `max` (pids) count rising means the limit was reached.
    var watchMemory: String?
    var watchPids: String?
    /// RLIMIT_AS and RLIMIT_CPU for the worker's process.
    var rlimitAddressSpace: Int64?
    var rlimitCPUSeconds: Int64?
    /// The program told of the worker's start and end, and the arguments that come first.
    var report: [String] = []
    /// Index in argv of the worker's program (after `--`).
    var commandIndex = 0

    /// Parses argv, or says what is wrong. Names are compared as C strings: String equality
    /// would pull Unicode normalization tables into this small binary.
    static func parse(_ argc: Int, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> (Options?, String) {
        var options = Options()
        var index = 1
        while index < argc, let name = argv[index] {
            if strcmp(name, "--") == 0 {
                options.commandIndex = index + 1
                break
            }
            guard index + 1 < argc, let value = argv[index + 1] else { return (nil, String(cString: name) + " needs a value") }
            index += 2
            if strcmp(name, "--stdout-log") == 0 {
                options.stdoutLog = String(cString: value)
            } else if strcmp(name, "--stderr-log") == 0 {
                options.stderrLog = String(cString: value)
            } else if strcmp(name, "--heartbeat") == 0 {
                options.heartbeat = String(cString: value)
            } else if strcmp(name, "--chdir") == 0 {
                options.workingDirectory = String(cString: value)
            } else if strcmp(name, "--report") == 0 {
                options.report.insert(String(cString: value), at: 0)
            } else if strcmp(name, "--report-arg") == 0 {
                options.report.append(String(cString: value))
            } else if strcmp(name, "--cgroup") == 0 {
                options.cgroups.append(String(cString: value))
            } else if strcmp(name, "--cgroup-set") == 0 || strcmp(name, "--cgroup-try") == 0 {
                options.cgroupWrites.append((String(cString: value), strcmp(name, "--cgroup-try") == 0))
            } else if strcmp(name, "--watch-memory") == 0 {
                options.watchMemory = String(cString: value)
            } else if strcmp(name, "--watch-pids") == 0 {
                options.watchPids = String(cString: value)
            } else {
                guard let number = parseCount(value) else {
                    return (nil, String(cString: name) + " needs a number, not '" + String(cString: value) + "'")
                }
                if strcmp(name, "--log-head") == 0 {
                    options.headLimit = Int(number)
                } else if strcmp(name, "--log-tail") == 0 {
                    options.tailLimit = Int(number)
                } else if strcmp(name, "--heartbeat-every") == 0 {
                    options.heartbeatMilliseconds = max(1, number)
                } else if strcmp(name, "--timeout") == 0 {
                    options.timeoutMilliseconds = number
                } else if strcmp(name, "--grace") == 0 {
                    options.graceMilliseconds = number
                } else if strcmp(name, "--environment-fd") == 0 {
                    options.environmentFD = Int32(truncatingIfNeeded: number)
                } else if strcmp(name, "--rlimit-as") == 0 {
                    options.rlimitAddressSpace = number
                } else if strcmp(name, "--rlimit-cpu") == 0 {
                    options.rlimitCPUSeconds = number
                } else {
                    return (nil, "unknown option " + String(cString: name))
                }
            }
        }
        if options.commandIndex == 0 || options.commandIndex >= argc { return (nil, "missing the worker's command after --") }
        if options.stdoutLog.isEmpty || options.stderrLog.isEmpty { return (nil, "--stdout-log and --stderr-log are required") }
        if options.report.isEmpty { return (nil, "--report is required") }
        return (options, "")
    }

    /// A decimal count, saturating at Int64.max (a timeout of years is a valid request), or nil.
    static func parseCount(_ text: UnsafeMutablePointer<CChar>) -> Int64? {
        var value: Int64 = 0
        var index = 0
        while text[index] != 0 {
            let digit = Int64(text[index]) - 48
            guard digit >= 0, digit <= 9 else { return nil }
            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, carry) = times.addingReportingOverflow(digit)
            value = overflow || carry ? Int64.max : sum
            index += 1
        }
        return index > 0 ? value : nil
    }
}
