#ifndef CCORTEX_COMMON_H
#define CCORTEX_COMMON_H

#include <stddef.h>

/// C shared by the library's shims (CCortexShims) and the Embedded Swift supervisor
/// (CSupervisorLibc): both umbrella headers include this one, so there is one copy of each
/// function and both sides behave the same.

/// The one executable lookup. Writes into `found` (of `found_size` bytes) the path of `program`:
/// `program` itself when it holds a '/'; else the first "FOLDER/program" for FOLDER in
/// `search_path` (a PATH value, ':'-separated; an empty entry means "."; NULL means
/// "/usr/local/bin:/usr/bin:/bin") that the caller may execute (access X_OK) and that is not a
/// folder. Returns 0, ENOENT when there is none (or `program` is empty), ENAMETOOLONG when
/// `program` itself does not fit in `found` (a candidate that does not fit is skipped).
int cortex_find_executable(const char *program, const char *search_path, char *found, size_t found_size);

#endif
