/*
 * loadgen_stats: log-linear latency histograms and error class names (see
 * loadgen_stats.h). Values below 256 us have a bucket each; above, every
 * power of two is split into 128 equal buckets.
 */
#include "perf/loadgen_stats.h"

#include <stdio.h>
#include <string.h>

#define SUB_BUCKETS 128
#define LINEAR_LIMIT (2 * SUB_BUCKETS)

static int highest_bit(uint64_t value)
{
    return 63 - __builtin_clzll(value);
}

static size_t bucket_of(uint64_t value)
{
    if (value < LINEAR_LIMIT)
        return (size_t)value;
    int shift = highest_bit(value) - 7;
    size_t index =
        LINEAR_LIMIT + (size_t)(shift - 1) * SUB_BUCKETS + (size_t)((value >> shift) - SUB_BUCKETS);
    return index < HISTOGRAM_BUCKETS ? index : HISTOGRAM_BUCKETS - 1;
}

/* The highest value that falls in bucket index. */
static uint64_t bucket_top(size_t index)
{
    if (index < LINEAR_LIMIT)
        return index;
    int shift = (int)((index - LINEAR_LIMIT) / SUB_BUCKETS) + 1;
    uint64_t sub = (index - LINEAR_LIMIT) % SUB_BUCKETS + SUB_BUCKETS;
    return ((sub + 1) << shift) - 1;
}

void histogram_init(struct histogram *histogram)
{
    memset(histogram, 0, sizeof(*histogram));
}

void histogram_record(struct histogram *histogram, uint64_t value_us)
{
    if (histogram->count == 0 || value_us < histogram->min_us)
        histogram->min_us = value_us;
    if (value_us > histogram->max_us)
        histogram->max_us = value_us;
    histogram->count++;
    histogram->sum_us += (double)value_us;
    histogram->buckets[bucket_of(value_us)]++;
}

void histogram_merge(struct histogram *into, const struct histogram *from)
{
    if (from->count == 0)
        return;
    if (into->count == 0 || from->min_us < into->min_us)
        into->min_us = from->min_us;
    if (from->max_us > into->max_us)
        into->max_us = from->max_us;
    into->count += from->count;
    into->sum_us += from->sum_us;
    for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
}

uint64_t histogram_quantile(const struct histogram *histogram, double fraction)
{
    if (histogram->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(fraction * (double)histogram->count + 0.999999);
    uint64_t seen = 0;

    if (rank == 0)
        rank = 1;
    for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++) {
        seen += histogram->buckets[i];
        if (seen >= rank) {
            uint64_t top = bucket_top(i);
            return top < histogram->max_us ? top : histogram->max_us;
        }
    }
    return histogram->max_us;
}

const char *error_class_name(enum error_class class)
{
    static const char *const names[ERROR_CLASS_COUNT] = {
        [ERROR_NONE] = "none",     [ERROR_CONNECT] = "connect", [ERROR_TLS] = "tls",
        [ERROR_COAP] = "coap",     [ERROR_TIMEOUT] = "timeout", [ERROR_VALIDATION] = "validation",
        [ERROR_CLOSED] = "closed", [ERROR_DROPPED] = "dropped", [ERROR_OTHER] = "other",
    };
    return (unsigned)class < ERROR_CLASS_COUNT ? names[class] : "other";
}

void format_code(uint8_t code, char out[8])
{
    snprintf(out, 8, "%u.%02u", (unsigned)(code >> 5), (unsigned)(code & 31));
}
