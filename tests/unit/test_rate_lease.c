/*
 * Tests for the lease bookkeeping of the cluster's signing limits
 * (dataplane/rate_lease.c), without Redis: lease sizes, spending, refills
 * asked before the lease runs out, debts, expiry, an empty bucket's wait, and
 * a simulated cluster whose shards lease from one GCRA bucket and admit
 * within 10% of its rate. And a node's share when Redis is away
 * (admission_take_share).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dataplane/admission.h"
#include "dataplane/rate_lease.h"

#define MS 1000000LL
#define SECOND 1000000000LL

static void sizes_follow_rate_shards_and_burst(void **state)
{
    (void)state;
    assert_int_equal(rate_lease_size(50, 10, 2), 1);        /* 50 x 50 ms / 2 = 1.25 */
    assert_int_equal(rate_lease_size(10000, 1000, 4), 125); /* 10000 x 50 ms / 4 */
    assert_int_equal(rate_lease_size(100000, 100, 1), 100); /* never more than the burst */
    assert_int_equal(rate_lease_size(1, 1, 16), 1);         /* at least one */
}

static void refill_is_asked_before_the_lease_runs_out(void **state)
{
    (void)state;
    struct rate_lease lease;
    int64_t wait = 0, now = 10 * SECOND;
    rate_lease_init(&lease, 10, 0);
    /* A new lease borrows its first token and asks for the lease plus the debt. */
    assert_int_equal(rate_lease_take(&lease, now, &wait), 0);
    assert_int_equal(rate_lease_refill(&lease, now), 11);
    assert_int_equal(rate_lease_refill(&lease, now), 0); /* one refill at a time */
    rate_lease_granted(&lease, now, 11, 0);
    assert_int_equal(lease.tokens, 10);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rate_lease_take(&lease, now, &wait), 0);
        assert_int_equal(rate_lease_refill(&lease, now), 0); /* more than half left */
    }
    assert_int_equal(rate_lease_take(&lease, now, &wait), 0);
    assert_int_equal(rate_lease_refill(&lease, now), 5); /* half spent: top up */
    rate_lease_granted(&lease, now, 5, 0);
    assert_int_equal(lease.tokens, 10);
}

static void debt_is_bounded_by_the_lease(void **state)
{
    (void)state;
    struct rate_lease lease;
    int64_t wait = 0, now = SECOND;
    rate_lease_init(&lease, 3, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rate_lease_take(&lease, now, &wait), 0);
    assert_int_equal(rate_lease_take(&lease, now, &wait), -1);
    assert_int_equal(wait, 0); /* no word from Redis yet: retry soon */
    assert_int_equal(rate_lease_refill(&lease, now), 6);
    rate_lease_failed(&lease); /* Redis away: the debt stays */
    assert_int_equal(lease.tokens, -3);
    assert_int_equal(rate_lease_refill(&lease, now), 6);
    rate_lease_granted(&lease, now, 4, 0); /* pays the debt first */
    assert_int_equal(lease.tokens, 1);
}

/* A lease of one token with a credit of four, the credit spent at now: the refill asks for 5. */
static void spend_the_credit(struct rate_lease *lease, int64_t now)
{
    int64_t wait = 0;
    rate_lease_init(lease, 1, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(rate_lease_take(lease, now, &wait), 0);
    assert_int_equal(rate_lease_take(lease, now, &wait), -1);
    assert_int_equal(rate_lease_refill(lease, now), 5);
}

static void credit_lets_a_shard_borrow_its_share_of_the_burst(void **state)
{
    (void)state;
    struct rate_lease lease;
    spend_the_credit(&lease, SECOND);
}

static void an_empty_bucket_stops_debts_until_its_next_token(void **state)
{
    (void)state;
    struct rate_lease lease;
    int64_t wait = 0, now = SECOND;
    rate_lease_init(&lease, 2, 0);
    assert_int_equal(rate_lease_refill(&lease, now), 2);
    rate_lease_granted(&lease, now, 0, 300 * MS);
    assert_int_equal(rate_lease_take(&lease, now + 100 * MS, &wait), -1);
    assert_int_equal(wait, 200 * MS);
    assert_int_equal(rate_lease_refill(&lease, now + 100 * MS), 0);
    /* Its time come, a device borrows again and the refill goes out. */
    assert_int_equal(rate_lease_take(&lease, now + 300 * MS, &wait), 0);
    assert_int_equal(rate_lease_refill(&lease, now + 300 * MS), 3);
}

static void held_tokens_expire(void **state)
{
    (void)state;
    struct rate_lease lease;
    int64_t wait = 0, now = SECOND;
    rate_lease_init(&lease, 5, 0);
    assert_int_equal(rate_lease_refill(&lease, now), 5);
    rate_lease_granted(&lease, now, 5, 0);
    assert_int_equal(rate_lease_take(&lease, now + RATE_LEASE_TTL_NS - 1, &wait), 0);
    assert_int_equal(lease.tokens, 4);
    /* Too late: the four left are gone, the take is a debt. */
    assert_int_equal(rate_lease_take(&lease, now + RATE_LEASE_TTL_NS, &wait), 0);
    assert_int_equal(lease.tokens, -1);
}

/* GCRA over several tokens at once, as lease_script does it in Redis (times in ns). */
struct bucket {
    int64_t tat, interval, tolerance;
};

static unsigned bucket_lease(struct bucket *bucket, int64_t now, unsigned wanted, int64_t *next)
{
    int64_t tat = bucket->tat > now ? bucket->tat : now;
    int64_t available = (now + bucket->tolerance - tat) / bucket->interval + 1;
    unsigned granted = available > 0 ? (available < wanted ? (unsigned)available : wanted) : 0;
    tat += (int64_t)granted * bucket->interval;
    bucket->tat = tat;
    *next = tat - bucket->tolerance - now > 0 ? tat - bucket->tolerance - now : 0;
    return granted;
}

/*
 * Two nodes of two shards under 200 devices/s offered each (one every 5 ms
 * per node), against a 50/s bucket with a burst of 10, Redis answering 1 ms
 * after each ask: over 20 s the cluster admits 50/s within 10%.
 */
static void a_cluster_of_leases_holds_the_rate(void **state)
{
    (void)state;
    struct bucket bucket = {.interval = SECOND / 50, .tolerance = 9 * (SECOND / 50)};
    struct rate_lease shards[4];
    int64_t reply_at[4];
    unsigned wanted[4] = {0};
    for (int i = 0; i < 4; i++) {
        rate_lease_init(&shards[i], rate_lease_size(50, 10, 2), 10 / 2);
        reply_at[i] = -1;
    }
    long admitted = 0;
    int64_t start = 100 * SECOND, wait;
    for (int64_t now = start; now < start + 20 * SECOND; now += MS) {
        for (int i = 0; i < 4; i++) {
            if (reply_at[i] == now) {
                int64_t next;
                unsigned granted = bucket_lease(&bucket, now, wanted[i], &next);
                rate_lease_granted(&shards[i], now, granted, next);
                reply_at[i] = -1;
            }
            /* Every 5 ms each node gets a device: shards take turns. */
            if ((now / MS) % 5 == 0 && (now / MS / 5) % 2 == i % 2) {
                admitted += rate_lease_take(&shards[i], now, &wait) == 0;
                unsigned ask = rate_lease_refill(&shards[i], now);
                if (ask > 0) {
                    wanted[i] = ask;
                    reply_at[i] = now + MS;
                }
            }
        }
    }
    double rate = admitted / 20.0;
    print_message("# admitted %ld in 20 s: %.1f/s\n", admitted, rate);
    assert_true(rate >= 45 && rate <= 55);
}

/* A step waiting for a refill's answer: since when, and how many answers it had. */
struct waiter {
    int64_t since;
    unsigned turns;
};

/*
 * One shard's steps against a bucket whose Redis answers rtt after each ask;
 * a device every period_ms on this shard. As in cluster_rate.c, a step
 * refused while a refill is in flight waits for its answer when wait is set
 * (refused otherwise); at the answer each waiter takes again, and may wait
 * for one more answer; then the next refill goes out. Returns the steps
 * admitted over 10 s; *longest is the longest wait.
 */
static long slow_redis_shard(struct bucket *bucket, unsigned size, unsigned credit, int64_t rtt,
                             int64_t period_ms, bool wait, long *offered, int64_t *longest)
{
    struct rate_lease lease;
    rate_lease_init(&lease, size, credit);
    int64_t reply_at = -1, start = 200 * SECOND, retry;
    struct waiter waiters[256];
    unsigned wanted = 0, waiting = 0;
    long admitted = 0;
    *offered = 0;
    *longest = 0;
    for (int64_t now = start; now < start + 10 * SECOND; now += MS) {
        if (reply_at == now) {
            int64_t next = 0;
            unsigned granted = bucket_lease(bucket, now, wanted, &next);
            rate_lease_granted(&lease, now, granted, next);
            reply_at = -1;
            unsigned still = 0;
            for (unsigned i = 0; i < waiting; i++) {
                rate_lease_unwait(&lease);
                if (now - waiters[i].since > *longest)
                    *longest = now - waiters[i].since;
                if (rate_lease_take(&lease, now, &retry) == 0)
                    admitted++;
                else if (waiters[i].turns < RATE_LEASE_TURNS && rate_lease_wait(&lease, now))
                    waiters[still++] = (struct waiter){waiters[i].since, waiters[i].turns + 1};
            }
            waiting = still;
        }
        bool arrives = ((now - start) / MS) % period_ms == 0;
        int taken = arrives ? rate_lease_take(&lease, now, &retry) : 0;
        *offered += arrives;
        if (reply_at < 0) {
            unsigned ask = rate_lease_refill(&lease, now);
            if (ask > 0) {
                wanted = ask;
                reply_at = now + rtt;
            }
        }
        if (arrives && taken == 0)
            admitted++;
        else if (arrives && wait && reply_at >= 0 && waiting < 256 && rate_lease_wait(&lease, now))
            waiters[waiting++] = (struct waiter){now, 1};
    }
    return admitted;
}

/*
 * The weak point of small leases: at 50/s over two nodes of two shards a
 * lease is one token and a shard may owe four, so with Redis answering in
 * 200 ms a shard that cannot make steps wait admits at most five steps per
 * round trip (25/s) however much the bucket holds. Offered 40 steps/s
 * (its node's share of 50/s is 25/s a shard: the bucket still refuses some),
 * a shard whose steps wait for the refill admits what the bucket grants,
 * none waiting longer than two round trips; and waiting never lets more
 * through than the bucket's rate and burst.
 */
static void a_step_waits_for_the_refill_in_flight(void **state)
{
    (void)state;
    unsigned size = rate_lease_size(50, 50, 2), credit = 4;
    struct bucket bucket = {.interval = SECOND / 50, .tolerance = 49 * (SECOND / 50)};
    long offered;
    int64_t longest;
    long refusing =
        slow_redis_shard(&bucket, size, credit, 200 * MS, 25, false, &offered, &longest);
    bucket = (struct bucket){.interval = SECOND / 50, .tolerance = 49 * (SECOND / 50)};
    long waiting = slow_redis_shard(&bucket, size, credit, 200 * MS, 25, true, &offered, &longest);
    print_message("# 200 ms round trips, %ld offered in 10 s: %ld admitted without waiting, %ld "
                  "with (longest wait %lld ms)\n",
                  offered, refusing, waiting, (long long)(longest / MS));
    assert_true(refusing <= 5 * 10 * 1000 / 200 + (long)credit);
    assert_true(waiting >= 9 * offered / 10);
    assert_true(longest <= 2 * 200 * MS);

    /* Far above the limit (a step every ms), still at most the bucket's 50/s plus its burst. */
    bucket = (struct bucket){.interval = SECOND / 50, .tolerance = 49 * (SECOND / 50)};
    long flood = slow_redis_shard(&bucket, size, credit, 200 * MS, 1, true, &offered, &longest);
    print_message("# a step every ms: %ld admitted in 10 s\n", flood);
    assert_true(flood <= 50 * 10 + 50 + (long)(size + credit));
    assert_true(longest <= 2 * 200 * MS);
}

static void waiting_is_bounded(void **state)
{
    (void)state;
    struct rate_lease lease;
    int64_t wait = 0, now = SECOND;
    spend_the_credit(&lease, now);
    /* At most 4 x (size + credit) steps wait at once, and the next refill asks for them. */
    for (int i = 0; i < 20; i++)
        assert_true(rate_lease_wait(&lease, now));
    assert_false(rate_lease_wait(&lease, now));
    rate_lease_granted(&lease, now, 5, 0);
    assert_int_equal(lease.waiting, 20);
    for (int i = 0; i < 10; i++)
        rate_lease_unwait(&lease);
    assert_int_equal(lease.tokens, 1);
    assert_int_equal(rate_lease_take(&lease, now, &wait), 0);
    assert_int_equal(rate_lease_refill(&lease, now), 11); /* the lease, and 10 waiting */
    rate_lease_failed(&lease);
    /* An empty bucket: no wait before the time Redis named. */
    assert_int_equal(rate_lease_refill(&lease, now), 11);
    rate_lease_granted(&lease, now, 0, 300 * MS);
    assert_false(rate_lease_wait(&lease, now + 299 * MS));
    assert_true(rate_lease_wait(&lease, now + 300 * MS));
}

static void a_node_takes_its_share_when_redis_is_away(void **state)
{
    (void)state;
    struct admission admission;
    int64_t wait = 0, now = 50 * SECOND;
    admission_init(&admission, 50, 10);
    /* Two live nodes: 25/s and a burst of 5 here. */
    int admitted = 0;
    for (int64_t t = now; t < now + 10 * SECOND; t += MS)
        admitted += admission_take_share(&admission, 2, t, &wait) == 0;
    assert_true(admitted >= 250 && admitted <= 255);
    int more = 0;
    while (admission_take_share(&admission, 2, now + 10 * SECOND, &wait) == 0)
        more++;
    assert_true(more <= 1);
    assert_true(wait > 0 && wait <= SECOND / 25);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sizes_follow_rate_shards_and_burst),
        cmocka_unit_test(refill_is_asked_before_the_lease_runs_out),
        cmocka_unit_test(debt_is_bounded_by_the_lease),
        cmocka_unit_test(credit_lets_a_shard_borrow_its_share_of_the_burst),
        cmocka_unit_test(an_empty_bucket_stops_debts_until_its_next_token),
        cmocka_unit_test(held_tokens_expire),
        cmocka_unit_test(a_cluster_of_leases_holds_the_rate),
        cmocka_unit_test(a_step_waits_for_the_refill_in_flight),
        cmocka_unit_test(waiting_is_bounded),
        cmocka_unit_test(a_node_takes_its_share_when_redis_is_away),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
