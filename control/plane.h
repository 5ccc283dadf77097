/*
 * plane: the running node as the control plane sees and changes it.
 *
 * The enrollment groups and hubs in force form an immutable snapshot
 * (settings, groups, hubs and the answers derived from them). A change
 * through the management API is validated, made durable in RocksDB (synced)
 * and then published: a new snapshot replaces the old one atomically, every
 * shard rebuilds its attestation state from it on its own thread, the signer
 * loads the keys of new hubs, and connections in progress finish on the
 * snapshot they started with. Readers never lock the data plane.
 *
 * All functions are safe to call from any thread (the API server's).
 */
#ifndef DPS_PLANE_H
#define DPS_PLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "control/config.h"
#include "store/store.h"

struct plane;
struct store;

enum plane_status {
    PLANE_OK = 0,
    PLANE_INVALID = -1,   /* the input is wrong: err names the field (HTTP 400) */
    PLANE_NOT_FOUND = -2, /* no such id (HTTP 404) */
    PLANE_CONFLICT = -3,  /* exists already / still referenced (HTTP 409) */
    PLANE_FAILED = -4,    /* the node could not apply it (store or key files; HTTP 500) */
    PLANE_EXHAUSTED = -5, /* the owner's quota (api.quotas) is reached (HTTP 429) */
};

/*
 * The configuration in force: settings, groups and hubs. Valid until
 * released; acquiring is a reference count, never a lock held.
 */
const struct config *plane_config_acquire(struct plane *plane);
void plane_config_release(struct plane *plane, const struct config *config);

/*
 * Creates (create true: the id must be new) or replaces (create false: the id
 * must exist) an enrollment group or a hub from a management API document
 * (control/model.h: no file paths; hub keys by registered name, which the
 * document's owner must be allowed to use). A create beyond the owner's
 * quota is PLANE_EXHAUSTED. An id held already is PLANE_CONFLICT with the
 * same message whoever holds it. Durable and in force on every shard when it
 * returns PLANE_OK. Errors never name another owner's documents, nor the
 * node's own files.
 */
int plane_put_group(struct plane *plane, const json_t *doc, bool create, char *err,
                    size_t err_length);
int plane_put_hub(struct plane *plane, const json_t *doc, bool create, char *err,
                  size_t err_length);

/* Deletes by id. A hub still named by a group is PLANE_CONFLICT. */
int plane_delete_group(struct plane *plane, const char *id, char *err, size_t err_length);
int plane_delete_hub(struct plane *plane, const char *id, char *err, size_t err_length);

/* ---- for dpsd: the node's life ---- */

/*
 * Builds the node from its settings: seeds the store with the groups and
 * hubs of the configuration file (they replace stored documents with the
 * same ids), loads every stored group and hub (also those created through
 * the API earlier), and prepares the first snapshot and its signer. Takes
 * ownership of settings and store (plane_destroy closes it). NULL with err.
 */
struct plane *plane_create(struct config *settings, struct store *store, char *err,
                           size_t err_length);

/* Creates and starts shard_count shards on the first snapshot. 0, or -1 with err. */
int plane_start(struct plane *plane, unsigned shard_count, char *err, size_t err_length);

/*
 * SIGHUP: publishes the groups, hubs and certificates of fresh, the configuration file read
 * again (settings such as listen addresses need a restart). Takes fresh. PLANE_OK or an error
 * with err.
 */
int plane_reload(struct plane *plane, struct config *fresh, char *err, size_t err_length);

/*
 * SIGTERM: not ready any more, stop accepting, wait up to timeout_s for
 * connections in progress to finish.
 */
void plane_drain(struct plane *plane, unsigned timeout_s);

/* Stops the shards, lets the store and the signers finish, and frees everything. */
void plane_destroy(struct plane *plane);

/* The settings in force (listen addresses, limits, api): never change while running. */
const struct config *plane_settings(struct plane *plane);

/* ---- the blocklist ---- */

/*
 * Blocks devices of the caller's own enrollment groups, at the handshake
 * and at every later step. request names one of: "deviceId" (UUID),
 * "publicKeySha256" (64 hex digits: SHA-256 of the manufacturer
 * certificate's DER SubjectPublicKeyInfo), or "serial" (hex) with "issuer"
 * (the manufacturer certificate's issuer, RFC 2253 text as OpenSSL prints
 * it); "reason" is optional. On PLANE_OK *entry is the stored entry (new
 * reference): {"id" (opaque), "owner", the identity fields, "recordId"
 * (when the device id is bound to a record of the caller's), "reason",
 * "createdAt"}. Durable and in force on every shard when it returns. A new
 * entry beyond the owner's quota is PLANE_EXHAUSTED.
 */
int plane_block(struct plane *plane, const char *owner, const json_t *request, json_t **entry,
                char *err, size_t err_length);

/* Lifts a block by its id (PLANE_NOT_FOUND unless it is the caller's). */
int plane_unblock(struct plane *plane, const char *owner, const char *id, char *err,
                  size_t err_length);

/* The caller's entries (new reference, an array). */
json_t *plane_blocklist(struct plane *plane, const char *owner);

/* The store, for records, the issuance log and bindings. */
struct store *plane_store(struct plane *plane);

/* True while the node takes devices (not while starting or draining). */
bool plane_ready(struct plane *plane);

/* Prometheus text exposition of the node's counters (malloc'd). */
char *plane_metrics(struct plane *plane);

/*
 * Status for the API (new reference): {"ready", "owner", and owner's own
 * "enrollmentGroups", "hubs", "blocklistEntries", "quotas"}; with admin
 * also "node": {"shards", "backend", "connections",
 * "configurationGeneration", and the node-wide counts}; in a cluster the
 * generation is the cluster's (struct plane_sync) and "node" also has
 * "configurationSync" (the sync's figures and the changes refused here).
 */
json_t *plane_status(struct plane *plane, const char *owner, bool admin);

/* ---- the configuration shared by a cluster (control/cluster_sync.h) ---- */

enum plane_kind { PLANE_KIND_GROUP, PLANE_KIND_HUB, PLANE_KIND_BLOCK };

/* A group, hub or blocklist entry as the store holds it; doc NULL: deleted. */
struct plane_change {
    enum plane_kind kind;
    const char *id;
    const char *owner; /* NULL when not known (the deletion of a document this node lacks) */
    const json_t *doc;
};

/*
 * What the plane asks of the cluster's sync, installed before the API starts.
 * record() is called under the plane's lock for every change made through
 * this node's API, once it checked out: it fills put (key and value malloc'd,
 * freed by the plane), which goes into the change's own synced batch, so a
 * change is never durable here without its way into the cluster. changed()
 * follows once the change is in force. generation() is the cluster's
 * generation this node applied; status() (new reference) and metrics() add
 * the sync's figures to the node's.
 */
struct plane_sync {
    void *user;
    int (*record)(void *user, const struct plane_change *change, struct store_put *put);
    void (*changed)(void *user);
    uint64_t (*generation)(void *user);
    json_t *(*status)(void *user);
    void (*metrics)(void *user, FILE *out);
};

/* Installs sync and holds plane_ready() false until plane_sync_caught_up(). */
void plane_set_sync(struct plane *plane, const struct plane_sync *sync);
void plane_sync_caught_up(struct plane *plane);

/*
 * Applies a change another node made: checked and published like a change
 * through the API (the snapshot, every key file this node names for it), but
 * without quotas or conflicts of ids (its node did those). extra (count
 * writes, may be 0) goes into the same synced batch. The deletion of what this
 * node lacks only writes extra. PLANE_OK, or an error with err (nothing
 * changed, the previous document stays in force).
 */
int plane_apply(struct plane *plane, const struct plane_change *change,
                const struct store_put *extra, size_t extra_count, char *err, size_t err_length);

/* Calls fn for every group, hub and blocklist entry in force, under the plane's lock. */
void plane_documents(struct plane *plane, void (*fn)(void *user, const struct plane_change *change),
                     void *user);

#endif
