/*
 * keyfile: checks a private key file before it is loaded (keyfile.h). The
 * file is opened and the opened file is examined (fstat), so a symbolic link
 * is judged by what it points to and the answer is about the file the
 * loader will read.
 */
#include "crypto/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

static atomic_int process_policy = -1; /* -1: never set */

__attribute__((format(printf, 3, 4))) static void set_error(char *err, size_t err_length,
                                                            const char *fmt, ...)
{
    va_list args;

    if (err == NULL || err_length == 0)
        return;
    va_start(args, fmt);
    vsnprintf(err, err_length, fmt, args);
    va_end(args);
}

/* policy < 0: no judgement of the permissions. */
static int check(const char *path, int policy, char *err, size_t err_length)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

    if (fd < 0) {
        set_error(err, err_length, "cannot read private key %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        set_error(err, err_length, "cannot read private key %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    if (!S_ISREG(st.st_mode)) {
        set_error(err, err_length, "private key %s is not a regular file", path);
        return -1;
    }
    if (policy < 0 || (st.st_mode & 077) == 0)
        return 0;
    if (policy == KEYFILE_WARN) {
        log_msg(LOG_WARN, "private key file is accessible to group or others",
                "file=\"%s\" mode=%04o", path, (unsigned)(st.st_mode & 07777));
        return 0;
    }
    set_error(err, err_length,
              "private key %s is accessible to group or others (mode %04o): chmod 600 it, or set "
              "keyFilePermissions: warn",
              path, (unsigned)(st.st_mode & 07777));
    return -1;
}

int keyfile_check(const char *path, enum keyfile_policy policy, char *err, size_t err_length)
{
    return check(path, (int)policy, err, err_length);
}

void keyfile_set_policy(enum keyfile_policy policy)
{
    atomic_store(&process_policy, (int)policy);
}

int keyfile_check_loaded(const char *path, char *err, size_t err_length)
{
    return check(path, atomic_load(&process_policy), err, err_length);
}
