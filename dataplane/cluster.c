/*
 * cluster: a shard's Redis client and what the data plane asks of it (see
 * cluster.h for the keys).
 *
 * A claim is one EVALSHA of claim_script: it refuses when a conflict key is
 * there, when the id is held by another record or the record holds another
 * id, and otherwise sets both keys (they may already hold these values: a
 * device that provisioned through another node). The caller then writes the
 * binding durably in RocksDB as it always did; both must hold.
 *
 * The re-seed runs on shard 0, once at start and then whenever needed: on
 * every READY and every SEED_CHECK_MS it asks
 * whether seeded:<node> exists; when it does not (Redis restarted empty, was
 * flushed, or failed over to a replica that had not seen it), when a binding
 * was made locally while Redis was away, or when the client is READY on
 * another primary than before (a failover: the replica has the marker but may
 * lack the last claims, replication being asynchronous), it walks the node's
 * bindings in RocksDB in batches of SEED_BATCH (a short read on the loop's
 * thread each) and writes each with seed_script: set when absent, nothing
 * when equal, a conflict key when another record holds the id or the record
 * holds another id. When the walk is done it sets the marker. A command that
 * fails stops the pass; the next check starts again from the beginning
 * (every write is idempotent).
 *
 * Releases: the management API of any node deletes the Redis keys and
 * publishes "<device id> <owner>" on <prefix>release; shard 0 of every node
 * is subscribed and releases its own durable copy of that owner's binding
 * (one synced store write on its loop: rare, operator-driven), so the id is
 * free cluster-wide and no later re-seed brings the old claim back.
 */
#include "dataplane/cluster.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/address.h"
#include "common/log.h"
#include "dataplane/loop.h"
#include "dataplane/redis_loop.h"
#include "store/records.h"
#include "store/redis.h"
#include "store/store.h"

#define SEED_BATCH 128
#define SEED_CHECK_MS 2000
#define CLUSTER_KEY_MAX 192

const char cluster_claim_script_source[] =
    "if redis.call('EXISTS', KEYS[3]) == 1 then return {'conflict', ''} end\n"
    "local held = redis.call('GET', KEYS[1])\n"
    "if held and held ~= ARGV[1] then return {'id_taken', held} end\n"
    "local bound = redis.call('GET', KEYS[2])\n"
    "if bound and bound ~= ARGV[2] then return {'identity_bound', bound} end\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "redis.call('SET', KEYS[2], ARGV[2])\n"
    "return {'granted', ''}\n";

static const char seed_script_source[] =
    "if redis.call('EXISTS', KEYS[3]) == 1 then return 'conflicted' end\n"
    "local held = redis.call('GET', KEYS[1])\n"
    "if held and held ~= ARGV[1] then\n"
    "  redis.call('SET', KEYS[3], held .. ' ' .. ARGV[1])\n"
    "  return 'conflict'\n"
    "end\n"
    "local bound = redis.call('GET', KEYS[2])\n"
    "if bound and bound ~= ARGV[2] then\n"
    "  redis.call('SET', KEYS[3], ARGV[1] .. ' holds ' .. bound)\n"
    "  return 'conflict'\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "redis.call('SET', KEYS[2], ARGV[2])\n"
    "if held then return 'held' end\n"
    "return 'seeded'\n";

struct seed_entry {
    struct cluster *cluster;
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1];
    char device_id[37];
    char record_id[37];
};

struct cluster {
    unsigned shard_index;
    struct store *store;
    /* Copies of the configuration: the client is created later, on the shard's thread. */
    char *unix_path;
    char *host;
    uint16_t port;
    struct redis_address *sentinels;
    size_t sentinel_count;
    char *master_name;
    char *username;
    char *password;
    unsigned database;
    char *key_prefix;
    char *node;
    unsigned command_timeout_ms;
    unsigned connect_timeout_ms;
    enum config_bindings_policy policy;

    struct redis_client *client;
    /* The client's counters: the cluster's, so they outlive the client (cluster.h). */
    struct redis_counters redis_counters;
    struct redis_script *claim_script;
    struct redis_script *seed_script;
    bool stopping;
    _Atomic int state;
    pthread_mutex_t lock; /* primary, read by the control plane */
    char primary[96];
    char ready_primary[96]; /* where the client was last READY; the loop's thread only */

    /* Re-seed (shard 0). */
    struct loop_timer *seed_timer;
    bool checking;
    bool seeding;
    bool seed_failed;
    size_t seed_outstanding;
    size_t seed_count;
    struct seed_entry batch[SEED_BATCH];
    size_t batch_count;
    char seed_after[RECORDS_KEY_MAX];
    size_t seed_after_length;
    bool seed_scan_done;
};

static _Atomic uint64_t conflicts_total;
static _Atomic uint64_t unreconciled_total;
static _Atomic uint64_t seeded_total;
static _Atomic uint64_t claims_total;
static _Atomic uint64_t claims_refused_total;
static _Atomic uint64_t unavailable_total;
/*
 * The conflicts this node knows of ("<owner key>:<device id>"): found by its
 * own re-seed or claims, or published by another node's re-seed on
 * <prefix>conflict, and dropped on a release. Renewals are checked against
 * it without asking Redis, so both records of a conflict are refused; the
 * count lets the hot path skip the lock while there is none.
 */
static pthread_mutex_t conflicts_lock = PTHREAD_MUTEX_INITIALIZER;
static char (*conflicts)[RECORDS_OWNER_KEY_LENGTH + 1 + 37];
static size_t conflict_count;
static _Atomic size_t conflicts_known;

static void conflict_name(const char *owner_key, const char *device_id,
                          char out[RECORDS_OWNER_KEY_LENGTH + 1 + 37])
{
    snprintf(out, RECORDS_OWNER_KEY_LENGTH + 1 + 37, "%.36s:%.36s", owner_key, device_id);
}

static long conflict_find(const char *name)
{
    for (size_t i = 0; i < conflict_count; i++) {
        if (strcmp(conflicts[i], name) == 0)
            return (long)i;
    }
    return -1;
}

static void conflict_remember(const char *owner_key, const char *device_id)
{
    char name[RECORDS_OWNER_KEY_LENGTH + 1 + 37];
    conflict_name(owner_key, device_id, name);
    pthread_mutex_lock(&conflicts_lock);
    if (conflict_find(name) < 0) {
        char(*grown)[RECORDS_OWNER_KEY_LENGTH + 1 + 37] =
            realloc(conflicts, (conflict_count + 1) * sizeof(*conflicts));
        if (grown != NULL) {
            conflicts = grown;
            memcpy(conflicts[conflict_count++], name, sizeof(name));
            atomic_store(&conflicts_known, conflict_count);
        }
    }
    pthread_mutex_unlock(&conflicts_lock);
}

static void conflict_forget(const char *owner_key, const char *device_id)
{
    char name[RECORDS_OWNER_KEY_LENGTH + 1 + 37];
    conflict_name(owner_key, device_id, name);
    pthread_mutex_lock(&conflicts_lock);
    long index = conflict_find(name);
    if (index >= 0) {
        memmove(conflicts[index], conflicts[index + 1],
                (conflict_count - (size_t)index - 1) * sizeof(*conflicts));
        conflict_count--;
        atomic_store(&conflicts_known, conflict_count);
    }
    pthread_mutex_unlock(&conflicts_lock);
}

bool cluster_conflicted(const char *owner_key, const char *device_id)
{
    if (atomic_load(&conflicts_known) == 0)
        return false;
    char name[RECORDS_OWNER_KEY_LENGTH + 1 + 37];
    conflict_name(owner_key, device_id, name);
    pthread_mutex_lock(&conflicts_lock);
    bool found = conflict_find(name) >= 0;
    pthread_mutex_unlock(&conflicts_lock);
    return found;
}

/* <prefix>conflict: "<owner key>:<device id>" found by some node's re-seed. */
static void on_conflict(void *user, const char *message, size_t length)
{
    (void)user;
    if (message == NULL || length != RECORDS_OWNER_KEY_LENGTH + 1 + 36 ||
        message[RECORDS_OWNER_KEY_LENGTH] != ':')
        return;
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], device_id[37];
    memcpy(owner_key, message, RECORDS_OWNER_KEY_LENGTH);
    owner_key[RECORDS_OWNER_KEY_LENGTH] = '\0';
    memcpy(device_id, message + RECORDS_OWNER_KEY_LENGTH + 1, 36);
    device_id[36] = '\0';
    conflict_remember(owner_key, device_id);
}

/* A binding was made while Redis was away: the next check re-seeds even with the marker set. */
static atomic_bool reseed_wanted;

static char *copy_or_null(const char *text, bool *failed)
{
    if (text == NULL)
        return NULL;
    char *copy = strdup(text);
    if (copy == NULL)
        *failed = true;
    return copy;
}

/* Numeric HOST:PORT or [v6]:PORT (validated by the configuration or --redis), host malloc'd. */
static int split_address(const char *text, char **host, uint16_t *port)
{
    char buffer[INET6_ADDRSTRLEN];
    unsigned char address[16];
    if (address_split(text, buffer, sizeof(buffer), port) != 0 ||
        (inet_pton(AF_INET, buffer, address) != 1 && inet_pton(AF_INET6, buffer, address) != 1))
        return -1;
    *host = strdup(buffer);
    return *host != NULL ? 0 : -1;
}

struct cluster *cluster_create(const struct config_cluster *config, unsigned shard_index,
                               struct store *store, char *err, size_t err_length)
{
    struct cluster *cluster = calloc(1, sizeof(*cluster));
    if (cluster == NULL) {
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&cluster->lock, NULL);
    atomic_store(&cluster->state, REDIS_STATE_CONNECTING);
    cluster->shard_index = shard_index;
    cluster->store = store;
    bool failed = false;
    if (config->redis != NULL && config->redis[0] == '/') {
        cluster->unix_path = copy_or_null(config->redis, &failed);
    } else if (config->redis != NULL &&
               split_address(config->redis, &cluster->host, &cluster->port) != 0) {
        snprintf(err, err_length, "cluster.redis: \"%s\" is not a numeric HOST:PORT",
                 config->redis);
        cluster_free(cluster);
        return NULL;
    }
    if (config->sentinel_count > 0) {
        cluster->sentinels = calloc(config->sentinel_count, sizeof(*cluster->sentinels));
        failed |= cluster->sentinels == NULL;
        for (size_t i = 0; !failed && i < config->sentinel_count; i++) {
            char *host = NULL;
            if (split_address(config->sentinels[i], &host, &cluster->sentinels[i].port) != 0) {
                free(host);
                snprintf(err, err_length, "cluster.sentinels[%zu]: not a numeric HOST:PORT", i);
                cluster_free(cluster);
                return NULL;
            }
            cluster->sentinels[i].host = host;
            cluster->sentinel_count++;
        }
    }
    cluster->master_name = copy_or_null(config->master_name, &failed);
    cluster->username = copy_or_null(config->username, &failed);
    cluster->password = copy_or_null(config->password, &failed);
    cluster->key_prefix = copy_or_null(config->key_prefix ? config->key_prefix : "dps:", &failed);
    cluster->node = copy_or_null(config->node ? config->node : "node", &failed);
    cluster->database = config->database;
    cluster->command_timeout_ms = config->command_timeout_ms;
    cluster->connect_timeout_ms = config->connect_timeout_ms;
    cluster->policy = config->bindings_when_redis_down;
    if (failed) {
        snprintf(err, err_length, "out of memory");
        cluster_free(cluster);
        return NULL;
    }
    return cluster;
}

static void seed_check(void *arg);

/* <prefix>release: "<device id> <owner>" released through some node's API. */
static void on_release(void *user, const char *message, size_t length)
{
    struct cluster *cluster = user;
    if (message == NULL || length < 38 || message[36] != ' ')
        return;
    char device_id[37];
    memcpy(device_id, message, 36);
    device_id[36] = '\0';
    char *owner = strndup(message + 37, length - 37);
    if (owner == NULL)
        return;
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1];
    records_owner_key(owner, owner_key);
    conflict_forget(owner_key, device_id);
    int status = records_binding_release(cluster->store, owner, device_id);
    if (status == STORE_OK) {
        log_msg(LOG_INFO, "binding released", "device=%s owner=\"%s\" by=cluster", device_id,
                owner);
    } else if (status != STORE_NOT_FOUND) {
        log_msg(LOG_ERROR, "binding release failed", "device=%s owner=\"%s\" by=cluster", device_id,
                owner);
    }
    free(owner);
}

static void on_state(void *user, enum redis_state state, const char *reason)
{
    struct cluster *cluster = user;
    int previous = atomic_exchange(&cluster->state, (int)state);
    pthread_mutex_lock(&cluster->lock);
    snprintf(cluster->primary, sizeof(cluster->primary), "%s",
             redis_client_primary(cluster->client));
    pthread_mutex_unlock(&cluster->lock);
    if (state == REDIS_STATE_READY) {
        const char *primary = redis_client_primary(cluster->client);
        bool moved =
            cluster->ready_primary[0] != '\0' && strcmp(cluster->ready_primary, primary) != 0;
        snprintf(cluster->ready_primary, sizeof(cluster->ready_primary), "%s", primary);
        log_msg(previous == REDIS_STATE_DOWN ? LOG_WARN : LOG_INFO, "redis ready",
                "shard=%u primary=%s%s", cluster->shard_index, primary,
                previous == REDIS_STATE_DOWN ? " back=true" : "");
        if (cluster->seed_timer != NULL) {
            /*
             * A new primary (a failover) has the marker it replicated, but perhaps not the
             * last claims made on the old one: asynchronous replication loses them. Re-seed.
             */
            if (moved)
                atomic_store(&reseed_wanted, true);
            loop_timer_start(cluster->seed_timer, 0, SEED_CHECK_MS);
        }
    } else if (state == REDIS_STATE_DOWN && previous != REDIS_STATE_DOWN) {
        log_msg(LOG_WARN, "redis down", "shard=%u primary=%s error=\"%s\"", cluster->shard_index,
                redis_client_primary(cluster->client), reason);
    }
}

static struct redis_client *
client_create(const struct cluster *cluster, struct loop *loop, OSSL_LIB_CTX *library_context,
              unsigned command_timeout_ms, struct redis_counters *counters,
              redis_state_fn *state_changed, void *user, char *err, size_t err_length)
{
    struct redis_events events;
    redis_loop_events(loop, &events);
    struct redis_config config = {
        .unix_path = cluster->unix_path,
        .address = {.host = cluster->host, .port = cluster->port},
        .sentinels = cluster->sentinels,
        .sentinel_count = cluster->sentinel_count,
        .master_name = cluster->master_name,
        .username = cluster->username,
        .password = cluster->password,
        .database = (int)cluster->database,
        .key_prefix = cluster->key_prefix,
        .command_timeout_ms =
            command_timeout_ms != 0 ? command_timeout_ms : cluster->command_timeout_ms,
        .connect_timeout_ms = cluster->connect_timeout_ms,
        .library_context = library_context,
        .counters = counters,
    };
    return redis_client_create(&config, &events, state_changed, user, err, err_length);
}

struct redis_client *cluster_client_create(const struct cluster *cluster, struct loop *loop,
                                           OSSL_LIB_CTX *library_context,
                                           unsigned command_timeout_ms,
                                           redis_state_fn *state_changed, void *user, char *err,
                                           size_t err_length)
{
    return client_create(cluster, loop, library_context, command_timeout_ms, NULL, state_changed,
                         user, err, err_length);
}

const char *cluster_node(const struct cluster *cluster)
{
    return cluster->node;
}

int cluster_start(struct cluster *cluster, struct loop *loop, OSSL_LIB_CTX *library_context,
                  char *err, size_t err_length)
{
    cluster->client = client_create(cluster, loop, library_context, 0, &cluster->redis_counters,
                                    on_state, cluster, err, err_length);
    if (cluster->client == NULL)
        return -1;
    cluster->claim_script = redis_script_register(cluster->client, cluster_claim_script_source);
    cluster->seed_script = redis_script_register(cluster->client, seed_script_source);
    if (cluster->claim_script == NULL || cluster->seed_script == NULL) {
        snprintf(err, err_length, "out of memory");
        return -1;
    }
    if (cluster->shard_index == 0) {
        /* At start the node's bindings go into Redis whatever the marker says. */
        atomic_store(&reseed_wanted, true);
        cluster->seed_timer = loop_timer_create(loop, seed_check, cluster);
        if (cluster->seed_timer == NULL ||
            redis_subscribe(cluster->client, "release", on_release, cluster) != 0 ||
            redis_subscribe(cluster->client, "conflict", on_conflict, cluster) != 0) {
            snprintf(err, err_length, "out of memory");
            return -1;
        }
    }
    return 0;
}

void cluster_stop(struct cluster *cluster)
{
    if (cluster == NULL)
        return;
    cluster->stopping = true;
    if (cluster->seed_timer != NULL) {
        loop_timer_destroy(cluster->seed_timer);
        cluster->seed_timer = NULL;
    }
    if (cluster->client != NULL) {
        redis_client_destroy(cluster->client);
        cluster->client = NULL;
    }
    atomic_store(&cluster->state, REDIS_STATE_DOWN);
}

void cluster_free(struct cluster *cluster)
{
    if (cluster == NULL)
        return;
    free(cluster->unix_path);
    free(cluster->host);
    for (size_t i = 0; i < cluster->sentinel_count; i++)
        free((char *)cluster->sentinels[i].host);
    free(cluster->sentinels);
    free(cluster->master_name);
    free(cluster->username);
    if (cluster->password != NULL)
        explicit_bzero(cluster->password, strlen(cluster->password));
    free(cluster->password);
    free(cluster->key_prefix);
    free(cluster->node);
    pthread_mutex_destroy(&cluster->lock);
    free(cluster);
}

enum config_bindings_policy cluster_policy(const struct cluster *cluster)
{
    return cluster->policy;
}

struct redis_client *cluster_redis(struct cluster *cluster)
{
    return cluster->client;
}

const char *cluster_node_name(const struct cluster *cluster)
{
    return cluster->node;
}

/* The three keys of a binding, without the prefix (the client adds it to script keys). */
static void binding_keys(const char *owner_key, const char *device_id, const char *record_id,
                         char binding[CLUSTER_KEY_MAX], char identity[CLUSTER_KEY_MAX],
                         char conflict[CLUSTER_KEY_MAX])
{
    snprintf(binding, CLUSTER_KEY_MAX, "binding:%s:%s", owner_key, device_id);
    snprintf(identity, CLUSTER_KEY_MAX, "identity:%s:%s", owner_key, record_id);
    snprintf(conflict, CLUSTER_KEY_MAX, "conflict:%s:%s", owner_key, device_id);
}

/* ---- claims ---- */

static void claim_reply(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct cluster_claim *claim = user;
    claim->result = CLUSTER_CLAIM_UNAVAILABLE;
    claim->holder[0] = '\0';
    if (status == REDIS_STATUS_OK && redis_reply_kind(reply) == REDIS_KIND_ARRAY &&
        redis_reply_count(reply) == 2) {
        const char *verdict = redis_reply_string(redis_reply_element(reply, 0), NULL);
        const char *holder = redis_reply_string(redis_reply_element(reply, 1), NULL);
        snprintf(claim->holder, sizeof(claim->holder), "%s", holder != NULL ? holder : "");
        if (verdict == NULL) {
            claim->result = CLUSTER_CLAIM_UNAVAILABLE;
        } else if (strcmp(verdict, "granted") == 0) {
            claim->result = CLUSTER_CLAIM_GRANTED;
        } else if (strcmp(verdict, "id_taken") == 0) {
            claim->result = CLUSTER_CLAIM_ID_TAKEN;
        } else if (strcmp(verdict, "identity_bound") == 0) {
            claim->result = CLUSTER_CLAIM_IDENTITY_BOUND;
        } else if (strcmp(verdict, "conflict") == 0) {
            claim->result = CLUSTER_CLAIM_CONFLICT;
            conflict_remember(claim->owner_key, claim->device_id);
        }
    } else if (status == REDIS_STATUS_ERROR) {
        const char *text = reply != NULL ? redis_reply_string(reply, NULL) : NULL;
        log_msg(LOG_ERROR, "redis claim failed", "error=\"%s\"", text != NULL ? text : "");
    }
    if (claim->result == CLUSTER_CLAIM_UNAVAILABLE) {
        atomic_fetch_add(&unavailable_total, 1);
    } else {
        atomic_fetch_add(&claims_total, 1);
        if (claim->result != CLUSTER_CLAIM_GRANTED)
            atomic_fetch_add(&claims_refused_total, 1);
    }
    claim->done(claim);
}

int cluster_claim(struct cluster *cluster, struct cluster_claim *claim, const char *owner_key,
                  const char *device_id, const char *record_id)
{
    if (cluster->client == NULL || cluster->stopping) {
        atomic_fetch_add(&unavailable_total, 1);
        return -1;
    }
    char binding[CLUSTER_KEY_MAX], identity[CLUSTER_KEY_MAX], conflict[CLUSTER_KEY_MAX];
    binding_keys(owner_key, device_id, record_id, binding, identity, conflict);
    const char *keys[] = {binding, identity, conflict};
    const char *args[] = {record_id, device_id};
    snprintf(claim->owner_key, sizeof(claim->owner_key), "%s", owner_key);
    snprintf(claim->device_id, sizeof(claim->device_id), "%s", device_id);
    enum redis_status status = redis_script_call(cluster->client, cluster->claim_script,
                                                 claim_reply, claim, 3, keys, NULL, 2, args, NULL);
    if (status != REDIS_STATUS_OK) {
        atomic_fetch_add(&unavailable_total, 1);
        return -1;
    }
    return 0;
}

void cluster_note_local_binding(struct cluster *cluster, const char *owner_key,
                                const char *device_id, const char *record_id)
{
    atomic_fetch_add(&unreconciled_total, 1);
    atomic_store(&reseed_wanted, true);
    log_msg(LOG_WARN, "binding made without redis",
            "shard=%u owner_key=%s device=%s record=%s policy=local", cluster->shard_index,
            owner_key, device_id, record_id);
}

/* ---- re-seed (shard 0) ---- */

static void seed_next_batch(struct cluster *cluster);

static void seed_finish(struct cluster *cluster, bool ok)
{
    cluster->seeding = false;
    if (!ok) {
        atomic_store(&reseed_wanted, true);
        log_msg(LOG_WARN, "redis re-seed interrupted", "node=%s bindings=%zu", cluster->node,
                cluster->seed_count);
        return;
    }
    char marker[CLUSTER_KEY_MAX];
    char name[CLUSTER_KEY_MAX];
    snprintf(name, sizeof(name), "seeded:%s", cluster->node);
    if (redis_key(cluster->client, name, marker, sizeof(marker)) == 0 ||
        redis_command(cluster->client, NULL, NULL, "SET %s 1", marker) != REDIS_STATUS_OK) {
        atomic_store(&reseed_wanted, true);
        return;
    }
    log_msg(LOG_INFO, "redis re-seeded", "node=%s bindings=%zu", cluster->node,
            cluster->seed_count);
}

static void seed_reply(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct seed_entry *entry = user;
    struct cluster *cluster = entry->cluster;
    cluster->seed_outstanding--;
    const char *verdict = status == REDIS_STATUS_OK ? redis_reply_string(reply, NULL) : NULL;
    if (verdict == NULL) {
        cluster->seed_failed = true;
    } else if (strcmp(verdict, "conflicted") == 0) {
        conflict_remember(entry->owner_key, entry->device_id);
    } else if (strcmp(verdict, "conflict") == 0) {
        conflict_remember(entry->owner_key, entry->device_id);
        char message[RECORDS_OWNER_KEY_LENGTH + 1 + 37];
        conflict_name(entry->owner_key, entry->device_id, message);
        if (!cluster->stopping)
            redis_publish(cluster->client, "conflict", message, strlen(message), NULL, NULL);
        atomic_fetch_add(&conflicts_total, 1);
        log_msg(LOG_ERROR, "binding conflict",
                "owner_key=%s device=%s record=%s node=%s "
                "action=\"both records are refused until an operator releases the binding\"",
                entry->owner_key, entry->device_id, entry->record_id, cluster->node);
    } else if (strcmp(verdict, "seeded") == 0) {
        atomic_fetch_add(&seeded_total, 1);
    }
    if (cluster->seed_outstanding > 0 || cluster->stopping)
        return;
    if (cluster->seed_failed) {
        seed_finish(cluster, false);
        return;
    }
    seed_next_batch(cluster);
}

/* Collects the next device bindings ("<owner key>/device/<id>" -> {"recordId"}). */
static int seed_collect(void *user, const char *key, size_t key_length, const char *value,
                        size_t value_length)
{
    struct cluster *cluster = user;
    if (key_length >= sizeof(cluster->seed_after))
        return 0;
    memcpy(cluster->seed_after, key, key_length);
    cluster->seed_after[key_length] = '\0';
    cluster->seed_after_length = key_length;
    static const char device[] = "/device/";
    if (key_length != RECORDS_OWNER_KEY_LENGTH + sizeof(device) - 1 + 36 ||
        memcmp(key + RECORDS_OWNER_KEY_LENGTH, device, sizeof(device) - 1) != 0)
        return 0;
    json_t *binding = json_loadb(value, value_length, 0, NULL);
    const char *record_id = json_string_value(json_object_get(binding, "recordId"));
    if (record_id != NULL && strlen(record_id) == 36) {
        struct seed_entry *entry = &cluster->batch[cluster->batch_count++];
        entry->cluster = cluster;
        memcpy(entry->owner_key, key, RECORDS_OWNER_KEY_LENGTH);
        entry->owner_key[RECORDS_OWNER_KEY_LENGTH] = '\0';
        memcpy(entry->device_id, key + key_length - 36, 36);
        entry->device_id[36] = '\0';
        memcpy(entry->record_id, record_id, 37);
    }
    json_decref(binding);
    return cluster->batch_count == SEED_BATCH;
}

static void seed_next_batch(struct cluster *cluster)
{
    cluster->batch_count = 0;
    if (!cluster->seed_scan_done) {
        size_t before = cluster->seed_after_length;
        char last[RECORDS_KEY_MAX];
        memcpy(last, cluster->seed_after, sizeof(last));
        if (store_scan_after(cluster->store, STORE_BINDINGS, cluster->seed_after,
                             cluster->seed_after_length, seed_collect, cluster) != STORE_OK) {
            seed_finish(cluster, false);
            return;
        }
        /* Fewer than a batch, or no progress: the walk reached the end. */
        cluster->seed_scan_done =
            cluster->batch_count < SEED_BATCH || (cluster->seed_after_length == before &&
                                                  memcmp(last, cluster->seed_after, before) == 0);
    }
    if (cluster->batch_count == 0) {
        seed_finish(cluster, true);
        return;
    }
    for (size_t i = 0; i < cluster->batch_count; i++) {
        struct seed_entry *entry = &cluster->batch[i];
        char binding[CLUSTER_KEY_MAX], identity[CLUSTER_KEY_MAX], conflict[CLUSTER_KEY_MAX];
        binding_keys(entry->owner_key, entry->device_id, entry->record_id, binding, identity,
                     conflict);
        const char *keys[] = {binding, identity, conflict};
        const char *args[] = {entry->record_id, entry->device_id};
        if (redis_script_call(cluster->client, cluster->seed_script, seed_reply, entry, 3, keys,
                              NULL, 2, args, NULL) != REDIS_STATUS_OK) {
            cluster->seed_failed = true;
            break;
        }
        cluster->seed_outstanding++;
        cluster->seed_count++;
    }
    if (cluster->seed_outstanding == 0)
        seed_finish(cluster, false);
}

static void seed_start(struct cluster *cluster)
{
    atomic_store(&reseed_wanted, false);
    cluster->seeding = true;
    cluster->seed_failed = false;
    cluster->seed_outstanding = 0;
    cluster->seed_count = 0;
    cluster->seed_after_length = 0;
    cluster->seed_after[0] = '\0';
    cluster->seed_scan_done = false;
    log_msg(LOG_INFO, "redis re-seed", "node=%s reason=\"%s\"", cluster->node,
            "marker absent, local bindings or a new primary");
    seed_next_batch(cluster);
}

static void seed_marker_reply(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct cluster *cluster = user;
    cluster->checking = false;
    if (cluster->stopping || status != REDIS_STATUS_OK ||
        redis_reply_kind(reply) != REDIS_KIND_INTEGER)
        return;
    if (redis_reply_integer(reply) == 0 || atomic_load(&reseed_wanted))
        seed_start(cluster);
}

/* The marker's check, on READY and every SEED_CHECK_MS (shard 0). */
static void seed_check(void *arg)
{
    struct cluster *cluster = arg;
    if (cluster->stopping || cluster->checking || cluster->seeding ||
        redis_client_state(cluster->client) != REDIS_STATE_READY)
        return;
    char marker[CLUSTER_KEY_MAX];
    char name[CLUSTER_KEY_MAX];
    snprintf(name, sizeof(name), "seeded:%s", cluster->node);
    if (redis_key(cluster->client, name, marker, sizeof(marker)) == 0)
        return;
    if (redis_command(cluster->client, seed_marker_reply, cluster, "EXISTS %s", marker) ==
        REDIS_STATUS_OK)
        cluster->checking = true;
}

/* ---- observation ---- */

void cluster_get_status(struct cluster *cluster, struct cluster_status *status)
{
    int state = atomic_load(&cluster->state);
    status->up = state == REDIS_STATE_READY;
    snprintf(status->state, sizeof(status->state), "%s", redis_state_name((enum redis_state)state));
    pthread_mutex_lock(&cluster->lock);
    snprintf(status->primary, sizeof(status->primary), "%s", cluster->primary);
    pthread_mutex_unlock(&cluster->lock);
    redis_counters_read(&cluster->redis_counters, &status->redis);
}

void cluster_stats_get(struct cluster_stats *stats)
{
    stats->conflicts = atomic_load(&conflicts_total);
    stats->unreconciled = atomic_load(&unreconciled_total);
    stats->seeded = atomic_load(&seeded_total);
    stats->claims = atomic_load(&claims_total);
    stats->claims_refused = atomic_load(&claims_refused_total);
    stats->unavailable = atomic_load(&unavailable_total);
}
