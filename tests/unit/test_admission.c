/*
 * Tests for the node-wide GCRA limiter: the burst passes, then requests are
 * spaced by the interval, a refusal says how long to wait, and concurrent
 * takers never get more than rate and burst allow.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>

#include "dataplane/admission.h"

#define SECOND 1000000000LL

static void test_unlimited_always_admits(void **state)
{
    (void)state;
    struct admission admission;
    int64_t wait = -1;
    admission_init(&admission, 0, 1);
    for (int i = 0; i < 100000; i++) {
        assert_int_equal(admission_take(&admission, 0, &wait), 0);
    }
}

static void test_burst_then_rate(void **state)
{
    (void)state;
    struct admission admission;
    int64_t wait = 0;
    int64_t now = 1000 * SECOND;
    admission_init(&admission, 10, 5); /* one per 100 ms, 5 at once */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(admission_take(&admission, now, &wait), 0);
    }
    assert_int_equal(admission_take(&admission, now, &wait), -1);
    assert_true(wait > 0 && wait <= SECOND / 10);
    /* After the wait it tells, one more passes, and only one. */
    now += wait;
    assert_int_equal(admission_take(&admission, now, &wait), 0);
    assert_int_equal(admission_take(&admission, now, &wait), -1);
}

static void test_retry_after_is_exact(void **state)
{
    (void)state;
    struct admission admission;
    int64_t wait = 0;
    int64_t now = 50 * SECOND;
    admission_init(&admission, 1, 1);
    assert_int_equal(admission_take(&admission, now, &wait), 0);
    assert_int_equal(admission_take(&admission, now + SECOND / 4, &wait), -1);
    assert_int_equal(wait, 3 * SECOND / 4);
    assert_int_equal(admission_take(&admission, now + SECOND - 1, &wait), -1);
    assert_int_equal(admission_take(&admission, now + SECOND, &wait), 0);
}

static void test_idle_time_does_not_bank_beyond_the_burst(void **state)
{
    (void)state;
    struct admission admission;
    int64_t wait;
    int64_t now = 10 * SECOND;
    admission_init(&admission, 100, 3);
    assert_int_equal(admission_take(&admission, now, &wait), 0);
    now += 3600 * SECOND;
    int admitted = 0;
    for (int i = 0; i < 10; i++) {
        admitted += admission_take(&admission, now, &wait) == 0;
    }
    assert_int_equal(admitted, 3);
}

struct taker {
    struct admission *admission;
    int64_t now;
    int admitted;
};

static void *take_many(void *arg)
{
    struct taker *taker = arg;
    int64_t wait;
    for (int i = 0; i < 100000; i++) {
        taker->admitted += admission_take(taker->admission, taker->now, &wait) == 0;
    }
    return NULL;
}

static void test_concurrent_takers_share_one_budget(void **state)
{
    (void)state;
    struct admission admission;
    struct taker takers[4];
    pthread_t threads[4];
    admission_init(&admission, 1000, 250);
    for (int i = 0; i < 4; i++) {
        takers[i] = (struct taker){.admission = &admission, .now = 7 * SECOND};
        pthread_create(&threads[i], NULL, take_many, &takers[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        total += takers[i].admitted;
    }
    assert_int_equal(total, 250);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unlimited_always_admits),
        cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_retry_after_is_exact),
        cmocka_unit_test(test_idle_time_does_not_bank_beyond_the_burst),
        cmocka_unit_test(test_concurrent_takers_share_one_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
