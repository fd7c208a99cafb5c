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

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
__attribute__((target("sse4.2"))) static uint32_t cortex_crc32c_sse42(uint32_t crc, const unsigned char *bytes, size_t count) {
    uint64_t wide = crc;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        wide = _mm_crc32_u64(wide, word);
        bytes += 8;
        count -= 8;
    }
    crc = (uint32_t)wide;
    while (count > 0) {
        crc = _mm_crc32_u8(crc, *bytes++);
        count--;
    }
    return crc;
}
#endif
int cortex_crc32c_hardware(uint32_t *state, const void *bytes, size_t count) {
#if defined(__x86_64__)
    static int supported = -1;  // -1 unknown, 0 no, 1 yes: every thread computes the same value
    int known = __atomic_load_n(&supported, __ATOMIC_RELAXED);
    if (known < 0) {
        unsigned a, b, c, d;
        known = (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2)) ? 1 : 0;
        __atomic_store_n(&supported, known, __ATOMIC_RELAXED);
    }
    if (known) {
        *state = cortex_crc32c_sse42(*state, (const unsigned char *)bytes, count);
        return 1;
    }
#endif
    (void)state;
    (void)bytes;
    (void)count;
    return 0;
}
