/*
 * redis_link: one hiredis asynchronous connection driven by the caller's
 * event loop (struct redis_events); private to store/redis.c.
 *
 * hiredis 0.14 asks for I/O through five hooks (addRead, delRead, addWrite,
 * delWrite, cleanup). The link turns them into a level-triggered fd watch,
 * with one refinement: once connected, addWrite does not wait for the socket
 * to become writable (it almost always is) but queues a 0 ms flush timer, so
 * every command issued while a batch of events is dispatched leaves in one
 * write when the batch is done, and write interest is asked of the loop only
 * when the socket took less than all of it. Before the connection is
 * established, hiredis's own connect check needs the real writability (0.14
 * takes SO_ERROR 0 as connected, even while the connect is in progress).
 *
 * Lifetime: a link is embedded in its owner and set up once. Each open()
 * that succeeds is followed by exactly one lost(link, reason), called from
 * hiredis's cleanup hook when the context is freed: after an error, a peer
 * close, or close() (whose reason is passed on). When close() is called from
 * inside a reply callback of the same context, hiredis frees it once that
 * callback returns; until then the link is "closing" and refuses new work.
 * lost() runs inside hiredis: it may change the owner's state and start
 * timers, but must not open the link again (do that from a timer). connected()
 * must not close the link (hiredis calls it outside its callback guard).
 */
#ifndef DPS_STORE_REDIS_LINK_H
#define DPS_STORE_REDIS_LINK_H

#include <hiredis/async.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/redis.h"

struct redis_link {
    const struct redis_events *events;
    const char *role; /* "primary", "subscriber", "sentinel": for reasons */
    void *owner;
    void (*connected)(struct redis_link *link);
    void (*lost)(struct redis_link *link, const char *reason);
    redisAsyncContext *context; /* NULL while closed; context->data is the link */
    void *watch;
    void *flush_timer;
    unsigned generation; /* bumped whenever a context goes away */
    unsigned want;       /* REDIS_EVENT_* bits the loop watches for */
    bool connected_now;  /* the TCP or unix connection is established */
    bool writing;        /* inside redisAsyncHandleWrite: addWrite means "socket full" */
    bool flush_queued;
    bool closing;
    char address[128]; /* "host:port" or the unix path */
    char reason[256];
};

/* 0, or -ENOMEM. */
int redis_link_init(struct redis_link *link, const struct redis_events *events, const char *role,
                    void *owner, void (*connected)(struct redis_link *link),
                    void (*lost)(struct redis_link *link, const char *reason));
/* Closes (lost() is called) and releases the link's timer. */
void redis_link_fini(struct redis_link *link);

/*
 * Starts connecting (unix_path, or host and port). 0, or -1 with the reason in
 * link->reason; lost() is not called for an open() that failed.
 */
int redis_link_open(struct redis_link *link, const char *unix_path, const char *host,
                    uint16_t port);
bool redis_link_is_open(const struct redis_link *link);
/* Connected, not closing: commands may be issued on link->context. */
bool redis_link_usable(const struct redis_link *link);
/* Frees the context now, or when hiredis returns from the callback running. */
void redis_link_close(struct redis_link *link, const char *reason);

#endif
