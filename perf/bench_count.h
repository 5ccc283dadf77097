/*
 * bench_count: the command line of the micro-benchmarks that take only --count N.
 */
#ifndef DPS_PERF_BENCH_COUNT_H
#define DPS_PERF_BENCH_COUNT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* N of --count N (count when absent; 0 when N is not a number from 0 up), or -1 after a usage line
 * on stderr for any other argument. */
static inline long bench_count(int argc, char **argv, const char *program, long count)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") != 0 || i + 1 == argc) {
            fprintf(stderr, "usage: %s [--count N]\n", program);
            return -1;
        }
        char *end;
        count = strtol(argv[++i], &end, 10);
        if (end == argv[i] || *end != '\0' || count < 0)
            return 0; /* "10x" is not 10 */
    }
    return count;
}

#endif
