/*
 * file: see file.h. Reads through one open descriptor, so the size check and
 * the bytes read are of the same file even when it is replaced meanwhile.
 */
#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

char *file_read_text(const char *path, size_t limit, size_t *length, char *err, size_t err_length)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_length, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t capacity = 4096, used = 0;
    char *text = malloc(capacity + 1);
    for (;;) {
        if (text == NULL) {
            snprintf(err, err_length, "cannot read %s: out of memory", path);
            break;
        }
        if (used == capacity) {
            if (capacity > limit) {
                break;
            }
            capacity = capacity * 2 > limit + 1 ? limit + 1 : capacity * 2;
            char *grown = realloc(text, capacity + 1);
            if (grown == NULL) {
                OPENSSL_clear_free(text, used);
                text = NULL;
                continue;
            }
            text = grown;
        }
        ssize_t n = read(fd, text + used, capacity - used);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            snprintf(err, err_length, "cannot read %s: %s", path, strerror(errno));
            OPENSSL_clear_free(text, used);
            text = NULL;
            break;
        }
        if (n == 0) {
            break;
        }
        used += (size_t)n;
        if (used > limit) {
            break;
        }
    }
    close(fd);
    if (text == NULL) {
        return NULL;
    }
    if (used > limit) {
        snprintf(err, err_length, "%s is larger than %zu bytes", path, limit);
        OPENSSL_clear_free(text, used);
        return NULL;
    }
    text[used] = '\0';
    if (length != NULL) {
        *length = used;
    }
    return text;
}

void file_free_secret(char *text)
{
    if (text != NULL) {
        OPENSSL_clear_free(text, strlen(text));
    }
}

static int check_dir(const char *folder, char *err, size_t err_length)
{
    struct stat st;
    if (stat(folder, &st) != 0) {
        snprintf(err, err_length, "cannot use folder %s: %s", folder, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, err_length, "%s is not a folder", folder);
        return -1;
    }
    if ((st.st_mode & 022) != 0) {
        snprintf(err, err_length,
                 "folder %s is writable by group or others (mode %04o): they could replace "
                 "what dpsd reads or writes there; run chmod go-w %s (dpsd creates its folders "
                 "0700)",
                 folder, (unsigned)(st.st_mode & 07777), folder);
        return -1;
    }
    return 0;
}

int file_private_dir(const char *folder, char *err, size_t err_length)
{
    if (mkdir(folder, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_length, "cannot create folder %s: %s", folder, strerror(errno));
        return -1;
    }
    return check_dir(folder, err, err_length);
}

int file_check_dir_of(const char *path, char *err, size_t err_length)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return check_dir(".", err, err_length);
    if (slash == path)
        return check_dir("/", err, err_length);
    char *folder = strndup(path, (size_t)(slash - path));
    if (folder == NULL) {
        snprintf(err, err_length, "out of memory");
        return -1;
    }
    int rc = check_dir(folder, err, err_length);
    free(folder);
    return rc;
}
