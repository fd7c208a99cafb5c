#ifndef CCORTEX_SHIMS_H
#define CCORTEX_SHIMS_H

#include "CCortexCommon.h"
#include <stdint.h>
#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

/// Linux calls and macros that Swift's Glibc module does not expose (it is built
/// without _GNU_SOURCE). One-line forwarders only: logic stays in Swift, where it is tested.
/// The exceptions are the two privilege calls at the end: what runs between fork and exec must
/// be C (only raw system calls there), and both are tested through the tools (HostileProcessTests).

/// statfs(2)'s f_type for `path`, stored in *type. Returns 0 or -1 with errno set.
int cortex_filesystem_type(const char *path, int64_t *type);

/// getrandom(2) filling `count` bytes. Returns the count filled or -1 with errno set.
ssize_t cortex_getrandom(void *buffer, size_t count);


/// renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_EXCHANGE): swaps two names atomically.
int cortex_rename_exchange(const char *from, const char *to);

/// pipe2(fds, O_CLOEXEC).
int cortex_pipe_cloexec(int fds[2]);

/// The POSIX_SPAWN_SETSID flag value.
short cortex_spawn_flag_setsid(void);

/// posix_spawn_file_actions_addclosefrom_np(actions, lowfd).
int cortex_spawn_addclosefrom(void *actions, int lowfd);

/// posix_spawn_file_actions_addchdir_np(actions, path).
int cortex_spawn_addchdir(void *actions, const char *path);

/// W* macros from <sys/wait.h>.
int cortex_wifexited(int status);
int cortex_wexitstatus(int status);
int cortex_wifsignaled(int status);
int cortex_wtermsig(int status);

/// pidfd_open(2) through syscall(2) (glibc before 2.36 has no wrapper): a descriptor that polls
/// readable when process `pid` ends. Returns the descriptor or -1 with errno set (ENOSYS before Linux 5.3).
int cortex_pidfd_open(pid_t pid);

/// signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC). Returns the descriptor or -1 with errno set.
int cortex_signalfd(const sigset_t *mask);

/// sizeof(struct signalfd_siginfo): the size of one record read from a signalfd (ssi_signo is its first uint32).
int cortex_signalfd_record_size(void);

/// memfd_create(name, MFD_CLOEXEC): an anonymous file (for what a process hands to the program
/// it becomes; `POSIX.execute(keepingOpen:)` clears close-on-exec just before the exec, so no
/// other child ever inherits it). Returns the descriptor or -1 with errno set.
int cortex_memfd(const char *name);

/// Makes this process (every thread) run as `uid`/`gid` with exactly `groups`: setgroups,
/// setresgid, setresuid, then checks that real, effective and saved ids and the group list are
/// what was asked and, when `uid` is not 0, that the old ids cannot be regained. Irrevocable.
/// Returns 0, or an errno value (EPERM when the ids did not stick) with nothing guaranteed.
int cortex_drop_privileges(uid_t uid, gid_t gid, const gid_t *groups, size_t group_count);

/// Starts `path` (absolute; no PATH search) as a new process running as `uid`/`gid` with exactly
/// `groups` (the caller computed them before: the child does no user look-up): fork, then in the
/// child only raw system calls (an empty signal mask, default dispositions for `reset_signals`,
/// a new session when `new_session`, standard streams from `fd0`/`fd1`/`fd2` or /dev/null when
/// -1, `directory` when not NULL, setgroups + setresgid + setresuid on this thread alone, a check
/// that they stuck, every other descriptor closed) and execve. *pid gets the child's pid.
/// Returns 0, or the errno of the step that failed (the child then exits 127 without exec).
int cortex_spawn_as(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *directory, int fd0,
                    int fd1, int fd2, int new_session, const int *reset_signals, size_t reset_count, uid_t uid, gid_t gid,
                    const gid_t *groups, size_t group_count);

/// openat2(dirfd, path, {flags, mode, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS}) through syscall(2):
/// opens `path` only if it lies beneath `dirfd` and no component is a symbolic link. Returns the
/// descriptor or -1 with errno set (ELOOP for a link, EXDEV for an escape, ENOSYS before Linux 5.6).
int cortex_openat_beneath(int dirfd, const char *path, int flags, unsigned int mode);

/// renameat2(from_dirfd, from, to_dirfd, to, RENAME_EXCHANGE): swaps two names atomically.
int cortex_renameat_exchange(int from_dirfd, const char *from, int to_dirfd, const char *to);

/// futex(address, FUTEX_WAIT, expected, relative timeout) on a shared (file) mapping: sleeps while
/// *address == expected, at most `timeout_ms` milliseconds. Returns 0 when woken, or -1 with errno
/// set (EAGAIN: the value differed; ETIMEDOUT; EINTR; EFAULT: the page is gone, e.g. the file was
/// truncated - the kernel reports it here instead of raising SIGBUS).
int cortex_futex_wait(const uint32_t *address, uint32_t expected, int64_t timeout_ms);

/// futex(address, FUTEX_WAKE_OP, INT_MAX, 0, address, FUTEX_OP(ADD, 1, CMP_EQ, 0)) on a shared
/// (file) mapping: adds 1 to *address atomically in the kernel and wakes every waiter on it. A
/// page that is gone fails with EFAULT (no SIGBUS). Returns the number woken or -1 with errno set.
int cortex_futex_ring(uint32_t *address);

#endif
