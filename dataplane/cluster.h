/*
 * cluster: one shard's part of the cluster (DESIGN.md, "The cluster"). Each
 * shard that runs with cluster.redis (or sentinels) has one: its own Redis
 * client (store/redis.h) on the shard's loop, the scripts it needs, the
 * device-id claims its DPS operations make, and, on shard 0 only, the
 * re-seed that writes the node's RocksDB bindings back into Redis when Redis
 * comes back empty.
 *
 * Keys, each after cluster.keyPrefix:
 *   binding:<owner key>:<device id>  -> record id   (the id is this identity's)
 *   identity:<owner key>:<record id> -> device id   (this identity has its one id)
 *   conflict:<owner key>:<device id> -> "<record> <record>" (a re-seed found the id
 *                                        held by two records), or "<record> holds <id>"
 *                                        (its record bound to another id): refused until
 *                                        released
 *   seeded:<node>                    -> this node's bindings are in Redis
 *
 * Everything but cluster_get_status() and cluster_stats_get() runs on the
 * shard's thread.
 */
#ifndef DPS_DATAPLANE_CLUSTER_H
#define DPS_DATAPLANE_CLUSTER_H

#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/domain.h"
#include "store/redis.h"

struct cluster;
struct loop;
struct store;

enum cluster_claim_result {
    CLUSTER_CLAIM_GRANTED,
    CLUSTER_CLAIM_ID_TAKEN,       /* another record holds the id (holder: its record id) */
    CLUSTER_CLAIM_IDENTITY_BOUND, /* this record holds another id (holder: that id) */
    CLUSTER_CLAIM_CONFLICT,       /* a re-seed found the id held twice */
    CLUSTER_CLAIM_UNAVAILABLE,    /* Redis did not answer in time, or is down */
};

/*
 * A claim in flight, owned by its caller (embedded in a DPS operation) from
 * cluster_claim() until done() is called, exactly once, on the shard's
 * thread: from the reply, or from cluster_stop() with UNAVAILABLE.
 */
struct cluster_claim {
    void (*done)(struct cluster_claim *claim);
    void *user;
    enum cluster_claim_result result;
    char holder[37];
    char owner_key[37]; /* the claim's, kept by cluster_claim() */
    char device_id[37];
};

/*
 * The claim's Lua source. KEYS: binding:<owner key>:<device id>,
 * identity:<owner key>:<record id>, conflict:<owner key>:<device id>; ARGV:
 * record id, device id. Returns {verdict, holder}. Public for bench-redis.
 */
extern const char cluster_claim_script_source[];

/* Copies what it needs from config; no connection yet. NULL with err. */
struct cluster *cluster_create(const struct config_cluster *config, unsigned shard_index,
                               struct store *store, char *err, size_t err_length);
/*
 * A Redis client on loop (run by the calling thread) for this configuration:
 * also for the control plane's own loop (control/cluster_sync.c), so the
 * address, Sentinel and credentials are read in one place. cluster is only
 * read; command_timeout_ms 0 takes the configured one. NULL with err.
 */
struct redis_client *cluster_client_create(const struct cluster *cluster, struct loop *loop,
                                           OSSL_LIB_CTX *library_context,
                                           unsigned command_timeout_ms,
                                           redis_state_fn *state_changed, void *user, char *err,
                                           size_t err_length);
/* This node's name in the cluster (cluster.node). */
const char *cluster_node(const struct cluster *cluster);

/* On the shard's thread once its loop exists: creates the client and starts connecting. */
int cluster_start(struct cluster *cluster, struct loop *loop, OSSL_LIB_CTX *library_context,
                  char *err, size_t err_length);
/* On the shard's thread before its loop goes: claims in flight are answered UNAVAILABLE. */
void cluster_stop(struct cluster *cluster);
void cluster_free(struct cluster *cluster);

/*
 * Claims device_id for record_id among owner_key's bindings (one EVALSHA).
 * 0 when sent (claim->done follows), -1 when Redis is not reachable now
 * (done is not called; the caller applies cluster_policy()).
 */
int cluster_claim(struct cluster *cluster, struct cluster_claim *claim, const char *owner_key,
                  const char *device_id, const char *record_id);

enum config_bindings_policy cluster_policy(const struct cluster *cluster);

/* The shard's Redis client, from cluster_start() to cluster_stop(), for the shard's other
 * users of Redis (dataplane/cluster_rate.h); and this node's name (cluster.node). */
struct redis_client;
struct redis_client *cluster_redis(struct cluster *cluster);
const char *cluster_node_name(const struct cluster *cluster);

/*
 * Whether this node knows owner_key's device_id to be in conflict (a re-seed
 * found it bound twice; learnt from its own re-seeds and claims and from the
 * other nodes' through Redis, forgotten on release). Renewals check it
 * without asking Redis, so both records are refused. Any thread.
 */
bool cluster_conflicted(const char *owner_key, const char *device_id);

/* A binding made while Redis was away (policy local): counted, logged, re-seeded later. */
void cluster_note_local_binding(struct cluster *cluster, const char *owner_key,
                                const char *device_id, const char *record_id);

/*
 * Any thread, from cluster_create() to cluster_free(). The client's counters
 * belong to the cluster, not to the client (config.counters): the shard's
 * thread adds to them while its client lives, and they stay readable after
 * cluster_stop() has destroyed it, so /metrics never touches a client. The
 * shard's other users of its client (dataplane/cluster_rate.c) count there
 * too; the control plane's own client (control/cluster_sync.c) does not.
 */
struct cluster_status {
    bool up;                  /* the client is READY */
    char state[16];           /* "connecting", "ready", "down" */
    char primary[96];         /* "host:port", a socket path, or "" */
    struct redis_stats redis; /* the shard's client's counters, since start */
};
void cluster_get_status(struct cluster *cluster, struct cluster_status *status);

/* Node-wide counters for /metrics (any thread). */
struct cluster_stats {
    uint64_t conflicts;      /* bindings a re-seed found held by two records */
    uint64_t unreconciled;   /* bindings made locally while Redis was away */
    uint64_t seeded;         /* bindings written into Redis by re-seeds */
    uint64_t claims;         /* claims Redis answered */
    uint64_t claims_refused; /* of which refused */
    uint64_t unavailable;    /* claims Redis did not answer */
};
void cluster_stats_get(struct cluster_stats *stats);

#endif
