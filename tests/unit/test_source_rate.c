/*
 * Tests for the node-wide per-source signing rate (dataplane/source_rate.c):
 * the key of a peer, GCRA per source with its burst and retry time, sources
 * kept apart, a slot reused once its debt is paid, and several threads
 * (shards) sharing one source's limit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>

#include "dataplane/source_rate.h"

#define MS 1000000LL
#define SECOND 1000000000LL

static void keys_are_the_address_without_the_port(void **state)
{
    (void)state;
    char key[SOURCE_RATE_KEY_MAX];
    source_rate_key("198.51.100.7:4444", key);
    assert_string_equal(key, "198.51.100.7");
    source_rate_key("[2001:db8::1]:15684", key);
    assert_string_equal(key, "2001:db8::1");
    source_rate_key("?", key);
    assert_string_equal(key, "");
    source_rate_key(NULL, key);
    assert_string_equal(key, "");
    source_rate_key("[2001:db8::1", key);
    assert_string_equal(key, "");
}

static void a_source_gets_its_burst_then_its_rate(void **state)
{
    (void)state;
    struct source_rate *table = source_rate_create();
    assert_non_null(table);
    int64_t now = 10 * SECOND, wait = 0;
    for (int i = 0; i < 5; i++)
        assert_int_equal(source_rate_take(table, "10.0.0.1", SECOND / 10, 5, now, &wait), 0);
    assert_int_equal(source_rate_take(table, "10.0.0.1", SECOND / 10, 5, now, &wait), -1);
    assert_int_equal(wait, SECOND / 10);
    /* Another source is not touched. */
    assert_int_equal(source_rate_take(table, "10.0.0.2", SECOND / 10, 5, now, &wait), 0);
    /* Its time come, one more. */
    assert_int_equal(source_rate_take(table, "10.0.0.1", SECOND / 10, 5, now + SECOND / 10, &wait),
                     0);
    assert_int_equal(source_rate_take(table, "10.0.0.1", SECOND / 10, 5, now + SECOND / 10, &wait),
                     -1);
    /* No source, or no limit: never refused. */
    assert_int_equal(source_rate_take(table, "", SECOND / 10, 1, now, &wait), 0);
    assert_int_equal(source_rate_take(table, "10.0.0.1", 0, 1, now, &wait), 0);
    source_rate_free(table);
}

/* Far more sources than slots, each once: slots with no debt left are reused. */
static void paid_slots_are_reused(void **state)
{
    (void)state;
    struct source_rate *table = source_rate_create();
    int64_t wait;
    char source[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(source, sizeof(source), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_int_equal(source_rate_take(table, source, MS, 1, i * 2 * MS, &wait), 0);
    }
    /* The latest source is tracked: its second step at once is refused. */
    assert_int_equal(source_rate_take(table, source, MS, 1, 99999 * 2 * MS, &wait), -1);
    source_rate_free(table);
}

struct worker {
    struct source_rate *table;
    long admitted;
};

/* A shard offering one source a step every ms for 10 s (simulated time). */
static void *offer(void *arg)
{
    struct worker *worker = arg;
    int64_t wait;
    for (int64_t t = 0; t < 10 * SECOND; t += MS)
        worker->admitted += source_rate_take(worker->table, "192.0.2.9", SECOND / 20, 20,
                                             100 * SECOND + t, &wait) == 0;
    return NULL;
}

/*
 * Four shards share one source's 20/s (burst 20): together they admit 20/s
 * plus the burst, as one shard would, not four times as much. Their clocks
 * are simulated and run apart, so only the total is checked.
 */
static void shards_share_one_limit(void **state)
{
    (void)state;
    struct worker workers[4];
    pthread_t threads[4];
    struct source_rate *table = source_rate_create();
    for (int i = 0; i < 4; i++) {
        workers[i] = (struct worker){.table = table};
        assert_int_equal(pthread_create(&threads[i], NULL, offer, &workers[i]), 0);
    }
    long admitted = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        admitted += workers[i].admitted;
    }
    print_message("# four shards, one source at 20/s: %ld admitted in 10 s\n", admitted);
    assert_true(admitted >= 200 && admitted <= 20 * 10 + 20 + 4);
    source_rate_free(table);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_are_the_address_without_the_port),
        cmocka_unit_test(a_source_gets_its_burst_then_its_rate),
        cmocka_unit_test(paid_slots_are_reused),
        cmocka_unit_test(shards_share_one_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
