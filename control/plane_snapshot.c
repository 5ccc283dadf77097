/*
 * plane_snapshot: a candidate snapshot of the groups and hubs, built and
 * checked as the shards will use it, before anything is published
 * (control/plane.c publishes it; control/plane_internal.h says who owns what).
 *
 * A candidate is checked whole: every chain loads, no two groups share a
 * first CA, every hub's keys load, the ACLs fit the protocol. Every file the
 * snapshot names (TLS certificate and key, manufacturer chains, CRLs) is
 * read once, into the snapshot, before that check: the shards build from the
 * very bytes that were checked. At start and on SIGHUP every file is read
 * again; a change through the API reads only what the new document names
 * (nothing: it holds PEM text).
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
 *
 * Snapshots whose hubs are the same share one signer, so a change of groups
 * does not restart the signing threads.
 */
#include "control/plane_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "common/file.h"
#include "common/log.h"
#include "control/auth.h"
#include "control/model.h"
#include "crypto/attestation.h"
#include "crypto/keyfile.h"
#include "crypto/signer.h"
#include "dataplane/blocklist.h"
#include "dataplane/tls.h"

#define SIGNER_QUEUE_LIMIT 65536
#define MATERIAL_FILE_LIMIT (4 * 1024 * 1024) /* a certificate chain, key or CRL file */

/* A signer shared by the snapshots whose hubs are the same. */
struct shared_signer {
    _Atomic unsigned references;
    struct signer *signer;
    char *hubs_json; /* the hub documents it was built from, to recognise equal hub sets */
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

struct plane_snapshot *plane_snapshot_of(const struct config *config)
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

/*
 * A problem the API's caller did not cause and must not read (it names the
 * node's files): logged in full, answered in general terms.
 */
static int node_problem(const struct plane_candidate *candidate, int status, char *err,
                        size_t err_length)
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
struct plane_snapshot *plane_snapshot_build(struct plane *plane, struct plane_candidate *candidate,
                                            struct plane_snapshot *previous, int *status, char *err,
                                            size_t err_length)
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
    snapshot->blocklist = plane_blocklist_build(candidate->blocklist);
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

/* ---- the lists a change starts from ---- */

/*
 * Copies the current lists, leaving out the entry with skip_id, into arrays
 * with room for one more. 0 or -1.
 */
int plane_copy_lists(const struct config *config, const char *skip_group, const char *skip_hub,
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
