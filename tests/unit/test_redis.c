/*
 * test_redis: the Redis client (store/redis.c) on our own loop
 * (dataplane/redis_loop.c), against real redis-server and redis-sentinel
 * processes started on loopback for each case (tests/redis_server.c) and
 * killed at its end, whatever happens. Every case that drives a loop runs on
 * both backends. The loop runs on the test thread, for a bounded time, until
 * the condition a case waits for holds.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dataplane/loop.h"
#include "loop_wait.h"
#include "dataplane/redis_loop.h"
#include "store/redis.h"
#include "perf/redis_server.h"

#define MAX_STATES 64
#define MAX_MESSAGES 16

struct harness {
    enum loop_backend backend;
    char folder[64];
    struct loop *loop;
    struct redis_events events;
};

struct watcher {
    enum redis_state states[MAX_STATES];
    int count;
    char reason[256];
};

/* One command's answer: calls counts how often the callback ran (it must be once). */
struct answer {
    int calls;
    enum redis_status status;
    long long integer;
    char text[128];
    struct timespec at;
};

struct inbox {
    int subscribed;
    int count;
    char messages[MAX_MESSAGES][64];
};

static struct harness harness;

static void harness_open(enum loop_backend backend)
{
    memset(&harness, 0, sizeof(harness));
    harness.backend = backend;
    assert_int_equal(redis_server_folder(harness.folder, sizeof(harness.folder)), 0);
    char err[256] = "";
    harness.loop = loop_create(backend, &loop_no_connections, NULL, err, sizeof(err));
    assert_non_null(harness.loop);
    assert_int_equal(loop_backend_of(harness.loop), backend);
    redis_loop_events(harness.loop, &harness.events);
}

static void harness_close(void)
{
    loop_destroy(harness.loop);
    harness.loop = NULL;
    redis_server_remove_folder(harness.folder);
}

/* Kills what a failed case left running and frees its loop (cmocka's teardown). */
static int teardown(void **state)
{
    (void)state;
    redis_server_stop_all();
    if (harness.loop != NULL)
        harness_close();
    return 0;
}

static void start_server(struct redis_server *server, uint16_t port, const char *const *extra)
{
    char err[256] = "";
    if (redis_server_start(server, harness.folder, port, extra, err, sizeof(err)) != 0)
        fail_msg("%s", err);
}

static void on_state(void *user, enum redis_state state, const char *reason)
{
    struct watcher *watcher = user;
    if (watcher->count < MAX_STATES)
        watcher->states[watcher->count++] = state;
    snprintf(watcher->reason, sizeof(watcher->reason), "%s", reason);
}

static void on_answer(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct answer *answer = user;
    answer->calls++;
    answer->status = status;
    clock_gettime(CLOCK_MONOTONIC, &answer->at);
    if (reply == NULL)
        return;
    if (redis_reply_kind(reply) == REDIS_KIND_INTEGER)
        answer->integer = redis_reply_integer(reply);
    const char *text = redis_reply_string(reply, NULL);
    if (text != NULL)
        snprintf(answer->text, sizeof(answer->text), "%s", text);
}

static void on_message(void *user, const char *message, size_t length)
{
    struct inbox *inbox = user;
    if (message == NULL) {
        inbox->subscribed++;
        return;
    }
    if (inbox->count < MAX_MESSAGES)
        snprintf(inbox->messages[inbox->count++], sizeof(inbox->messages[0]), "%.*s", (int)length,
                 message);
}

static struct redis_config base_config(uint16_t port)
{
    return (struct redis_config){
        .address = {.host = "127.0.0.1", .port = port},
        .command_timeout_ms = 500,
        .connect_timeout_ms = 500,
        .reconnect_min_ms = 20,
        .reconnect_max_ms = 200,
    };
}

static struct redis_client *client_create(const struct redis_config *config,
                                          struct watcher *watcher)
{
    char err[256] = "";
    struct redis_client *client =
        redis_client_create(config, &harness.events, on_state, watcher, err, sizeof(err));
    if (client == NULL)
        fail_msg("%s", err);
    return client;
}

static bool run_until(bool (*condition)(void *arg), void *arg, unsigned timeout_ms)
{
    return loop_wait_until(harness.loop, condition, arg, timeout_ms);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void run_for(unsigned ms)
{
    run_until(never, NULL, ms);
}

static bool is_ready(void *arg)
{
    return redis_client_state(arg) == REDIS_STATE_READY;
}

static bool is_down(void *arg)
{
    return redis_client_state(arg) == REDIS_STATE_DOWN;
}

struct answers {
    struct answer *answers;
    int count;
};

static bool all_answered(void *arg)
{
    struct answers *set = arg;
    for (int i = 0; i < set->count; i++)
        if (set->answers[i].calls == 0)
            return false;
    return true;
}

static void wait_answers(struct answer *answers, int count, unsigned timeout_ms)
{
    struct answers set = {.answers = answers, .count = count};
    assert_true(run_until(all_answered, &set, timeout_ms));
}

static void wait_ready(struct redis_client *client, unsigned timeout_ms)
{
    if (!run_until(is_ready, client, timeout_ms))
        fail_msg("not ready after %u ms: %s", timeout_ms, redis_client_error(client));
}

/* A blocking admin command on a connection of its own; its reply, freed by admin_done. */
static redisReply *admin_command(uint16_t port, const char *password, redisContext **context,
                                 const char *format, va_list arguments)
{
    *context = redis_server_admin(port, password);
    assert_non_null(*context);
    redisReply *reply = redisvCommand(*context, format, arguments);
    assert_non_null(reply);
    return reply;
}

static void admin_done(redisContext *context, redisReply *reply)
{
    freeReplyObject(reply);
    redisFree(context);
}

/* An admin command whose reply is a string (or status); returns it in out. */
static void admin_text(uint16_t port, const char *password, char *out, size_t size,
                       const char *format, ...)
{
    redisContext *context;
    va_list arguments;
    va_start(arguments, format);
    redisReply *reply = admin_command(port, password, &context, format, arguments);
    va_end(arguments);
    snprintf(out, size, "%s", reply->str != NULL ? reply->str : "");
    admin_done(context, reply);
}

static long long admin_integer(uint16_t port, const char *password, const char *format, ...)
{
    redisContext *context;
    va_list arguments;
    va_start(arguments, format);
    redisReply *reply = admin_command(port, password, &context, format, arguments);
    va_end(arguments);
    long long value = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0)
        value = reply->element[0]->integer;
    admin_done(context, reply);
    return value;
}

/* harness_open, a server of its own, and a client configuration for it. */
static struct redis_config harness_with_server(enum loop_backend backend,
                                               struct redis_server *server)
{
    harness_open(backend);
    start_server(server, 0, NULL);
    return base_config(server->port);
}

/* The end of a test with one client of one server. */
static void harness_close_with(struct redis_client *client, struct redis_server *server)
{
    redis_client_destroy(client);
    redis_server_stop(server);
    harness_close();
}

/* Calls script with keys and args and waits for the answer (2 s at most). */
static void call_script(struct redis_client *client, struct redis_script *script,
                        struct answer *answer, size_t key_count, const char *const *keys,
                        size_t arg_count, const char *const *args)
{
    assert_int_equal(redis_script_call(client, script, on_answer, answer, key_count, keys, NULL,
                                       arg_count, args, NULL),
                     REDIS_STATUS_OK);
    wait_answers(answer, 1, 2000);
}

static long elapsed_ms(const struct timespec *from, const struct timespec *to)
{
    return (to->tv_sec - from->tv_sec) * 1000 + (to->tv_nsec - from->tv_nsec) / 1000000;
}

/* Replies come back in order, one callback each; 200 INCRs leave in a pipeline. */
static void commands_and_pipelining(enum loop_backend backend)
{
    struct redis_server server;
    struct redis_config config = harness_with_server(backend, &server);
    config.key_prefix = "t:";
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    assert_int_equal(redis_client_state(client), REDIS_STATE_CONNECTING);
    wait_ready(client, 3000);
    assert_int_equal(watcher.count, 1);
    assert_int_equal(watcher.states[0], REDIS_STATE_READY);

    struct answer set = {0}, get = {0};
    assert_int_equal(redis_command(client, on_answer, &set, "SET %s %b", "plain", "v\0x", 3),
                     REDIS_STATUS_OK);
    assert_int_equal(redis_command(client, on_answer, &get, "GET plain"), REDIS_STATUS_OK);
    wait_answers(&get, 1, 2000);
    assert_int_equal(set.calls, 1);
    assert_int_equal(set.status, REDIS_STATUS_OK);
    assert_string_equal(set.text, "OK");
    assert_int_equal(get.status, REDIS_STATUS_OK);
    assert_string_equal(get.text, "v");

    enum { DEPTH = 200 };
    static struct answer increments[DEPTH];
    memset(increments, 0, sizeof(increments));
    for (int i = 0; i < DEPTH; i++)
        assert_int_equal(redis_command(client, on_answer, &increments[i], "INCR counter"),
                         REDIS_STATUS_OK);
    wait_answers(increments, DEPTH, 3000);
    for (int i = 0; i < DEPTH; i++) {
        assert_int_equal(increments[i].calls, 1);
        assert_int_equal(increments[i].integer, i + 1);
    }

    /* An error reply is ERROR, with the server's text. */
    struct answer wrong = {0};
    assert_int_equal(redis_command(client, on_answer, &wrong, "INCR plain"), REDIS_STATUS_OK);
    wait_answers(&wrong, 1, 2000);
    assert_int_equal(wrong.status, REDIS_STATUS_ERROR);
    assert_non_null(strstr(wrong.text, "not an integer"));

    /* argv commands are sent as given; redis_key() applies the prefix. */
    char key[32];
    assert_int_equal(redis_key(client, "named", key, sizeof(key)), strlen("t:named"));
    assert_string_equal(key, "t:named");
    char small[4];
    assert_int_equal(redis_key(client, "named", small, sizeof(small)), 0);
    const char *argv[] = {"SET", key, "with space"};
    struct answer argv_set = {0};
    assert_int_equal(redis_command_argv(client, on_answer, &argv_set, 3, argv, NULL),
                     REDIS_STATUS_OK);
    wait_answers(&argv_set, 1, 2000);
    char value[64];
    admin_text(server.port, NULL, value, sizeof(value), "GET t:named");
    assert_string_equal(value, "with space");

    struct redis_stats stats;
    redis_client_stats(client, &stats);
    assert_int_equal(stats.commands, DEPTH + 4);
    assert_int_equal(stats.replies, DEPTH + 4);
    assert_int_equal(stats.in_flight, 0);
    assert_int_equal(stats.connects, 1);
    harness_close_with(client, &server);
}
LOOP_BOTH_BACKENDS(commands_and_pipelining)

/* A unix socket and SELECT: the write lands in database 3. */
static void unix_socket_and_database(enum loop_backend backend)
{
    harness_open(backend);
    struct redis_server server;
    start_server(&server, 0, NULL);
    struct redis_config config = base_config(0);
    config.unix_path = server.unix_path;
    config.database = 3;
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    wait_ready(client, 3000);
    assert_string_equal(redis_client_primary(client), server.unix_path);
    struct answer set = {0};
    assert_int_equal(redis_command(client, on_answer, &set, "SET where db3"), REDIS_STATUS_OK);
    wait_answers(&set, 1, 2000);
    assert_int_equal(set.status, REDIS_STATUS_OK);
    char value[32];
    admin_text(server.port, NULL, value, sizeof(value), "GET where");
    assert_string_equal(value, "");
    redisContext *admin = redis_server_admin(server.port, NULL);
    assert_non_null(admin);
    freeReplyObject(redisCommand(admin, "SELECT 3"));
    redisReply *reply = redisCommand(admin, "GET where");
    assert_non_null(reply);
    assert_string_equal(reply->str, "db3");
    freeReplyObject(reply);
    redisFree(admin);
    harness_close_with(client, &server);
}
LOOP_BOTH_BACKENDS(unix_socket_and_database)

/*
 * A paused server (SIGSTOP): every command in flight is answered UNAVAILABLE
 * once its deadline passes, not before and not much later; new commands are
 * refused at once while DOWN; the client is READY again after SIGCONT.
 */
static void paused_server_times_out(enum loop_backend backend)
{
    struct redis_server server;
    struct redis_config config = harness_with_server(backend, &server);
    config.command_timeout_ms = 150;
    config.connect_timeout_ms = 200;
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    wait_ready(client, 3000);

    redis_server_pause(&server, true);
    enum { COUNT = 5 };
    struct answer answers[COUNT] = {0};
    struct timespec sent;
    clock_gettime(CLOCK_MONOTONIC, &sent);
    for (int i = 0; i < COUNT; i++)
        assert_int_equal(redis_command(client, on_answer, &answers[i], "GET anything"),
                         REDIS_STATUS_OK);
    wait_answers(answers, COUNT, 2000);
    for (int i = 0; i < COUNT; i++) {
        assert_int_equal(answers[i].calls, 1);
        assert_int_equal(answers[i].status, REDIS_STATUS_UNAVAILABLE);
        long waited = elapsed_ms(&sent, &answers[i].at);
        if (waited < 145 || waited > 150 + 150)
            fail_msg("answered after %ld ms, for a 150 ms deadline", waited);
    }
    assert_int_equal(redis_client_state(client), REDIS_STATE_DOWN);
    assert_non_null(strstr(redis_client_error(client), "no answer within 150 ms"));
    struct answer refused = {0};
    assert_int_equal(redis_command(client, on_answer, &refused, "GET anything"),
                     REDIS_STATUS_UNAVAILABLE);
    run_for(300); /* reconnect attempts meet the paused server and time out */
    assert_int_equal(redis_client_state(client), REDIS_STATE_DOWN);
    assert_int_equal(refused.calls, 0);

    redis_server_pause(&server, false);
    wait_ready(client, 3000);
    struct answer after = {0};
    assert_int_equal(redis_command(client, on_answer, &after, "PING"), REDIS_STATUS_OK);
    wait_answers(&after, 1, 2000);
    assert_int_equal(after.status, REDIS_STATUS_OK);
    struct redis_stats stats;
    redis_client_stats(client, &stats);
    assert_int_equal(stats.timeouts, 1);
    assert_true(stats.unavailable >= COUNT + 1);
    harness_close_with(client, &server);
}
LOOP_BOTH_BACKENDS(paused_server_times_out)

static bool late_reply_read(void *arg)
{
    struct redis_stats stats;
    redis_client_stats(arg, &stats);
    return stats.late_replies > 0;
}

/*
 * The deadline rule (redis_deadline_decide), on its own: one late reply is
 * tolerated, a second late command or that reply one more timeout late
 * drops the connection.
 */
static void deadline_rule_tolerates_one_late_reply(void **state)
{
    (void)state;
    const uint64_t ms = 1000000u;
    uint64_t next = 0;
    uint64_t live = 1000 * ms, late = 900 * ms;
    /* Nothing waits: nothing to watch. */
    assert_int_equal(redis_deadline_decide(5000 * ms, 250, NULL, NULL, &next), REDIS_DEADLINE_WAIT);
    assert_true(next == UINT64_MAX);
    /* Before its deadline a command waits; the check is due at the deadline. */
    assert_int_equal(redis_deadline_decide(999 * ms, 250, NULL, &live, &next), REDIS_DEADLINE_WAIT);
    assert_true(next == live);
    /* The first command past its deadline is answered, the connection kept. */
    assert_int_equal(redis_deadline_decide(1000 * ms, 250, NULL, &live, &next),
                     REDIS_DEADLINE_EXPIRE);
    /* With one late reply awaited, the next check is the sooner of its grace and the next deadline.
     */
    assert_int_equal(redis_deadline_decide(1000 * ms, 250, &late, &live, &next),
                     REDIS_DEADLINE_DROP);
    assert_int_equal(redis_deadline_decide(999 * ms, 250, &late, &live, &next),
                     REDIS_DEADLINE_WAIT);
    assert_true(next == live);
    uint64_t far = 2000 * ms;
    assert_int_equal(redis_deadline_decide(1100 * ms, 250, &late, &far, &next),
                     REDIS_DEADLINE_WAIT);
    assert_true(next == late + 250 * ms);
    /* The late reply itself one more timeout late: stalled. */
    assert_int_equal(redis_deadline_decide(late + 250 * ms, 250, &late, NULL, &next),
                     REDIS_DEADLINE_DROP);
    assert_int_equal(redis_deadline_decide(late + 249 * ms, 250, &late, NULL, &next),
                     REDIS_DEADLINE_WAIT);
    assert_true(next == late + 250 * ms);
}

/*
 * One late reply on a live connection (the server paused for longer than
 * the deadline, then going on): the command is answered UNAVAILABLE at its
 * deadline, the client never goes DOWN, the late reply is read and dropped,
 * and the same connection carries the next command.
 */
static void one_late_reply_keeps_the_connection(enum loop_backend backend)
{
    harness_open(backend);
    struct redis_server server;
    start_server(&server, 0, NULL);
    struct redis_config config = base_config(server.port);
    /* Long enough that the test resumes the server well within the grace of one more timeout. */
    config.command_timeout_ms = 1500;
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    wait_ready(client, 3000);
    int states_before = watcher.count;

    redis_server_pause(&server, true);
    struct answer late = {0};
    assert_int_equal(redis_command(client, on_answer, &late, "INCR late"), REDIS_STATUS_OK);
    wait_answers(&late, 1, 5000);
    redis_server_pause(&server, false);
    assert_int_equal(late.calls, 1);
    assert_int_equal(late.status, REDIS_STATUS_UNAVAILABLE);
    assert_true(run_until(late_reply_read, client, 5000));
    assert_int_equal(late.calls, 1); /* the late reply is not a second answer */
    assert_int_equal(redis_client_state(client), REDIS_STATE_READY);
    assert_int_equal(watcher.count, states_before); /* never DOWN */

    struct answer after = {0};
    assert_int_equal(redis_command(client, on_answer, &after, "INCR late"), REDIS_STATUS_OK);
    wait_answers(&after, 1, 5000);
    assert_int_equal(after.status, REDIS_STATUS_OK);
    assert_int_equal(after.integer, 2); /* the late INCR was done, once */
    struct redis_stats stats;
    redis_client_stats(client, &stats);
    assert_int_equal(stats.timeouts, 0);
    assert_int_equal(stats.late, 1);
    assert_int_equal(stats.late_replies, 1);
    assert_int_equal(stats.connects, 1);
    redis_client_destroy(client);
    redis_server_stop(&server);
    harness_close();
}
LOOP_BOTH_BACKENDS(one_late_reply_keeps_the_connection)

static bool states_end_with_ready_after_down(void *arg)
{
    struct watcher *watcher = arg;
    return watcher->count >= 2 && watcher->states[watcher->count - 1] == REDIS_STATE_READY &&
           watcher->states[watcher->count - 2] == REDIS_STATE_DOWN;
}

/*
 * No server at first: DOWN with the reason. Then a server: READY. Killed with
 * a command in flight: that command is answered UNAVAILABLE, the client goes
 * DOWN, and READY again once the server is back on the same port.
 */
static void reconnects_after_restart(enum loop_backend backend)
{
    harness_open(backend);
    uint16_t port = redis_server_free_port();
    struct redis_config config = base_config(port);
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    assert_true(run_until(is_down, client, 2000));
    assert_non_null(strstr(watcher.reason, "refused"));
    struct answer early = {0};
    assert_int_equal(redis_command(client, on_answer, &early, "PING"), REDIS_STATUS_UNAVAILABLE);

    struct redis_server server;
    start_server(&server, port, NULL);
    wait_ready(client, 3000);
    struct answer in_flight = {0};
    assert_int_equal(redis_command(client, on_answer, &in_flight, "PING"), REDIS_STATUS_OK);
    redis_server_stop(&server);
    wait_answers(&in_flight, 1, 2000);
    assert_int_equal(in_flight.status, REDIS_STATUS_UNAVAILABLE);
    assert_true(run_until(is_down, client, 2000));

    run_for(100);
    start_server(&server, port, NULL);
    if (!run_until(states_end_with_ready_after_down, &watcher, 3000))
        fail_msg("no READY after DOWN: %s", redis_client_error(client));
    /* CONNECTING -> DOWN -> READY -> DOWN -> READY, each change reported once. */
    assert_int_equal(watcher.count, 4);
    assert_int_equal(watcher.states[0], REDIS_STATE_DOWN);
    assert_int_equal(watcher.states[1], REDIS_STATE_READY);
    assert_int_equal(watcher.states[2], REDIS_STATE_DOWN);
    assert_int_equal(watcher.states[3], REDIS_STATE_READY);
    struct answer after = {0};
    assert_int_equal(redis_command(client, on_answer, &after, "PING"), REDIS_STATUS_OK);
    wait_answers(&after, 1, 2000);
    assert_string_equal(after.text, "PONG");
    struct redis_stats stats;
    redis_client_stats(client, &stats);
    assert_int_equal(stats.connects, 2);
    harness_close_with(client, &server);
}
LOOP_BOTH_BACKENDS(reconnects_after_restart)

struct chain {
    struct redis_client *client;
    int accepted;
    int answered;
    int unavailable;
    int refused;
};

/* Answers submit the next command at once, including from inside hiredis's teardown. */
static void chain_answer(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct chain *chain = user;
    chain->answered++;
    if (status == REDIS_STATUS_UNAVAILABLE)
        chain->unavailable++;
    if (redis_command(chain->client, chain_answer, chain, "INCR chained") == REDIS_STATUS_OK)
        chain->accepted++;
    else
        chain->refused++;
}

static bool chain_settled(void *arg)
{
    struct chain *chain = arg;
    return chain->accepted == chain->answered &&
           redis_client_state(chain->client) == REDIS_STATE_DOWN;
}

/*
 * 32 commands kept in flight, each answer sending the next, when the server
 * is killed: every accepted command is answered exactly once, and those sent
 * from inside the failing answers are refused, not lost.
 */
static void killed_server_answers_each_command_once(enum loop_backend backend)
{
    struct redis_server server;
    struct redis_config config = harness_with_server(backend, &server);
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    wait_ready(client, 3000);
    struct chain chain = {.client = client};
    for (int i = 0; i < 32; i++) {
        assert_int_equal(redis_command(client, chain_answer, &chain, "INCR chained"),
                         REDIS_STATUS_OK);
        chain.accepted++;
    }
    run_for(100);
    assert_true(chain.answered > 32);
    redis_server_stop(&server);
    assert_true(run_until(chain_settled, &chain, 2000));
    assert_true(chain.unavailable >= 1);
    assert_true(chain.refused >= 1);
    struct redis_stats stats;
    redis_client_stats(client, &stats);
    assert_int_equal(stats.in_flight, 0);
    redis_client_destroy(client);
    assert_int_equal(chain.accepted, chain.answered);
    harness_close();
}
LOOP_BOTH_BACKENDS(killed_server_answers_each_command_once)

static const char add_script[] = "return redis.call('INCRBY', KEYS[1], ARGV[1])";

/*
 * Scripts load with the connection and run by SHA-1 with prefixed keys; after
 * SCRIPT FLUSH the NOSCRIPT answer makes the client load and retry, once.
 */
static void evalsha_reloads_on_noscript(enum loop_backend backend)
{
    struct redis_server server;
    struct redis_config config = harness_with_server(backend, &server);
    config.key_prefix = "s:";
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    struct redis_script *add = redis_script_register(client, add_script);
    assert_non_null(add);
    assert_ptr_equal(redis_script_register(client, add_script), add);
    char sha[48];
    admin_text(server.port, NULL, sha, sizeof(sha), "SCRIPT LOAD %s", add_script);
    assert_string_equal(redis_script_sha(add), sha);
    admin_text(server.port, NULL, sha, sizeof(sha), "SCRIPT FLUSH");
    wait_ready(client, 3000);
    assert_int_equal(admin_integer(server.port, NULL, "SCRIPT EXISTS %s", redis_script_sha(add)),
                     1); /* loaded by the handshake */

    const char *keys[] = {"counter"};
    const char *args[] = {"5"};
    struct answer first = {0};
    call_script(client, add, &first, 1, keys, 1, args);
    assert_int_equal(first.status, REDIS_STATUS_OK);
    assert_int_equal(first.integer, 5);

    admin_text(server.port, NULL, sha, sizeof(sha), "SCRIPT FLUSH");
    struct answer second = {0};
    call_script(client, add, &second, 1, keys, 1, args);
    assert_int_equal(second.calls, 1);
    assert_int_equal(second.status, REDIS_STATUS_OK);
    assert_int_equal(second.integer, 10);
    char value[32];
    admin_text(server.port, NULL, value, sizeof(value), "GET s:counter");
    assert_string_equal(value, "10");

    /* Registered while READY: loaded at once, so no NOSCRIPT. */
    struct redis_script *fails = redis_script_register(client, "return redis.call('NOPE')");
    assert_non_null(fails);
    struct answer failed = {0};
    call_script(client, fails, &failed, 0, NULL, 0, NULL);
    assert_int_equal(failed.status, REDIS_STATUS_ERROR);
    assert_non_null(strstr(failed.text, "Unknown Redis command"));
    struct redis_stats stats;
    redis_client_stats(client, &stats);
    assert_int_equal(stats.noscript_reloads, 1);
    harness_close_with(client, &server);
}
LOOP_BOTH_BACKENDS(evalsha_reloads_on_noscript)

/*
 * AUTH with an ACL user, with a wrong password (DOWN, saying WRONGPASS, and
 * staying DOWN), and with the password alone; three clients on one loop.
 */
static void auth_with_acl_user_and_wrong_password(enum loop_backend backend)
{
    harness_open(backend);
    struct redis_server server;
    start_server(&server, 0, NULL);
    char reply[64];
    admin_text(server.port, NULL, reply, sizeof(reply), "ACL SETUSER dps on >secret ~* &* +@all");
    assert_string_equal(reply, "OK");
    admin_text(server.port, NULL, reply, sizeof(reply), "CONFIG SET requirepass shared");
    assert_string_equal(reply, "OK");

    struct redis_config user = base_config(server.port);
    user.username = "dps";
    user.password = "secret";
    struct redis_config wrong = user;
    wrong.password = "not-the-secret";
    struct redis_config shared = base_config(server.port);
    shared.password = "shared";
    struct watcher user_watcher = {0}, wrong_watcher = {0}, shared_watcher = {0};
    struct redis_client *user_client = client_create(&user, &user_watcher);
    struct redis_client *wrong_client = client_create(&wrong, &wrong_watcher);
    struct redis_client *shared_client = client_create(&shared, &shared_watcher);
    wait_ready(user_client, 3000);
    wait_ready(shared_client, 3000);
    assert_true(run_until(is_down, wrong_client, 3000));
    assert_non_null(strstr(wrong_watcher.reason, "AUTH refused: WRONGPASS"));
    assert_non_null(strstr(redis_client_error(wrong_client), "WRONGPASS"));
    struct answer refused = {0};
    assert_int_equal(redis_command(wrong_client, on_answer, &refused, "PING"),
                     REDIS_STATUS_UNAVAILABLE);

    struct answer who = {0}, shared_who = {0};
    assert_int_equal(redis_command(user_client, on_answer, &who, "ACL WHOAMI"), REDIS_STATUS_OK);
    assert_int_equal(redis_command(shared_client, on_answer, &shared_who, "ACL WHOAMI"),
                     REDIS_STATUS_OK);
    wait_answers(&who, 1, 2000);
    wait_answers(&shared_who, 1, 2000);
    assert_string_equal(who.text, "dps");
    assert_string_equal(shared_who.text, "default");

    run_for(300); /* retries go on, and keep failing */
    assert_int_equal(redis_client_state(wrong_client), REDIS_STATE_DOWN);
    assert_int_equal(wrong_watcher.count, 1);
    assert_int_equal(refused.calls, 0);
    redis_client_destroy(user_client);
    redis_client_destroy(wrong_client);
    redis_client_destroy(shared_client);
    redis_server_stop(&server);
    harness_close();
}
LOOP_BOTH_BACKENDS(auth_with_acl_user_and_wrong_password)

static bool subscribed_twice(void *arg)
{
    return ((struct inbox *)arg)->subscribed >= 2;
}

static bool subscribed_once(void *arg)
{
    return ((struct inbox *)arg)->subscribed >= 1;
}

struct inbox_wait {
    struct inbox *inbox;
    int count;
};

static bool inbox_has(void *arg)
{
    struct inbox_wait *wait = arg;
    return wait->inbox->count >= wait->count;
}

static void wait_messages(struct inbox *inbox, int count)
{
    struct inbox_wait wait = {.inbox = inbox, .count = count};
    assert_true(run_until(inbox_has, &wait, 2000));
}

/* Messages arrive; after the server restarts the subscription is renewed and says so. */
static void pubsub_resubscribes_after_reconnect(enum loop_backend backend)
{
    struct redis_server server;
    struct redis_config config = harness_with_server(backend, &server);
    config.key_prefix = "p:";
    config.username = "default";
    config.password = "pw";
    char reply[64];
    admin_text(server.port, NULL, reply, sizeof(reply), "CONFIG SET requirepass pw");
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    struct inbox events = {0}, more = {0};
    assert_int_equal(redis_subscribe(client, "events", on_message, &events), 0);
    assert_int_equal(redis_subscribe(client, "events", on_message, &events), -EEXIST);
    wait_ready(client, 3000);
    assert_true(run_until(subscribed_once, &events, 2000));

    assert_int_equal(admin_integer(server.port, "pw", "PUBLISH p:events hello"), 1);
    wait_messages(&events, 1);
    assert_string_equal(events.messages[0], "hello");
    struct answer published = {0};
    assert_int_equal(redis_publish(client, "events", "world", 5, on_answer, &published),
                     REDIS_STATUS_OK);
    wait_messages(&events, 2);
    assert_string_equal(events.messages[1], "world");
    assert_int_equal(published.integer, 1);

    assert_int_equal(redis_subscribe(client, "more", on_message, &more), 0);
    assert_true(run_until(subscribed_once, &more, 2000));

    redis_server_stop(&server);
    assert_true(run_until(is_down, client, 2000));
    const char *extra[] = {"--requirepass", "pw", NULL};
    start_server(&server, server.port, extra);
    wait_ready(client, 3000);
    assert_true(run_until(subscribed_twice, &events, 2000));
    assert_true(run_until(subscribed_twice, &more, 2000));
    assert_int_equal(admin_integer(server.port, "pw", "PUBLISH p:events again"), 1);
    assert_int_equal(admin_integer(server.port, "pw", "PUBLISH p:more other"), 1);
    wait_messages(&events, 3);
    wait_messages(&more, 1);
    assert_string_equal(events.messages[2], "again");
    assert_string_equal(more.messages[0], "other");
    harness_close_with(client, &server);
}
LOOP_BOTH_BACKENDS(pubsub_resubscribes_after_reconnect)

/* Never more than max_in_flight commands wait; the next is refused BUSY, not queued. */
static void in_flight_cap_refuses_busy(enum loop_backend backend)
{
    struct redis_server server;
    struct redis_config config = harness_with_server(backend, &server);
    config.max_in_flight = 8;
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    wait_ready(client, 3000);
    struct answer answers[8] = {0};
    struct answer refused = {0};
    for (int i = 0; i < 8; i++)
        assert_int_equal(redis_command(client, on_answer, &answers[i], "PING"), REDIS_STATUS_OK);
    assert_int_equal(redis_command(client, on_answer, &refused, "PING"), REDIS_STATUS_BUSY);
    struct redis_stats stats;
    redis_client_stats(client, &stats);
    assert_int_equal(stats.in_flight, 8);
    assert_int_equal(stats.busy, 1);
    wait_answers(answers, 8, 2000);
    assert_int_equal(refused.calls, 0);
    struct answer later = {0};
    assert_int_equal(redis_command(client, on_answer, &later, "PING"), REDIS_STATUS_OK);
    wait_answers(&later, 1, 2000);
    assert_int_equal(later.status, REDIS_STATUS_OK);
    harness_close_with(client, &server);
}
LOOP_BOTH_BACKENDS(in_flight_cap_refuses_busy)

/* Commands still waiting when the client is destroyed are answered UNAVAILABLE, once. */
static void destroy_answers_waiting_commands(enum loop_backend backend)
{
    harness_open(backend);
    struct redis_server server;
    start_server(&server, 0, NULL);
    struct watcher watcher = {0};
    struct redis_config config = base_config(server.port);
    struct redis_client *client = client_create(&config, &watcher);
    wait_ready(client, 3000);
    redis_server_pause(&server, true);
    struct answer answers[3] = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(redis_command(client, on_answer, &answers[i], "PING"), REDIS_STATUS_OK);
    run_for(20);
    redis_client_destroy(client);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(answers[i].calls, 1);
        assert_int_equal(answers[i].status, REDIS_STATUS_UNAVAILABLE);
    }
    assert_int_equal(watcher.count, 1); /* READY; no state change reported by destroy */
    redis_server_pause(&server, false);
    redis_server_stop(&server);
    harness_close();
}
LOOP_BOTH_BACKENDS(destroy_answers_waiting_commands)

/*
 * Counters the caller owns (config.counters): the client counts there, they
 * hold their totals after the client is destroyed (in_flight back to 0: the
 * command destroy answered is counted unavailable), and a client created again
 * on them goes on from there.
 */
static void caller_counters_outlive_the_client(enum loop_backend backend)
{
    harness_open(backend);
    struct redis_server server;
    start_server(&server, 0, NULL);
    struct redis_counters counters = {0};
    struct watcher watcher = {0};
    struct redis_config config = base_config(server.port);
    config.counters = &counters;
    struct redis_client *client = client_create(&config, &watcher);
    wait_ready(client, 3000);
    struct answer answers[2] = {0};
    assert_int_equal(redis_command(client, on_answer, &answers[0], "PING"), REDIS_STATUS_OK);
    wait_answers(&answers[0], 1, 2000);
    redis_server_pause(&server, true);
    assert_int_equal(redis_command(client, on_answer, &answers[1], "PING"), REDIS_STATUS_OK);
    struct redis_stats stats;
    redis_counters_read(&counters, &stats);
    assert_int_equal(stats.in_flight, 1);
    redis_client_destroy(client);
    assert_int_equal(answers[1].status, REDIS_STATUS_UNAVAILABLE);
    redis_counters_read(&counters, &stats);
    assert_int_equal(stats.commands, 2);
    assert_int_equal(stats.replies, 1);
    assert_int_equal(stats.unavailable, 1);
    assert_int_equal(stats.in_flight, 0);
    assert_int_equal(stats.connects, 1);

    redis_server_pause(&server, false);
    struct watcher again = {0};
    client = client_create(&config, &again);
    wait_ready(client, 3000);
    redis_client_stats(client, &stats);
    assert_int_equal(stats.connects, 2);
    assert_int_equal(stats.commands, 2);
    harness_close_with(client, &server);
}
LOOP_BOTH_BACKENDS(caller_counters_outlive_the_client)

/* Replicas sync at once instead of after diskless sync's default 5 s delay. */
static const char *const primary_args[] = {"--repl-diskless-sync-delay", "0", NULL};

struct primary_wait {
    struct redis_client *client;
    char address[32];
};

static bool ready_at(void *arg)
{
    struct primary_wait *wait = arg;
    return redis_client_state(wait->client) == REDIS_STATE_READY &&
           strcmp(redis_client_primary(wait->client), wait->address) == 0;
}

static bool sentinel_knows_replica(uint16_t sentinel_port)
{
    redisReply *reply = redis_server_command(sentinel_port, NULL, "SENTINEL REPLICAS mymaster");
    bool known = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0;
    freeReplyObject(reply);
    return known;
}

static bool replica_linked(uint16_t replica_port)
{
    redisReply *reply = redis_server_command(replica_port, NULL, "INFO replication");
    bool linked = reply != NULL && reply->type == REDIS_REPLY_STRING &&
                  strstr(reply->str, "master_link_status:up") != NULL;
    freeReplyObject(reply);
    return linked;
}

/*
 * SENTINEL FAILOVER, asked again while the sentinel has no replica it trusts
 * yet (NOGOODSLAVE until it has the replica's own INFO); the loop runs between
 * tries. A failover the sentinel already started by itself counts.
 */
static void start_failover(uint16_t sentinel_port)
{
    bool started = false;
    for (int i = 0; i < 100 && !started; i++) {
        redisReply *reply = redis_server_command(sentinel_port, NULL, "SENTINEL FAILOVER mymaster");
        started = reply != NULL &&
                  (reply->type == REDIS_REPLY_STATUS ||
                   (reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "INPROG") != NULL));
        freeReplyObject(reply);
        if (!started)
            run_for(30);
    }
    assert_true(started);
}

/* A primary and a replica of it; waits (3 s at most) until the replica says its link is up. */
static void start_primary_and_replica(struct redis_server *primary, struct redis_server *replica)
{
    start_server(primary, 0, primary_args);
    char primary_port[8];
    snprintf(primary_port, sizeof(primary_port), "%u", (unsigned)primary->port);
    const char *replica_args[] = {"--replicaof", "127.0.0.1", primary_port, NULL};
    start_server(replica, 0, replica_args);
    for (int i = 0; i < 300 && !replica_linked(replica->port); i++)
        run_for(10);
}

/* A sentinel watching primary_port as "mymaster", once it knows the replica. */
static void start_watching_sentinel(struct redis_server *sentinel, uint16_t primary_port,
                                    unsigned down_after_ms)
{
    char err[256] = "";
    if (redis_server_start_sentinel(sentinel, harness.folder, primary_port, "mymaster",
                                    down_after_ms, 2000, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    for (int i = 0; i < 300 && !sentinel_knows_replica(sentinel->port); i++)
        run_for(10);
    assert_true(sentinel_knows_replica(sentinel->port));
}

/* Runs the loop until the client is ready with 127.0.0.1:port as its primary. */
static void wait_primary(struct primary_wait *wait, uint16_t port, unsigned timeout_ms)
{
    snprintf(wait->address, sizeof(wait->address), "127.0.0.1:%u", (unsigned)port);
    if (!run_until(ready_at, wait, timeout_ms))
        fail_msg("not ready at %s: %s (at %s)", wait->address, redis_client_error(wait->client),
                 redis_client_primary(wait->client));
}

/* SET key value, answered OK within 2 s. */
static void set_ok(struct redis_client *client, const char *key, const char *value)
{
    struct answer answer = {0};
    assert_int_equal(redis_command(client, on_answer, &answer, "SET %s %s", key, value),
                     REDIS_STATUS_OK);
    wait_answers(&answer, 1, 2000);
    assert_int_equal(answer.status, REDIS_STATUS_OK);
}

/*
 * Sentinel: the client asks it for the primary, checks ROLE, and when the
 * primary dies and the sentinel fails over to the replica, follows it
 * (+switch-master, or asking again) and is READY on the new primary.
 */
static void sentinel_failover_is_followed(enum loop_backend backend)
{
    harness_open(backend);
    struct redis_server primary, replica, sentinel;
    start_primary_and_replica(&primary, &replica);
    assert_true(replica_linked(replica.port));
    start_watching_sentinel(&sentinel, primary.port, 400);

    /* The first sentinel listed is dead: the client moves on to the next. */
    struct redis_address sentinels[] = {
        {.host = "127.0.0.1", .port = redis_server_free_port()},
        {.host = "127.0.0.1", .port = sentinel.port},
    };
    struct redis_config config = base_config(0);
    config.sentinels = sentinels;
    config.sentinel_count = 2;
    config.master_name = "mymaster";
    config.reconnect_max_ms = 100;
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    struct primary_wait wait = {.client = client};
    wait_primary(&wait, primary.port, 3000);
    set_ok(client, "before", "failover");

    redis_server_stop(&primary);
    assert_true(run_until(is_down, client, 2000));
    start_failover(sentinel.port);
    wait_primary(&wait, replica.port, 10000);
    set_ok(client, "after", "failover");
    struct redis_stats stats;
    redis_client_stats(client, &stats);
    assert_int_equal(stats.failovers, 1);
    redis_client_destroy(client);
    redis_server_stop(&sentinel);
    redis_server_stop(&replica);
    harness_close();
}
LOOP_BOTH_BACKENDS(sentinel_failover_is_followed)

/*
 * A failover with the old primary alive (SENTINEL FAILOVER): +switch-master
 * moves the client to the new primary, with nothing in flight to fail first.
 */
static void sentinel_switch_moves_a_live_client(enum loop_backend backend)
{
    harness_open(backend);
    struct redis_server primary, replica, sentinel;
    start_primary_and_replica(&primary, &replica);
    start_watching_sentinel(&sentinel, primary.port, 5000);
    struct redis_address sentinels[] = {{.host = "127.0.0.1", .port = sentinel.port}};
    struct redis_config config = base_config(0);
    config.sentinels = sentinels;
    config.sentinel_count = 1;
    config.master_name = "mymaster";
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    struct primary_wait wait = {.client = client};
    wait_primary(&wait, primary.port, 3000);
    start_failover(sentinel.port);
    wait_primary(&wait, replica.port, 10000);
    set_ok(client, "after", "switch");
    struct redis_stats stats;
    redis_client_stats(client, &stats);
    assert_int_equal(stats.failovers, 1);
    redis_client_destroy(client);
    redis_server_stop(&sentinel);
    redis_server_stop(&replica);
    redis_server_stop(&primary);
    harness_close();
}
LOOP_BOTH_BACKENDS(sentinel_switch_moves_a_live_client)

/* A replica given as the address is refused: ROLE must say master. */
static void replica_is_not_a_primary(enum loop_backend backend)
{
    harness_open(backend);
    struct redis_server primary, replica;
    start_primary_and_replica(&primary, &replica);
    struct redis_config config = base_config(replica.port);
    struct watcher watcher = {0};
    struct redis_client *client = client_create(&config, &watcher);
    assert_true(run_until(is_down, client, 2000));
    assert_non_null(strstr(redis_client_error(client), "ROLE says slave"));
    redis_client_destroy(client);
    redis_server_stop(&replica);
    redis_server_stop(&primary);
    harness_close();
}
LOOP_BOTH_BACKENDS(replica_is_not_a_primary)

static void bad_configuration_is_refused(void **state)
{
    (void)state;
    harness_open(LOOP_BACKEND_EPOLL);
    char err[256] = "";
    struct redis_config config = base_config(6379);
    config.address.host = "localhost";
    assert_null(redis_client_create(&config, &harness.events, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "numeric"));
    struct redis_address sentinel = {.host = "127.0.0.1", .port = 26379};
    config = base_config(0);
    config.sentinels = &sentinel;
    config.sentinel_count = 1;
    assert_null(redis_client_create(&config, &harness.events, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "master name"));
    harness_close();
}

#define BOTH(name)                                                                                 \
    cmocka_unit_test_teardown(name##_uring, teardown),                                             \
        cmocka_unit_test_teardown(name##_epoll, teardown)

int main(void)
{
    /* hiredis writes with write(2): a peer gone must be EPIPE, not a signal (as in dpsd). */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        BOTH(commands_and_pipelining),
        BOTH(unix_socket_and_database),
        BOTH(paused_server_times_out),
        cmocka_unit_test(deadline_rule_tolerates_one_late_reply),
        BOTH(one_late_reply_keeps_the_connection),
        BOTH(reconnects_after_restart),
        BOTH(killed_server_answers_each_command_once),
        BOTH(evalsha_reloads_on_noscript),
        BOTH(auth_with_acl_user_and_wrong_password),
        BOTH(pubsub_resubscribes_after_reconnect),
        BOTH(in_flight_cap_refuses_busy),
        BOTH(destroy_answers_waiting_commands),
        BOTH(caller_counters_outlive_the_client),
        BOTH(sentinel_failover_is_followed),
        BOTH(sentinel_switch_moves_a_live_client),
        BOTH(replica_is_not_a_primary),
        cmocka_unit_test_teardown(bad_configuration_is_refused, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
