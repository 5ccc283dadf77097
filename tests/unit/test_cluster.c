/*
 * test_cluster: a shard's part of the cluster (dataplane/cluster.c) against a
 * real redis-server started here: the claim script's verdicts, per owner;
 * a conflict key refusing; Redis away; claims in flight answered when the
 * shard stops; and the re-seed writing the store's bindings into an empty
 * Redis, with a conflict where another record holds an id, and again when
 * Sentinel names another primary that has the marker but not every binding
 * (what a failover that lost the last writes leaves). And the
 * management API's blocking side (store/redis_admin.c): releases and the
 * conflicts list, through a fixed address and through Sentinel.
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

#include "dataplane/cluster.h"
#include "dataplane/loop.h"
#include "redis_fixture.h"
#include "store/records.h"
#include "store/redis_admin.h"
#include "store/store.h"

#define OWNER_KEY_1 "b80c8fef-a677-5340-85fb-2c162d75df03"
#define OWNER_KEY_2 "c2d0e86f-4f3e-5f0c-9d5e-6f7a8b9c0d1e"
#define DEVICE_A "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
#define DEVICE_B "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
#define RECORD_1 "11111111-1111-5111-8111-111111111111"
#define RECORD_2 "22222222-2222-5222-8222-222222222222"
#define RECORD_3 "33333333-3333-5333-8333-333333333333"

static struct {
    struct redis_fixture redis;
    struct store *store;
    struct cluster *cluster;
} h;

static bool run_until(bool (*condition)(void *arg), void *arg, unsigned timeout_ms)
{
    return loop_wait_until(h.redis.loop, condition, arg, timeout_ms);
}

static bool is_up(void *arg)
{
    (void)arg;
    struct cluster_status status;
    cluster_get_status(h.cluster, &status);
    return status.up;
}

static bool is_down(void *arg)
{
    return !is_up(arg);
}

struct claim_answer {
    struct cluster_claim claim;
    int calls;
};

static void claim_answered(struct cluster_claim *claim)
{
    ((struct claim_answer *)claim->user)->calls++;
}

static bool answered(void *arg)
{
    return ((struct claim_answer *)arg)->calls > 0;
}

/* One claim, waited for; its verdict (holder in answer->claim.holder). */
static enum cluster_claim_result claim(struct claim_answer *answer, const char *owner_key,
                                       const char *device_id, const char *record_id)
{
    memset(answer, 0, sizeof(*answer));
    answer->claim.done = claim_answered;
    answer->claim.user = answer;
    assert_int_equal(cluster_claim(h.cluster, &answer->claim, owner_key, device_id, record_id), 0);
    assert_true(run_until(answered, answer, 2000));
    assert_int_equal(answer->calls, 1);
    return answer->claim.result;
}

/* Node n1's shard 0 on config's Redis (a fixed address or sentinels), waited for until up. */
static void start_with(struct config_cluster config)
{
    char err[256] = "";
    config.key_prefix = "t:";
    config.node = "n1";
    config.command_timeout_ms = 200;
    config.connect_timeout_ms = 500;
    h.cluster = cluster_create(&config, 0, h.store, err, sizeof(err));
    assert_non_null(h.cluster);
    assert_int_equal(cluster_start(h.cluster, h.redis.loop, NULL, err, sizeof(err)), 0);
    assert_true(run_until(is_up, NULL, 3000));
}

static void start(void)
{
    char address[32];
    snprintf(address, sizeof(address), "127.0.0.1:%u", h.redis.server.port);
    start_with((struct config_cluster){.redis = address});
}

static void stop(void)
{
    cluster_stop(h.cluster);
    cluster_free(h.cluster);
    h.cluster = NULL;
}

static int setup(void **state)
{
    (void)state;
    char err[256] = "";
    memset(&h, 0, sizeof(h));
    if (redis_fixture_open(&h.redis) != 0)
        return -1;
    char store_dir[96];
    snprintf(store_dir, sizeof(store_dir), "%s/store", h.redis.folder);
    h.store = store_open(store_dir, 64, 0, err, sizeof(err));
    return h.store != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (h.cluster != NULL)
        stop();
    store_close(h.store);
    redis_fixture_close(&h.redis);
    return 0;
}

static bool key_exists(const char *key)
{
    redisReply *reply = redis_server_command(h.redis.server.port, NULL, "EXISTS %s", key);
    bool exists = reply != NULL && reply->integer == 1;
    freeReplyObject(reply);
    return exists;
}

static void claims_have_verdicts(void **state)
{
    (void)state;
    redis_fixture_flush(&h.redis);
    start();
    struct claim_answer answer;
    assert_int_equal(claim(&answer, OWNER_KEY_1, DEVICE_A, RECORD_1), CLUSTER_CLAIM_GRANTED);
    assert_true(key_exists("t:binding:" OWNER_KEY_1 ":" DEVICE_A));
    assert_true(key_exists("t:identity:" OWNER_KEY_1 ":" RECORD_1));
    /* The same claim again (another node, a retry) is granted. */
    assert_int_equal(claim(&answer, OWNER_KEY_1, DEVICE_A, RECORD_1), CLUSTER_CLAIM_GRANTED);
    assert_int_equal(claim(&answer, OWNER_KEY_1, DEVICE_A, RECORD_2), CLUSTER_CLAIM_ID_TAKEN);
    assert_string_equal(answer.claim.holder, RECORD_1);
    assert_int_equal(claim(&answer, OWNER_KEY_1, DEVICE_B, RECORD_1), CLUSTER_CLAIM_IDENTITY_BOUND);
    assert_string_equal(answer.claim.holder, DEVICE_A);
    /* Bindings are per owner. */
    assert_int_equal(claim(&answer, OWNER_KEY_2, DEVICE_A, RECORD_2), CLUSTER_CLAIM_GRANTED);
    freeReplyObject(redis_server_command(h.redis.server.port, NULL, "SET %s %s",
                                         "t:conflict:" OWNER_KEY_1 ":" DEVICE_B, "x y"));
    assert_int_equal(claim(&answer, OWNER_KEY_1, DEVICE_B, RECORD_3), CLUSTER_CLAIM_CONFLICT);
    stop();
}

static void redis_away_refuses_at_once_and_stop_answers_in_flight(void **state)
{
    (void)state;
    redis_fixture_flush(&h.redis);
    start();
    struct claim_answer answer = {0};
    answer.claim.done = claim_answered;
    answer.claim.user = &answer;
    redis_server_pause(&h.redis.server, true);
    assert_int_equal(cluster_claim(h.cluster, &answer.claim, OWNER_KEY_1, DEVICE_B, RECORD_2), 0);
    stop(); /* the shard stops with the claim in flight: answered, once */
    redis_server_pause(&h.redis.server, false);
    assert_int_equal(answer.calls, 1);
    assert_int_equal(answer.claim.result, CLUSTER_CLAIM_UNAVAILABLE);

    start();
    redis_server_pause(&h.redis.server, true);
    struct claim_answer late;
    assert_int_equal(claim(&late, OWNER_KEY_1, DEVICE_B, RECORD_2), CLUSTER_CLAIM_UNAVAILABLE);
    assert_true(run_until(is_down, NULL, 2000));
    memset(&answer, 0, sizeof(answer));
    answer.claim.done = claim_answered;
    answer.claim.user = &answer;
    assert_int_equal(cluster_claim(h.cluster, &answer.claim, OWNER_KEY_1, DEVICE_B, RECORD_2), -1);
    assert_int_equal(answer.calls, 0);
    redis_server_pause(&h.redis.server, false);
    stop();
}

static void put_binding(const char *owner, const char *device_id, const char *record_id)
{
    char owner_key[RECORDS_OWNER_KEY_LENGTH + 1], device_key[RECORDS_KEY_MAX],
        identity_key[RECORDS_KEY_MAX];
    records_owner_key(owner, owner_key);
    records_device_binding_key(owner_key, device_id, device_key);
    records_identity_binding_key(owner_key, record_id, identity_key);
    char *device_value = records_device_binding_value(owner, record_id);
    char *identity_value = records_identity_binding_value(owner, device_id);
    struct store_put puts[] = {
        {STORE_BINDINGS, device_key, strlen(device_key), device_value, strlen(device_value)},
        {STORE_BINDINGS, identity_key, strlen(identity_key), identity_value,
         strlen(identity_value)},
    };
    assert_int_equal(store_put_sync(h.store, puts, 2), STORE_OK);
    free(device_value);
    free(identity_value);
}

static bool seeded(void *arg)
{
    (void)arg;
    return key_exists("t:seeded:n1");
}

static void reseed_writes_bindings_and_finds_conflicts(void **state)
{
    (void)state;
    redis_fixture_flush(&h.redis);
    put_binding("1", DEVICE_A, RECORD_1);
    put_binding("1", DEVICE_B, RECORD_2);
    /* Redis lost DEVICE_B's binding and meanwhile gave the id to another record. */
    freeReplyObject(redis_server_command(h.redis.server.port, NULL, "SET %s %s",
                                         "t:binding:" OWNER_KEY_1 ":" DEVICE_B, RECORD_3));
    struct cluster_stats before, after;
    cluster_stats_get(&before);
    start();
    assert_true(run_until(seeded, NULL, 3000));
    cluster_stats_get(&after);
    assert_true(key_exists("t:binding:" OWNER_KEY_1 ":" DEVICE_A));
    assert_true(key_exists("t:identity:" OWNER_KEY_1 ":" RECORD_1));
    assert_true(key_exists("t:conflict:" OWNER_KEY_1 ":" DEVICE_B));
    assert_false(key_exists("t:identity:" OWNER_KEY_1 ":" RECORD_2));
    assert_int_equal(after.conflicts - before.conflicts, 1);
    assert_int_equal(after.seeded - before.seeded, 1);
    assert_true(cluster_conflicted(OWNER_KEY_1, DEVICE_B));
    assert_false(cluster_conflicted(OWNER_KEY_1, DEVICE_A));
    /* Both records are refused from then on. */
    struct claim_answer answer;
    assert_int_equal(claim(&answer, OWNER_KEY_1, DEVICE_B, RECORD_2), CLUSTER_CLAIM_CONFLICT);
    assert_int_equal(claim(&answer, OWNER_KEY_1, DEVICE_B, RECORD_3), CLUSTER_CLAIM_CONFLICT);

    /* Redis comes back empty: the periodic check finds the marker gone and seeds again. */
    redis_fixture_flush(&h.redis);
    assert_true(run_until(seeded, NULL, 5000));
    assert_true(key_exists("t:binding:" OWNER_KEY_1 ":" DEVICE_B));
    stop();
}

static bool seeded_in(void *arg)
{
    const struct redis_server *server = arg;
    redisReply *reply = redis_server_command(server->port, NULL, "EXISTS %s",
                                             "t:binding:" OWNER_KEY_1 ":" DEVICE_A);
    bool exists = reply != NULL && reply->integer == 1;
    freeReplyObject(reply);
    return exists;
}

/*
 * A failover that lost the last claims: the new primary holds the node's
 * marker (replicated) but not a binding made just before. The sentinel is
 * pointed at another server that has the marker alone, the old primary
 * stops; the shard follows the sentinel there and re-seeds because the
 * primary changed, although the marker is in place.
 */
static void reseed_after_a_new_primary(void **state)
{
    (void)state;
    redis_fixture_flush(&h.redis);
    put_binding("1", DEVICE_A, RECORD_1);
    char err[256] = "";
    struct redis_server old_primary, new_primary, sentinel;
    assert_int_equal(redis_server_start(&old_primary, h.redis.folder, 0, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(redis_server_start(&new_primary, h.redis.folder, 0, NULL, err, sizeof(err)),
                     0);
    freeReplyObject(redis_server_command(new_primary.port, NULL, "SET t:seeded:n1 1"));
    assert_int_equal(redis_server_start_sentinel(&sentinel, h.redis.folder, old_primary.port, "dps",
                                                 60000, 60000, err, sizeof(err)),
                     0);
    char sentinel_address[32];
    snprintf(sentinel_address, sizeof(sentinel_address), "127.0.0.1:%u", sentinel.port);
    char *sentinels[] = {sentinel_address};
    start_with(
        (struct config_cluster){.sentinels = sentinels, .sentinel_count = 1, .master_name = "dps"});
    assert_true(run_until(seeded_in, &old_primary, 5000));

    freeReplyObject(redis_server_command(sentinel.port, NULL, "SENTINEL REMOVE dps"));
    redisReply *reply = redis_server_command(
        sentinel.port, NULL, "SENTINEL MONITOR dps 127.0.0.1 %u 1", (unsigned)new_primary.port);
    assert_true(reply != NULL && reply->type == REDIS_REPLY_STATUS);
    freeReplyObject(reply);
    redis_server_stop(&old_primary);
    assert_true(run_until(seeded_in, &new_primary, 10000));
    stop();
    redis_server_stop(&sentinel);
    redis_server_stop(&new_primary);
}

static void admin_releases_and_lists_conflicts(void **state)
{
    (void)state;
    redis_fixture_flush(&h.redis);
    char err[256] = "", address[32];
    snprintf(address, sizeof(address), "127.0.0.1:%u", h.redis.server.port);
    struct config_cluster config = {
        .redis = address,
        .key_prefix = "t:",
        .command_timeout_ms = 500,
        .connect_timeout_ms = 500,
    };
    static const char *const setup_commands[][3] = {
        {"t:binding:" OWNER_KEY_1 ":" DEVICE_A, RECORD_1},
        {"t:identity:" OWNER_KEY_1 ":" RECORD_1, DEVICE_A},
        {"t:identity:" OWNER_KEY_1 ":" RECORD_2, DEVICE_A},
        {"t:conflict:" OWNER_KEY_1 ":" DEVICE_A, RECORD_1 " " RECORD_2},
        {"t:conflict:" OWNER_KEY_2 ":" DEVICE_B, RECORD_3 " " RECORD_2},
    };
    for (size_t i = 0; i < sizeof(setup_commands) / sizeof(setup_commands[0]); i++)
        freeReplyObject(redis_server_command(h.redis.server.port, NULL, "SET %s %s",
                                             setup_commands[i][0], setup_commands[i][1]));
    char(*ids)[37] = NULL;
    size_t count = 0;
    assert_int_equal(redis_admin_conflicts(&config, OWNER_KEY_1, &ids, &count, err, sizeof(err)),
                     0);
    assert_int_equal(count, 1);
    assert_string_equal(ids[0], DEVICE_A);
    free(ids);

    bool removed = false;
    assert_int_equal(redis_admin_release(&config, OWNER_KEY_1, "1", DEVICE_A, RECORD_2, &removed,
                                         err, sizeof(err)),
                     0);
    assert_true(removed);
    assert_false(key_exists("t:binding:" OWNER_KEY_1 ":" DEVICE_A));
    assert_false(key_exists("t:identity:" OWNER_KEY_1 ":" RECORD_1));
    assert_false(key_exists("t:identity:" OWNER_KEY_1 ":" RECORD_2));
    assert_false(key_exists("t:conflict:" OWNER_KEY_1 ":" DEVICE_A));
    assert_true(key_exists("t:conflict:" OWNER_KEY_2 ":" DEVICE_B)); /* another owner's */
    assert_int_equal(
        redis_admin_release(&config, OWNER_KEY_1, "1", DEVICE_A, NULL, &removed, err, sizeof(err)),
        0);
    assert_false(removed);

    /* Through Sentinel: the primary it names. */
    struct redis_server sentinel;
    assert_int_equal(redis_server_start_sentinel(&sentinel, h.redis.folder, h.redis.server.port,
                                                 "dps", 5000, 10000, err, sizeof(err)),
                     0);
    char sentinel_address[32];
    snprintf(sentinel_address, sizeof(sentinel_address), "127.0.0.1:%u", sentinel.port);
    char *sentinels[] = {sentinel_address};
    struct config_cluster via_sentinel = config;
    via_sentinel.redis = NULL;
    via_sentinel.sentinels = sentinels;
    via_sentinel.sentinel_count = 1;
    via_sentinel.master_name = "dps";
    assert_int_equal(
        redis_admin_conflicts(&via_sentinel, OWNER_KEY_2, &ids, &count, err, sizeof(err)), 0);
    assert_int_equal(count, 1);
    assert_string_equal(ids[0], DEVICE_B);
    free(ids);
    redis_server_stop(&sentinel);

    /* Nobody there: an error that says so, promptly. */
    struct config_cluster nowhere = config;
    char closed_port[32];
    snprintf(closed_port, sizeof(closed_port), "127.0.0.1:%u", redis_server_free_port());
    nowhere.redis = closed_port;
    assert_int_equal(
        redis_admin_release(&nowhere, OWNER_KEY_1, "1", DEVICE_A, NULL, &removed, err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "unreachable"));
}

/*
 * The heartbeat's kept connection (redis_admin_session): one connection for
 * many calls; a connection the server closed is replaced within the same
 * call; with the server gone calls fail, then back off (no network while
 * waiting), and the session connects again once the server is back.
 */
static void admin_session_keeps_one_connection_and_backs_off(void **state)
{
    (void)state;
    char err[256] = "", address[32];
    struct redis_server server;
    assert_int_equal(redis_server_start(&server, h.redis.folder, 0, NULL, err, sizeof(err)), 0);
    snprintf(address, sizeof(address), "127.0.0.1:%u", server.port);
    struct config_cluster config = {
        .redis = address,
        .key_prefix = "t:",
        .command_timeout_ms = 500,
        .connect_timeout_ms = 500,
    };
    struct redis_admin_session *session = redis_admin_session_new(&config);
    assert_non_null(session);
    for (int i = 0; i < 5; i++)
        assert_int_equal(redis_admin_heartbeat(session, "n1", "{}", 3000, err, sizeof(err)), 0);
    assert_int_equal(redis_admin_session_connects(session), 1);
    redisReply *reply = redis_server_command(server.port, NULL, "SISMEMBER t:nodes n1");
    assert_true(reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1);
    freeReplyObject(reply);

    /* The server drops the idle connection (its timeout, a restart): the beat still succeeds. */
    freeReplyObject(redis_server_command(server.port, NULL, "CLIENT KILL TYPE normal SKIPME yes"));
    assert_int_equal(redis_admin_heartbeat(session, "n1", "{}", 3000, err, sizeof(err)), 0);
    assert_int_equal(redis_admin_session_connects(session), 2);

    redis_server_stop(&server);
    assert_int_equal(redis_admin_heartbeat(session, "n1", "{}", 3000, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unreachable"));
    assert_int_equal(redis_admin_heartbeat(session, "n1", "{}", 3000, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "waiting before connecting again"));

    assert_int_equal(
        redis_server_start(&server, h.redis.folder, server.port, NULL, err, sizeof(err)), 0);
    int status = -1;
    for (int i = 0; i < 100 && status != 0; i++) {
        status = redis_admin_heartbeat(session, "n1", "{}", 3000, err, sizeof(err));
        if (status != 0)
            nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
    }
    assert_int_equal(status, 0);
    assert_int_equal(redis_admin_session_connects(session), 3);
    assert_int_equal(redis_admin_leave(session, "n1", err, sizeof(err)), 0);
    reply = redis_server_command(server.port, NULL, "EXISTS t:node:n1");
    assert_true(reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0);
    freeReplyObject(reply);
    redis_admin_session_free(session);
    redis_server_stop(&server);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(claims_have_verdicts),
        cmocka_unit_test(redis_away_refuses_at_once_and_stop_answers_in_flight),
        cmocka_unit_test(reseed_writes_bindings_and_finds_conflicts),
        cmocka_unit_test(reseed_after_a_new_primary),
        cmocka_unit_test(admin_releases_and_lists_conflicts),
        cmocka_unit_test(admin_session_keeps_one_connection_and_backs_off),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
