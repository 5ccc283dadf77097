/*
 * dps_counters: the DPS steps' counters for /metrics. Each shard counts in
 * its own block (dps_counters.h) and a read sums the blocks.
 */
#include "dataplane/dps_counters.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/coap_tcp.h"

const double dps_latency_bounds[DPS_LATENCY_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                        0.1,   0.25,   0.5,   1,    2.5,   5};

static pthread_mutex_t counters_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dps_counters *counters_list;
/* What stopped shards counted, so totals never go down. */
static struct dps_counters counters_retired;

struct dps_counters *dps_counters_new(void)
{
    struct dps_counters *counters = calloc(1, sizeof(*counters));
    if (counters == NULL)
        return NULL;
    pthread_mutex_lock(&counters_lock);
    counters->next = counters_list;
    counters_list = counters;
    pthread_mutex_unlock(&counters_lock);
    return counters;
}

static uint64_t counted(_Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

/* Adds from's counts to into (both under counters_lock). */
static void counters_add(struct dps_counters *into, struct dps_counters *from)
{
    for (size_t s = 0; s < STEP_COUNT; s++) {
        for (size_t c = 0; c < 3; c++)
            count(&into->steps[s].by_class[c], counted(&from->steps[s].by_class[c]));
        for (size_t b = 0; b <= DPS_LATENCY_BUCKETS; b++)
            count(&into->steps[s].latency_buckets[b], counted(&from->steps[s].latency_buckets[b]));
        count(&into->steps[s].latency_sum_ns, counted(&from->steps[s].latency_sum_ns));
    }
    count(&into->rate_limited, counted(&from->rate_limited));
    count(&into->busy, counted(&from->busy));
    count(&into->issued, counted(&from->issued));
    for (size_t r = 0; r < DPS_REFUSAL_COUNT; r++)
        count(&into->refused[r], counted(&from->refused[r]));
}

void dps_counters_free(struct dps_counters *counters)
{
    if (counters == NULL)
        return;
    pthread_mutex_lock(&counters_lock);
    struct dps_counters **link = &counters_list;
    while (*link != NULL && *link != counters)
        link = &(*link)->next;
    if (*link != NULL)
        *link = counters->next;
    counters_add(&counters_retired, counters);
    pthread_mutex_unlock(&counters_lock);
    free(counters);
}

static const char *const refusal_names[DPS_REFUSAL_COUNT] = {
    [DPS_REFUSED_RESERVED] = "reserved",
    [DPS_REFUSED_ID_TAKEN] = "id_taken",
    [DPS_REFUSED_IDENTITY_BOUND] = "identity_bound",
    [DPS_REFUSED_BLOCKED] = "blocked",
};

const char *dps_refusal_name(enum dps_refusal refusal)
{
    return (unsigned)refusal < DPS_REFUSAL_COUNT ? refusal_names[refusal] : "";
}

void dps_count_answer(struct dps_counters *counters, enum dps_step step, uint8_t code,
                      const struct timespec *started)
{
    struct step_counters *step_counters = &counters->steps[step];
    int class = code >> 5;
    count(&step_counters->by_class[class == 2 ? 0 : class == 4 ? 1 : 2], 1);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns =
        (int64_t)(now.tv_sec - started->tv_sec) * 1000000000 + (now.tv_nsec - started->tv_nsec);
    size_t bucket = 0;
    while (bucket < DPS_LATENCY_BUCKETS && (double)ns / 1e9 > dps_latency_bounds[bucket]) {
        bucket++;
    }
    count(&step_counters->latency_buckets[bucket], 1);
    count(&step_counters->latency_sum_ns, (uint64_t)(ns > 0 ? ns : 0));
    if (code == COAP_SERVICE_UNAVAILABLE) {
        count(&counters->busy, 1);
    }
}

void dps_stats_get(struct dps_stats *stats)
{
    struct dps_counters sum;
    memset(&sum, 0, sizeof(sum));
    pthread_mutex_lock(&counters_lock);
    counters_add(&sum, &counters_retired);
    for (struct dps_counters *counters = counters_list; counters != NULL; counters = counters->next)
        counters_add(&sum, counters);
    pthread_mutex_unlock(&counters_lock);

    memset(stats, 0, sizeof(*stats));
    for (size_t s = 0; s < STEP_COUNT; s++) {
        struct dps_step_stats *out = &stats->steps[s];
        out->name = dps_step_routes[s].record_part;
        for (size_t c = 0; c < 3; c++) {
            out->by_class[c] = counted(&sum.steps[s].by_class[c]);
        }
        for (size_t b = 0; b <= DPS_LATENCY_BUCKETS; b++) {
            out->latency_buckets[b] = counted(&sum.steps[s].latency_buckets[b]);
        }
        out->latency_sum_s = (double)counted(&sum.steps[s].latency_sum_ns) / 1e9;
    }
    stats->rate_limited = counted(&sum.rate_limited);
    stats->busy = counted(&sum.busy);
    stats->certificates_issued = counted(&sum.issued);
    for (size_t r = 0; r < DPS_REFUSAL_COUNT; r++) {
        stats->device_id_refused[r] = counted(&sum.refused[r]);
    }
}
