/* GNU/Linux calls that Swift's Glibc module hides. */
#ifndef _GNU_SOURCE
#error CCortexShims must be built with _GNU_SOURCE
#endif
#include "CCortexShims.h"
#include <fcntl.h>
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
const void *cortex_memmem(const void *haystack, size_t haystack_length, const void *needle, size_t needle_length) {
    return memmem(haystack, haystack_length, needle, needle_length);
}
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
