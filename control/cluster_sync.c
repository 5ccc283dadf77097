/*
 * cluster_sync: the configuration a cluster shares (enrollment groups, hubs
 * and the blocklist), kept alike on every node through Redis.
 *
 * RocksDB stays each node's truth (DESIGN.md, "The cluster"): every document
 * a node has in force is in its own store, and every change, made here or
 * elsewhere, goes through the plane's own paths (checked, made durable in a
 * synced batch, published to every shard). Redis only orders the changes and
 * carries them. Keys, after cluster.keyPrefix:
 *   config:generation  INCR counter: one order every node agrees on
 *   config:documents   hash "<kind>/<id>" -> envelope (control/cluster_envelope.h)
 *                      with its generation; a deletion stays as a tombstone
 *   config:log         sorted set of the same fields by generation (the last one
 *                      of each document): "what changed since N" is one range
 *   config:epoch       a random name of the data set the generations count in:
 *                      written by the first fetch after Redis lost everything
 *   channel config     the generation of every change, published as it is made
 *
 * A change through this node's API: the plane checks it and, in the same
 * synced batch as the document, writes its envelope into this node's outbox
 * (cluster family "outbox/<seq>", record() below), publishes it to the shards
 * and answers; so it is durable and in force here before the answer, whether
 * Redis is there or not, and never lost on the way to the cluster. This thread
 * then pushes the outbox in order: one script (push_script) takes the next
 * generation, stores the envelope, logs it and publishes the generation. The
 * entry leaves the outbox once Redis answered (at least once: a crash in
 * between pushes it again, at a later generation).
 *
 * Changes from the cluster: every node fetches what it has not applied
 * (fetch_script: the envelopes logged after its generation, 64 at a time, in
 * order) on every message on the channel and every SYNC_TICK_MS anyway (a
 * message may be lost). Each envelope whose document differs from the
 * store's goes through plane_apply() with the node's new generation in the
 * same synced batch, so a restart resumes where it stopped; a node that was
 * down or partitioned catches up the same way. Ordering: the last generation
 * wins, for every document on every node; a change made while Redis was away
 * gets its generation when it is pushed, and wins over what was made before.
 *
 * A change this node cannot apply (a hub whose key file it cannot read, a
 * group naming a hub it refused) is refused here only: the previous document
 * stays in force, the generation moves on (the others are not held up), and
 * the change is kept in "refused/<kind>/<id>", shown in the status and the
 * metrics, and tried again every SYNC_RETRY_MS (a key file put in place later
 * is picked up) until it applies or a later change of the document comes.
 *
 * Redis losing data: the fetch answers with the epoch and the counter. A
 * different epoch (FLUSHALL, a restart without persistence) or a counter
 * behind this node's generation (a failover that lost the last writes) means
 * Redis no longer holds what this node applied: the node re-seeds, writing
 * each document it has in force that Redis lacks (push_script's only-if-absent
 * form), then adopts the epoch with generation 0 and fetches everything, which
 * changes only what differs. Every node does the same; where two disagree
 * about a document Redis lost, the first to re-seed it wins. Tombstones Redis
 * lost are not re-seeded: a deletion lost that way can come back from a node
 * that still holds the document (delete it again). A node re-seeds at every
 * start too, which brings documents made before it joined into the cluster.
 *
 * Readiness: /readyz stays false until the first fetch found nothing left to
 * apply, so a node started later has every group before the balancer sends
 * it devices; when Redis cannot be reached within SYNC_HOLD_DOWN_MS (or the
 * catch-up takes longer than SYNC_HOLD_MAX_MS) the node becomes ready on its
 * own store, blocklist included, and says so in the log and the status.
 *
 * Threads: everything runs on this module's thread and loop, but record()
 * (the API thread, under the plane's lock), changed() and the readers of the
 * figures, which use atomics and the refused list's lock. plane_apply() blocks
 * this thread while shards switch, so this client's command deadline is
 * SYNC_COMMAND_TIMEOUT_MS rather than the shards' short one: a reply waiting
 * behind a publication is not taken for a stalled connection.
 */
#include "control/cluster_sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "common/log.h"
#include "control/cluster_envelope.h"
#include "control/plane.h"
#include "dataplane/cluster.h"
#include "dataplane/loop.h"
#include "store/redis.h"
#include "store/store.h"

#define SYNC_TICK_MS 250
#define SYNC_RETRY_MS 2000
#define SYNC_HOLD_DOWN_MS 3000
#define SYNC_HOLD_MAX_MS 15000
#define SYNC_COMMAND_TIMEOUT_MS 5000
#define SYNC_FETCH_LIMIT 64
#define SYNC_SEED_BATCH 64
#define SYNC_KEY_MAX 128
#define OUTBOX_PREFIX "outbox/"
#define REFUSED_PREFIX "refused/"
#define GENERATION_KEY "generation"
#define EPOCH_KEY "epoch"
#define EPOCH_LENGTH 32

static const char push_script_source[] =
    "if ARGV[4] == '1' and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end\n"
    "local generation = redis.call('INCR', KEYS[1])\n"
    "redis.call('HSET', KEYS[2], ARGV[1],\n"
    "           '{\"generation\":' .. generation .. ',' .. string.sub(ARGV[2], 2))\n"
    "redis.call('ZADD', KEYS[3], generation, ARGV[1])\n"
    "redis.call('PUBLISH', ARGV[3], generation)\n"
    "return generation\n";

static const char fetch_script_source[] =
    "local epoch = redis.call('GET', KEYS[4])\n"
    "if not epoch then epoch = ARGV[3]; redis.call('SET', KEYS[4], epoch) end\n"
    "local current = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local fields = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf', 'LIMIT', 0,\n"
    "                          ARGV[2])\n"
    "local documents = {}\n"
    "if #fields > 0 then documents = redis.call('HMGET', KEYS[2], unpack(fields)) end\n"
    "return {current, epoch, documents}\n";

static const char *const script_keys[] = {"config:generation", "config:documents", "config:log",
                                          "config:epoch"};

/* A change from the cluster this node could not apply. */
struct refused {
    char field[CLUSTER_FIELD_MAX];
    uint64_t generation;
    char error[256];
    char *envelope; /* the text, to try again */
};

/* A document to re-seed. */
struct seed_item {
    char field[CLUSTER_FIELD_MAX];
    char *envelope;
};

struct cluster_sync {
    struct plane *plane;
    struct store *store;
    struct cluster *cluster; /* the Redis configuration, read only */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t start_lock;
    pthread_cond_t start_done;
    bool start_answered;
    int start_status;
    char start_err[256];

    struct loop *loop;
    struct redis_client *client;
    struct redis_script *push_script;
    struct redis_script *fetch_script;
    int wake_fd;
    struct loop_timer *tick;
    char channel[SYNC_KEY_MAX];
    char candidate_epoch[EPOCH_LENGTH + 1];
    char epoch[EPOCH_LENGTH + 1];
    struct timespec started;
    unsigned ticks;

    bool fetching;
    bool fetch_again;
    bool pushing;
    char push_key[64];
    bool seeding;
    bool seed_wanted;
    bool just_seeded;
    bool seed_failed;
    struct seed_item *seed_items;
    size_t seed_count;
    size_t seed_capacity;
    size_t seed_next;
    size_t seed_outstanding;
    bool caught_up;

    _Atomic uint64_t applied_generation;
    _Atomic uint64_t cluster_generation;
    _Atomic uint64_t outbox_next;
    /*
     * Changes in the outbox, for the figures only: counted once in force
     * (changed()), so a push may come first for a moment; the outbox itself
     * is what push_next() reads.
     */
    _Atomic int64_t outbox_waiting;
    _Atomic uint64_t applied_total;
    _Atomic uint64_t pushed_total;
    _Atomic uint64_t errors_total;
    _Atomic uint64_t reseeds_total;
    _Atomic int redis_state;

    pthread_mutex_t lock; /* refused */
    struct refused *refused;
    size_t refused_count;
};

/* ---- the node's own records (cluster family) ---- */

static int store_text(struct cluster_sync *sync, const char *key, char *out, size_t out_size)
{
    char *value = NULL;
    size_t length = 0;
    int rc = store_get(sync->store, STORE_CLUSTER, key, strlen(key), &value, &length);
    if (rc == STORE_OK) {
        snprintf(out, out_size, "%.*s", (int)length, value);
    }
    free(value);
    return rc;
}

/* The puts that record generation (and drop field's refusal) with a change. */
static size_t generation_puts(uint64_t generation, const char *field, char text[24],
                              char refused_key[SYNC_KEY_MAX], struct store_put puts[2])
{
    snprintf(text, 24, "%llu", (unsigned long long)generation);
    puts[0] = (struct store_put){STORE_CLUSTER, GENERATION_KEY, strlen(GENERATION_KEY), text,
                                 strlen(text)};
    if (field == NULL) {
        return 1;
    }
    snprintf(refused_key, SYNC_KEY_MAX, REFUSED_PREFIX "%s", field);
    puts[1] = (struct store_put){STORE_CLUSTER, refused_key, strlen(refused_key), NULL, 0};
    return 2;
}

static int count_outbox(void *user, const char *key, size_t key_length, const char *value,
                        size_t value_length)
{
    struct cluster_sync *sync = user;
    (void)value;
    (void)value_length;
    char text[32];
    snprintf(text, sizeof(text), "%.*s", (int)(key_length - strlen(OUTBOX_PREFIX)),
             key + strlen(OUTBOX_PREFIX));
    uint64_t seq = strtoull(text, NULL, 10);
    if (seq >= atomic_load(&sync->outbox_next)) {
        atomic_store(&sync->outbox_next, seq + 1);
    }
    atomic_fetch_add(&sync->outbox_waiting, 1);
    return 0;
}

/* ---- refused changes ---- */

/* Drops field's refusal from the list; whether there was one. */
static bool refused_forget(struct cluster_sync *sync, const char *field)
{
    bool found = false;
    pthread_mutex_lock(&sync->lock);
    for (size_t i = 0; !found && i < sync->refused_count; i++) {
        if (strcmp(sync->refused[i].field, field) == 0) {
            free(sync->refused[i].envelope);
            sync->refused[i] = sync->refused[--sync->refused_count];
            found = true;
        }
    }
    pthread_mutex_unlock(&sync->lock);
    return found;
}

static void refused_remember(struct cluster_sync *sync, const struct cluster_envelope *envelope,
                             const char *text, size_t length, const char *error)
{
    refused_forget(sync, envelope->field);
    pthread_mutex_lock(&sync->lock);
    struct refused *grown =
        realloc(sync->refused, (sync->refused_count + 1) * sizeof(*sync->refused));
    char *copy = strndup(text, length);
    if (grown != NULL && copy != NULL) {
        sync->refused = grown;
        struct refused *entry = &sync->refused[sync->refused_count++];
        snprintf(entry->field, sizeof(entry->field), "%s", envelope->field);
        entry->generation = envelope->generation;
        snprintf(entry->error, sizeof(entry->error), "%s", error);
        entry->envelope = copy;
    } else {
        sync->refused = grown != NULL ? grown : sync->refused;
        free(copy);
    }
    pthread_mutex_unlock(&sync->lock);
}

/* ---- applying the cluster's changes ---- */

/* Whether the store holds envelope's document as it is (or lacks it, for a tombstone). */
static bool already_applied(struct cluster_sync *sync, const struct cluster_envelope *envelope)
{
    enum store_family family = envelope->kind == PLANE_KIND_GROUP ? STORE_GROUPS
                               : envelope->kind == PLANE_KIND_HUB ? STORE_HUBS
                                                                  : STORE_BLOCKLIST;
    char *value = NULL;
    size_t length = 0;
    int rc = store_get(sync->store, family, envelope->id, strlen(envelope->id), &value, &length);
    bool same;
    if (rc == STORE_NOT_FOUND) {
        same = envelope->doc == NULL;
    } else if (rc == STORE_OK && envelope->doc != NULL) {
        json_t *local = json_loadb(value, length, 0, NULL);
        same = local != NULL && json_equal(local, (json_t *)envelope->doc);
        json_decref(local);
    } else {
        same = false;
    }
    free(value);
    return same;
}

/*
 * Applies one envelope from Redis (generation set) through the plane, with
 * the node's generation in the same batch. A refusal is kept and reported;
 * the generation moves on either way. False only when the store failed
 * (nothing moved: the next fetch tries again).
 */
static bool apply_envelope(struct cluster_sync *sync, const char *text, size_t length,
                           bool *recorded)
{
    struct cluster_envelope envelope;
    if (cluster_envelope_decode(text, length, &envelope) != 0 || envelope.generation == 0) {
        atomic_fetch_add(&sync->errors_total, 1);
        log_msg(LOG_ERROR, "cluster configuration: unreadable document skipped", "text=\"%.*s\"",
                (int)(length > 200 ? 200 : length), text);
        return true;
    }
    uint64_t generation = envelope.generation;
    char generation_text[24], refused_key[SYNC_KEY_MAX];
    struct store_put puts[3];
    size_t count = generation_puts(generation, envelope.field, generation_text, refused_key, puts);
    bool ok = true;
    if (already_applied(sync, &envelope)) {
        /* A refusal of an older version is over: forgotten here and in the store. */
        *recorded = refused_forget(sync, envelope.field);
        ok = !*recorded || store_put_sync(sync->store, puts, count) == STORE_OK;
    } else {
        char err[512] = "";
        struct plane_change change = {envelope.kind, envelope.id, envelope.owner, envelope.doc};
        int status = plane_apply(sync->plane, &change, puts, count, err, sizeof(err));
        if (status == PLANE_OK) {
            refused_forget(sync, envelope.field);
            atomic_fetch_add(&sync->applied_total, 1);
            *recorded = true;
            log_msg(LOG_INFO, "cluster configuration applied",
                    "kind=%s id=%s generation=%llu from=%s deleted=%s",
                    cluster_kind_name(envelope.kind), envelope.id, (unsigned long long)generation,
                    envelope.node, envelope.doc == NULL ? "true" : "false");
        } else if (status == PLANE_FAILED && !store_healthy(sync->store)) {
            ok = false;
        } else {
            atomic_fetch_add(&sync->errors_total, 1);
            log_msg(LOG_ERROR, "cluster configuration refused on this node",
                    "kind=%s id=%s generation=%llu from=%s error=\"%s\" action=\"the previous "
                    "document stays in force here; retried every %d ms\"",
                    cluster_kind_name(envelope.kind), envelope.id, (unsigned long long)generation,
                    envelope.node, err, SYNC_RETRY_MS);
            refused_remember(sync, &envelope, text, length, err);
            puts[1].value = text;
            puts[1].value_length = length;
            ok = store_put_sync(sync->store, puts, count) == STORE_OK;
            *recorded = ok;
        }
    }
    if (ok) {
        atomic_store(&sync->applied_generation, generation);
    }
    cluster_envelope_clear(&envelope);
    return ok;
}

/* Tries the refused changes again (a key file may be in place now). */
static void retry_refused(struct cluster_sync *sync)
{
    pthread_mutex_lock(&sync->lock);
    size_t count = sync->refused_count;
    char **texts = calloc(count + 1, sizeof(*texts));
    for (size_t i = 0; texts != NULL && i < count; i++) {
        texts[i] = strdup(sync->refused[i].envelope);
    }
    pthread_mutex_unlock(&sync->lock);
    for (size_t i = 0; texts != NULL && i < count; i++) {
        struct cluster_envelope envelope;
        if (texts[i] == NULL || cluster_envelope_decode(texts[i], strlen(texts[i]), &envelope)) {
            continue;
        }
        char refused_key[SYNC_KEY_MAX], err[512];
        snprintf(refused_key, sizeof(refused_key), REFUSED_PREFIX "%s", envelope.field);
        struct store_put drop = {STORE_CLUSTER, refused_key, strlen(refused_key), NULL, 0};
        struct plane_change change = {envelope.kind, envelope.id, envelope.owner, envelope.doc};
        if (plane_apply(sync->plane, &change, &drop, 1, err, sizeof(err)) == PLANE_OK) {
            refused_forget(sync, envelope.field);
            log_msg(LOG_INFO, "cluster configuration applied after a refusal",
                    "kind=%s id=%s generation=%llu", cluster_kind_name(envelope.kind), envelope.id,
                    (unsigned long long)envelope.generation);
        }
        cluster_envelope_clear(&envelope);
    }
    for (size_t i = 0; texts != NULL && i < count; i++) {
        free(texts[i]);
    }
    free(texts);
}

static int load_refused(void *user, const char *key, size_t key_length, const char *value,
                        size_t value_length)
{
    struct cluster_sync *sync = user;
    struct cluster_envelope envelope;
    (void)key;
    (void)key_length;
    if (cluster_envelope_decode(value, value_length, &envelope) == 0) {
        refused_remember(sync, &envelope, value, value_length, "refused before the restart");
        cluster_envelope_clear(&envelope);
    }
    return 0;
}

/* ---- fetching ---- */

static void fetch(struct cluster_sync *sync);
static void seed_start(struct cluster_sync *sync);
static void push_next(struct cluster_sync *sync);

static void caught_up(struct cluster_sync *sync, const char *how)
{
    if (sync->caught_up) {
        return;
    }
    sync->caught_up = true;
    plane_sync_caught_up(sync->plane);
    log_msg(strcmp(how, "caught up") == 0 ? LOG_INFO : LOG_WARN, "cluster configuration",
            "state=\"%s\" generation=%llu", how,
            (unsigned long long)atomic_load(&sync->applied_generation));
}

/*
 * The epoch this node offers when it finds Redis without one. A new one after
 * every adoption: a data set Redis builds again after a loss must never carry
 * the name of one a node has applied, or a node that was away would take the
 * new counter for the old one and skip documents.
 */
static bool new_candidate_epoch(struct cluster_sync *sync)
{
    unsigned char random[EPOCH_LENGTH / 2];
    if (RAND_bytes(random, sizeof(random)) != 1) {
        return false;
    }
    for (size_t i = 0; i < sizeof(random); i++) {
        snprintf(sync->candidate_epoch + 2 * i, 3, "%02x", random[i]);
    }
    return true;
}

/* Adopts Redis's epoch, starting again from generation 0 (after a re-seed). */
static bool adopt_epoch(struct cluster_sync *sync, const char *epoch)
{
    struct store_put puts[2] = {
        {STORE_CLUSTER, EPOCH_KEY, strlen(EPOCH_KEY), epoch, strlen(epoch)},
        {STORE_CLUSTER, GENERATION_KEY, strlen(GENERATION_KEY), "0", 1},
    };
    if (store_put_sync(sync->store, puts, 2) != STORE_OK) {
        return false;
    }
    snprintf(sync->epoch, sizeof(sync->epoch), "%s", epoch);
    atomic_store(&sync->applied_generation, 0);
    if (strcmp(sync->candidate_epoch, epoch) == 0 && !new_candidate_epoch(sync)) {
        log_msg(LOG_ERROR, "no randomness for the cluster's next epoch",
                "action=\"a later loss of Redis's data may go unnoticed by nodes that were away\"");
    }
    return true;
}

static void fetch_reply(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct cluster_sync *sync = user;
    sync->fetching = false;
    const struct redis_reply *documents = status == REDIS_STATUS_OK &&
                                                  redis_reply_kind(reply) == REDIS_KIND_ARRAY &&
                                                  redis_reply_count(reply) == 3
                                              ? redis_reply_element(reply, 2)
                                              : NULL;
    const char *epoch =
        documents != NULL ? redis_reply_string(redis_reply_element(reply, 1), NULL) : NULL;
    if (epoch == NULL || redis_reply_kind(documents) != REDIS_KIND_ARRAY) {
        if (status != REDIS_STATUS_UNAVAILABLE) {
            atomic_fetch_add(&sync->errors_total, 1);
        }
        return;
    }
    uint64_t current = (uint64_t)redis_reply_integer(redis_reply_element(reply, 0));
    uint64_t applied = atomic_load(&sync->applied_generation);
    atomic_store(&sync->cluster_generation, current);
    if (strcmp(epoch, sync->epoch) != 0 || current < applied) {
        if (!sync->just_seeded) {
            if (sync->epoch[0] != '\0') {
                atomic_fetch_add(&sync->reseeds_total, 1);
                log_msg(LOG_WARN, "redis lost the cluster's configuration",
                        "epoch=%s was=%s generation=%llu applied=%llu action=\"re-seeding this "
                        "node's documents\"",
                        epoch, sync->epoch, (unsigned long long)current,
                        (unsigned long long)applied);
            }
            sync->seed_wanted = true;
            seed_start(sync);
            return;
        }
        if (!adopt_epoch(sync, epoch)) {
            atomic_fetch_add(&sync->errors_total, 1);
            return;
        }
        sync->just_seeded = false;
        fetch(sync);
        return;
    }
    sync->just_seeded = false;
    size_t count = redis_reply_count(documents);
    bool dirty = false, ok = true;
    for (size_t i = 0; ok && i < count; i++) {
        size_t length = 0;
        const char *text = redis_reply_string(redis_reply_element(documents, i), &length);
        bool recorded = false;
        if (text == NULL) {
            continue; /* a field the hash lost: nothing to apply */
        }
        ok = apply_envelope(sync, text, length, &recorded);
        dirty = ok && !recorded;
    }
    if (dirty) {
        char text[24], unused[SYNC_KEY_MAX];
        struct store_put puts[2];
        generation_puts(atomic_load(&sync->applied_generation), NULL, text, unused, puts);
        if (store_put_sync(sync->store, puts, 1) != STORE_OK) {
            atomic_fetch_add(&sync->errors_total, 1);
        }
    }
    if (ok && (count == SYNC_FETCH_LIMIT || sync->fetch_again)) {
        sync->fetch_again = false;
        fetch(sync);
    } else if (ok && atomic_load(&sync->applied_generation) >= current) {
        caught_up(sync, "caught up");
    }
}

static void fetch(struct cluster_sync *sync)
{
    if (sync->fetching || sync->seeding) {
        sync->fetch_again = sync->fetching;
        return;
    }
    char after[24], limit[8];
    snprintf(after, sizeof(after), "%llu",
             (unsigned long long)atomic_load(&sync->applied_generation));
    snprintf(limit, sizeof(limit), "%d", SYNC_FETCH_LIMIT);
    const char *args[] = {after, limit, sync->candidate_epoch};
    if (redis_script_call(sync->client, sync->fetch_script, fetch_reply, sync, 4, script_keys, NULL,
                          3, args, NULL) == REDIS_STATUS_OK) {
        sync->fetching = true;
    }
}

static void on_message(void *user, const char *message, size_t length)
{
    (void)message;
    (void)length;
    fetch(user);
}

/* ---- pushing the outbox ---- */

static enum redis_status push(struct cluster_sync *sync, const char *field, const char *envelope,
                              size_t length, bool only_if_absent, redis_reply_fn *fn, void *user)
{
    const char *args[] = {field, envelope, sync->channel, only_if_absent ? "1" : "0"};
    size_t lengths[] = {strlen(field), length, strlen(sync->channel), 1};
    return redis_script_call(sync->client, sync->push_script, fn, user, 3, script_keys, NULL, 4,
                             args, lengths);
}

static void push_reply(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct cluster_sync *sync = user;
    sync->pushing = false;
    if (status != REDIS_STATUS_OK || redis_reply_kind(reply) != REDIS_KIND_INTEGER) {
        atomic_fetch_add(&sync->errors_total, 1);
        return;
    }
    if (store_delete_sync(sync->store, STORE_CLUSTER, sync->push_key, strlen(sync->push_key)) !=
        STORE_OK) {
        atomic_fetch_add(&sync->errors_total, 1);
        return;
    }
    atomic_fetch_sub(&sync->outbox_waiting, 1);
    atomic_fetch_add(&sync->pushed_total, 1);
    log_msg(LOG_DEBUG, "cluster configuration pushed", "generation=%lld",
            redis_reply_integer(reply));
    push_next(sync);
}

struct outbox_head {
    char key[64];
    char *envelope;
    size_t length;
};

static int outbox_first(void *user, const char *key, size_t key_length, const char *value,
                        size_t value_length)
{
    struct outbox_head *head = user;
    if (key_length < sizeof(head->key)) {
        memcpy(head->key, key, key_length);
        head->key[key_length] = '\0';
        head->envelope = strndup(value, value_length);
        head->length = value_length;
    }
    return 1;
}

static void push_next(struct cluster_sync *sync)
{
    if (sync->pushing || sync->seeding || redis_client_state(sync->client) != REDIS_STATE_READY) {
        return;
    }
    struct outbox_head head = {{0}, NULL, 0};
    if (store_scan(sync->store, STORE_CLUSTER, OUTBOX_PREFIX, strlen(OUTBOX_PREFIX), outbox_first,
                   &head) != STORE_OK ||
        head.envelope == NULL) {
        free(head.envelope);
        return;
    }
    struct cluster_envelope envelope;
    if (cluster_envelope_decode(head.envelope, head.length, &envelope) != 0) {
        log_msg(LOG_ERROR, "cluster configuration: unreadable outbox entry dropped", "key=%s",
                head.key);
        store_delete_sync(sync->store, STORE_CLUSTER, head.key, strlen(head.key));
        atomic_fetch_sub(&sync->outbox_waiting, 1);
        free(head.envelope);
        return;
    }
    snprintf(sync->push_key, sizeof(sync->push_key), "%s", head.key);
    if (push(sync, envelope.field, head.envelope, head.length, false, push_reply, sync) ==
        REDIS_STATUS_OK) {
        sync->pushing = true;
    }
    cluster_envelope_clear(&envelope);
    free(head.envelope);
}

/* ---- re-seeding ---- */

static void seed_clear(struct cluster_sync *sync)
{
    for (size_t i = 0; i < sync->seed_count; i++) {
        free(sync->seed_items[i].envelope);
    }
    free(sync->seed_items);
    sync->seed_items = NULL;
    sync->seed_count = 0;
    sync->seed_capacity = 0;
}

static void seed_collect(void *user, const struct plane_change *change)
{
    struct cluster_sync *sync = user;
    if (sync->seed_count == sync->seed_capacity) {
        size_t capacity = sync->seed_capacity * 2 + 16;
        struct seed_item *grown = realloc(sync->seed_items, capacity * sizeof(*grown));
        if (grown == NULL) {
            sync->seed_failed = true;
            return;
        }
        sync->seed_items = grown;
        sync->seed_capacity = capacity;
    }
    struct seed_item *item = &sync->seed_items[sync->seed_count];
    item->envelope = cluster_envelope_encode(change, cluster_node(sync->cluster));
    if (item->envelope == NULL || cluster_field(change->kind, change->id, item->field) != 0) {
        free(item->envelope);
        sync->seed_failed = true;
        return;
    }
    sync->seed_count++;
}

static void seed_batch(struct cluster_sync *sync);

static void seed_done(struct cluster_sync *sync)
{
    sync->seeding = false;
    size_t count = sync->seed_count;
    seed_clear(sync);
    if (sync->seed_failed) {
        atomic_fetch_add(&sync->errors_total, 1);
        return; /* seed_wanted stays: the next tick starts again */
    }
    sync->seed_wanted = false;
    sync->just_seeded = true;
    log_msg(LOG_INFO, "cluster configuration seeded", "documents=%zu", count);
    fetch(sync);
    push_next(sync);
}

static void seed_reply(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct cluster_sync *sync = user;
    sync->seed_outstanding--;
    if (status != REDIS_STATUS_OK || redis_reply_kind(reply) != REDIS_KIND_INTEGER) {
        sync->seed_failed = true;
    }
    if (sync->seed_outstanding == 0) {
        if (sync->seed_failed || sync->seed_next == sync->seed_count) {
            seed_done(sync);
        } else {
            seed_batch(sync);
        }
    }
}

static void seed_batch(struct cluster_sync *sync)
{
    size_t end = sync->seed_next + SYNC_SEED_BATCH;
    while (sync->seed_next < sync->seed_count && sync->seed_next < end) {
        struct seed_item *item = &sync->seed_items[sync->seed_next++];
        if (push(sync, item->field, item->envelope, strlen(item->envelope), true, seed_reply,
                 sync) != REDIS_STATUS_OK) {
            sync->seed_failed = true;
            break;
        }
        sync->seed_outstanding++;
    }
    if (sync->seed_outstanding == 0) {
        seed_done(sync);
    }
}

/* Writes every document in force that Redis lacks, then fetches (seed_done). */
static void seed_start(struct cluster_sync *sync)
{
    if (sync->seeding || sync->fetching || sync->pushing ||
        redis_client_state(sync->client) != REDIS_STATE_READY) {
        return;
    }
    sync->seeding = true;
    sync->seed_failed = false;
    sync->seed_next = 0;
    sync->seed_outstanding = 0;
    plane_documents(sync->plane, seed_collect, sync);
    seed_batch(sync);
}

/* ---- the loop ---- */

static long elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void on_tick(void *user)
{
    struct cluster_sync *sync = user;
    sync->ticks++;
    if (!sync->caught_up) {
        long waited = elapsed_ms(&sync->started);
        if (redis_client_state(sync->client) != REDIS_STATE_READY && waited >= SYNC_HOLD_DOWN_MS) {
            caught_up(sync, "ready on this node's own copy: redis unreachable");
        } else if (waited >= SYNC_HOLD_MAX_MS) {
            caught_up(sync, "ready before the catch-up finished");
        }
    }
    if (sync->ticks % (SYNC_RETRY_MS / SYNC_TICK_MS) == 0 && sync->refused_count > 0) {
        retry_refused(sync);
    }
    if (redis_client_state(sync->client) != REDIS_STATE_READY) {
        return;
    }
    if (sync->seed_wanted) {
        seed_start(sync);
    } else {
        fetch(sync);
        push_next(sync);
    }
}

static void on_wake(void *user)
{
    struct cluster_sync *sync = user;
    uint64_t value;
    if (read(sync->wake_fd, &value, sizeof(value)) < 0 && errno != EAGAIN) {
        log_msg(LOG_ERROR, "cluster configuration wake-up failed", "error=\"%s\"", strerror(errno));
    }
    push_next(sync);
}

static void on_state(void *user, enum redis_state state, const char *reason)
{
    struct cluster_sync *sync = user;
    atomic_store(&sync->redis_state, (int)state);
    if (state == REDIS_STATE_READY) {
        loop_timer_start(sync->tick, 0, SYNC_TICK_MS);
    } else if (state == REDIS_STATE_DOWN) {
        log_msg(LOG_WARN, "cluster configuration: redis down",
                "error=\"%s\" action=\"changes stay in this node's outbox until it is back\"",
                reason);
    }
}

static void *no_accept(void *loop_user, struct loop_conn *conn, const struct sockaddr *peer,
                       socklen_t peer_length)
{
    (void)loop_user;
    (void)conn;
    (void)peer;
    (void)peer_length;
    return NULL;
}

static void no_receive(void *conn_user, const uint8_t *data, size_t length)
{
    (void)conn_user;
    (void)data;
    (void)length;
}

static void no_close(void *conn_user, int error)
{
    (void)conn_user;
    (void)error;
}

static const struct loop_handler no_connections = {no_accept, no_receive, no_close};

/* On the thread: the loop, the client, the scripts, the subscription, the timers. */
static int thread_setup(struct cluster_sync *sync, char *err, size_t err_length)
{
    sync->loop = loop_create(LOOP_BACKEND_EPOLL, &no_connections, sync, err, err_length);
    if (sync->loop == NULL) {
        return -1;
    }
    sync->client = cluster_client_create(sync->cluster, sync->loop, NULL, SYNC_COMMAND_TIMEOUT_MS,
                                         on_state, sync, err, err_length);
    if (sync->client == NULL) {
        return -1;
    }
    sync->push_script = redis_script_register(sync->client, push_script_source);
    sync->fetch_script = redis_script_register(sync->client, fetch_script_source);
    sync->tick = loop_timer_create(sync->loop, on_tick, sync);
    if (sync->push_script == NULL || sync->fetch_script == NULL || sync->tick == NULL ||
        redis_key(sync->client, "config", sync->channel, sizeof(sync->channel)) == 0 ||
        redis_subscribe(sync->client, "config", on_message, sync) != 0 ||
        loop_watch_eventfd(sync->loop, sync->wake_fd, on_wake, sync) != 0) {
        snprintf(err, err_length, "out of memory");
        return -1;
    }
    loop_timer_start(sync->tick, SYNC_TICK_MS, SYNC_TICK_MS);
    return 0;
}

static void *sync_thread(void *arg)
{
    struct cluster_sync *sync = arg;
    char err[256] = "";
    int status = thread_setup(sync, err, sizeof(err));
    pthread_mutex_lock(&sync->start_lock);
    sync->start_status = status;
    snprintf(sync->start_err, sizeof(sync->start_err), "%s", err);
    sync->start_answered = true;
    pthread_cond_signal(&sync->start_done);
    pthread_mutex_unlock(&sync->start_lock);
    if (status == 0) {
        loop_run(sync->loop);
    }
    if (sync->tick != NULL) {
        loop_timer_destroy(sync->tick);
    }
    redis_client_destroy(sync->client);
    seed_clear(sync);
    loop_destroy(sync->loop);
    return NULL;
}

/* ---- the plane's hooks ---- */

static int sync_record(void *user, const struct plane_change *change, struct store_put *put)
{
    struct cluster_sync *sync = user;
    char *envelope = cluster_envelope_encode(change, cluster_node(sync->cluster));
    char *key = NULL;
    if (envelope == NULL ||
        asprintf(&key, OUTBOX_PREFIX "%020llu",
                 (unsigned long long)atomic_fetch_add(&sync->outbox_next, 1)) < 0) {
        free(envelope);
        return -1;
    }
    *put = (struct store_put){STORE_CLUSTER, key, strlen(key), envelope, strlen(envelope)};
    return 0;
}

static void sync_changed(void *user)
{
    struct cluster_sync *sync = user;
    uint64_t one = 1;
    atomic_fetch_add(&sync->outbox_waiting, 1);
    if (write(sync->wake_fd, &one, sizeof(one)) < 0) {
        log_msg(LOG_ERROR, "cluster configuration wake-up failed", "error=\"%s\"", strerror(errno));
    }
}

static uint64_t sync_generation(void *user)
{
    struct cluster_sync *sync = user;
    return atomic_load(&sync->applied_generation);
}

static uint64_t outbox_count(struct cluster_sync *sync)
{
    int64_t count = atomic_load(&sync->outbox_waiting);
    return count > 0 ? (uint64_t)count : 0;
}

static uint64_t sync_lag(struct cluster_sync *sync)
{
    uint64_t cluster = atomic_load(&sync->cluster_generation);
    uint64_t applied = atomic_load(&sync->applied_generation);
    return cluster > applied ? cluster - applied : 0;
}

static json_t *sync_status(void *user)
{
    struct cluster_sync *sync = user;
    json_t *refused = json_array();
    pthread_mutex_lock(&sync->lock);
    for (size_t i = 0; i < sync->refused_count; i++) {
        const struct refused *entry = &sync->refused[i];
        const char *slash = strchr(entry->field, '/');
        json_array_append_new(refused, json_pack("{s:s%, s:s, s:I, s:s}", "kind", entry->field,
                                                 (size_t)(slash - entry->field), "id", slash + 1,
                                                 "generation", (json_int_t)entry->generation,
                                                 "error", entry->error));
    }
    pthread_mutex_unlock(&sync->lock);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:o}", "generation",
                     (json_int_t)atomic_load(&sync->applied_generation), "clusterGeneration",
                     (json_int_t)atomic_load(&sync->cluster_generation), "lag",
                     (json_int_t)sync_lag(sync), "outbox", (json_int_t)outbox_count(sync),
                     "applied", (json_int_t)atomic_load(&sync->applied_total), "pushed",
                     (json_int_t)atomic_load(&sync->pushed_total), "errors",
                     (json_int_t)atomic_load(&sync->errors_total), "redis",
                     redis_state_name((enum redis_state)atomic_load(&sync->redis_state)), "refused",
                     refused);
}

static void sync_metrics(void *user, FILE *out)
{
    struct cluster_sync *sync = user;
    pthread_mutex_lock(&sync->lock);
    size_t refused = sync->refused_count;
    pthread_mutex_unlock(&sync->lock);
    fprintf(out,
            "# HELP dps_config_sync_lag Cluster configuration changes not applied here yet.\n"
            "# TYPE dps_config_sync_lag gauge\ndps_config_sync_lag %llu\n"
            "# HELP dps_config_sync_outbox Changes made here not yet in Redis.\n"
            "# TYPE dps_config_sync_outbox gauge\ndps_config_sync_outbox %llu\n"
            "# HELP dps_config_sync_refused Cluster changes this node refused (status lists "
            "them).\n# TYPE dps_config_sync_refused gauge\ndps_config_sync_refused %zu\n"
            "# HELP dps_config_sync_applied_total Cluster changes applied here.\n"
            "# TYPE dps_config_sync_applied_total counter\ndps_config_sync_applied_total %llu\n"
            "# HELP dps_config_sync_pushed_total Changes made here pushed into Redis.\n"
            "# TYPE dps_config_sync_pushed_total counter\ndps_config_sync_pushed_total %llu\n"
            "# HELP dps_config_sync_errors_total Failed fetches, pushes and refused changes.\n"
            "# TYPE dps_config_sync_errors_total counter\ndps_config_sync_errors_total %llu\n"
            "# HELP dps_config_sync_reseeds_total Times Redis had lost the configuration and "
            "this node re-seeded it.\n# TYPE dps_config_sync_reseeds_total counter\n"
            "dps_config_sync_reseeds_total %llu\n",
            (unsigned long long)sync_lag(sync), (unsigned long long)outbox_count(sync), refused,
            (unsigned long long)atomic_load(&sync->applied_total),
            (unsigned long long)atomic_load(&sync->pushed_total),
            (unsigned long long)atomic_load(&sync->errors_total),
            (unsigned long long)atomic_load(&sync->reseeds_total));
}

/* ---- life ---- */

static void sync_free(struct cluster_sync *sync)
{
    for (size_t i = 0; i < sync->refused_count; i++) {
        free(sync->refused[i].envelope);
    }
    free(sync->refused);
    if (sync->wake_fd >= 0) {
        close(sync->wake_fd);
    }
    cluster_free(sync->cluster);
    pthread_mutex_destroy(&sync->lock);
    pthread_mutex_destroy(&sync->start_lock);
    pthread_cond_destroy(&sync->start_done);
    free(sync);
}

/* The node's generation, epoch, outbox and refusals, from its store. */
static int sync_load(struct cluster_sync *sync, char *err, size_t err_length)
{
    char text[64];
    int rc = store_text(sync, GENERATION_KEY, text, sizeof(text));
    if (rc == STORE_OK) {
        atomic_store(&sync->applied_generation, strtoull(text, NULL, 10));
    }
    if (rc == STORE_OK || rc == STORE_NOT_FOUND) {
        rc = store_text(sync, EPOCH_KEY, sync->epoch, sizeof(sync->epoch));
    }
    if ((rc != STORE_OK && rc != STORE_NOT_FOUND) ||
        store_scan(sync->store, STORE_CLUSTER, OUTBOX_PREFIX, strlen(OUTBOX_PREFIX), count_outbox,
                   sync) != STORE_OK ||
        store_scan(sync->store, STORE_CLUSTER, REFUSED_PREFIX, strlen(REFUSED_PREFIX), load_refused,
                   sync) != STORE_OK) {
        snprintf(err, err_length, "cannot read the cluster's configuration state from the store");
        return -1;
    }
    if (!new_candidate_epoch(sync)) {
        snprintf(err, err_length, "no randomness for the cluster's epoch");
        return -1;
    }
    return 0;
}

struct cluster_sync *cluster_sync_start(struct plane *plane, const struct config_cluster *config,
                                        char *err, size_t err_length)
{
    struct cluster_sync *sync = calloc(1, sizeof(*sync));
    if (sync == NULL) {
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    sync->plane = plane;
    sync->store = plane_store(plane);
    sync->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sync->seed_wanted = true; /* documents made before joining, or while Redis was away */
    pthread_mutex_init(&sync->lock, NULL);
    pthread_mutex_init(&sync->start_lock, NULL);
    pthread_cond_init(&sync->start_done, NULL);
    clock_gettime(CLOCK_MONOTONIC, &sync->started);
    sync->cluster = cluster_create(config, 0, sync->store, err, err_length);
    if (sync->cluster == NULL || sync->wake_fd < 0 || sync_load(sync, err, err_length) != 0) {
        if (sync->wake_fd < 0) {
            snprintf(err, err_length, "eventfd: %s", strerror(errno));
        }
        sync_free(sync);
        return NULL;
    }
    struct plane_sync hooks = {sync,        sync_record, sync_changed, sync_generation,
                               sync_status, sync_metrics};
    plane_set_sync(plane, &hooks);
    int rc = pthread_create(&sync->thread, NULL, sync_thread, sync);
    if (rc == 0) {
        sync->thread_started = true;
        pthread_setname_np(sync->thread, "dps-config-sync");
        pthread_mutex_lock(&sync->start_lock);
        while (!sync->start_answered) {
            pthread_cond_wait(&sync->start_done, &sync->start_lock);
        }
        pthread_mutex_unlock(&sync->start_lock);
        rc = sync->start_status;
        snprintf(err, err_length, "%s", sync->start_err);
    } else {
        snprintf(err, err_length, "cannot start the thread: %s", strerror(rc));
    }
    if (rc != 0) {
        cluster_sync_stop(sync);
        return NULL;
    }
    log_msg(LOG_INFO, "cluster configuration sync started",
            "node=%s generation=%llu epoch=%s outbox=%llu refused=%zu", cluster_node(sync->cluster),
            (unsigned long long)atomic_load(&sync->applied_generation),
            sync->epoch[0] != '\0' ? sync->epoch : "none", (unsigned long long)outbox_count(sync),
            sync->refused_count);
    return sync;
}

void cluster_sync_stop(struct cluster_sync *sync)
{
    if (sync == NULL) {
        return;
    }
    struct plane_sync none = {0};
    plane_set_sync(sync->plane, &none);
    plane_sync_caught_up(sync->plane);
    if (sync->thread_started) {
        if (sync->start_status == 0) {
            loop_stop(sync->loop);
        }
        pthread_join(sync->thread, NULL);
    }
    sync_free(sync);
}
