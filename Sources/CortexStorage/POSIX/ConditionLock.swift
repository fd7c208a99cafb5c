import CortexCore
import Glibc

/// A mutex with one condition variable on the monotonic clock (`pthread_mutex_t` and
/// `pthread_cond_t`): for an in-process structure that threads share and wait on. The
/// corresponding C functions are `pthread_mutex_*` and `pthread_cond_*`.
public final class ConditionLock: @unchecked Sendable {
    // @unchecked: the pthread objects are made for sharing between threads; their memory is
    // allocated once and never moves.
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline let condition: UnsafeMutablePointer<pthread_cond_t>

    /// An unlocked mutex and a condition whose timed waits run on `CLOCK_MONOTONIC`.
    public init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Takes the mutex, waiting for it.
    @inlinable public func lock() { pthread_mutex_lock(mutex) }

    /// Releases the mutex.
    @inlinable public func unlock() { pthread_mutex_unlock(mutex) }

    /// Wakes every thread waiting on the condition (call with the mutex held).
    @inlinable public func broadcast() { pthread_cond_broadcast(condition) }

    /// Waits on the condition (with the mutex held; released while waiting, held again on
    /// return) until a `broadcast`, a spurious wake-up, or `deadline` on the
    /// `POSIX.monotonicNanoseconds()` clock (nil: no limit). False when the deadline passed.
    public func wait(until deadline: UInt64?) -> Bool {
        guard let deadline else {
            pthread_cond_wait(condition, mutex)
            return true
        }
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(condition, mutex, &time) != ETIMEDOUT
    }
}
