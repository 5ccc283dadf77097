/*
 * error: the one writer of failure reasons (common/error.h).
 */
#include "common/error.h"

#include <stdio.h>

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
