/*
 * redis_link: hiredis's asynchronous context on the caller's loop (see
 * redis_link.h for the contract, and hiredis/adapters/ae.h for the shape this
 * follows).
 *
 * Each event callback remembers the link's generation before calling into
 * hiredis: a read may free the context (an error, or a close() from a reply
 * callback), and then the write half of the same event must not run.
 */
#include "store/redis_link.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void redis_link_set_want(struct redis_link *link, unsigned want)
{
    if (link->want == want || link->watch == NULL)
        return;
    link->want = want;
    link->events->want(link->watch, want & REDIS_EVENT_READABLE, want & REDIS_EVENT_WRITABLE);
}

static void redis_link_write(struct redis_link *link)
{
    unsigned generation = link->generation;
    link->writing = true;
    redisAsyncHandleWrite(link->context);
    if (link->generation == generation)
        link->writing = false;
}

static void redis_link_ready(void *arg, unsigned events)
{
    struct redis_link *link = arg;
    unsigned generation = link->generation;
    if ((events & REDIS_EVENT_READABLE) && link->context != NULL) {
        redisAsyncHandleRead(link->context);
        if (link->generation != generation)
            return;
    }
    if ((events & REDIS_EVENT_WRITABLE) && link->context != NULL)
        redis_link_write(link);
}

static void redis_link_flush(void *arg)
{
    struct redis_link *link = arg;
    link->flush_queued = false;
    if (link->context != NULL)
        redis_link_write(link);
}

static void redis_link_add_read(void *data)
{
    struct redis_link *link = data;
    redis_link_set_want(link, link->want | REDIS_EVENT_READABLE);
}

static void redis_link_del_read(void *data)
{
    struct redis_link *link = data;
    redis_link_set_want(link, link->want & ~REDIS_EVENT_READABLE);
}

static void redis_link_add_write(void *data)
{
    struct redis_link *link = data;
    if ((link->context->c.flags & REDIS_CONNECTED) && !link->writing) {
        if (!link->flush_queued) {
            link->flush_queued = true;
            link->events->timer_start(link->flush_timer, 0);
        }
        return;
    }
    redis_link_set_want(link, link->want | REDIS_EVENT_WRITABLE);
}

static void redis_link_del_write(void *data)
{
    struct redis_link *link = data;
    redis_link_set_want(link, link->want & ~REDIS_EVENT_WRITABLE);
}

/* hiredis is freeing the context: the one place every ending passes through. */
static void redis_link_cleanup(void *data)
{
    struct redis_link *link = data;
    redisAsyncContext *context = link->context;
    if (!link->closing) {
        const char *why =
            context->err != 0 && context->errstr[0] != '\0' ? context->errstr : "connection closed";
        snprintf(link->reason, sizeof(link->reason), "%s %s: %s", link->role, link->address, why);
    }
    link->events->unwatch(link->watch);
    link->watch = NULL;
    link->events->timer_stop(link->flush_timer);
    link->flush_queued = false;
    link->writing = false;
    link->want = 0;
    link->context = NULL;
    link->connected_now = false;
    link->closing = false;
    link->generation++;
    link->lost(link, link->reason);
}

/* Failures need no handling here: hiredis frees the context and cleanup reports why. */
static void redis_link_on_connect(const redisAsyncContext *context, int status)
{
    struct redis_link *link = context->data;
    if (status != REDIS_OK || link->closing)
        return;
    link->connected_now = true;
    link->connected(link);
}

int redis_link_init(struct redis_link *link, const struct redis_events *events, const char *role,
                    void *owner, void (*connected)(struct redis_link *link),
                    void (*lost)(struct redis_link *link, const char *reason))
{
    memset(link, 0, sizeof(*link));
    link->events = events;
    link->role = role;
    link->owner = owner;
    link->connected = connected;
    link->lost = lost;
    link->flush_timer = events->timer_create(events->loop, redis_link_flush, link);
    return link->flush_timer != NULL ? 0 : -ENOMEM;
}

void redis_link_fini(struct redis_link *link)
{
    if (link->flush_timer == NULL)
        return;
    redis_link_close(link, "client destroyed");
    link->events->timer_destroy(link->flush_timer);
    link->flush_timer = NULL;
}

int redis_link_open(struct redis_link *link, const char *unix_path, const char *host, uint16_t port)
{
    if (unix_path != NULL)
        snprintf(link->address, sizeof(link->address), "%s", unix_path);
    else if (strchr(host, ':') != NULL)
        snprintf(link->address, sizeof(link->address), "[%s]:%u", host, (unsigned)port);
    else
        snprintf(link->address, sizeof(link->address), "%s:%u", host, (unsigned)port);
    redisAsyncContext *context =
        unix_path != NULL ? redisAsyncConnectUnix(unix_path) : redisAsyncConnect(host, port);
    if (context == NULL) {
        snprintf(link->reason, sizeof(link->reason), "%s %s: out of memory", link->role,
                 link->address);
        return -1;
    }
    if (context->err != 0) {
        snprintf(link->reason, sizeof(link->reason), "%s %s: %s", link->role, link->address,
                 context->errstr);
        redisAsyncFree(context);
        return -1;
    }
    link->watch = link->events->watch(link->events->loop, context->c.fd, redis_link_ready, link);
    if (link->watch == NULL) {
        snprintf(link->reason, sizeof(link->reason), "%s %s: watching the socket: %s", link->role,
                 link->address, strerror(errno));
        redisAsyncFree(context);
        return -1;
    }
    if (unix_path == NULL)
        redisEnableKeepAlive(&context->c); /* probes after REDIS_KEEPALIVE_INTERVAL (15 s) */
    link->context = context;
    link->want = 0;
    link->closing = false;
    context->data = link;
    context->ev.data = link;
    context->ev.addRead = redis_link_add_read;
    context->ev.delRead = redis_link_del_read;
    context->ev.addWrite = redis_link_add_write;
    context->ev.delWrite = redis_link_del_write;
    context->ev.cleanup = redis_link_cleanup;
    /* Asks for writability: the first writable event completes the connect. */
    redisAsyncSetConnectCallback(context, redis_link_on_connect);
    return 0;
}

bool redis_link_is_open(const struct redis_link *link)
{
    return link->context != NULL;
}

bool redis_link_usable(const struct redis_link *link)
{
    return link->context != NULL && link->connected_now && !link->closing;
}

void redis_link_close(struct redis_link *link, const char *reason)
{
    if (link->context == NULL || link->closing)
        return;
    link->closing = true;
    snprintf(link->reason, sizeof(link->reason), "%s %s: %s", link->role, link->address, reason);
    redisAsyncFree(link->context);
}
