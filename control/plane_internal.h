/*
 * plane_internal: what the files of the control plane share. Only they
 * include it; everyone else sees control/plane.h.
 *
 * One object, struct plane, split by concern:
 *
 *   plane.c            the node's life and publication: create (the store
 *                      seeded with the configuration file, everything stored
 *                      loaded), start, reload, drain, destroy; a snapshot
 *                      published all or nothing; a change made durable
 *                      between the phases; the readers.
 *   plane_snapshot.c   a candidate snapshot built and checked as the shards
 *                      will use it (references, key names, files read once,
 *                      chains, the signer shared by equal hub sets).
 *   plane_documents.c  the groups and hubs: put and delete through the API,
 *                      a change another node made, the walk of what is in
 *                      force for the cluster's sync.
 *   plane_blocklist.c  the blocklist: requests checked into entries, the
 *                      entries as stored and as the shards' set.
 *   plane_metrics.c    /metrics and the status document.
 *
 * Who owns what: plane.c creates and frees struct plane, its locks, its
 * shards and the snapshot in force (plane->current, swapped only by
 * plane_publish under current_lock). plane->lock serialises every change:
 * plane_documents.c and plane_blocklist.c take it around a change. The
 * stored blocklist (plane->blocklist) is read at create and freed at
 * destroy by plane.c; in between only plane_blocklist.c replaces it, once a
 * publication succeeded. A snapshot is made by plane_snapshot_build, which hands its one
 * reference to the caller; plane_publish takes that reference over (it
 * becomes current, or is released), and the last snapshot_release frees it
 * through plane_snapshot.c. Readers hold a snapshot through
 * plane_config_acquire and never take plane->lock for it.
 */
#ifndef DPS_PLANE_INTERNAL_H
#define DPS_PLANE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "control/plane.h"
#include "dataplane/admission.h"
#include "dataplane/dps_handlers.h"
#include "dataplane/snapshot.h"
#include "store/store.h"

#define PLANE_MAX_SHARDS 256

struct attestation;
struct auth;
struct blocklist;
struct shard;
struct shared_signer;

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
    struct auth *operator_keys; /* the API's JWKS (api.jwks), under lock: never a hub's token key */
    struct shard *shards[PLANE_MAX_SHARDS];
    unsigned shard_count;
    atomic_bool ready;
    struct plane_sync sync;    /* all NULL without a cluster */
    atomic_bool sync_catching; /* not ready while the cluster's changes are being caught up */
};

/* What a new snapshot is built from. */
struct plane_candidate {
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
 * One document to write (doc set) or delete (doc NULL) between the phases of
 * a publication, in one synced batch with extra, and with the cluster's
 * record of it when shared (made through this node's API, in a cluster).
 */
struct plane_document_change {
    enum store_family family;
    const char *id;
    const json_t *doc;
    const char *owner;
    bool shared;
    const struct store_put *extra;
    size_t extra_count;
};

/* Makes a change durable between the two phases: PLANE_OK or PLANE_FAILED with err. */
typedef int (*plane_persist_fn)(struct plane *plane, void *user, char *err, size_t err_length);

/* ---- plane_snapshot.c ---- */

/*
 * A checked snapshot (one reference, the caller's) from candidate, whose
 * lists it takes over; previous (may be NULL) lends what did not change.
 * NULL with *status and err. Lock held.
 */
struct plane_snapshot *plane_snapshot_build(struct plane *plane, struct plane_candidate *candidate,
                                            struct plane_snapshot *previous, int *status, char *err,
                                            size_t err_length);

/* The snapshot a configuration from plane_config_acquire belongs to. */
struct plane_snapshot *plane_snapshot_of(const struct config *config);

/* Copies of the lists in force without skip_group/skip_hub, room for one more. 0 or -1. */
int plane_copy_lists(const struct config *config, const char *skip_group, const char *skip_hub,
                     struct config_group **groups, size_t *group_count, struct config_hub **hubs,
                     size_t *hub_count);

/* ---- plane.c ---- */

/* Makes snapshot current on every shard or on none (see plane.c). Lock held. */
int plane_publish(struct plane *plane, struct plane_snapshot *snapshot, plane_persist_fn persist,
                  void *user, char *err, size_t err_length);

/* A plane_persist_fn for a struct plane_document_change (user). */
int plane_persist_document(struct plane *plane, void *user, char *err, size_t err_length);

/* Tells the cluster's sync that a change made here is in force. */
void plane_shared_change_done(struct plane *plane, const struct plane_document_change *change,
                              int status);

/* ---- plane_documents.c ---- */

/* How many of owner's groups (is_group) or hubs config holds. */
size_t plane_owned_count(const struct config *config, bool is_group, const char *owner);

/* ---- plane_blocklist.c ---- */

/* The shards' set of blocked keys from the entries (an array). NULL: out of memory. */
struct blocklist *plane_blocklist_build(const json_t *entries);

/* The stored entries (new reference, an array), or NULL with err. */
json_t *plane_blocklist_load(struct plane *plane, char *err, size_t err_length);

/* A blocklist entry another node made or lifted (plane_apply). Lock held. */
int plane_blocklist_apply(struct plane *plane, const struct plane_change *change,
                          const struct store_put *extra, size_t extra_count, char *err,
                          size_t err_length);

#endif
