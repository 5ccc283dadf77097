/*
 * log: logfmt lines on stderr. Each line is formatted into a stack buffer of
 * at most LOG_LINE_MAX bytes and handed to a single write(2): below PIPE_BUF a
 * write to a pipe is atomic, so lines from different threads never interleave.
 * Over-long lines are cut and end with "..." so the line stays one line. The
 * level threshold is an atomic read, so log_set_level() may race with logging.
 */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static int log_threshold = LOG_INFO;

static const char *const level_names[] = {
    [LOG_DEBUG] = "debug",
    [LOG_INFO] = "info",
    [LOG_WARN] = "warn",
    [LOG_ERROR] = "error",
};

void log_set_level(enum log_level level)
{
    __atomic_store_n(&log_threshold, (int)level, __ATOMIC_RELAXED);
}

int log_parse_level(const char *name, enum log_level *level)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

/* Appends the message quoted, escaping what would break a logfmt value. */
static size_t append_quoted(char *line, size_t used, size_t limit, const char *text)
{
    if (used < limit)
        line[used++] = '"';
    for (const char *c = text; *c != '\0' && used + 2 < limit; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch == '"' || ch == '\\') {
            line[used++] = '\\';
            line[used++] = (char)ch;
        } else if (ch == '\n') {
            line[used++] = '\\';
            line[used++] = 'n';
        } else if (ch < 0x20 || ch == 0x7f) {
            line[used++] = ' ';
        } else {
            line[used++] = (char)ch;
        }
    }
    if (used < limit)
        line[used++] = '"';
    return used;
}

void log_msg(enum log_level level, const char *message, const char *fields_fmt, ...)
{
    if ((int)level < __atomic_load_n(&log_threshold, __ATOMIC_RELAXED))
        return;
    if ((unsigned)level > LOG_ERROR)
        level = LOG_ERROR;

    /* One byte is kept for the newline, which is always written. */
    char line[LOG_LINE_MAX];
    const size_t limit = sizeof(line) - 1;
    struct timespec now;
    struct tm utc;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);
    int n = snprintf(line, limit,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                     now.tv_nsec / 1000000, level_names[level]);
    size_t used = n < 0 ? 0 : (size_t)n;
    used = append_quoted(line, used, limit, message != NULL ? message : "");

    if (fields_fmt != NULL && fields_fmt[0] != '\0' && used + 1 < limit) {
        line[used++] = ' ';
        size_t start = used;
        va_list args;
        va_start(args, fields_fmt);
        n = vsnprintf(line + used, limit - used + 1, fields_fmt, args);
        va_end(args);
        if (n < 0) {
            used = start;
        } else if ((size_t)n > limit - used) {
            used = limit;
            memcpy(line + limit - 3, "...", 3);
        } else {
            used += (size_t)n;
        }
        /* A field value must not start a second line. */
        for (size_t i = start; i < used; i++) {
            if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
                line[i] = ' ';
        }
    }
    line[used++] = '\n';

    ssize_t written;
    do {
        written = write(STDERR_FILENO, line, used);
    } while (written < 0 && errno == EINTR);
}
