/// The ranges every number from a record, a snapshot or a flag must fall in (docs/journal-format.md,
/// "Limits"). Checked where the number is decoded, so the fold's arithmetic on values inside them
/// cannot overflow; sums that can still grow without bound (metrics, counters) saturate.
public enum Limits {
    /// The earliest record time: the Unix epoch.
    public static let earliestRecordMilliseconds: Int64 = 0
    /// The latest record time: 9999-12-31T23:59:59.999Z.
    public static let latestRecordMilliseconds: Int64 = 253_402_300_799_999
    /// The most tokens in one number (a total, an allocation, a quota, tokens used): 2^53 - 1,
    /// what the tools have always accepted, so no record an earlier version wrote is refused.
    public static let maximumTokens: Int64 = (1 << 53) - 1
    /// The longest duration (a timeout, a backoff, a grace, a wait): 3,650 days.
    public static let maximumDurationMilliseconds: Int64 = 3_650 * 86_400_000
    /// The most attempts a task may be given.
    public static let maximumAttempts: Int64 = 1_000
    /// The largest size in bytes (memory, log head and tail): 1 PiB.
    public static let maximumSizeBytes: Int64 = 1 << 50
    /// The most CPU a worker may ask for, in thousandths of a core (a million cores).
    public static let maximumCPUMillicores: Int64 = 1_000_000_000
    /// The most processes a worker may be limited to (`--pids`): Linux's largest pid (PID_MAX_LIMIT).
    public static let maximumPIDs: Int64 = 4_194_304
    /// The most cores evidence may report.
    public static let maximumCores: Int64 = 1_000_000
    /// The largest count of anything else (fencing tokens, sequence numbers, cores, workers):
    /// 2^53 - 1, the largest whole number jq holds exactly.
    public static let maximumCount: Int64 = (1 << 53) - 1

    /// True when `milliseconds` is a time a record may carry.
    public static func isRecordTime(_ milliseconds: Int64) -> Bool {
        milliseconds >= earliestRecordMilliseconds && milliseconds <= latestRecordMilliseconds
    }
}

extension Int64 {
    /// `self + other`, held at `Int64.max` or `Int64.min` instead of overflowing.
    @inlinable public func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self - other`, held at `Int64.max` or `Int64.min` instead of overflowing.
    @inlinable public func saturatingSubtract(_ other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other < 0 ? .max : .min) : difference
    }

    /// `self × other`, held at `Int64.max` or `Int64.min` instead of overflowing.
    @inlinable public func saturatingMultiply(_ other: Int64) -> Int64 {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? ((self < 0) == (other < 0) ? .max : .min) : product
    }
}
