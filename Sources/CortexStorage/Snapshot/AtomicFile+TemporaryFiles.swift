import CortexCore

// Debris of killed writers (docs/decisions/021-outcome-is-the-truth.md): a process killed
// between creating its temp file and renaming it leaves `.NAME.tmp-PID-RANDOM` behind.
extension AtomicFile {
    /// True when `name` has the shape `temporaryName(beside:)` gives: `.NAME.tmp-PID-RANDOM`.
    public static func isTemporaryName(_ name: String) -> Bool {
        let parts = name.split(separator: "-", omittingEmptySubsequences: false)
        guard name.hasPrefix("."), parts.count >= 3 else { return false }
        let random = parts[parts.count - 1]
        let pid = parts[parts.count - 2]
        return parts[parts.count - 3].hasSuffix(".tmp") && !pid.isEmpty && pid.utf8.allSatisfy { (0x30...0x39).contains($0) }
            && !random.isEmpty && random.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The temp files directly in `directory` (a folder below `folder`'s root, as the layout
    /// spells it; regular files only, never reached through a symbolic link) last modified
    /// before `cutoffMilliseconds`, as the layout spells their names.
    public static func staleTemporaryFiles(in directory: String, of folder: FolderDescriptor, modifiedBefore cutoffMilliseconds: Int64)
        -> [String]
    {
        var stale: [String] = []
        for name in (try? folder.entries(directory)) ?? [] where isTemporaryName(name) {
            let path = directory + "/" + name
            guard let info = try? folder.status(path), info.isRegularFile else { continue }
            let modified = info.modificationMilliseconds
            if modified < cutoffMilliseconds { stale.append(path) }
        }
        return stale
    }
}
