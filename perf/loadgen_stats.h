/*
 * loadgen_stats: what a fleet run measures. Latency histograms are
 * HDR-style log-linear (microsecond resolution, 128 sub-buckets per power
 * of two, so under 1% error, up to about 12 days), cheap to record into
 * and to merge; each worker thread fills its own and the driver merges them.
 */
#ifndef DPS_LOADGEN_STATS_H
#define DPS_LOADGEN_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HISTOGRAM_BUCKETS (256 + 34 * 128)
/* Names the bucket layout in reports; merging needs the same on every side. */
#define HISTOGRAM_SCHEME "log-linear-us-128/1"

struct histogram {
    uint64_t count;
    uint64_t min_us;
    uint64_t max_us;
    double sum_us;
    uint64_t buckets[HISTOGRAM_BUCKETS];
};

void histogram_init(struct histogram *histogram);
void histogram_record(struct histogram *histogram, uint64_t value_us);
void histogram_merge(struct histogram *into, const struct histogram *from);
/* The value at or below which fraction (0..1] of the recordings fall; 0 when empty. */
uint64_t histogram_quantile(const struct histogram *histogram, double fraction);

/* Error classes of a failed attempt. */
enum error_class {
    ERROR_NONE,
    ERROR_CONNECT,    /* TCP connect refused or unreachable */
    ERROR_TLS,        /* handshake or record failure */
    ERROR_COAP,       /* an error response code (counted per code too) */
    ERROR_TIMEOUT,    /* no answer within --timeout */
    ERROR_VALIDATION, /* a response the device client would not apply */
    ERROR_CLOSED,     /* the server closed the connection before answering */
    ERROR_DROPPED,    /* the device itself dropped the connection mid-step (--drop-every) */
    ERROR_OTHER,
    ERROR_CLASS_COUNT,
};

const char *error_class_name(enum error_class class);

/* A CoAP code as reports print it: "4.03". */
void format_code(uint8_t code, char out[8]);

/* A CoAP code as reports print it: "4.03". */
void format_code(uint8_t code, char out[8]);

#endif
