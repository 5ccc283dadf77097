/*
 * shard: one core's share of the data plane. A shard is a thread with its own
 * event loop, SO_REUSEPORT listeners, OpenSSL library context and TLS server
 * context, attestation state and connections; shards share nothing mutable
 * on the hot path. Bytes move socket -> TLS records -> CoAP frames -> DPS
 * handlers and back, each layer talking only to its neighbour.
 */
#ifndef DPS_SHARD_H
#define DPS_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/domain.h"
#include "dataplane/dps_handlers.h"

struct admission;
struct shard;
struct snapshot;
struct store;

struct shard_stats {
    uint64_t accepted;
    uint64_t handshakes_ok;
    uint64_t handshakes_failed;
    uint64_t requests;
    uint64_t protocol_errors;
    uint64_t blocked;             /* handshakes refused by the blocklist */
    uint64_t refused_attestation; /* manufacturer chain refused (no group, untrusted, ...) */
    uint64_t attestations_full;   /* manufacturer chains verified in full */
    uint64_t attestations_cached; /* leaves found in the verified-leaf cache instead */
    uint64_t admission_refused;   /* connections refused at accept (limits, per-source budget) */
    uint64_t proxy_refused; /* balancer connections with a missing or malformed PROXY header */
    unsigned connections;
};

/*
 * Builds a shard on a first snapshot: its library context, its view of the
 * snapshot (TLS context, attestation) and its listeners (each listen address
 * bound with SO_REUSEPORT). NULL with err on failure.
 */
struct shard *shard_create(unsigned index, struct snapshot *snapshot, struct store *store,
                           struct admission *admission, char *err, size_t err_length);

/*
 * Moving a shard to a new snapshot takes two steps, so that a publication
 * is all or nothing across shards (control/plane.c):
 *
 * shard_prepare() has the shard build its view of snapshot on its own
 * thread (TLS context, attestation) and keep it aside; done() is called on
 * the shard's thread with 0, or -1 and the reason.
 *
 * shard_decide() then makes the prepared view current (commit: new
 * connections take it, existing ones finish on theirs) or drops it; done()
 * is called with 0. Neither call allocates, so neither can fail; one
 * publication at a time (the caller serialises them).
 */
typedef void (*shard_done_fn)(void *user, int status, const char *err);
void shard_prepare(struct shard *shard, struct snapshot *snapshot, shard_done_fn done, void *user);
void shard_decide(struct shard *shard, bool commit, shard_done_fn done, void *user);

/* Stops accepting new connections (any thread); established ones continue. */
void shard_drain(struct shard *shard);

/* Starts the shard's thread. 0 or -errno. */
int shard_start(struct shard *shard);

/* Asks the loop to stop (any thread, signal-safe). */
void shard_stop(struct shard *shard);

/* Waits for the thread, closes connections; work still in the signer or store
 * is finished by shard_finish() after those are stopped. */
void shard_join(struct shard *shard);

/*
 * After shard_join: runs what workers handed back so far and returns how
 * many requests are still with them (call until 0 before shard_finish).
 */
unsigned shard_collect(struct shard *shard);

/* Runs what workers handed back after they stopped, then frees the shard. */
void shard_finish(struct shard *shard);

const char *shard_backend_name(const struct shard *shard);
void shard_get_stats(const struct shard *shard, struct shard_stats *stats);

/* The shard's Redis client (any thread); false when the node runs without Redis. */
struct cluster_status;
bool shard_cluster_status(const struct shard *shard, struct cluster_status *status);

#endif
