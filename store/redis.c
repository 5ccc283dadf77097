/*
 * redis: the coordination client (see redis.h for what it promises).
 *
 * Three connections, each a redis_link: "primary" carries commands,
 * "subscriber" holds the pub/sub subscriptions (a subscribed connection can
 * do nothing else), and "sentinel" asks a sentinel for the primary and then
 * stays subscribed to +switch-master. Every connection is opened from a
 * timer, never from inside hiredis, and every ending goes through its link's
 * lost() callback, which decides what happens next:
 *
 *   reconnect timer --> [sentinel: ask, answer] --> primary open
 *       --> handshake (AUTH, SELECT, ROLE, SCRIPT LOAD...) --> READY
 *       --> subscriber open --> AUTH --> SUBSCRIBE each channel
 *   primary lost --> DOWN, subscriber closed, reconnect timer (back-off)
 *   +switch-master, or a sentinel's answer naming another primary
 *       --> primary closed, reconnect timer 0 --> primary open at the new one
 *
 * Commands: each one accepted takes an entry from a pool of max_in_flight
 * entries (allocated once: memory is bounded and BUSY is the answer beyond
 * it) and joins a FIFO in submission order, which is deadline order since
 * every command gets the same timeout. One timer watches the oldest deadline
 * and applies redis_deadline_decide() (redis.h): one late reply is tolerated.
 * The first command whose deadline passes is answered UNAVAILABLE at once
 * (its caller never waits longer) but stays in the FIFO, "expired", so the
 * connection is kept and its reply, when it comes, is read and dropped. A
 * second command passing its deadline while that reply is still missing, or
 * that reply missing for one more timeout, means Redis is stalled: the
 * primary connection is closed, and hiredis calls every pending callback with
 * no reply, which is where each command still waiting is answered
 * UNAVAILABLE (an expired one is not answered again): hiredis calls each
 * callback exactly once, so each command is answered exactly once, whichever
 * way its connection ends.
 *
 * hiredis 0.14 facts this file leans on: a callback may issue commands and
 * may free its own context (the free waits until the callback returns); on a
 * subscribed connection, a reply that is not a subscription message is
 * dropped, so AUTH must be answered before SUBSCRIBE is sent, and the
 * sentinel's answer before +switch-master is subscribed.
 */
#include "store/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "store/redis_link.h"

#define REDIS_DEFAULT_COMMAND_TIMEOUT_MS 250
#define REDIS_DEFAULT_CONNECT_TIMEOUT_MS 1000
#define REDIS_DEFAULT_RECONNECT_MIN_MS 100
#define REDIS_DEFAULT_RECONNECT_MAX_MS 5000
#define REDIS_DEFAULT_MAX_IN_FLIGHT 1024
#define REDIS_SHA_LENGTH 40

/* Counters are read by other threads (redis.h); nothing is ordered by them. */
#define redis_count(counter, n) atomic_fetch_add_explicit((counter), (n), memory_order_relaxed)

struct redis_script {
    struct redis_script *next;
    char sha[REDIS_SHA_LENGTH + 1];
    size_t length;
    char source[];
};

struct redis_subscription {
    struct redis_subscription *next;
    redis_message_fn *fn;
    void *user;
    bool confirmed;
    char channel[]; /* with the key prefix */
};

/* A command waiting for its answer, or a free pool entry. */
struct redis_pending {
    struct redis_client *client;
    struct redis_pending *prev;
    struct redis_pending *next;
    redis_reply_fn *fn;
    void *user;
    uint64_t deadline_ns;
    const struct redis_script *script; /* EVALSHA: may be sent again after NOSCRIPT */
    char *formatted;                   /* kept for that second sending */
    size_t formatted_length;
    bool retried;
    bool
        expired; /* answered UNAVAILABLE at its deadline; its late reply is awaited, then dropped */
};

struct redis_endpoint {
    char *host;
    uint16_t port;
};

struct redis_client {
    struct redis_events events;
    redis_state_fn *on_state;
    void *user;

    char *unix_path;
    struct redis_endpoint address;
    struct redis_endpoint *sentinels;
    size_t sentinel_count;
    char *master_name;
    char *sentinel_username;
    char *sentinel_password;
    char *username;
    char *password;
    int database;
    char *prefix;
    size_t prefix_length;
    unsigned command_timeout_ms;
    unsigned connect_timeout_ms;
    unsigned reconnect_min_ms;
    unsigned reconnect_max_ms;
    OSSL_LIB_CTX *library_context;

    enum redis_state state;
    char error[256];
    struct redis_counters own_counters;
    struct redis_counters *counters; /* config.counters, or &own_counters */
    uint64_t random_state;
    bool destroying;

    struct redis_link primary;
    void *primary_timer; /* the handshake's deadline, then the oldest command's */
    bool primary_timer_armed;
    bool primary_ready;
    unsigned handshake_pending;
    void *reconnect_timer;
    unsigned failures;
    bool connect_known_primary; /* the next attempt goes straight to primary_host */
    char primary_host[64];
    uint16_t primary_port;
    bool primary_known;

    struct redis_link subscriber;
    void *subscriber_timer; /* confirmations' deadline, or the retry after a loss */
    unsigned subscriber_failures;
    bool subscribing; /* AUTH done: SUBSCRIBE may be sent */
    size_t unconfirmed;
    struct redis_subscription *subscriptions;

    struct redis_link sentinel;
    void *sentinel_timer; /* the answer's deadline, or the retry after a loss */
    size_t sentinel_index;
    size_t sentinel_tries; /* sentinels that failed in this round */
    unsigned sentinel_failures;
    bool sentinel_answered;
    bool sentinel_reopening;

    struct redis_pending *pool;
    size_t pool_size;
    struct redis_pending *free_pending;
    struct redis_pending *oldest;
    struct redis_pending *newest;
    size_t expired; /* the first this many of oldest..newest are expired (one at most, see below) */
    struct redis_script *scripts;
};

/* Handshake steps, passed as hiredis privdata; only their order and names matter. */
enum redis_step {
    REDIS_STEP_AUTH,
    REDIS_STEP_SELECT,
    REDIS_STEP_ROLE,
    REDIS_STEP_SCRIPT,
    REDIS_STEP_QUERY,
};

static const char *const redis_step_names[] = {"AUTH", "SELECT", "ROLE", "SCRIPT LOAD",
                                               "SENTINEL get-master-addr-by-name"};

static void *redis_step_data(enum redis_step step)
{
    return (void *)(uintptr_t)(step + 1);
}

static enum redis_step redis_step_of(void *data)
{
    return (enum redis_step)((uintptr_t)data - 1);
}

static uint64_t redis_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static const redisReply *redis_reply_of(const struct redis_reply *reply)
{
    return (const redisReply *)reply;
}

enum redis_reply_kind redis_reply_kind(const struct redis_reply *reply)
{
    switch (redis_reply_of(reply)->type) {
    case REDIS_REPLY_STRING:
        return REDIS_KIND_STRING;
    case REDIS_REPLY_ARRAY:
        return REDIS_KIND_ARRAY;
    case REDIS_REPLY_INTEGER:
        return REDIS_KIND_INTEGER;
    case REDIS_REPLY_STATUS:
        return REDIS_KIND_STATUS;
    case REDIS_REPLY_ERROR:
        return REDIS_KIND_ERROR;
    default:
        return REDIS_KIND_NIL;
    }
}

long long redis_reply_integer(const struct redis_reply *reply)
{
    return redis_reply_of(reply)->integer;
}

const char *redis_reply_string(const struct redis_reply *reply, size_t *length)
{
    const redisReply *r = redis_reply_of(reply);
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS &&
        r->type != REDIS_REPLY_ERROR) {
        if (length != NULL)
            *length = 0;
        return NULL;
    }
    if (length != NULL)
        *length = r->len;
    return r->str;
}

size_t redis_reply_count(const struct redis_reply *reply)
{
    const redisReply *r = redis_reply_of(reply);
    return r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
}

const struct redis_reply *redis_reply_element(const struct redis_reply *reply, size_t index)
{
    const redisReply *r = redis_reply_of(reply);
    if (r->type != REDIS_REPLY_ARRAY || index >= r->elements)
        return NULL;
    return (const struct redis_reply *)r->element[index];
}

const char *redis_state_name(enum redis_state state)
{
    switch (state) {
    case REDIS_STATE_CONNECTING:
        return "connecting";
    case REDIS_STATE_READY:
        return "ready";
    case REDIS_STATE_DOWN:
        return "down";
    }
    return "unknown";
}

const char *redis_status_name(enum redis_status status)
{
    switch (status) {
    case REDIS_STATUS_OK:
        return "ok";
    case REDIS_STATUS_ERROR:
        return "error";
    case REDIS_STATUS_UNAVAILABLE:
        return "unavailable";
    case REDIS_STATUS_BUSY:
        return "busy";
    }
    return "unknown";
}

static bool redis_reply_is_error(const redisReply *reply, const char *code)
{
    size_t length = strlen(code);
    return reply->type == REDIS_REPLY_ERROR && reply->len >= length &&
           strncmp(reply->str, code, length) == 0;
}

static void redis_set_state(struct redis_client *client, enum redis_state state, const char *reason)
{
    if (reason != NULL)
        snprintf(client->error, sizeof(client->error), "%.*s", (int)sizeof(client->error) - 1,
                 reason);
    if (client->state == state)
        return;
    client->state = state;
    if (!client->destroying && client->on_state != NULL)
        client->on_state(client->user, state, state == REDIS_STATE_READY ? "" : client->error);
}

/* xorshift64*: jitter only, so that nodes do not reconnect in step. */
static uint64_t redis_random(struct redis_client *client)
{
    uint64_t x = client->random_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    client->random_state = x;
    return x * 2685821657736338717ull;
}

/* Exponential in failures, capped, with the upper half jittered: [step/2, step]. */
static unsigned redis_backoff_ms(struct redis_client *client, unsigned failures)
{
    uint64_t step = client->reconnect_min_ms;
    for (unsigned i = 0; i < failures && step < client->reconnect_max_ms; i++)
        step *= 2;
    if (step > client->reconnect_max_ms)
        step = client->reconnect_max_ms;
    uint64_t half = step / 2;
    return (unsigned)(step - half + redis_random(client) % (half + 1));
}

/* The primary */

static void redis_reconnect_schedule(struct redis_client *client)
{
    unsigned delay = 0;
    if (!client->connect_known_primary)
        delay = redis_backoff_ms(client, client->failures++);
    client->events.timer_start(client->reconnect_timer, delay);
}

static void redis_attempt_failed(struct redis_client *client, const char *reason)
{
    redis_set_state(client, REDIS_STATE_DOWN, reason);
    redis_reconnect_schedule(client);
}

static void redis_primary_timer_start(struct redis_client *client, uint64_t deadline_ns)
{
    uint64_t now = redis_now_ns();
    uint64_t wait = deadline_ns > now ? deadline_ns - now : 0;
    client->events.timer_start(client->primary_timer, (unsigned)((wait + 999999) / 1000000));
    client->primary_timer_armed = true;
}

static void redis_primary_timer_stop(struct redis_client *client)
{
    client->events.timer_stop(client->primary_timer);
    client->primary_timer_armed = false;
}

static void redis_primary_open(struct redis_client *client)
{
    const char *host = client->address.host;
    uint16_t port = client->address.port;
    if (client->sentinel_count > 0) {
        host = client->primary_host;
        port = client->primary_port;
    }
    client->primary_ready = false;
    client->handshake_pending = 0;
    if (redis_link_open(&client->primary, client->unix_path, host, port) < 0) {
        redis_attempt_failed(client, client->primary.reason);
        return;
    }
    redis_primary_timer_start(client,
                              redis_now_ns() + (uint64_t)client->connect_timeout_ms * 1000000u);
}

static void redis_sentinel_open(struct redis_client *client);

static void redis_reconnect_fire(void *arg)
{
    struct redis_client *client = arg;
    if (redis_link_is_open(&client->primary))
        return;
    if (client->sentinel_count > 0 && !client->connect_known_primary) {
        client->sentinel_tries = 0;
        redis_sentinel_open(client);
        return;
    }
    client->connect_known_primary = false;
    redis_primary_open(client);
}

static void redis_subscriber_start(struct redis_client *client)
{
    if (client->subscriptions != NULL && !redis_link_is_open(&client->subscriber))
        client->events.timer_start(client->subscriber_timer, 0);
}

static void redis_primary_become_ready(struct redis_client *client)
{
    redis_primary_timer_stop(client);
    client->primary_ready = true;
    client->failures = 0;
    redis_count(&client->counters->connects, 1);
    redis_set_state(client, REDIS_STATE_READY, NULL);
    client->subscriber_failures = 0;
    redis_subscriber_start(client);
}

static int redis_send_script_load(struct redis_client *client, const struct redis_script *script,
                                  redisCallbackFn *fn, void *data)
{
    return redisAsyncCommand(client->primary.context, fn, data, "SCRIPT LOAD %b", script->source,
                             script->length);
}

static void redis_handshake_reply(redisAsyncContext *context, void *reply_pointer, void *data)
{
    struct redis_link *link = context->data;
    struct redis_client *client = link->owner;
    const redisReply *reply = reply_pointer;
    if (reply == NULL || link->closing)
        return; /* the connection is going; lost() says why */
    enum redis_step step = redis_step_of(data);
    char reason[200];
    if (reply->type == REDIS_REPLY_ERROR && step != REDIS_STEP_SCRIPT) {
        /* A script that does not load fails its calls, not the connection. */
        snprintf(reason, sizeof(reason), "%s refused: %s", redis_step_names[step], reply->str);
        redis_link_close(link, reason);
        return;
    }
    if (step == REDIS_STEP_ROLE) {
        const char *role = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                                   reply->element[0]->type == REDIS_REPLY_STRING
                               ? reply->element[0]->str
                               : "?";
        if (strcmp(role, "master") != 0) {
            snprintf(reason, sizeof(reason), "ROLE says %s: not a primary", role);
            redis_link_close(link, reason);
            return;
        }
    }
    if (--client->handshake_pending == 0)
        redis_primary_become_ready(client);
}

static void redis_primary_connected(struct redis_link *link)
{
    struct redis_client *client = link->owner;
    redisAsyncContext *context = link->context;
    unsigned steps = 0;
    if (client->password != NULL) {
        if (client->username != NULL)
            redisAsyncCommand(context, redis_handshake_reply, redis_step_data(REDIS_STEP_AUTH),
                              "AUTH %s %s", client->username, client->password);
        else
            redisAsyncCommand(context, redis_handshake_reply, redis_step_data(REDIS_STEP_AUTH),
                              "AUTH %s", client->password);
        steps++;
    }
    if (client->database != 0) {
        redisAsyncCommand(context, redis_handshake_reply, redis_step_data(REDIS_STEP_SELECT),
                          "SELECT %d", client->database);
        steps++;
    }
    redisAsyncCommand(context, redis_handshake_reply, redis_step_data(REDIS_STEP_ROLE), "ROLE");
    steps++;
    for (struct redis_script *script = client->scripts; script != NULL; script = script->next) {
        redis_send_script_load(client, script, redis_handshake_reply,
                               redis_step_data(REDIS_STEP_SCRIPT));
        steps++;
    }
    client->handshake_pending = steps;
}

static void redis_subscriber_close(struct redis_client *client, const char *reason)
{
    client->events.timer_stop(client->subscriber_timer);
    redis_link_close(&client->subscriber, reason);
}

static void redis_primary_lost(struct redis_link *link, const char *reason)
{
    struct redis_client *client = link->owner;
    redis_primary_timer_stop(client);
    client->primary_ready = false;
    client->handshake_pending = 0;
    if (client->destroying)
        return;
    redis_set_state(client, REDIS_STATE_DOWN, reason);
    redis_subscriber_close(client, "the primary connection was lost");
    redis_reconnect_schedule(client);
}

/* Commands */

static struct redis_pending *redis_pending_take(struct redis_client *client)
{
    struct redis_pending *pending = client->free_pending;
    if (pending == NULL)
        return NULL;
    client->free_pending = pending->next;
    memset(pending, 0, sizeof(*pending));
    pending->client = client;
    return pending;
}

static void redis_pending_unlink(struct redis_client *client, struct redis_pending *pending)
{
    if (pending->prev != NULL)
        pending->prev->next = pending->next;
    else
        client->oldest = pending->next;
    if (pending->next != NULL)
        pending->next->prev = pending->prev;
    else
        client->newest = pending->prev;
    atomic_fetch_sub_explicit(&client->counters->in_flight, 1, memory_order_relaxed);
}

static void redis_pending_release(struct redis_client *client, struct redis_pending *pending)
{
    free(pending->formatted);
    pending->formatted = NULL;
    pending->next = client->free_pending;
    client->free_pending = pending;
}

/* The entry is back in the pool before fn runs, so fn may submit within the cap. */
static void redis_pending_finish(struct redis_pending *pending, enum redis_status status,
                                 const redisReply *reply)
{
    struct redis_client *client = pending->client;
    redis_reply_fn *fn = pending->fn;
    void *user = pending->user;
    bool expired = pending->expired;
    redis_pending_unlink(client, pending);
    redis_pending_release(client, pending);
    if (expired) {
        /* Answered at its deadline already: the late reply (or the connection's end) only frees it.
         */
        client->expired--;
        if (reply != NULL)
            redis_count(&client->counters->late_replies, 1);
        return;
    }
    if (status == REDIS_STATUS_UNAVAILABLE)
        redis_count(&client->counters->unavailable, 1);
    else
        redis_count(&client->counters->replies, 1);
    if (fn != NULL)
        fn(user, status, (const struct redis_reply *)reply);
}

static void redis_script_loaded(redisAsyncContext *context, void *reply, void *data)
{
    (void)context;
    (void)reply;
    (void)data;
}

static void redis_command_reply(redisAsyncContext *context, void *reply_pointer, void *data)
{
    struct redis_pending *pending = data;
    struct redis_client *client = pending->client;
    const redisReply *reply = reply_pointer;
    if (reply == NULL) {
        redis_pending_finish(pending, REDIS_STATUS_UNAVAILABLE, NULL);
        return;
    }
    if (pending->expired && !redis_reply_is_error(reply, "READONLY")) {
        redis_pending_finish(pending, REDIS_STATUS_OK, reply);
        return;
    }
    if (reply->type != REDIS_REPLY_ERROR) {
        redis_pending_finish(pending, REDIS_STATUS_OK, reply);
        return;
    }
    if (pending->script != NULL && !pending->retried && redis_reply_is_error(reply, "NOSCRIPT")) {
        /* Pipelined: the load is answered before the call that needs it. */
        pending->retried = true;
        redis_count(&client->counters->noscript_reloads, 1);
        if (redis_send_script_load(client, pending->script, redis_script_loaded, NULL) ==
                REDIS_OK &&
            redisAsyncFormattedCommand(context, redis_command_reply, pending, pending->formatted,
                                       pending->formatted_length) == REDIS_OK)
            return;
        redis_pending_finish(pending, REDIS_STATUS_UNAVAILABLE, NULL);
        return;
    }
    if (redis_reply_is_error(reply, "READONLY")) {
        /* A failover demoted this server: the command was not done, and this is not the primary. */
        redis_pending_finish(pending, REDIS_STATUS_UNAVAILABLE, NULL);
        redis_link_close(&client->primary, "the primary became a replica (READONLY)");
        return;
    }
    redis_pending_finish(pending, REDIS_STATUS_ERROR, reply);
}

enum redis_deadline_action redis_deadline_decide(uint64_t now_ns, unsigned timeout_ms,
                                                 const uint64_t *late_deadline_ns,
                                                 const uint64_t *live_deadline_ns,
                                                 uint64_t *next_check_ns)
{
    uint64_t timeout_ns = (uint64_t)timeout_ms * 1000000u;
    if (late_deadline_ns != NULL && now_ns >= *late_deadline_ns + timeout_ns)
        return REDIS_DEADLINE_DROP;
    if (live_deadline_ns != NULL && now_ns >= *live_deadline_ns)
        return late_deadline_ns != NULL ? REDIS_DEADLINE_DROP : REDIS_DEADLINE_EXPIRE;
    uint64_t next = UINT64_MAX;
    if (late_deadline_ns != NULL)
        next = *late_deadline_ns + timeout_ns;
    if (live_deadline_ns != NULL && *live_deadline_ns < next)
        next = *live_deadline_ns;
    *next_check_ns = next;
    return REDIS_DEADLINE_WAIT;
}

/*
 * The oldest command passed its deadline and no other is late: answered
 * UNAVAILABLE now, its entry kept until its reply comes (or the connection
 * ends). fn runs last: it may submit.
 */
static void redis_pending_expire(struct redis_pending *pending)
{
    struct redis_client *client = pending->client;
    redis_reply_fn *fn = pending->fn;
    void *user = pending->user;
    pending->expired = true;
    pending->fn = NULL;
    free(pending->formatted); /* never sent again */
    pending->formatted = NULL;
    client->expired++;
    redis_count(&client->counters->late, 1);
    redis_count(&client->counters->unavailable, 1);
    if (fn != NULL)
        fn(user, REDIS_STATUS_UNAVAILABLE, NULL);
}

/* Checks the deadlines (redis_deadline_decide): a stalled connection is closed, failing them all.
 */
static void redis_primary_timer_fire(void *arg)
{
    struct redis_client *client = arg;
    client->primary_timer_armed = false;
    if (!redis_link_is_open(&client->primary))
        return;
    char reason[128];
    if (!client->primary_ready) {
        snprintf(reason, sizeof(reason), "no answer within %u ms", client->connect_timeout_ms);
        redis_link_close(&client->primary, reason);
        return;
    }
    for (;;) {
        /* Expired commands are the FIFO's head (one at most): the first live one follows. */
        struct redis_pending *live = client->oldest;
        for (size_t i = 0; live != NULL && i < client->expired; i++)
            live = live->next;
        const uint64_t *late = client->expired > 0 ? &client->oldest->deadline_ns : NULL;
        uint64_t next;
        switch (redis_deadline_decide(redis_now_ns(), client->command_timeout_ms, late,
                                      live != NULL ? &live->deadline_ns : NULL, &next)) {
        case REDIS_DEADLINE_WAIT:
            if (next != UINT64_MAX)
                redis_primary_timer_start(client, next);
            return;
        case REDIS_DEADLINE_EXPIRE:
            redis_pending_expire(live);
            /* fn may have closed the client's connection (it may submit, or destroy nothing). */
            if (!redis_link_usable(&client->primary))
                return;
            continue;
        case REDIS_DEADLINE_DROP:
            redis_count(&client->counters->timeouts, 1);
            snprintf(reason, sizeof(reason), "a command got no answer within %u ms",
                     client->command_timeout_ms);
            redis_link_close(&client->primary, reason);
            return;
        }
    }
}

/* Takes ownership of formatted (kept for a script's second sending, freed otherwise). */
static enum redis_status redis_submit(struct redis_client *client, redis_reply_fn *fn, void *user,
                                      char *formatted, long long length,
                                      const struct redis_script *script)
{
    if (length < 0 || !client->primary_ready || !redis_link_usable(&client->primary)) {
        free(formatted);
        redis_count(&client->counters->unavailable, 1);
        return REDIS_STATUS_UNAVAILABLE;
    }
    struct redis_pending *pending = redis_pending_take(client);
    if (pending == NULL) {
        free(formatted);
        redis_count(&client->counters->busy, 1);
        return REDIS_STATUS_BUSY;
    }
    if (redisAsyncFormattedCommand(client->primary.context, redis_command_reply, pending, formatted,
                                   (size_t)length) != REDIS_OK) {
        redis_pending_release(client, pending);
        free(formatted);
        redis_count(&client->counters->unavailable, 1);
        return REDIS_STATUS_UNAVAILABLE;
    }
    pending->fn = fn;
    pending->user = user;
    pending->deadline_ns = redis_now_ns() + (uint64_t)client->command_timeout_ms * 1000000u;
    if (script != NULL) {
        pending->script = script;
        pending->formatted = formatted;
        pending->formatted_length = (size_t)length;
    } else {
        free(formatted);
    }
    pending->prev = client->newest;
    if (client->newest != NULL)
        client->newest->next = pending;
    else
        client->oldest = pending;
    client->newest = pending;
    redis_count(&client->counters->in_flight, 1);
    redis_count(&client->counters->commands, 1);
    if (!client->primary_timer_armed)
        redis_primary_timer_start(client, pending->deadline_ns);
    return REDIS_STATUS_OK;
}

enum redis_status redis_command(struct redis_client *client, redis_reply_fn *fn, void *user,
                                const char *format, ...)
{
    char *formatted = NULL;
    va_list arguments;
    va_start(arguments, format);
    int length = redisvFormatCommand(&formatted, format, arguments);
    va_end(arguments);
    return redis_submit(client, fn, user, formatted, length, NULL);
}

enum redis_status redis_command_argv(struct redis_client *client, redis_reply_fn *fn, void *user,
                                     int argc, const char *const *argv, const size_t *lengths)
{
    char *formatted = NULL;
    /* hiredis 0.14 takes char ** for what it only reads. */
    int length = redisFormatCommandArgv(&formatted, argc, (const char **)argv, lengths);
    return redis_submit(client, fn, user, formatted, length, NULL);
}

size_t redis_key(const struct redis_client *client, const char *name, char *out, size_t out_size)
{
    int length = snprintf(out, out_size, "%s%s", client->prefix, name);
    if (length < 0 || (size_t)length >= out_size)
        return 0;
    return (size_t)length;
}

/* Scripts */

/* RESP for one bulk string: "$<length>\r\n<prefix><data>\r\n". */
static size_t redis_bulk_size(size_t length)
{
    char digits[24];
    return (size_t)snprintf(digits, sizeof(digits), "$%zu\r\n", length) + length + 2;
}

static char *redis_bulk_put(char *out, const char *prefix, size_t prefix_length, const char *data,
                            size_t length)
{
    out += sprintf(out, "$%zu\r\n", prefix_length + length);
    memcpy(out, prefix, prefix_length);
    memcpy(out + prefix_length, data, length);
    out += prefix_length + length;
    *out++ = '\r';
    *out++ = '\n';
    return out;
}

static size_t redis_length_at(const char *const *strings, const size_t *lengths, size_t index)
{
    return lengths != NULL ? lengths[index] : strlen(strings[index]);
}

/* EVALSHA sha numkeys key... arg..., keys prefixed, formatted in one allocation. */
static char *redis_format_evalsha(const struct redis_client *client, const char *sha,
                                  size_t key_count, const char *const *keys,
                                  const size_t *key_lengths, size_t arg_count,
                                  const char *const *args, const size_t *arg_lengths,
                                  size_t *length)
{
    char count[24];
    int count_length = snprintf(count, sizeof(count), "%zu", key_count);
    char header[32];
    int header_length = snprintf(header, sizeof(header), "*%zu\r\n", 3 + key_count + arg_count);
    size_t size = (size_t)header_length + redis_bulk_size(7) + redis_bulk_size(REDIS_SHA_LENGTH) +
                  redis_bulk_size((size_t)count_length);
    for (size_t i = 0; i < key_count; i++)
        size += redis_bulk_size(client->prefix_length + redis_length_at(keys, key_lengths, i));
    for (size_t i = 0; i < arg_count; i++)
        size += redis_bulk_size(redis_length_at(args, arg_lengths, i));
    char *formatted = malloc(size + 1); /* sprintf's NUL */
    if (formatted == NULL)
        return NULL;
    char *out = formatted;
    memcpy(out, header, (size_t)header_length);
    out += header_length;
    out = redis_bulk_put(out, "", 0, "EVALSHA", 7);
    out = redis_bulk_put(out, "", 0, sha, REDIS_SHA_LENGTH);
    out = redis_bulk_put(out, "", 0, count, (size_t)count_length);
    for (size_t i = 0; i < key_count; i++)
        out = redis_bulk_put(out, client->prefix, client->prefix_length, keys[i],
                             redis_length_at(keys, key_lengths, i));
    for (size_t i = 0; i < arg_count; i++)
        out = redis_bulk_put(out, "", 0, args[i], redis_length_at(args, arg_lengths, i));
    *length = (size_t)(out - formatted);
    return formatted;
}

static int redis_sha1_hex(OSSL_LIB_CTX *library_context, const char *data, size_t length,
                          char hex[REDIS_SHA_LENGTH + 1])
{
    EVP_MD *sha1 = EVP_MD_fetch(library_context, "SHA1", NULL);
    if (sha1 == NULL)
        return -1;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    int ok = EVP_Digest(data, length, digest, &digest_length, sha1, NULL);
    EVP_MD_free(sha1);
    if (ok != 1 || digest_length * 2 != REDIS_SHA_LENGTH)
        return -1;
    for (unsigned i = 0; i < digest_length; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

struct redis_script *redis_script_register(struct redis_client *client, const char *source)
{
    size_t length = strlen(source);
    char sha[REDIS_SHA_LENGTH + 1];
    if (redis_sha1_hex(client->library_context, source, length, sha) < 0)
        return NULL;
    for (struct redis_script *script = client->scripts; script != NULL; script = script->next)
        if (strcmp(script->sha, sha) == 0)
            return script;
    struct redis_script *script = malloc(sizeof(*script) + length + 1);
    if (script == NULL)
        return NULL;
    memcpy(script->sha, sha, sizeof(sha));
    script->length = length;
    memcpy(script->source, source, length + 1);
    script->next = client->scripts;
    client->scripts = script;
    /* Also while the handshake runs: its SCRIPT LOADs were sent without this one. */
    if (redis_link_usable(&client->primary))
        redis_send_script_load(client, script, redis_script_loaded, NULL);
    return script;
}

const char *redis_script_sha(const struct redis_script *script)
{
    return script->sha;
}

enum redis_status redis_script_call(struct redis_client *client, const struct redis_script *script,
                                    redis_reply_fn *fn, void *user, size_t key_count,
                                    const char *const *keys, const size_t *key_lengths,
                                    size_t arg_count, const char *const *args,
                                    const size_t *arg_lengths)
{
    if (!client->primary_ready) {
        redis_count(&client->counters->unavailable, 1);
        return REDIS_STATUS_UNAVAILABLE;
    }
    size_t length = 0;
    char *formatted = redis_format_evalsha(client, script->sha, key_count, keys, key_lengths,
                                           arg_count, args, arg_lengths, &length);
    return redis_submit(client, fn, user, formatted, formatted != NULL ? (long long)length : -1,
                        script);
}

/* Pub/sub */

static void redis_subscription_message(redisAsyncContext *context, void *reply_pointer, void *data)
{
    struct redis_link *link = context->data;
    struct redis_client *client = link->owner;
    struct redis_subscription *subscription = data;
    const redisReply *reply = reply_pointer;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    if (strcasecmp(kind, "subscribe") == 0) {
        if (!subscription->confirmed) {
            subscription->confirmed = true;
            if (--client->unconfirmed == 0) {
                client->events.timer_stop(client->subscriber_timer);
                client->subscriber_failures = 0;
            }
        }
        subscription->fn(subscription->user, NULL, 0);
    } else if (strcasecmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        subscription->fn(subscription->user, reply->element[2]->str, reply->element[2]->len);
    }
}

static int redis_send_subscribe(struct redis_client *client,
                                struct redis_subscription *subscription)
{
    subscription->confirmed = false;
    client->unconfirmed++;
    return redisAsyncCommand(client->subscriber.context, redis_subscription_message, subscription,
                             "SUBSCRIBE %s", subscription->channel);
}

static void redis_subscriber_subscribe_all(struct redis_client *client)
{
    client->subscribing = true;
    client->unconfirmed = 0;
    for (struct redis_subscription *subscription = client->subscriptions; subscription != NULL;
         subscription = subscription->next)
        redis_send_subscribe(client, subscription);
}

static void redis_subscriber_auth_reply(redisAsyncContext *context, void *reply_pointer, void *data)
{
    struct redis_link *link = context->data;
    const redisReply *reply = reply_pointer;
    (void)data;
    if (reply == NULL || link->closing)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char reason[200];
        snprintf(reason, sizeof(reason), "AUTH refused: %s", reply->str);
        redis_link_close(link, reason);
        return;
    }
    redis_subscriber_subscribe_all(link->owner);
}

static void redis_subscriber_connected(struct redis_link *link)
{
    struct redis_client *client = link->owner;
    if (client->password == NULL) {
        redis_subscriber_subscribe_all(client);
        return;
    }
    if (client->username != NULL)
        redisAsyncCommand(link->context, redis_subscriber_auth_reply, NULL, "AUTH %s %s",
                          client->username, client->password);
    else
        redisAsyncCommand(link->context, redis_subscriber_auth_reply, NULL, "AUTH %s",
                          client->password);
}

static void redis_subscriber_lost(struct redis_link *link, const char *reason)
{
    struct redis_client *client = link->owner;
    (void)reason;
    client->subscribing = false;
    client->unconfirmed = 0;
    client->events.timer_stop(client->subscriber_timer);
    if (client->destroying || !client->primary_ready)
        return; /* the primary's next READY starts it again */
    client->events.timer_start(client->subscriber_timer,
                               redis_backoff_ms(client, client->subscriber_failures++));
}

/* Opens the subscriber when it is closed; when open, its confirmations are overdue. */
static void redis_subscriber_timer_fire(void *arg)
{
    struct redis_client *client = arg;
    if (redis_link_is_open(&client->subscriber)) {
        char reason[128];
        snprintf(reason, sizeof(reason), "subscriptions not confirmed within %u ms",
                 client->connect_timeout_ms);
        redis_link_close(&client->subscriber, reason);
        return;
    }
    if (!client->primary_ready || client->subscriptions == NULL)
        return;
    const char *host = client->sentinel_count > 0 ? client->primary_host : client->address.host;
    uint16_t port = client->sentinel_count > 0 ? client->primary_port : client->address.port;
    if (redis_link_open(&client->subscriber, client->unix_path, host, port) < 0) {
        client->events.timer_start(client->subscriber_timer,
                                   redis_backoff_ms(client, client->subscriber_failures++));
        return;
    }
    client->events.timer_start(client->subscriber_timer, client->connect_timeout_ms);
}

int redis_subscribe(struct redis_client *client, const char *channel, redis_message_fn *fn,
                    void *user)
{
    size_t length = client->prefix_length + strlen(channel);
    for (struct redis_subscription *subscription = client->subscriptions; subscription != NULL;
         subscription = subscription->next)
        if (strlen(subscription->channel) == length &&
            strncmp(subscription->channel, client->prefix, client->prefix_length) == 0 &&
            strcmp(subscription->channel + client->prefix_length, channel) == 0)
            return -EEXIST;
    struct redis_subscription *subscription = calloc(1, sizeof(*subscription) + length + 1);
    if (subscription == NULL)
        return -ENOMEM;
    snprintf(subscription->channel, length + 1, "%s%s", client->prefix, channel);
    subscription->fn = fn;
    subscription->user = user;
    subscription->next = client->subscriptions;
    client->subscriptions = subscription;
    if (client->subscribing && redis_link_usable(&client->subscriber)) {
        if (client->unconfirmed == 0)
            client->events.timer_start(client->subscriber_timer, client->connect_timeout_ms);
        redis_send_subscribe(client, subscription);
    } else if (client->primary_ready) {
        redis_subscriber_start(client);
    }
    return 0;
}

enum redis_status redis_publish(struct redis_client *client, const char *channel,
                                const void *message, size_t length, redis_reply_fn *fn, void *user)
{
    return redis_command(client, fn, user, "PUBLISH %b%s %b", client->prefix, client->prefix_length,
                         channel, message, length);
}

/* Sentinel */

static bool redis_numeric_address(const char *host)
{
    unsigned char address[16];
    return inet_pton(AF_INET, host, address) == 1 || inet_pton(AF_INET6, host, address) == 1;
}

/* A sentinel named the primary, in an answer or a +switch-master message. */
static void redis_primary_found(struct redis_client *client, const char *host, uint16_t port)
{
    bool same = client->primary_known && strcmp(client->primary_host, host) == 0 &&
                client->primary_port == port;
    if (same && redis_link_is_open(&client->primary))
        return;
    if (client->primary_known && !same)
        redis_count(&client->counters->failovers, 1);
    snprintf(client->primary_host, sizeof(client->primary_host), "%s", host);
    client->primary_port = port;
    client->primary_known = true;
    client->connect_known_primary = true;
    if (redis_link_is_open(&client->primary)) {
        char reason[160];
        snprintf(reason, sizeof(reason), "the primary moved to %s:%u", host, (unsigned)port);
        redis_link_close(&client->primary, reason); /* lost() schedules the new attempt */
        return;
    }
    client->events.timer_start(client->reconnect_timer, 0);
}

/* "<name> <old ip> <old port> <new ip> <new port>" */
static void redis_switch_master(redisAsyncContext *context, void *reply_pointer, void *data)
{
    struct redis_link *link = context->data;
    struct redis_client *client = link->owner;
    const redisReply *reply = reply_pointer;
    (void)data;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        strcasecmp(reply->element[0]->str, "message") != 0 ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    char name[128], old_host[64], new_host[64];
    unsigned old_port, new_port;
    if (sscanf(reply->element[2]->str, "%127s %63s %u %63s %u", name, old_host, &old_port, new_host,
               &new_port) != 5 ||
        strcmp(name, client->master_name) != 0 || new_port == 0 || new_port > 65535 ||
        !redis_numeric_address(new_host))
        return;
    redis_primary_found(client, new_host, (uint16_t)new_port);
}

static void redis_sentinel_reply(redisAsyncContext *context, void *reply_pointer, void *data)
{
    struct redis_link *link = context->data;
    struct redis_client *client = link->owner;
    const redisReply *reply = reply_pointer;
    if (reply == NULL || link->closing)
        return;
    enum redis_step step = redis_step_of(data);
    char reason[200];
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(reason, sizeof(reason), "%s refused: %s", redis_step_names[step], reply->str);
        redis_link_close(link, reason);
        return;
    }
    if (step != REDIS_STEP_QUERY)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        snprintf(reason, sizeof(reason), "does not know a primary named %s", client->master_name);
        redis_link_close(link, reason);
        return;
    }
    const char *host = reply->element[0]->str;
    unsigned long port = strtoul(reply->element[1]->str, NULL, 10);
    if (!redis_numeric_address(host) || strlen(host) >= sizeof(client->primary_host) || port == 0 ||
        port > 65535) {
        snprintf(reason, sizeof(reason), "named the primary %.64s:%.8s, not a numeric address",
                 host, reply->element[1]->str);
        redis_link_close(link, reason);
        return;
    }
    client->events.timer_stop(client->sentinel_timer);
    client->sentinel_answered = true;
    client->sentinel_tries = 0;
    client->sentinel_failures = 0;
    redisAsyncCommand(context, redis_switch_master, NULL, "SUBSCRIBE +switch-master");
    redis_primary_found(client, host, (uint16_t)port);
}

static void redis_sentinel_connected(struct redis_link *link)
{
    struct redis_client *client = link->owner;
    if (client->sentinel_password != NULL) {
        if (client->sentinel_username != NULL)
            redisAsyncCommand(link->context, redis_sentinel_reply, redis_step_data(REDIS_STEP_AUTH),
                              "AUTH %s %s", client->sentinel_username, client->sentinel_password);
        else
            redisAsyncCommand(link->context, redis_sentinel_reply, redis_step_data(REDIS_STEP_AUTH),
                              "AUTH %s", client->sentinel_password);
    }
    redisAsyncCommand(link->context, redis_sentinel_reply, redis_step_data(REDIS_STEP_QUERY),
                      "SENTINEL get-master-addr-by-name %s", client->master_name);
}

/* A round asked every sentinel without an answer. */
static void redis_sentinel_round_failed(struct redis_client *client, const char *reason)
{
    char message[300];
    snprintf(message, sizeof(message), "no sentinel named the primary: %s", reason);
    client->sentinel_tries = 0;
    if (redis_link_is_open(&client->primary)) {
        /* Commands still flow; only the watch for failovers is missing. */
        client->events.timer_start(client->sentinel_timer,
                                   redis_backoff_ms(client, client->sentinel_failures++));
        return;
    }
    redis_attempt_failed(client, message);
}

static void redis_sentinel_open(struct redis_client *client)
{
    if (redis_link_is_open(&client->sentinel)) {
        client->sentinel_reopening = true;
        redis_link_close(&client->sentinel, "asking again");
        client->sentinel_reopening = false;
    }
    client->sentinel_answered = false;
    struct redis_endpoint *sentinel = &client->sentinels[client->sentinel_index];
    if (redis_link_open(&client->sentinel, NULL, sentinel->host, sentinel->port) < 0) {
        client->sentinel_index = (client->sentinel_index + 1) % client->sentinel_count;
        if (++client->sentinel_tries < client->sentinel_count)
            client->events.timer_start(client->sentinel_timer, 0);
        else
            redis_sentinel_round_failed(client, client->sentinel.reason);
        return;
    }
    client->events.timer_start(client->sentinel_timer, client->connect_timeout_ms);
}

static void redis_sentinel_lost(struct redis_link *link, const char *reason)
{
    struct redis_client *client = link->owner;
    client->events.timer_stop(client->sentinel_timer);
    if (client->destroying || client->sentinel_reopening)
        return;
    client->sentinel_index = (client->sentinel_index + 1) % client->sentinel_count;
    if (client->sentinel_answered) {
        /* The watch for failovers broke: ask the next sentinel, which also confirms the primary. */
        client->sentinel_answered = false;
        client->events.timer_start(client->sentinel_timer,
                                   redis_backoff_ms(client, client->sentinel_failures++));
        return;
    }
    if (++client->sentinel_tries < client->sentinel_count) {
        client->events.timer_start(client->sentinel_timer, 0);
        return;
    }
    redis_sentinel_round_failed(client, reason);
}

/* Opens the next sentinel when closed; when open and not yet answered, the answer is overdue. */
static void redis_sentinel_timer_fire(void *arg)
{
    struct redis_client *client = arg;
    if (redis_link_is_open(&client->sentinel)) {
        if (!client->sentinel_answered) {
            char reason[128];
            snprintf(reason, sizeof(reason), "no answer within %u ms", client->connect_timeout_ms);
            redis_link_close(&client->sentinel, reason);
        }
        return;
    }
    redis_sentinel_open(client);
}

/* The client */

static char *redis_strdup_or_null(const char *text, bool *failed)
{
    if (text == NULL)
        return NULL;
    char *copy = strdup(text);
    if (copy == NULL)
        *failed = true;
    return copy;
}

static int redis_client_copy_config(struct redis_client *client, const struct redis_config *config,
                                    char *err, size_t err_length)
{
    bool failed = false;
    if (config->unix_path == NULL && config->sentinel_count == 0) {
        if (config->address.host == NULL || !redis_numeric_address(config->address.host) ||
            config->address.port == 0) {
            snprintf(err, err_length, "redis: the address must be a numeric IP and a port");
            return -1;
        }
    }
    if (config->sentinel_count > 0) {
        if (config->master_name == NULL || config->master_name[0] == '\0') {
            snprintf(err, err_length, "redis: sentinels need a master name");
            return -1;
        }
        client->sentinels = calloc(config->sentinel_count, sizeof(*client->sentinels));
        if (client->sentinels == NULL)
            failed = true;
        for (size_t i = 0; !failed && i < config->sentinel_count; i++) {
            const struct redis_address *sentinel = &config->sentinels[i];
            if (sentinel->host == NULL || !redis_numeric_address(sentinel->host) ||
                sentinel->port == 0) {
                snprintf(err, err_length, "redis: sentinel %zu: not a numeric IP and a port", i);
                return -1;
            }
            client->sentinels[i].host = redis_strdup_or_null(sentinel->host, &failed);
            client->sentinels[i].port = sentinel->port;
            client->sentinel_count = i + 1;
        }
    }
    if (config->unix_path == NULL && config->sentinel_count == 0) {
        client->address.host = redis_strdup_or_null(config->address.host, &failed);
        client->address.port = config->address.port;
    }
    client->unix_path =
        config->sentinel_count == 0 ? redis_strdup_or_null(config->unix_path, &failed) : NULL;
    client->master_name = redis_strdup_or_null(config->master_name, &failed);
    client->sentinel_username = redis_strdup_or_null(config->sentinel_username, &failed);
    client->sentinel_password = redis_strdup_or_null(config->sentinel_password, &failed);
    client->username = redis_strdup_or_null(config->username, &failed);
    client->password = redis_strdup_or_null(config->password, &failed);
    client->prefix = strdup(config->key_prefix != NULL ? config->key_prefix : "");
    if (client->prefix == NULL)
        failed = true;
    else
        client->prefix_length = strlen(client->prefix);
    if (failed) {
        snprintf(err, err_length, "redis: out of memory");
        return -1;
    }
    client->database = config->database;
    client->library_context = config->library_context;
    client->counters = config->counters != NULL ? config->counters : &client->own_counters;
#define REDIS_OR_DEFAULT(value, fallback) ((value) != 0 ? (value) : (fallback))
    client->command_timeout_ms =
        REDIS_OR_DEFAULT(config->command_timeout_ms, REDIS_DEFAULT_COMMAND_TIMEOUT_MS);
    client->connect_timeout_ms =
        REDIS_OR_DEFAULT(config->connect_timeout_ms, REDIS_DEFAULT_CONNECT_TIMEOUT_MS);
    client->reconnect_min_ms =
        REDIS_OR_DEFAULT(config->reconnect_min_ms, REDIS_DEFAULT_RECONNECT_MIN_MS);
    client->reconnect_max_ms =
        REDIS_OR_DEFAULT(config->reconnect_max_ms, REDIS_DEFAULT_RECONNECT_MAX_MS);
    if (client->reconnect_max_ms < client->reconnect_min_ms)
        client->reconnect_max_ms = client->reconnect_min_ms;
    client->pool_size = REDIS_OR_DEFAULT(config->max_in_flight, REDIS_DEFAULT_MAX_IN_FLIGHT);
#undef REDIS_OR_DEFAULT
    return 0;
}

static void redis_timer_destroy(struct redis_client *client, void *timer)
{
    if (timer != NULL)
        client->events.timer_destroy(timer);
}

static void redis_client_free(struct redis_client *client)
{
    redis_timer_destroy(client, client->reconnect_timer);
    redis_timer_destroy(client, client->primary_timer);
    redis_timer_destroy(client, client->subscriber_timer);
    redis_timer_destroy(client, client->sentinel_timer);
    while (client->scripts != NULL) {
        struct redis_script *next = client->scripts->next;
        free(client->scripts);
        client->scripts = next;
    }
    while (client->subscriptions != NULL) {
        struct redis_subscription *next = client->subscriptions->next;
        free(client->subscriptions);
        client->subscriptions = next;
    }
    for (size_t i = 0; i < client->sentinel_count; i++)
        free(client->sentinels[i].host);
    free(client->sentinels);
    free(client->pool);
    free(client->unix_path);
    free(client->address.host);
    free(client->master_name);
    free(client->sentinel_username);
    free(client->sentinel_password);
    free(client->username);
    free(client->password);
    free(client->prefix);
    free(client);
}

struct redis_client *redis_client_create(const struct redis_config *config,
                                         const struct redis_events *events,
                                         redis_state_fn *on_state, void *user, char *err,
                                         size_t err_length)
{
    struct redis_client *client = calloc(1, sizeof(*client));
    if (client == NULL) {
        snprintf(err, err_length, "redis: out of memory");
        return NULL;
    }
    client->events = *events;
    client->on_state = on_state;
    client->user = user;
    client->state = REDIS_STATE_CONNECTING;
    client->random_state = redis_now_ns() ^ (uint64_t)(uintptr_t)client;
    if (client->random_state == 0)
        client->random_state = 1;
    if (redis_client_copy_config(client, config, err, err_length) < 0) {
        redis_client_free(client);
        return NULL;
    }
    client->pool = calloc(client->pool_size, sizeof(*client->pool));
    client->reconnect_timer = events->timer_create(events->loop, redis_reconnect_fire, client);
    client->primary_timer = events->timer_create(events->loop, redis_primary_timer_fire, client);
    client->subscriber_timer =
        events->timer_create(events->loop, redis_subscriber_timer_fire, client);
    client->sentinel_timer = events->timer_create(events->loop, redis_sentinel_timer_fire, client);
    if (client->pool == NULL || client->reconnect_timer == NULL || client->primary_timer == NULL ||
        client->subscriber_timer == NULL || client->sentinel_timer == NULL ||
        redis_link_init(&client->primary, &client->events, "primary", client,
                        redis_primary_connected, redis_primary_lost) < 0 ||
        redis_link_init(&client->subscriber, &client->events, "subscriber", client,
                        redis_subscriber_connected, redis_subscriber_lost) < 0 ||
        redis_link_init(&client->sentinel, &client->events, "sentinel", client,
                        redis_sentinel_connected, redis_sentinel_lost) < 0) {
        snprintf(err, err_length, "redis: out of memory");
        redis_client_destroy(client);
        return NULL;
    }
    for (size_t i = client->pool_size; i-- > 0;) {
        client->pool[i].next = client->free_pending;
        client->free_pending = &client->pool[i];
    }
    events->timer_start(client->reconnect_timer, 0);
    return client;
}

void redis_client_destroy(struct redis_client *client)
{
    if (client == NULL)
        return;
    client->destroying = true;
    redis_link_fini(&client->sentinel);
    redis_link_fini(&client->subscriber);
    redis_link_fini(&client->primary);
    redis_client_free(client);
}

enum redis_state redis_client_state(const struct redis_client *client)
{
    return client->state;
}

const char *redis_client_error(const struct redis_client *client)
{
    return client->error;
}

const char *redis_client_primary(const struct redis_client *client)
{
    return client->primary.address;
}

void redis_counters_read(const struct redis_counters *counters, struct redis_stats *stats)
{
    stats->commands = atomic_load_explicit(&counters->commands, memory_order_relaxed);
    stats->replies = atomic_load_explicit(&counters->replies, memory_order_relaxed);
    stats->unavailable = atomic_load_explicit(&counters->unavailable, memory_order_relaxed);
    stats->busy = atomic_load_explicit(&counters->busy, memory_order_relaxed);
    stats->timeouts = atomic_load_explicit(&counters->timeouts, memory_order_relaxed);
    stats->late = atomic_load_explicit(&counters->late, memory_order_relaxed);
    stats->late_replies = atomic_load_explicit(&counters->late_replies, memory_order_relaxed);
    stats->connects = atomic_load_explicit(&counters->connects, memory_order_relaxed);
    stats->noscript_reloads =
        atomic_load_explicit(&counters->noscript_reloads, memory_order_relaxed);
    stats->failovers = atomic_load_explicit(&counters->failovers, memory_order_relaxed);
    stats->in_flight = atomic_load_explicit(&counters->in_flight, memory_order_relaxed);
}

void redis_client_stats(const struct redis_client *client, struct redis_stats *stats)
{
    redis_counters_read(client->counters, stats);
}
