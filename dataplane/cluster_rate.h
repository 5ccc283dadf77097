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
 * Per source address (limits.signingRatePerSource) leases would strand
 * tokens (sources are many, each seen a few times), so each signing step of
 * a limited source asks Redis directly: one EVALSHA of the same GCRA on
 *   rate:source:<address> -> the source's bucket (it expires once full again)
 * which makes the decision asynchronous (cluster_rate_admit()). A single
 * node, or a node whose Redis is away, keeps the same limit node-wide in
 * this process (dataplane/source_rate.h), at its share of it in a cluster.
 * The source step comes last, after the local ones: a step refused there
 * gives its group and signing tokens back, and steps the cluster's limits
 * refuse never cost a round trip.
 *
 * A step that finds its lease's tokens and credit spent while a refill is on
 * its way waits for a refill's answer (rate_lease.h) rather than being
 * refused: at most RATE_LEASE_TURNS answers per limit, each within the
 * Redis client's command deadline.
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
#include "dataplane/source_rate.h"

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

enum cluster_rate_verdict {
    CLUSTER_RATE_ADMITTED,
    CLUSTER_RATE_REFUSED, /* retry_after_ns: when a retry may succeed (5.03 + Max-Age) */
    CLUSTER_RATE_PENDING, /* done() follows */
};

#define CLUSTER_RATE_GROUP_MAX 40

/*
 * One signing step's decision, owned by its caller (embedded in a DPS
 * operation). The caller fills done, user, group_id and source (an address
 * as source_rate_key() gives it, "" for none); cluster_rate_admit() answers
 * at once, or PENDING: then the shard's cluster_rate holds the request (in a
 * lease's waiters or in a Redis call) until done() is called, exactly once,
 * on the shard's thread, with verdict and retry_after_ns set: from a Redis
 * reply, or from the Redis client's end when the shard stops (REFUSED).
 */
struct cluster_rate_request {
    void (*done)(struct cluster_rate_request *request);
    void *user;
    char group_id[CLUSTER_RATE_GROUP_MAX];
    char source[SOURCE_RATE_KEY_MAX];
    enum cluster_rate_verdict verdict;
    int64_t retry_after_ns;
    /* cluster_rate's own from here */
    struct cluster_rate *rate;
    struct cluster_rate_request *next;
    unsigned stage;
    bool waiting;           /* in a lease's waiters */
    unsigned turns;         /* refill answers it had at this stage */
    unsigned group_taken;   /* how its group token was taken, to give it back */
    unsigned signing_taken; /* the same for the signing token */
};

/*
 * One signing step at now_ns (CLOCK_MONOTONIC) through every limit: its
 * group's, the signing rate, its source's. ADMITTED or REFUSED at once, or
 * PENDING (done() follows). A request without done never waits: the
 * limits then decide at once, the source's at this node's share.
 */
enum cluster_rate_verdict cluster_rate_admit(struct cluster_rate *rate,
                                             struct cluster_rate_request *request, int64_t now_ns);

/* Node-wide counters for /metrics (any thread). */
struct cluster_rate_stats {
    uint64_t leases;             /* lease replies from Redis */
    uint64_t granted;            /* tokens Redis granted in them */
    uint64_t admitted;           /* signing steps admitted */
    uint64_t refused;            /* signing steps refused (5.03) */
    uint64_t round_trips;        /* lease scripts sent */
    uint64_t failures;           /* lease scripts that got no usable answer */
    uint64_t source_admitted;    /* steps the per-source limit admitted */
    uint64_t source_refused;     /* and refused (5.03) */
    uint64_t source_round_trips; /* per-source scripts sent */
    uint64_t source_failures;    /* of which without a usable answer (decided locally) */
    uint64_t waits;              /* steps that waited for a lease's refill */
    unsigned fallback;           /* shards running on this node's share now */
    unsigned live_nodes;         /* as last seen in Redis; 1 before any answer */
};
void cluster_rate_stats_get(struct cluster_rate_stats *stats);

#endif
