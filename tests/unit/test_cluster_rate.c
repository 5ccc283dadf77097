/*
 * test_cluster_rate: a shard's signing limits (dataplane/cluster_rate.c)
 * against a real redis-server started here: the lease script holds the
 * cluster's rate, registers the node and counts the live ones; a group's
 * bucket is its own; Redis stopped puts the shard on the node's share (rate
 * / live nodes) at once, and Redis back heals it without a restart. A
 * source's steps ask Redis each (asynchronously) and a step may wait for its
 * lease's refill; on a single node the source's limit is node-wide.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/admission.h"
#include "dataplane/cluster.h"
#include "dataplane/cluster_rate.h"
#include "dataplane/loop.h"
#include "redis_fixture.h"

#define GROUP_1 "0f4a3c55-8e3b-4f4e-9a5e-6b2f7d1c9e01"
#define GROUP_2 "1f4a3c55-8e3b-4f4e-9a5e-6b2f7d1c9e02"

static struct {
    struct redis_fixture redis;
    struct admission admission;
    struct cluster *cluster;
    struct cluster_rate *rate;
    long admitted;
    long refused;
    const char *group;
    unsigned source_rate; /* limits.signingRatePerSource for start(), burst 5 */
    long done;            /* requests answered through done() */
} h;

static int64_t now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* A step that cannot wait (no done): decided at once, 0 admitted or -1. */
static int cluster_rate_take(struct cluster_rate *rate, const char *group_id, int64_t now,
                             int64_t *wait)
{
    struct cluster_rate_request request = {0};
    snprintf(request.group_id, sizeof(request.group_id), "%s", group_id);
    if (cluster_rate_admit(rate, &request, now) == CLUSTER_RATE_ADMITTED)
        return 0;
    *wait = request.retry_after_ns;
    return -1;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* Runs the loop for ms, a device asking for a signing step every 2 ms. */
static bool take_often(void *arg)
{
    (void)arg;
    int64_t wait;
    if (cluster_rate_take(h.rate, h.group, now_ns(), &wait) == 0)
        h.admitted++;
    else
        h.refused++;
    return false;
}

static void offer_for(unsigned ms)
{
    h.admitted = h.refused = 0;
    loop_wait_until(h.redis.loop, take_often, NULL, ms);
}

static bool cluster_up(void *arg)
{
    (void)arg;
    struct cluster_status status;
    cluster_get_status(h.cluster, &status);
    return status.up;
}

static bool in_fallback(void *arg)
{
    struct cluster_rate_stats stats;
    cluster_rate_stats_get(&stats);
    return stats.fallback == (unsigned)(uintptr_t)arg;
}

static bool two_nodes(void *arg)
{
    (void)arg;
    struct cluster_rate_stats stats;
    cluster_rate_stats_get(&stats);
    return stats.live_nodes == 2;
}

static void start(unsigned signing_rate, unsigned signing_burst, unsigned group_rate)
{
    char err[256] = "";
    char address[32];
    snprintf(address, sizeof(address), "127.0.0.1:%u", h.redis.server.port);
    struct config config = {
        .signing_rate = signing_rate,
        .signing_burst = signing_burst,
        .signing_rate_per_group = group_rate,
        .signing_burst_per_group = 1,
        .signing_rate_per_source = h.source_rate,
        .signing_burst_per_source = 5,
        .cluster =
            {
                .redis = address,
                .key_prefix = "t:",
                .node = "n1",
                .command_timeout_ms = 200,
                .connect_timeout_ms = 500,
            },
    };
    admission_init(&h.admission, signing_rate, signing_burst);
    h.cluster = cluster_create(&config.cluster, 1, NULL, err, sizeof(err));
    assert_non_null(h.cluster);
    h.rate = cluster_rate_create(&config, 0, &h.admission);
    assert_non_null(h.rate);
    assert_int_equal(cluster_start(h.cluster, h.redis.loop, NULL, err, sizeof(err)), 0);
    assert_int_equal(cluster_rate_start(h.rate, h.redis.loop, h.cluster), 0);
    assert_true(loop_wait_until(h.redis.loop, cluster_up, NULL, 3000));
    h.group = GROUP_1;
}

static void stop(void)
{
    cluster_rate_stop(h.rate);
    cluster_stop(h.cluster);
    cluster_rate_free(h.rate);
    cluster_free(h.cluster);
    h.rate = NULL;
    h.cluster = NULL;
}

static int setup(void **state)
{
    (void)state;
    memset(&h, 0, sizeof(h));
    return redis_fixture_open(&h.redis);
}

static int teardown(void **state)
{
    (void)state;
    if (h.rate != NULL)
        stop();
    redis_fixture_close(&h.redis);
    return 0;
}

static long long command_integer(const char *format, const char *argument)
{
    redisReply *reply = redis_server_command(h.redis.server.port, NULL, format, argument);
    long long value = reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    freeReplyObject(reply);
    return value;
}

/* 20/s, burst 1, for 2 s of devices every 2 ms: about 40 admitted (+ the burst and a debt). */
static void leases_hold_the_rate(void **state)
{
    (void)state;
    redis_fixture_flush(&h.redis);
    start(20, 1, 0);
    offer_for(2000);
    print_message("# admitted %ld, refused %ld in 2 s at 20/s\n", h.admitted, h.refused);
    assert_true(h.admitted >= 36 && h.admitted <= 46);
    assert_true(h.refused > 500);
    struct cluster_rate_stats stats;
    cluster_rate_stats_get(&stats);
    assert_true(stats.leases > 0 && stats.granted > 0);
    assert_true(stats.round_trips >= stats.leases);
    assert_int_equal(stats.fallback, 0);
    assert_int_equal(command_integer("EXISTS %s", "t:rate:signing"), 1);
    assert_int_equal(command_integer("ZCARD %s", "t:rate:nodes"), 1);
    /* Another node asks: the count comes back with the next call (shard 0's tick). */
    freeReplyObject(redis_server_command(h.redis.server.port, NULL, "ZADD t:rate:nodes %lld n2",
                                         (long long)time(NULL) * 1000 + 60000));
    assert_true(loop_wait_until(h.redis.loop, two_nodes, NULL, 3000));
    stop();
}

/* A group's bucket is its own: group 1 exhausted, group 2 still signs. */
static void groups_have_their_own_buckets(void **state)
{
    (void)state;
    redis_fixture_flush(&h.redis);
    start(0, 1, 5);
    offer_for(1000);
    assert_true(h.admitted >= 4 && h.admitted <= 9);
    assert_int_equal(command_integer("EXISTS %s", "t:rate:group:" GROUP_1), 1);
    h.group = GROUP_2;
    int64_t wait;
    assert_int_equal(cluster_rate_take(h.rate, GROUP_2, now_ns(), &wait), 0);
    loop_wait_until(h.redis.loop, never, NULL, 50);
    assert_int_equal(command_integer("EXISTS %s", "t:rate:group:" GROUP_2), 1);
    stop();
}

/*
 * Redis stopped: the shard runs on the node's share (two live nodes last seen:
 * 10/s of 20/s) at once, and Redis back puts it on leases again.
 */
static void redis_away_falls_back_to_the_share_and_heals(void **state)
{
    (void)state;
    redis_fixture_flush(&h.redis);
    start(20, 1, 0);
    freeReplyObject(redis_server_command(h.redis.server.port, NULL, "ZADD t:rate:nodes %lld n2",
                                         (long long)time(NULL) * 1000 + 60000));
    assert_true(loop_wait_until(h.redis.loop, two_nodes, NULL, 3000));
    uint16_t port = h.redis.server.port;
    redis_server_stop(&h.redis.server);
    assert_true(loop_wait_until(h.redis.loop, in_fallback, (void *)1, 3000));
    offer_for(2000);
    print_message("# without Redis: admitted %ld in 2 s (share 10/s)\n", h.admitted);
    assert_true(h.admitted >= 17 && h.admitted <= 23);
    char err[256];
    assert_int_equal(
        redis_server_start(&h.redis.server, h.redis.folder, port, NULL, err, sizeof(err)), 0);
    assert_true(loop_wait_until(h.redis.loop, in_fallback, (void *)0, 8000));
    struct cluster_rate_stats before, after;
    cluster_rate_stats_get(&before);
    offer_for(500);
    cluster_rate_stats_get(&after);
    assert_true(after.leases > before.leases);
    stop();
}

static void answered(struct cluster_rate_request *request)
{
    h.done++;
    if (request->verdict == CLUSTER_RATE_ADMITTED)
        h.admitted++;
    else
        h.refused++;
}

static bool all_answered(void *arg)
{
    return h.done >= (long)(uintptr_t)arg;
}

static void request_init(struct cluster_rate_request *request, const char *source)
{
    *request = (struct cluster_rate_request){.done = answered};
    snprintf(request->group_id, sizeof(request->group_id), "%s", GROUP_1);
    snprintf(request->source, sizeof(request->source), "%s", source);
}

/*
 * A source's steps ask Redis each (PENDING, then done()): 5/s with a burst
 * of 5, twenty at once: five admitted, the rest refused with a time to
 * retry; another source is not touched; the bucket's key expires. A step
 * still waiting when the shard stops is answered REFUSED, once.
 */
static void a_source_asks_redis_at_each_step(void **state)
{
    (void)state;
    redis_fixture_flush(&h.redis);
    h.source_rate = 5;
    start(0, 1, 0);
    struct cluster_rate_request requests[21];
    h.admitted = h.refused = h.done = 0;
    for (int i = 0; i < 20; i++) {
        request_init(&requests[i], "192.0.2.1");
        assert_int_equal(cluster_rate_admit(h.rate, &requests[i], now_ns()), CLUSTER_RATE_PENDING);
    }
    assert_true(loop_wait_until(h.redis.loop, all_answered, (void *)20, 3000));
    /* Redis takes the twenty in one pipeline: a sixth only if it spread them over 200 ms. */
    assert_true(h.admitted >= 5 && h.admitted <= 6);
    assert_int_equal(h.admitted + h.refused, 20);
    assert_true(requests[19].retry_after_ns > 0 && requests[19].retry_after_ns <= 1000000000);
    request_init(&requests[20], "192.0.2.2");
    assert_int_equal(cluster_rate_admit(h.rate, &requests[20], now_ns()), CLUSTER_RATE_PENDING);
    assert_true(loop_wait_until(h.redis.loop, all_answered, (void *)21, 3000));
    assert_true(h.admitted >= 6 && h.admitted <= 7 &&
                requests[20].verdict == CLUSTER_RATE_ADMITTED);
    long long ttl = command_integer("PTTL %s", "t:rate:source:192.0.2.1");
    assert_true(ttl > 0 && ttl <= 5000);
    struct cluster_rate_stats stats;
    cluster_rate_stats_get(&stats);
    assert_true(stats.source_round_trips >= 21 && stats.source_admitted >= 6);
    /* In flight when the shard stops: answered, REFUSED. */
    request_init(&requests[0], "192.0.2.3");
    assert_int_equal(cluster_rate_admit(h.rate, &requests[0], now_ns()), CLUSTER_RATE_PENDING);
    stop();
    assert_int_equal(h.done, 22);
    assert_int_equal(requests[0].verdict, CLUSTER_RATE_REFUSED);
    h.source_rate = 0;
}

/*
 * A step that finds its lease and credit spent while the refill is in
 * flight waits for its answer instead of a refusal, and is answered once.
 */
static void a_step_waits_for_the_refill(void **state)
{
    (void)state;
    redis_fixture_flush(&h.redis);
    start(20, 1, 0);
    struct cluster_rate_request requests[2];
    h.admitted = h.refused = h.done = 0;
    request_init(&requests[0], "");
    request_init(&requests[1], "");
    /* One token of credit: the first is admitted and sends the refill; the second waits. */
    assert_int_equal(cluster_rate_admit(h.rate, &requests[0], now_ns()), CLUSTER_RATE_ADMITTED);
    assert_int_equal(cluster_rate_admit(h.rate, &requests[1], now_ns()), CLUSTER_RATE_PENDING);
    assert_true(loop_wait_until(h.redis.loop, all_answered, (void *)1, 3000));
    struct cluster_rate_stats stats;
    cluster_rate_stats_get(&stats);
    assert_true(stats.waits >= 1);
    loop_wait_until(h.redis.loop, never, NULL, 100);
    assert_int_equal(h.done, 1);
    stop();
}

/*
 * A single node (no cluster): the source's limit is node-wide, decided at
 * once, whichever shard the steps come through: two shards, a burst of 5
 * between them, and another source untouched.
 */
static void a_single_node_keeps_the_source_limit_node_wide(void **state)
{
    (void)state;
    struct config config = {.signing_rate_per_source = 5, .signing_burst_per_source = 5};
    struct admission admission;
    admission_init(&admission, 0, 1);
    struct cluster_rate *shards[2] = {cluster_rate_create(&config, 0, &admission),
                                      cluster_rate_create(&config, 1, &admission)};
    assert_non_null(shards[0]);
    assert_non_null(shards[1]);
    for (int i = 0; i < 2; i++)
        assert_int_equal(cluster_rate_start(shards[i], h.redis.loop, NULL), 0);
    struct cluster_rate_request request;
    int admitted = 0;
    int64_t now = now_ns();
    for (int i = 0; i < 20; i++) {
        request_init(&request, "198.51.100.20");
        enum cluster_rate_verdict verdict = cluster_rate_admit(shards[i % 2], &request, now);
        assert_true(verdict != CLUSTER_RATE_PENDING);
        admitted += verdict == CLUSTER_RATE_ADMITTED;
    }
    assert_int_equal(admitted, 5);
    assert_true(request.retry_after_ns > 0 && request.retry_after_ns <= 1000000000);
    request_init(&request, "198.51.100.21");
    assert_int_equal(cluster_rate_admit(shards[1], &request, now), CLUSTER_RATE_ADMITTED);
    for (int i = 0; i < 2; i++) {
        cluster_rate_stop(shards[i]);
        cluster_rate_free(shards[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(leases_hold_the_rate),
        cmocka_unit_test(groups_have_their_own_buckets),
        cmocka_unit_test(redis_away_falls_back_to_the_share_and_heals),
        cmocka_unit_test(a_source_asks_redis_at_each_step),
        cmocka_unit_test(a_step_waits_for_the_refill),
        cmocka_unit_test(a_single_node_keeps_the_source_limit_node_wide),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
