/*
 * cluster_rate: a shard's signing limits (see cluster_rate.h for the keys).
 *
 * lease_script is GCRA over several tokens at once: with TAT the bucket's
 * theoretical arrival time (never before now), T the interval and tau the
 * tolerance ((burst - 1) x T), k tokens fit when TAT + (k - 1) T - now <= tau,
 * so it grants min(wanted, floor((now + tau - TAT) / T) + 1), moves TAT by
 * granted x T, and says the next token is there at TAT - tau. Time is the
 * Redis server's (TIME), so nodes' clocks never matter. The same call
 * registers the node in rate:nodes and answers how many nodes asked within
 * NODE_TTL_MS: each reply refreshes the share used when Redis is away.
 *
 * Leases are sized so that what the whole cluster holds at once stays a small
 * part of a second's rate: RATE_LEASE_WINDOW_MS of the rate split over the
 * node's shards (at least 1, at most the burst). A shard may also owe up to
 * CREDIT_LEASES leases, within its share of the burst (rate_lease.h). With n
 * nodes the cluster can thus admit above the limit, in any window, the
 * bucket's burst plus about n x 250 ms of the rate.
 *
 * A refused step does not keep a token: a group's token taken before the
 * cluster's bucket refused is given back to the shard.
 */
#include "dataplane/cluster_rate.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hash.h"
#include "common/log.h"
#include "dataplane/admission.h"
#include "dataplane/cluster.h"
#include "dataplane/loop.h"
#include "dataplane/rate_lease.h"
#include "store/redis.h"

#define NODE_TTL_MS 5000
#define TICK_MS 1000
#define CREDIT_LEASES 4
#define GROUP_ID_MAX CLUSTER_RATE_GROUP_MAX
#define RATE_KEY_MAX 64

static const char lease_script_source[] =
    "redis.replicate_commands()\n"
    "local clock = redis.call('TIME')\n"
    "local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])\n"
    "local interval = tonumber(ARGV[1])\n"
    "local tolerance = tonumber(ARGV[2])\n"
    "local wanted = tonumber(ARGV[3])\n"
    "local granted = 0\n"
    "local next_us = 0\n"
    "if interval > 0 then\n"
    "  local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
    "  if tat < now then tat = now end\n"
    "  local available = math.floor((now + tolerance - tat) / interval) + 1\n"
    "  if available > 0 then granted = math.min(wanted, available) end\n"
    "  if granted > 0 then\n"
    "    tat = tat + granted * interval\n"
    "    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX',\n"
    "               math.floor((tat - now) / 1000) + 1000)\n"
    "  end\n"
    "  next_us = tat - tolerance - now\n"
    "  if next_us < 0 then next_us = 0 end\n"
    "end\n"
    "local nodes = 0\n"
    "if #KEYS > 1 then\n"
    "  local now_ms = math.floor(now / 1000)\n"
    "  redis.call('ZADD', KEYS[2], now_ms, ARGV[4])\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - tonumber(ARGV[5]))\n"
    "  nodes = redis.call('ZCARD', KEYS[2])\n"
    "end\n"
    "return {granted, next_us, nodes}\n";

/* Steps waiting for a lease's refill, first come first served. */
struct waiters {
    struct cluster_rate_request *head;
    struct cluster_rate_request *tail;
};

/* One group's limit on this shard: its lease, and its share when there is no Redis. */
struct group_bucket {
    char id[GROUP_ID_MAX]; /* "" : a free slot */
    struct rate_lease lease;
    struct waiters waiters;
    int64_t arrival_ns; /* GCRA of this shard's share */
};

/* The limits a step goes through, in order; then STAGE_DONE. */
enum stage { STAGE_GROUP, STAGE_SIGNING, STAGE_SOURCE, STAGE_DONE };

/* How a token was taken (request->group_taken, signing_taken), so it can be given back. */
enum taken { TAKEN_NONE, TAKEN_LEASE, TAKEN_SHARE };

struct cluster_rate {
    unsigned shard_index;
    struct admission *node;
    unsigned signing_rate;
    unsigned signing_burst;
    unsigned group_rate;
    unsigned group_burst;
    unsigned source_rate;
    unsigned source_burst;
    struct source_rate *sources; /* node-wide (see node_sources) */

    struct cluster *cluster; /* NULL: a single node */
    struct redis_client *client;
    struct redis_script *script;
    struct loop_timer *tick; /* every TICK_MS: the fallback's state; shard 0 registers the node */
    bool stopping;
    bool fallback;      /* on this node's share now */
    bool script_failed; /* the last lease script got an error reply */

    struct rate_lease signing;
    struct waiters signing_waiters;
    struct rate_lease *answering; /* whose waiters are having their turn */
    struct group_bucket *groups;  /* open addressing, a power of two */
    size_t group_slots;
    size_t group_count;
};

/* A lease script in flight. */
struct lease_call {
    struct cluster_rate *rate;
    char group_id[GROUP_ID_MAX]; /* "": the cluster's signing bucket */
    bool heartbeat;
    unsigned wanted;
};

/*
 * The node's per-source table, shared by its shards: made by the first
 * shard that needs it, freed with the last (configuration is fixed until
 * restart, so every shard agrees on whether it is needed).
 */
static pthread_mutex_t node_sources_lock = PTHREAD_MUTEX_INITIALIZER;
static struct source_rate *node_sources;
static unsigned node_sources_users;

static _Atomic unsigned shard_count;
static _Atomic unsigned fallback_shards;
static _Atomic unsigned live_nodes = 1;
static _Atomic uint64_t leases_total;
static _Atomic uint64_t granted_total;
static _Atomic uint64_t admitted_total;
static _Atomic uint64_t refused_total;
static _Atomic uint64_t round_trips_total;
static _Atomic uint64_t failures_total;
static _Atomic uint64_t source_admitted_total;
static _Atomic uint64_t source_refused_total;
static _Atomic uint64_t source_round_trips_total;
static _Atomic uint64_t source_failures_total;
static _Atomic uint64_t waits_total;

struct cluster_rate *cluster_rate_create(const struct config *config, unsigned shard_index,
                                         struct admission *node)
{
    struct cluster_rate *rate = calloc(1, sizeof(*rate));
    if (rate == NULL)
        return NULL;
    rate->shard_index = shard_index;
    rate->node = node;
    rate->signing_rate = config->signing_rate;
    rate->signing_burst = config->signing_burst;
    rate->group_rate = config->signing_rate_per_group;
    rate->group_burst = config->signing_burst_per_group;
    rate->source_rate = config->signing_rate_per_source;
    rate->source_burst = config->signing_burst_per_source;
    if (rate->source_rate > 0) {
        pthread_mutex_lock(&node_sources_lock);
        if (node_sources == NULL)
            node_sources = source_rate_create();
        if (node_sources != NULL)
            node_sources_users++;
        rate->sources = node_sources;
        pthread_mutex_unlock(&node_sources_lock);
        if (rate->sources == NULL) {
            free(rate);
            return NULL;
        }
    }
    atomic_fetch_add(&shard_count, 1);
    return rate;
}

static unsigned shards(void)
{
    unsigned count = atomic_load(&shard_count);
    return count > 0 ? count : 1;
}

static void tick(void *arg);

/* What a lease of size may owe: CREDIT_LEASES leases, within the shard's share of burst. */
static unsigned credit(unsigned size, unsigned burst)
{
    unsigned share = burst / shards();
    return share < CREDIT_LEASES * size ? share : CREDIT_LEASES * size;
}

int cluster_rate_start(struct cluster_rate *rate, struct loop *loop, struct cluster *cluster)
{
    unsigned size = rate_lease_size(rate->signing_rate, rate->signing_burst, shards());
    rate_lease_init(&rate->signing, size, credit(size, rate->signing_burst));
    if (cluster == NULL ||
        (rate->signing_rate == 0 && rate->group_rate == 0 && rate->source_rate == 0))
        return 0;
    rate->cluster = cluster;
    rate->client = cluster_redis(cluster);
    rate->script = redis_script_register(rate->client, lease_script_source);
    if (rate->script == NULL)
        return -1;
    rate->tick = loop_timer_create(loop, tick, rate);
    if (rate->tick == NULL)
        return -1;
    loop_timer_start(rate->tick, 0, TICK_MS);
    return 0;
}

static void set_fallback(struct cluster_rate *rate, bool fallback)
{
    if (rate->fallback == fallback)
        return;
    rate->fallback = fallback;
    if (fallback) {
        if (atomic_fetch_add(&fallback_shards, 1) == 0)
            log_msg(LOG_WARN, "rate limits on this node's share",
                    "reason=\"redis %s\" live_nodes=%u signing_rate=%u",
                    rate->script_failed ? "script failed"
                                        : redis_state_name(redis_client_state(rate->client)),
                    atomic_load(&live_nodes), rate->signing_rate);
    } else if (atomic_fetch_sub(&fallback_shards, 1) == 1) {
        log_msg(LOG_INFO, "rate limits cluster-wide again", "live_nodes=%u",
                atomic_load(&live_nodes));
    }
}

void cluster_rate_stop(struct cluster_rate *rate)
{
    if (rate == NULL)
        return;
    rate->stopping = true;
    if (rate->tick != NULL) {
        loop_timer_destroy(rate->tick);
        rate->tick = NULL;
    }
    set_fallback(rate, false);
}

void cluster_rate_free(struct cluster_rate *rate)
{
    if (rate == NULL)
        return;
    atomic_fetch_sub(&shard_count, 1);
    if (rate->sources != NULL) {
        pthread_mutex_lock(&node_sources_lock);
        if (--node_sources_users == 0) {
            source_rate_free(node_sources);
            node_sources = NULL;
        }
        pthread_mutex_unlock(&node_sources_lock);
    }
    free(rate->groups);
    free(rate);
}

/* ---- groups ---- */

static struct group_bucket *group_find(struct cluster_rate *rate, const char *id, bool create)
{
    if (rate->group_slots > 0) {
        for (size_t i = (size_t)hash_text(id) & (rate->group_slots - 1);;
             i = (i + 1) & (rate->group_slots - 1)) {
            struct group_bucket *bucket = &rate->groups[i];
            if (strcmp(bucket->id, id) == 0)
                return bucket;
            if (bucket->id[0] == '\0')
                break;
        }
    }
    if (!create || strlen(id) >= GROUP_ID_MAX || id[0] == '\0')
        return NULL;
    if (2 * (rate->group_count + 1) > rate->group_slots) {
        size_t slots = rate->group_slots > 0 ? 2 * rate->group_slots : 16;
        struct group_bucket *grown = calloc(slots, sizeof(*grown));
        if (grown == NULL)
            return NULL;
        for (size_t i = 0; i < rate->group_slots; i++) {
            if (rate->groups[i].id[0] == '\0')
                continue;
            size_t j = (size_t)hash_text(rate->groups[i].id) & (slots - 1);
            while (grown[j].id[0] != '\0')
                j = (j + 1) & (slots - 1);
            grown[j] = rate->groups[i];
        }
        free(rate->groups);
        rate->groups = grown;
        rate->group_slots = slots;
    }
    size_t i = (size_t)hash_text(id) & (rate->group_slots - 1);
    while (rate->groups[i].id[0] != '\0')
        i = (i + 1) & (rate->group_slots - 1);
    struct group_bucket *bucket = &rate->groups[i];
    snprintf(bucket->id, sizeof(bucket->id), "%s", id);
    unsigned size = rate_lease_size(rate->group_rate, rate->group_burst, shards());
    rate_lease_init(&bucket->lease, size, credit(size, rate->group_burst));
    bucket->arrival_ns = 0;
    rate->group_count++;
    return bucket;
}

/* This shard's share of a group's limit (its part of the node's share), as GCRA. */
static int group_share_take(struct cluster_rate *rate, struct group_bucket *bucket, int64_t now_ns,
                            int64_t *retry_after_ns)
{
    unsigned shares = shards() * (rate->fallback ? atomic_load(&live_nodes) : 1);
    int64_t interval_ns = (int64_t)(1e9 * shares / rate->group_rate);
    unsigned burst = rate->group_burst / shares > 0 ? rate->group_burst / shares : 1;
    int64_t tolerance_ns = (int64_t)(burst - 1) * interval_ns;
    int64_t start = bucket->arrival_ns > now_ns ? bucket->arrival_ns : now_ns;
    if (start - now_ns > tolerance_ns) {
        *retry_after_ns = start - tolerance_ns - now_ns;
        return -1;
    }
    bucket->arrival_ns = start + interval_ns;
    return 0;
}

static void group_give_back(struct cluster_rate *rate, struct group_bucket *bucket,
                            enum taken taken)
{
    if (taken == TAKEN_LEASE) {
        bucket->lease.tokens++;
        return;
    }
    unsigned shares = shards() * (rate->fallback ? atomic_load(&live_nodes) : 1);
    bucket->arrival_ns -= (int64_t)(1e9 * shares / rate->group_rate);
}

/* ---- leases ---- */

static void lease_reply(void *user, enum redis_status status, const struct redis_reply *reply);

/* Sends a lease script: 0, or -1 when it could not go (the lease is told it failed). */
static int lease_send(struct cluster_rate *rate, struct rate_lease *lease, const char *group_id,
                      double limit, unsigned burst, unsigned wanted)
{
    struct lease_call *call = calloc(1, sizeof(*call));
    char bucket_key[RATE_KEY_MAX], interval[24], tolerance[24], count[16], ttl[16];
    if (call == NULL) {
        if (lease != NULL)
            rate_lease_failed(lease);
        return -1;
    }
    call->rate = rate;
    call->heartbeat = lease == NULL;
    call->wanted = wanted;
    snprintf(call->group_id, sizeof(call->group_id), "%s", group_id);
    long long interval_us = limit > 0 ? (long long)(1e6 / limit) : 0;
    if (limit > 0 && interval_us < 1)
        interval_us = 1;
    if (group_id[0] != '\0')
        snprintf(bucket_key, sizeof(bucket_key), "rate:group:%s", group_id);
    else
        snprintf(bucket_key, sizeof(bucket_key), "rate:signing");
    snprintf(interval, sizeof(interval), "%lld", interval_us);
    snprintf(tolerance, sizeof(tolerance), "%lld",
             (long long)(burst > 0 ? burst - 1 : 0) * interval_us);
    snprintf(count, sizeof(count), "%u", wanted);
    snprintf(ttl, sizeof(ttl), "%u", NODE_TTL_MS);
    const char *keys[] = {bucket_key, "rate:nodes"};
    const char *args[] = {interval, tolerance, count, cluster_node_name(rate->cluster), ttl};
    if (redis_script_call(rate->client, rate->script, lease_reply, call, 2, keys, NULL, 5, args,
                          NULL) != REDIS_STATUS_OK) {
        free(call);
        atomic_fetch_add(&failures_total, 1);
        if (lease != NULL)
            rate_lease_failed(lease);
        return -1;
    }
    atomic_fetch_add(&round_trips_total, 1);
    return 0;
}

static int64_t monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Whether reply is the script's {granted, next_us, nodes}. */
static bool script_reply_usable(enum redis_status status, const struct redis_reply *reply)
{
    bool usable = status == REDIS_STATUS_OK && redis_reply_kind(reply) == REDIS_KIND_ARRAY &&
                  redis_reply_count(reply) == 3;
    for (size_t i = 0; usable && i < 3; i++)
        usable = redis_reply_kind(redis_reply_element(reply, i)) == REDIS_KIND_INTEGER;
    return usable;
}

/* A script that got no usable answer: logged once until one works again. */
static void script_failed(struct cluster_rate *rate, enum redis_status status,
                          const struct redis_reply *reply)
{
    if (status != REDIS_STATUS_ERROR && status != REDIS_STATUS_OK)
        return;
    const char *text = reply != NULL ? redis_reply_string(reply, NULL) : NULL;
    if (!rate->script_failed)
        log_msg(LOG_ERROR, "redis rate lease failed", "shard=%u error=\"%s\"", rate->shard_index,
                text != NULL ? text : "unexpected reply");
    rate->script_failed = true;
}

static void waiters_answered(struct cluster_rate *rate, struct rate_lease *lease,
                             struct waiters *queue, const char *group_id, bool failed);

static void lease_reply(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct lease_call *call = user;
    struct cluster_rate *rate = call->rate;
    struct rate_lease *lease = NULL;
    struct waiters *queue = NULL;
    if (!call->heartbeat) {
        if (call->group_id[0] == '\0') {
            lease = &rate->signing;
            queue = &rate->signing_waiters;
        } else {
            struct group_bucket *bucket = group_find(rate, call->group_id, false);
            lease = bucket != NULL ? &bucket->lease : NULL;
            queue = bucket != NULL ? &bucket->waiters : NULL;
        }
    }
    if (!script_reply_usable(status, reply)) {
        atomic_fetch_add(&failures_total, 1);
        script_failed(rate, status, reply);
        if (lease != NULL)
            rate_lease_failed(lease);
        if (queue != NULL)
            waiters_answered(rate, lease, queue, call->group_id, true);
        free(call);
        return;
    }
    rate->script_failed = false;
    long long granted = redis_reply_integer(redis_reply_element(reply, 0));
    long long next_us = redis_reply_integer(redis_reply_element(reply, 1));
    long long nodes = redis_reply_integer(redis_reply_element(reply, 2));
    if (nodes >= 1)
        atomic_store(&live_nodes, (unsigned)nodes);
    if (!call->heartbeat) {
        atomic_fetch_add(&leases_total, 1);
        if (granted < 0 || granted > call->wanted)
            granted = 0;
        atomic_fetch_add(&granted_total, (uint64_t)granted);
        if (lease != NULL)
            rate_lease_granted(lease, monotonic_ns(), (unsigned)granted,
                               next_us > 0 ? next_us * 1000 : 0);
    }
    if (queue != NULL)
        waiters_answered(rate, lease, queue, call->group_id, false);
    free(call);
}

static void update_fallback(struct cluster_rate *rate)
{
    if (rate->client != NULL && !rate->stopping)
        set_fallback(rate,
                     redis_client_state(rate->client) != REDIS_STATE_READY || rate->script_failed);
}

/*
 * Every TICK_MS: the fallback's state follows the client even without
 * devices; shard 0 keeps this node counted among the live ones and learns
 * their number.
 */
static void tick(void *arg)
{
    struct cluster_rate *rate = arg;
    update_fallback(rate);
    if (rate->shard_index != 0 || rate->stopping ||
        redis_client_state(rate->client) != REDIS_STATE_READY)
        return;
    lease_send(rate, NULL, "", 0, 0, 0);
}

/*
 * Sends the refill lease needs at now_ns, if any (never once the shard
 * stops): 0 when one is in flight afterwards, -1 otherwise. Not while the lease's waiters are
 * having their turn: one refill then goes out after the last (waiters_answered()).
 */
static int lease_refill(struct cluster_rate *rate, struct rate_lease *lease, const char *group_id,
                        int64_t now_ns)
{
    if (rate->answering == lease)
        return 0;
    /* Stopping: the client is going, and answers what it holds from inside its end. */
    if (rate->stopping)
        return -1;
    unsigned wanted = rate_lease_refill(lease, now_ns);
    if (wanted > 0) {
        bool group = group_id[0] != '\0';
        lease_send(rate, lease, group_id, group ? rate->group_rate : rate->signing_rate,
                   group ? rate->group_burst : rate->signing_burst, wanted);
    }
    return lease->refilling ? 0 : -1;
}

/*
 * A step through one lease: 0 admitted, -1 refused, 1 queued on queue until
 * a refill is answered (then waiters_answered() gives it its turn). A step
 * waits only with a continuation (done), for RATE_LEASE_TURNS answers at
 * most.
 */
static int lease_take(struct cluster_rate *rate, struct rate_lease *lease, struct waiters *queue,
                      struct cluster_rate_request *request, const char *group_id, int64_t now_ns)
{
    int result = rate_lease_take(lease, now_ns, &request->retry_after_ns);
    int refill = lease_refill(rate, lease, group_id, now_ns);
    if (result == 0 || request->done == NULL || request->turns >= RATE_LEASE_TURNS || refill != 0 ||
        !rate_lease_wait(lease, now_ns))
        return result;
    if (request->turns == 0)
        atomic_fetch_add(&waits_total, 1);
    request->turns++;
    request->waiting = true;
    request->next = NULL;
    if (queue->tail != NULL)
        queue->tail->next = request;
    else
        queue->head = request;
    queue->tail = request;
    return 1;
}

/* ---- the decision ---- */

static void source_reply(void *user, enum redis_status status, const struct redis_reply *reply);

/* The source's limit at this node's share of it (all of it on a single node). */
static int source_take_local(struct cluster_rate *rate, struct cluster_rate_request *request,
                             int64_t now_ns)
{
    unsigned shares = rate->client != NULL ? atomic_load(&live_nodes) : 1;
    if (shares < 1)
        shares = 1;
    unsigned burst = rate->source_burst / shares > 0 ? rate->source_burst / shares : 1;
    return source_rate_take(rate->sources, request->source,
                            (int64_t)(1e9 * shares / rate->source_rate), burst, now_ns,
                            &request->retry_after_ns);
}

/* Asks Redis about the source's bucket: 0 when sent (source_reply follows), -1 otherwise. */
static int source_send(struct cluster_rate *rate, struct cluster_rate_request *request)
{
    char key[RATE_KEY_MAX], interval[24], tolerance[24];
    long long interval_us = (long long)(1e6 / rate->source_rate);
    if (interval_us < 1)
        interval_us = 1;
    snprintf(key, sizeof(key), "rate:source:%s", request->source);
    snprintf(interval, sizeof(interval), "%lld", interval_us);
    snprintf(tolerance, sizeof(tolerance), "%lld",
             (long long)(rate->source_burst > 0 ? rate->source_burst - 1 : 0) * interval_us);
    const char *keys[] = {key};
    const char *args[] = {interval, tolerance, "1"};
    if (redis_script_call(rate->client, rate->script, source_reply, request, 1, keys, NULL, 3, args,
                          NULL) != REDIS_STATUS_OK) {
        atomic_fetch_add(&source_failures_total, 1);
        return -1;
    }
    atomic_fetch_add(&source_round_trips_total, 1);
    return 0;
}

static int take_group(struct cluster_rate *rate, struct cluster_rate_request *request,
                      int64_t now_ns)
{
    struct group_bucket *bucket = group_find(rate, request->group_id, true);
    if (bucket == NULL)
        return 0;
    if (rate->client == NULL || rate->fallback) {
        int result = group_share_take(rate, bucket, now_ns, &request->retry_after_ns);
        request->group_taken = result == 0 ? TAKEN_SHARE : TAKEN_NONE;
        return result;
    }
    int result = lease_take(rate, &bucket->lease, &bucket->waiters, request, bucket->id, now_ns);
    request->group_taken = result == 0 ? TAKEN_LEASE : TAKEN_NONE;
    return result;
}

static int take_signing(struct cluster_rate *rate, struct cluster_rate_request *request,
                        int64_t now_ns)
{
    int result;
    if (rate->client == NULL) {
        result = admission_take(rate->node, now_ns, &request->retry_after_ns);
    } else if (rate->fallback) {
        result = admission_take_share(rate->node, atomic_load(&live_nodes), now_ns,
                                      &request->retry_after_ns);
    } else {
        result = lease_take(rate, &rate->signing, &rate->signing_waiters, request, "", now_ns);
        request->signing_taken = result == 0 ? TAKEN_LEASE : TAKEN_NONE;
        return result;
    }
    request->signing_taken = result == 0 ? TAKEN_SHARE : TAKEN_NONE;
    return result;
}

/* A step refused by a later limit gives back what the earlier ones took. */
static void give_back(struct cluster_rate *rate, struct cluster_rate_request *request)
{
    if (request->group_taken != TAKEN_NONE) {
        struct group_bucket *bucket = group_find(rate, request->group_id, false);
        if (bucket != NULL)
            group_give_back(rate, bucket, request->group_taken);
    }
    if (request->signing_taken == TAKEN_LEASE)
        rate->signing.tokens++;
    else if (request->signing_taken == TAKEN_SHARE)
        admission_give_back(rate->node,
                            rate->client != NULL && rate->fallback ? atomic_load(&live_nodes) : 1);
    request->group_taken = request->signing_taken = TAKEN_NONE;
}

static enum cluster_rate_verdict refused(struct cluster_rate *rate,
                                         struct cluster_rate_request *request)
{
    give_back(rate, request);
    atomic_fetch_add(&refused_total, 1);
    request->stage = STAGE_DONE;
    return CLUSTER_RATE_REFUSED;
}

/*
 * Takes the request through its remaining limits at now_ns: ADMITTED,
 * REFUSED, or PENDING when it waits (in a lease's waiters or a source call).
 */
static enum cluster_rate_verdict advance(struct cluster_rate *rate,
                                         struct cluster_rate_request *request, int64_t now_ns)
{
    if (rate->stopping) {
        request->retry_after_ns = 0;
        return refused(rate, request);
    }
    update_fallback(rate);
    while (request->stage != STAGE_DONE) {
        int result = 0;
        switch ((enum stage)request->stage) {
        case STAGE_GROUP:
            if (rate->group_rate > 0)
                result = take_group(rate, request, now_ns);
            break;
        case STAGE_SIGNING:
            if (rate->signing_rate > 0)
                result = take_signing(rate, request, now_ns);
            break;
        case STAGE_SOURCE:
            if (rate->source_rate == 0 || request->source[0] == '\0')
                break;
            if (rate->client != NULL && !rate->fallback && request->done != NULL &&
                source_send(rate, request) == 0)
                return CLUSTER_RATE_PENDING;
            result = source_take_local(rate, request, now_ns);
            atomic_fetch_add(result == 0 ? &source_admitted_total : &source_refused_total, 1);
            break;
        case STAGE_DONE:
            break;
        }
        if (result > 0)
            return CLUSTER_RATE_PENDING;
        if (result < 0)
            return refused(rate, request);
        request->stage++;
        request->turns = 0;
    }
    atomic_fetch_add(&admitted_total, 1);
    return CLUSTER_RATE_ADMITTED;
}

static void request_done(struct cluster_rate_request *request, enum cluster_rate_verdict verdict)
{
    request->verdict = verdict;
    request->done(request);
}

/*
 * A refill of lease is answered (failed: without tokens): each of its
 * waiting steps has its turn, in order. One that still finds no token may
 * wait for the next answer (its turns allowing), and the refill that asks
 * for it goes out after the last turn; if that cannot go, they have their
 * last turn at once. A group's bucket is found again by id after each turn,
 * since a turn may add a group and move the table.
 */
static void waiters_answered(struct cluster_rate *rate, struct rate_lease *lease,
                             struct waiters *queue, const char *group_id, bool failed)
{
    char id[GROUP_ID_MAX];
    snprintf(id, sizeof(id), "%s", group_id);
    for (;;) {
        struct cluster_rate_request *request = queue->head;
        queue->head = queue->tail = NULL;
        int64_t now_ns = monotonic_ns();
        while (request != NULL) {
            struct cluster_rate_request *next = request->next;
            if (failed)
                request->turns = RATE_LEASE_TURNS;
            if (request->waiting) {
                rate_lease_unwait(lease);
                request->waiting = false;
            }
            rate->answering = lease;
            enum cluster_rate_verdict verdict = advance(rate, request, now_ns);
            rate->answering = NULL;
            if (verdict != CLUSTER_RATE_PENDING)
                request_done(request, verdict);
            request = next;
            if (id[0] != '\0') {
                struct group_bucket *bucket = group_find(rate, id, false);
                if (bucket == NULL)
                    return; /* never: buckets stay once made */
                lease = &bucket->lease;
                queue = &bucket->waiters;
            }
        }
        if (lease_refill(rate, lease, id, now_ns) == 0 || queue->head == NULL)
            return;
        failed = true;
    }
}

static void source_reply(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct cluster_rate_request *request = user;
    struct cluster_rate *rate = request->rate;
    int64_t now_ns = monotonic_ns();
    int result;
    if (rate->stopping) {
        request->retry_after_ns = 0;
        request_done(request, refused(rate, request));
        return;
    }
    if (script_reply_usable(status, reply)) {
        rate->script_failed = false;
        long long granted = redis_reply_integer(redis_reply_element(reply, 0));
        long long next_us = redis_reply_integer(redis_reply_element(reply, 1));
        result = granted == 1 ? 0 : -1;
        request->retry_after_ns = next_us > 0 ? next_us * 1000 : 0;
    } else {
        /* No answer: this node's share decides, as when Redis is away. */
        atomic_fetch_add(&source_failures_total, 1);
        script_failed(rate, status, reply);
        result = source_take_local(rate, request, now_ns);
    }
    atomic_fetch_add(result == 0 ? &source_admitted_total : &source_refused_total, 1);
    if (result != 0) {
        request_done(request, refused(rate, request));
        return;
    }
    request->stage = STAGE_DONE;
    atomic_fetch_add(&admitted_total, 1);
    request_done(request, CLUSTER_RATE_ADMITTED);
}

enum cluster_rate_verdict cluster_rate_admit(struct cluster_rate *rate,
                                             struct cluster_rate_request *request, int64_t now_ns)
{
    request->stage = STAGE_GROUP;
    request->waiting = false;
    request->turns = 0;
    request->group_taken = request->signing_taken = TAKEN_NONE;
    request->retry_after_ns = 0;
    request->next = NULL;
    request->rate = rate;
    return advance(rate, request, now_ns);
}

void cluster_rate_stats_get(struct cluster_rate_stats *stats)
{
    stats->leases = atomic_load(&leases_total);
    stats->granted = atomic_load(&granted_total);
    stats->admitted = atomic_load(&admitted_total);
    stats->refused = atomic_load(&refused_total);
    stats->round_trips = atomic_load(&round_trips_total);
    stats->failures = atomic_load(&failures_total);
    stats->source_admitted = atomic_load(&source_admitted_total);
    stats->source_refused = atomic_load(&source_refused_total);
    stats->source_round_trips = atomic_load(&source_round_trips_total);
    stats->source_failures = atomic_load(&source_failures_total);
    stats->waits = atomic_load(&waits_total);
    stats->fallback = atomic_load(&fallback_shards);
    stats->live_nodes = atomic_load(&live_nodes);
}
