import Glibc

/// Times as people and `jq` read them: UTC ISO-8601 with whole seconds (jq 1.6 rejects fractions).
public enum ISOTime {
    /// `2026-11-23T05:00:00Z` for a time in milliseconds since the Unix epoch.
    public static func format(milliseconds: Int64) -> String {
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }

    /// `HH:MM:SS` in UTC, for event streams.
    public static func clock(milliseconds: Int64) -> String {
        String(format(milliseconds: milliseconds).dropFirst(11).dropLast())
    }

    /// "3s", "4m", "2h", "5d": a short age for people.
    public static func shortDuration(milliseconds: Int64) -> String {
        let seconds = max(0, milliseconds / 1000)
        if seconds < 120 { return "\(seconds)s" }
        if seconds < 7200 { return "\(seconds / 60)m" }
        if seconds < 172_800 { return "\(seconds / 3600)h" }
        return "\(seconds / 86400)d"
    }
}
