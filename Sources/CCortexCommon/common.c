/* C shared by CCortexShims and CSupervisorLibc (see the header). */
#include "CCortexCommon.h"
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cortex_find_executable(const char *program, const char *search_path, char *found, size_t found_size) {
    size_t length = strlen(program);
    if (length == 0) return ENOENT;
    if (strchr(program, '/') != NULL) {
        if (length + 1 > found_size) return ENAMETOOLONG;
        memcpy(found, program, length + 1);
        return 0;
    }
    const char *entry = search_path != NULL ? search_path : "/usr/local/bin:/usr/bin:/bin";
    for (;;) {
        const char *end = strchr(entry, ':');
        size_t folder_length = end != NULL ? (size_t)(end - entry) : strlen(entry);
        const char *folder = folder_length == 0 ? "." : entry;
        if (folder_length == 0) folder_length = 1;
        if (folder_length + 1 + length + 1 <= found_size) {
            memcpy(found, folder, folder_length);
            found[folder_length] = '/';
            memcpy(found + folder_length + 1, program, length + 1);
            struct stat info;
            if (access(found, X_OK) == 0 && stat(found, &info) == 0 && !S_ISDIR(info.st_mode)) return 0;
        }
        if (end == NULL) return ENOENT;
        entry = end + 1;
    }
}
