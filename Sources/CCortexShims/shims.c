/* GNU/Linux calls that Swift's Glibc module hides. */
#ifndef _GNU_SOURCE
#error CCortexShims must be built with _GNU_SOURCE
#endif
#include "CCortexShims.h"
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

int cortex_filesystem_type(const char *path, int64_t *type) {
    struct statfs info;
    int rc = statfs(path, &info);
    if (rc == 0) *type = (int64_t)info.f_type;
    return rc;
}
ssize_t cortex_getrandom(void *buffer, size_t count) { return getrandom(buffer, count, 0); }
int cortex_rename_exchange(const char *from, const char *to) {
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_EXCHANGE);
}
int cortex_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
short cortex_spawn_flag_setsid(void) { return (short)POSIX_SPAWN_SETSID; }
int cortex_spawn_addclosefrom(void *actions, int lowfd) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, lowfd);
}
int cortex_spawn_addchdir(void *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np((posix_spawn_file_actions_t *)actions, path);
}
int cortex_wifexited(int status) { return WIFEXITED(status); }
int cortex_wexitstatus(int status) { return WEXITSTATUS(status); }
int cortex_wifsignaled(int status) { return WIFSIGNALED(status); }
int cortex_wtermsig(int status) { return WTERMSIG(status); }
int cortex_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
int cortex_signalfd(const sigset_t *mask) { return signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC); }
int cortex_signalfd_record_size(void) { return (int)sizeof(struct signalfd_siginfo); }
int cortex_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

/* ---- Running as the user who asked (docs/decisions/022-requester-rights.md) ---- */
#include <errno.h>
#include <grp.h>
#include <linux/close_range.h>

int cortex_drop_privileges(uid_t uid, gid_t gid, const gid_t *groups, size_t group_count) {
    /* glibc applies each of these to every thread of the process. */
    if (setgroups(group_count, groups) != 0) return errno;
    if (setresgid(gid, gid, gid) != 0) return errno;
    if (setresuid(uid, uid, uid) != 0) return errno;
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0) return errno;
    if (ruid != uid || euid != uid || suid != uid || rgid != gid || egid != gid || sgid != gid) return EPERM;
    gid_t held[256];
    int count = getgroups(256, held);
    if (count < 0 || (size_t)count != group_count) return EPERM;
    for (int i = 0; i < count; i++) {
        if (held[i] != groups[i]) return EPERM;
    }
    if (uid != 0 && (setuid(0) == 0 || setgid(0) == 0)) return EPERM;
    return 0;
}

/* The child's half of cortex_spawn_as: raw system calls only (it is a copy of one thread of a
 * process that may have had many, so no lock, no allocation, no glibc setxid broadcast). */
static int child_prepare(const char *directory, int fd0, int fd1, int fd2, int new_session, const int *reset_signals,
                         size_t reset_count, uid_t uid, gid_t gid, const gid_t *groups, size_t group_count) {
    sigset_t none;
    sigemptyset(&none);
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, _NSIG / 8) != 0) return errno;
    struct sigaction defaults;
    memset(&defaults, 0, sizeof defaults);
    defaults.sa_handler = SIG_DFL;
    for (size_t i = 0; i < reset_count; i++) sigaction(reset_signals[i], &defaults, NULL);
    if (new_session && setsid() < 0) return errno;
    int sources[3] = {fd0, fd1, fd2};
    for (int target = 0; target < 3; target++) {
        int source = sources[target];
        if (source < 0) {
            source = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY);
            if (source < 0) return errno;
        }
        if (source == target) {
            if (fcntl(target, F_SETFD, 0) != 0) return errno;
        } else if (syscall(SYS_dup3, source, target, 0) < 0) {
            return errno;
        }
    }
    if (syscall(SYS_setgroups, group_count, groups) != 0) return errno;
    if (syscall(SYS_setresgid, gid, gid, gid) != 0) return errno;
    if (syscall(SYS_setresuid, uid, uid, uid) != 0) return errno;
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (syscall(SYS_getresuid, &ruid, &euid, &suid) != 0 || syscall(SYS_getresgid, &rgid, &egid, &sgid) != 0) return errno;
    if (ruid != uid || euid != uid || suid != uid || rgid != gid || egid != gid || sgid != gid) return EPERM;
    if (uid != 0 && syscall(SYS_setresuid, 0, 0, 0) == 0) return EPERM;
    if (directory != NULL && syscall(SYS_chdir, directory) != 0) return errno;
    /* Everything from 3 up closes at exec (the error pipe included). */
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd < 65536; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

int cortex_spawn_as(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *directory, int fd0,
                    int fd1, int fd2, int new_session, const int *reset_signals, size_t reset_count, uid_t uid, gid_t gid,
                    const gid_t *groups, size_t group_count) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    pid_t child = fork();
    if (child < 0) {
        int failure = errno;
        close(report[0]);
        close(report[1]);
        return failure;
    }
    if (child == 0) {
        close(report[0]);
        int failure = child_prepare(directory, fd0, fd1, fd2, new_session, reset_signals, reset_count, uid, gid, groups,
                                    group_count);
        if (failure == 0) {
            syscall(SYS_execve, path, argv, envp);
            failure = errno;
        }
        while (write(report[1], &failure, sizeof failure) < 0 && errno == EINTR) {
        }
        _exit(127);
    }
    close(report[1]);
    int failure = 0;
    ssize_t got;
    do {
        got = read(report[0], &failure, sizeof failure);
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof failure) {
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
        return failure == 0 ? EIO : failure;
    }
    *pid = child;
    return 0;
}

/* openat2(2) has no glibc wrapper before 2.32 and <linux/openat2.h> may be missing: the ABI is
   fixed (syscall 437 on every architecture, struct open_how of three u64), so it is spelled here. */
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
struct cortex_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};
int cortex_openat_beneath(int dirfd, const char *path, int flags, unsigned int mode) {
    struct cortex_open_how how = {(uint64_t)(unsigned int)flags, (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
                                  0x04 /* RESOLVE_NO_SYMLINKS */ | 0x08 /* RESOLVE_BENEATH */};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}
int cortex_renameat_exchange(int from_dirfd, const char *from, int to_dirfd, const char *to) {
    return renameat2(from_dirfd, from, to_dirfd, to, RENAME_EXCHANGE);
}

int cortex_futex_wait(const uint32_t *address, uint32_t expected, int64_t timeout_ms) {
    struct timespec timeout = {.tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000};
    return (int)syscall(SYS_futex, address, FUTEX_WAIT, expected, timeout_ms < 0 ? NULL : &timeout, NULL, 0);
}
int cortex_futex_ring(uint32_t *address) {
    return (int)syscall(SYS_futex, address, FUTEX_WAKE_OP, INT_MAX, NULL, address, FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0));
}
