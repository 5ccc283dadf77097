/*
 * log: the one logging API. Lines go to stderr as logfmt
 * (ts=... level=... msg="..." key=value ...), one line per event, written
 * with a single write(2) so threads never interleave within a line.
 * Never pass private keys or tokens.
 */
#ifndef DPS_LOG_H
#define DPS_LOG_H

enum log_level {
    LOG_DEBUG,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
};

void log_set_level(enum log_level level);
int log_parse_level(const char *name, enum log_level *level); /* 0 or -1 */

/* fmt produces the rest of the line after msg, e.g. log_msg(LOG_INFO, "listening", "addr=%s", a).
 */
void log_msg(enum log_level level, const char *message, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
