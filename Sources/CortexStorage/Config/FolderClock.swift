import CortexCore

/// Measuring heartbeat ages so that a wall-clock step cannot declare a healthy worker lost
/// (docs/decisions/021-outcome-is-the-truth.md).
///
/// Two facts are used. "Now" is the modification time of a probe file the reaper touches in the
/// folder, so heartbeat ages compare two times stamped by the same clock (the file system's).
/// And the wall clock's offset from `CLOCK_BOOTTIME` (which no one can set) is recorded by every
/// reaper run: when it moved by more than `stepToleranceMilliseconds` since the last run, the
/// wall clock was stepped, every heartbeat stamped before the step has a meaningless age, and no
/// worker is declared lost by heartbeat age in that run. The next run, a step later, sees the
/// heartbeats healthy workers touched since: a loss by heartbeat age needs a second observation.
public enum FolderClock {
    /// A change of the wall clock's offset from boot time smaller than this is drift or slew, not a step.
    public static let stepToleranceMilliseconds: Int64 = 2_000

    /// The probe file (its modification time is "now" on the folder's clock).
    public static func probePath(_ layout: CoordinationLayout) -> String { layout.stateFolder + "/clock-probe" }

    /// Touches the probe and returns its modification time, or nil when it cannot be written
    /// (the caller falls back to the process's wall clock).
    public static func probe(_ layout: CoordinationLayout) -> Int64? {
        let path = probePath(layout)
        guard (try? Files.touch(path, in: layout.folder, mode: FolderPermissions.detect(root: layout.root).file(.shared))) != nil else {
            return nil
        }
        return layout.folder.modificationMilliseconds(path)
    }

    /// The wall clock minus `CLOCK_BOOTTIME`, in milliseconds: the wall time of boot. Constant
    /// until someone sets the clock; NTP slewing moves it by milliseconds.
    public static func bootEpochMilliseconds() -> Int64 {
        POSIX.wallClockMilliseconds() - POSIX.bootClockMilliseconds()
    }

    /// How far the wall clock was stepped between two readings of `bootEpochMilliseconds`
    /// (positive: forward), or nil when the difference is within the tolerance (or there is no
    /// earlier reading).
    public static func step(from earlier: Int64?, to now: Int64) -> Int64? {
        guard let earlier else { return nil }
        let moved = now - earlier
        return abs(moved) > stepToleranceMilliseconds ? moved : nil
    }

    /// A heartbeat's age in seconds: `nowMilliseconds` (the probe's time) minus the heartbeat's
    /// modification time, never negative (a heartbeat stamped before a backward step looks fresh,
    /// which delays a loss but never invents one).
    public static func age(heartbeatMilliseconds: Int64, nowMilliseconds: Int64) -> Double {
        Double(max(0, nowMilliseconds - heartbeatMilliseconds)) / 1000
    }
}
