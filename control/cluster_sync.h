/*
 * cluster_sync: enrollment groups, hubs and blocklist entries shared by every
 * node of a cluster (issue 11, items 4 and 6), on a thread and loop of its
 * own. See cluster_sync.c for the design.
 */
#ifndef DPS_CLUSTER_SYNC_H
#define DPS_CLUSTER_SYNC_H

#include <stddef.h>

#include "common/domain.h"

struct cluster_sync;
struct plane;

/*
 * Installs itself in plane (plane_set_sync: /readyz waits for the first
 * catch-up) and starts its thread, which connects to the cluster's Redis.
 * Call after plane_start() and before the API starts. NULL with err.
 */
struct cluster_sync *cluster_sync_start(struct plane *plane, const struct config_cluster *config,
                                        char *err, size_t err_length);

/* Stops the thread and frees everything; before plane_destroy(). NULL is fine. */
void cluster_sync_stop(struct cluster_sync *sync);

#endif
