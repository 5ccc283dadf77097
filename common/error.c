/*
 * error: the one writer of failure reasons (common/error.h).
 */
#include "common/error.h"

#include <stdio.h>
#include <string.h>

int error_vset(char *err, size_t err_length, const char *format, va_list args)
{
    if (err != NULL && err_length > 0)
        vsnprintf(err, err_length, format, args);
    return -1;
}

int error_set(char *err, size_t err_length, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    error_vset(err, err_length, format, args);
    va_end(args);
    return -1;
}

static void path_cut(char *out, int length)
{
    if (length >= ERROR_PATH_MAX)
        memcpy(out + ERROR_PATH_MAX - 4, "...", 4);
}

void error_path_child(char out[ERROR_PATH_MAX], const char *parent, const char *key)
{
    if (parent[0] == '\0')
        path_cut(out, snprintf(out, ERROR_PATH_MAX, "%s", key));
    else
        path_cut(out, snprintf(out, ERROR_PATH_MAX, "%s.%s", parent, key));
}

void error_path_index(char out[ERROR_PATH_MAX], const char *parent, size_t index)
{
    path_cut(out, snprintf(out, ERROR_PATH_MAX, "%s[%zu]", parent, index));
}
