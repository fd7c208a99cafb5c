/* The C library surface of cortex-supervise (see the header). */
#ifndef _GNU_SOURCE
#error CSupervisorLibc must be built with _GNU_SOURCE
#endif
#include "CSupervisorLibc.h"
#include <sys/signalfd.h>
#include <sys/syscall.h>

extern char **environ;

static int saved_argc;
static char **saved_argv;

/* glibc calls .init_array functions with main's arguments, before main. */
static void save_arguments(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
}
__attribute__((section(".init_array"), used)) static void (*save_arguments_entry)(int, char **, char **) = save_arguments;

int supervisor_errno(void) { return errno; }
int supervisor_argc(void) { return saved_argc; }
char **supervisor_argv(void) { return saved_argv; }
char **supervisor_environ(void) { return environ; }
int supervisor_wifexited(int status) { return WIFEXITED(status); }
int supervisor_wexitstatus(int status) { return WEXITSTATUS(status); }
int supervisor_wtermsig(int status) { return WTERMSIG(status); }
int supervisor_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
int supervisor_signalfd(const sigset_t *mask) { return signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC); }
uint32_t supervisor_signalfd_signal(const void *record) { return ((const struct signalfd_siginfo *)record)->ssi_signo; }
int supervisor_signalfd_record_size(void) { return (int)sizeof(struct signalfd_siginfo); }
int supervisor_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
void supervisor_close_from(int lowest) { closefrom(lowest); }
short supervisor_spawn_flag_setsid(void) { return (short)POSIX_SPAWN_SETSID; }
int supervisor_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}
int supervisor_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int lowest) {
    return posix_spawn_file_actions_addclosefrom_np(actions, lowest);
}
int supervisor_open(const char *path, int flags, mode_t mode) { return open(path, flags, mode); }
int supervisor_set_nonblocking(int fd) { return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }
void supervisor_default_sigchld(void) { signal(SIGCHLD, SIG_DFL); }
int supervisor_in_group_folder(const char *directory) {
    struct stat info;
    if (stat(directory, &info) != 0) return 0;
    return S_ISDIR(info.st_mode) && (info.st_mode & S_ISGID) && (info.st_mode & S_IWGRP);
}
int supervisor_limit_address_space(unsigned long long bytes) {
    struct rlimit limit = {(rlim_t)bytes, (rlim_t)bytes};
    return setrlimit(RLIMIT_AS, &limit);
}
int supervisor_limit_cpu_seconds(unsigned long long seconds) {
    /* The hard limit one second later: SIGXCPU (which a report names) comes first. */
    struct rlimit limit = {(rlim_t)seconds, (rlim_t)seconds + 1};
    return setrlimit(RLIMIT_CPU, &limit);
}
int supervisor_write_text(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    size_t length = strlen(text);
    ssize_t written = write(fd, text, length);
    int saved = errno;
    close(fd);
    if (written == (ssize_t)length) return 0;
    errno = written < 0 ? saved : EIO;
    return -1;
}
int supervisor_touch(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK, 0660);
    if (fd < 0) return -1;
    struct stat info;
    if (fstat(fd, &info) == 0 && info.st_uid == geteuid() && (info.st_mode & 07777) != 0660) {
        /* Ours and not 0660 yet: in a group folder it must be, whatever the umask. */
        char directory[4096];
        size_t length = strnlen(path, sizeof directory - 1);
        memcpy(directory, path, length);
        directory[length] = 0;
        char *slash = strrchr(directory, '/');
        if (slash == directory) slash[1] = 0;
        else if (slash) *slash = 0;
        else strcpy(directory, ".");
        if (supervisor_in_group_folder(directory)) fchmod(fd, 0660);
    }
    int rc = futimens(fd, NULL);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}
