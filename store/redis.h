/*
 * redis: the cluster's coordination client, one per loop thread.
 *
 * dpsd nodes share rate limits, the blocklist, device-id claims and
 * configuration generations through one Redis primary (DESIGN.md, "The
 * cluster"). This client is what a shard uses to reach it without ever
 * blocking: hiredis's asynchronous API, driven by the caller's event loop
 * through struct redis_events (dataplane/redis_loop.c binds it to our loop, so
 * store/ never includes dataplane/). Everything here runs on that loop's
 * thread; nothing is thread-safe, except the counters (struct
 * redis_counters): the client adds to them with relaxed atomics, and whoever
 * owns them (the caller when it passes config.counters, else the client) may
 * read them from any thread with redis_counters_read() for as long as they live.
 *
 * What the client does on its own:
 *  - finds the primary: a fixed host:port or unix socket, or asks Redis
 *    Sentinel (each sentinel in turn: SENTINEL get-master-addr-by-name), then
 *    follows failovers (+switch-master on a sentinel connection) and asks
 *    again whenever the primary connection drops;
 *  - opens the connection: AUTH (ACL user and password, or password only),
 *    SELECT, ROLE (it must say "master", else the connection is dropped),
 *    SCRIPT LOAD of every registered script, all pipelined; only then READY;
 *  - keeps it: reconnects with exponential back-off and jitter, and reports
 *    CONNECTING -> READY <-> DOWN through a state callback;
 *  - bounds every command: each has a deadline (command_timeout_ms), and is
 *    answered REDIS_STATUS_UNAVAILABLE when it passes: callers never wait
 *    longer. One late reply is tolerated (a starved machine answers late
 *    now and then): the connection is kept for it. A second command late
 *    while that reply is still missing, or that reply missing for one more
 *    timeout, and the connection is taken as stalled and dropped: every
 *    command in flight is answered REDIS_STATUS_UNAVAILABLE and new ones are
 *    refused at once until it is READY again (redis_deadline_decide).
 *  - bounds memory: at most max_in_flight commands wait for an answer; beyond
 *    that a command is refused with REDIS_STATUS_BUSY.
 *  - runs Lua scripts by SHA-1 (EVALSHA), loading them again and retrying
 *    once when the server answers NOSCRIPT (after a restart or SCRIPT FLUSH);
 *  - keeps pub/sub subscriptions on a second connection and subscribes again
 *    after every reconnect.
 *
 * Names: a key prefix (config.key_prefix) is put in front of the keys of
 * script calls, of the channels of redis_publish() and redis_subscribe(), and
 * of redis_key(); raw commands (redis_command*) are sent as given.
 *
 * Host names are not resolved (that would block the loop): addresses are
 * numeric IPv4 or IPv6; resolve names when the configuration is read.
 * hiredis writes with write(2), so the process must ignore SIGPIPE (dpsd
 * does). The primary's ACL user needs AUTH, SELECT, ROLE, SCRIPT, EVALSHA,
 * SUBSCRIBE and PUBLISH besides the commands its callers send.
 */
#ifndef DPS_STORE_REDIS_H
#define DPS_STORE_REDIS_H

#include <openssl/types.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The caller's event loop, as the client needs it. The contract is the one of
 * dataplane/loop.h: watch() reports readiness level-triggered, only for the
 * wanted events, never after unwatch() (which may come from inside ready());
 * a new watch wants nothing; timers are one-shot, start() re-arms an armed
 * timer, destroy() may be called from inside fire(); a timer started with 0 ms
 * runs after the current batch of events, before the loop waits again.
 */
#define REDIS_EVENT_READABLE 1u
#define REDIS_EVENT_WRITABLE 2u

struct redis_events {
    void *loop;
    void *(*watch)(void *loop, int fd, void (*ready)(void *arg, unsigned events), void *arg);
    void (*want)(void *watch, bool readable, bool writable);
    void (*unwatch)(void *watch);
    void *(*timer_create)(void *loop, void (*fire)(void *arg), void *arg);
    void (*timer_start)(void *timer, unsigned delay_ms);
    void (*timer_stop)(void *timer);
    void (*timer_destroy)(void *timer);
};

struct redis_address {
    const char *host; /* numeric IPv4 or IPv6 */
    uint16_t port;
};

struct redis_config {
    /* Where the primary is: a unix socket, a fixed address, or Sentinel. */
    const char *unix_path;
    struct redis_address address;
    const struct redis_address *sentinels; /* asked in order, round robin */
    size_t sentinel_count;
    const char *master_name;       /* the name the sentinels monitor */
    const char *sentinel_username; /* NULL: AUTH with the password alone */
    const char *sentinel_password; /* NULL: sentinels need no AUTH */

    const char *username; /* NULL: AUTH with the password alone (requirepass) */
    const char *password; /* NULL: no AUTH */
    int database;         /* SELECT when not 0 */
    const char *key_prefix;

    unsigned command_timeout_ms;   /* 0: 250 */
    unsigned connect_timeout_ms;   /* connection and handshake, or a sentinel's answer; 0: 1000 */
    unsigned reconnect_min_ms;     /* first back-off step; 0: 100 */
    unsigned reconnect_max_ms;     /* 0: 5000 */
    unsigned max_in_flight;        /* 0: 1024 */
    OSSL_LIB_CTX *library_context; /* for SHA-1 of scripts; NULL: OpenSSL's default */
    /*
     * Where the client counts (NULL: counters of its own). The caller's must
     * outlive the client and start zeroed; a client created again on the same
     * counters goes on from where they are, so the totals stay monotonic.
     */
    struct redis_counters *counters;
};

enum redis_state {
    REDIS_STATE_CONNECTING, /* the first attempt is under way */
    REDIS_STATE_READY,      /* commands are accepted */
    REDIS_STATE_DOWN,       /* not connected; retrying in the background */
};

enum redis_status {
    REDIS_STATUS_OK,          /* a reply came */
    REDIS_STATUS_ERROR,       /* the server answered with an error reply */
    REDIS_STATUS_UNAVAILABLE, /* no answer: not READY, deadline passed, or connection lost */
    REDIS_STATUS_BUSY,        /* refused: max_in_flight commands are already waiting */
};

/* A reply, valid only during the callback that receives it. */
struct redis_reply;

enum redis_reply_kind {
    REDIS_KIND_STRING,
    REDIS_KIND_ARRAY,
    REDIS_KIND_INTEGER,
    REDIS_KIND_NIL,
    REDIS_KIND_STATUS,
    REDIS_KIND_ERROR,
};

enum redis_reply_kind redis_reply_kind(const struct redis_reply *reply);
long long redis_reply_integer(const struct redis_reply *reply);
/* STRING, STATUS and ERROR replies: NUL-terminated text; NULL for other kinds. */
const char *redis_reply_string(const struct redis_reply *reply, size_t *length);
size_t redis_reply_count(const struct redis_reply *reply); /* ARRAY elements */
const struct redis_reply *redis_reply_element(const struct redis_reply *reply, size_t index);

/*
 * Called exactly once for every command that was accepted (the submitting
 * call returned REDIS_STATUS_OK), never for one that was refused. reply is
 * set for OK and ERROR, NULL otherwise. The callback may submit commands.
 */
typedef void redis_reply_fn(void *user, enum redis_status status, const struct redis_reply *reply);
/* reason says why the client is DOWN (the server's error, a timeout, ...); "" otherwise. */
typedef void redis_state_fn(void *user, enum redis_state state, const char *reason);
/*
 * A message on a subscribed channel. message NULL means "subscribed": the
 * subscription was confirmed, for the first time or again after a reconnect,
 * and whatever was published while it was not in place was missed.
 */
typedef void redis_message_fn(void *user, const char *message, size_t length);

struct redis_client;

/*
 * Copies the configuration and starts connecting (from a 0 ms timer, so no
 * callback runs before this returns). NULL with a message in err when the
 * configuration is unusable or memory runs out.
 */
struct redis_client *redis_client_create(const struct redis_config *config,
                                         const struct redis_events *events,
                                         redis_state_fn *on_state, void *user, char *err,
                                         size_t err_length);
/*
 * Closes every connection. Commands still waiting are answered UNAVAILABLE
 * from inside this call; the state callback is not called. Never call it from
 * one of the client's own callbacks.
 */
void redis_client_destroy(struct redis_client *client);

enum redis_state redis_client_state(const struct redis_client *client);
const char *redis_state_name(enum redis_state state);
const char *redis_status_name(enum redis_status status);
/* Why the client last went DOWN ("" if it never did). */
const char *redis_client_error(const struct redis_client *client);
/* The primary in use or being tried: "host:port" or the unix path; "" before any. */
const char *redis_client_primary(const struct redis_client *client);

struct redis_stats {
    uint64_t commands;     /* accepted */
    uint64_t replies;      /* answered OK or ERROR */
    uint64_t unavailable;  /* refused or answered UNAVAILABLE */
    uint64_t busy;         /* refused BUSY */
    uint64_t timeouts;     /* connections dropped because a deadline passed */
    uint64_t late;         /* commands answered UNAVAILABLE at their deadline, connection kept */
    uint64_t late_replies; /* replies of those that came afterwards (read and dropped) */
    uint64_t connects;     /* times the client became READY */
    uint64_t noscript_reloads; /* scripts loaded again after NOSCRIPT */
    uint64_t failovers;        /* moves to another primary */
    uint64_t in_flight;        /* commands waiting now */
};

/* The live counters behind struct redis_stats, written by the client's thread only. */
struct redis_counters {
    _Atomic uint64_t commands;
    _Atomic uint64_t replies;
    _Atomic uint64_t unavailable;
    _Atomic uint64_t busy;
    _Atomic uint64_t timeouts;
    _Atomic uint64_t late;
    _Atomic uint64_t late_replies;
    _Atomic uint64_t connects;
    _Atomic uint64_t noscript_reloads;
    _Atomic uint64_t failovers;
    _Atomic uint64_t in_flight;
};

/* A snapshot of counters, from any thread (each field read on its own, relaxed). */
void redis_counters_read(const struct redis_counters *counters, struct redis_stats *stats);
void redis_client_stats(const struct redis_client *client, struct redis_stats *stats);

/*
 * The deadline rule, exposed for its unit test. late_deadline_ns: the
 * deadline of the command already answered late whose reply is still
 * awaited (NULL: none); live_deadline_ns: the deadline of the oldest command
 * not yet answered (NULL: none). WAIT sets *next_check_ns (UINT64_MAX:
 * nothing to watch); EXPIRE: answer that command UNAVAILABLE and keep the
 * connection; DROP: the connection is stalled.
 */
enum redis_deadline_action {
    REDIS_DEADLINE_WAIT,
    REDIS_DEADLINE_EXPIRE,
    REDIS_DEADLINE_DROP,
};
enum redis_deadline_action redis_deadline_decide(uint64_t now_ns, unsigned timeout_ms,
                                                 const uint64_t *late_deadline_ns,
                                                 const uint64_t *live_deadline_ns,
                                                 uint64_t *next_check_ns);

/*
 * Commands. Each returns REDIS_STATUS_OK when the command is on its way (fn,
 * which may be NULL, is then called exactly once), or UNAVAILABLE or BUSY
 * when it was refused (fn is not called). redis_command() takes hiredis's
 * format: "SET %s %b" with %b a pointer and a length.
 */
enum redis_status redis_command(struct redis_client *client, redis_reply_fn *fn, void *user,
                                const char *format, ...);
enum redis_status redis_command_argv(struct redis_client *client, redis_reply_fn *fn, void *user,
                                     int argc, const char *const *argv, const size_t *lengths);

/* Writes key_prefix + name into out; its length, or 0 when it does not fit. */
size_t redis_key(const struct redis_client *client, const char *name, char *out, size_t out_size);

/*
 * Scripts. register() computes the SHA-1 of the Lua source locally and loads
 * it at once when READY and on every (re)connect; registering the same source
 * twice gives the same handle. Scripts live as long as the client. NULL when
 * memory or the digest fails.
 */
struct redis_script;

struct redis_script *redis_script_register(struct redis_client *client, const char *source);
const char *redis_script_sha(const struct redis_script *script); /* 40 hex digits */
/*
 * EVALSHA with the keys (each prefixed) and the arguments as given. lengths
 * arrays may be NULL for NUL-terminated strings. On NOSCRIPT the script is
 * loaded and the call sent again, once, under the same deadline.
 */
enum redis_status redis_script_call(struct redis_client *client, const struct redis_script *script,
                                    redis_reply_fn *fn, void *user, size_t key_count,
                                    const char *const *keys, const size_t *key_lengths,
                                    size_t arg_count, const char *const *args,
                                    const size_t *arg_lengths);

/*
 * Pub/sub, on a connection of its own to the primary. A subscription lasts as
 * long as the client and is renewed after every reconnect; fn(user, NULL, 0)
 * each time it is confirmed. 0, or -ENOMEM, or -EEXIST for a channel already
 * subscribed.
 */
int redis_subscribe(struct redis_client *client, const char *channel, redis_message_fn *fn,
                    void *user);
enum redis_status redis_publish(struct redis_client *client, const char *channel,
                                const void *message, size_t length, redis_reply_fn *fn, void *user);

#endif
