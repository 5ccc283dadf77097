/*
 * plane: the node's control plane: the snapshot of the groups and hubs in
 * force, its publication to the shards, and the node's life (start, reload,
 * drain, stop). A candidate is built and checked in control/plane_snapshot.c;
 * the changes that make one are in control/plane_documents.c (groups, hubs)
 * and control/plane_blocklist.c; control/plane_internal.h says who owns what.
 *
 * Groups and hubs live as JSON documents in the store (control/model.h);
 * the configuration file seeds them at start and on SIGHUP, when every
 * stored document is loaded again and every file read again.
 *
 * Publication is all or nothing, in two phases: every shard prepares its
 * view of the candidate on its own thread; only when all have does the
 * change become durable (the document, synced), and only then does every
 * shard switch to its prepared view. A shard that cannot prepare, or a store
 * that refuses the write, leaves every shard and the store as they were, and
 * the caller is told so. The change returns only when all shards switched.
 * Changes are serialised by one mutex; the data plane never takes it.
 */
#include "control/plane_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "control/auth.h"
#include "control/model.h"
#include "crypto/issuer.h"
#include "crypto/jwt.h"
#include "dataplane/shard.h"
#include "store/store.h"

/* ---- publication ---- */

struct publication {
    pthread_mutex_t lock;
    pthread_cond_t done;
    unsigned waiting;
    int failures;
    char err[512];
};

static void answered(void *user, int status, const char *err)
{
    struct publication *publication = user;
    pthread_mutex_lock(&publication->lock);
    if (status != 0 && publication->failures++ == 0) {
        snprintf(publication->err, sizeof(publication->err), "%s", err);
    }
    if (--publication->waiting == 0) {
        pthread_cond_signal(&publication->done);
    }
    pthread_mutex_unlock(&publication->lock);
}

enum phase { PHASE_PREPARE, PHASE_COMMIT, PHASE_ABORT };

/*
 * One phase on every shard, waiting for all answers. Returns how many shards
 * failed (only preparing can fail), the first reason in err.
 */
static int run_phase(struct plane *plane, enum phase phase, struct snapshot *snapshot, char *err,
                     size_t err_length)
{
    struct publication publication = {.waiting = plane->shard_count};
    pthread_mutex_init(&publication.lock, NULL);
    pthread_cond_init(&publication.done, NULL);
    for (unsigned i = 0; i < plane->shard_count; i++) {
        struct shard *shard = plane->shards[i];
        if (phase == PHASE_PREPARE) {
            shard_prepare(shard, snapshot, answered, &publication);
        } else {
            shard_decide(shard, phase == PHASE_COMMIT, answered, &publication);
        }
    }
    pthread_mutex_lock(&publication.lock);
    while (publication.waiting > 0) {
        pthread_cond_wait(&publication.done, &publication.lock);
    }
    pthread_mutex_unlock(&publication.lock);
    pthread_mutex_destroy(&publication.lock);
    pthread_cond_destroy(&publication.done);
    if (publication.failures > 0) {
        snprintf(err, err_length, "%d shard(s) could not adopt it: %.400s", publication.failures,
                 publication.err);
    }
    return publication.failures;
}

/*
 * Makes snapshot current everywhere or nowhere; called with plane->lock
 * held, takes over the snapshot's reference. persist (may be NULL) runs
 * after every shard prepared and before any switches.
 */
int plane_publish(struct plane *plane, struct plane_snapshot *snapshot, plane_persist_fn persist,
                  void *user, char *err, size_t err_length)
{
    char reason[512] = "";
    int status = PLANE_OK;
    if (run_phase(plane, PHASE_PREPARE, &snapshot->base, reason, sizeof(reason)) > 0 ||
        (persist != NULL && persist(plane, user, reason, sizeof(reason)) != PLANE_OK)) {
        snprintf(err, err_length, "nothing changed: %s", reason);
        status = PLANE_FAILED;
    }
    if (status != PLANE_OK) {
        /* Shards that prepared drop their view; the others have nothing to drop. */
        run_phase(plane, PHASE_ABORT, NULL, reason, sizeof(reason));
        log_msg(LOG_ERROR, "configuration not published", "generation=%llu error=\"%s\"",
                (unsigned long long)snapshot->base.generation, err);
        snapshot_release(&snapshot->base);
        return status;
    }
    run_phase(plane, PHASE_COMMIT, NULL, reason, sizeof(reason));
    pthread_mutex_lock(&plane->current_lock);
    struct plane_snapshot *old = plane->current;
    plane->current = snapshot;
    pthread_mutex_unlock(&plane->current_lock);
    snapshot_release(old != NULL ? &old->base : NULL);
    log_msg(LOG_INFO, "configuration published", "generation=%llu groups=%zu hubs=%zu",
            (unsigned long long)snapshot->base.generation, snapshot->config.group_count,
            snapshot->config.hub_count);
    return PLANE_OK;
}

/* ---- a change made durable between the phases ---- */

int plane_persist_document(struct plane *plane, void *user, char *err, size_t err_length)
{
    const struct plane_document_change *change = user;
    struct store_put *puts = calloc(change->extra_count + 2, sizeof(*puts));
    char *text = change->doc != NULL ? json_dumps(change->doc, JSON_COMPACT) : NULL;
    struct store_put record = {0};
    int status = puts != NULL && (change->doc == NULL || text != NULL) ? PLANE_OK : PLANE_FAILED;
    size_t count = 0;
    if (status == PLANE_OK) {
        puts[count++] = (struct store_put){change->family, change->id, strlen(change->id), text,
                                           text != NULL ? strlen(text) : 0};
        for (size_t i = 0; i < change->extra_count; i++) {
            puts[count++] = change->extra[i];
        }
    }
    if (status == PLANE_OK && change->shared && plane->sync.record != NULL) {
        enum plane_kind kind = change->family == STORE_GROUPS ? PLANE_KIND_GROUP
                               : change->family == STORE_HUBS ? PLANE_KIND_HUB
                                                              : PLANE_KIND_BLOCK;
        struct plane_change shared = {kind, change->id, change->owner, change->doc};
        if (plane->sync.record(plane->sync.user, &shared, &record) != 0) {
            status = PLANE_FAILED;
        } else {
            puts[count++] = record;
        }
    }
    if (status == PLANE_OK && store_put_sync(plane->store, puts, count) != STORE_OK) {
        snprintf(err, err_length, "the store refused the %s",
                 change->doc != NULL ? "write" : "delete");
        status = PLANE_FAILED;
    } else if (status != PLANE_OK) {
        snprintf(err, err_length, "out of memory");
    }
    free((char *)record.key);
    free((char *)record.value);
    free(text);
    free(puts);
    return status;
}

/* Tells the cluster's sync that a change made here is in force. */
void plane_shared_change_done(struct plane *plane, const struct plane_document_change *change,
                              int status)
{
    if (status == PLANE_OK && change->shared && plane->sync.changed != NULL) {
        plane->sync.changed(plane->sync.user);
    }
}

/* ---- start: seed the store, load everything ---- */

struct load_state {
    bool groups;
    const struct config *seeds; /* stored documents with these ids are replaced by the seeds */
    void *items;
    size_t count;
    size_t capacity;
    char *err;
    size_t err_length;
    int failed;
};

static int load_one(void *user, const char *key, size_t key_length, const char *value,
                    size_t value_length)
{
    struct load_state *state = user;
    size_t size = state->groups ? sizeof(struct config_group) : sizeof(struct config_hub);
    for (size_t i = 0; i < (state->groups ? state->seeds->group_count : state->seeds->hub_count);
         i++) {
        const char *id = state->groups ? state->seeds->groups[i].id : state->seeds->hubs[i].id;
        if (strlen(id) == key_length && strncasecmp(id, key, key_length) == 0) {
            return 0;
        }
    }
    if (state->count == state->capacity) {
        size_t capacity = state->capacity * 2 + 8;
        void *items = realloc(state->items, capacity * size);
        if (items == NULL) {
            state->failed = 1;
            return 1;
        }
        memset((char *)items + state->capacity * size, 0, (capacity - state->capacity) * size);
        state->items = items;
        state->capacity = capacity;
    }
    json_error_t json_error;
    json_t *doc = json_loadb(value, value_length, 0, &json_error);
    char reason[512] = "not JSON";
    int rc = -1;
    if (doc != NULL) {
        rc = state->groups
                 ? model_group_from_json(doc, &((struct config_group *)state->items)[state->count],
                                         reason, sizeof(reason))
                 : model_hub_from_json(doc, &((struct config_hub *)state->items)[state->count],
                                       reason, sizeof(reason));
        json_decref(doc);
    }
    if (rc != 0) {
        snprintf(state->err, state->err_length, "stored %s %.*s: %s",
                 state->groups ? "enrollment group" : "hub", (int)key_length, key, reason);
        state->failed = 1;
        return 1;
    }
    /*
     * Only the configuration file's documents may name files. One that is
     * not (any more) in the file and names some was made through the API
     * by an earlier version, or dropped from the file: it is kept, and
     * shown to the administrator, who replaces it.
     */
    const struct config_group *group = &((struct config_group *)state->items)[state->count];
    const struct config_hub *hub = &((struct config_hub *)state->items)[state->count];
    bool files = state->groups ? group->ca_chain_file != NULL
                               : hub->ca_key_file != NULL || hub->token_key_file != NULL;
    for (size_t c = 0; state->groups && c < group->crl_count; c++) {
        files = files || group->crls[c][0] == '/';
    }
    if (files) {
        log_msg(LOG_WARN, "stored document names files but is not in the configuration file",
                "kind=\"%s\" id=%.*s owner=\"%s\" fix=\"replace it through the API (keys by "
                "keyName, PEM chains) or add it to the configuration file\"",
                state->groups ? "enrollment group" : "hub", (int)key_length, key,
                state->groups ? (group->owner != NULL ? group->owner : "")
                              : (hub->owner != NULL ? hub->owner : ""));
    }
    state->count++;
    return 0;
}

/*
 * Writes the file's groups and hubs (seeds, a struct config) into the store
 * in one synced batch: they win over stored documents of the same id.
 */
static int persist_seeds(struct plane *plane, void *user, char *err, size_t err_length)
{
    const struct config *seeds = user;
    size_t count = seeds->hub_count + seeds->group_count, made = 0;
    struct store_put *puts = calloc(count + 1, sizeof(*puts));
    char **texts = calloc(count + 1, sizeof(*texts));
    int status = puts != NULL && texts != NULL ? PLANE_OK : PLANE_FAILED;
    for (size_t i = 0; status == PLANE_OK && i < count; i++) {
        bool hub = i < seeds->hub_count;
        const char *id = hub ? seeds->hubs[i].id : seeds->groups[i - seeds->hub_count].id;
        json_t *doc = hub ? model_hub_to_json(&seeds->hubs[i])
                          : model_group_to_json(&seeds->groups[i - seeds->hub_count]);
        texts[i] = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        if (texts[i] == NULL) {
            status = PLANE_FAILED;
            break;
        }
        made++;
        puts[i] = (struct store_put){hub ? STORE_HUBS : STORE_GROUPS, id, strlen(id), texts[i],
                                     strlen(texts[i])};
    }
    if (status == PLANE_OK && count > 0 && store_put_sync(plane->store, puts, count) != STORE_OK) {
        snprintf(err, err_length, "the store refused the configuration file's groups and hubs");
        status = PLANE_FAILED;
    } else if (status != PLANE_OK) {
        snprintf(err, err_length, "out of memory");
    }
    for (size_t i = 0; texts != NULL && i < made; i++) {
        free(texts[i]);
    }
    free(texts);
    free(puts);
    return status;
}

static void free_loaded(struct load_state *hubs, struct load_state *groups)
{
    for (size_t i = 0; i < hubs->count; i++) {
        config_hub_clear(&((struct config_hub *)hubs->items)[i]);
    }
    for (size_t i = 0; i < groups->count; i++) {
        config_group_clear(&((struct config_group *)groups->items)[i]);
    }
    free(hubs->items);
    free(groups->items);
}

/* Appends copies of the seeds to what was loaded. 0 or -1 (out of memory). */
static int add_seeds(struct load_state *hubs, struct load_state *groups, const struct config *seeds)
{
    struct config_hub *hub_items =
        realloc(hubs->items, (hubs->count + seeds->hub_count + 1) * sizeof(*hub_items));
    if (hub_items == NULL) {
        return -1;
    }
    hubs->items = hub_items;
    struct config_group *group_items =
        realloc(groups->items, (groups->count + seeds->group_count + 1) * sizeof(*group_items));
    if (group_items == NULL) {
        return -1;
    }
    groups->items = group_items;
    for (size_t i = 0; i < seeds->hub_count; i++) {
        memset(&hub_items[hubs->count], 0, sizeof(*hub_items));
        if (config_hub_copy(&seeds->hubs[i], &hub_items[hubs->count]) != 0) {
            return -1;
        }
        hubs->count++;
    }
    for (size_t i = 0; i < seeds->group_count; i++) {
        memset(&group_items[groups->count], 0, sizeof(*group_items));
        if (config_group_copy(&seeds->groups[i], &group_items[groups->count]) != 0) {
            return -1;
        }
        groups->count++;
    }
    return 0;
}

/*
 * Every registered key loads (with its certificate when it has one), so a
 * mistake in keys: stops the start or the reload rather than a tenant's
 * request later. PLANE_OK or PLANE_INVALID naming the entry.
 */
static int check_registry(struct plane *plane, const struct config *registry, char *err,
                          size_t err_length)
{
    for (size_t i = 0; i < registry->key_count; i++) {
        const struct config_key *key = &registry->keys[i];
        char reason[512];
        if (key->cert_file != NULL) {
            struct issuer *issuer = issuer_load(plane->check_libctx, key->cert_file, key->key_file,
                                                reason, sizeof(reason));
            issuer_free(issuer);
            if (issuer == NULL) {
                snprintf(err, err_length, "keys[%zu] (%s): %s", i, key->name, reason);
                return PLANE_INVALID;
            }
        } else {
            struct jwt_key *token =
                jwt_key_load(plane->check_libctx, key->key_file, NULL, reason, sizeof(reason));
            jwt_key_free(token);
            if (token == NULL) {
                snprintf(err, err_length, "keys[%zu] (%s): %s", i, key->name, reason);
                return PLANE_INVALID;
            }
        }
    }
    return PLANE_OK;
}

/*
 * Builds a snapshot from everything stored, with the seeds (the
 * configuration file's groups and hubs) in place of stored documents of the
 * same id, and the key registry of seeds; nothing is written. Every key
 * file is loaded again even when no hub document changed (SIGHUP: rotated
 * files at the same paths take effect).
 */
static struct plane_snapshot *load_stored(struct plane *plane, const struct config *seeds,
                                          int *status, char *err, size_t err_length)
{
    struct load_state hubs = {
        .groups = false, .seeds = seeds, .err = err, .err_length = err_length};
    struct load_state groups = {
        .groups = true, .seeds = seeds, .err = err, .err_length = err_length};
    *status = PLANE_INVALID;
    if (store_scan(plane->store, STORE_HUBS, NULL, 0, load_one, &hubs) != STORE_OK || hubs.failed ||
        store_scan(plane->store, STORE_GROUPS, NULL, 0, load_one, &groups) != STORE_OK ||
        groups.failed) {
        if (!hubs.failed && !groups.failed) {
            snprintf(err, err_length, "cannot read the store");
            *status = PLANE_FAILED;
        }
        free_loaded(&hubs, &groups);
        return NULL;
    }
    if (add_seeds(&hubs, &groups, seeds) != 0) {
        snprintf(err, err_length, "out of memory");
        *status = PLANE_FAILED;
        free_loaded(&hubs, &groups);
        return NULL;
    }
    struct plane_candidate candidate = {groups.items,     groups.count, hubs.items, hubs.count,
                                        plane->blocklist, seeds,        true,       false};
    return plane_snapshot_build(plane, &candidate, plane->current, status, err, err_length);
}

struct plane *plane_create(struct config *settings, struct store *store, char *err,
                           size_t err_length)
{
    struct plane *plane = calloc(1, sizeof(*plane));
    if (plane == NULL) {
        snprintf(err, err_length, "out of memory");
        config_free(settings);
        store_close(store);
        return NULL;
    }
    plane->settings = settings;
    plane->store = store;
    pthread_mutex_init(&plane->lock, NULL);
    pthread_mutex_init(&plane->current_lock, NULL);
    admission_init(&plane->admission, settings->signing_rate, settings->signing_burst);
    plane->check_libctx = OSSL_LIB_CTX_new();
    if (plane->check_libctx == NULL) {
        snprintf(err, err_length, "out of memory");
        plane_destroy(plane);
        return NULL;
    }
    plane->blocklist = plane_blocklist_load(plane, err, err_length);
    if (plane->blocklist == NULL) {
        plane_destroy(plane);
        return NULL;
    }
    if (settings->api.jwks_file != NULL) {
        char reason[512];
        plane->operator_keys =
            auth_load(settings->api.jwks_file, settings->api.issuer, settings->api.audience,
                      settings->api.owner_claim, reason, sizeof(reason));
        if (plane->operator_keys == NULL) {
            snprintf(err, err_length, "api.jwks: %s", reason);
            plane_destroy(plane);
            return NULL;
        }
    }
    /* The file's groups and hubs are written only once the whole configuration checks out. */
    int status = check_registry(plane, settings, err, err_length);
    plane->current =
        status == PLANE_OK ? load_stored(plane, settings, &status, err, err_length) : NULL;
    if (plane->current == NULL || persist_seeds(plane, settings, err, err_length) != PLANE_OK) {
        plane_destroy(plane);
        return NULL;
    }
    return plane;
}

int plane_start(struct plane *plane, unsigned shard_count, char *err, size_t err_length)
{
    if (shard_count == 0 || shard_count > PLANE_MAX_SHARDS) {
        snprintf(err, err_length, "shards must be 1..%d", PLANE_MAX_SHARDS);
        return -1;
    }
    for (unsigned i = 0; i < shard_count; i++) {
        plane->shards[i] = shard_create(i, &plane->current->base, plane->store, &plane->admission,
                                        err, err_length);
        if (plane->shards[i] == NULL) {
            return -1;
        }
        plane->shard_count = i + 1;
    }
    for (unsigned i = 0; i < shard_count; i++) {
        int rc = shard_start(plane->shards[i]);
        if (rc != 0) {
            snprintf(err, err_length, "cannot start shard %u: %s", i, strerror(-rc));
            return -1;
        }
    }
    atomic_store(&plane->ready, true);
    return 0;
}

int plane_reload(struct plane *plane, struct config *fresh, char *err, size_t err_length)
{
    /*
     * The operator keys a hub's token key is checked against follow a rotated api.jwks, as
     * the API's do (control/api.h: api_reload); a JWKS that does not load keeps them, and the
     * API's reload says why.
     */
    char reason[512];
    struct auth *operator_keys =
        plane->operator_keys != NULL && fresh->api.jwks_file != NULL
            ? auth_load(fresh->api.jwks_file, fresh->api.issuer, fresh->api.audience,
                        fresh->api.owner_claim, reason, sizeof(reason))
            : NULL;
    pthread_mutex_lock(&plane->lock);
    if (operator_keys != NULL) {
        struct auth *old_keys = plane->operator_keys;
        plane->operator_keys = operator_keys;
        operator_keys = old_keys;
    }
    int status = check_registry(plane, fresh, err, err_length);
    struct plane_snapshot *snapshot =
        status == PLANE_OK ? load_stored(plane, fresh, &status, err, err_length) : NULL;
    if (snapshot != NULL) {
        status = plane_publish(plane, snapshot, persist_seeds, fresh, err, err_length);
    }
    if (status == PLANE_OK) {
        /*
         * The file's groups and hubs become the seeds and its keys the
         * registry (read only under the lock); settings other than these stay.
         */
        struct config *settings = plane->settings;
        struct config_key *old_keys = settings->keys;
        size_t old_key_count = settings->key_count;
        settings->keys = fresh->keys;
        settings->key_count = fresh->key_count;
        fresh->keys = old_keys;
        fresh->key_count = old_key_count;
        struct config_group *old_groups = settings->groups;
        struct config_hub *old_hubs = settings->hubs;
        size_t old_group_count = settings->group_count, old_hub_count = settings->hub_count;
        settings->groups = fresh->groups;
        settings->group_count = fresh->group_count;
        settings->hubs = fresh->hubs;
        settings->hub_count = fresh->hub_count;
        fresh->groups = old_groups;
        fresh->group_count = old_group_count;
        fresh->hubs = old_hubs;
        fresh->hub_count = old_hub_count;
    }
    config_free(fresh);
    pthread_mutex_unlock(&plane->lock);
    auth_free(operator_keys);
    return status;
}

void plane_drain(struct plane *plane, unsigned timeout_s)
{
    atomic_store(&plane->ready, false);
    for (unsigned i = 0; i < plane->shard_count; i++) {
        shard_drain(plane->shards[i]);
    }
    struct timespec start, now, pause = {.tv_nsec = 50 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        unsigned connections = 0;
        for (unsigned i = 0; i < plane->shard_count; i++) {
            struct shard_stats stats;
            shard_get_stats(plane->shards[i], &stats);
            connections += stats.connections;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (connections == 0 || now.tv_sec - start.tv_sec >= (time_t)timeout_s) {
            log_msg(LOG_INFO, "drained", "connections_left=%u", connections);
            return;
        }
        nanosleep(&pause, NULL);
    }
}

void plane_destroy(struct plane *plane)
{
    if (plane == NULL) {
        return;
    }
    for (unsigned i = 0; i < plane->shard_count; i++) {
        shard_stop(plane->shards[i]);
    }
    for (unsigned i = 0; i < plane->shard_count; i++) {
        shard_join(plane->shards[i]);
    }
    /*
     * Every connection is closed now. The store finishes its queued commits,
     * and work still with the signers comes back through the shards'
     * mailboxes until none is left; only then can the shards go.
     */
    if (plane->store != NULL) {
        store_close(plane->store);
        plane->store = NULL;
    }
    struct timespec pause = {.tv_nsec = 1000 * 1000};
    for (;;) {
        unsigned pending = 0;
        for (unsigned i = 0; i < plane->shard_count; i++) {
            pending += shard_collect(plane->shards[i]);
        }
        if (pending == 0) {
            break;
        }
        nanosleep(&pause, NULL);
    }
    for (unsigned i = 0; i < plane->shard_count; i++) {
        shard_finish(plane->shards[i]);
    }
    if (plane->current != NULL) {
        snapshot_release(&plane->current->base);
    }
    auth_free(plane->operator_keys);
    OSSL_LIB_CTX_free(plane->check_libctx);
    json_decref(plane->blocklist);
    pthread_mutex_destroy(&plane->lock);
    pthread_mutex_destroy(&plane->current_lock);
    config_free(plane->settings);
    free(plane);
}

/* ---- readers ---- */

/* Readers never wait for a change in progress: only for the pointer swap. */
const struct config *plane_config_acquire(struct plane *plane)
{
    pthread_mutex_lock(&plane->current_lock);
    struct plane_snapshot *snapshot = plane->current;
    snapshot_retain(&snapshot->base);
    pthread_mutex_unlock(&plane->current_lock);
    return &snapshot->config;
}

void plane_config_release(struct plane *plane, const struct config *config)
{
    (void)plane;
    snapshot_release(&plane_snapshot_of(config)->base);
}

const struct config *plane_settings(struct plane *plane)
{
    return plane->settings;
}

struct store *plane_store(struct plane *plane)
{
    return plane->store;
}

bool plane_ready(struct plane *plane)
{
    /* Not while starting or draining, nor while the store cannot make records durable. */
    return atomic_load(&plane->ready) && !atomic_load(&plane->sync_catching) &&
           plane->store != NULL && store_healthy(plane->store);
}

/* ---- the cluster's sync (control/cluster_sync.c) ---- */

void plane_set_sync(struct plane *plane, const struct plane_sync *sync)
{
    pthread_mutex_lock(&plane->lock);
    plane->sync = *sync;
    atomic_store(&plane->sync_catching, true);
    pthread_mutex_unlock(&plane->lock);
}

void plane_sync_caught_up(struct plane *plane)
{
    atomic_store(&plane->sync_catching, false);
}
