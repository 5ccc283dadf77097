/*
 * rate_lease: the rules of rate_lease.h. Every function is a few comparisons
 * on the shard's own thread: this is what a device's signing step costs in a
 * cluster.
 */
#include "dataplane/rate_lease.h"

unsigned rate_lease_size(double rate, unsigned burst, unsigned shares)
{
    double size = rate * RATE_LEASE_WINDOW_MS / 1000.0 / (shares > 0 ? shares : 1);
    unsigned whole = size < 1 ? 1 : (unsigned)size;
    if (burst > 0 && whole > burst)
        whole = burst;
    return whole;
}

void rate_lease_init(struct rate_lease *lease, unsigned size, unsigned credit)
{
    *lease = (struct rate_lease){.size = size > 0 ? size : 1};
    lease->credit = credit > lease->size ? credit : lease->size;
}

static void expire(struct rate_lease *lease, int64_t now_ns)
{
    if (lease->tokens > 0 && now_ns >= lease->expires_ns)
        lease->tokens = 0;
}

int rate_lease_take(struct rate_lease *lease, int64_t now_ns, int64_t *retry_after_ns)
{
    expire(lease, now_ns);
    if (lease->tokens > 0 ||
        (now_ns >= lease->not_before_ns && lease->tokens > -(int64_t)lease->credit)) {
        lease->tokens--;
        return 0;
    }
    *retry_after_ns = lease->not_before_ns > now_ns ? lease->not_before_ns - now_ns : 0;
    return -1;
}

unsigned rate_lease_refill(struct rate_lease *lease, int64_t now_ns)
{
    expire(lease, now_ns);
    if (lease->refilling || now_ns < lease->not_before_ns ||
        lease->tokens > (int64_t)lease->size / 2)
        return 0;
    lease->refilling = true;
    return (unsigned)((int64_t)lease->size - lease->tokens + lease->waiting);
}

void rate_lease_granted(struct rate_lease *lease, int64_t now_ns, unsigned granted, int64_t next_ns)
{
    lease->refilling = false;
    expire(lease, now_ns);
    lease->tokens += granted;
    if (granted > 0)
        lease->expires_ns = now_ns + RATE_LEASE_TTL_NS;
    lease->not_before_ns = next_ns > 0 ? now_ns + next_ns : 0;
}

void rate_lease_failed(struct rate_lease *lease)
{
    lease->refilling = false;
}

bool rate_lease_wait(struct rate_lease *lease, int64_t now_ns)
{
    if (now_ns < lease->not_before_ns || lease->waiting >= 4 * (lease->size + lease->credit))
        return false;
    lease->waiting++;
    return true;
}

void rate_lease_unwait(struct rate_lease *lease)
{
    if (lease->waiting > 0)
        lease->waiting--;
}
