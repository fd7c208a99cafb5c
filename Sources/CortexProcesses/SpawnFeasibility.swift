import CortexCore
import CortexStorage

/// What this machine can never give a spawn, checked before anything is written (decision 026):
/// facts of the machine and config, not of the journal, so they are not the fold's to judge.
public enum SpawnFeasibility {
    /// Why a spawn of `count` workers like `spec` can never start on this machine with this
    /// config, whatever else ends (nil when it can): refused at once rather than queued forever.
    public static func neverFits(_ spec: WorkerSpec, count: Int64, config: CortexConfig) -> String? {
        let cores = Int64(SystemProbe.cores)
        if let cpu = spec.cpuMillicores, cpu > cores * 1000 {
            return "CPU: \(Values.thousandths(cpu)) cores requested, the machine has \(cores); it can never start"
        }
        if let memory = spec.memoryBytes, let total = SystemProbe.totalMemoryBytes(), memory > total {
            return "memory: \(Values.readableSize(memory)) requested, the machine has \(Values.readableSize(total)); it can never start"
        }
        if count > Int64(config.maxWorkers) {
            return "\(count) workers asked for, more than max_workers (\(config.maxWorkers)) can ever run at once"
        }
        if let limit = config.typeLimits[spec.type], count > limit {
            return "\(count) workers of type \(spec.type) asked for, more than its type_limits (\(limit)) can ever run at once"
        }
        if let cpu = spec.cpuMillicores, cpu.saturatingMultiply(count) > cores * 1000 {
            return "CPU: \(count) × \(Values.thousandths(cpu)) cores requested, the machine has \(cores); they can never all run"
        }
        return nil
    }
}
