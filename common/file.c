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
