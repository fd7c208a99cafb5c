/// A process as Cortex records it: its pid **and** its start time (field 22 of
/// `/proc/<pid>/stat`, in clock ticks since boot), so a recycled pid is never mistaken for the
/// process, and never signalled (docs/design.md, "Heartbeats and processes"). The value lives
/// with the records that carry it; reading and signalling processes is CortexProcesses'.
public struct ProcessIdentity: Equatable, Hashable, Sendable {
    /// The process id.
    public var pid: Int32
    /// Its start time in clock ticks since boot.
    public var startTicks: UInt64

    /// An identity from its parts.
    public init(pid: Int32, startTicks: UInt64) {
        self.pid = pid
        self.startTicks = startTicks
    }

    /// `{"pid": …, "start_ticks": …}`.
    public var json: JSONValue { .object(["pid": .int(Int64(pid)), "start_ticks": .int(Int64(startTicks))]) }
}
