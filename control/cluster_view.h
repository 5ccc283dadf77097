/*
 * cluster_view: what operators see of the whole cluster (issue 11, "one view
 * for operators").
 *
 * Every node of a cluster beats: a thread of its own writes the node's entry
 * to Redis about every second with a time-to-live of a few seconds
 * (store/redis_admin.h), so a node that stops, crashes or loses Redis leaves
 * the list within the time-to-live. The thread uses the blocking admin
 * client over one kept connection (a redis_admin_session: connected again,
 * with back-off, only after a failure) and never touches a shard: a slow or
 * absent Redis delays the next beat, nothing else.
 *
 * An entry: {"name", "apiUrl", "deviceAddress" (a wildcard listen address
 * announced as the address this machine reaches Redis from), "state" ("ready",
 * "degraded" or "unready"), "reason" (when not ready), "connections",
 * "provisioningsPerSecond" (certificates issued per second over the last
 * interval), "configurationGeneration", "version", "openssl", "startedAt"}.
 * It holds node-wide figures only, never an owner's data; the API shows the
 * list to administrators alone.
 *
 * The API reads the list to answer status and to find the peers its lists
 * fan out to (control/peer_client.h).
 */
#ifndef DPS_CLUSTER_VIEW_H
#define DPS_CLUSTER_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "control/config.h"

struct cluster_view;
struct plane;

#define CLUSTER_VIEW_INTERVAL_MS 1000
#define CLUSTER_VIEW_TTL_MS 3000

/* True when settings join a cluster (a Redis or sentinels): the view has something to show. */
bool cluster_view_enabled(const struct config *settings);

/*
 * Starts beating for plane's node (version: the daemon's). NULL when the
 * node is not in a cluster (err empty) or the thread cannot start (err).
 */
struct cluster_view *cluster_view_start(struct plane *plane, const char *version, char *err,
                                        size_t err_length);
/* Stops beating and removes the node's entry at once (best effort). */
void cluster_view_stop(struct cluster_view *view);

/* The live nodes' entries (new reference: an array in name order), or NULL with err. */
json_t *cluster_view_nodes(const struct config *settings, char *err, size_t err_length);

/* The process's counters, for the management API. */
void cluster_view_count_fanout_error(void);
/* Prometheus text of the heartbeat and fan-out counters. */
void cluster_view_metrics(FILE *out);

#endif
