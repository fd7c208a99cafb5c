import CortexCore
import Glibc

extension Errno {
    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(errno) }
}
