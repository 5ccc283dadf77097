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

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "dataplane/admission.h"
#include "dataplane/cluster.h"
#include "dataplane/loop.h"
#include "dataplane/rate_lease.h"
#include "store/redis.h"

#define NODE_TTL_MS 5000
#define TICK_MS 1000
#define CREDIT_LEASES 4
#define GROUP_ID_MAX 40
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
    "local now_ms = math.floor(now / 1000)\n"
    "redis.call('ZADD', KEYS[2], now_ms, ARGV[4])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - tonumber(ARGV[5]))\n"
    "return {granted, next_us, redis.call('ZCARD', KEYS[2])}\n";

/* One group's limit on this shard: its lease, and its share when there is no Redis. */
struct group_bucket {
    char id[GROUP_ID_MAX]; /* "" : a free slot */
    struct rate_lease lease;
    int64_t arrival_ns; /* GCRA of this shard's share */
};

struct cluster_rate {
    unsigned shard_index;
    struct admission *node;
    unsigned signing_rate;
    unsigned signing_burst;
    unsigned group_rate;
    unsigned group_burst;

    struct cluster *cluster; /* NULL: a single node */
    struct redis_client *client;
    struct redis_script *script;
    struct loop_timer *tick; /* every TICK_MS: the fallback's state; shard 0 registers the node */
    bool stopping;
    bool fallback;      /* on this node's share now */
    bool script_failed; /* the last lease script got an error reply */

    struct rate_lease signing;
    struct group_bucket *groups; /* open addressing, a power of two */
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

static _Atomic unsigned shard_count;
static _Atomic unsigned fallback_shards;
static _Atomic unsigned live_nodes = 1;
static _Atomic uint64_t leases_total;
static _Atomic uint64_t granted_total;
static _Atomic uint64_t admitted_total;
static _Atomic uint64_t refused_total;
static _Atomic uint64_t round_trips_total;
static _Atomic uint64_t failures_total;

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
    if (cluster == NULL || (rate->signing_rate == 0 && rate->group_rate == 0))
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
    free(rate->groups);
    free(rate);
}

/* ---- groups ---- */

static size_t group_hash(const char *id)
{
    size_t hash = 14695981039346656037u;
    for (; *id != '\0'; id++)
        hash = (hash ^ (unsigned char)*id) * 1099511628211u;
    return hash;
}

static struct group_bucket *group_find(struct cluster_rate *rate, const char *id, bool create)
{
    if (rate->group_slots > 0) {
        for (size_t i = group_hash(id) & (rate->group_slots - 1);;
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
            size_t j = group_hash(rate->groups[i].id) & (slots - 1);
            while (grown[j].id[0] != '\0')
                j = (j + 1) & (slots - 1);
            grown[j] = rate->groups[i];
        }
        free(rate->groups);
        rate->groups = grown;
        rate->group_slots = slots;
    }
    size_t i = group_hash(id) & (rate->group_slots - 1);
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

static void group_give_back(struct cluster_rate *rate, struct group_bucket *bucket)
{
    if (rate->client != NULL && !rate->fallback) {
        bucket->lease.tokens++;
        return;
    }
    unsigned shares = shards() * (rate->fallback ? atomic_load(&live_nodes) : 1);
    bucket->arrival_ns -= (int64_t)(1e9 * shares / rate->group_rate);
}

/* ---- leases ---- */

static void lease_reply(void *user, enum redis_status status, const struct redis_reply *reply);

static void lease_send(struct cluster_rate *rate, struct rate_lease *lease, const char *group_id,
                       double limit, unsigned burst, unsigned wanted)
{
    struct lease_call *call = calloc(1, sizeof(*call));
    char bucket_key[RATE_KEY_MAX], interval[24], tolerance[24], count[16], ttl[16];
    if (call == NULL) {
        if (lease != NULL)
            rate_lease_failed(lease);
        return;
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
        return;
    }
    atomic_fetch_add(&round_trips_total, 1);
}

static int64_t monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static void lease_reply(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct lease_call *call = user;
    struct cluster_rate *rate = call->rate;
    struct rate_lease *lease = NULL;
    if (!call->heartbeat) {
        if (call->group_id[0] == '\0') {
            lease = &rate->signing;
        } else {
            struct group_bucket *bucket = group_find(rate, call->group_id, false);
            lease = bucket != NULL ? &bucket->lease : NULL;
        }
    }
    bool usable = status == REDIS_STATUS_OK && redis_reply_kind(reply) == REDIS_KIND_ARRAY &&
                  redis_reply_count(reply) == 3;
    for (size_t i = 0; usable && i < 3; i++)
        usable = redis_reply_kind(redis_reply_element(reply, i)) == REDIS_KIND_INTEGER;
    if (!usable) {
        atomic_fetch_add(&failures_total, 1);
        if (status == REDIS_STATUS_ERROR || status == REDIS_STATUS_OK) {
            const char *text = reply != NULL ? redis_reply_string(reply, NULL) : NULL;
            if (!rate->script_failed)
                log_msg(LOG_ERROR, "redis rate lease failed", "shard=%u error=\"%s\"",
                        rate->shard_index, text != NULL ? text : "unexpected reply");
            rate->script_failed = true;
        }
        if (lease != NULL)
            rate_lease_failed(lease);
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

static void lease_refill(struct cluster_rate *rate, struct rate_lease *lease, const char *group_id,
                         double limit, unsigned burst, int64_t now_ns)
{
    unsigned wanted = rate_lease_refill(lease, now_ns);
    if (wanted > 0)
        lease_send(rate, lease, group_id, limit, burst, wanted);
}

/* ---- the decision ---- */

static int take_group(struct cluster_rate *rate, struct group_bucket *bucket, int64_t now_ns,
                      int64_t *retry_after_ns)
{
    if (rate->client == NULL || rate->fallback)
        return group_share_take(rate, bucket, now_ns, retry_after_ns);
    int result = rate_lease_take(&bucket->lease, now_ns, retry_after_ns);
    lease_refill(rate, &bucket->lease, bucket->id, rate->group_rate, rate->group_burst, now_ns);
    return result;
}

static int take_signing(struct cluster_rate *rate, int64_t now_ns, int64_t *retry_after_ns)
{
    if (rate->client == NULL)
        return admission_take(rate->node, now_ns, retry_after_ns);
    if (rate->fallback)
        return admission_take_share(rate->node, atomic_load(&live_nodes), now_ns, retry_after_ns);
    int result = rate_lease_take(&rate->signing, now_ns, retry_after_ns);
    lease_refill(rate, &rate->signing, "", rate->signing_rate, rate->signing_burst, now_ns);
    return result;
}

int cluster_rate_take(struct cluster_rate *rate, const char *group_id, int64_t now_ns,
                      int64_t *retry_after_ns)
{
    update_fallback(rate);
    struct group_bucket *bucket = NULL;
    if (rate->group_rate > 0) {
        bucket = group_find(rate, group_id, true);
        if (bucket != NULL && take_group(rate, bucket, now_ns, retry_after_ns) != 0) {
            atomic_fetch_add(&refused_total, 1);
            return -1;
        }
    }
    if (rate->signing_rate > 0 && take_signing(rate, now_ns, retry_after_ns) != 0) {
        if (bucket != NULL)
            group_give_back(rate, bucket);
        atomic_fetch_add(&refused_total, 1);
        return -1;
    }
    atomic_fetch_add(&admitted_total, 1);
    return 0;
}

void cluster_rate_stats_get(struct cluster_rate_stats *stats)
{
    stats->leases = atomic_load(&leases_total);
    stats->granted = atomic_load(&granted_total);
    stats->admitted = atomic_load(&admitted_total);
    stats->refused = atomic_load(&refused_total);
    stats->round_trips = atomic_load(&round_trips_total);
    stats->failures = atomic_load(&failures_total);
    stats->fallback = atomic_load(&fallback_shards);
    stats->live_nodes = atomic_load(&live_nodes);
}
