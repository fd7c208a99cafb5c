#ifndef CSUPERVISOR_LIBC_H
#define CSUPERVISOR_LIBC_H

/// The C library as `cortex-supervise` sees it. That executable is built with Embedded Swift,
/// which has no Glibc module: the headers it needs are included here, and the few things Swift
/// cannot reach directly (errno, macros, the process's arguments) are one-line forwarders.

#include "CCortexCommon.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/// The calling thread's errno.
int supervisor_errno(void);

/// The process's argument count and vector, as the C runtime passed them to main.
int supervisor_argc(void);
char **supervisor_argv(void);

/// The process's environment (`environ`).
char **supervisor_environ(void);

/// W* macros from <sys/wait.h>.
int supervisor_wifexited(int status);
int supervisor_wexitstatus(int status);
int supervisor_wtermsig(int status);

/// pidfd_open(2) (glibc before 2.36 has no wrapper): a descriptor, close-on-exec, that polls
/// readable when process `pid` ends; -1 with errno set (ENOSYS before Linux 5.3).
int supervisor_pidfd_open(pid_t pid);

/// signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC).
int supervisor_signalfd(const sigset_t *mask);

/// The signal number of each record a signalfd read returned; the size of one record.
uint32_t supervisor_signalfd_signal(const void *record);
int supervisor_signalfd_record_size(void);

/// pipe2(fds, O_CLOEXEC).
int supervisor_pipe(int fds[2]);

/// Closes every descriptor from `lowest` up (closefrom(3)).
void supervisor_close_from(int lowest);

/// The POSIX_SPAWN_SETSID flag value.
short supervisor_spawn_flag_setsid(void);

/// posix_spawn_file_actions_addchdir_np and posix_spawn_file_actions_addclosefrom_np.
int supervisor_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);
int supervisor_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int lowest);

/// open(2) with a mode (Swift cannot call the variadic one).
int supervisor_open(const char *path, int flags, mode_t mode);

/// Sets O_NONBLOCK on `fd` (fcntl(2) is variadic too).
int supervisor_set_nonblocking(int fd);

/// Puts SIGCHLD back to its default disposition (SIG_DFL is a cast Swift cannot import here).
void supervisor_default_sigchld(void);

/// Sets the modification and access times of `path` to now, creating it if missing: 0660 under
/// the umask (worker files are never readable by others), exactly 0660 in a group folder.
int supervisor_touch(const char *path);

/// 1 when `directory` is a set-group-ID folder its group may write (a group folder, whose files
/// are 0660 whatever the umask: docs/decisions/023-shared-folders.md), else 0.
int supervisor_in_group_folder(const char *directory);

/// setrlimit(RLIMIT_AS) to `bytes` (soft and hard): every allocation past it fails, per process.
int supervisor_limit_address_space(unsigned long long bytes);

/// setrlimit(RLIMIT_CPU): SIGXCPU after `seconds` of CPU time, SIGKILL one second later.
int supervisor_limit_cpu_seconds(unsigned long long seconds);

/// Writes `text` to the existing file `path` in one write(2) (a cgroup control file); 0 or -1
/// with errno set.
int supervisor_write_text(const char *path, const char *text);

#endif
