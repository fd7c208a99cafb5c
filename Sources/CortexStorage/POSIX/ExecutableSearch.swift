import CCortexShims
import CortexCore
import Glibc

/// The one executable lookup, shared with `cortex-supervise`: both call the same C function
/// (`cortex_find_executable` in the CCortexCommon target), so the library and the supervisor
/// find the same program for the same name and PATH.
public enum ExecutableSearch {
    /// The path of `program`: itself when it holds a `/`, else the first executable non-folder
    /// `FOLDER/program` for FOLDER in `searchPath` (a PATH value; an empty entry is `.`; nil is
    /// `/usr/local/bin:/usr/bin:/bin`), else nil. By default the search is this process's PATH.
    public static func find(_ program: String, searchPath: String? = POSIX.environmentValue("PATH")) -> String? {
        var found = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let result = found.withUnsafeMutableBufferPointer { buffer in
            cortex_find_executable(program, searchPath, buffer.baseAddress, buffer.count)
        }
        guard result == 0 else { return nil }
        return found.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
