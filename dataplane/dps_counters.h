/*
 * dps_counters: a shard's step counters (dps_services.counters), shared by
 * the DPS handlers' files; dps_handlers.h has what /metrics reads.
 */
#ifndef DPS_DATAPLANE_DPS_COUNTERS_H
#define DPS_DATAPLANE_DPS_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "dataplane/dps_handlers.h"

/*
 * Each shard counts in its own block, written only on its thread (relaxed
 * atomics on memory no other shard writes), and a read sums the blocks: the
 * hot path shares no cache line between shards. The registry is touched only
 * when a shard starts or stops and when /metrics is read.
 */
struct step_counters {
    _Atomic uint64_t by_class[3];
    _Atomic uint64_t latency_buckets[DPS_LATENCY_BUCKETS + 1];
    _Atomic uint64_t latency_sum_ns;
};

struct dps_counters {
    struct step_counters steps[STEP_COUNT];
    _Atomic uint64_t rate_limited;
    _Atomic uint64_t busy;
    _Atomic uint64_t issued;
    _Atomic uint64_t refused[DPS_REFUSAL_COUNT];
    struct dps_counters *next;
};

/* Adds n to a counter of the shard's own block. */
static inline void count(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

/* Counts an answer of step with code, and its latency since started (CLOCK_MONOTONIC). */
void dps_count_answer(struct dps_counters *counters, enum dps_step step, uint8_t code,
                      const struct timespec *started);

#endif
