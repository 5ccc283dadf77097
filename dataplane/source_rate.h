/*
 * source_rate: a signing rate per source address (limits.signingRatePerSource)
 * kept in this process, for a single node and for a cluster node whose Redis
 * is away (dataplane/cluster_rate.h keeps the cluster's in Redis). One table
 * for the whole node, so a source is limited the same whatever shard its
 * connections land on (SO_REUSEPORT spreads one source's connections over
 * the shards).
 *
 * The table is GCRA per source (a theoretical arrival time each), split into
 * stripes, each behind its own mutex held for a few comparisons: two shards
 * wait for each other only when two signing steps whose sources hash to the
 * same stripe arrive at the same instant. A slot whose arrival time has
 * passed holds no debt and is reused; a stripe full of sources in debt
 * admits a newcomer without tracking it (the other limits still hold), as
 * the shard's per-source admission does.
 */
#ifndef DPS_DATAPLANE_SOURCE_RATE_H
#define DPS_DATAPLANE_SOURCE_RATE_H

#include <stdint.h>

#define SOURCE_RATE_KEY_MAX 48 /* an IPv6 address as text, and its NUL */

struct source_rate;

/* NULL when memory runs out. */
struct source_rate *source_rate_create(void);
void source_rate_free(struct source_rate *table);

/*
 * One step of source (an address as text) at now_ns under a limit of
 * interval_ns per step (> 0) with burst steps at once (>= 1): 0 when
 * admitted, or -1 with how long to wait before a retry may succeed. Any
 * thread.
 */
int source_rate_take(struct source_rate *table, const char *source, int64_t interval_ns,
                     unsigned burst, int64_t now_ns, int64_t *retry_after_ns);

/*
 * The address part of a peer as the connection names it ("HOST:PORT",
 * "[V6]:PORT"): the key a source's limit is counted under. "" when peer
 * names no address.
 */
void source_rate_key(const char *peer, char out[SOURCE_RATE_KEY_MAX]);

#endif
