import CCortexShims
import CortexCore
import Glibc

/// A file mapped shared (`MAP_SHARED`), for a futex that several processes sleep on and ring
/// (the journal's doorbell, docs/decisions/039-wake.md). The bytes are never loaded or stored
/// from Swift: a file truncated under the mapping would raise SIGBUS on a plain access, whereas
/// the futex calls touch it inside the kernel, which reports `EFAULT` instead. Read the value
/// with `pread` on the descriptor (`POSIX.read(_:at:count:)`).
public final class SharedMapping {
    /// The start of the mapping (a futex word at offset 0).
    let address: UnsafeMutableRawPointer
    /// The mapped length.
    let length: Int

    /// Maps the first `length` bytes of `fd` shared, readable, and writable when `writable`.
    public init(fd: Int32, length: Int, writable: Bool) throws(Errno) {
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        guard let mapped = mmap(nil, length, protection, MAP_SHARED, fd, 0), mapped != MAP_FAILED else { throw Errno.current }
        address = mapped
        self.length = length
    }

    deinit { munmap(address, length) }

    /// How a `wait` ended.
    public enum WaitOutcome: Equatable, Sendable {
        /// Woken by a ring, or the word already differed from the expected value.
        case rung
        /// The time ran out (or a signal interrupted the sleep).
        case timedOut
        /// The word cannot be reached (the file was truncated under the mapping) or the futex
        /// call failed otherwise.
        case failed(Errno)
    }

    /// Sleeps while the 32-bit word at offset 0 equals `expected`, at most `milliseconds`
    /// (a shared futex: any process mapping the same file wakes it).
    public func wait(whileEqualTo expected: UInt32, milliseconds: Int64) -> WaitOutcome {
        let word = UnsafePointer(address.assumingMemoryBound(to: UInt32.self))
        if cortex_futex_wait(word, expected, max(0, milliseconds)) == 0 { return .rung }
        let error = Errno.current
        switch error.rawValue {
        case EAGAIN: return .rung
        case ETIMEDOUT, EINTR: return .timedOut
        default: return .failed(error)
        }
    }

    /// Adds 1 to the 32-bit word at offset 0 atomically and wakes every process sleeping on it.
    public func ring() throws(Errno) {
        guard cortex_futex_ring(address.assumingMemoryBound(to: UInt32.self)) >= 0 else { throw Errno.current }
    }
}
