/*
 * admission: GCRA over one atomic. A request at time t is allowed when the
 * theoretical arrival time (TAT) is at most t + tolerance; allowing it moves
 * TAT to max(TAT, t) + interval. The compare-and-swap loop makes concurrent
 * shards agree without a lock.
 */
#include "dataplane/admission.h"

void admission_init(struct admission *admission, double rate, unsigned burst)
{
    admission->interval_ns = rate > 0 ? (int64_t)(1e9 / rate) : 0;
    admission->tolerance_ns = (int64_t)(burst > 0 ? burst - 1 : 0) * admission->interval_ns;
    admission->burst = burst > 0 ? burst : 1;
    atomic_store(&admission->arrival_ns, 0);
}

static int take(struct admission *admission, int64_t interval_ns, int64_t tolerance_ns,
                int64_t now_ns, int64_t *retry_after_ns)
{
    if (interval_ns == 0) {
        return 0;
    }
    int64_t arrival = atomic_load(&admission->arrival_ns);
    for (;;) {
        int64_t start = arrival > now_ns ? arrival : now_ns;
        if (start - now_ns > tolerance_ns) {
            *retry_after_ns = start - tolerance_ns - now_ns;
            return -1;
        }
        if (atomic_compare_exchange_weak(&admission->arrival_ns, &arrival, start + interval_ns)) {
            return 0;
        }
    }
}

int admission_take(struct admission *admission, int64_t now_ns, int64_t *retry_after_ns)
{
    return take(admission, admission->interval_ns, admission->tolerance_ns, now_ns, retry_after_ns);
}

int admission_take_share(struct admission *admission, unsigned shares, int64_t now_ns,
                         int64_t *retry_after_ns)
{
    if (shares <= 1) {
        return admission_take(admission, now_ns, retry_after_ns);
    }
    int64_t interval_ns = admission->interval_ns * shares;
    unsigned burst = admission->burst / shares > 0 ? admission->burst / shares : 1;
    return take(admission, interval_ns, (int64_t)(burst - 1) * interval_ns, now_ns, retry_after_ns);
}

void admission_give_back(struct admission *admission, unsigned shares)
{
    atomic_fetch_sub(&admission->arrival_ns, admission->interval_ns * (shares > 1 ? shares : 1));
}
