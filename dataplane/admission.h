/*
 * admission: node-wide rate limiting of the expensive steps (those that
 * need a signature: cloud configuration and credentials) with GCRA, the
 * generic cell rate algorithm: one atomic "theoretical arrival time" shared
 * by every shard, updated lock-free. A refused request learns how long to
 * wait, which the handlers send as 5.03 + Max-Age: backpressure the device
 * client treats as "retry this step", not as failure.
 *
 * This is the embedded, node-local form; a cluster shares the same
 * decision through Redis.
 */
#ifndef DPS_ADMISSION_H
#define DPS_ADMISSION_H

#include <stdatomic.h>
#include <stdint.h>

struct admission {
    _Atomic int64_t arrival_ns; /* theoretical arrival time of the next request */
    int64_t interval_ns;        /* 1 / rate; 0 means unlimited */
    int64_t tolerance_ns;       /* (burst - 1) * interval */
    unsigned burst;
};

/* rate per second (0: unlimited), burst >= 1. */
void admission_init(struct admission *admission, double rate, unsigned burst);

/*
 * Takes one unit at time now_ns (CLOCK_MONOTONIC). Returns 0 when allowed,
 * or -1 with the nanoseconds to wait before a retry can succeed.
 */
int admission_take(struct admission *admission, int64_t now_ns, int64_t *retry_after_ns);

/*
 * The same with one share of the limit among shares (>= 1): rate / shares,
 * burst / shares (at least 1). A cluster node whose Redis is away limits
 * itself to its share of the cluster's rate this way (dataplane/cluster_rate.h).
 */
int admission_take_share(struct admission *admission, unsigned shares, int64_t now_ns,
                         int64_t *retry_after_ns);

/*
 * Gives back one unit taken with admission_take() (shares 1) or
 * admission_take_share() (the same shares): a step a later limit refused.
 */
void admission_give_back(struct admission *admission, unsigned shares);

#endif
