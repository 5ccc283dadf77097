/*
 * rate_lease: a shard's share of a cluster-wide token bucket, as plain
 * bookkeeping (no Redis, no clock of its own), so the rules can be tested
 * alone. dataplane/cluster_rate.c does the Redis side.
 *
 * The bucket lives in Redis (GCRA); a shard takes its tokens in small leases
 * (one EVALSHA asks for up to size tokens and learns how many it got and when
 * the next will be there) and devices spend them locally, so Redis is never
 * waited for on a device's path:
 *  - a refill is asked for when half the lease is spent, before it runs out;
 *  - held tokens expire LEASE_TTL after their grant, so tokens a shard no
 *    longer needs (an idle shard, a node that left) are never spent late in a
 *    burst on top of the fresh ones;
 *  - when none is held, a shard may spend up to credit tokens ahead of its
 *    next grant (a debt the grant repays first; credit is at least the lease,
 *    a few leases at most, within the shard's share of the burst): the first
 *    device after a quiet spell, or one arriving while a refill is on its
 *    way, does not wait for a round trip. Not after Redis said the bucket is
 *    empty, until the time it named.
 *  - a step that finds the debt used up while a refill is on its way may
 *    wait for a refill's answer instead of being refused: under a slow
 *    Redis a small lease (one token at 50/s) would otherwise cap a shard at
 *    size + credit steps per round trip, below the limit, and the tokens of
 *    a late answer would expire unused while refused devices wait out their
 *    Max-Age. Waiting steps are counted into the next refill (it asks for
 *    them too), so what a shard admits per round trip grows with its
 *    demand. A step waits for at most RATE_LEASE_TURNS answers (each within
 *    the Redis client's command deadline), and at most 4 x (size + credit)
 *    steps wait at once. Waiters spend tokens by the same rules as anyone
 *    (a grant, or the credit), so the bound below holds with them.
 * What the cluster can admit above the limit over any window is thus bounded
 * by the leases and debts outstanding: a lease and a credit per shard.
 */
#ifndef DPS_DATAPLANE_RATE_LEASE_H
#define DPS_DATAPLANE_RATE_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#define RATE_LEASE_TTL_NS 500000000LL /* held tokens are good this long */
#define RATE_LEASE_WINDOW_MS 50       /* a lease covers about this much of the rate */
#define RATE_LEASE_TURNS 2            /* refill answers a step may wait for */

struct rate_lease {
    unsigned size;         /* tokens asked per refill, >= 1 */
    unsigned credit;       /* the most it may owe, >= size */
    int64_t tokens;        /* held; negative: spent ahead of the next grant */
    int64_t expires_ns;    /* held tokens are good until then */
    int64_t not_before_ns; /* the bucket is empty until then: no debt, no refill */
    bool refilling;        /* a refill is in flight */
    unsigned waiting;      /* steps waiting for a refill's answer */
};

/* The lease size for rate (per second) and burst split over shares shards. */
unsigned rate_lease_size(double rate, unsigned burst, unsigned shares);

/* credit: the shard's share of the burst (raised to size when smaller). */
void rate_lease_init(struct rate_lease *lease, unsigned size, unsigned credit);

/* Spends one token at now_ns. 0, or -1 with how long to wait before a retry may succeed. */
int rate_lease_take(struct rate_lease *lease, int64_t now_ns, int64_t *retry_after_ns);

/*
 * Whether a refill is due at now_ns: then how many tokens to ask for (the
 * lease, plus any debt, plus one per waiting step) is returned and the lease is marked refilling; 0
 * otherwise. The caller must answer with granted() or failed().
 */
unsigned rate_lease_refill(struct rate_lease *lease, int64_t now_ns);
/* Redis granted this many; the next token is next_ns from now (0: at once). */
void rate_lease_granted(struct rate_lease *lease, int64_t now_ns, unsigned granted,
                        int64_t next_ns);
/* The refill got no answer (Redis away): nothing held changes. */
void rate_lease_failed(struct rate_lease *lease);

/*
 * After rate_lease_take() refused at now_ns, with a refill in flight or
 * about to be asked: whether the step may wait for its answer instead (the
 * bucket is not known empty, and fewer than 4 x (size + credit) steps wait
 * already). When true the step counts as waiting, and refills ask for its
 * token too, until rate_lease_unwait() when its turn comes (an answer came):
 * it then takes again with rate_lease_take(), and may wait once more
 * (RATE_LEASE_TURNS in all).
 */
bool rate_lease_wait(struct rate_lease *lease, int64_t now_ns);
void rate_lease_unwait(struct rate_lease *lease);

#endif
