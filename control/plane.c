/*
 * plane: the node's control plane: snapshots of the groups and hubs in
 * force, their publication to the shards, and the node's life (start,
 * reload, drain, stop).
 *
 * Groups and hubs live as JSON documents in the store (control/model.h);
 * the configuration file seeds them at start. A change builds a complete
 * candidate snapshot first and checks it as the shards will use it (every
 * chain loads, no two groups share a first CA, every hub's keys load, the
 * ACLs fit the protocol). Every file the snapshot names (TLS certificate and
 * key, manufacturer chains, CRLs) is read once, into the snapshot, before
 * that check: the shards build from the very bytes that were checked. At
 * start and on SIGHUP every file is read again; a change through the API
 * reads only what the new document names (nothing: it holds PEM text).
 *
 * A change costs what it touches, not what every owner holds: the candidate
 * copies the unchanged groups with the bytes already read, and takes from
 * the snapshot in force the proven chains and CRLs (attestation_create_from),
 * the catalog entries and the signer of whatever did not change; only the
 * changed document is proven, and its first CA compared with the others.
 *
 * Hubs' keys: a hub names files (the configuration file's hubs) or
 * registered keys (keys: in the configuration, read only under the lock);
 * names resolve to files when a snapshot is built, for the hub's owner only.
 * The management API's operator keys (its JWKS) are never a hub's token key.
 * Quotas per owner (api.quotas) are counted here, under the lock.
 *
 * Publication is all or nothing, in two phases: every shard prepares its
 * view of the candidate on its own thread; only when all have does the
 * change become durable (the document, synced), and only then does every
 * shard switch to its prepared view. A shard that cannot prepare, or a store
 * that refuses the write, leaves every shard and the store as they were, and
 * the caller is told so. The change returns only when all shards switched.
 * Changes are serialised by one mutex; the data plane never takes it.
 *
 * Snapshots whose hubs are the same share one signer, so a change of groups
 * does not restart the signing threads.
 */
#include "control/plane.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "common/file.h"
#include "common/log.h"
#include "control/auth.h"
#include "control/cluster_view.h"
#include "control/model.h"
#include "crypto/attestation.h"
#include "crypto/issuer.h"
#include "crypto/jwt.h"
#include "crypto/keyfile.h"
#include "crypto/signer.h"
#include "crypto/uuid.h"
#include "dataplane/admission.h"
#include "dataplane/blocklist.h"
#include "dataplane/dps_handlers.h"
#include "dataplane/cluster.h"
#include "dataplane/cluster_rate.h"
#include "dataplane/shard.h"
#include "dataplane/snapshot.h"
#include "dataplane/tls.h"
#include "store/records.h"
#include "store/store.h"

#define PLANE_MAX_SHARDS 256
#define SIGNER_QUEUE_LIMIT 65536
#define MATERIAL_FILE_LIMIT (4 * 1024 * 1024) /* a certificate chain, key or CRL file */

/* A signer shared by the snapshots whose hubs are the same. */
struct shared_signer {
    _Atomic unsigned references;
    struct signer *signer;
    char *hubs_json; /* the hub documents it was built from, to recognise equal hub sets */
};

struct plane_snapshot {
    struct snapshot base;
    struct config config; /* the settings (shared, not owned) with this generation's lists */
    struct dps_catalog catalog;
    struct attestation *checked; /* the chains as the control plane proved them (check_libctx) */
    struct shared_signer *shared_signer;
    struct blocklist *blocklist;
    char *tls_cert_pem; /* the files' bytes, read once for every shard */
    char *tls_key_pem;
};

struct plane {
    struct config *settings;
    struct store *store;
    struct admission admission;
    pthread_mutex_t lock;         /* serialises changes */
    pthread_mutex_t current_lock; /* guards only the swap and the reading of current */
    struct plane_snapshot *current;
    json_t *blocklist; /* the stored blocklist entries (an array), guarded by lock */
    uint64_t generation;
    OSSL_LIB_CTX *check_libctx; /* for checking candidates off the data plane */
    struct auth *operator_keys; /* the API's JWKS: never a hub's token key (NULL without API) */
    struct shard *shards[PLANE_MAX_SHARDS];
    unsigned shard_count;
    atomic_bool ready;
    struct plane_sync sync;    /* all NULL without a cluster */
    atomic_bool sync_catching; /* not ready while the cluster's changes are being caught up */
};

/* ---- signers ---- */

static void shared_signer_release(struct shared_signer *shared)
{
    if (shared != NULL && atomic_fetch_sub(&shared->references, 1) == 1) {
        signer_destroy(shared->signer);
        free(shared->hubs_json);
        free(shared);
    }
}

static char *hubs_text(const struct config_hub *hubs, size_t count)
{
    json_t *list = json_array();
    for (size_t i = 0; i < count; i++) {
        json_array_append_new(list, model_hub_to_json(&hubs[i]));
    }
    char *text = json_dumps(list, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(list);
    return text;
}

/* ---- snapshots ---- */

static void free_lists(struct config *config)
{
    for (size_t i = 0; i < config->group_count; i++) {
        config_group_clear(&config->groups[i]);
    }
    for (size_t i = 0; i < config->hub_count; i++) {
        config_hub_clear(&config->hubs[i]);
    }
    free(config->groups);
    free(config->hubs);
    config->groups = NULL;
    config->hubs = NULL;
    config->group_count = 0;
    config->hub_count = 0;
}

static void snapshot_destroy(struct snapshot *base)
{
    struct plane_snapshot *snapshot = (struct plane_snapshot *)base;
    dps_catalog_free(&snapshot->config, &snapshot->catalog);
    attestation_free(snapshot->checked);
    shared_signer_release(snapshot->shared_signer);
    blocklist_free(snapshot->blocklist);
    free_lists(&snapshot->config);
    free(snapshot->tls_cert_pem);
    file_free_secret(snapshot->tls_key_pem);
    free(snapshot);
}

/* The set keys an entry blocks (see dataplane/blocklist.h); returns how many (0-2). */
static size_t entry_keys(const json_t *entry, char keys[2][320])
{
    const char *device = json_string_value(json_object_get(entry, "deviceId"));
    const char *record = json_string_value(json_object_get(entry, "recordId"));
    const char *spki = json_string_value(json_object_get(entry, "publicKeySha256"));
    const char *serial = json_string_value(json_object_get(entry, "serial"));
    const char *issuer = json_string_value(json_object_get(entry, "issuer"));
    size_t count = 0;
    if (device != NULL) {
        snprintf(keys[count++], 320, "device:%s", device);
        if (record != NULL) {
            snprintf(keys[count++], 320, "record:%s", record);
        }
    } else if (spki != NULL) {
        snprintf(keys[count++], 320, "spki:%s", spki);
    } else if (serial != NULL && issuer != NULL) {
        snprintf(keys[count++], 320, "serial:%s/%s", serial, issuer);
    }
    return count;
}

static struct blocklist *build_blocklist(const json_t *entries)
{
    struct blocklist *blocklist = blocklist_new(2 * json_array_size(entries));
    size_t index;
    json_t *entry;
    json_array_foreach(entries, index, entry)
    {
        char keys[2][320];
        size_t count = entry_keys(entry, keys);
        const char *owner = json_string_value(json_object_get(entry, "owner"));
        for (size_t k = 0; blocklist != NULL && owner != NULL && k < count; k++) {
            if (blocklist_add(blocklist, owner, keys[k]) != 0) {
                blocklist_free(blocklist);
                blocklist = NULL;
            }
        }
    }
    return blocklist;
}

static struct plane_snapshot *snapshot_of(const struct config *config)
{
    return (struct plane_snapshot *)((char *)config - offsetof(struct plane_snapshot, config));
}

/* Every group names known hubs. PLANE_OK or PLANE_INVALID. */
static int check_references(const struct config *config, char *err, size_t err_length)
{
    for (size_t i = 0; i < config->group_count; i++) {
        const struct config_group *group = &config->groups[i];
        for (size_t h = 0; h < group->hub_count; h++) {
            if (config_find_hub(config, group->hub_ids[h]) == NULL) {
                snprintf(err, err_length, "hubIds[%zu]: unknown hub \"%s\"", h, group->hub_ids[h]);
                return PLANE_INVALID;
            }
        }
    }
    return PLANE_OK;
}

/*
 * Fills the key files of hubs that name registered keys, from registry.
 * The owner's hub may use a key only when the owner is one of the key's
 * owners; a key that exists for other owners only is answered like one that
 * does not exist at all.
 */
static int resolve_keys(const struct config *registry, struct config *config, bool from_api,
                        char *err, size_t err_length)
{
    for (size_t i = 0; i < config->hub_count; i++) {
        struct config_hub *hub = &config->hubs[i];
        const char *names[2] = {hub->ca_key_name, hub->token_key_name};
        for (size_t k = 0; k < 2; k++) {
            if (names[k] == NULL) {
                continue;
            }
            const struct config_key *key = config_find_key(registry, names[k]);
            bool certificate = k == 0;
            if (key == NULL || !config_key_allows(key, hub->owner) ||
                (certificate && key->cert_file == NULL)) {
                snprintf(err, err_length,
                         "%s%s%s%s.keyName: no key \"%s\"%s is registered for owner \"%s\"",
                         from_api ? "" : "hub ", from_api ? "" : hub->id, from_api ? "" : ": ",
                         certificate ? "identityCertificate" : "token", names[k],
                         certificate ? " with a certificate" : "",
                         hub->owner != NULL ? hub->owner : "");
                return PLANE_INVALID;
            }
            char **cert_file = certificate ? &hub->ca_cert_file : NULL;
            char **key_file = certificate ? &hub->ca_key_file : &hub->token_key_file;
            free(*key_file);
            *key_file = strdup(key->key_file);
            if (cert_file != NULL) {
                free(*cert_file);
                *cert_file = strdup(key->cert_file);
            }
            if (*key_file == NULL || (cert_file != NULL && *cert_file == NULL)) {
                snprintf(err, err_length, "out of memory");
                return PLANE_FAILED;
            }
        }
    }
    return PLANE_OK;
}

/*
 * A hub whose token key signs the management API's operator tokens would
 * hand its devices tokens the API accepts: refused, whatever its claims.
 */
static int check_token_keys(struct plane *plane, const struct config *config, bool from_api,
                            char *err, size_t err_length)
{
    for (size_t i = 0; plane->operator_keys != NULL && i < config->hub_count; i++) {
        const struct config_hub *hub = &config->hubs[i];
        char reason[256];
        char *pem = hub->token_key_file != NULL
                        ? file_read_text(hub->token_key_file, MATERIAL_FILE_LIMIT, NULL, reason,
                                         sizeof(reason))
                        : NULL;
        BIO *bio = pem != NULL ? BIO_new_mem_buf(pem, -1) : NULL;
        EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL,
                                                                 plane->check_libctx, NULL)
                                    : NULL;
        bool operator= key != NULL && auth_has_key(plane->operator_keys, key);
        EVP_PKEY_free(key);
        BIO_free(bio);
        file_free_secret(pem);
        ERR_clear_error();
        if (!operator) {
            continue;
        }
        if (from_api) {
            snprintf(err, err_length,
                     "token.keyName: key \"%s\" signs the management API's operator tokens: a "
                     "hub needs a token key of its own",
                     hub->token_key_name != NULL ? hub->token_key_name : "");
        } else {
            snprintf(err, err_length,
                     "hub %s: token key %s signs the management API's operator tokens "
                     "(api.jwks): a hub needs a token key of its own",
                     hub->id, hub->token_key_file);
        }
        return PLANE_INVALID;
    }
    return PLANE_OK;
}

/*
 * Reads every file the snapshot's groups name, once, into the snapshot
 * (groups copied from the previous snapshot hold their bytes already), and
 * the TLS certificate and key, or takes previous's. PLANE_OK or
 * PLANE_INVALID with the file named.
 */
static int snapshot_read_files(struct plane_snapshot *snapshot,
                               const struct plane_snapshot *previous, char *err, size_t err_length)
{
    struct config *config = &snapshot->config;
    char reason[512];
    for (size_t i = 0; i < config->group_count; i++) {
        struct config_group *group = &config->groups[i];
        if (group->ca_chain_pem == NULL && group->ca_chain_file != NULL) {
            group->ca_chain_pem = file_read_text(group->ca_chain_file, MATERIAL_FILE_LIMIT, NULL,
                                                 reason, sizeof(reason));
            if (group->ca_chain_pem == NULL) {
                snprintf(err, err_length, "enrollment group %s: certificateChain: %s", group->id,
                         reason);
                return PLANE_INVALID;
            }
        }
        if (group->crl_count == 0 || group->crl_pems != NULL) {
            continue;
        }
        group->crl_pems = calloc(group->crl_count, sizeof(*group->crl_pems));
        for (size_t c = 0; group->crl_pems != NULL && c < group->crl_count; c++) {
            const char *entry = group->crls[c];
            group->crl_pems[c] = entry[0] == '/' ? file_read_text(entry, MATERIAL_FILE_LIMIT, NULL,
                                                                  reason, sizeof(reason))
                                                 : strdup(entry);
            if (group->crl_pems[c] == NULL) {
                snprintf(err, err_length, "enrollment group %s: crls[%zu]: %s", group->id, c,
                         entry[0] == '/' ? reason : "out of memory");
                return PLANE_INVALID;
            }
        }
        if (group->crl_pems == NULL) {
            snprintf(err, err_length, "out of memory");
            return PLANE_FAILED;
        }
    }
    if (previous != NULL) {
        snapshot->tls_cert_pem = strdup(previous->tls_cert_pem);
        snapshot->tls_key_pem = strdup(previous->tls_key_pem);
        if (snapshot->tls_cert_pem == NULL || snapshot->tls_key_pem == NULL) {
            snprintf(err, err_length, "out of memory");
            return PLANE_FAILED;
        }
    } else {
        if (keyfile_check_loaded(config->tls_key_file, err, err_length) != 0) {
            return PLANE_INVALID;
        }
        snapshot->tls_cert_pem = file_read_text(config->tls_cert_file, MATERIAL_FILE_LIMIT, NULL,
                                                reason, sizeof(reason));
        if (snapshot->tls_cert_pem != NULL) {
            snapshot->tls_key_pem = file_read_text(config->tls_key_file, MATERIAL_FILE_LIMIT, NULL,
                                                   reason, sizeof(reason));
        }
        if (snapshot->tls_key_pem == NULL) {
            snprintf(err, err_length, "tls: %s", reason);
            return PLANE_INVALID;
        }
    }
    snapshot->base.tls_cert_pem = snapshot->tls_cert_pem;
    snapshot->base.tls_key_pem = snapshot->tls_key_pem;
    return PLANE_OK;
}

/* The shards' verifier is theirs; a check context accepts nothing. */
static int refuse_every_chain(void *user, X509 *leaf, STACK_OF(X509) * chain)
{
    (void)user;
    (void)leaf;
    (void)chain;
    return -1;
}

/* What a new snapshot is built from. */
struct candidate {
    struct config_group *groups; /* taken over, freed on failure */
    size_t group_count;
    struct config_hub *hubs; /* the same */
    size_t hub_count;
    const json_t *blocklist;       /* the entries (an array), read */
    const struct config *registry; /* the key registry hubs' key names resolve in */
    bool reload;                   /* SIGHUP or start: read the TLS and hub key files again */
    /*
     * For a caller of the API: a problem with the node's own files or keys
     * is logged for the administrator, and the caller only told there is one.
     */
    bool from_api;
};

/*
 * A problem the API's caller did not cause and must not read (it names the
 * node's files): logged in full, answered in general terms.
 */
static int node_problem(const struct candidate *candidate, int status, char *err, size_t err_length)
{
    if (candidate->from_api && status != PLANE_OK) {
        log_msg(LOG_ERROR, "change refused by the node's own files", "error=\"%s\"", err);
        snprintf(err, err_length,
                 "the node cannot load its own keys or files (its administrator finds why in the "
                 "log)");
        return PLANE_FAILED;
    }
    return status;
}

/*
 * Builds a checked snapshot from a candidate. What the previous snapshot
 * (the current one, may be NULL) already checked is reused: the chains and
 * CRLs of groups the change does not touch, the TLS files' bytes and the
 * signer when the hubs are the same, unless candidate->reload. So a change
 * costs what it touches, not what every owner holds.
 */
static struct plane_snapshot *snapshot_build(struct plane *plane, struct candidate *candidate,
                                             struct plane_snapshot *previous, int *status,
                                             char *err, size_t err_length)
{
    struct plane_snapshot *snapshot = calloc(1, sizeof(*snapshot));
    if (snapshot == NULL) {
        snprintf(err, err_length, "out of memory");
        *status = PLANE_FAILED;
        for (size_t i = 0; i < candidate->group_count; i++) {
            config_group_clear(&candidate->groups[i]);
        }
        for (size_t i = 0; i < candidate->hub_count; i++) {
            config_hub_clear(&candidate->hubs[i]);
        }
        free(candidate->groups);
        free(candidate->hubs);
        return NULL;
    }
    snapshot->config = *plane->settings;
    snapshot->config.keys = NULL; /* the registry is the plane's, read only while building */
    snapshot->config.key_count = 0;
    snapshot->config.groups = candidate->groups;
    snapshot->config.group_count = candidate->group_count;
    snapshot->config.hubs = candidate->hubs;
    snapshot->config.hub_count = candidate->hub_count;
    snapshot->base.config = &snapshot->config;
    snapshot->base.catalog = &snapshot->catalog;
    snapshot->base.destroy = snapshot_destroy;
    atomic_store(&snapshot->base.references, 1);
    struct plane_snapshot *same = candidate->reload ? NULL : previous;

    *status = check_references(&snapshot->config, err, err_length);
    if (*status == PLANE_OK) {
        *status = resolve_keys(candidate->registry, &snapshot->config, candidate->from_api, err,
                               err_length);
    }
    if (*status == PLANE_OK) {
        *status = node_problem(candidate, snapshot_read_files(snapshot, same, err, err_length), err,
                               err_length);
    }
    if (*status != PLANE_OK) {
        goto fail;
    }
    if (same == NULL) {
        SSL_CTX *tls_check =
            tls_server_context_pem(plane->check_libctx, snapshot->tls_cert_pem,
                                   snapshot->tls_key_pem, refuse_every_chain, err, err_length);
        if (tls_check == NULL) {
            *status = PLANE_INVALID;
            goto fail;
        }
        SSL_CTX_free(tls_check);
    }
    snapshot->checked =
        attestation_create_from(plane->check_libctx, &snapshot->config,
                                previous != NULL ? previous->checked : NULL, err, err_length);
    if (snapshot->checked == NULL) {
        *status = PLANE_INVALID;
        goto fail;
    }
    char *text = hubs_text(candidate->hubs, candidate->hub_count);
    if (text == NULL) {
        snprintf(err, err_length, "out of memory");
        *status = PLANE_FAILED;
        goto fail;
    }
    bool same_hubs = previous != NULL && strcmp(previous->shared_signer->hubs_json, text) == 0;
    if (dps_catalog_build(&snapshot->config, same_hubs ? &previous->config : NULL,
                          same_hubs ? &previous->catalog : NULL, &snapshot->catalog, err,
                          err_length) != 0) {
        free(text);
        *status = PLANE_INVALID;
        goto fail;
    }
    if (same != NULL && same_hubs) {
        free(text);
        snapshot->shared_signer = same->shared_signer;
        atomic_fetch_add(&snapshot->shared_signer->references, 1);
    } else {
        *status = check_token_keys(plane, &snapshot->config, candidate->from_api, err, err_length);
        struct shared_signer *shared = *status == PLANE_OK ? calloc(1, sizeof(*shared)) : NULL;
        if (shared == NULL) {
            free(text);
            if (*status == PLANE_OK) {
                snprintf(err, err_length, "out of memory");
                *status = PLANE_FAILED;
            }
            goto fail;
        }
        shared->hubs_json = text;
        atomic_store(&shared->references, 1);
        shared->signer = signer_create(&snapshot->config, plane->settings->signer_threads,
                                       SIGNER_QUEUE_LIMIT, err, err_length);
        if (shared->signer == NULL) {
            free(shared->hubs_json);
            free(shared);
            *status = node_problem(candidate, PLANE_INVALID, err, err_length);
            goto fail;
        }
        snapshot->shared_signer = shared;
    }
    snapshot->base.signer = snapshot->shared_signer->signer;
    snapshot->blocklist = build_blocklist(candidate->blocklist);
    if (snapshot->blocklist == NULL) {
        snprintf(err, err_length, "out of memory");
        *status = PLANE_FAILED;
        shared_signer_release(snapshot->shared_signer);
        goto fail;
    }
    snapshot->base.blocklist = snapshot->blocklist;
    snapshot->base.generation = ++plane->generation;
    *status = PLANE_OK;
    return snapshot;
fail:
    dps_catalog_free(&snapshot->config, &snapshot->catalog);
    attestation_free(snapshot->checked);
    free_lists(&snapshot->config);
    free(snapshot->tls_cert_pem);
    file_free_secret(snapshot->tls_key_pem);
    free(snapshot);
    return NULL;
}

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

/* Makes a change durable between the two phases: PLANE_OK or PLANE_FAILED with err. */
typedef int (*persist_fn)(struct plane *plane, void *user, char *err, size_t err_length);

/*
 * Makes snapshot current everywhere or nowhere; called with plane->lock
 * held, takes over the snapshot's reference. persist (may be NULL) runs
 * after every shard prepared and before any switches.
 */
static int publish(struct plane *plane, struct plane_snapshot *snapshot, persist_fn persist,
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

/* ---- documents ---- */

/*
 * Copies the current lists, leaving out the entry with skip_id, into arrays
 * with room for one more. 0 or -1.
 */
static int copy_lists(const struct config *config, const char *skip_group, const char *skip_hub,
                      struct config_group **groups, size_t *group_count, struct config_hub **hubs,
                      size_t *hub_count)
{
    *groups = calloc(config->group_count + 1, sizeof(**groups));
    *hubs = calloc(config->hub_count + 1, sizeof(**hubs));
    *group_count = 0;
    *hub_count = 0;
    if (*groups == NULL || *hubs == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < config->group_count; i++) {
        if (skip_group != NULL && strcasecmp(config->groups[i].id, skip_group) == 0) {
            continue;
        }
        if (config_group_copy(&config->groups[i], &(*groups)[*group_count]) != 0) {
            goto fail;
        }
        (*group_count)++;
    }
    for (size_t i = 0; i < config->hub_count; i++) {
        if (skip_hub != NULL && strcasecmp(config->hubs[i].id, skip_hub) == 0) {
            continue;
        }
        if (config_hub_copy(&config->hubs[i], &(*hubs)[*hub_count]) != 0) {
            goto fail;
        }
        (*hub_count)++;
    }
    return 0;
fail:
    for (size_t i = 0; *groups != NULL && i < *group_count; i++) {
        config_group_clear(&(*groups)[i]);
    }
    for (size_t i = 0; *hubs != NULL && i < *hub_count; i++) {
        config_hub_clear(&(*hubs)[i]);
    }
    free(*groups);
    free(*hubs);
    *groups = NULL;
    *hubs = NULL;
    return -1;
}

/*
 * One document to write (doc set) or delete (doc NULL) between the phases of
 * a publication, in one synced batch with extra, and with the cluster's
 * record of it when shared (made through this node's API, in a cluster).
 */
struct document_change {
    enum store_family family;
    const char *id;
    const json_t *doc;
    const char *owner;
    bool shared;
    const struct store_put *extra;
    size_t extra_count;
};

static int persist_document(struct plane *plane, void *user, char *err, size_t err_length)
{
    const struct document_change *change = user;
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
static void shared_change_done(struct plane *plane, const struct document_change *change,
                               int status)
{
    if (status == PLANE_OK && change->shared && plane->sync.changed != NULL) {
        plane->sync.changed(plane->sync.user);
    }
}

static bool document_exists(const struct config *config, bool is_group, const char *id)
{
    bool exists = is_group ? false : config_find_hub(config, id) != NULL;
    for (size_t i = 0; is_group && i < config->group_count; i++) {
        exists = exists || strcasecmp(config->groups[i].id, id) == 0;
    }
    return exists;
}

/*
 * Replaces (group or hub set, taken over) or deletes (both NULL) the group
 * or hub id in a candidate made of the lists in force, and publishes it with
 * the document persisted; from_api: a change through this node's API (the
 * caller is told only what is theirs, and the cluster is told). Lock held.
 */
static int change_lists(struct plane *plane, bool is_group, const char *id, const char *owner,
                        struct config_group *group, struct config_hub *hub, bool from_api,
                        const struct store_put *extra, size_t extra_count, char *err,
                        size_t err_length)
{
    struct config_group *groups = NULL;
    struct config_hub *hubs = NULL;
    size_t group_count = 0, hub_count = 0;
    if (copy_lists(&plane->current->config, is_group ? id : NULL, is_group ? NULL : id, &groups,
                   &group_count, &hubs, &hub_count) != 0) {
        if (group != NULL) {
            config_group_clear(group);
        }
        if (hub != NULL) {
            config_hub_clear(hub);
        }
        snprintf(err, err_length, "out of memory");
        return PLANE_FAILED;
    }
    json_t *stored = NULL;
    if (group != NULL) {
        groups[group_count++] = *group;
        stored = model_group_to_json(&groups[group_count - 1]);
    } else if (hub != NULL) {
        hubs[hub_count++] = *hub;
        stored = model_hub_to_json(&hubs[hub_count - 1]);
    }
    struct candidate candidate = {groups,           group_count,     hubs,  hub_count,
                                  plane->blocklist, plane->settings, false, from_api};
    int status;
    struct plane_snapshot *snapshot =
        snapshot_build(plane, &candidate, plane->current, &status, err, err_length);
    if (snapshot != NULL) {
        struct document_change change = {
            is_group ? STORE_GROUPS : STORE_HUBS,
            stored != NULL ? json_string_value(json_object_get(stored, "id")) : id,
            stored,
            owner,
            from_api,
            extra,
            extra_count};
        if (change.id == NULL) {
            snprintf(err, err_length, "out of memory");
            snapshot_release(&snapshot->base);
            status = PLANE_FAILED;
        } else {
            status = publish(plane, snapshot, persist_document, &change, err, err_length);
            shared_change_done(plane, &change, status);
        }
    }
    json_decref(stored);
    return status;
}

/* How many of owner's documents the configuration holds. */
static size_t owned_count(const struct config *config, bool is_group, const char *owner)
{
    size_t count = 0;
    size_t total = is_group ? config->group_count : config->hub_count;
    for (size_t i = 0; i < total; i++) {
        const char *holder = is_group ? config->groups[i].owner : config->hubs[i].owner;
        count += holder != NULL && owner != NULL && strcmp(holder, owner) == 0;
    }
    return count;
}

/* Puts a group or hub: build, check, prepare on every shard, persist, switch. */
static int put_document(struct plane *plane, const json_t *doc, bool create, bool is_group,
                        char *err, size_t err_length)
{
    struct config_group group = {0};
    struct config_hub hub = {0};
    int rc = is_group ? model_group_from_api(doc, &group, err, err_length)
                      : model_hub_from_api(doc, &hub, err, err_length);
    if (rc != 0) {
        if (is_group) {
            model_group_clear(&group);
        } else {
            model_hub_clear(&hub);
        }
        return PLANE_INVALID;
    }
    const char *id = is_group ? group.id : hub.id;
    const char *owner = is_group ? group.owner : hub.owner;
    const char *kind = is_group ? "enrollment group" : "hub";
    pthread_mutex_lock(&plane->lock);
    const struct config *current = &plane->current->config;
    bool exists = document_exists(current, is_group, id);
    unsigned quota = is_group ? plane->settings->api.quota_groups : plane->settings->api.quota_hubs;
    int status = PLANE_OK;
    if (create && exists) {
        /*
         * Ids are node-wide (a hub's is the id its devices are given): a taken
         * one is refused in the same words whoever holds it, and not echoed.
         */
        snprintf(err, err_length,
                 "id: already in use on this node (PUT replaces a %s of yours; leave the id "
                 "out to get a new one)",
                 kind);
        status = PLANE_CONFLICT;
    } else if (!create && !exists) {
        snprintf(err, err_length, "id: no %s %s", kind, id);
        status = PLANE_NOT_FOUND;
    } else if (create && quota > 0 && owned_count(current, is_group, owner) >= quota) {
        snprintf(err, err_length, "%s: the quota of %u per owner is reached (api.quotas.%s)",
                 is_group ? "enrollmentGroups" : "hubs", quota,
                 is_group ? "enrollmentGroups" : "hubs");
        status = PLANE_EXHAUSTED;
    }
    if (status != PLANE_OK) {
        pthread_mutex_unlock(&plane->lock);
        if (is_group) {
            model_group_clear(&group);
        } else {
            model_hub_clear(&hub);
        }
        return status;
    }
    char *owner_copy = owner != NULL ? strdup(owner) : NULL; /* the document moves */
    status = change_lists(plane, is_group, id, owner_copy, is_group ? &group : NULL,
                          is_group ? NULL : &hub, true, NULL, 0, err, err_length);
    free(owner_copy);
    pthread_mutex_unlock(&plane->lock);
    return status;
}

int plane_put_group(struct plane *plane, const json_t *doc, bool create, char *err,
                    size_t err_length)
{
    return put_document(plane, doc, create, true, err, err_length);
}

int plane_put_hub(struct plane *plane, const json_t *doc, bool create, char *err, size_t err_length)
{
    return put_document(plane, doc, create, false, err, err_length);
}

static int delete_document(struct plane *plane, const char *id, bool is_group, char *err,
                           size_t err_length)
{
    pthread_mutex_lock(&plane->lock);
    const struct config *current = &plane->current->config;
    bool exists = document_exists(current, is_group, id);
    int status = PLANE_OK;
    const char *owner = NULL;
    for (size_t i = 0; is_group && i < current->group_count; i++) {
        owner = strcasecmp(current->groups[i].id, id) == 0 ? current->groups[i].owner : owner;
    }
    if (!is_group) {
        const struct config_hub *found = config_find_hub(current, id);
        owner = found != NULL ? found->owner : NULL;
        for (size_t i = 0; exists && i < current->group_count; i++) {
            for (size_t h = 0; h < current->groups[i].hub_count; h++) {
                if (strcasecmp(current->groups[i].hub_ids[h], id) == 0) {
                    snprintf(err, err_length, "hub %s is linked to enrollment group %s", id,
                             current->groups[i].id);
                    status = PLANE_CONFLICT;
                }
            }
        }
    }
    if (!exists) {
        snprintf(err, err_length, "no %s %s", is_group ? "enrollment group" : "hub", id);
        status = PLANE_NOT_FOUND;
    }
    if (status == PLANE_OK) {
        char *owner_copy = owner != NULL ? strdup(owner) : NULL; /* the snapshot goes */
        status = change_lists(plane, is_group, id, owner_copy, NULL, NULL, true, NULL, 0, err,
                              err_length);
        free(owner_copy);
    }
    pthread_mutex_unlock(&plane->lock);
    return status;
}

int plane_delete_group(struct plane *plane, const char *id, char *err, size_t err_length)
{
    return delete_document(plane, id, true, err, err_length);
}

int plane_delete_hub(struct plane *plane, const char *id, char *err, size_t err_length)
{
    return delete_document(plane, id, false, err, err_length);
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
    struct candidate candidate = {groups.items,     groups.count, hubs.items, hubs.count,
                                  plane->blocklist, seeds,        true,       false};
    return snapshot_build(plane, &candidate, plane->current, status, err, err_length);
}

static int load_block(void *user, const char *key, size_t key_length, const char *value,
                      size_t value_length)
{
    json_t *entry = json_loadb(value, value_length, 0, NULL);
    if (json_is_object(entry)) {
        json_array_append(user, entry);
    } else {
        log_msg(LOG_ERROR, "unreadable blocklist entry skipped", "id=%.*s", (int)key_length, key);
    }
    json_decref(entry);
    return 0;
}

static json_t *load_blocklist(struct plane *plane, char *err, size_t err_length)
{
    json_t *entries = json_array();
    if (entries == NULL ||
        store_scan(plane->store, STORE_BLOCKLIST, NULL, 0, load_block, entries) != STORE_OK) {
        snprintf(err, err_length, "cannot read the blocklist from the store");
        json_decref(entries);
        return NULL;
    }
    return entries;
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
    plane->blocklist = load_blocklist(plane, err, err_length);
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

int plane_reload(struct plane *plane, char *err, size_t err_length)
{
    struct config *fresh;
    if (config_load(plane->settings->path, &fresh, err, err_length) != 0) {
        return PLANE_INVALID;
    }
    pthread_mutex_lock(&plane->lock);
    int status = check_registry(plane, fresh, err, err_length);
    struct plane_snapshot *snapshot =
        status == PLANE_OK ? load_stored(plane, fresh, &status, err, err_length) : NULL;
    if (snapshot != NULL) {
        status = publish(plane, snapshot, persist_seeds, fresh, err, err_length);
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
    snapshot_release(&snapshot_of(config)->base);
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

/* ---- the blocklist ---- */

#define BLOCK_SPKI_LENGTH 64
#define BLOCK_SERIAL_MAX 40
#define BLOCK_ISSUER_MAX 256
#define BLOCK_REASON_MAX 256
#define SPKI_SHAPE "must be 64 hex digits"
#define SERIAL_SHAPE "must be 1 to 40 hex digits"
#define ISSUER_SHAPE "must be RFC 2253 text of at most 256 bytes"
#define REASON_SHAPE "must be text of at most 256 bytes"

/* True when text is length hex digits (either case). */
static bool hex_of_length(const char *text, size_t length)
{
    if (strlen(text) != length) {
        return false;
    }
    for (const char *p = text; *p != '\0'; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))) {
            return false;
        }
    }
    return true;
}

static void lower_hex(char *text)
{
    for (char *p = text; *p != '\0'; p++) {
        *p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    }
}

/* The entry's id: 32 hex digits of SHA-256 over owner and its first key. */
static void entry_id(const char *owner, const char *key, char out[33])
{
    unsigned char digest[32];
    unsigned int length = 0;
    char *text = NULL;
    if (asprintf(&text, "%s\n%s", owner, key) < 0 ||
        EVP_Digest(text, strlen(text), digest, &length, EVP_sha256(), NULL) != 1) {
        memset(digest, 0, sizeof(digest));
    }
    free(text);
    for (size_t i = 0; i < 16; i++) {
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    }
}

/*
 * A text field of a block request: absent or null gives NULL; anything but a
 * string without NUL characters of at most max bytes is refused whole (the
 * message says what the field must be: shape), never cut to fit. 0, or -1
 * with err naming the field.
 */
static int request_text(const json_t *request, const char *key, size_t max, const char *shape,
                        const char **out, char *err, size_t err_length)
{
    json_t *value = json_object_get(request, key);
    *out = NULL;
    if (value == NULL || json_is_null(value)) {
        return 0;
    }
    if (!json_is_string(value)) {
        snprintf(err, err_length, "%s: must be a string", key);
        return -1;
    }
    if (strlen(json_string_value(value)) != json_string_length(value)) {
        snprintf(err, err_length, "%s: must not contain NUL characters", key);
        return -1;
    }
    if (json_string_length(value) > max) {
        snprintf(err, err_length, "%s: %s (%zu bytes given)", key, shape,
                 json_string_length(value));
        return -1;
    }
    *out = json_string_value(value);
    return 0;
}

/* Builds the stored entry from a request. PLANE_OK or PLANE_INVALID with err naming the field. */
static int make_entry(struct plane *plane, const char *owner, const json_t *request, json_t **entry,
                      char *err, size_t err_length)
{
    if (!json_is_object(request)) {
        snprintf(err, err_length, "body: must be a JSON object");
        return PLANE_INVALID;
    }
    const char *allowed[] = {"deviceId", "publicKeySha256", "serial", "issuer", "reason", NULL};
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)request, key, value)
    {
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL; i++) {
            known = known || strcmp(allowed[i], key) == 0;
        }
        if (!known) {
            snprintf(err, err_length, "%s: unknown field", key);
            return PLANE_INVALID;
        }
    }
    const char *device, *spki, *serial_text, *issuer, *reason;
    const struct {
        const char *key;
        size_t max;
        const char *shape;
        const char **out;
    } fields[] = {
        {"deviceId", UUID_STRING_LENGTH, "not a UUID", &device},
        {"publicKeySha256", BLOCK_SPKI_LENGTH, SPKI_SHAPE, &spki},
        {"serial", BLOCK_SERIAL_MAX, SERIAL_SHAPE, &serial_text},
        {"issuer", BLOCK_ISSUER_MAX, ISSUER_SHAPE, &issuer},
        {"reason", BLOCK_REASON_MAX, REASON_SHAPE, &reason},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++) {
        if (request_text(request, fields[i].key, fields[i].max, fields[i].shape, fields[i].out, err,
                         err_length) < 0) {
            return PLANE_INVALID;
        }
    }
    int kinds = (device != NULL) + (spki != NULL) + (serial_text != NULL);
    if (kinds != 1) {
        snprintf(err, err_length,
                 "body: name exactly one of deviceId, publicKeySha256, or serial with issuer");
        return PLANE_INVALID;
    }
    if (issuer != NULL && serial_text == NULL) {
        snprintf(err, err_length, "issuer: only with serial");
        return PLANE_INVALID;
    }
    json_t *made = json_object();
    char stored_key[320];
    _Static_assert(sizeof(stored_key) >= sizeof("serial:/") + BLOCK_SERIAL_MAX + BLOCK_ISSUER_MAX,
                   "the longest key an entry can have fits");
    if (device != NULL) {
        struct dps_uuid uuid;
        char text[UUID_STRING_LENGTH + 1];
        if (uuid_text_parse(device, strlen(device), &uuid) != 0) {
            snprintf(err, err_length, "deviceId: not a UUID");
            json_decref(made);
            return PLANE_INVALID;
        }
        uuid_format(&uuid, text);
        json_object_set_new(made, "deviceId", json_string(text));
        snprintf(stored_key, sizeof(stored_key), "device:%s", text);
        /* A device already provisioned is refused at the handshake too, by its record. */
        char record[UUID_STRING_LENGTH + 1];
        if (records_binding_get(plane->store, owner, text, record) == STORE_OK) {
            json_object_set_new(made, "recordId", json_string(record));
        }
    } else if (spki != NULL) {
        char lower[BLOCK_SPKI_LENGTH + 1];
        if (!hex_of_length(spki, BLOCK_SPKI_LENGTH)) {
            snprintf(err, err_length, "publicKeySha256: " SPKI_SHAPE);
            json_decref(made);
            return PLANE_INVALID;
        }
        memcpy(lower, spki, sizeof(lower));
        lower_hex(lower);
        json_object_set_new(made, "publicKeySha256", json_string(lower));
        snprintf(stored_key, sizeof(stored_key), "spki:%s", lower);
    } else {
        char serial[BLOCK_SERIAL_MAX + 1];
        if (serial_text[0] == '\0' || !hex_of_length(serial_text, strlen(serial_text))) {
            snprintf(err, err_length, "serial: " SERIAL_SHAPE);
            json_decref(made);
            return PLANE_INVALID;
        }
        memcpy(serial, serial_text, strlen(serial_text) + 1);
        lower_hex(serial);
        if (issuer == NULL || issuer[0] == '\0') {
            snprintf(err, err_length, "issuer: required with serial (" ISSUER_SHAPE ")");
            json_decref(made);
            return PLANE_INVALID;
        }
        /* Serials compare without leading zeros, as OpenSSL prints them. */
        const char *significant = serial;
        while (significant[0] == '0' && significant[1] != '\0') {
            significant++;
        }
        json_object_set_new(made, "serial", json_string(significant));
        json_object_set_new(made, "issuer", json_string(issuer));
        snprintf(stored_key, sizeof(stored_key), "serial:%s/%s", significant, issuer);
    }
    char id[33], created[32];
    entry_id(owner, stored_key, id);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(made, "id", json_string(id));
    json_object_set_new(made, "owner", json_string(owner));
    json_object_set_new(made, "reason", json_string(reason != NULL ? reason : ""));
    json_object_set_new(made, "createdAt", json_string(created));
    *entry = made;
    return PLANE_OK;
}

/*
 * Publishes a snapshot with the blocklist candidate (taken over) and makes
 * change durable between the phases; keeps the old list on failure.
 */
static int publish_blocklist(struct plane *plane, json_t *candidate, struct document_change *change,
                             char *err, size_t err_length)
{
    const struct config *current = &plane->current->config;
    struct config_group *groups;
    struct config_hub *hubs;
    size_t group_count, hub_count;
    if (copy_lists(current, NULL, NULL, &groups, &group_count, &hubs, &hub_count) != 0) {
        snprintf(err, err_length, "out of memory");
        json_decref(candidate);
        return PLANE_FAILED;
    }
    int status;
    struct candidate lists = {groups,    group_count,     hubs,  hub_count,
                              candidate, plane->settings, false, true};
    struct plane_snapshot *snapshot =
        snapshot_build(plane, &lists, plane->current, &status, err, err_length);
    if (snapshot != NULL) {
        status = publish(plane, snapshot, persist_document, change, err, err_length);
    }
    if (status == PLANE_OK) {
        json_decref(plane->blocklist);
        plane->blocklist = candidate;
    } else {
        json_decref(candidate);
    }
    shared_change_done(plane, change, status);
    return status;
}

int plane_block(struct plane *plane, const char *owner, const json_t *request, json_t **entry,
                char *err, size_t err_length)
{
    json_t *made;
    int status = make_entry(plane, owner, request, &made, err, err_length);
    if (status != PLANE_OK) {
        return status;
    }
    const char *id = json_string_value(json_object_get(made, "id"));
    pthread_mutex_lock(&plane->lock);
    json_t *candidate = json_array();
    size_t index, owned = 0;
    bool replaces = false;
    json_t *existing;
    json_array_foreach(plane->blocklist, index, existing)
    {
        if (strcmp(json_string_value(json_object_get(existing, "id")), id) != 0) {
            json_array_append(candidate, existing);
            owned += strcmp(json_string_value(json_object_get(existing, "owner")), owner) == 0;
        } else {
            replaces = true;
        }
    }
    json_array_append(candidate, made);
    unsigned quota = plane->settings->api.quota_blocks;
    if (!replaces && quota > 0 && owned >= quota) {
        snprintf(err, err_length,
                 "blocklistEntries: the quota of %u per owner is reached "
                 "(api.quotas.blocklistEntries)",
                 quota);
        json_decref(candidate);
        status = PLANE_EXHAUSTED;
    } else {
        struct document_change change = {STORE_BLOCKLIST, id, made, owner, true, NULL, 0};
        status = publish_blocklist(plane, candidate, &change, err, err_length);
    }
    pthread_mutex_unlock(&plane->lock);
    if (status == PLANE_OK) {
        *entry = made;
        log_msg(LOG_INFO, "blocked", "id=%s owner=%s", id, owner);
    } else {
        json_decref(made);
    }
    return status;
}

int plane_unblock(struct plane *plane, const char *owner, const char *id, char *err,
                  size_t err_length)
{
    pthread_mutex_lock(&plane->lock);
    json_t *candidate = json_array();
    bool found = false;
    size_t index;
    json_t *existing;
    json_array_foreach(plane->blocklist, index, existing)
    {
        bool match = strcmp(json_string_value(json_object_get(existing, "id")), id) == 0 &&
                     strcmp(json_string_value(json_object_get(existing, "owner")), owner) == 0;
        found = found || match;
        if (!match) {
            json_array_append(candidate, existing);
        }
    }
    int status;
    if (!found) {
        snprintf(err, err_length, "no blocklist entry %s", id);
        status = PLANE_NOT_FOUND;
        json_decref(candidate);
    } else {
        struct document_change change = {STORE_BLOCKLIST, id, NULL, owner, true, NULL, 0};
        status = publish_blocklist(plane, candidate, &change, err, err_length);
    }
    pthread_mutex_unlock(&plane->lock);
    if (status == PLANE_OK) {
        log_msg(LOG_INFO, "unblocked", "id=%s owner=%s", id, owner);
    }
    return status;
}

json_t *plane_blocklist(struct plane *plane, const char *owner)
{
    json_t *mine = json_array();
    pthread_mutex_lock(&plane->lock);
    size_t index;
    json_t *entry;
    json_array_foreach(plane->blocklist, index, entry)
    {
        if (strcmp(json_string_value(json_object_get(entry, "owner")), owner) == 0) {
            json_array_append(mine, entry);
        }
    }
    pthread_mutex_unlock(&plane->lock);
    return mine;
}

/* ---- the cluster's changes (control/cluster_sync.c) ---- */

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

/* A blocklist entry another node made or lifted. Lock held. */
static int apply_block(struct plane *plane, const struct plane_change *change,
                       const struct store_put *extra, size_t extra_count, char *err,
                       size_t err_length)
{
    const char *id = json_string_value(json_object_get(change->doc, "id"));
    const char *owner = json_string_value(json_object_get(change->doc, "owner"));
    if (change->doc != NULL && (id == NULL || owner == NULL || strcmp(id, change->id) != 0)) {
        snprintf(err, err_length, "blocklist entry %s: no id or owner", change->id);
        return PLANE_INVALID;
    }
    json_t *candidate = json_array();
    bool found = false;
    size_t index;
    json_t *existing;
    json_array_foreach(plane->blocklist, index, existing)
    {
        if (strcmp(json_string_value(json_object_get(existing, "id")), change->id) != 0) {
            json_array_append(candidate, existing);
        } else {
            found = true;
        }
    }
    if (change->doc == NULL && !found) {
        json_decref(candidate);
        return extra_count == 0 || store_put_sync(plane->store, extra, extra_count) == STORE_OK
                   ? PLANE_OK
                   : PLANE_FAILED;
    }
    json_t *entry = change->doc != NULL ? json_deep_copy(change->doc) : NULL;
    if (entry != NULL) {
        json_array_append_new(candidate, entry);
    }
    struct document_change stored = {STORE_BLOCKLIST, change->id, entry,      change->owner,
                                     false,           extra,      extra_count};
    return publish_blocklist(plane, candidate, &stored, err, err_length);
}

int plane_apply(struct plane *plane, const struct plane_change *change,
                const struct store_put *extra, size_t extra_count, char *err, size_t err_length)
{
    int status = PLANE_OK;
    if (change->kind == PLANE_KIND_BLOCK) {
        pthread_mutex_lock(&plane->lock);
        status = apply_block(plane, change, extra, extra_count, err, err_length);
        pthread_mutex_unlock(&plane->lock);
        return status;
    }
    bool is_group = change->kind == PLANE_KIND_GROUP;
    struct config_group group = {0};
    struct config_hub hub = {0};
    if (change->doc != NULL) {
        status = (is_group ? model_group_from_json(change->doc, &group, err, err_length)
                           : model_hub_from_json(change->doc, &hub, err, err_length)) == 0
                     ? PLANE_OK
                     : PLANE_INVALID;
        const char *id = is_group ? group.id : hub.id;
        if (status == PLANE_OK && (id == NULL || strcasecmp(id, change->id) != 0)) {
            snprintf(err, err_length, "the document's id is not %s", change->id);
            status = PLANE_INVALID;
        }
        if (status != PLANE_OK) {
            config_group_clear(&group);
            config_hub_clear(&hub);
            return status;
        }
    }
    pthread_mutex_lock(&plane->lock);
    if (change->doc == NULL && !document_exists(&plane->current->config, is_group, change->id)) {
        status = extra_count == 0 || store_put_sync(plane->store, extra, extra_count) == STORE_OK
                     ? PLANE_OK
                     : PLANE_FAILED;
    } else {
        bool put = change->doc != NULL;
        status = change_lists(plane, is_group, change->id, change->owner,
                              put && is_group ? &group : NULL, put && !is_group ? &hub : NULL,
                              false, extra, extra_count, err, err_length);
    }
    pthread_mutex_unlock(&plane->lock);
    return status;
}

void plane_documents(struct plane *plane, void (*fn)(void *user, const struct plane_change *change),
                     void *user)
{
    pthread_mutex_lock(&plane->lock);
    const struct config *config = &plane->current->config;
    for (size_t i = 0; i < config->group_count + config->hub_count; i++) {
        bool is_group = i < config->group_count;
        const struct config_group *group = is_group ? &config->groups[i] : NULL;
        const struct config_hub *hub = is_group ? NULL : &config->hubs[i - config->group_count];
        json_t *doc = is_group ? model_group_to_json(group) : model_hub_to_json(hub);
        struct plane_change change = {is_group ? PLANE_KIND_GROUP : PLANE_KIND_HUB,
                                      is_group ? group->id : hub->id,
                                      is_group ? group->owner : hub->owner, doc};
        if (doc != NULL) {
            fn(user, &change);
        }
        json_decref(doc);
    }
    size_t index;
    json_t *entry;
    json_array_foreach(plane->blocklist, index, entry)
    {
        struct plane_change change = {PLANE_KIND_BLOCK,
                                      json_string_value(json_object_get(entry, "id")),
                                      json_string_value(json_object_get(entry, "owner")), entry};
        fn(user, &change);
    }
    pthread_mutex_unlock(&plane->lock);
}

/* ---- observation ---- */

/* The signing limits' leases from Redis, and whether this node runs on its share. */
static void plane_rate_metrics(FILE *out)
{
    struct cluster_rate_stats rate;
    cluster_rate_stats_get(&rate);
    fprintf(out,
            "# HELP dps_rate_leases_total Token leases Redis answered for the signing limits.\n"
            "# TYPE dps_rate_leases_total counter\ndps_rate_leases_total %llu\n"
            "# HELP dps_rate_tokens_total Signing tokens: granted by Redis in leases; steps "
            "admitted and refused (5.03) on this node.\n# TYPE dps_rate_tokens_total counter\n"
            "dps_rate_tokens_total{result=\"granted\"} %llu\n"
            "dps_rate_tokens_total{result=\"admitted\"} %llu\n"
            "dps_rate_tokens_total{result=\"refused\"} %llu\n"
            "# HELP dps_rate_redis_round_trips_total Lease scripts sent to Redis, and those "
            "without a usable answer.\n# TYPE dps_rate_redis_round_trips_total counter\n"
            "dps_rate_redis_round_trips_total %llu\n"
            "dps_rate_redis_round_trips_total{result=\"failed\"} %llu\n"
            "# HELP dps_rate_fallback 1 while Redis is unreachable and the limits fall back to "
            "this node's share.\n# TYPE dps_rate_fallback gauge\ndps_rate_fallback %d\n"
            "# HELP dps_rate_live_nodes Live nodes as last seen in Redis (the share's divisor).\n"
            "# TYPE dps_rate_live_nodes gauge\ndps_rate_live_nodes %u\n",
            (unsigned long long)rate.leases, (unsigned long long)rate.granted,
            (unsigned long long)rate.admitted, (unsigned long long)rate.refused,
            (unsigned long long)rate.round_trips, (unsigned long long)rate.failures,
            rate.fallback > 0 ? 1 : 0, rate.live_nodes);
}

/* The shards' Redis clients and the bindings shared through Redis (only with cluster.redis). */
static void plane_cluster_metrics(struct plane *plane, FILE *out)
{
    struct cluster_status status;
    if (plane->shard_count == 0 || !shard_cluster_status(plane->shards[0], &status)) {
        return;
    }
    fprintf(out, "# HELP dps_redis_up 1 while the shard's Redis client is connected to the "
                 "primary.\n# TYPE dps_redis_up gauge\n");
    for (unsigned i = 0; i < plane->shard_count; i++) {
        shard_cluster_status(plane->shards[i], &status);
        fprintf(out, "dps_redis_up{shard=\"%u\"} %d\n", i, status.up ? 1 : 0);
    }
    plane_rate_metrics(out);
    struct cluster_stats stats;
    cluster_stats_get(&stats);
    fprintf(out,
            "# HELP dps_binding_conflicts_total Device ids a re-seed found bound to two records "
            "across the cluster (both refused until released).\n"
            "# TYPE dps_binding_conflicts_total counter\ndps_binding_conflicts_total %llu\n"
            "# HELP dps_bindings_unreconciled_total Bindings made while Redis was unreachable "
            "(bindingsWhenRedisDown: local), reconciled by the next re-seed.\n"
            "# TYPE dps_bindings_unreconciled_total counter\n"
            "dps_bindings_unreconciled_total %llu\n"
            "# HELP dps_bindings_seeded_total Bindings this node wrote into Redis on re-seeds.\n"
            "# TYPE dps_bindings_seeded_total counter\ndps_bindings_seeded_total %llu\n"
            "# HELP dps_binding_claims_total New device-id bindings Redis answered, by result.\n"
            "# TYPE dps_binding_claims_total counter\n"
            "dps_binding_claims_total{result=\"granted\"} %llu\n"
            "dps_binding_claims_total{result=\"refused\"} %llu\n"
            "dps_binding_claims_total{result=\"unavailable\"} %llu\n",
            (unsigned long long)stats.conflicts, (unsigned long long)stats.unreconciled,
            (unsigned long long)stats.seeded,
            (unsigned long long)(stats.claims - stats.claims_refused),
            (unsigned long long)stats.claims_refused, (unsigned long long)stats.unavailable);
}

/* {state, primary} of the shards' Redis clients: "down" when any is; NULL without Redis. */
static json_t *plane_redis_status(struct plane *plane, bool *degraded)
{
    struct cluster_status status, first;
    *degraded = false;
    if (plane->shard_count == 0 || !shard_cluster_status(plane->shards[0], &first)) {
        return NULL;
    }
    const char *state = first.state;
    for (unsigned i = 0; i < plane->shard_count; i++) {
        shard_cluster_status(plane->shards[i], &status);
        if (!status.up) {
            *degraded = true;
            state = status.state[0] == 'c' ? "connecting" : "down";
        }
    }
    return json_pack("{s:s, s:s}", "state", state, "primary", first.primary);
}

char *plane_metrics(struct plane *plane)
{
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    if (out == NULL) {
        return NULL;
    }
    const struct config *config = plane_config_acquire(plane);
    struct plane_snapshot *snapshot = snapshot_of(config);

    fprintf(out,
            "# HELP dps_ready 1 while the node takes devices.\n# TYPE dps_ready gauge\n"
            "dps_ready %d\n",
            plane_ready(plane) ? 1 : 0);
    fprintf(out,
            "# HELP dps_build_info The OpenSSL this process runs.\n# TYPE dps_build_info gauge\n"
            "dps_build_info{openssl=\"%s\"} 1\n",
            OpenSSL_version(OPENSSL_VERSION));
    fprintf(out,
            "# HELP dps_configuration_generation Snapshots published since start (in a cluster: "
            "the cluster's configuration generation this node applied).\n"
            "# TYPE dps_configuration_generation gauge\ndps_configuration_generation %llu\n",
            (unsigned long long)(plane->sync.generation != NULL
                                     ? plane->sync.generation(plane->sync.user)
                                     : snapshot->base.generation));
    if (plane->sync.metrics != NULL) {
        plane->sync.metrics(plane->sync.user, out);
    }

    /* One row a series; rows of one metric follow each other and share its HELP and TYPE. */
    static const struct {
        const char *name, *type, *help, *labels;
        size_t offset;
    } shard_metrics[] = {
        {"dps_connections", "gauge", "Connections open.", "",
         offsetof(struct shard_stats, connections)},
        {"dps_connections_accepted_total", "counter", "Connections accepted.", "",
         offsetof(struct shard_stats, accepted)},
        {"dps_handshakes_total", "counter", "TLS handshakes by result.", ",result=\"ok\"",
         offsetof(struct shard_stats, handshakes_ok)},
        {"dps_handshakes_total", NULL, NULL, ",result=\"failed\"",
         offsetof(struct shard_stats, handshakes_failed)},
        {"dps_requests_total", "counter", "CoAP requests received.", "",
         offsetof(struct shard_stats, requests)},
        {"dps_protocol_errors_total", "counter", "Malformed or oversized frames.", "",
         offsetof(struct shard_stats, protocol_errors)},
        {"dps_handshakes_blocked_total", "counter", "Handshakes refused by the blocklist.", "",
         offsetof(struct shard_stats, blocked)},
        {"dps_admission_refused_total", "counter",
         "Connections refused at accept, before TLS (connection limits, per-source budgets).", "",
         offsetof(struct shard_stats, admission_refused)},
        {"dps_proxy_refused_total", "counter",
         "Connections from a trusted balancer closed for a missing or malformed PROXY header.", "",
         offsetof(struct shard_stats, proxy_refused)},
    };
    struct shard_stats stats[PLANE_MAX_SHARDS];
    for (unsigned i = 0; i < plane->shard_count; i++) {
        shard_get_stats(plane->shards[i], &stats[i]);
    }
    for (size_t m = 0; m < sizeof(shard_metrics) / sizeof(shard_metrics[0]); m++) {
        if (shard_metrics[m].help != NULL) {
            fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", shard_metrics[m].name,
                    shard_metrics[m].help, shard_metrics[m].name, shard_metrics[m].type);
        }
        for (unsigned i = 0; i < plane->shard_count; i++) {
            const char *field = (const char *)&stats[i] + shard_metrics[m].offset;
            unsigned long long value =
                shard_metrics[m].offset == offsetof(struct shard_stats, connections)
                    ? *(const unsigned *)field
                    : (unsigned long long)*(const uint64_t *)field;
            fprintf(out, "%s{shard=\"%u\"%s} %llu\n", shard_metrics[m].name, i,
                    shard_metrics[m].labels, value);
        }
    }

    plane_cluster_metrics(plane, out);
    fprintf(out,
            "# HELP dps_handshake_failures_total Failed handshakes by reason: the manufacturer "
            "chain was refused, the device is blocked, or TLS itself failed.\n"
            "# TYPE dps_handshake_failures_total counter\n");
    for (unsigned i = 0; i < plane->shard_count; i++) {
        uint64_t refused = stats[i].refused_attestation + stats[i].blocked;
        uint64_t tls =
            stats[i].handshakes_failed > refused ? stats[i].handshakes_failed - refused : 0;
        fprintf(out,
                "dps_handshake_failures_total{shard=\"%u\",reason=\"attestation\"} %llu\n"
                "dps_handshake_failures_total{shard=\"%u\",reason=\"blocked\"} %llu\n"
                "dps_handshake_failures_total{shard=\"%u\",reason=\"tls\"} %llu\n",
                i, (unsigned long long)stats[i].refused_attestation, i,
                (unsigned long long)stats[i].blocked, i, (unsigned long long)tls);
    }

    struct dps_stats dps;
    dps_stats_get(&dps);
    static const char *const classes[] = {"2xx", "4xx", "5xx"};
    fprintf(out, "# HELP dps_provisioning_steps_total Device steps answered, by step and result "
                 "class.\n# TYPE dps_provisioning_steps_total counter\n");
    for (size_t s = 0; s < STEP_COUNT; s++) {
        for (size_t c = 0; c < 3; c++) {
            fprintf(out, "dps_provisioning_steps_total{step=\"%s\",class=\"%s\"} %llu\n",
                    dps.steps[s].name, classes[c], (unsigned long long)dps.steps[s].by_class[c]);
        }
    }
    fprintf(out, "# HELP dps_provisioning_step_duration_seconds Time from request to answer, "
                 "record synced.\n# TYPE dps_provisioning_step_duration_seconds histogram\n");
    for (size_t s = 0; s < STEP_COUNT; s++) {
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= DPS_LATENCY_BUCKETS; b++) {
            cumulative += dps.steps[s].latency_buckets[b];
            if (b < DPS_LATENCY_BUCKETS) {
                fprintf(out,
                        "dps_provisioning_step_duration_seconds_bucket{step=\"%s\",le=\"%g\"} "
                        "%llu\n",
                        dps.steps[s].name, dps_latency_bounds[b], (unsigned long long)cumulative);
            } else {
                fprintf(out,
                        "dps_provisioning_step_duration_seconds_bucket{step=\"%s\",le=\"+Inf\"} "
                        "%llu\n",
                        dps.steps[s].name, (unsigned long long)cumulative);
            }
        }
        fprintf(out, "dps_provisioning_step_duration_seconds_sum{step=\"%s\"} %.6f\n",
                dps.steps[s].name, dps.steps[s].latency_sum_s);
        fprintf(out, "dps_provisioning_step_duration_seconds_count{step=\"%s\"} %llu\n",
                dps.steps[s].name, (unsigned long long)cumulative);
    }
    fprintf(out,
            "# HELP dps_rejections_total Requests answered 5.03 before any work, by reason.\n"
            "# TYPE dps_rejections_total counter\n"
            "dps_rejections_total{reason=\"rate_limit\"} %llu\n"
            "dps_rejections_total{reason=\"busy\"} %llu\n",
            (unsigned long long)dps.rate_limited, (unsigned long long)dps.busy);
    fprintf(out,
            "# HELP dps_certificates_issued_total Identity certificates handed out (logged "
            "durably).\n# TYPE dps_certificates_issued_total counter\n"
            "dps_certificates_issued_total %llu\n",
            (unsigned long long)dps.certificates_issued);
    fprintf(out, "# HELP dps_device_id_refusals_total Device ids a device named for itself and "
                 "was refused (4.03), by reason.\n# TYPE dps_device_id_refusals_total counter\n");
    for (size_t r = 0; r < DPS_REFUSAL_COUNT; r++) {
        fprintf(out, "dps_device_id_refusals_total{reason=\"%s\"} %llu\n", dps_refusal_name(r),
                (unsigned long long)dps.device_id_refused[r]);
    }

    struct signer_stats signer;
    signer_get_stats(snapshot->base.signer, &signer);
    fprintf(out,
            "# HELP dps_signer_queue_depth Requests waiting for the signer.\n"
            "# TYPE dps_signer_queue_depth gauge\ndps_signer_queue_depth %zu\n"
            "# HELP dps_signer_batches_total Batches the signer took.\n"
            "# TYPE dps_signer_batches_total counter\ndps_signer_batches_total %llu\n"
            "# HELP dps_signer_requests_total Requests the signer finished.\n"
            "# TYPE dps_signer_requests_total counter\ndps_signer_requests_total %llu\n",
            signer.queue_depth, (unsigned long long)signer.batches,
            (unsigned long long)signer.requests);
    struct store_stats store;
    store_get_stats(plane->store, &store);
    fprintf(out,
            "# HELP dps_store_commits_total Synced write batches (group commits).\n"
            "# TYPE dps_store_commits_total counter\ndps_store_commits_total %llu\n"
            "# HELP dps_store_lazy_commits_total Batches of lazy record lines only, appended "
            "without a sync (the next synced batch makes them durable).\n"
            "# TYPE dps_store_lazy_commits_total counter\ndps_store_lazy_commits_total %llu\n"
            "# HELP dps_store_writes_total Writes applied.\n"
            "# TYPE dps_store_writes_total counter\ndps_store_writes_total %llu\n"
            "# HELP dps_store_queue_depth Writes waiting for the next commit.\n"
            "# TYPE dps_store_queue_depth gauge\ndps_store_queue_depth %zu\n"
            "# HELP dps_store_healthy 1 while the store makes records durable.\n"
            "# TYPE dps_store_healthy gauge\ndps_store_healthy %d\n"
            "# HELP dps_store_failures_total Commits that failed (devices got 5.03).\n"
            "# TYPE dps_store_failures_total counter\ndps_store_failures_total %llu\n"
            "# HELP dps_store_recoveries_total Times the store reopened itself after a failure.\n"
            "# TYPE dps_store_recoveries_total counter\ndps_store_recoveries_total %llu\n",
            (unsigned long long)store.commits, (unsigned long long)store.lazy_commits,
            (unsigned long long)store.writes, store.queue_depth,
            store_healthy(plane->store) ? 1 : 0, (unsigned long long)store.failures,
            (unsigned long long)store.recoveries);
    if (cluster_view_enabled(plane->settings))
        cluster_view_metrics(out);
    plane_config_release(plane, config);
    fclose(out);
    return text;
}

json_t *plane_status(struct plane *plane, const char *owner, bool admin)
{
    const struct config *config = plane_config_acquire(plane);
    const struct config_api *api = &plane->settings->api;
    pthread_mutex_lock(&plane->lock);
    size_t blocks = json_array_size(plane->blocklist), own_blocks = 0;
    size_t index;
    json_t *entry;
    json_array_foreach(plane->blocklist, index, entry)
    {
        own_blocks += strcmp(json_string_value(json_object_get(entry, "owner")), owner) == 0;
    }
    pthread_mutex_unlock(&plane->lock);
    json_t *status = json_pack(
        "{s:b, s:s, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}}", "ready", plane_ready(plane),
        "owner", owner, "enrollmentGroups", (json_int_t)owned_count(config, true, owner), "hubs",
        (json_int_t)owned_count(config, false, owner), "blocklistEntries", (json_int_t)own_blocks,
        "quotas", "enrollmentGroups", (json_int_t)api->quota_groups, "hubs",
        (json_int_t)api->quota_hubs, "blocklistEntries", (json_int_t)api->quota_blocks,
        "requestsPerSecond", (json_int_t)api->quota_requests_per_second, "requestBurst",
        (json_int_t)api->quota_request_burst);
    if (status != NULL && admin) {
        unsigned connections = 0;
        for (unsigned i = 0; i < plane->shard_count; i++) {
            struct shard_stats stats;
            shard_get_stats(plane->shards[i], &stats);
            connections += stats.connections;
        }
        json_t *node = json_pack(
            "{s:i, s:s, s:i, s:I, s:I, s:I, s:I}", "shards", (int)plane->shard_count, "backend",
            plane->shard_count > 0 ? shard_backend_name(plane->shards[0]) : "none", "connections",
            (int)connections, "configurationGeneration",
            (json_int_t)(plane->sync.generation != NULL ? plane->sync.generation(plane->sync.user)
                                                        : snapshot_of(config)->base.generation),
            "enrollmentGroups", (json_int_t)config->group_count, "hubs",
            (json_int_t)config->hub_count, "blocklistEntries", (json_int_t)blocks);
        if (node != NULL && plane->sync.status != NULL) {
            json_object_set_new(node, "configurationSync", plane->sync.status(plane->sync.user));
        }
        if (node == NULL || json_object_set_new(status, "node", node) != 0) {
            json_decref(status);
            status = NULL;
        }
    }
    plane_config_release(plane, config);
    json_object_set_new(status, "openssl", json_string(OpenSSL_version(OPENSSL_VERSION)));
    bool degraded;
    json_t *redis = plane_redis_status(plane, &degraded);
    if (redis != NULL) {
        /* Degraded, not unready: the node goes on (renewals, the closed or local policy). */
        json_object_set_new(status, "redis", redis);
        json_object_set_new(status, "degraded", json_boolean(degraded));
        struct cluster_rate_stats rate;
        cluster_rate_stats_get(&rate);
        json_object_set_new(status, "rateLimits",
                            json_pack("{s:s, s:i}", "mode", rate.fallback > 0 ? "share" : "cluster",
                                      "liveNodes", (json_int_t)rate.live_nodes));
    }
    return status;
}
