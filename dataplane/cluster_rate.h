/*
 * cluster_rate: the signing rate limits of one shard (limits.signingRate and
 * limits.signingRatePerGroup), node-wide on a single node and cluster-wide in
 * a cluster (DESIGN.md, "The cluster").
 *
 * A single node keeps today's node-wide GCRA (dataplane/admission.h) for the
 * signing rate, and gives each shard an equal share of each group's rate.
 *
 * In a cluster both limits are GCRA buckets in Redis, under
 * cluster.keyPrefix:
 *   rate:signing       -> the theoretical arrival time of the cluster's bucket (us)
 *   rate:group:<id>    -> the same for one enrollment group
 *   rate:nodes         -> sorted set: node name scored by the time it last asked (ms)
 * A shard takes tokens in leases (dataplane/rate_lease.h): one EVALSHA of
 * lease_script takes up to n tokens of a bucket and answers how many it
 * granted, when the next will be there, and how many nodes asked within
 * NODE_TTL_MS (it registers this node as it does: shard 0 also asks for
 * nothing once a second so an idle node stays counted). Devices spend leased
 * tokens without waiting for Redis; refills go out before a lease runs out.
 * Per group the same leases, per group and shard: groups are few and each is
 * hit by all its devices, like the cluster's bucket.
 *
 * Redis unreachable (the shard's client is not READY, or the script fails):
 * the shard falls back to this node's share of each limit, the limit divided
 * by the live nodes last seen (the node-wide admission with rate / nodes for
 * the signing rate, a per-shard GCRA for groups), logs it once per node,
 * counts it in metrics, and goes back to leases as soon as its client is
 * READY again.
 *
 * Everything but cluster_rate_stats_get() runs on the shard's thread.
 */
#ifndef DPS_DATAPLANE_CLUSTER_RATE_H
#define DPS_DATAPLANE_CLUSTER_RATE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/domain.h"

struct admission;
struct cluster;
struct cluster_rate;
struct loop;

/*
 * Reads the limits of config (fixed until restart, like the signing rate
 * always was). node is the node-wide admission, shared by the shards. NULL
 * when memory runs out.
 */
struct cluster_rate *cluster_rate_create(const struct config *config, unsigned shard_index,
                                         struct admission *node);
/* On the shard's thread once its loop and cluster (NULL: single node) have started. 0 or -1. */
int cluster_rate_start(struct cluster_rate *rate, struct loop *loop, struct cluster *cluster);
/* On the shard's thread, before its cluster stops. */
void cluster_rate_stop(struct cluster_rate *rate);
void cluster_rate_free(struct cluster_rate *rate);

/*
 * One signing step of a device of group_id at now_ns (CLOCK_MONOTONIC): 0
 * when it may go on, or -1 with how long to wait before a retry may succeed
 * (the handlers answer 5.03 + Max-Age). Never waits for Redis.
 */
int cluster_rate_take(struct cluster_rate *rate, const char *group_id, int64_t now_ns,
                      int64_t *retry_after_ns);

/* Node-wide counters for /metrics (any thread). */
struct cluster_rate_stats {
    uint64_t leases;      /* lease replies from Redis */
    uint64_t granted;     /* tokens Redis granted in them */
    uint64_t admitted;    /* signing steps admitted */
    uint64_t refused;     /* signing steps refused (5.03) */
    uint64_t round_trips; /* lease scripts sent */
    uint64_t failures;    /* lease scripts that got no usable answer */
    unsigned fallback;    /* shards running on this node's share now */
    unsigned live_nodes;  /* as last seen in Redis; 1 before any answer */
};
void cluster_rate_stats_get(struct cluster_rate_stats *stats);

#endif
